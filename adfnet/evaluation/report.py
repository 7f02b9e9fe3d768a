"""Reporting: per-set tables, the run summary and its CSV, the like-for-like caveats, real-noise scores."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from adfnet.data.noise import sigma_label
from adfnet.fileio import text_file

from .baselines import BASELINES
from .protocols import get_protocol
from .published import Published, dbsn_rows_for, is_adfnet, published_for, reference_for, reproduced_for
from .results import Evaluation, SetResult
from .synthetic import EvalOptions


def _diff(ours: float, theirs: float | None, digits: int) -> str:
    return "" if theirs is None or math.isnan(ours) else f"{ours - theirs:+.{digits}f}"


def _published(
    result: SetResult, model: str, n_colors: int, options: Mapping[str, object] | None
) -> tuple[Published | None, Published | None]:
    """The published and the reproduced number of ``model`` for this result (AWGN: keyed by sigma)."""
    if not result.noise.is_awgn:
        return None, None
    sigma = result.noise.sigma
    return published_for(model, n_colors, result.set_name, sigma, options), reproduced_for(
        model, n_colors, result.set_name, sigma
    )


def _noise_references(result: SetResult, n_colors: int) -> list[Published]:
    """DBSN's numbers for the same set and noise model (D-BSN alone, D-BSN distilled, N2C), shown beside ours."""
    return dbsn_rows_for(n_colors, result.set_name, result.noise.name, result.noise.params)


def _summary_reference(result: SetResult, model: str, n_colors: int) -> Published | None:
    """The number the summary compares with when the model has no published one of its own: DBSN's D-BSN row for
    ``dbsn`` (its MAP output is what D-BSN published), else DBSN's supervised N2C number."""
    if model == "dbsn":
        rows = _noise_references(result, n_colors)
        return rows[0] if rows and "D-BSN" in rows[0].source else None
    return reference_for(n_colors, result.set_name, result.noise.name, result.noise.params)


def format_set_table(
    result: SetResult,
    published: Published | None,
    reproduced: Published | None = None,
    protocol: str = "adfnet",
    references: Sequence[Published] = (),
) -> str:
    """Per-image table of one set and noise (measured under ``protocol``), then the mean, the noisy input's
    scores (what denoising started from), the published (and independently reproduced) numbers with the
    differences, and ``references``: another method's numbers for the same setting (DBSN's D-BSN, distilled
    and N2C rows)."""
    width = max([len(r.image) for r in result.rows] + [11])
    title = result.noise.label() if result.noise.is_awgn else f"noise {result.noise.describe()}"
    lines = [
        f"{result.set_name}  {title}  ({protocol} protocol)",
        f"  {'image':<{width}}  {'PSNR':>8}  {'SSIM':>7}",
    ]
    lines += [f"  {r.image:<{width}}  {r.psnr:8.4f}  {r.ssim:7.4f}" for r in result.rows]
    lines.append(f"  {'mean':<{width}}  {result.mean_psnr:8.4f}  {result.mean_ssim:7.4f}  ({len(result.rows)} images)")
    if result.rows:
        lines.append(
            f"  {'noisy input':<{width}}  {result.mean_noisy_psnr:8.4f}  {result.mean_noisy_ssim:7.4f}  (before "
            f"denoising); ours - noisy input: {_diff(result.mean_psnr, result.mean_noisy_psnr, 3)} dB"
        )
    for name, ref in (("published", published), ("reproduced", reproduced)):
        if ref is None:
            continue
        ssim_text = "-" if ref.ssim is None else f"{ref.ssim:.4f}"
        lines.append(
            f"  {name:<{width}}  {ref.psnr:8.4f}  {ssim_text:>7}  ({ref.label}); "
            f"ours - {name}: {_diff(result.mean_psnr, ref.psnr, 3)} dB"
            + (f", SSIM {_diff(result.mean_ssim, ref.ssim, 4)}" if ref.ssim is not None else "")
        )
    for reference in references:
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
    """One line per set and sigma: our means, the published numbers and the differences (the source says the
    published number's protocol; an independent reproduction, if any, follows it)."""
    header = (
        f"{'set':<12} {'sigma':>5} {'images':>6} {'noisy':>7} {'PSNR':>8} {'SSIM':>7} {'pub.PSNR':>9} {'pub.SSIM':>8} "
        f"{'dPSNR':>7} {'dSSIM':>8}  source"
    )
    lines = [header, "-" * len(header)]  # noisy: the noisy input's PSNR (before denoising)
    for r in results:
        pub, rep = _published(r, model, n_colors, options)
        pub = pub or _summary_reference(r, model, n_colors)
        pub_p = f"{pub.psnr:9.3f}" if pub else f"{'-':>9}"
        pub_s = f"{pub.ssim:8.4f}" if pub and pub.ssim is not None else f"{'-':>8}"
        lines.append(
            f"{r.set_name:<12} {_sigma_cell(r):>5} {len(r.rows):>6} {r.mean_noisy_psnr:7.3f} {r.mean_psnr:8.3f} "
            f"{r.mean_ssim:7.4f} "
            f"{pub_p} {pub_s} {_diff(r.mean_psnr, pub.psnr if pub else None, 3):>7} "
            f"{_diff(r.mean_ssim, pub.ssim if pub else None, 4):>8}  {_sources(pub, rep)}"
        )
    return "\n".join(lines)


def _sigma_cell(result: SetResult) -> str:
    return sigma_label(result.noise.sigma) if result.noise.is_awgn else "-"


def _sources(pub: Published | None, rep: Published | None) -> str:
    text = pub.label if pub else ""
    return text + (f" | reproduced {rep.psnr:.2f} ({rep.label})" if rep else "")


