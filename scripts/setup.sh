#!/usr/bin/env bash
# Sets up a development environment in ./.venv: CPU torch, build tools, test and runtime deps, then builds
# vjepa_fast (the compiled extension) in editable mode. Safe to run again; it only installs what is missing.
#
#   VENV=path            where to put the virtual environment (default: .venv)
#   TORCH_SPEC=...       the torch to install (default: torch==2.13.0, the CPU build on these machines)
#   VJEPA_FAST_CUDA=ON   build the CUDA kernels too (needs a CUDA torch and nvcc)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
pip install -q --upgrade pip >/dev/null
pip install -q "$TORCH_SPEC"
pip install -q -r requirements-dev.txt
pip install -q --no-build-isolation -e .
python -c "import vjepa_fast.ops as o, torch; print('vjepa_fast built: torch', torch.__version__, '| CUDA kernels:', o.cuda_built())"
