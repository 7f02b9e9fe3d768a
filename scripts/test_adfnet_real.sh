#!/usr/bin/env bash
# Real noise: paper Table 3 (SIDD validation 39.79 / 0.960, SIDD benchmark 39.63 / 0.958,
# DND 39.87 / 0.955). Needs checkpoints/adfnet_real.pth and, under $REAL (default datasets):
#   SIDD/val_mat/{ValidationNoisyBlocksSrgb,ValidationGtBlocksSrgb}.mat   (scored here)
#   SIDD/benchmark/BenchmarkNoisyBlocksSrgb.mat                           (-> submission for the server)
#   DND/lq/%04d_%d.png (the 50 x 20 sRGB crops)                            (-> submission for the server)
# Missing inputs are skipped. The official real scripts chopped and self-ensembled together:
# pass "--chop --ensemble" to do the same. Extra arguments go to every script.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
REAL=${REAL:-datasets}
WEIGHTS=${WEIGHTS:-checkpoints/adfnet_real.pth}
status=0
ran=0
if [ -f "$REAL/SIDD/val_mat/ValidationNoisyBlocksSrgb.mat" ]; then
    ran=$((ran + 1))
    "$PYTHON" -m adfnet.cli.real sidd-val-mat --input_dir "$REAL/SIDD/val_mat" --weights "$WEIGHTS" \
        --result_dir results/sidd_val_mat "$@" || status=1
    "$PYTHON" -m adfnet.cli.real score-sidd --submission results/sidd_val_mat/mat/SubmitSrgb.mat \
        --gt "$REAL/SIDD/val_mat/ValidationGtBlocksSrgb.mat" || status=1
else
    echo "skip SIDD validation: $REAL/SIDD/val_mat/ValidationNoisyBlocksSrgb.mat not found"
fi
if [ -f "$REAL/SIDD/benchmark/BenchmarkNoisyBlocksSrgb.mat" ]; then
    ran=$((ran + 1))
    "$PYTHON" -m adfnet.cli.real sidd-benchmark --input_dir "$REAL/SIDD/benchmark" --weights "$WEIGHTS" \
        --result_dir results/sidd_benchmark "$@" || status=1
else
    echo "skip SIDD benchmark: $REAL/SIDD/benchmark/BenchmarkNoisyBlocksSrgb.mat not found"
fi
if [ -d "$REAL/DND/lq" ]; then
    ran=$((ran + 1))
    "$PYTHON" -m adfnet.cli.real dnd --input_dir "$REAL/DND" --weights "$WEIGHTS" --result_dir results/dnd "$@" \
        || status=1
else
    echo "skip DND: $REAL/DND/lq not found"
fi
if [ "$ran" -eq 0 ]; then
    echo "error: no SIDD or DND data under $REAL (see datasets/README.md for the layout); nothing was evaluated" >&2
    exit 1
fi
exit $status
