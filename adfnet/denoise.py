"""Denoise your own images: ``adfnet-denoise INPUT... --weights W --out DIR`` (or ``python -m adfnet.denoise``).

No ground truth and no added noise: the inputs are the noisy photos. Any size runs in bounded memory
(overlapping tiles blended smoothly, :func:`adfnet.inference.forward_tiled`), or with the official
chop. Each output keeps what the input file was: format (JPEG becomes PNG unless ``--format`` says
otherwise, to avoid a second lossy step), bit depth (8 or 16 bits), alpha (copied untouched), the
ICC profile, EXIF and resolution (:mod:`adfnet.data.metadata`) and the upright orientation (EXIF
orientation is applied, and set to 1 in the output's EXIF). Inputs are never overwritten, nor are the
outputs of an earlier run unless asked (``existing="overwrite"``; ``"skip"`` resumes an interrupted
batch); outputs are written atomically (:mod:`adfnet.fileio`). A file that fails is reported and the
others are still processed; a full disk stops the run. The command line is :mod:`adfnet.cli.denoise`.
"""

from __future__ import annotations

import glob
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from adfnet.checkpoint import checkpoint_architecture, read_state_dict
from adfnet.checkpoint import load_model as build_and_load
from adfnet.data.io import IMAGE_EXTENSIONS
from adfnet.data.metadata import PhotoInfo, add_metadata, read_photo_info
from adfnet.fileio import DiskFullError, remove_stale_temporaries, write_bytes
from adfnet.inference import (
    ADFNET_BYTES_PER_PIXEL,
    DEFAULT_OVERLAP,
    PRECISIONS,
    check_tiling,
    count_tiles,
    default_chop_min_size,
    denoise,
    forward_tiled,
    tile_for_memory,
)
from adfnet.models import MODEL_NAMES, WIDTHS, canonical_name

FORMATS = {"png": ".png", "tif": ".tif", "jpg": ".jpg"}
EXISTING = ("refuse", "overwrite", "skip")  # what to do with an output that is already there
_JPEG = (".jpg", ".jpeg")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")  # the first bytes of a TIFF file
# EXIF orientation -> (quarter turns counter-clockwise for np.rot90, flip left-right first)
_ORIENTATION = {2: (0, True), 3: (2, False), 4: (2, True), 5: (1, True), 6: (3, False), 7: (3, True), 8: (1, False)}


class DenoiseError(ValueError):
    """A user mistake in the command (reported without a traceback)."""


