#!/usr/bin/env bash
# DBSN at CPU scale (docs/SELF_SUPERVISED.md, "Measured at CPU scale"): (a) gray sigma 25, D-BSN trained on a
# noisy copy of the training images only, distilled into ADFNet, against supervised ADFNet with the same total
# budget, scored on the test sets beside DBSN's published numbers; (b) D-BSN on the 12 bundled SIDD noisy images
# only, scored against their ground truth. A fixed wall-clock budget per training stage (default 30 min: about
# 4.5 hours in all), seeds fixed in advance. Any flag goes to `.venv/bin/python -m experiments.dbsn` (-h), e.g.
#   bash scripts/measure_dbsn.sh --train_dir <trainsets>/gray/Train400 \
#       --test_dirs datasets/testsets/Set12 <testsets>/gray/BSD68          # the measurement of the docs
#   bash scripts/measure_dbsn.sh --budget 1 --limit 2                       # the whole chain in minutes
# Run the same command again after a kill: finished steps are kept, an interrupted training continues.
#   PYTHON  interpreter (default: .venv/bin/python when present, else python)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
exec "$PYTHON" -m experiments.dbsn "$@"
