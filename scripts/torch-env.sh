# Source this file (`source scripts/torch-env.sh`) to build and run ember's `tch` (libtorch) backend.
#
# burn-tch 0.21 needs PyTorch 2.9.0 exactly. This creates a virtualenv with it outside the clone
# (reused by later runs), then points the build at it (LIBTORCH_USE_PYTORCH) and puts its shared
# libraries on LD_LIBRARY_PATH for the test and CLI binaries.
EMBER_VENV="${EMBER_VENV:-$HOME/.cache/ember/venv}"
if ! "$EMBER_VENV/bin/python" -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.9.0")' 2>/dev/null; then
    echo "ember: installing torch==2.9.0 into $EMBER_VENV (once; a large download)" >&2
    python3 -m venv "$EMBER_VENV" &&
        "$EMBER_VENV/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir torch==2.9.0 ||
        { echo "ember: could not install torch==2.9.0" >&2; return 1 2>/dev/null || exit 1; }
fi
export LIBTORCH_USE_PYTORCH=1
export PATH="$EMBER_VENV/bin:$PATH"
EMBER_TORCH_LIB="$("$EMBER_VENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$EMBER_TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
