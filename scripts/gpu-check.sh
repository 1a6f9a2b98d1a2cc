#!/usr/bin/env bash
# GPU acceptance run (issue 16) for a borrowed CUDA machine: the parity suite on `cuda:0` (CubeCL)
# and `tch-cuda:0` (libtorch), then the Qwen3-8B bf16 step benchmark on both, then one table.
#
#   scripts/gpu-check.sh build    # cuda + tch features: the test binaries and xtask (release)
#   scripts/gpu-check.sh test     # parity suite, EMBER_TEST_BACKENDS=cuda:0 then tch-cuda:0
#   scripts/gpu-check.sh bench    # xtask bench --cases gpu --shape qwen3-8b --batch 4 --seq 6500
#                                 #   --dtype bf16 --recompute true, on cuda:0 and tch-cuda:0
#   scripts/gpu-check.sh report   # tests passed per backend, s/step, tokens/s, MFU, peak GPU memory
#
# Each subcommand is one command under the device's 10-minute limit, and writes under
# $GPU_CHECK_OUT (default target/gpu-check; on the device tool, point it at $OUT to get it back).
# What the machine must already have (a borrowed machine has no network): a Rust toolchain; the
# CUDA toolkit (cubecl-cuda compiles kernels at run time with NVRTC); torch 2.9.0 with CUDA in
# $EMBER_VENV (the tch feature links it; scripts/torch-env.sh would otherwise pip-install it); and
# every crate of Cargo.lock offline ($CARGO_HOME's registry, or a `cargo vendor` directory with
# .cargo/config.toml pointing at it). The device tool carries at most 64 MiB of ignored paths:
# the compressed .crate files of this machine's registry are ~69 MiB and unpacked ~460 MiB, so
# neither travels as is; the registry must already be on the machine (or a pruned set of .crate
# files for the cuda + tch build, not measured, must fit in the 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${GPU_CHECK_OUT:-target/gpu-check}"
mkdir -p "$OUT_DIR"
FEATURES=cuda,tch
BACKENDS=(cuda:0 tch-cuda:0)
# The parity suite: as scripts/ci-wgpu.sh runs on wgpu (the model, LoRA, chunked/recompute,
# trainer, eval), bf16 cases included (CubeCL and libtorch have bf16 on CUDA).
# Each crate's integration tests are one binary, `it`; the filters pick its modules.
TESTS=(-p ember-qwen3 -p ember-train -p ember-eval --test it)
FILTERS=(parity:: lora:: chunked:: recompute::) # `parity::` also matches ember-train's train_parity::

env_setup() {
    # shellcheck source=/dev/null
    source scripts/torch-env.sh >/dev/null
    export CARGO_NET_OFFLINE=true
}

cmd_build() {
    env_setup
    { time cargo test --features "$FEATURES" "${TESTS[@]}" --no-run; } 2>&1 | tee "$OUT_DIR/build.log"
    { time cargo build --release -p xtask --features "$FEATURES"; } 2>&1 | tee -a "$OUT_DIR/build.log"
}

cmd_test() {
    env_setup
    export EMBER_REQUIRE=python
    for b in "${BACKENDS[@]}"; do
        echo "gpu-check: tests on $b" >&2
        EMBER_TEST_BACKENDS="$b" cargo test --features "$FEATURES" "${TESTS[@]}" -- "${FILTERS[@]}" \
            >"$OUT_DIR/test-$b.log" 2>&1 || echo "gpu-check: tests on $b failed (see $OUT_DIR/test-$b.log)" >&2
    done
}

cmd_bench() {
    env_setup
    for b in "${BACKENDS[@]}"; do
        echo "gpu-check: bench on $b" >&2
        cargo run --release -p xtask --features "$FEATURES" -- bench --cases gpu \
            --shape qwen3-8b --batch 4 --seq 6500 --dtype bf16 --recompute true --no-hf \
            --backend "$b" --json "$OUT_DIR/bench-$b.json" 2>&1 | tee "$OUT_DIR/bench-$b.log" ||
            echo "gpu-check: bench on $b failed" >&2
    done
}

cmd_report() {
    python3 - "$OUT_DIR" "${BACKENDS[@]}" <<'PY'
import json, os, re, sys
out, backends = sys.argv[1], sys.argv[2:]
print(f"{'backend':<12} {'tests':>14} {'s/step':>8} {'tokens/s':>9} {'MFU':>6} {'peak GPU':>9}")
for b in backends:
    passed = failed = 0
    log = os.path.join(out, f"test-{b}.log")
    if os.path.exists(log):
        for m in re.finditer(r"test result: \w+\. (\d+) passed; (\d+) failed", open(log).read()):
            passed += int(m[1]); failed += int(m[2])
        tests = f"{passed} ok/{failed} fail"
    else:
        tests = "not run"
    row = ["-"] * 4
    path = os.path.join(out, f"bench-{b}.json")
    if os.path.exists(path):
        doc = json.load(open(path))
        for case in doc.get("cases", []):
            e = case.get("ember") or {}
            steps = e.get("step_seconds") or []
            if not steps:
                continue
            s = sum(steps) / len(steps)
            tokens = case["batch"] * case["seq"]
            flops = e.get("flops_per_step")
            peak_tflops = float(os.environ.get("PEAK_TFLOPS", "989"))
            row = [f"{s:.2f}", f"{tokens / s:.0f}",
                   f"{100 * flops / s / (peak_tflops * 1e12):.1f}%" if flops else "-",
                   f"{e['peak_gpu_bytes'] / 2**30:.1f} GiB" if e.get("peak_gpu_bytes") else "-"]
    print(f"{b:<12} {tests:>14} {row[0]:>8} {row[1]:>9} {row[2]:>6} {row[3]:>9}")
PY
}

case "${1:-}" in
build) cmd_build ;;
test) cmd_test ;;
bench) cmd_bench ;;
report) cmd_report ;;
*)
    echo "usage: $0 build|test|bench|report" >&2
    exit 2
    ;;
esac
