#!/usr/bin/env bash
# ADFNet* (= ADFNet-L, widths 64..512), colour AWGN sigma 50: MIX = WED + DIV2K + Flickr2K + BSD400, patch 128, batch 16, 1000 epochs, Adam 1e-4 halved every 200 epochs. (The official script passed --model adfnet and so trained the small model by mistake.)
# The recipe is configs/adfnet-L_n50.yml; extra arguments override it (see scripts/train_recipe.sh).
exec bash "$(dirname "${BASH_SOURCE[0]}")/train_recipe.sh" adfnet-L_n50 "$@"
