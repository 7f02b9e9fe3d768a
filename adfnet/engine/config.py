"""What a training run is, as data: :class:`TrainConfig`, the one thing :class:`~adfnet.engine.trainer.Trainer` takes.

Its fields are train.py's options under their flag names (a YAML recipe's keys, the settings a checkpoint
records and ``--resume -1`` compares), typed, with train.py's defaults; ``model_options`` adds the ``build_model``
options that have no flag (a backbone's depth, DBSN's configuration). The command line
(:mod:`adfnet.engine.options`) builds one from the flags; an experiment builds one directly
(``TrainConfig(model="dncnn", model_options={"depth": 10}, ...)``).

A staged recipe (DBSN's: pre-train mu, then the sigma nets, then fine-tune all) lists its ``stages``: each a
mapping of fields that differ from the rest of the config, checked here; the recipe runner
(:func:`adfnet.engine.recipe.staged_run`) runs each as its own run in ``<dir_experiment>/<save>/<k>_<stage>``,
started from the previous stage's weights.

The defaults that differ between the gray and the colour recipes are ``None`` and filled in from ``n_colors``
(gray 950 epochs, x0.5 every 220; colour 1000 epochs, x0.5 every 200); the values are checked when the config
is made (``ValueError`` naming the flag), and the noise model is resolved once (``noise_model``). A config is
frozen: change one with ``dataclasses.replace``, which keeps the defaults already filled in.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from adfnet.data.datasets import DATASETS_ROOT
from adfnet.data.noise import NoiseModel, noise_from_flags
from adfnet.models import ADFNet, ModelSpec, canonical_name
from adfnet.models.spec import ablation_options

GRAY_DEFAULTS = {"epochs": 950, "lr_decay": 220, "val_seed": 1, "data_val": "Set12"}
COLOR_DEFAULTS = {"epochs": 1000, "lr_decay": 200, "val_seed": 20, "data_val": "McMaster"}
TASK_DEFAULTS = {"val_per_epoch": 1, "val_after_epoch": 0, "mixup_after_epoch": -1, "clamp_output": False}
EXT_CHOICES = ("img", "sep", "sep_reset")  # the official --ext: decode the images, or one .npy per image
ENDLESS_EPOCHS = 10**8  # --epochs 0
TASKS = ("synthetic", "paired", "noisy")
# DBSN's stages (adfnet.engine.dbsn): which nets learn, with which of the authors' losses
DBSN_STAGES = ("mu", "sigma", "all")
TEACHER_ENSEMBLES = ("none", "x8", "cfa")  # --teacher_ensemble: none, geometric x8, CFA-aware x8 (packed raw)


def default_workers() -> int:
    """The official 4 DataLoader workers, but no more than the CPUs this process may use (beyond that
    the DataLoader warns and the workers only compete). Samples do not depend on the worker count."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(4, cpus)


