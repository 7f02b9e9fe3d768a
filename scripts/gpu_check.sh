#!/usr/bin/env bash
# The GPU check, for the first machine with a GPU: from a clean checkout, build the DCN extension
# for the visible GPUs' architectures, then run scripts/gpu_check.py (parity in float64/float32/
# float16/bfloat16, layouts, deterministic mode, 64-bit indexing, a second GPU, ADFNet's golden
# outputs, an AMP training step, speed against torchvision, inference time). It writes
# gpu_check_report.md and gpu_check_report.json (in --out, default .) and exits non-zero if any
# check failed.
#
#   scripts/gpu_check.sh [--dry-run] [--out DIR] [--only CHECK ...]
#
# --dry-run skips the build (the extension must be built, e.g. `sh make.sh`) and runs every check
# on the CPU with the CUDA kernels compiled for the CPU standing in for the GPU; the test suite
# runs it so that the script itself is tested without a GPU.
#   PYTHON   interpreter (default .venv/bin/python if present, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

dry_run=0
for arg in "$@"; do
    [ "$arg" = "--dry-run" ] && dry_run=1
done

if [ "$dry_run" = 0 ]; then
    # One arch per distinct visible GPU, e.g. "8.6;9.0", plus PTX for anything newer.
    archs=$("$PYTHON" -c "import torch
assert torch.cuda.is_available(), 'no GPU visible to torch'
caps = sorted({'%d.%d' % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
print(';'.join(caps) + '+PTX')")
    echo "gpu_check: building the dcn extension for TORCH_CUDA_ARCH_LIST=$archs"
    FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$archs" PYTHON="$PYTHON" sh make.sh
fi

exec "$PYTHON" scripts/gpu_check.py "$@"
