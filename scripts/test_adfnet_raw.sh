#!/usr/bin/env bash
# Raw denoising on SIDD's raw blocks. Reference point: MWRCANet (NTIRE 2020 raw winner), SIDD raw validation
# PSNR 52.35 dB without and 52.38 dB with its x8 self-ensemble (peak 1, mean over all blocks).
# Needs a raw model (checkpoints/adfnet_raw.pt, e.g. experiment/adfnet_raw/model/model_best.pt of
# scripts/train_adfnet_raw.sh) and, under $REAL (default datasets):
#   SIDD/val_raw/{ValidationNoisyBlocksRaw,ValidationGtBlocksRaw}.mat   (scored, plain and CFA-aware x8 ensemble)
#   SIDD/benchmark_raw/BenchmarkNoisyBlocksRaw.mat                      (-> SubmitRaw.mat for the server)
# Missing inputs are skipped. CFA=<pattern> (default RGGB) packs the blocks; extra arguments go to every command.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
REAL=${REAL:-datasets}
WEIGHTS=${WEIGHTS:-checkpoints/adfnet_raw.pt}
CFA=${CFA:-RGGB}
status=0
ran=0
if [ -f "$REAL/SIDD/val_raw/ValidationNoisyBlocksRaw.mat" ]; then
    ran=$((ran + 1))
    "$PYTHON" -m adfnet.cli.real sidd-raw-val --input_dir "$REAL/SIDD/val_raw" --weights "$WEIGHTS" \
        --cfa_pattern "$CFA" --result_dir results/sidd_raw_val "$@" || status=1
    "$PYTHON" -m adfnet.cli.real sidd-raw-val --input_dir "$REAL/SIDD/val_raw" --weights "$WEIGHTS" \
        --cfa_pattern "$CFA" --result_dir results/sidd_raw_val_ensemble --ensemble "$@" || status=1
else
    echo "skip SIDD raw validation: $REAL/SIDD/val_raw/ValidationNoisyBlocksRaw.mat not found"
fi
if [ -f "$REAL/SIDD/benchmark_raw/BenchmarkNoisyBlocksRaw.mat" ]; then
    ran=$((ran + 1))
    "$PYTHON" -m adfnet.cli.real sidd-raw-benchmark --input_dir "$REAL/SIDD/benchmark_raw" --weights "$WEIGHTS" \
        --cfa_pattern "$CFA" --result_dir results/sidd_raw_benchmark "$@" || status=1
else
    echo "skip SIDD raw benchmark: $REAL/SIDD/benchmark_raw/BenchmarkNoisyBlocksRaw.mat not found"
fi
if [ "$ran" -eq 0 ]; then
    echo "error: no SIDD raw blocks under $REAL/SIDD (see datasets/README.md for the layout); nothing was evaluated" >&2
    exit 1
fi
exit $status
