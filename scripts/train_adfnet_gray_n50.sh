#!/usr/bin/env bash
# ADFNet, gray AWGN sigma 50: DIV2K (800 images, converted to gray), patch 128, batch 16, 950 epochs x 1000 iterations, Adam 1e-4 halved every 220 epochs, loss sum of squares / (2B).
# The recipe is configs/gray_n50.yml; extra arguments override it (see scripts/train_recipe.sh).
exec bash "$(dirname "${BASH_SOURCE[0]}")/train_recipe.sh" gray_n50 "$@"
