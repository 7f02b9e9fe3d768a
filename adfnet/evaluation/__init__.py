"""Evaluation: published numbers, result records, the synthetic-noise run, reporting, real-noise helpers.

Import direction: ``published``, ``protocols``, ``results`` and ``denoiser`` depend on nothing here;
``baselines`` on ``denoiser``; ``pictures`` on ``published`` and ``results``; ``synthetic`` on ``protocols``,
``results``, ``pictures``, ``denoiser`` and ``baselines``; ``report`` on all of these; ``seeds`` on ``published``
and ``results``; ``real`` and ``raw`` only on the ground floor and ``inference``. The command lines in
:mod:`adfnet.cli` print what these return; the harness validation report (docs/HARNESS.md) is written by
``experiments/harness.py`` from them.
"""

from .pictures import psnr_plots
from .protocols import PROTOCOLS, Protocol, get_protocol
from .published import (
    ADFNET_OPTIONS,
    PUBLISHED,
    PUBLISHED_ABLATIONS,
    PUBLISHED_REAL,
    REPRODUCED,
    Published,
    published_for,
    published_real_for,
    reproduced_for,
    set_key,
)
from .real import denoise_blocks, denoise_uint8, score_pairs
from .report import (
    comparison_caveats,
    format_real_scores,
    format_run,
    format_set_table,
    format_summary,
    write_score_csv,
    write_summary_csv,
)
from .results import Evaluation, ImageScore, SetResult, sigma_label
from .synthetic import DEFAULT_SEEDS, EvalOptions, evaluate_set, planned_outputs, run_evaluation, set_folders

__all__ = [
    "ADFNET_OPTIONS",
    "DEFAULT_SEEDS",
    "PUBLISHED",
    "PUBLISHED_ABLATIONS",
    "PUBLISHED_REAL",
    "PROTOCOLS",
    "REPRODUCED",
    "EvalOptions",
    "Evaluation",
    "ImageScore",
    "Protocol",
    "Published",
    "SetResult",
    "comparison_caveats",
    "denoise_blocks",
    "denoise_uint8",
    "evaluate_set",
    "format_real_scores",
    "format_run",
    "format_set_table",
    "format_summary",
    "get_protocol",
    "planned_outputs",
    "psnr_plots",
    "published_for",
    "published_real_for",
    "reproduced_for",
    "run_evaluation",
    "score_pairs",
    "set_folders",
    "set_key",
    "sigma_label",
    "write_score_csv",
    "write_summary_csv",
]
