#!/bin/sh
# The Python environment the tests of real transformers models run in: .venv at the repository
# root with pinned torch (CPU), transformers, onnx and onnxscript, installed from the machine's local
# wheel folders (pip's configuration lists them; PIP_RETRIES=0 keeps pip off the network). Does
# nothing when the environment already holds those versions. Debian's /usr/bin/python3 (torch 1.13)
# stays the interpreter of the TorchScript-era tests.
set -eu
cd "$(dirname "$0")/../.."
VENV=.venv
PINS="torch==2.13.0+cpu transformers==5.17.0 onnx==1.23.1 onnxscript==0.7.2"
CHECK="import importlib.metadata as m, sys
want = dict(p.split('==') for p in sys.argv[1:])
sys.exit(any(m.version(name) != version for name, version in want.items()))"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$CHECK" $PINS 2>/dev/null; then
  exit 0
fi
BASE="${EKKA_VENV_PYTHON:-python3}"
echo "pythonEnv: creating $VENV with $PINS (from $("$BASE" --version 2>&1))"
"$BASE" -m venv "$VENV"
# shellcheck disable=SC2086
PIP_RETRIES=0 PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/pip" install -q $PINS
"$VENV/bin/python" -c "$CHECK" $PINS
