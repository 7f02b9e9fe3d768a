#!/usr/bin/env bash
# ADFNet, colour AWGN sigma 50: DIV2K (800 images), patch 128, batch 16, 1000 epochs x 1000 iterations, Adam 1e-4 halved every 200 epochs, loss sum of squares / (2B).
# The recipe is configs/rgb_n50.yml; extra arguments override it (see scripts/train_recipe.sh).
exec bash "$(dirname "${BASH_SOURCE[0]}")/train_recipe.sh" rgb_n50 "$@"
