#!/usr/bin/env bash
# SADNet, real noise (SIDD): the release's recipe (200 epochs, Adam 1e-4 halved every 60, L1).
# The recipe is configs/sadnet_sidd.yml; extra arguments override it (see scripts/train_recipe.sh).
exec bash "$(dirname "${BASH_SOURCE[0]}")/train_recipe.sh" sadnet_sidd "$@"
