#!/usr/bin/env bash
# ADFNet, raw (packed Bayer) denoising on unprocessed DIV2K with shot + read noise: our recipe (configs/raw.yml;
# the paper has none). Extra arguments override it (see scripts/train_recipe.sh). Toy run on the bundled data:
#   bash scripts/train_adfnet_raw.sh --dir_data datasets/trainsets/CBSD432_sample --epochs 1 --test_every 2 \
#       --patch_size 32 --batch_size 2 --cpu --n_val 1 --n_GPUs 1
exec bash "$(dirname "${BASH_SOURCE[0]}")/train_recipe.sh" raw "$@"
