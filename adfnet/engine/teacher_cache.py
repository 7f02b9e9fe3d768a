"""Teacher targets cached on disk, with a manifest of what they were made from (:mod:`adfnet.engine.distill`).

``FOLDER/targets/<n>_<name>.npy`` holds the teacher's output on each noisy input (float32, whole image, in the
input's layout: packed raw ``(4, h, w)`` or ``(H, W, C)``), and ``FOLDER/manifest.json`` what they were made
from: every input file (absolute path, size, mtime, SHA-256), every teacher checkpoint (SHA-256, architecture
record), the ensemble, the layout and a format version (:data:`VERSION`). :func:`write_targets` writes them
(through :mod:`adfnet.fileio`; the manifest last, so a killed write leaves no manifest and is redone);
:func:`read_targets` checks a cache against the run and names the first difference (:class:`CacheError`), so
that targets are never paired with another version of the inputs, another teacher or another layout. A file
whose mtime moved but whose bytes are the same (a copy) still matches: only its SHA-256 is compared then.
:class:`CachedTargets` crops training pairs from a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from adfnet.data.datasets import TrainingSet, image_pair_patch
from adfnet.data.io import list_images, read_image
from adfnet.data.raw import pack
from adfnet.data.raw_pairs import RAW_EXTENSIONS, packed_pair_patch, read_bayer
from adfnet.errors import UserError
from adfnet.fileio import atomic_file, write_text
from adfnet.imaging import image_to_tensor, tensor_to_image

if TYPE_CHECKING:
    from adfnet.engine.distill import Teacher

MANIFEST = "manifest.json"
TARGETS = "targets"
FORMAT = "adfnet teacher targets"
VERSION = 1
LAYOUTS = {1: "gray", 3: "RGB", 4: "packed raw"}
_HASH_CHUNK = 1 << 20


class CacheError(UserError):
    """A teacher-target cache that does not fit the run: other inputs, teacher, ensemble or layout, or damaged."""


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def layout_name(n_colors: int, pattern: str) -> str:
    """How a run's inputs are laid out, as the manifest records it (``"packed raw RGGB"``, ``"gray"``)."""
    return f"{LAYOUTS[n_colors]} {pattern}" if n_colors == 4 else LAYOUTS[n_colors]


