#!/usr/bin/env bash
# The ADFNet paper's Fig. 7 at CPU scale: DnCNN with / without one DConv (depths 5/10/15, 32 channels,
# seeds 1/2/3), trained on the bundled CBSD432 crops at colour sigma 50 and scored on Kodak24 and CBSD68.
# About an hour on an idle 2-core CPU (docs/PLUGIN.md has the arithmetic). Any extra flag goes to
# `.venv/bin/python -m experiments.fig7` (-h lists them), e.g.
#   bash scripts/fig7.sh --data_root /path/to/testsets           # where Kodak24/ and CBSD68/ are
#   bash scripts/fig7.sh --quick                                 # the whole pipeline in seconds
#   bash scripts/fig7.sh --backbones dncnn rdn --channels 32 64 --iterations 200000 --patch_size 64 \
#       --batch_size 64 --lr 1e-4 --train_data datasets/DIV2K/DIV2K_train_HR   # GPU scale (CUDA when available)
# Run the same command again after a kill: finished runs are kept, an interrupted one resumes.
#   PYTHON  interpreter (default: .venv/bin/python when present, else python)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
exec "$PYTHON" -m experiments.fig7 "$@"
