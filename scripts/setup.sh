#!/usr/bin/env bash
# Sets up a fresh machine: a virtual environment in .venv with the requirements, then installs
# this project into it (editable), which compiles the DCNv2 extension in place.
#   PYTHON=python3.11  which interpreter creates the environment
#   FORCE_CUDA=1       compile the CUDA kernels even where no GPU is visible (needs nvcc;
#                      TORCH_CUDA_ARCH_LIST defaults to "8.0+PTX"; CUDA_HOME)
#   DCN_WITH_CUDA=0    force a CPU-only extension
# An environment that already holds torch keeps it (e.g. the CPU wheel, installed first: README).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r requirements.txt

# What the build compiles and how long it takes (measured with MAX_JOBS=2 on a 2-core machine shared with
# other jobs: 1.0 and 2.9 min without nvcc, 1.6 min of CPU time; 5.7 min with it, 2.7 min of CPU time).
with_nvcc=$("$VENV/bin/python" -c "import os, torch
off = os.environ.get('DCN_WITH_CUDA') == '0'
print(int(not off and (os.environ.get('FORCE_CUDA') == '1' or torch.cuda.is_available())))")
echo "Compiling the DCN extension dcn/_C: the C++ CPU kernels and the CUDA kernels compiled for the CPU"
if [ "$with_nvcc" = 1 ]; then
    echo "(the cuda_emulated backend), plus the CUDA kernels with nvcc: 3 to 6 minutes on 2 cores..."
else
    echo "(the cuda_emulated backend): 1 to 3 minutes on 2 cores..."
fi
start=$(date +%s)
# --no-build-isolation: build against the torch installed above, never a freshly downloaded one.
# The filter drops setuptools' note on editable installs (folders named like the package shadowing it).
MAX_JOBS=${MAX_JOBS:-2} PYTHONWARNINGS="ignore:Editable installation" \
    "$VENV/bin/python" -m pip install --quiet --no-build-isolation --no-deps -e .
echo "Built in $(( $(date +%s) - start )) s."
"$VENV/bin/python" -c "import dcn; print('DCN backends available:', ', '.join(dcn.available_backends()))"

cat <<DONE

Set up in $VENV. Every command in the README and docs/ is written with the environment's programs,
which work in any shell without activating it, e.g.:
    $VENV/bin/python test.py --help
    $VENV/bin/adfnet-denoise --help
or run \`source $VENV/bin/activate\` once per shell to drop the \`$VENV/bin/\` prefix.
Next: bash scripts/demo.sh
DONE
