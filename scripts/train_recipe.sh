#!/usr/bin/env bash
# Train one paper recipe: bash scripts/train_recipe.sh <recipe> [train.py flags...]
#
# <recipe> names configs/<recipe>.yml (ADFNet: gray_n15/25/50, rgb_n10/30/50/70, adfnet-L_n50, sidd; SADNet:
# sadnet_gray_n10/30/50/70, sadnet_rgb_n10/30/50/70, sadnet_sidd); the per-task scripts
# scripts/train_adfnet_*.sh and scripts/train_sadnet_*.sh are one-line calls of this runner. Extra arguments go to
# train.py after the recipe, so they override it. Toy run on the bundled data, CPU, about a minute:
#   bash scripts/train_adfnet_rgb_n50.sh --dir_data datasets/trainsets/CBSD432_sample --epochs 1 --test_every 2 \
#       --patch_size 32 --batch_size 2 --cpu --n_val 2
# Real noise (SIDD) toy run on the bundled samples:
#   .venv/bin/adfnet-patches --src_dir datasets/real/SIDD_samples --tar_dir experiment/sidd_toy/train \
#       --ps 64 --num_patches 2 --num_cores 1
#   bash scripts/train_adfnet_real.sh --dir_data experiment/sidd_toy/train --data_val experiment/sidd_toy/train \
#       --n_val 2 --epochs 1 --patch_size 32 --batch_size 4 --n_threads 0 --val_after_epoch 0 --cpu
# Relative paths are relative to the current folder; the run goes to experiment/<save>/ (--dir_experiment, --save).
# Environment: DATA_DIR (root holding DIV2K/ or MIX/), VAL_SET (clean validation images), TRAIN_DIR and VAL_DIR
# (SIDD hq/ + lq/ folders), PYTHON (interpreter, default .venv/bin/python).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe=${1:?usage: train_recipe.sh <recipe> [train.py flags...]}
shift
config="$ROOT/configs/$recipe.yml"
[ -f "$config" ] || { echo "error: no recipe $config (see configs/)" >&2; exit 1; }

if grep -q '^task: paired' "$config"; then
    TRAIN_DIR="${TRAIN_DIR:-$ROOT/datasets/SIDD/train}"
    VAL_DIR="${VAL_DIR:-$ROOT/datasets/SIDD/val}"
    require_dir "$TRAIN_DIR/lq" --dir_data "Download SIDD-Medium sRGB (SIDD_Medium_Srgb.zip) from https://abdokamel.github.io/sidd/ and cut it into patches: adfnet-patches --src_dir <SIDD_Medium_Srgb/Data> --tar_dir $TRAIN_DIR, set TRAIN_DIR=..., or pass --dir_data <folder with hq/ and lq/>." "$@"
    require_dir "$VAL_DIR/lq" --data_val "Put the SIDD validation pairs there as hq/ (clean) and lq/ (noisy) PNGs with equal names, set VAL_DIR=..., or pass --data_val <folder with hq/ and lq/>." "$@"
    data=(--dir_data "$TRAIN_DIR" --data_val "$VAL_DIR")
else
    DATA_DIR="${DATA_DIR:-$ROOT/datasets}"
    if grep -q '^n_colors: 1' "$config"; then val=Set12; else val=McMaster; fi
    VAL_SET="${VAL_SET:-$ROOT/datasets/testsets/$val}"
    if grep -q '^data_train: MIX' "$config"; then
        require_dir "$DATA_DIR/MIX" --dir_data "ADFNet* trains on $DATA_DIR/MIX/{WED,DIV2K,Flickr2K,BSD400}/: put the Waterloo Exploration Database (WED), DIV2K_train_HR, Flickr2K_HR and BSD400 images in these four folders." "$@"
    else
        require_dir "$DATA_DIR/DIV2K" --dir_data "Download DIV2K_train_HR.zip (800 images) from https://data.vision.ee.ethz.ch/cvl/DIV2K/ and unzip it so that the images are in $DATA_DIR/DIV2K/DIV2K_train_HR/." "$@"
    fi
    data=(--dir_data "$DATA_DIR" --data_val "$VAL_SET")
fi
exec "$PYTHON" "$ROOT/train.py" --config "$config" "${data[@]}" "$@"
