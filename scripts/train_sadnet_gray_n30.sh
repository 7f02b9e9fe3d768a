#!/usr/bin/env bash
# SADNet, gray AWGN sigma 30: the release's recipe (200 epochs, Adam 1e-4 halved every 60, L2, noisy clipped to [0, 1]).
# The recipe is configs/sadnet_gray_n30.yml; extra arguments override it (see scripts/train_recipe.sh).
exec bash "$(dirname "${BASH_SOURCE[0]}")/train_recipe.sh" sadnet_gray_n30 "$@"
