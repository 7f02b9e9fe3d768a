"""A teacher's output as the training target: the one distillation mechanism of the trainer.

A *teacher* (:class:`Teacher`) is one or several trained networks, loaded with
:func:`adfnet.checkpoint.load_checkpoint` and frozen (eval mode, no gradients), whose outputs are averaged; each
may run with an x8 self-ensemble: ``x8`` is the geometric one of :func:`adfnet.inference.denoise`, ``cfa`` the
CFA-aware one of packed raw (:func:`adfnet.evaluation.raw.denoise_packed`). Its output on a noisy input is that
input's target, made in one of two ways (``adfnet-train`` flags, :class:`~adfnet.engine.config.TrainConfig`
fields):

* **online** (``--teacher`` alone): the run's own training set is drawn as usual and the teacher's output on
  each noisy crop replaces its clean target (:class:`TeacherTargets`). In DataLoader workers
  (``--n_threads`` > 0) the teacher runs on the CPU: CUDA cannot be used in forked workers.
* **cached** (``--teacher_cache FOLDER``): the teacher runs once over fixed noisy files (``--teacher_inputs``:
  files, folders, or paired-set roots whose ``noisy/`` (raw) or ``lq/`` (images) folder is used), whole images,
  and its outputs are written to ``FOLDER/targets/`` with ``FOLDER/manifest.json``; training crops aligned
  (input, target) patches from there, ``--test_every`` x ``--batch_size`` per epoch like the synthetic sets.
  The manifest records what the targets were made from (every input file's size, mtime and SHA-256, every
  teacher checkpoint's SHA-256 and architecture, the ensemble, the layout, a format version); reading a cache
  checks all of it and names any difference, and a cache is never overwritten
  (:mod:`adfnet.engine.teacher_cache`).

``--teacher_share S`` < 1 mixes the teacher pairs with the run's own training set (:class:`MixedSet`): each
sample is a teacher pair with probability S, else a pair of the ``--task`` set, e.g. (real noisy image, teacher
output) pairs beside synthetic (noisy, clean) ones.

Layouts: inputs are read as the run's model takes them: packed raw ``(4, h, w)`` in ``--cfa_pattern`` from
``.npy``/``.mat`` mosaics (:func:`adfnet.data.raw_pairs.read_bayer`), gray or RGB images otherwise; every teacher
network must take that layout (a raw teacher is trained with ``--raw``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from adfnet.checkpoint import load_checkpoint
from adfnet.data.datasets import TrainingSet
from adfnet.engine.config import TEACHER_ENSEMBLES, TrainConfig
from adfnet.engine.teacher_cache import (
    LAYOUTS,
    MANIFEST,
    CachedTargets,
    input_files,
    layout_name,
    read_targets,
    sha256_file,
    write_targets,
)
from adfnet.errors import UserError
from adfnet.evaluation.raw import denoise_packed
from adfnet.inference import denoise


class Teacher:
    """Frozen networks whose averaged output is the target (module docstring).

    ``checkpoints``: weight files (any layout ``load_checkpoint`` reads; the network is the one each holds).
    ``n_colors``: the layout of the inputs (1 gray, 3 RGB, 4 packed raw), which every network must take.
    ``ensemble``: ``"none"``, ``"x8"`` (geometric) or ``"cfa"`` (CFA-aware, packed raw only). ``chop``: run each
    network with the memory-saving quadrant chop.
    """

    def __init__(
        self,
        checkpoints: Sequence[str | os.PathLike],
        n_colors: int,
        ensemble: str = "none",
        device: torch.device | str = "cpu",
        chop: bool = False,
    ) -> None:
        if ensemble not in TEACHER_ENSEMBLES:
            raise ValueError(f"--teacher_ensemble must be one of {', '.join(TEACHER_ENSEMBLES)}, got {ensemble!r}")
        if ensemble == "cfa" and n_colors != 4:
            raise ValueError("--teacher_ensemble cfa is the CFA-aware ensemble of packed raw (n_colors 4): use x8")
        if not checkpoints:
            raise ValueError("a teacher needs at least one checkpoint (--teacher)")
        self.n_colors, self.ensemble, self.chop = n_colors, ensemble, chop
        self.models: list[nn.Module] = []
        self.records: list[dict[str, Any]] = []
        for path in checkpoints:
            model, spec = load_checkpoint(path, device=device)
            if spec.n_colors != n_colors:
                raise UserError(
                    f"--teacher {path} is a {spec.name} for {LAYOUTS.get(spec.n_colors, spec.n_colors)} inputs "
                    f"(n_colors={spec.n_colors}), but this run's inputs are {LAYOUTS[n_colors]} (n_colors={n_colors}): "
                    "use a teacher trained on the same layout (raw teachers with --raw)"
                )
            model.requires_grad_(False)
            self.models.append(model)
            record = {"path": str(Path(path).resolve()), "sha256": sha256_file(path), "model": spec.record()}
            self.records.append(record)

    def to(self, device: torch.device | str) -> Teacher:
        self.models = [m.to(device) for m in self.models]
        return self

    @property
    def device(self) -> torch.device:
        return next(self.models[0].parameters()).device

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The averaged output on a ``(B, C, H, W)`` batch (on the teacher's device), clamped to [0, 1]."""
        if x.dim() != 4 or x.shape[1] != self.n_colors:
            raise ValueError(f"the teacher takes (B, {self.n_colors}, H, W) inputs, got shape {tuple(x.shape)}")
        x = x.to(self.device)
        total = None
        for model in self.models:
            model.eval()  # frozen: whatever a caller did with the module, the teacher runs in eval mode
            if self.ensemble == "cfa":
                y = denoise_packed(model, x, chop=self.chop, ensemble=True)
            else:  # the noisy input is the training data's: no image-range check
                y = denoise(model, x, "chop" if self.chop else "whole", self.ensemble == "x8", check_range=False)
            total = y.double() if total is None else total + y.double()
        return (total / len(self.models)).to(x.dtype)


