#!/usr/bin/env bash
# ADFNet, real noise (SIDD): the official ADFNet_Real recipe.
# The recipe is configs/sidd.yml; extra arguments override it (see scripts/train_recipe.sh).
exec bash "$(dirname "${BASH_SOURCE[0]}")/train_recipe.sh" sidd "$@"
