"""Synthetic-noise evaluation: every test set under every noise model, scored, returned as result records.

Every image is read (RGB, or gray for gray models), noised with the official per-image reseed,
denoised by :func:`adfnet.inference.denoise` (which keeps each task's official chop order) and scored
with :mod:`adfnet.metrics`. ``<result_dir>/<set>/<noise>/results.csv`` (``<noise>``: ``sigma<N>`` for
AWGN, the official layout) and, with ``save_images``, the denoised images are written as the run goes;
printing is the caller's (see :mod:`.report`). A bad image is reported through ``log`` and skipped.
"""

from __future__ import annotations

import csv
import io
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from adfnet.checkpoint import load_checkpoint
from adfnet.data.io import list_images, read_image, save_image
from adfnet.data.noise import NoiseModel, sigma_label
from adfnet.fileio import DiskFullError, append_text, atomic_file, write_bytes, write_text
from adfnet.imaging import image_to_tensor, tensor_to_image
from adfnet.inference import denoise
from adfnet.metrics import WINDOW_SIZE
from adfnet.models import ModelSpec
from adfnet.outputs import check_outputs_apart

from .baselines import BASELINES
from .denoiser import Denoiser
from .pictures import comparison_path, save_comparison
from .protocols import get_protocol
from .results import Evaluation, ImageScore, SetResult

# Official test-noise seeds (gray test script: 1, colour: 20), reseeded before every image.
DEFAULT_SEEDS = {1: 1, 3: 20}

Log = Callable[[str], None]


@dataclass(frozen=True)
class EvalOptions:
    """The protocol of a run: task, noise seed, chop/ensemble, outputs, device."""

    n_colors: int = 3
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int | None = None  # None: the protocol's seed (DBSN: 0), else the official seed of the task (DEFAULT_SEEDS)
    chop: bool = False
    ensemble: bool = False
    save_images: bool = False
    limit: int | None = None  # only the first N images of each set
    save_noisy: str | None = None  # "npy" (exact, unclipped float32) or "png16" (clipped to [0, 1], 16 bits)
    protocol: str = "adfnet"  # how inputs are made and outputs scored (adfnet.evaluation.protocols)
    save_comparison: bool = False  # a noisy | ours | clean panel per image (.pictures)
    precision: str = "fp32"  # "bf16": bfloat16 autocast (adfnet.inference.denoise)

    @property
    def noise_seed(self) -> int:
        if self.seed is not None:
            return self.seed
        default = get_protocol(self.protocol).default_seed
        return DEFAULT_SEEDS[self.n_colors] if default is None else default


def _read_checked(path: Path, n_colors: int, notes: set[str], log: Log) -> torch.Tensor:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = read_image(path, n_colors)
    for item in caught:
        message = f"warning: {item.message}"
        if message not in notes:  # once per file, not once per sigma
            notes.add(message)
            log(message)
    h, w = img.shape[:2]
    if min(h, w) < WINDOW_SIZE:
        raise ValueError(f"{path.name} is {h}x{w} px: too small (ADFNet needs 8 px, the SSIM window {WINDOW_SIZE} px)")
    return image_to_tensor(img)


def evaluate_set(
    model: Denoiser,
    files: Sequence[Path],
    set_name: str,
    noise: NoiseModel,
    out_dir: Path,
    opts: EvalOptions,
    notes: set[str] | None = None,
    log: Log = tqdm.write,
) -> SetResult:
    """Evaluate one set under ``noise``; writes ``out_dir/results.csv`` (and images); bad images are skipped.

    ``model`` is any :data:`~.denoiser.Denoiser`: a torch model or an :class:`~.denoiser.ImageFunction`.
    The noisy input and the scores follow ``opts.protocol`` (:mod:`.protocols`); results.csv names it and
    the noise model. Each image's row is appended to results.csv as soon as it is scored: a killed run
    keeps what it did.
    """
    notes = set() if notes is None else notes
    protocol = get_protocol(opts.protocol)
    result = SetResult(set_name, noise)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "results.csv"
    _write_rows(csv_path, noise, protocol.name, [], "w")
    for path in tqdm(files, desc=f"{set_name} {noise.label()}", unit="img", leave=False):
        try:
            clean = _read_checked(path, opts.n_colors, notes, log)
            clean, noisy = protocol.inputs(clean, protocol.make_noisy(clean, noise, opts.noise_seed))
            noisy_scores = protocol.score(noisy.clamp(0.0, 1.0), clean)  # the baseline denoising improves on
            if opts.save_noisy:
                save_noisy(out_dir / "noisy" / path.stem, noisy, opts.save_noisy)
            noisy = noisy.to(opts.device)
            start = time.perf_counter()
            # the noisy input is made here from a known sigma: no image-range check (sigma 400 is legal)
            tiling = "chop" if opts.chop else "whole"
            out = denoise(model, noisy, tiling, opts.ensemble, opts.precision, check_range=False)
            if opts.device.type == "cuda":
                torch.cuda.synchronize(opts.device)
            seconds = time.perf_counter() - start
            result.rows.append(ImageScore(path.name, *protocol.score(out, clean), seconds, *noisy_scores))
            _write_rows(csv_path, noise, protocol.name, result.rows[-1:], "a")
            if opts.save_images:
                save_image(out_dir / path.name, tensor_to_image(out))
            if opts.save_comparison:
                save_comparison(comparison_path(out_dir, path.name), noisy, out, clean, type(model).__name__)
        except DiskFullError:
            raise  # every later image would fail the same way: the run stops with the message
        except (OSError, ValueError, RuntimeError) as err:
            message = f"error: {path}: {err}"
            result.errors.append(message)
            if message not in notes:  # an unreadable file fails at every sigma; say it once
                notes.add(message)
                log(message)
    return result