class TeacherTargets(Dataset):
    """Online targets: ``(noisy, teacher(noisy))`` for each ``(noisy, ...)`` sample of ``source``."""

    def __init__(self, source: Dataset, teacher: Teacher) -> None:
        self.source, self.teacher = source, teacher

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.source, "set_epoch"):
            self.source.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        noisy = self.source[index][0]
        return noisy, self.teacher(noisy[None])[0].to("cpu", noisy.dtype)


class MixedSet(TrainingSet):
    """``length`` samples per epoch, each from ``teacher_pairs`` with probability ``share``, else from ``other``
    (a uniformly drawn sample of the chosen set; the choice and the draw come from ``(seed, epoch, index)``)."""

    def __init__(self, teacher_pairs: Dataset, other: Dataset, share: float, length: int, seed: int) -> None:
        super().__init__(length, seed)
        self.parts, self.share = (teacher_pairs, other), share

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for part in self.parts:
            if hasattr(part, "set_epoch"):
                part.set_epoch(epoch)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng(index)
        part = self.parts[0] if rng.random() < self.share else self.parts[1]
        return part[int(rng.integers(len(part)))]  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- the trainer's set
def uses_teacher(config: TrainConfig) -> bool:
    """Whether the run trains on teacher targets."""
    return bool(config.teacher or config.teacher_cache)


def training_set(
    config: TrainConfig,
    task_set: Callable[[], Dataset],
    device: torch.device,
    log: Callable[[str], object],
    write: bool = True,
) -> Dataset:
    """The training set of a distillation run (``config``'s ``teacher*`` fields; module docstring).

    ``task_set`` builds the run's own ``--task`` set (the online teacher's inputs, or the pairs mixed in);
    ``device`` is where the teacher runs outside DataLoader workers; ``write`` False (the other processes of a
    distributed run, which wait for the first to write) only reads the cache.
    """
    a = config
    length = (a.test_every or 1000) * a.batch_size
    if not a.teacher_cache:  # online
        teacher = Teacher(a.teacher, a.n_colors, a.teacher_ensemble, device if a.n_threads == 0 else "cpu", a.chop)
        log(f"teacher targets online: the average of {', '.join(a.teacher)} (ensemble {a.teacher_ensemble})")
        task = task_set()
        pairs: Dataset = TeacherTargets(task, teacher)
        return pairs if a.teacher_share == 1 else MixedSet(pairs, task, a.teacher_share, len(task), a.seed)
    layout = layout_name(a.n_colors, a.cfa_pattern)
    inputs = input_files(a.teacher_inputs, a.raw) if a.teacher_inputs else None
    teacher = Teacher(a.teacher, a.n_colors, a.teacher_ensemble, device, a.chop) if a.teacher else None
    folder = Path(a.teacher_cache)
    if write and teacher is not None and not (folder / MANIFEST).exists():
        if inputs is None:
            raise ValueError(f"--teacher_cache {folder} holds no targets yet: give --teacher_inputs (the noisy files)")
        log(f"writing the targets of {len(inputs)} input(s) by {', '.join(a.teacher)} to {folder}")
        found = write_targets(folder, inputs, teacher, a.cfa_pattern)
    else:
        found = read_targets(folder, layout, teacher, inputs)
    log(f"teacher targets: {len(found)} pair(s) from {folder}")
    pairs = CachedTargets(found, a.n_colors, a.cfa_pattern, a.patch_size, length, a.seed)
    return pairs if a.teacher_share == 1 else MixedSet(pairs, task_set(), a.teacher_share, length, a.seed)
