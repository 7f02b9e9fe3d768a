"""Denoise your own images: ``adfnet-denoise INPUT... --weights W --out DIR`` (or ``python -m adfnet.denoise``).

No ground truth and no added noise: the inputs are the noisy photos. Any size runs in bounded memory
(overlapping tiles blended smoothly), or with the official chop: :func:`adfnet.inference.denoise` either way.
Each output keeps what the input file was: format (JPEG becomes PNG unless ``--format`` says
otherwise, to avoid a second lossy step), bit depth (8 or 16 bits), alpha (copied untouched), the
ICC profile, EXIF and resolution (:mod:`adfnet.data.metadata`) and the upright orientation (EXIF
orientation is applied, and set to 1 in the output's EXIF). Inputs are never overwritten, nor are the
outputs of an earlier run unless asked (``existing="overwrite"``; ``"skip"`` resumes an interrupted
batch); outputs are written atomically (:mod:`adfnet.fileio`). A file that fails is reported and the
others are still processed; a full disk stops the run. The command line is :mod:`adfnet.cli.denoise`.
"""

from __future__ import annotations

import functools
import glob
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from adfnet.data.io import IMAGE_EXTENSIONS
from adfnet.data.metadata import PhotoInfo, add_metadata, read_photo_info
from adfnet.errors import UserError
from adfnet.fileio import DiskFullError, remove_stale_temporaries, write_bytes
from adfnet.inference import (
    ADFNET_BYTES_PER_PIXEL,
    DEFAULT_OVERLAP,
    PRECISIONS,
    check_tiling,
    count_tiles,
    default_chop_min_size,
    denoise,
    size_multiple,
    tile_for_memory,
)
from adfnet.outputs import check_not_input_folder

FORMATS = {"png": ".png", "tif": ".tif", "jpg": ".jpg"}
EXISTING = ("refuse", "overwrite", "skip")  # what to do with an output that is already there
_JPEG = (".jpg", ".jpeg")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")  # the first bytes of a TIFF file
# EXIF orientation -> (quarter turns counter-clockwise for np.rot90, flip left-right first)
_ORIENTATION = {2: (0, True), 3: (2, False), 4: (2, True), 5: (1, True), 6: (3, False), 7: (3, True), 8: (1, False)}


# --- files ------------------------------------------------------------------------------------------
def collect_inputs(patterns: Iterable[str]) -> list[Path]:
    """Files, folders (their images, not recursive) and globs, in order, without duplicates."""
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            items = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not items:
                raise UserError(f"folder {pattern} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        elif path.is_file():
            items = [path]
        else:
            items = sorted(Path(p) for p in glob.glob(pattern) if Path(p).suffix.lower() in IMAGE_EXTENSIONS)
            if not items:
                raise UserError(f"{pattern}: no such file or folder, and no image matches it as a pattern")
        found += items
    seen: set[Path] = set()
    unique = []
    for p in found:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


def output_path(src: Path, out_dir: Path, fmt: str | None) -> Path:
    """``out_dir/<name>``: same extension as ``src`` (JPEG -> PNG) unless ``fmt`` is given."""
    ext = FORMATS[fmt] if fmt else (".png" if src.suffix.lower() in _JPEG else src.suffix)
    return out_dir / (src.stem + ext)


def existing_outputs(inputs: list[Path], out_dir: Path, fmt: str | None) -> list[Path]:
    """The outputs of ``inputs`` that ``out_dir`` already holds (from an earlier run)."""
    return [dst for dst in (output_path(src, out_dir, fmt) for src in inputs) if dst.exists()]


def refuse_existing(existing: list[Path], out_dir: Path) -> None:
    """The message for outputs that would be overwritten without ``--overwrite`` / ``--skip_existing``."""
    names = ", ".join(p.name for p in existing[:3]) + (", ..." if len(existing) > 3 else "")
    raise UserError(
        f"--out {out_dir} already holds {len(existing)} of the outputs ({names}): pass --overwrite to replace "
        "them, or --skip_existing to keep them and denoise only the others (to resume an interrupted batch)"
    )


# --- image round trip -------------------------------------------------------------------------------
def read_noisy(path: Path, info: PhotoInfo | None = None) -> tuple[np.ndarray, np.ndarray | None, np.dtype]:
    """``(colour (H, W, C) float32 in [0, 1] RGB or gray, alpha as stored or None, stored dtype)``, upright.

    Unlike :func:`adfnet.data.io.read_image` (which prepares test images for the metrics), this keeps
    everything needed to write the result back as the same kind of file. ``info`` (its orientation is
    applied) is read from the file when not given.
    """
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise ValueError("cannot decode the file: it is corrupt or not a supported image")
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"pixel type {img.dtype} is not supported (8- or 16-bit images only)")
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"{img.shape[2]} channels are not supported (gray, RGB, with or without alpha)")
    if data[:4].tobytes() not in _TIFF_MAGIC:  # OpenCV's TIFF decoder turns the image upright itself
        img = _apply_orientation(img, (info or read_photo_info(path)).orientation)
    alpha = img[..., -1:].copy() if img.shape[2] in (2, 4) else None
    colour = img[..., : 3 if img.shape[2] >= 3 else 1]
    if colour.shape[2] == 3:
        colour = colour[..., ::-1]  # OpenCV decodes BGR
    scale = 255.0 if img.dtype == np.uint8 else 65535.0
    return np.ascontiguousarray(colour, dtype=np.float32) / np.float32(scale), alpha, img.dtype


