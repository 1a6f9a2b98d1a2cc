# Source this file (`source scripts/torch-env.sh`) to build and run ember's `tch` (libtorch) backend
# and the tests' Python cross-checks.
#
# It creates the fixture environment, a virtualenv outside the clone (reused by later runs), from
# fixtures/requirements.txt with fixtures/requirements.lock as constraints: torch==2.9.0 (burn-tch
# 0.21 needs exactly that), transformers and peft at the versions the fixtures were made with. It
# reinstalls when those files change. Then it points the build at torch (LIBTORCH_USE_PYTORCH), puts
# its shared libraries on LD_LIBRARY_PATH, and exports EMBER_VENV for the tests.
EMBER_VENV="${EMBER_VENV:-$HOME/.cache/ember/venv}"
export EMBER_VENV
_ember_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
_ember_want="$(cat "$_ember_root/fixtures/requirements.txt" "$_ember_root/fixtures/requirements.lock" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$EMBER_VENV/.ember-requirements" 2>/dev/null)" != "$_ember_want" ] ||
    ! "$EMBER_VENV/bin/python" -c 'import torch, transformers, peft' 2>/dev/null; then
    echo "ember: installing the fixture environment (fixtures/requirements.txt) into $EMBER_VENV (once; a large download)" >&2
    { [ -x "$EMBER_VENV/bin/python" ] || python3 -m venv "$EMBER_VENV"; } &&
        "$EMBER_VENV/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir \
            -r "$_ember_root/fixtures/requirements.txt" -c "$_ember_root/fixtures/requirements.lock" &&
        echo "$_ember_want" >"$EMBER_VENV/.ember-requirements" ||
        { echo "ember: could not install the fixture environment into $EMBER_VENV" >&2; return 1 2>/dev/null || exit 1; }
fi
unset _ember_root _ember_want
export LIBTORCH_USE_PYTORCH=1
export PATH="$EMBER_VENV/bin:$PATH"
EMBER_TORCH_LIB="$("$EMBER_VENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$EMBER_TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
