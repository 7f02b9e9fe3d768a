"""Real raw training data by path: paired noisy/clean Bayer mosaics in two folders.

Layout (``--raw --task paired --dir_data ROOT``, and the same for ``--data_val``)::

    ROOT/clean/<name>.npy   (or .mat)   a 2-D Bayer mosaic, float in [0, 1]
    ROOT/noisy/<name>.npy   (or .mat)   the noisy mosaic of the same scene, same name and size

Values are linear raw normalised to [0, 1] (black level subtracted, divided by white level minus black
level; SIDD's raw ``.MAT`` files and blocks already are). Integer arrays are refused rather than guessed
at, because their white level is camera-specific. A ``.mat`` file must hold one 2-D variable (MATLAB v7;
SIDD's full-size v7.3 files need converting, see docs/TRAINING.md). Every mosaic of a folder has the
pattern ``--cfa_pattern``; it is packed to R, Gr, Gb, B (:func:`adfnet.data.raw.pack`), so a model sees
the same colour in the same channel whatever the camera.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from adfnet.data.datasets import TrainingSet, random_crop
from adfnet.data.raw import cfa_forward, pack
from adfnet.matio import load_single_array

RAW_EXTENSIONS = (".npy", ".mat")


def read_bayer(path: Path) -> np.ndarray:
    """One ``H x W`` float32 mosaic in [0, 1] from ``.npy`` or ``.mat`` (even sizes: an odd edge is cropped)."""
    arr = _load_npy(path) if path.suffix.lower() == ".npy" else load_single_array(path)
    if arr.ndim != 2:
        raise ValueError(f"{path}: a Bayer mosaic is a 2-D array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            f"{path}: {arr.dtype} values; store the mosaic as float in [0, 1] (black level subtracted, divided by "
            "the white level): the right scale of integer raw values depends on the camera"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: the mosaic holds NaN or infinite values")
    return np.ascontiguousarray(arr[: arr.shape[0] // 2 * 2, : arr.shape[1] // 2 * 2], dtype=np.float32)


def _load_npy(path: Path, mmap_mode: str | None = None) -> np.ndarray:
    """``np.load`` without pickles (an object array is refused, never run), errors naming the file."""
    try:
        return np.load(path, mmap_mode=mmap_mode)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(
            f"{path}: cannot read it as a Bayer mosaic ({err}); save the mosaic as a plain float array: "
            "np.save(path, mosaic.astype(np.float32))"
        ) from None


def check_npy_headers(pairs: list[tuple[Path, Path]]) -> None:
    """Open every ``.npy`` of ``pairs`` memory-mapped (headers only) before training, so that a file that is
    not a plain array (e.g. pickled objects) is named at the start, not in a data-loader worker."""
    for path in (p for pair in pairs for p in pair if p.suffix.lower() == ".npy"):
        _load_npy(path, mmap_mode="r")


def raw_pair_files(root: str | Path) -> list[tuple[Path, Path]]:
    """``(noisy, clean)`` file pairs of ``root/noisy`` and ``root/clean``, matched by name."""
    root = Path(root)
    found = {}
    for sub in ("noisy", "clean"):
        folder = root / sub
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder} not found: real raw data needs {root}/clean/ and {root}/noisy/ holding Bayer mosaics "
                "(.npy or .mat, float in [0, 1]) with equal names (see docs/TRAINING.md)"
            )
        found[sub] = {p.name: p for p in sorted(folder.iterdir()) if p.suffix.lower() in RAW_EXTENSIONS}
    if not found["clean"]:
        raise FileNotFoundError(f"no .npy or .mat mosaics in {root / 'clean'}")
    if found["clean"].keys() != found["noisy"].keys():
        odd = sorted(found["clean"].keys() ^ found["noisy"].keys())
        raise ValueError(f"{root}: clean/ and noisy/ hold different file names, e.g. {odd[:3]}")
    return [(found["noisy"][name], found["clean"][name]) for name in sorted(found["clean"])]


def _packed(mosaic: np.ndarray, pattern: str) -> torch.Tensor:
    return pack(torch.from_numpy(mosaic)[None, None], pattern)


def _read_pair(noisy_path: Path, clean_path: Path) -> tuple[np.ndarray, np.ndarray]:
    noisy, clean = read_bayer(noisy_path), read_bayer(clean_path)
    if noisy.shape != clean.shape:
        raise ValueError(f"{clean_path.name}: noisy {noisy.shape} and clean {clean.shape} mosaics differ in size")
    return noisy, clean


class RawPairedTrain(TrainingSet):
    """Random ``patch_size`` (mosaic pixels, even) crops of real raw pairs, packed ``(4, P/2, P/2)``.

    Crops start on even rows and columns, so the pattern is kept; the augmentation is one of the 8
    CFA-aware dihedral transforms (:func:`adfnet.data.raw.cfa_forward`, the same on noisy and clean),
    cut back to the patch size. Random choices come from ``(seed, epoch, index)`` as for every training set.
    """

    def __init__(self, root: str | Path, patch_size: int, seed: int = 1, pattern: str = "RGGB") -> None:
        if patch_size < 2 or patch_size % 2:
            raise ValueError(f"raw training patches need an even --patch_size, got {patch_size}")
        self.pairs = raw_pair_files(root)
        super().__init__(len(self.pairs), seed)
        self.patch_size, self.pattern = patch_size, pattern
        pack(torch.zeros(1, 1, 2, 2), pattern)  # an unknown pattern fails here, not in a worker
        check_npy_headers(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        noisy, clean = _read_pair(*self.pairs[index])
        if min(clean.shape) < self.patch_size:
            raise ValueError(f"{self.pairs[index][1]}: {clean.shape} is smaller than --patch_size {self.patch_size}")
        packed = (_packed(x, self.pattern)[0] for x in (noisy, clean))
        return packed_pair_patch(*packed, self.patch_size // 2, self.rng(index))


def packed_pair_patch(
    noisy: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, half: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random ``half x half`` crop and CFA-aware dihedral transform (:func:`adfnet.data.raw.cfa_forward`)
    of two aligned packed raw images ``(4, h, w)``: the real raw pairs' sample (and the teacher-target pairs' of
    :mod:`adfnet.engine.distill`).

    A crop of the packed image is a crop of the mosaic that starts on a 2 x 2 tile, so the pattern is kept; the
    transform may grow the patch by a pixel (see ``cfa_forward``), cut back to ``half``.
    """
    top, left = random_crop(target[0], half, rng)  # (h, w) of the packed grid
    code = int(rng.integers(8))
    out = []
    for x in (noisy, target):
        patch = torch.as_tensor(np.ascontiguousarray(x[:, top : top + half, left : left + half]))
        out.append(cfa_forward(patch[None], code)[0, :, :half, :half].contiguous())
    return out[0], out[1]


class RawPairedVal(Dataset):
    """Whole real raw pairs ``(noisy, clean, name)`` packed ``(4, H/2, W/2)``; the first ``n_val`` if > 0."""

    def __init__(self, root: str | Path, pattern: str = "RGGB", n_val: int = 0) -> None:
        pairs = raw_pair_files(root)
        self.pairs, self.pattern = (pairs[:n_val] if n_val > 0 else pairs), pattern
        pack(torch.zeros(1, 1, 2, 2), pattern)
        check_npy_headers(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        noisy, clean = _read_pair(*self.pairs[index])
        return _packed(noisy, self.pattern)[0], _packed(clean, self.pattern)[0], self.pairs[index][1].stem
