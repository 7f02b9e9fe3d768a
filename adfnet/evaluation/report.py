"""Reporting: per-set tables, the run summary and its CSV, the like-for-like caveats, real-noise scores."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from .baselines import BASELINES
from .published import Published, is_adfnet, published_for
from .results import Evaluation, SetResult, sigma_label
from .synthetic import EvalOptions


def _diff(ours: float, theirs: float | None, digits: int) -> str:
    return "" if theirs is None or math.isnan(ours) else f"{ours - theirs:+.{digits}f}"


def format_set_table(result: SetResult, published: Published | None) -> str:
    """Per-image table of one set and sigma, then the mean and the published number with the difference."""
    width = max([len(r.image) for r in result.rows] + [5])
    lines = [f"{result.set_name}  sigma {sigma_label(result.sigma)}", f"  {'image':<{width}}  {'PSNR':>8}  {'SSIM':>7}"]
    lines += [f"  {r.image:<{width}}  {r.psnr:8.4f}  {r.ssim:7.4f}" for r in result.rows]
    lines.append(f"  {'mean':<{width}}  {result.mean_psnr:8.4f}  {result.mean_ssim:7.4f}  ({len(result.rows)} images)")
    if published is not None:
        ssim_text = "-" if published.ssim is None else f"{published.ssim:.4f}"
        lines.append(
            f"  {'published':<{width}}  {published.psnr:8.4f}  {ssim_text:>7}  ({published.source}); "
            f"ours - published: {_diff(result.mean_psnr, published.psnr, 3)} dB"
            + (f", SSIM {_diff(result.mean_ssim, published.ssim, 4)}" if published.ssim is not None else "")
        )
    if result.errors:
        lines.append(f"  {len(result.errors)} image(s) failed (see the errors above)")
    return "\n".join(lines)


def format_summary(
    results: Sequence[SetResult], model: str, n_colors: int, options: Mapping[str, object] | None = None
) -> str:
    """One line per set and sigma: our means, the published numbers and the differences."""
    header = (
        f"{'set':<12} {'sigma':>5} {'images':>6} {'PSNR':>8} {'SSIM':>7} {'pub.PSNR':>9} {'pub.SSIM':>8} "
        f"{'dPSNR':>7} {'dSSIM':>8}  source"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        pub = published_for(model, n_colors, r.set_name, r.sigma, options)
        pub_p = f"{pub.psnr:9.3f}" if pub else f"{'-':>9}"
        pub_s = f"{pub.ssim:8.4f}" if pub and pub.ssim is not None else f"{'-':>8}"
        lines.append(
            f"{r.set_name:<12} {sigma_label(r.sigma):>5} {len(r.rows):>6} {r.mean_psnr:8.3f} {r.mean_ssim:7.4f} "
            f"{pub_p} {pub_s} {_diff(r.mean_psnr, pub.psnr if pub else None, 3):>7} "
            f"{_diff(r.mean_ssim, pub.ssim if pub else None, 4):>8}  {pub.source if pub else ''}"
        )
    return "\n".join(lines)


def write_summary_csv(
    path: Path, results: Sequence[SetResult], model: str, n_colors: int, options: Mapping[str, object] | None = None
) -> None:
    """``summary.csv``: one row per set and sigma with the published numbers and differences."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["set", "sigma", "images", "failed", "psnr", "ssim", "published_psnr", "published_ssim", "source"]
        )
        for r in results:
            pub = published_for(model, n_colors, r.set_name, r.sigma, options)
            writer.writerow(
                [
                    r.set_name,
                    sigma_label(r.sigma),
                    len(r.rows),
                    len(r.errors),
                    f"{r.mean_psnr:.6f}",
                    f"{r.mean_ssim:.6f}",
                    pub.psnr if pub else "",
                    pub.ssim if pub and pub.ssim is not None else "",
                    pub.source if pub else "",
                ]
            )


def comparison_caveats(n_colors: int, chop: bool, ensemble: bool, limited: bool, network: bool = True) -> list[str]:
    """Why this run's means are not like-for-like with the published numbers (empty when they are).

    ``network`` False: a classical baseline, published without chop or self-ensemble.
    """
    caveats = []
    if limited:
        caveats.append("--limit evaluated part of a set, the published numbers are full-set means")
    if ensemble:
        caveats.append("--ensemble: the official gray log and the paper's tables are without self-ensemble")
    if n_colors == 1 and not chop and network:
        caveats.append("gray without --chop: the official gray test always chopped")
    return caveats


def format_run(
    run: Evaluation, model: str, opts: EvalOptions, result_dir: Path, options: Mapping[str, object] | None = None
) -> str:
    """The whole report of a synthetic run: a table per set and sigma, the summary and the caveats."""
    blocks = [
        format_set_table(r, published_for(model, opts.n_colors, r.set_name, r.sigma, options)) for r in run.results
    ]
    if run.results:
        variant = "" if is_adfnet(options) else f", options {dict(options or {})}"
        blocks.append(
            f"\nSummary ({model}{variant}, n_colors {opts.n_colors}, chop {opts.chop}, "
            f"ensemble {opts.ensemble}):\n" + format_summary(run.results, model, opts.n_colors, options)
        )
        caveats = comparison_caveats(opts.n_colors, opts.chop, opts.ensemble, run.limited, model not in BASELINES)
        if caveats and any(published_for(model, opts.n_colors, r.set_name, r.sigma, options) for r in run.results):
            blocks.append("note: not like-for-like with the published numbers: " + "; ".join(caveats))
        blocks.append(f"results in {result_dir}")
    return "\n".join(blocks)


def format_real_scores(scores: Sequence[tuple[float, float, float]], published: Published | None) -> str:
    """Mean PSNR and both SSIM flavours, with the published number and the difference."""
    n = len(scores)
    mp, ms, m3 = (sum(s[i] for s in scores) / n for i in range(3))
    text = f"{n} images: PSNR {mp:.4f} dB, SSIM {ms:.4f} (per channel), SSIM {m3:.4f} (MATLAB 3-D)"
    if published is not None:
        text += (
            f"\npublished ({published.source}): PSNR {published.psnr:.2f}, SSIM {published.ssim:.3f}; "
            f"ours - published: {mp - published.psnr:+.3f} dB, SSIM(3-D) {m3 - (published.ssim or 0):+.4f}"
        )
    return text


def write_score_csv(path: Path, names: Sequence[str], scores: Sequence[tuple[float, float, float]]) -> None:
    """Per-image ``image, psnr, ssim, ssim_matlab3d`` rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "psnr", "ssim", "ssim_matlab3d"])
        for name, (p, s, s3) in zip(names, scores, strict=True):
            writer.writerow([name, f"{p:.6f}", f"{s:.6f}", f"{s3:.6f}"])
