#!/bin/sh
# Build the DCNv2 extension (dcn/_C*.so) in place: `sh make.sh`.
#
#   FORCE_CUDA=1     compile the CUDA kernels without a visible GPU (TORCH_CUDA_ARCH_LIST defaults
#                    to 8.0+PTX then, see setup.py; set it to your GPUs' archs, e.g. "7.5;8.6;8.9+PTX")
#   DCN_WITH_CUDA=0  CPU-only build
#   MAX_JOBS         parallel compile jobs (default 2)
#   PYTHON           interpreter whose torch to build against (default: the project's .venv/bin/python
#                    when it exists, else python3)
set -eu

cd "$(dirname "$0")"

if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
    CUDA_HOME=/usr/local/cuda
    export CUDA_HOME
fi
MAX_JOBS=${MAX_JOBS:-2}
export MAX_JOBS
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "error: $PYTHON cannot import torch. Create the environment first (bash scripts/setup.sh), or set" >&2
    echo "PYTHON to an interpreter that has torch, e.g. PYTHON=.venv/bin/python sh make.sh" >&2
    exit 1
fi
echo "building dcn._C with $PYTHON"

"$PYTHON" setup.py build_ext --inplace
"$PYTHON" -c "from dcn import _ext; assert _ext.is_available(), _ext.load_error(); \
print('dcn extension built; CUDA kernels:', _ext.has_cuda_kernels())"