def _apply_orientation(img: np.ndarray, tag: int) -> np.ndarray:
    """Turn ``img`` upright by its EXIF orientation ``tag`` (OpenCV's unchanged decoding ignores it)."""
    turns, flip = _ORIENTATION.get(tag, (0, False))
    if flip:
        img = img[:, ::-1]
    return np.ascontiguousarray(np.rot90(img, turns)) if turns else img


def write_like(
    path: Path, colour: np.ndarray, alpha: np.ndarray | None, dtype: np.dtype, info: PhotoInfo | None = None
) -> list[str]:
    """Write float ``colour`` in [0, 1] with ``dtype``'s depth, the original ``alpha`` and ``info``'s ICC
    profile, EXIF and resolution, atomically; returns what of ``info`` could not be kept."""
    if path.suffix.lower() in _JPEG and alpha is not None:
        raise ValueError("JPEG cannot store the alpha channel: use --format png or tif")
    if path.suffix.lower() in _JPEG and dtype == np.uint16:
        dtype = np.dtype(np.uint8)  # JPEG has no 16-bit mode
    top = 255 if dtype == np.uint8 else 65535
    arr = np.clip(np.rint(colour * top), 0, top).astype(dtype)
    if arr.shape[2] == 3:
        arr = arr[..., ::-1]
    if alpha is not None:
        arr = np.concatenate([arr, alpha.astype(dtype)], axis=2)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in _JPEG else []
    ok, buf = cv2.imencode(path.suffix, np.ascontiguousarray(arr), params)
    if not ok:
        raise ValueError(f"cannot encode the result as {path.suffix}")
    data, lost = add_metadata(buf.tobytes(), path.suffix, info or PhotoInfo())
    write_bytes(path, data)  # a killed run or a full disk leaves no half-written output
    return lost