@dataclass(frozen=True)
class TrainConfig:
    """A training run: train.py's options (their meaning: ``adfnet-train --help``), checked and resolved."""

    # hardware
    n_GPUs: int = 1
    n_threads: int = field(default_factory=default_workers)
    seed: int = 1
    amp: str = "none"
    # data
    task: str = "synthetic"  # synthetic: noise on clean images; paired: hq/ + lq/; noisy: noisy images alone
    data_train: str = "DIV2K"
    dir_data: str = str(DATASETS_ROOT)
    data_val: str | None = None
    n_val: int = 0
    val_seed: int | None = None
    n_colors: int = 3
    noiseL: float = 50
    noise: str | None = None
    noise_params: list[float] | None = None
    raw: bool = False
    cfa_pattern: str = "RGGB"
    clip_noisy: bool = False
    patch_size: int = 128
    cache: bool = False
    cache_dir: str | None = None
    ext: str | None = None
    # model
    model: str = "adfnet"
    placement: str = "decoder"
    no_dcb: bool = False
    no_mdcb: bool = False
    no_mfi: bool = False
    model_options: Mapping[str, object] = field(default_factory=dict)
    pre_train: str = "."
    # optimisation
    batch_size: int = 16
    epochs: int | None = None
    test_every: int | None = None
    lr: float = 1e-4
    lr_sigma_mu: float | None = None  # DBSN's sigma_mu net (None: --lr)
    lr_sigma_n: float | None = None  # DBSN's sigma_n net (None: --lr)
    dbsn_stage: str = "all"  # DBSN: which nets learn (DBSN_STAGES)
    decay_type: str = "step"
    lr_decay: int | None = None
    gamma: float = 0.5
    lr_min: float = 1e-6
    warmup_epochs: int = 3
    optimizer: str = "ADAM"
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
    weight_decay: float = 0.0
    loss: str = "1*MSE"
    max_nonfinite: int = 20
    val_per_epoch: int | None = None
    val_after_epoch: int | None = None
    mixup_after_epoch: int | None = None
    clamp_output: bool | None = None
    stages: tuple[Mapping[str, object], ...] = ()  # a staged recipe: per stage, the fields that differ
    # distillation: a teacher's output as the target (adfnet.engine.distill)
    teacher: list[str] | None = None
    teacher_ensemble: str = "none"
    teacher_inputs: list[str] | None = None
    teacher_cache: str | None = None
    teacher_share: float = 1.0
    # run folder, checkpoints, validation
    save: str = "."
    dir_experiment: str = "experiment"
    resume: int = 0
    time_budget: float | None = None
    overwrite: bool = False
    save_models: bool = False
    save_results: bool = False
    print_every: int = 100
    test_only: bool = False
    chop: bool = False
    ensemble: bool = False
    # runtime
    cpu: bool = False
    device: str | None = None
    dcn_backend: str | None = None
    # resolved from noise / noise_params / noiseL / raw
    noise_model: NoiseModel = field(init=False)

    def __post_init__(self) -> None:
        self._fill_defaults()
        self._check()
        noises = noise_from_flags(self.noise, self.noise_params, [self.noiseL], raw=self.raw)
        if len(noises) != 1:
            raise ValueError(f"--noise awgn --noise_params: a run trains on one sigma, got {len(noises)}")
        noise = noises[0]
        if noise.name == "mg" and self.n_colors != 3:
            raise ValueError("--noise mg correlates the 3 colour channels: it needs --n_colors 3")
        object.__setattr__(self, "noise_model", noise)

    def _set(self, **values: object) -> None:
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def _fill_defaults(self) -> None:
        self._set(model=canonical_name(self.model))
        if self.task == "noisy" and self.data_val is None:  # no clean image anywhere: validate on noisy crops
            self._set(data_val=self.dir_data)
        self._set(stages=tuple(dict(stage) for stage in self.stages))
        if self.raw or self.n_colors == 4:
            self._set(raw=True, n_colors=4)
        for key, value in {**(GRAY_DEFAULTS if self.n_colors == 1 else COLOR_DEFAULTS), **TASK_DEFAULTS}.items():
            if getattr(self, key) is None:
                self._set(**{key: value})
        if self.epochs == 0:
            self._set(epochs=ENDLESS_EPOCHS)
        if self.save == ".":
            self._set(save=time.strftime("%Y-%m-%d-%H:%M:%S"))
        if self.ext in ("sep", "sep_reset"):  # the official spelling of --cache
            self._set(cache=True)
        if self.test_every is None and self.data_train.upper() != "MIX":  # MIX: None = 2N samples (trainer)
            self._set(test_every=1000)
        if self.noise_params is not None:
            self._set(noise_params=list(self.noise_params))
        for key in ("teacher", "teacher_inputs"):  # lists of paths (one path alone is a list of one); [] is not given
            value = getattr(self, key)
            if isinstance(value, str | os.PathLike):
                value = [value]
            self._set(**{key: [str(v) for v in value] if value else None})
        self._set(model_options=dict(self.model_options))

    def _check(self) -> None:
        """The ranges train.py's flags check, for a config made without them (an experiment, a recipe)."""
        if self.epochs < 0:
            raise ValueError(f"--epochs {self.epochs}: give the number of epochs to train (0 = practically endless)")
        for name in ("batch_size", "patch_size", "test_every", "val_per_epoch", "print_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1")
        if self.lr_decay < 1 or self.n_threads < 0 or not 0 <= self.seed < 2**32:
            raise ValueError(
                f"--lr_decay must be >= 1, --n_threads >= 0 and --seed from 0 to 2**32 - 1; got {self.lr_decay}, "
                f"{self.n_threads} and {self.seed}"
            )
        self._check_task()
        self._check_stages()
        if self.n_colors not in (1, 3, 4):
            raise ValueError(f"n_colors must be 1, 3 or 4 (raw), got {self.n_colors}")
        multiple = ADFNet.size_multiple * (2 if self.raw else 1)  # raw: the mosaic crop is packed to half its size
        if self.patch_size % multiple:
            raise ValueError(
                f"--patch_size {self.patch_size} must be a multiple of {multiple} (ADFNet downsamples three times"
                + (", after packing the mosaic to half its size)" if self.raw else ")")
            )
        self._check_cache()
        if not (isinstance(self.lr, float | int) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"--lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.noiseL, float | int) and math.isfinite(self.noiseL) and self.noiseL >= 0):
            raise ValueError(f"--noiseL must be a finite number >= 0, got {self.noiseL!r}")
        if self.time_budget is not None and not (
            isinstance(self.time_budget, float | int) and math.isfinite(self.time_budget) and self.time_budget > 0
        ):
            raise ValueError(f"--time_budget must be a positive number of minutes, got {self.time_budget!r}")
        self._check_teacher()

    def _check_cache(self) -> None:
        if self.ext is not None and self.ext not in EXT_CHOICES:
            raise ValueError(f"--ext must be one of {', '.join(EXT_CHOICES)}, got {self.ext!r}")
        if self.ext == "img" and self.cache:
            raise ValueError("--ext img (no cache) contradicts --cache: give one of them")
        if self.cache_dir is not None and not self.cache:
            raise ValueError("--cache_dir names the folder of the decoded cache: it needs --cache (or --ext sep)")

    def _check_teacher(self) -> None:
        """The combinations of the distillation options that mean something (docs/TRAINING.md)."""
        if self.teacher_ensemble not in TEACHER_ENSEMBLES:
            raise ValueError(
                f"--teacher_ensemble must be one of {', '.join(TEACHER_ENSEMBLES)}, got {self.teacher_ensemble!r}"
            )
        if self.teacher_ensemble != "none" and not self.teacher:
            raise ValueError(f"--teacher_ensemble {self.teacher_ensemble} needs --teacher (the networks it runs)")
        if self.teacher_ensemble == "cfa" and not self.raw:
            raise ValueError("--teacher_ensemble cfa is the CFA-aware ensemble of packed raw: it needs --raw (else x8)")
        if self.teacher_inputs and not self.teacher_cache:
            raise ValueError(
                "--teacher_inputs are fixed files whose teacher outputs are written once: give --teacher_cache FOLDER "
                "(without --teacher_inputs the teacher runs online on the --task training set)"
            )
        if not (isinstance(self.teacher_share, float | int) and 0 < self.teacher_share <= 1):
            raise ValueError(f"--teacher_share must be in (0, 1], got {self.teacher_share!r}")
        if self.teacher_share < 1 and not (self.teacher or self.teacher_cache):
            raise ValueError(
                "--teacher_share mixes teacher pairs into the training set: it needs --teacher or --teacher_cache"
            )

    def _check_task(self) -> None:
        """The task and DBSN's options: noisy images alone only teach a self-supervised network."""
        if self.task not in TASKS:
            raise ValueError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.task == "noisy" and self.model != "dbsn":
            raise ValueError(
                f"--task noisy trains from noisy images alone, which only --model dbsn can learn from (--model "
                f"{self.model} would learn to copy its input): train dbsn, then distill it into {self.model}"
            )
        if str(self.noise).lower() == "learned" and not self.teacher:
            raise ValueError(
                "--noise learned draws the noise a DBSN learned from noisy images: give its checkpoint as --teacher"
            )
        if self.dbsn_stage not in DBSN_STAGES:
            raise ValueError(f"--dbsn_stage must be one of {', '.join(DBSN_STAGES)}, got {self.dbsn_stage!r}")
        for name in ("lr_sigma_mu", "lr_sigma_n"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, float | int) and math.isfinite(value) and value >= 0):
                raise ValueError(f"--{name} must be a number >= 0, got {value!r}")

    def _check_stages(self) -> None:
        """Each stage names fields of this config (and, optionally, the ``name`` of its folder)."""
        known = set(self.field_names()) - {"stages", "save", "dir_experiment", "resume", "pre_train"}
        for k, stage in enumerate(self.stages, 1):
            unknown = sorted(set(stage) - known - {"name"})
            if unknown:
                raise ValueError(
                    f"stage {k} of the recipe sets {', '.join(unknown)}: a stage sets train.py options (not "
                    "--save, --dir_experiment, --resume or --pre_train, which the stages chain themselves)"
                )

    @property
    def spec(self) -> ModelSpec:
        """The network to train: ``model``, ``n_colors``, ADFNet's ablation flags and ``model_options``."""
        ablations = ablation_options(self.model, self.placement, self.no_dcb, self.no_mdcb, self.no_mfi)
        return ModelSpec(self.model, self.n_colors, {**ablations, **self.model_options})

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The options a config takes (a recipe's keys)."""
        return tuple(f.name for f in fields(cls) if f.init)
