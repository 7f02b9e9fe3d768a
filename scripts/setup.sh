#!/usr/bin/env bash
# Sets up a fresh machine: a virtual environment in .venv with the requirements, then installs
# this project into it (editable), which compiles the DCNv2 extension in place.
#   PYTHON=python3.11  which interpreter creates the environment
#   FORCE_CUDA=1       compile the CUDA kernels even where no GPU is visible (needs nvcc;
#                      TORCH_CUDA_ARCH_LIST defaults to "8.0+PTX"; CUDA_HOME)
#   DCN_WITH_CUDA=0    force a CPU-only extension
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r requirements.txt
# --no-build-isolation: build against the torch installed above, never a freshly downloaded one.
MAX_JOBS=${MAX_JOBS:-2} "$VENV/bin/python" -m pip install --no-build-isolation --no-deps -e .
"$VENV/bin/python" -c "import dcn; print('DCN backends available:', ', '.join(dcn.available_backends()))"
