"""SIDD and DND ``.mat`` formats (read, write, bundle), kept apart from the scripts that use them.

SIDD: the validation/benchmark files hold one ``N x K x H x W x 3`` uint8 array (40 x 32 x 256 x
256 x 3; keys ``ValidationNoisyBlocksSrgb``, ``ValidationGtBlocksSrgb``,
``BenchmarkNoisyBlocksSrgb``). A submission ``SubmitSrgb.mat`` holds ``DenoisedBlocksSrgb``, an
``N x K`` cell (object array) of ``H x W x 3`` uint8 blocks, the layout the benchmark server and the
official scripts use. :func:`load_sidd_blocks` reads either that cell form or a numeric 5-D array.

DND: one ``.mat`` per crop with ``Idenoised_crop`` (float32 ``H x W x 3`` in [0, 1]) named
``%04d_%d.mat`` (image, crop; 1-based, crop not zero-padded), bundled per image into ``%04d.mat``
with ``Idenoised`` (cell of the crops), ``israw`` (False) and ``eval_version`` ("1.0").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io as sio

from adfnet.fileio import atomic_file
from adfnet.imaging import quantize

SIDD_SUBMISSION_KEY = "DenoisedBlocksSrgb"
# SIDD raw: ValidationNoisyBlocksRaw / ValidationGtBlocksRaw / BenchmarkNoisyBlocksRaw hold N x K x H x W
# float32 Bayer blocks in [0, 1] (40 x 32 x 256 x 256). The benchmark's own writer (SIDD_Denoise.m) saves
# SubmitRaw.mat with DenoisedBlocksRaw (an N x K cell of H x W blocks), TimeMPRaw (seconds per megapixel)
# and OptionalData (a struct of free text), in -v7.3; scipy writes v7, which MATLAB reads the same way.
SIDD_RAW_SUBMISSION_KEY = "DenoisedBlocksRaw"
DND_CROP_KEY = "Idenoised_crop"


def _loadmat(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f".mat file not found: {path}")
    try:
        return sio.loadmat(str(path))
    except NotImplementedError as err:  # scipy's message for MATLAB v7.3 (HDF5) files
        raise ValueError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which scipy cannot read; re-save it in MATLAB with "
            "save(name, var, '-v7') (the official SIDD files are v7 and load directly)"
        ) from err
    except (ValueError, TypeError, OSError) as err:
        raise ValueError(f"cannot read {path} as a .mat file: {err}") from err


def _variables(data: dict) -> dict:
    return {k: v for k, v in data.items() if not k.startswith("__")}


def _cell_to_array(cell: np.ndarray) -> np.ndarray:
    """An ``N x K`` object array of equal-shape blocks -> one ``N x K x H x W x C`` array."""
    rows = [[np.asarray(cell[i, k]) for k in range(cell.shape[1])] for i in range(cell.shape[0])]
    shapes = {b.shape for row in rows for b in row}
    if len(shapes) != 1:
        raise ValueError(f"SIDD blocks must all have the same shape, found {sorted(shapes)}")
    return np.stack([np.stack(row) for row in rows])


def load_sidd_blocks(path: str | Path, key: str | None = None) -> np.ndarray:
    """Read SIDD blocks as an ``N x K x H x W x 3`` uint8 array (numeric or cell form).

    ``key`` defaults to the file's only variable. Float blocks in [0, 1] (``im2single``) are
    rounded to uint8 by :func:`adfnet.imaging.quantize`, the rounding of every other 8-bit score,
    so every flavour compares on the same 8-bit scale.
    """
    key, value = _variable(path, key)
    blocks = _cell_to_array(value) if value.dtype == object else np.asarray(value)
    if blocks.ndim != 5 or blocks.shape[-1] != 3:
        raise ValueError(f"{path}:{key} should be N x K x H x W x 3, got shape {blocks.shape}")
    if blocks.dtype != np.uint8:
        if not np.issubdtype(blocks.dtype, np.floating):
            raise ValueError(f"{path}:{key} has unsupported type {blocks.dtype} (expected uint8 or float in [0, 1])")
        blocks = quantize(blocks)
    return blocks


def _savemat(path: str | Path, variables: dict) -> None:
    """``scipy.io.savemat`` through the one writer (:mod:`adfnet.fileio`): a full disk is an error, not a
    truncated file."""
    with atomic_file(path) as f:
        sio.savemat(f, variables)


def save_sidd_submission(path: str | Path, blocks: np.ndarray) -> None:
    """Write ``N x K x H x W x 3`` uint8 blocks as ``SubmitSrgb.mat`` (``DenoisedBlocksSrgb``, N x K cell)."""
    blocks = np.asarray(blocks)
    if blocks.ndim != 5 or blocks.dtype != np.uint8:
        raise ValueError(f"expected N x K x H x W x 3 uint8 blocks, got {blocks.dtype} {blocks.shape}")
    cell = np.empty(blocks.shape[:2], dtype=object)
    for i in range(blocks.shape[0]):
        for k in range(blocks.shape[1]):
            cell[i, k] = blocks[i, k]
    _savemat(path, {SIDD_SUBMISSION_KEY: cell})


def load_single_array(path: str | Path, key: str | None = None) -> np.ndarray:
    """The variable ``key`` (default: the only one) of a MATLAB v7 ``.mat`` file, as stored."""
    return _variable(path, key)[1]


def _variable(path: str | Path, key: str | None) -> tuple[str, np.ndarray]:
    """``(name, value)`` of the variable ``key`` (default: the only one) of a ``.mat`` file."""
    variables = _variables(_loadmat(path))
    if key is None:
        if len(variables) != 1:
            raise ValueError(f"{path} holds {sorted(variables)}; say which one with a key")
        key = next(iter(variables))
    if key not in variables:
        raise ValueError(f"{path} has no variable {key!r} (it holds {sorted(variables)})")
    return key, variables[key]


def load_sidd_raw_blocks(path: str | Path, key: str | None = None) -> np.ndarray:
    """SIDD raw blocks as an ``N x K x H x W`` float32 array in [0, 1] (numeric or cell form, like the sRGB ones)."""
    key, value = _variable(path, key)
    blocks = _cell_to_array(value) if value.dtype == object else np.asarray(value)
    if blocks.ndim != 4:
        raise ValueError(f"{path}: SIDD raw blocks should be N x K x H x W Bayer mosaics, got shape {blocks.shape}")
    if not np.issubdtype(blocks.dtype, np.floating):
        raise ValueError(f"{path}: raw blocks of type {blocks.dtype}; SIDD stores them as float in [0, 1]")
    if blocks.shape[2] % 2 or blocks.shape[3] % 2:
        raise ValueError(
            f"{path}: a Bayer mosaic needs an even height and width (whole 2x2 CFA tiles), got {blocks.shape[2]}x"
            f"{blocks.shape[3]} blocks: crop or pad them to an even size"
        )
    return blocks.astype(np.float32, copy=False)


def save_sidd_raw_submission(
    path: str | Path, blocks: np.ndarray, time_mp: float, optional: dict[str, str] | None = None
) -> None:
    """Write ``N x K x H x W`` raw blocks as SIDD's ``SubmitRaw.mat``: ``DenoisedBlocksRaw`` (N x K cell of
    float32 blocks), ``TimeMPRaw`` (seconds per megapixel) and ``OptionalData`` (struct of strings)."""
    blocks = np.asarray(blocks)
    if blocks.ndim != 4 or not np.issubdtype(blocks.dtype, np.floating):
        raise ValueError(f"expected N x K x H x W float raw blocks, got {blocks.dtype} {blocks.shape}")
    cell = np.empty(blocks.shape[:2], dtype=object)
    for i in range(blocks.shape[0]):
        for k in range(blocks.shape[1]):
            cell[i, k] = blocks[i, k].astype(np.float32)
    data = {SIDD_RAW_SUBMISSION_KEY: cell, "TimeMPRaw": float(time_mp), "OptionalData": dict(optional or {})}
    _savemat(path, data)


def save_dnd_crop(path: str | Path, img: np.ndarray) -> None:
    """Write one denoised DND crop (float32 ``H x W x 3`` in [0, 1], not quantised) as ``Idenoised_crop``."""
    _savemat(path, {DND_CROP_KEY: np.asarray(img, dtype=np.float32)})


def dnd_crop_name(image: int, crop: int) -> str:
    """The official per-crop file stem: 1-based image ``%04d``, 1-based crop not zero-padded."""
    return f"{image:04d}_{crop}"


def bundle_dnd_submission(
    crop_dir: str | Path,
    out_dir: str | Path,
    n_images: int = 50,
    n_crops: int = 20,
    delete_crops: bool = False,
) -> list[Path]:
    """Bundle ``crop_dir/%04d_%d.mat`` into ``out_dir/%04d.mat`` (``Idenoised``, ``israw``, ``eval_version``).

    Every crop must be present (the missing ones are listed otherwise). Per-crop files are kept
    unless ``delete_crops`` (the official script always deleted them).
    """
    crop_dir, out_dir = Path(crop_dir), Path(out_dir)
    paths = [[crop_dir / f"{dnd_crop_name(i, c)}.mat" for c in range(1, n_crops + 1)] for i in range(1, n_images + 1)]
    missing = [p.name for row in paths for p in row if not p.is_file()]
    if missing:
        shown = ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")
        raise FileNotFoundError(f"{len(missing)} DND crop file(s) missing in {crop_dir}: {shown}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, row in enumerate(paths, start=1):
        cell = np.empty((n_crops,), dtype=object)
        for c, p in enumerate(row):
            data = _variables(_loadmat(p))
            if DND_CROP_KEY not in data:
                raise ValueError(f"{p} has no {DND_CROP_KEY!r} variable")
            cell[c] = data[DND_CROP_KEY]
        target = out_dir / f"{i:04d}.mat"
        _savemat(target, {"Idenoised": cell, "israw": False, "eval_version": "1.0"})
        written.append(target)
    if delete_crops:
        for row in paths:
            for p in row:
                p.unlink()
    return written


def load_dnd_bundle(path: str | Path) -> tuple[list[np.ndarray], bool, str]:
    """Read a bundled ``%04d.mat``: the crops, ``israw`` and ``eval_version`` (for checks and tests)."""
    data = _variables(_loadmat(path))
    cell = data["Idenoised"].reshape(-1)
    crops: Sequence[np.ndarray] = [np.asarray(c) for c in cell]
    return list(crops), bool(np.asarray(data["israw"]).item()), str(np.asarray(data["eval_version"]).item())
