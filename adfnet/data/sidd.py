"""SIDD training patches: pair clean/noisy images and write seeded random crops to ``hq/`` and ``lq/``.

Fixes of the official ``generate_patches_SIDD.py``: the output folders are the ``hq/`` (clean) and
``lq/`` (noisy) that the training loader reads (the official wrote ``groundtruth/``/``input/``), crops
are seeded per pair (reproducible whatever the number of processes), every crop position is possible
(the official ``randint(0, H - ps)`` never used the last one), and an existing target is never
deleted unless asked.
"""

from __future__ import annotations

import re
import shutil
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from adfnet.data.io import IMAGE_EXTENSIONS, list_images, read_image, save_image
from adfnet.matio import load_sidd_blocks


def _natural_key(path: Path) -> list[object]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def find_pairs(src_dir: str | Path) -> list[tuple[Path, Path]]:
    """``(clean, noisy)`` image pairs under ``src_dir``, in natural order.

    Two layouts are understood: SIDD-Medium scene folders (``<scene>/*GT*`` with ``<scene>/*NOISY*``,
    paired by their order inside the scene), and two sibling folders ``GT/`` and ``NOISY/`` whose
    files are paired by name (the layout of ``datasets/real/SIDD_samples``).
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise FileNotFoundError(
            f"{src} not found: download SIDD-Medium sRGB (SIDD_Medium_Srgb.zip) from "
            "https://abdokamel.github.io/sidd/ and pass its Data/ folder as --src_dir"
        )
    if (src / "GT").is_dir() and (src / "NOISY").is_dir():
        noisy = {p.name: p for p in list_images(src / "NOISY")}
        clean = sorted(list_images(src / "GT"), key=_natural_key)
        missing = [p.name for p in clean if p.name not in noisy]
        if missing:
            raise ValueError(f"{src}: no NOISY/ image for GT/{missing[0]}")
        return [(p, noisy[p.name]) for p in clean]
    pairs: list[tuple[Path, Path]] = []
    for scene in sorted((d for d in src.iterdir() if d.is_dir()), key=_natural_key):
        files = sorted((p for p in scene.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS), key=_natural_key)
        gt = [p for p in files if "GT" in p.name]
        noisy = [p for p in files if "NOISY" in p.name]
        if len(gt) != len(noisy):
            raise ValueError(f"{scene}: {len(gt)} *GT* but {len(noisy)} *NOISY* images")
        pairs += list(zip(gt, noisy, strict=True))
    if not pairs:
        raise FileNotFoundError(f"no *GT*/*NOISY* image pairs in the scene folders of {src}")
    return pairs


def extract_pair(
    index: int, clean_path: Path, noisy_path: Path, tar_dir: Path, ps: int, num_patches: int, seed: int
) -> int:
    """Write ``num_patches`` aligned ``ps x ps`` crops of one pair as ``<index>_<j>.png``; return the count."""
    clean, noisy = read_image(clean_path, 3), read_image(noisy_path, 3)
    if clean.shape != noisy.shape:
        raise ValueError(f"{clean_path} and {noisy_path} have different sizes")
    h, w = clean.shape[:2]
    if h < ps or w < ps:
        warnings.warn(f"{clean_path} ({h}x{w}) is smaller than the {ps}-px patch: skipped", UserWarning, stacklevel=2)
        return 0
    rng = np.random.default_rng([seed, index])
    for j in range(num_patches):
        top, left = int(rng.integers(h - ps + 1)), int(rng.integers(w - ps + 1))
        name = f"{index + 1:04d}_{j + 1:03d}.png"
        save_image(tar_dir / "hq" / name, clean[top : top + ps, left : left + ps])
        save_image(tar_dir / "lq" / name, noisy[top : top + ps, left : left + ps])
    return num_patches


def _prepare_target(tar: Path, overwrite: bool) -> None:
    """Create ``tar/hq`` and ``tar/lq``; refuse non-empty ones unless ``overwrite`` (then delete those two only)."""
    existing = [tar / sub for sub in ("hq", "lq") if (tar / sub).is_dir() and any((tar / sub).iterdir())]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} already holds files; choose another --tar_dir or pass --overwrite")
    for folder in existing:
        shutil.rmtree(folder)
    for sub in ("hq", "lq"):
        (tar / sub).mkdir(parents=True, exist_ok=True)


def export_validation_blocks(mat_dir: str | Path, tar_dir: str | Path, overwrite: bool = False) -> int:
    """Write the SIDD validation blocks (``ValidationNoisyBlocksSrgb.mat`` + ``ValidationGtBlocksSrgb.mat``,
    40 x 32 blocks of 256x256) as ``lq/``/``hq/`` PNGs named ``<image>_<block>.png``: the training VAL_DIR."""
    mat_dir, tar = Path(mat_dir), Path(tar_dir)
    noisy = load_sidd_blocks(mat_dir / "ValidationNoisyBlocksSrgb.mat", "ValidationNoisyBlocksSrgb")
    clean = load_sidd_blocks(mat_dir / "ValidationGtBlocksSrgb.mat", "ValidationGtBlocksSrgb")
    if noisy.shape != clean.shape:
        raise ValueError(f"noisy {noisy.shape} and clean {clean.shape} validation blocks differ in shape")
    _prepare_target(tar, overwrite)
    for i in range(noisy.shape[0]):
        for k in range(noisy.shape[1]):
            save_image(tar / "lq" / f"{i + 1:04d}_{k + 1:02d}.png", noisy[i, k])
            save_image(tar / "hq" / f"{i + 1:04d}_{k + 1:02d}.png", clean[i, k])
    return noisy.shape[0] * noisy.shape[1]


def generate_patches(
    src_dir: str | Path,
    tar_dir: str | Path,
    ps: int = 256,
    num_patches: int = 300,
    num_cores: int = 1,
    seed: int = 0,
    overwrite: bool = False,
) -> int:
    """Crop every pair under ``src_dir`` into ``tar_dir/hq`` and ``tar_dir/lq``; return the number of patches.

    Refuses to touch an existing non-empty ``hq/`` or ``lq/`` unless ``overwrite`` (which then
    deletes those two folders only).
    """
    tar = Path(tar_dir)
    pairs = find_pairs(src_dir)
    _prepare_target(tar, overwrite)
    jobs = [(i, c, n, tar, ps, num_patches, seed) for i, (c, n) in enumerate(pairs)]
    if num_cores > 1:
        with ProcessPoolExecutor(max_workers=num_cores) as pool:
            counts = list(pool.map(extract_pair, *zip(*jobs, strict=True)))
    else:
        counts = [extract_pair(*job) for job in jobs]
    if not sum(counts):
        raise ValueError(f"every image under {src_dir} is smaller than --ps {ps}: no patch written")
    return sum(counts)
