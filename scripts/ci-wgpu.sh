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
# Built with tch too: the rest of the suite is built with it, so this shares its dependencies.
FEATURES=tch,wgpu
tests=(
    -p ember-qwen3 --test parity --test lora --test chunked --test recompute
    -p ember-train --test train_parity
    -p ember-eval --test parity
    -p xtask --test demo_wgpu
)
time cargo test --features "$FEATURES" "${tests[@]}"