def write_summary_csv(
    path: Path,
    results: Sequence[SetResult],
    model: str,
    n_colors: int,
    options: Mapping[str, object] | None = None,
    protocol: str = "adfnet",
) -> None:
    """``summary.csv``: one row per set and sigma (our ``protocol``) with the published and reproduced numbers,
    each with its source and protocol."""
    with text_file(path) as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["set", "sigma", "images", "failed", "psnr", "ssim", "published_psnr", "published_ssim", "source"]
            + ["noise", "protocol", "published_protocol", "reproduced_psnr", "reproduced_source"]
            + ["noisy_psnr", "noisy_ssim"]
        )
        for r in results:
            pub, rep = _published(r, model, n_colors, options)
            pub = pub or _summary_reference(r, model, n_colors)
            writer.writerow(
                [
                    r.set_name,
                    sigma_label(r.noise.sigma) if r.noise.is_awgn else "",
                    len(r.rows),
                    len(r.errors),
                    f"{r.mean_psnr:.6f}",
                    f"{r.mean_ssim:.6f}",
                    pub.psnr if pub else "",
                    pub.ssim if pub and pub.ssim is not None else "",
                    pub.source if pub else "",
                    r.noise.describe(),
                    protocol,
                    (pub.protocol or "not stated") if pub else "",
                    rep.psnr if rep else "",
                    rep.label if rep else "",
                    f"{r.mean_noisy_psnr:.6f}",
                    f"{r.mean_noisy_ssim:.6f}",
                ]
            )


def comparison_caveats(
    n_colors: int,
    chop: bool,
    ensemble: bool,
    limited: bool,
    protocol: str = "adfnet",
    published: Sequence[str] = (),
    network: bool = True,
) -> list[str]:
    """Why this run's means are not like-for-like with the published numbers (empty when they are).

    ``protocol`` is the run's; ``published`` the protocols of the numbers it is compared with (``"not stated"``
    for a source that does not say); ``network`` False: a classical baseline, published without chop.
    """
    caveats = []
    if limited:
        caveats.append("--limit evaluated part of a set, the published numbers are full-set means")
    caveats += get_protocol(protocol).caveats(n_colors, chop, ensemble, network)
    others = sorted(set(published) - {protocol, "not stated"})
    if others:
        caveats.append(f"ours used the {protocol} protocol, the reference numbers the {' / '.join(others)} protocol")
    if "not stated" in published:
        caveats.append("a reference number's source does not say which protocol measured it")
    return caveats


def format_run(
    run: Evaluation, model: str, opts: EvalOptions, result_dir: Path, options: Mapping[str, object] | None = None
) -> str:
    """The whole report of a synthetic run: a table per set and sigma, the summary and the caveats."""
    refs = [_published(r, model, opts.n_colors, options) for r in run.results]
    blocks = [
        format_set_table(r, pub, rep, opts.protocol, _noise_references(r, opts.n_colors))
        for r, (pub, rep) in zip(run.results, refs, strict=True)
    ]
    if run.results:
        variant = "" if is_adfnet(options) else f", options {dict(options or {})}"
        blocks.append(
            f"\nSummary ({model}{variant}, n_colors {opts.n_colors}, {get_protocol(opts.protocol).summary}; "
            f"chop {opts.chop}, ensemble {opts.ensemble}, noise {_noises(run.results, opts.noise_seed)}):\n"
            + format_summary(run.results, model, opts.n_colors, options)
            + "\n(noisy: the PSNR of the noisy input, before denoising)"
        )
        used = [ref.protocol or "not stated" for pair in refs for ref in pair if ref is not None]
        caveats = comparison_caveats(
            opts.n_colors, opts.chop, opts.ensemble, run.limited, opts.protocol, used, model not in BASELINES
        )
        if caveats and used:
            blocks.append("note: not like-for-like with the published numbers: " + "; ".join(caveats))
        blocks.append(f"results in {result_dir}")
    return "\n".join(blocks)


def _noises(results: Sequence[SetResult], seed: int) -> str:
    """The run's noise: ``awgn (seed 1)`` when every result is AWGN, else the models described, and the seed."""
    if all(r.noise.is_awgn for r in results):
        return f"awgn (seed {seed})"
    return ", ".join(dict.fromkeys(r.noise.describe() for r in results)) + f" (seed {seed})"


def format_real_scores(
    scores: Sequence[tuple[float, float, float]], published: Published | None, reproduced: Published | None = None
) -> str:
    """Mean PSNR and both SSIM flavours, with the published (and reproduced) numbers and the differences."""
    n = len(scores)
    mp, ms, m3 = (sum(s[i] for s in scores) / n for i in range(3))
    text = f"{n} images: PSNR {mp:.4f} dB, SSIM {ms:.4f} (per channel), SSIM {m3:.4f} (MATLAB 3-D)"
    for name, ref in (("published", published), ("reproduced", reproduced)):
        if ref is None:
            continue
        text += f"\n{name} ({ref.source}): PSNR {ref.psnr:.2f}"
        text += "" if ref.ssim is None else f", SSIM {ref.ssim:.3f}"
        text += f"; ours - {name}: {mp - ref.psnr:+.3f} dB"
        text += "" if ref.ssim is None else f", SSIM(3-D) {m3 - ref.ssim:+.4f}"
    return text


def write_score_csv(path: Path, names: Sequence[str], scores: Sequence[tuple[float, float, float]]) -> None:
    """Per-image ``image, psnr, ssim, ssim_matlab3d`` rows."""
    with text_file(path) as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "psnr", "ssim", "ssim_matlab3d"])
        for name, (p, s, s3) in zip(names, scores, strict=True):
            writer.writerow([name, f"{p:.6f}", f"{s:.6f}", f"{s3:.6f}"])