def _write_rows(path: Path, noise: NoiseModel, protocol: str, rows: Sequence[ImageScore], mode: str) -> None:
    """``mode`` "w": a new results.csv with its header; "a": append ``rows``."""
    label = sigma_label(noise.sigma) if noise.is_awgn else ""
    text = io.StringIO()
    writer = csv.writer(text)
    if mode == "w":
        writer.writerow(["image", "sigma", "psnr", "ssim", "seconds", "noise", "protocol", "noisy_psnr", "noisy_ssim"])
    for row in rows:
        cells = [row.image, label, f"{row.psnr:.6f}", f"{row.ssim:.6f}", f"{row.seconds:.4f}"]
        writer.writerow([*cells, noise.describe(), protocol, f"{row.noisy_psnr:.6f}", f"{row.noisy_ssim:.6f}"])
    (write_text if mode == "w" else append_text)(path, text.getvalue())


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


def output_dir(result_dir: Path, set_name: str, noise: NoiseModel) -> Path:
    """Where one set under one noise model writes ``results.csv`` and its denoised images."""
    return result_dir / set_name / noise.folder_name()


def save_noisy(stem: Path, noisy: torch.Tensor, fmt: str) -> None:
    """Write the exact noisy input of one image: ``npy`` keeps the unclipped float32 ``(H, W, C)`` values;
    ``png16`` clips to [0, 1] and stores ``round(65535 x)`` as a 16-bit PNG (lossy: clipping and rounding)."""
    img = noisy[0].permute(1, 2, 0).float().cpu().numpy()
    if fmt == "npy":
        with atomic_file(stem.with_suffix(".npy")) as f:
            np.save(f, img)
        return
    arr = np.round(np.clip(img, 0.0, 1.0) * 65535.0).astype(np.uint16)
    arr = arr[..., 0] if arr.shape[2] == 1 else np.ascontiguousarray(arr[..., ::-1])  # RGB -> BGR for OpenCV
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise ValueError(f"cannot encode {stem.with_suffix('.png')}")
    write_bytes(stem.with_suffix(".png"), buf.tobytes())


def planned_outputs(
    input_dirs: Sequence[str | Path], noises: Sequence[NoiseModel], result_dir: str | Path
) -> dict[str, Path]:
    """Every output folder of a run, ``<result_dir>/<set>/<noise>``, named: what
    :func:`adfnet.outputs.check_outputs_apart` checks against the input sets before any work (a saved image
    could replace an input, and a later noise level would score against it)."""
    return {
        f"the {set_name} {noise.label()} outputs": output_dir(Path(result_dir), set_name, noise)
        for set_name, _ in set_folders(input_dirs)
        for noise in noises
    }


def _list_sets(input_dirs: Sequence[str | Path], opts: EvalOptions, run: Evaluation, log: Log) -> list:
    sets: list[tuple[str, list[Path]]] = []
    for set_name, folder in set_folders(input_dirs):
        try:
            files = list_images(folder)
        except FileNotFoundError as err:
            run.errors.append(f"error: {err}")
            log(f"error: {err}")
            continue
        if opts.limit is not None and opts.limit < len(files):
            log(f"note: {set_name}: only the first {opts.limit} of {len(files)} images (--limit)")
            files = files[: opts.limit]
            run.limited = True
        sets.append((set_name, files))
    return sets


def run_evaluation(
    model_name: str,
    weights: str,
    input_dirs: Sequence[str | Path],
    noises: Sequence[NoiseModel],
    result_dir: str | Path,
    opts: EvalOptions,
    model_options: dict[str, object] | None = None,
    log: Log = tqdm.write,
) -> Evaluation:
    """Evaluate every set under every noise model and return the records (nothing is printed but ``log`` messages).

    ``weights`` may contain ``{sigma}`` (e.g. ``checkpoints/adfnet_rgb_n{sigma}.pt``) since the
    official models are trained per noise level (AWGN); a checkpoint that cannot be used skips its noise.
    ``model_options`` are ``build_model`` options (the Table 4 ablations). A ``model_name`` of
    :data:`~.baselines.BASELINES` (``bm3d``) is built per sigma instead and ``weights`` is unused. Raises ``ValueError``
    before any work when two input folders have the same name or an output could land on an input.
    """
    result_dir = Path(result_dir)
    check_outputs_apart(planned_outputs(input_dirs, noises, result_dir), input_dirs)
    run = Evaluation()
    sets = _list_sets(input_dirs, opts, run, log)
    notes: set[str] = set()
    for noise in noises:
        path = weights
        try:
            if "{sigma}" in weights:  # per noise level: AWGN only (noise.sigma says so otherwise)
                path = weights.replace("{sigma}", sigma_label(noise.sigma))
            if model_name in BASELINES:
                model = BASELINES[model_name](opts.n_colors, noise.sigma)
            else:
                spec = ModelSpec(model_name, opts.n_colors, model_options or {})
                model, _ = load_checkpoint(path, spec, device=opts.device, note=lambda text: log(f"note: {text}"))
        except (OSError, ValueError, RuntimeError) as err:
            what = model_name if model_name in BASELINES else f"checkpoint {path}"
            message = f"error: cannot use {what} for {noise.label()}: {err}"
            run.errors.append(message)
            log(message)
            continue
        for set_name, files in sets:
            out_dir = output_dir(result_dir, set_name, noise)
            run.results.append(evaluate_set(model, files, set_name, noise, out_dir, opts, notes, log))
        del model
    return run
