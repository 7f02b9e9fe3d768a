"""Evaluation: published numbers, result records, the synthetic-noise run, reporting, real-noise helpers.

Import direction: ``published`` and ``results`` depend on nothing here; ``denoiser`` neither, ``baselines``
on ``denoiser``; ``synthetic`` on ``results``, ``denoiser``, ``baselines``; ``report`` on those;
``seeds`` and ``harness`` (docs/HARNESS.md) on ``published`` and ``results``; ``real`` only on the ground
floor. The command lines in :mod:`adfnet.cli` print what these return.
"""

from .published import ADFNET_OPTIONS, PUBLISHED, PUBLISHED_ABLATIONS, PUBLISHED_REAL, Published, published_for, set_key
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
from .synthetic import DEFAULT_SEEDS, EvalOptions, check_outputs_apart, evaluate_set, run_evaluation, set_folders

__all__ = [
    "ADFNET_OPTIONS",
    "DEFAULT_SEEDS",
    "PUBLISHED",
    "PUBLISHED_ABLATIONS",
    "PUBLISHED_REAL",
    "EvalOptions",
    "Evaluation",
    "ImageScore",
    "Published",
    "SetResult",
    "check_outputs_apart",
    "comparison_caveats",
    "denoise_blocks",
    "denoise_uint8",
    "evaluate_set",
    "format_real_scores",
    "format_run",
    "format_set_table",
    "format_summary",
    "published_for",
    "run_evaluation",
    "score_pairs",
    "set_folders",
    "set_key",
    "sigma_label",
    "write_score_csv",
    "write_summary_csv",
]
