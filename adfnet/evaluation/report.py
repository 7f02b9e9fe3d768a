"""Reporting: per-set tables, the run summary and its CSV, the like-for-like caveats, real-noise scores."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from adfnet.data.noise import NoiseModel, build_noise

from .published import Published, is_adfnet, published_for, reference_for
from .results import Evaluation, SetResult, sigma_label
from .synthetic import EvalOptions


def _diff(ours: float, theirs: float | None, digits: int) -> str:
    return "" if theirs is None or math.isnan(ours) else f"{ours - theirs:+.{digits}f}"


def result_noise(result: SetResult) -> NoiseModel:
    """The noise model a result was measured with."""
    return build_noise(result.noise_name, result.noise_params or (result.sigma,))


def _noise_reference(result: SetResult, n_colors: int) -> Published | None:
    noise = result_noise(result)
    return reference_for(n_colors, result.set_name, noise.name, noise.params)


def format_set_table(result: SetResult, published: Published | None, reference: Published | None = None) -> str:
    """Per-image table of one set and noise, then the mean, the published number with the difference,
    and ``reference``: another method's supervised number for the same setting (DBSN's N2C column)."""
    width = max([len(r.image) for r in result.rows] + [5])
    noise = result_noise(result)
    title = f"sigma {sigma_label(result.sigma)}" if noise.is_awgn else f"noise {noise.describe()}"
    lines = [f"{result.set_name}  {title}", f"  {'image':<{width}}  {'PSNR':>8}  {'SSIM':>7}"]
    lines += [f"  {r.image:<{width}}  {r.psnr:8.4f}  {r.ssim:7.4f}" for r in result.rows]
    lines.append(f"  {'mean':<{width}}  {result.mean_psnr:8.4f}  {result.mean_ssim:7.4f}  ({len(result.rows)} images)")
    if published is not None:
        ssim_text = "-" if published.ssim is None else f"{published.ssim:.4f}"
        lines.append(
            f"  {'published':<{width}}  {published.psnr:8.4f}  {ssim_text:>7}  ({published.source}); "
            f"ours - published: {_diff(result.mean_psnr, published.psnr, 3)} dB"
            + (f", SSIM {_diff(result.mean_ssim, published.ssim, 4)}" if published.ssim is not None else "")
        )
    if reference is not None:
        lines.append(
            f"  {'reference':<{width}}  {reference.psnr:8.4f}  {'-':>7}  ({reference.source}); "
            f"ours - reference: {_diff(result.mean_psnr, reference.psnr, 3)} dB"
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
        pub = published_for(model, n_colors, r.set_name, r.sigma, options) or _noise_reference(r, n_colors)
        pub_p = f"{pub.psnr:9.3f}" if pub else f"{'-':>9}"
        pub_s = f"{pub.ssim:8.4f}" if pub and pub.ssim is not None else f"{'-':>8}"
        lines.append(
            f"{r.set_name:<12} {_sigma_cell(r):>5} {len(r.rows):>6} {r.mean_psnr:8.3f} {r.mean_ssim:7.4f} "
            f"{pub_p} {pub_s} {_diff(r.mean_psnr, pub.psnr if pub else None, 3):>7} "
            f"{_diff(r.mean_ssim, pub.ssim if pub else None, 4):>8}  {pub.source if pub else ''}"
        )
    return "\n".join(lines)


def _sigma_cell(result: SetResult) -> str:
    return sigma_label(result.sigma) if result.noise_name == "awgn" else "-"


def write_summary_csv(
    path: Path, results: Sequence[SetResult], model: str, n_colors: int, options: Mapping[str, object] | None = None
) -> None:
    """``summary.csv``: one row per set and sigma with the published numbers and differences."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["set", "sigma", "images", "failed", "psnr", "ssim", "published_psnr", "published_ssim", "source", "noise"]
        )
        for r in results:
            pub = published_for(model, n_colors, r.set_name, r.sigma, options) or _noise_reference(r, n_colors)
            writer.writerow(
                [
                    r.set_name,
                    "" if r.noise_name != "awgn" else sigma_label(r.sigma),
                    len(r.rows),
                    len(r.errors),
                    f"{r.mean_psnr:.6f}",
                    f"{r.mean_ssim:.6f}",
                    pub.psnr if pub else "",
                    pub.ssim if pub and pub.ssim is not None else "",
                    pub.source if pub else "",
                    result_noise(r).describe(),
                ]
            )


def comparison_caveats(n_colors: int, chop: bool, ensemble: bool, limited: bool) -> list[str]:
    """Why this run's means are not like-for-like with the published numbers (empty when they are)."""
    caveats = []
    if limited:
        caveats.append("--limit evaluated part of a set, the published numbers are full-set means")
    if ensemble:
        caveats.append("--ensemble: the official gray log and the paper's tables are without self-ensemble")
    if n_colors == 1 and not chop:
        caveats.append("gray without --chop: the official gray test always chopped")
    return caveats


def format_run(
    run: Evaluation, model: str, opts: EvalOptions, result_dir: Path, options: Mapping[str, object] | None = None
) -> str:
    """The whole report of a synthetic run: a table per set and sigma, the summary and the caveats."""
    blocks = [
        format_set_table(
            r,
            published_for(model, opts.n_colors, r.set_name, r.sigma, options),
            _noise_reference(r, opts.n_colors),
        )
        for r in run.results
    ]
    if run.results:
        variant = "" if is_adfnet(options) else f", options {dict(options or {})}"
        blocks.append(
            f"\nSummary ({model}{variant}, n_colors {opts.n_colors}, chop {opts.chop}, "
            f"ensemble {opts.ensemble}, noise {opts.noise.describe() if opts.noise else 'awgn (official seed)'}):\n"
            + format_summary(run.results, model, opts.n_colors, options)
        )
        caveats = comparison_caveats(opts.n_colors, opts.chop, opts.ensemble, run.limited)
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
