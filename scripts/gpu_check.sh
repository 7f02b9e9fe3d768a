#!/usr/bin/env bash
# The GPU check, for a machine with a CUDA device: from a clean checkout, build the DCN extension for the
# visible GPUs' architectures, run every test marked as a GPU check (`pytest -m cuda`: the op's parity in
# every dtype and layout, deterministic mode, 64-bit indexing, a second GPU, the golden outputs, an AMP
# training step), time the op and ADFNet (benchmarks/gpu_speed.py), and write gpu_check_report.md (in
# --out, default .). Exits non-zero if a check failed or could not run.
#
#   scripts/gpu_check.sh [--dry-run] [--out DIR] [PYTEST_ARGS ...]
#
# PYTEST_ARGS choose the tests (default: tests/, every test marked cuda), e.g. tests/test_golden.py or -k amp.
# --dry-run skips the build and runs on the CPU: every GPU check is reported as skipped ("needs a CUDA
# device") and the timings are the CPU's at toy sizes; the test suite runs it to test this script.
#   PYTHON   interpreter (default .venv/bin/python if present, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

dry_run=0 out=. selection=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry_run=1 ;;
        --out) out=$2; shift ;;
        *) selection+=("$1") ;;
    esac
    shift
done
[ ${#selection[@]} -gt 0 ] || selection=(tests)
mkdir -p "$out"

if [ "$dry_run" = 0 ]; then
    # One arch per distinct visible GPU, e.g. "8.6;9.0", plus PTX for anything newer.
    archs=$("$PYTHON" -c "import torch
assert torch.cuda.is_available(), 'no GPU visible to torch'
caps = sorted({'%d.%d' % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
print(';'.join(caps) + '+PTX')")
    echo "gpu_check: building the dcn extension for TORCH_CUDA_ARCH_LIST=$archs"
    FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$archs" PYTHON="$PYTHON" sh make.sh
    timing=(--device cuda)
else
    timing=(--device cpu --quick)
fi

tests_status=0 timings_status=0
"$PYTHON" -m pytest -m cuda -rs -p no:cacheprovider --junitxml="$out/gpu_check_tests.xml" "${selection[@]}" ||
    tests_status=$?
"$PYTHON" benchmarks/gpu_speed.py "${timing[@]}" --out "$out/gpu_check_timings.md" || timings_status=$?
report=(--tests "$out/gpu_check_tests.xml" --pytest-status "$tests_status" --timings "$out/gpu_check_timings.md")
report+=(--timings-status "$timings_status" --out "$out/gpu_check_report.md")
[ "$dry_run" = 0 ] || report+=(--dry-run)
exec "$PYTHON" scripts/gpu_report.py "${report[@]}"
