#!/usr/bin/env bash
# ADFNet, gray AWGN sigma 15: DIV2K (800 images, converted to gray), patch 128, batch 16, 950 epochs x 1000 iterations, Adam 1e-4 halved every 220 epochs, loss sum of squares / (2B).
#
# Official command line (it-hao/ADFNet): CUDA_VISIBLE_DEVICES=0 python main.py --n_GPUs 1 --model adfnet --save adfnet_n15 --noiseL 15 --patch_size 128 --loss 1*MSE --lr 1e-4 --save_results
# The flags below give the paper's full-scale recipe; extra arguments are
# passed to train.py after ours, so they override them (argparse keeps the last value). Toy run on
# the bundled data, CPU, about a minute (add --n_val 2 to validate on two images only):
#   bash scripts/train_adfnet_gray_n15.sh --dir_data datasets/trainsets/Train400_sample --epochs 1 --test_every 2 --patch_size 32 --batch_size 2 --cpu
# Relative paths are relative to the current folder; the run goes to experiment/adfnet_gray_n15/ (--dir_experiment, --save).
# Environment: DATA_DIR, VAL_SET (paths below), PYTHON (interpreter, default .venv/bin/python).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
DATA_DIR="${DATA_DIR:-$ROOT/datasets}"                # root holding DIV2K/ (DIV2K_train_HR/ inside)
VAL_SET="${VAL_SET:-$ROOT/datasets/testsets/Set12}"     # clean validation images (noise added with a fixed seed)

require_dir "$DATA_DIR/DIV2K" --dir_data "Download DIV2K_train_HR.zip (800 images) from https://data.vision.ee.ethz.ch/cvl/DIV2K/ and unzip it so that the images are in $DATA_DIR/DIV2K/DIV2K_train_HR/." "$@"
exec "$PYTHON" "$ROOT/train.py" --n_colors 1 --n_GPUs 1 --model adfnet --save adfnet_gray_n15 --noiseL 15 --patch_size 128 --loss 1*MSE --lr 1e-4 --save_results --dir_data "$DATA_DIR" --data_val "$VAL_SET" "$@"
