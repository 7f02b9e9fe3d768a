#!/usr/bin/env bash
# Colour AWGN: paper Table 1 (Kodak24 / CBSD68 sigma 30, 50, 70; McMaster sigma 50; the official colour
# log for sigma 50) and Table 2 (ADFNet* = adfnet_l, sigma 50).
# Needs checkpoints/adfnet_rgb_n{10,30,50,70}.pt and checkpoints/adfnet_l_rgb_n50.pt (see
# checkpoints/README.md) and the colour test sets in $TESTSETS (default datasets/testsets): Kodak24,
# CBSD68, McMaster. Noise seed 20 (official), --chop as the run that produced the official log.
# Extra arguments are passed to test.py (e.g. --ensemble, --save_images, --cpu).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
TESTSETS=${TESTSETS:-datasets/testsets}
SETS=("$TESTSETS/Kodak24" "$TESTSETS/CBSD68" "$TESTSETS/McMaster")
"$PYTHON" test.py --model adfnet --n_colors 3 --weights 'checkpoints/adfnet_rgb_n{sigma}.pt' \
    --input_dir "${SETS[@]}" --test_noiseL 10 30 50 70 --result_dir results/adfnet_rgb --chop "$@"
"$PYTHON" test.py --model adfnet_l --n_colors 3 --weights checkpoints/adfnet_l_rgb_n50.pt \
    --input_dir "${SETS[@]}" --test_noiseL 50 --result_dir results/adfnet_l_rgb --chop "$@"