# --- the loop ---------------------------------------------------------------------------------------
def _per_colour(x: torch.Tensor, n_colors: int, run: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``run`` on ``(1, C, H, W)``: gray models filter each channel of a colour image separately, RGB
    models see a gray image replicated to 3 channels and return their mean."""
    c = x.shape[1]
    if n_colors == 1 and c == 3:
        return torch.cat([run(x[:, i : i + 1]) for i in range(3)], 1)
    if n_colors == 3 and c == 1:
        return run(x.expand(-1, 3, -1, -1)).mean(1, keepdim=True)
    return run(x)


def _runner(
    model, n_colors: int, tile: int | None, settings: dict, progress: Callable[[int], object]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """One image's :func:`adfnet.inference.denoise`: the official chop (one progress step per call) or ``tile``
    px tiles (a step per tile); ``settings`` are ``ensemble``, ``precision`` and ``overlap``."""
    ensemble, precision = settings["ensemble"], settings["precision"]
    if tile is None:

        def chopped(x: torch.Tensor) -> torch.Tensor:
            y = denoise(model, x, "chop", ensemble, precision, min_size=default_chop_min_size(n_colors))
            progress(1)
            return y

        return chopped
    return functools.partial(
        denoise, model, tiling="tiles", ensemble=ensemble, precision=precision, tile=tile,
        overlap=settings["overlap"], progress=progress,
    )  # fmt: skip


def _image_size(path: Path) -> tuple[int, int, int]:
    """``(H, W, colour channels)`` from the header, for the progress total; (0, 0, 0) if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            return h, w, 1 if im.mode in ("L", "LA", "I;16", "I;16B", "I", "1") else 3
    except Exception:
        return 0, 0, 0


def _calls(path: Path, tile: int | None, n_colors: int, chop: bool, overlap: int, multiple: int) -> int:
    """Progress steps for one image (a gray model filters each channel of a colour image)."""
    h, w, c = _image_size(path)
    per_channel = 1 if chop or not tile else count_tiles(h, w, tile, overlap, multiple)
    return per_channel * (3 if n_colors == 1 and c == 3 else 1)


def choose_tile(h: int, w: int, channels: int, max_memory: int, bytes_per_pixel: float) -> int:
    """Largest tile whose forward pass plus this image's buffers (about 5 float copies) fit ``max_memory``."""
    return tile_for_memory(max_memory, bytes_per_pixel, image_bytes=5 * 4 * h * w * max(channels, 1))


def _plan(
    inputs: list[Path],
    out_dir: Path,
    fmt: str | None,
    tile: int | None,
    budget: tuple[int, float] | None,
    skip: list[Path],
) -> tuple[list[tuple[Path, Path, int | None]], dict[Path, str]]:
    """``(input, output, tile)`` per input to run, and the inputs refused before any work (a clashing
    output name, no tile that fits ``budget`` = (max_memory, bytes per pixel)); outputs in ``skip`` are kept."""
    plans, failures, taken = [], {}, {}
    for src in inputs:
        dst = output_path(src, out_dir, fmt)
        if dst in skip:
            continue
        if dst in taken:
            failures[src] = f"its output {dst} would overwrite the output of {taken[dst]} (same name): rename one"
            continue
        taken[dst] = src
        h, w, c = _image_size(src)
        size = tile
        if budget is not None and h:
            try:
                size = choose_tile(h, w, c, *budget)
            except ValueError as err:
                failures[src] = str(err)
                continue
        plans.append((src, dst, size))
    return plans, failures


def denoise_files(
    model,
    inputs: list[Path],
    out_dir: Path,
    *,
    n_colors: int,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    max_memory: int = 2 * 2**30,
    bytes_per_pixel: float = ADFNET_BYTES_PER_PIXEL,
    chop: bool = False,
    ensemble: bool = False,
    fmt: str | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    existing: str = "refuse",
) -> dict[Path, str]:
    """Denoise every input into ``out_dir``; returns ``{input: error message}`` for the files that failed.

    An output that ``out_dir`` already holds is refused (:class:`UserError`, before any work),
    replaced (``existing="overwrite"``) or kept and its input skipped (``existing="skip"``). A full
    disk raises :class:`~adfnet.fileio.DiskFullError` (the outputs written before are complete).

    ``tile=None`` picks the largest tile that fits ``max_memory`` for each image (``bytes_per_pixel``
    is the model's forward-pass memory per pixel). One tqdm bar counts tiles over all images.
    ``precision="bf16"`` runs the model under bfloat16 autocast (see :func:`adfnet.inference.denoise`).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    multiple = size_multiple(model)
    if existing not in EXISTING:
        raise ValueError(f"existing must be one of {', '.join(EXISTING)}, got {existing!r}")
    check_not_input_folder(out_dir, inputs)
    if tile is not None:
        check_tiling(tile, overlap, multiple)
    found = existing_outputs(inputs, out_dir, fmt)
    if found and existing == "refuse":
        refuse_existing(found, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_temporaries(out_dir):  # left by a killed run: never an output
        tqdm.write(f"note: removed {stale}, a partial file of a killed run")
    budget = None if tile is not None or chop else (max_memory, bytes_per_pixel)
    plans, failures = _plan(inputs, out_dir, fmt, tile, budget, found if existing == "skip" else [])
    total = sum(_calls(p, s, n_colors, chop, overlap, multiple) for p, _, s in plans)
    settings = {"ensemble": ensemble, "precision": precision, "overlap": overlap}
    with tqdm(total=total, unit="tile", desc="denoising", dynamic_ncols=True) as bar:
        for src, dst, size in plans:
            bar.set_postfix_str(src.name)
            try:
                info = read_photo_info(src)
                colour, alpha, dtype = read_noisy(src, info)
                h, w, c = colour.shape
                if size is None and not chop:
                    size = choose_tile(h, w, c, max_memory, bytes_per_pixel)
                x = torch.from_numpy(colour.transpose(2, 0, 1)).unsqueeze(0).to(device)
                with torch.no_grad():
                    y = _per_colour(x, n_colors, _runner(model, n_colors, None if chop else size, settings, bar.update))
                del x
                for note in write_like(dst, y[0].permute(1, 2, 0).cpu().numpy(), alpha, dtype, info):
                    tqdm.write(f"note: {src}: {note}")
            except DiskFullError:
                raise  # every later image would fail the same way
            except (OSError, ValueError, RuntimeError) as err:
                failures[src] = str(err)
                tqdm.write(f"FAILED {src}: {err}")
    return failures


if __name__ == "__main__":  # python -m adfnet.denoise: the command line lives with the others
    from adfnet.cli.denoise import main

    sys.exit(main())
