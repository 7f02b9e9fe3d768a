#!/usr/bin/env bash
# ADFNet, real noise (SIDD): configs/sidd.yml = the official ADFNet_Real recipe: 300 random 256x256 patches per
# SIDD-Medium pair, patch 128, batch 16, 160 epochs (120 + 40), Adam 1e-4 (wd 1e-8), 3 warm-up epochs then
# cosine to 1e-6 (T_max 157), Charbonnier on the clamped output, MixUp from epoch 6, validation 3x per epoch.
#
# Official command line (it-hao/ADFNet, ADFNet_Real): python train_denoising.py
# Extra arguments are passed to train.py and override the config. Toy run on the bundled samples (CPU):
#   python scripts/generate_patches_SIDD.py --src_dir datasets/real/SIDD_samples --tar_dir experiment/sidd_toy/train \
#       --ps 64 --num_patches 2 --num_cores 1
#   bash scripts/train_adfnet_real.sh --dir_data experiment/sidd_toy/train --data_val experiment/sidd_toy/train \
#       --n_val 2 --epochs 1 --patch_size 32 --batch_size 4 --n_threads 0 --val_after_epoch 0 --cpu
# (--dir_data = TRAIN_DIR, --data_val = VAL_DIR; both hold hq/ and lq/.) The run goes to experiment/ADFNet/.
# Environment: TRAIN_DIR, VAL_DIR (paths below), PYTHON (interpreter, default .venv/bin/python).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
TRAIN_DIR="${TRAIN_DIR:-$ROOT/datasets/SIDD/train}"   # hq/ + lq/ patches
VAL_DIR="${VAL_DIR:-$ROOT/datasets/SIDD/val}"         # hq/ + lq/ validation images

require_dir "$TRAIN_DIR/lq" --dir_data "Download SIDD-Medium sRGB (SIDD_Medium_Srgb.zip) from https://abdokamel.github.io/sidd/ and cut it into patches: python scripts/generate_patches_SIDD.py --src_dir <SIDD_Medium_Srgb/Data> --tar_dir $TRAIN_DIR, set TRAIN_DIR=..., or pass --dir_data <folder with hq/ and lq/>." "$@"
require_dir "$VAL_DIR/lq" --data_val "Put the SIDD validation pairs there as hq/ (clean) and lq/ (noisy) PNGs with equal names, set VAL_DIR=..., or pass --data_val <folder with hq/ and lq/>." "$@"
exec "$PYTHON" "$ROOT/train.py" --config "$ROOT/configs/sidd.yml" --dir_data "$TRAIN_DIR" --data_val "$VAL_DIR" "$@"
