"""Synthetic-noise evaluation (test sets x noise levels) and the helpers the test CLIs share.

One run: for every input folder and sigma, every image is read (RGB, or gray for gray models),
noised with the official per-image reseed, denoised by :func:`adfnet.inference.denoise` and scored
with :mod:`adfnet.metrics`. Results go to ``<result_dir>/<set>/sigma<N>/results.csv`` (and the
denoised images with ``save_images``), a table is printed per set and sigma, and where the paper or
the official logs published a number it is printed beside ours with the difference. A bad image is
reported and skipped; the caller learns from the returned failure count.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from adfnet.data.io import image_to_tensor, list_images, read_image, save_image, tensor_to_image
from adfnet.data.noise import add_awgn
from adfnet.inference import CHOP_MIN_SIZE_REAL, denoise, official_pad_before_chop
from adfnet.metrics import WINDOW_SIZE, psnr, quantize, ssim, ssim_matlab3d
from adfnet.models import add_model_arguments, model_options

# Official test-noise seeds, reseeded before every image (spec section 5).
DEFAULT_SEEDS = {1: 1, 3: 20}


@dataclass(frozen=True)
class Published:
    psnr: float
    ssim: float | None
    source: str


_GRAY_LOG = "official gray test log"
_RGB_LOG = "official colour test log (res/adfnet.log)"
_PAPER_T1 = "paper Table 1"
_PAPER_T2 = "paper Table 2"
_PAPER_T4 = "paper Table 4"

# (model, n_colors, set key, sigma) -> published number (spec section 7).
PUBLISHED: dict[tuple[str, int, str, float], Published] = {
    **{
        ("adfnet", 1, s, sigma): Published(p, q, _GRAY_LOG)
        for (s, sigma), (p, q) in {
            ("set12", 15): (33.253160, 0.909961), ("bsd68", 15): (31.919817, 0.895707),
            ("urban100", 15): (33.428472, 0.937789), ("set12", 25): (30.945811, 0.873407),
            ("bsd68", 25): (29.484355, 0.838123), ("urban100", 25): (31.047061, 0.907761),
            ("set12", 50): (27.893412, 0.808803), ("bsd68", 50): (26.597076, 0.739195),
            ("urban100", 50): (27.847122, 0.846034),
        }.items()
    },
    ("adfnet", 3, "kodak24", 30): Published(32.01, None, _PAPER_T1),
    ("adfnet", 3, "kodak24", 70): Published(28.48, None, _PAPER_T1),
    ("adfnet", 3, "cbsd68", 30): Published(30.74, None, _PAPER_T1),
    ("adfnet", 3, "cbsd68", 70): Published(27.03, None, _PAPER_T1),
    # sigma 50: the official colour log (paper Table 1: 29.81 / 28.43 / 29.96, the same rounded)
    ("adfnet", 3, "kodak24", 50): Published(29.805204, 0.819600, _RGB_LOG),
    ("adfnet", 3, "cbsd68", 50): Published(28.425820, 0.808459, _RGB_LOG),
    ("adfnet", 3, "mcmaster", 50): Published(29.959591, 0.841959, _RGB_LOG),
    ("adfnet_l", 3, "kodak24", 50): Published(29.92, None, _PAPER_T2 + " (ADFNet*)"),
    ("adfnet_l", 3, "mcmaster", 50): Published(30.12, None, _PAPER_T2 + " (ADFNet*)"),
}

# The build_model options of ADFNet itself (anything else is a Table 4 ablation variant).
ADFNET_OPTIONS: dict[str, object] = {"placement": "decoder", "dcb": True, "mdcb": True, "mfi": True}

# Paper Table 4 (ablations of ADFNet, colour, sigma 50):
# (placement, dcb, mdcb, mfi) -> (row name, Kodak24 PSNR, CBSD68 PSNR). ADFNet itself (decoder, all on:
# 29.81 / 28.43) is in PUBLISHED with the official colour log's digits.
PUBLISHED_ABLATIONS: dict[tuple[object, ...], tuple[str, float, float]] = {
    ("decoder", False, False, True): ("without DCB and MDCB", 29.61, 28.33),
    ("decoder", False, True, True): ("without DCB", 29.69, 28.36),
    ("decoder", True, False, True): ("without MDCB", 29.66, 28.37),
    ("decoder", True, True, False): ("without MFI", 29.77, 28.40),
    ("everywhere", True, True, True): ("DCB and MDCB everywhere", 29.77, 28.38),
    ("encoder", True, True, True): ("only in the encoder", 29.73, 28.38),
}

# Real noise, paper Table 3 (ADFNet, x8 self-ensemble not stated).
PUBLISHED_REAL: dict[str, Published] = {
    "sidd_val": Published(39.79, 0.960, "paper Table 3"),
    "sidd_benchmark": Published(39.63, 0.958, "paper Table 3 (online server)"),
    "dnd": Published(39.87, 0.955, "paper Table 3 (online server)"),
}

_SET_ALIASES = {"kodak": "kodak24", "mcm": "mcmaster", "urban": "urban100"}


def set_key(name: str, n_colors: int) -> str:
    """Normalise a test-set folder name for the published-number lookup (``Kodak24`` -> ``kodak24``).

    The official RGB default folder ``BSD68`` holds CBSD68, so for colour models ``bsd68`` means ``cbsd68``.
    """
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    key = _SET_ALIASES.get(key, key)
    if n_colors == 3 and key == "bsd68":
        key = "cbsd68"
    return key


def published_for(
    model: str, n_colors: int, set_name: str, sigma: float, options: Mapping[str, object] | None = None
) -> Published | None:
    """The published number for this model, ablation ``options``, task, set and sigma, if any.

    ``options`` are ``build_model`` options (missing ones default to ADFNet's). An ablation variant
    is only compared with its own Table 4 row, never with ADFNet's number; combinations the paper
    did not publish get nothing.
    """
    key = set_key(set_name, n_colors)
    chosen = {**ADFNET_OPTIONS, **(options or {})}
    if chosen == ADFNET_OPTIONS:
        return PUBLISHED.get((model, n_colors, key, float(sigma)))
    variant = tuple(chosen[k] for k in ADFNET_OPTIONS)
    if model != "adfnet" or n_colors != 3 or float(sigma) != 50 or variant not in PUBLISHED_ABLATIONS:
        return None
    row, kodak24, cbsd68 = PUBLISHED_ABLATIONS[variant]
    value = {"kodak24": kodak24, "cbsd68": cbsd68}.get(key)
    return None if value is None else Published(value, None, f"{_PAPER_T4}, {row}")


def sigma_label(sigma: float) -> str:
    """``50.0`` -> ``"50"``, ``12.5`` -> ``"12.5"`` (folder names and placeholders)."""
    return str(int(sigma)) if float(sigma).is_integer() else str(sigma)


def select_device(cpu: bool = False, device: str | None = None) -> torch.device:
    """``--device`` wins, ``--cpu`` forces the CPU, else CUDA when available."""
    if device:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available on this machine (use --cpu)")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")


@contextlib.contextmanager
def dcn_backend(name: str | None) -> Iterator[None]:
    """Run with DCN backend ``name`` (``ext``/``torchvision``/``reference``); ``None`` keeps the default."""
    if not name:
        yield
        return
    import dcn

    with dcn.use_backend(name):
        yield


def load_model(
    name: str, n_colors: int, weights: str | Path, device: torch.device, **options: object
) -> torch.nn.Module:
    """Build ``name`` (with ``build_model`` ``options``) and load ``weights`` strictly (a clear error otherwise)."""
    from adfnet.checkpoint import load_weights
    from adfnet.models import build_model

    model = build_model(name, n_colors=n_colors, **options)
    load_weights(model, weights)
    return model.to(device).eval()


@dataclass
class SetResult:
    """Per-image rows of one set and sigma, plus what went wrong."""

    set_name: str
    sigma: float
    rows: list[tuple[str, float, float, float]] = field(default_factory=list)  # image, psnr, ssim, seconds
    errors: list[str] = field(default_factory=list)

    @property
    def mean_psnr(self) -> float:
        return sum(r[1] for r in self.rows) / len(self.rows) if self.rows else math.nan

    @property
    def mean_ssim(self) -> float:
        return sum(r[2] for r in self.rows) / len(self.rows) if self.rows else math.nan


def _read_checked(path: Path, n_colors: int, notes: set[str]) -> torch.Tensor:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = read_image(path, n_colors)
    for item in caught:
        message = f"warning: {item.message}"
        if message not in notes:  # once per file, not once per sigma
            notes.add(message)
            tqdm.write(message)
    h, w = img.shape[:2]
    if min(h, w) < WINDOW_SIZE:
        raise ValueError(
            f"{path.name} is {h}x{w} px: too small (ADFNet needs 8 px, the SSIM window {WINDOW_SIZE} px)"
        )
    return image_to_tensor(img)


def evaluate_set(
    model: Callable[[torch.Tensor], torch.Tensor],
    files: Sequence[Path],
    set_name: str,
    sigma: float,
    n_colors: int,
    device: torch.device,
    out_dir: Path,
    seed: int | None = None,
    chop: bool = False,
    ensemble: bool = False,
    save_images: bool = False,
    notes: set[str] | None = None,
) -> SetResult:
    """Evaluate one set at one sigma; writes ``out_dir/results.csv`` (and images); bad images are skipped.

    With ``chop`` the official order of the task is kept (gray: chop the unpadded image; colour: pad,
    then chop), since the quadrant windows, and so ADFNet's output, depend on it.
    """
    seed = DEFAULT_SEEDS[n_colors] if seed is None else seed
    notes = set() if notes is None else notes
    result = SetResult(set_name, sigma)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in tqdm(files, desc=f"{set_name} sigma {sigma_label(sigma)}", unit="img", leave=False):
        try:
            clean = _read_checked(path, n_colors, notes)
            noisy = add_awgn(clean, sigma, seed=seed).to(device)
            start = time.perf_counter()
            out = denoise(model, noisy, chop=chop, ensemble=ensemble,
                          pad_before_chop=official_pad_before_chop(n_colors))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
            result.rows.append((path.name, psnr(out, clean), ssim(out, clean), seconds))
            if save_images:
                save_image(out_dir / path.name, tensor_to_image(out))
        except (OSError, ValueError, RuntimeError) as err:
            message = f"error: {path}: {err}"
            result.errors.append(message)
            if message not in notes:  # an unreadable file fails at every sigma; say it once
                notes.add(message)
                tqdm.write(message)
    with open(out_dir / "results.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "sigma", "psnr", "ssim", "seconds"])
        for name, p, s, sec in result.rows:
            writer.writerow([name, sigma_label(sigma), f"{p:.6f}", f"{s:.6f}", f"{sec:.4f}"])
    return result


def _diff(ours: float, theirs: float | None, digits: int) -> str:
    return "" if theirs is None or math.isnan(ours) else f"{ours - theirs:+.{digits}f}"


def format_set_table(result: SetResult, published: Published | None) -> str:
    """Per-image table of one set and sigma, then the mean and the published number with the difference."""
    width = max([len(r[0]) for r in result.rows] + [5])
    lines = [f"{result.set_name}  sigma {sigma_label(result.sigma)}", f"  {'image':<{width}}  {'PSNR':>8}  {'SSIM':>7}"]
    lines += [f"  {name:<{width}}  {p:8.4f}  {s:7.4f}" for name, p, s, _ in result.rows]
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
        writer.writerow(["set", "sigma", "images", "failed", "psnr", "ssim", "published_psnr", "published_ssim",
                         "source"])
        for r in results:
            pub = published_for(model, n_colors, r.set_name, r.sigma, options)
            writer.writerow([
                r.set_name, sigma_label(r.sigma), len(r.rows), len(r.errors), f"{r.mean_psnr:.6f}",
                f"{r.mean_ssim:.6f}", pub.psnr if pub else "", pub.ssim if pub and pub.ssim is not None else "",
                pub.source if pub else "",
            ])


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


def set_folders(input_dirs: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """``(set name, folder)`` per input folder; two folders of the same name would share their outputs.

    The name is the folder's own (``<result_dir>/<set>/``, and the key for the published numbers), so
    a clash is an error rather than a silent rename that would also lose the published number.
    Names are compared case-insensitively, as some file systems do.
    """
    seen: dict[str, Path] = {}
    out = []
    for folder in input_dirs:
        path = Path(os.path.abspath(folder))
        if path.name.casefold() in seen:
            raise ValueError(
                f"--input_dir {seen[path.name.casefold()]} and {path} have the same name {path.name!r}, so their "
                "results would go to the same <result_dir>/<set>/ folder; give each set its own folder name "
                "(e.g. a renamed copy or a symlink) or evaluate them in separate runs"
            )
        seen[path.name.casefold()] = path
        out.append((path.name, path))
    return out


def run_evaluation(
    model_name: str,
    n_colors: int,
    weights: str,
    input_dirs: Sequence[str | Path],
    sigmas: Sequence[float],
    result_dir: str | Path,
    device: torch.device,
    seed: int | None = None,
    chop: bool = False,
    ensemble: bool = False,
    save_images: bool = False,
    limit: int | None = None,
    options: dict[str, object] | None = None,
) -> int:
    """Evaluate every set at every sigma; returns the number of failures (images, folders, checkpoints).

    ``limit`` keeps the first N images of each set (quick checks on a slow machine; the published
    numbers are means over whole sets, so the comparison is then only indicative and says so).

    ``weights`` may contain ``{sigma}`` (e.g. ``checkpoints/adfnet_rgb_n{sigma}.pt``) since the
    official models are trained per noise level. A checkpoint that cannot be used skips its sigma.
    ``options`` are ``build_model`` options (the Table 4 ablations; compared with their own row).
    Raises ``ValueError`` before any work when two input folders have the same name.
    """
    result_dir = Path(result_dir)
    failures = 0
    limited = False
    sets: list[tuple[str, list[Path]]] = []
    for set_name, folder in set_folders(input_dirs):
        try:
            files = list_images(folder)
            if limit is not None and limit < len(files):
                print(f"note: {set_name}: only the first {limit} of {len(files)} images (--limit)")
                files = files[:limit]
                limited = True
            sets.append((set_name, files))
        except FileNotFoundError as err:
            print(f"error: {err}")
            failures += 1
    results: list[SetResult] = []
    notes: set[str] = set()
    for sigma in sigmas:
        path = weights.replace("{sigma}", sigma_label(sigma))
        try:
            model = load_model(model_name, n_colors, path, device, **(options or {}))
        except (OSError, ValueError, RuntimeError) as err:
            print(f"error: cannot use checkpoint {path} for sigma {sigma_label(sigma)}: {err}")
            failures += 1
            continue
        for set_name, files in sets:
            out_dir = result_dir / set_name / f"sigma{sigma_label(sigma)}"
            result = evaluate_set(model, files, set_name, sigma, n_colors, device, out_dir, seed=seed, chop=chop,
                                  ensemble=ensemble, save_images=save_images, notes=notes)
            print(format_set_table(result, published_for(model_name, n_colors, set_name, sigma, options)), flush=True)
            failures += len(result.errors)
            results.append(result)
        del model
    if results:
        write_summary_csv(result_dir / "summary.csv", results, model_name, n_colors, options)
        variant = "" if {**ADFNET_OPTIONS, **(options or {})} == ADFNET_OPTIONS else f", options {options}"
        print(f"\nSummary ({model_name}{variant}, n_colors {n_colors}, chop {chop}, ensemble {ensemble}):")
        print(format_summary(results, model_name, n_colors, options))
        caveats = comparison_caveats(n_colors, chop, ensemble, limited)
        if caveats and any(published_for(model_name, n_colors, r.set_name, r.sigma, options) for r in results):
            print("note: not like-for-like with the published numbers: " + "; ".join(caveats))
        print(f"results in {result_dir}")
    return failures


# ----------------------------------------------------------------------------------------------
# Real noise (SIDD, DND): shared by the scripts in scripts/.


def add_model_args(parser: argparse.ArgumentParser, weights_default: str) -> None:
    """The options every real-noise script shares (model, weights, device, DCN backend, chop, ensemble)."""
    add_model_arguments(parser)
    parser.add_argument("--weights", default=weights_default, help="checkpoint (.pth/.pt, official or ours)")
    parser.add_argument("--ensemble", action="store_true", help="x8 self-ensemble")
    parser.add_argument("--chop", action="store_true",
                        help="4-quadrant chop (the official real scripts chopped whenever --ensemble was given)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even if CUDA is available")
    parser.add_argument("--device", default=None, help="explicit device, e.g. cuda:1")
    parser.add_argument("--dcn_backend", default=None, help="DCN backend: ext, torchvision or reference")



def load_real_model(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    """The colour model a real-noise script asked for with the :func:`add_model_args` flags."""
    return load_model(args.model, 3, args.weights, device, **model_options(args))

def denoise_uint8(
    model: Callable[[torch.Tensor], torch.Tensor],
    img: np.ndarray,
    device: torch.device,
    chop: bool = False,
    ensemble: bool = False,
) -> np.ndarray:
    """Denoise one ``H x W x 3`` uint8 real-noise image; returns the float32 ``H x W x 3`` output in [0, 1]."""
    out = denoise(model, image_to_tensor(img).to(device), chop=chop, ensemble=ensemble, min_size=CHOP_MIN_SIZE_REAL)
    return tensor_to_image(out)


def denoise_blocks(
    model: Callable[[torch.Tensor], torch.Tensor],
    blocks: np.ndarray,
    device: torch.device,
    chop: bool = False,
    ensemble: bool = False,
) -> np.ndarray:
    """Denoise ``N x K x H x W x 3`` uint8 SIDD blocks; returns uint8 blocks of the same shape."""
    out = np.empty_like(blocks)
    n, k = blocks.shape[:2]
    for index in tqdm(range(n * k), desc="blocks", unit="block"):
        i, j = divmod(index, k)
        out[i, j] = quantize(denoise_uint8(model, blocks[i, j], device, chop, ensemble))
    return out


def score_pairs(outputs: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> list[tuple[float, float, float]]:
    """(PSNR, per-channel SSIM, MATLAB-style 3-D SSIM) for each output/target pair (8-bit protocol)."""
    return [(psnr(o, t), ssim(o, t), ssim_matlab3d(o, t)) for o, t in zip(outputs, targets, strict=True)]


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
