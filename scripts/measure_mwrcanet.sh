#!/usr/bin/env bash
# MWRCANet's four-step distillation measured at CPU scale (docs/RAW.md): fixed raw pairs unprocessed from the
# bundled images (shot/read noise, seeds fixed in advance), the recipe configs/distill/mwrcanet.yml at --scale
# cpu, every training step with the same wall-clock budget, then the validation PSNR after each step
# (<out>/steps/summary.md). Five training steps: about 5 x BUDGET minutes, plus the targets and the data.
#   BUDGET=15 bash scripts/measure_mwrcanet.sh              # minutes per training step (default 15)
#   BUDGET=1 bash scripts/measure_mwrcanet.sh --out experiment/mwrcanet_check   # the pipeline only
# Extra flags go to `.venv/bin/python -m experiments.mwrcanet` (-h lists them). The same command continues a
# killed measurement. Run it on a quiet machine: the budget is wall-clock time.
#   PYTHON  interpreter (default: .venv/bin/python when present, else python)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
exec "$PYTHON" -m experiments.mwrcanet --time_budget "${BUDGET:-15}" "$@"