def input_files(paths: Sequence[str | os.PathLike], raw: bool) -> list[Path]:
    """The noisy files of ``--teacher_inputs``: each item a file, a folder of them, or a paired-set root
    (its ``noisy/`` folder for raw, ``lq/`` for images); raw inputs are ``.npy``/``.mat`` mosaics."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_file():
            found.append(path)
            continue
        if not path.is_dir():
            raise FileNotFoundError(f"--teacher_inputs {item}: no such file or folder")
        inner = path / ("noisy" if raw else "lq")
        folder = inner if inner.is_dir() else path
        files = (
            sorted(p for p in folder.iterdir() if p.suffix.lower() in RAW_EXTENSIONS) if raw else list_images(folder)
        )
        if not files:
            kind = ".npy or .mat mosaics" if raw else "images"
            raise FileNotFoundError(f"--teacher_inputs {item}: no {kind} in {folder}")
        found += files
    resolved = [p.resolve() for p in found]
    if len(set(resolved)) != len(resolved):
        raise ValueError("--teacher_inputs names a file twice: give each noisy input once")
    return resolved


def read_input(path: Path, n_colors: int, pattern: str) -> np.ndarray:
    """A noisy input in its stored layout: packed raw ``(4, h, w)`` (from a mosaic), else ``(H, W, C)``."""
    if n_colors == 4:
        return pack(torch.from_numpy(read_bayer(path))[None, None], pattern)[0].numpy()
    return read_image(path, n_colors)


def _to_batch(x: np.ndarray, n_colors: int) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))[None] if n_colors == 4 else image_to_tensor(x)


def _from_batch(y: torch.Tensor, n_colors: int) -> np.ndarray:
    return y[0].to("cpu", torch.float32).numpy() if n_colors == 4 else tensor_to_image(y)


def _file_record(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(path)}


def write_targets(
    folder: str | os.PathLike, inputs: Sequence[Path], teacher: Teacher, pattern: str = "RGGB"
) -> list[tuple[Path, Path]]:
    """Run ``teacher`` on every input (whole images) and write the targets and the manifest to ``folder``.

    A folder that already holds a manifest is read instead (:func:`read_targets`: it must match this teacher
    and these inputs, else :class:`CacheError`); targets left by a killed write (no manifest yet) are replaced.
    The manifest is written last. Returns the (input, target) pairs.
    """
    folder = Path(folder)
    layout = layout_name(teacher.n_colors, pattern)
    if (folder / MANIFEST).exists():
        return read_targets(folder, layout, teacher, inputs)
    entries = []
    for index, path in enumerate(tqdm(inputs, desc="teacher targets", unit="image")):
        record = _file_record(path)
        x = read_input(path, teacher.n_colors, pattern)
        y = _from_batch(teacher(_to_batch(x, teacher.n_colors)), teacher.n_colors)
        name = f"{index:05d}_{path.stem}.npy"
        with atomic_file(folder / TARGETS / name, y.nbytes) as f:
            np.save(f, y)
        entries.append({**record, "target": name})
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "layout": layout,
        "ensemble": teacher.ensemble,
        "teachers": teacher.records,
        "inputs": entries,
    }
    write_text(folder / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return [(path, folder / TARGETS / entry["target"]) for path, entry in zip(inputs, entries, strict=True)]


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a cache folder (:class:`CacheError` if it has none, is damaged or of another version)."""
    path = folder / MANIFEST
    if not path.is_file():
        raise CacheError(
            f"--teacher_cache {folder}: no teacher targets there ({MANIFEST} missing); to write them give "
            "--teacher (checkpoints) and --teacher_inputs (noisy files)"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CacheError(f"{path} is damaged ({err}): delete {folder} and write the targets again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CacheError(f"{path} is not a teacher-target manifest: give --teacher_cache a folder of its own")
    if manifest.get("version") != VERSION:
        raise CacheError(
            f"{path} has format version {manifest.get('version')}, this version reads {VERSION}: write the "
            "targets again into a new --teacher_cache folder"
        )
    return manifest


def read_targets(
    folder: str | os.PathLike,
    layout: str,
    teacher: Teacher | None = None,
    inputs: Sequence[Path] | None = None,
) -> list[tuple[Path, Path]]:
    """The (input, target) pairs of a cache, after checking its manifest against the run (:class:`CacheError`
    naming the first difference): the ``layout``, the ``teacher`` (its checkpoints' SHA-256 and ensemble) and the
    ``inputs`` when given, and always every input file (size, then the SHA-256 when the mtime moved) and target."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    redo = f"write new targets into another --teacher_cache folder, or delete {folder}"
    if manifest["layout"] != layout:
        raise CacheError(f"the teacher targets in {folder} are for {manifest['layout']} inputs, the run's are {layout}")
    if teacher is not None:
        _check_teacher(folder, manifest, teacher, redo)
    entries = manifest["inputs"]
    if inputs is not None:
        listed, given = {e["path"] for e in entries}, {str(p) for p in inputs}
        if listed != given:
            extra, missing = sorted(given - listed), sorted(listed - given)
            differ = "; ".join(
                part
                for part in (
                    f"not in the manifest: {', '.join(extra[:3])}" if extra else "",
                    f"not in --teacher_inputs: {', '.join(missing[:3])}" if missing else "",
                )
                if part
            )
            raise CacheError(f"the teacher targets in {folder} were made from other inputs ({differ}): {redo}")
    changed = "teacher targets were made from a different dataset version than the manifest says"
    pairs = []
    for entry in entries:
        path = Path(entry["path"])
        if not path.is_file():
            raise CacheError(f"{changed}: {path} is missing ({folder / MANIFEST}); restore it, or {redo}")
        st = path.stat()
        if st.st_size != entry["size"]:
            raise CacheError(
                f"{changed}: {path} changed ({entry['size']} bytes then, {st.st_size} now); restore it, or {redo}"
            )
        if st.st_mtime_ns != entry["mtime_ns"] and sha256_file(path) != entry["sha256"]:
            raise CacheError(f"{changed}: {path} changed (its contents differ, same size); restore it, or {redo}")
        target = folder / TARGETS / entry["target"]
        if not target.is_file():
            raise CacheError(f"the teacher targets in {folder} are incomplete ({target} is missing): {redo}")
        pairs.append((path, target))
    return pairs


def _check_teacher(folder: Path, manifest: dict[str, Any], teacher: Teacher, redo: str) -> None:
    def names(records: list[dict[str, Any]]) -> str:
        return ", ".join(f"{r['path']} (SHA-256 {r['sha256'][:12]})" for r in records)

    if sorted(r["sha256"] for r in manifest["teachers"]) != sorted(r["sha256"] for r in teacher.records):
        raise CacheError(
            f"the teacher targets in {folder} were made by other teacher weights than --teacher: the manifest has "
            f"{names(manifest['teachers'])}; given {names(teacher.records)}; {redo}"
        )
    if manifest["ensemble"] != teacher.ensemble:
        raise CacheError(
            f"the teacher targets in {folder} were made with --teacher_ensemble {manifest['ensemble']}, this run "
            f"asks for {teacher.ensemble}: {redo}"
        )


class CachedTargets(TrainingSet):
    """Aligned random crops of (noisy input, cached teacher target) pairs: ``length`` samples per epoch, sample
    ``i`` from pair ``i mod N``; the crop and the dihedral transform (CFA-aware for packed raw, the real raw
    pairs' :func:`~adfnet.data.raw_pairs.packed_pair_patch`) as the paired sets make them. ``patch_size`` is
    in image (mosaic) pixels."""

    def __init__(
        self, pairs: Sequence[tuple[Path, Path]], n_colors: int, pattern: str, patch_size: int, length: int, seed: int
    ) -> None:
        if not pairs:
            raise ValueError("the teacher-target cache holds no pairs")
        super().__init__(length, seed)
        self.pairs, self.n_colors, self.pattern, self.patch_size = list(pairs), n_colors, pattern, patch_size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        source, target_path = self.pairs[index % len(self.pairs)]
        noisy = read_input(source, self.n_colors, self.pattern)
        target = np.load(target_path, mmap_mode="r")
        if noisy.shape != target.shape:
            raise CacheError(f"{target_path}: target {target.shape} and input {source} {noisy.shape} differ in size")
        rng = self.rng(index)
        if self.n_colors == 4:
            if min(noisy.shape[1:]) < self.patch_size // 2:
                raise ValueError(f"{source}: smaller than --patch_size {self.patch_size}")
            return packed_pair_patch(noisy, target, self.patch_size // 2, rng)
        if min(noisy.shape[:2]) < self.patch_size:
            raise ValueError(f"{source}: smaller than --patch_size {self.patch_size}")
        return image_pair_patch(noisy, target, self.patch_size, rng)
