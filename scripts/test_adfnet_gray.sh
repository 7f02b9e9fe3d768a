#!/usr/bin/env bash
# Gray AWGN: reproduces the official gray test log (Set12 / BSD68 / Urban100, sigma 15 / 25 / 50).
# Needs checkpoints/adfnet_gray_n{15,25,50}.pt (see checkpoints/README.md) and the gray test sets in
# $TESTSETS (default datasets/testsets): Set12, BSD68, Urban100 as 8-bit gray PNG.
# The official gray test always chopped (threshold 400,000 px) with noise seed 1: --chop, default seed.
# Extra arguments are passed to test.py (e.g. --ensemble, --save_images, --cpu).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
TESTSETS=${TESTSETS:-datasets/testsets}
"$PYTHON" test.py --model adfnet --n_colors 1 --weights 'checkpoints/adfnet_gray_n{sigma}.pt' \
    --input_dir "$TESTSETS/Set12" "$TESTSETS/BSD68" "$TESTSETS/Urban100" \
    --test_noiseL 15 25 50 --result_dir results/adfnet_gray --chop "$@"