# --- files ------------------------------------------------------------------------------------------
def collect_inputs(patterns: Iterable[str]) -> list[Path]:
    """Files, folders (their images, not recursive) and globs, in order, without duplicates."""
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            items = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not items:
                raise DenoiseError(f"folder {pattern} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        elif path.is_file():
            items = [path]
        else:
            items = sorted(Path(p) for p in glob.glob(pattern) if Path(p).suffix.lower() in IMAGE_EXTENSIONS)
            if not items:
                raise DenoiseError(f"{pattern}: no such file or folder, and no image matches it as a pattern")
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
    raise DenoiseError(
        f"--out {out_dir} already holds {len(existing)} of the outputs ({names}): pass --overwrite to replace "
        "them, or --skip_existing to keep them and denoise only the others (to resume an interrupted batch)"
    )


def check_output_dir(out_dir: Path, inputs: list[Path]) -> None:
    """Refuse an output folder that holds any input: outputs would overwrite or mix with inputs."""
    out = out_dir.resolve()
    for src in inputs:
        if src.resolve().parent == out:
            raise DenoiseError(
                f"--out {out_dir} is the folder of input {src}: choose another folder (inputs are never overwritten)"
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


# --- model ------------------------------------------------------------------------------------------
def infer_model(
    state: Mapping[str, torch.Tensor],
    model: str | None,
    n_colors: int | None,
    default: tuple[str, int] | None = None,
) -> tuple[str, int]:
    """``(name, n_colors)`` of the network ``state`` belongs to: its architecture record (every checkpoint
    this package writes has one), else its head conv (official ADFNet checkpoints). ``model`` and ``n_colors``
    are what the user gave (None: not given): they must agree with a record, and win over the head conv
    (a mismatch then fails the strict loading, which names it). When the checkpoint tells nothing (no
    record, no head conv: e.g. an official SADNet checkpoint), the given values, completed by ``default``,
    are used; without a ``default`` that is an error asking for both flags."""
    record = checkpoint_architecture(state) or {}
    if record.get("model") in MODEL_NAMES and isinstance(record.get("n_colors"), int):
        for flag, given, key in (("--model", model, "model"), ("--n_colors", n_colors, "n_colors")):
            if given is not None and given != record[key]:
                raise DenoiseError(
                    f"{flag} {given} contradicts the checkpoint's architecture record ({key}={record[key]!r}): "
                    f"leave {flag} out (it is read from the checkpoint) or use weights of that model"
                )
        return str(record["model"]), int(record["n_colors"])
    head = state.get("head.weight")
    if head is None or head.dim() != 4:
        if model and n_colors:
            return model, n_colors
        if default is not None:
            return model or default[0], n_colors or default[1]
        raise DenoiseError("cannot tell the model from this checkpoint (no head.weight): pass --model and --n_colors")
    width, colours = int(head.shape[0]), int(head.shape[1])
    names = [name for name, widths in WIDTHS.items() if widths[0] == width]
    name = model or (names[0] if len(names) == 1 else None)
    if name is None:
        raise DenoiseError(f"the checkpoint's first width is {width}, which is none of {', '.join(MODEL_NAMES)}")
    return name, n_colors or colours


def load_model(weights: str, model: str | None = None, n_colors: int | None = None, device: str = "cpu"):
    """Build the network the checkpoint belongs to (:func:`infer_model`; the ablation options of its
    architecture record too) and load it strictly."""
    state = read_state_dict(weights)
    name, colours = infer_model(state, canonical_name(model) if model else None, n_colors)
    record = checkpoint_architecture(state) or {}
    options = {k: v for k, v in record.items() if k not in ("model", "n_colors")} if record.get("model") == name else {}
    return build_and_load(name, colours, state, device, **options), name, colours


# --- the loop ---------------------------------------------------------------------------------------
def _run_one(model, x: torch.Tensor, n_colors: int, mode: dict, progress: Callable[[int], object]) -> torch.Tensor:
    """Denoise ``(1, C, H, W)``: gray models filter each channel of a colour image separately, RGB
    models see a gray image replicated to 3 channels and return their mean."""
    c = x.shape[1]
    if n_colors == 1 and c == 3:
        return torch.cat([_run_one(model, x[:, i : i + 1], 1, mode, progress) for i in range(3)], 1)
    if n_colors == 3 and c == 1:
        return _run_one(model, x.expand(-1, 3, -1, -1), 3, mode, progress).mean(1, keepdim=True)
    if mode["chop"]:
        y = denoise(
            model,
            x,
            chop=True,
            ensemble=mode["ensemble"],
            min_size=default_chop_min_size(n_colors),
            precision=mode["precision"],
        )
        progress(1)
        return y
    net = model if mode["precision"] == "fp32" else _bf16(model)
    return forward_tiled(net, x, mode["tile"], mode["overlap"], mode["ensemble"], progress).clamp(0.0, 1.0)


def _bf16(model) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model`` under bfloat16 autocast returning float32, so that the tiles are blended in float32."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return model(x).float()

    return forward


def _image_size(path: Path) -> tuple[int, int, int]:
    """``(H, W, colour channels)`` from the header, for the progress total; (0, 0, 0) if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            return h, w, 1 if im.mode in ("L", "LA", "I;16", "I;16B", "I", "1") else 3
    except Exception:
        return 0, 0, 0


def _calls(path: Path, tile: int | None, n_colors: int, chop: bool, overlap: int) -> int:
    """Model calls for one image (a gray model filters each channel of a colour image)."""
    h, w, c = _image_size(path)
    per_channel = 1 if chop or not tile else count_tiles(h, w, tile, overlap)
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

    An output that ``out_dir`` already holds is refused (:class:`DenoiseError`, before any work),
    replaced (``existing="overwrite"``) or kept and its input skipped (``existing="skip"``). A full
    disk raises :class:`~adfnet.fileio.DiskFullError` (the outputs written before are complete).

    ``tile=None`` picks the largest tile that fits ``max_memory`` for each image (``bytes_per_pixel``
    is the model's forward-pass memory per pixel). One tqdm bar counts tiles over all images.
    ``precision="bf16"`` runs the model under bfloat16 autocast (see :func:`adfnet.inference.denoise`).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if existing not in EXISTING:
        raise ValueError(f"existing must be one of {', '.join(EXISTING)}, got {existing!r}")
    check_output_dir(out_dir, inputs)
    if tile is not None:
        check_tiling(tile, overlap)
    found = existing_outputs(inputs, out_dir, fmt)
    if found and existing == "refuse":
        refuse_existing(found, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_temporaries(out_dir):  # left by a killed run: never an output
        tqdm.write(f"note: removed {stale}, a partial file of a killed run")
    budget = None if tile is not None or chop else (max_memory, bytes_per_pixel)
    plans, failures = _plan(inputs, out_dir, fmt, tile, budget, found if existing == "skip" else [])
    total = sum(_calls(p, s, n_colors, chop, overlap) for p, _, s in plans)
    with tqdm(total=total, unit="tile", desc="denoising", dynamic_ncols=True) as bar:
        for src, dst, size in plans:
            bar.set_postfix_str(src.name)
            try:
                info = read_photo_info(src)
                colour, alpha, dtype = read_noisy(src, info)
                h, w, c = colour.shape
                if size is None and not chop:
                    size = choose_tile(h, w, c, max_memory, bytes_per_pixel)
                if min(h, w) < 8:
                    raise ValueError(f"image of {h}x{w} px is too small (at least 8x8)")
                x = torch.from_numpy(colour.transpose(2, 0, 1)).unsqueeze(0).to(device)
                mode = {"chop": chop, "ensemble": ensemble, "tile": size, "overlap": overlap, "precision": precision}
                with torch.no_grad():
                    y = _run_one(model, x, n_colors, mode, bar.update)
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
