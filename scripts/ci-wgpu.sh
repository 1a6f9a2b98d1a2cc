#!/usr/bin/env bash
# The parity suite's core on wgpu (CubeCL on Vulkan, the same CubeBackend as cuda), on whatever
# Vulkan adapter the machine has: Mesa's lavapipe in CI (`.ci/run` installs it). No adapter is a
# failure (EMBER_REQUIRE=wgpu), not a skip.
#
# The subset (lavapipe runs on the CPU and is slow): the model vs transformers, LoRA vs PEFT,
# chunked attention/loss and recompute (ember's custom autodiff ops, asserted to take effect),
# the trainer vs HF Trainer, eval vs lm-eval, and the demo fine-tune on wgpu vs flex.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/torch-env.sh >/dev/null

if ! vulkaninfo --summary 2>/dev/null | grep -q deviceName; then
    echo "ci-wgpu: no Vulkan device (vulkaninfo); install mesa-vulkan-drivers" >&2
    exit 1
fi
vulkaninfo --summary 2>/dev/null | grep -E "deviceName|driverName" >&2

export EMBER_TEST_BACKENDS=wgpu
export EMBER_REQUIRE="${EMBER_REQUIRE:+$EMBER_REQUIRE,}python,wgpu"
# Built as the README's test command builds (--workspace, tch and wgpu), so that nothing is
# rebuilt: a `-p` subset would resolve dependency features without the other crates'
# dev-dependencies. Each crate's integration tests are one binary, `it`, whose modules the
# filters pick: `parity::` is ember-qwen3's, ember-eval's, ember-train's train_parity:: and
# ember-data's (CPU-only, a second).
FEATURES=tch,wgpu
filters=(
    parity:: lora:: chunked:: recompute:: # ember-qwen3 (and ember-eval's, ember-train's parity)
    demo_wgpu::                           # xtask
)
time cargo test --workspace --no-fail-fast --features "$FEATURES" --test it -- "${filters[@]}"
