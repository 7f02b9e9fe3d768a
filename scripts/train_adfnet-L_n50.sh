#!/usr/bin/env bash
# ADFNet* (= ADFNet-L, widths 64..512), colour AWGN sigma 50: MIX = WED + DIV2K + Flickr2K + BSD400, patch 128, batch 16, 1000 epochs, Adam 1e-4 halved every 200 epochs. (The official script passed --model adfnet and so trained the small model by mistake.)
#
# Official command line (it-hao/ADFNet): CUDA_VISIBLE_DEVICES=0,1 python main.py --n_GPUs 2 --model adfnet --data_train MIX --save adfnet-L_n50 --noiseL 50 --patch_size 128 --loss 1*MSE --lr 1e-4 --save_results --epochs 1000
# The flags below give the paper's full-scale recipe; extra arguments are
# passed to train.py after ours, so they override them (argparse keeps the last value). Toy run on
# the bundled data, CPU, about a minute (add --n_val 2 to validate on two images only):
#   bash scripts/train_adfnet-L_n50.sh --dir_data datasets/trainsets/CBSD432_sample --epochs 1 --test_every 2 --patch_size 32 --batch_size 2 --cpu --n_val 2
# Relative paths are relative to the current folder; the run goes to experiment/adfnet-L_n50/ (--dir_experiment, --save).
# Environment: DATA_DIR, VAL_SET (paths below), PYTHON (interpreter, default .venv/bin/python).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
DATA_DIR="${DATA_DIR:-$ROOT/datasets}"                # root holding MIX/{WED,DIV2K,Flickr2K,BSD400}/
VAL_SET="${VAL_SET:-$ROOT/datasets/testsets/McMaster}"     # clean validation images (noise added with a fixed seed)

require_dir "$DATA_DIR/MIX" --dir_data "ADFNet* trains on $DATA_DIR/MIX/{WED,DIV2K,Flickr2K,BSD400}/: put the Waterloo Exploration Database (WED), DIV2K_train_HR, Flickr2K_HR and BSD400 images in these four folders." "$@"
exec "$PYTHON" "$ROOT/train.py" --n_colors 3 --n_GPUs 2 --model adfnet_l --data_train MIX --save adfnet-L_n50 --noiseL 50 --patch_size 128 --loss 1*MSE --lr 1e-4 --save_results --epochs 1000 --dir_data "$DATA_DIR" --data_val "$VAL_SET" "$@"
