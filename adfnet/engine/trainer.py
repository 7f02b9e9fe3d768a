"""The one training loop (gray/colour AWGN and paired real noise), with validation and resumable state.

Per epoch: train ``test_every`` iterations (synthetic; the official two passes over the images for MIX
without ``--test_every``) or one pass over the patches (paired), validate
``val_per_epoch`` times, step the scheduler, then write ``model/model_latest.pt`` (and
``model_best.pt`` on improvement; raw state_dicts as the official code) and, last,
``checkpoint_latest.pt`` with everything ``--resume -1`` needs. All files are written atomically and
carry the model's architecture record; the checkpoint also holds the run's settings, compared on resume.

Only finite weights are ever validated or saved: a step that makes a weight NaN/inf, or a validation
output that is not finite, stops the run at once (the previous checkpoint stays the last one), and
the stop, like Ctrl-C, is logged with where the last complete checkpoint is and how to continue.
"""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DataParallel, DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler
from tqdm import tqdm

from adfnet.checkpoint import load_weights, weights_with_architecture
from adfnet.data.cache import IMAGE_DECODING, DecodedCache
from adfnet.data.datasets import (
    PairedTrain,
    PairedVal,
    SyntheticNoiseTrain,
    SyntheticNoiseVal,
    training_files,
    validation_files,
)
from adfnet.data.io import save_image, tensor_to_image
from adfnet.data.noise import NoiseModel
from adfnet.data.raw_pairs import BAYER_DECODING, RawPairedTrain, RawPairedVal
from adfnet.data.unprocess import UnprocessedRawTrain, UnprocessedRawVal
from adfnet.engine import distill
from adfnet.engine.config import TrainConfig
from adfnet.engine.distributed import (
    DistInfo,
    SkipFirst,
    all_finite,
    any_process,
    barrier,
    cleanup,
    init_distributed,
    mean_over_processes,
)
from adfnet.engine.runs import (
    CHECKPOINT,
    RunFolderError,
    branch_folder,
    claim_new_run,
    resume_command,
    resume_conflicts,
    run_config,
    saved_files,
)
from adfnet.engine.schedulers import build_scheduler
from adfnet.engine.state import (
    STATE_VERSION,
    atomic_save,
    ctrl_c_deferred,
    load_training_state,
    rng_state,
    set_rng_state,
)
from adfnet.evaluation.raw import denoise_packed
from adfnet.figures import comparison_panel
from adfnet.fileio import append_text, atomic_file, remove_stale_temporaries
from adfnet.inference import NonFiniteOutputError, denoise
from adfnet.losses import build_loss
from adfnet.metrics import psnr, psnr_raw

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
VAL_PANELS = 2  # validation images shown as noisy | output | clean panels in TensorBoard


class NonFiniteLossError(RuntimeError):
    """The run has diverged: too many non-finite losses in a row, non-finite weights or validation output."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (the model initialisation depends on it)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def mixup_draws(rng: np.random.Generator, b: int) -> tuple[np.ndarray, np.ndarray]:
    """MixUp's random draws for a batch of ``b``: the lambdas and the partners (also replayed for the batches
    a resumed epoch skips, so that it continues the uninterrupted run's stream)."""
    return rng.beta(1.2, 1.2, size=b), rng.permutation(b)


def mixup(noisy: torch.Tensor, clean: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The official MixUp_AUG: per sample, lambda ~ Beta(1.2, 1.2) and a partner from the same batch;
    noisy and clean are mixed with the same lambda."""
    lam, perm = mixup_draws(rng, noisy.shape[0])
    lam = torch.as_tensor(lam, dtype=noisy.dtype, device=noisy.device).view(-1, 1, 1, 1)
    perm = torch.as_tensor(perm, device=noisy.device)
    return lam * noisy + (1 - lam) * noisy[perm], lam * clean + (1 - lam) * clean[perm]


def validation_points(iterations: int, per_epoch: int) -> set[int]:
    """1-based iterations after which to validate, evenly spread, always including the last."""
    return {max(1, math.ceil(k * iterations / per_epoch)) for k in range(1, per_epoch + 1)}


class Trainer:
    """Builds everything from a :class:`~adfnet.engine.config.TrainConfig`; :meth:`fit` trains, :meth:`validate`
    evaluates.

    What a recipe with other networks, losses or targets changes is one small method each, for a subclass to
    override: :meth:`build_network`, :meth:`build_loss`, :meth:`build_optimizer` (parameter groups),
    :meth:`build_scheduler`, :meth:`compute_loss` (what is compared with what), the datasets.
    """

    # What validate() returns (higher is better; the best weights are kept by it), its unit and format in the logs.
    val_metric, val_unit, val_format = "PSNR", "dB", ".3f"
    # How a user continues this run, for the stop messages: set by whoever drives it (a recipe runs several runs
    # under one command of its own); None: train.py's command given, with --resume -1 (:meth:`continue_command`).
    continue_hint: Callable[..., str] | None = None

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        use_cuda = torch.cuda.is_available() and not config.cpu
        self.dist: DistInfo = init_distributed(use_cuda)
        self.device = torch.device(
            f"cuda:{self.dist.local_rank}" if use_cuda and self.dist.enabled else "cuda" if use_cuda else "cpu"
        )
        if config.batch_size % self.dist.world_size:
            raise ValueError(
                f"--batch_size {config.batch_size} is not divisible by the {self.dist.world_size} processes"
            )
        self.batch_size = config.batch_size // self.dist.world_size
        self.noise = self.build_noise_model()
        self.val_set = self._build_val_set()  # checks the validation images before anything is written
        self.run_dir = Path(config.dir_experiment) / config.save
        self._notes: list[str] = []  # what the folder checks did, logged once the folder exists
        self._claim_run_folder()
        self.model_dir = self.run_dir / "model"
        if self.dist.is_main:
            self.model_dir.mkdir(parents=True, exist_ok=True)
            removed = remove_stale_temporaries(self.run_dir)
            if removed:
                self._notes.append(
                    f"removed {len(removed)} temporary file(s) left by a killed run: "
                    f"{', '.join(p.name for p in removed)}"
                )
        barrier(self.dist)
        for note in self._notes:
            self.log(note)
        seed_everything(config.seed)

        self.net = self.build_network().to(self.device)
        self.loss_fn = self.build_loss()
        self.optimizer = self.build_optimizer()
        self.scheduler = self.build_scheduler()
        self.amp_dtype = AMP_DTYPES.get(config.amp)
        if self.amp_dtype == torch.float16 and not use_cuda:  # CPU autocast is meant for bf16
            warnings.warn(
                "--amp fp16 is for CUDA; on the CPU use --amp bf16. Training in fp32", UserWarning, stacklevel=2
            )
            self.amp_dtype = None
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

        self.start_epoch, self.best = 1, {"psnr": -math.inf, "epoch": 0}
        self.saved_at = ""  # where the checkpoint on disk stands, "epoch 3" ("": none)
        self.history: list[dict[str, Any]] = []
        self.iteration = 0
        self._clock: tuple[float, int] | None = None  # (start time, iteration) of this fit(): the run's ETA
        self.elapsed = 0.0  # seconds trained by this run's earlier invocations (the --time_budget clock)
        self.position: dict[str, Any] | None = None  # where an epoch stopped part-way (by --time_budget)
        self.budget_stop = 0  # the iteration of its epoch after which --time_budget stopped this invocation (0: none)
        self.nonfinite = 0
        self.psnr_log: dict[int, float] = {}  # last validation PSNR of each epoch
        self.last_val: dict[str, Any] | None = None  # the latest validation: psnr, epoch, iteration
        self.val_panels: list[tuple[str, np.ndarray]] = []  # set by validate(): TensorBoard sample panels
        self._resume()
        self.model = self._wrap(self.net, use_cuda)
        self.writer = self._open_writer()

    # ------------------------------------------------------------------ construction
    def build_noise_model(self) -> NoiseModel:
        """The synthetic noise of the training and validation sets: the config's, or with ``--noise learned`` the
        noise model the ``--teacher`` DBSN learned (:func:`adfnet.engine.dbsn.learned_noise`)."""
        if self.config.noise_model.name == "learned":
            from adfnet.engine.dbsn import learned_noise  # it builds on this module

            return learned_noise(self.config.teacher or [])
        return self.config.noise_model

    def build_network(self) -> nn.Module:
        """The network to train, untrained (its spec goes into every checkpoint)."""
        return self.config.spec.build()

    def build_loss(self) -> nn.Module:
        return build_loss(self.config.loss)

    def parameter_groups(self) -> Any:
        """What the optimiser updates: the network's parameters, or groups with their own learning rates."""
        return self.net.parameters()

    def build_optimizer(self) -> torch.optim.Optimizer:
        a, params = self.config, self.parameter_groups()
        if a.optimizer == "SGD":
            return torch.optim.SGD(params, lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
        if a.optimizer == "RMSprop":
            return torch.optim.RMSprop(params, lr=a.lr, eps=a.epsilon, weight_decay=a.weight_decay)
        return torch.optim.Adam(params, lr=a.lr, betas=(a.beta1, a.beta2), eps=a.epsilon, weight_decay=a.weight_decay)

    def build_scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        a = self.config
        t_max = max(1, a.epochs - a.warmup_epochs)
        return build_scheduler(self.optimizer, a.decay_type, a.lr_decay, a.gamma, a.warmup_epochs, t_max, a.lr_min)

    def _claim_run_folder(self) -> None:
        """Never overwrite a run: refuse a used folder (unless --overwrite); --resume N branches."""
        a = self.config
        if a.test_only or a.resume == -1:
            return
        if a.resume > 0:
            source = self.run_dir / "model" / f"model_{a.resume}.pt"
            if not source.is_file():
                kept = sorted(p.name for p in (self.run_dir / "model").glob("model_[0-9]*.pt"))
                raise FileNotFoundError(
                    f"cannot continue from epoch {a.resume}: {source} does not exist (model_<epoch>.pt files are kept "
                    f"only with --save_models; this run has {', '.join(kept) or 'none'}). Use --resume -1 to continue "
                    "from the last checkpoint"
                )
            self.resume_source = source
            if saved_files(self.run_dir):
                branch = branch_folder(self.run_dir, a.resume)
                self._notes.append(
                    f"--resume {a.resume}: {self.run_dir} holds later epochs and is left as it is; "
                    f"this run continues from {source} in a new folder, {branch}"
                )
                self.run_dir = branch
            return
        deleted = claim_new_run(self.run_dir, a.overwrite, delete=self.dist.is_main)
        if deleted:
            self._notes.append(
                f"--overwrite: deleted the {len(deleted)} checkpoint(s) of the previous run in {self.run_dir}"
            )

    def _resume(self) -> None:
        a = self.config
        if a.resume == -1:
            path = self.run_dir / CHECKPOINT
            state = load_training_state(path)
            saved = state.get("config")
            conflicts = resume_conflicts(saved, a) if saved else []
            if conflicts:
                raise RunFolderError(
                    f"cannot resume {self.run_dir} with other settings than the run's:\n  "
                    + "\n  ".join(conflicts)
                    + f"\nResume with the run's settings (they are in {self.run_dir / 'config.txt'}), or start a new "
                    f"run from its weights: --save <new name> --pre_train {self.run_dir / 'model/model_latest.pt'}"
                )
            load_weights(self.net, state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.start_epoch, self.iteration = state["epoch"] + 1, state["iteration"]
            self.best, self.history = state["best"], state["history"]
            self.elapsed, self.position = state.get("elapsed", 0.0), state.get("position")
            self.last_val = state.get("last_val")
            self.saved_at = self._where(state["epoch"])
            if self.position is not None:  # an epoch stopped part-way: it continues at its next batch
                self.start_epoch = self.position["epoch"]
                self.psnr_log = {int(k): v for k, v in self.position["psnr_log"].items()}
            set_rng_state(state["rng"])
            self.log(f"resumed from {path} after epoch {state['epoch']}")
            if saved is None:
                self.log(f"note: {path} predates recorded run settings; they could not be compared with this command")
            elif saved.get("lr") not in (None, a.lr):
                self._rescale_lr(a.lr / saved["lr"])
                self.log(
                    f"--lr {a.lr:g} applied (the run used {saved['lr']:g}): every learning rate of the schedule "
                    f"is scaled by {a.lr / saved['lr']:g} from epoch {self.start_epoch} on"
                )
        elif a.resume > 0:
            path = self.resume_source
            load_weights(self.net, path)
            with warnings.catch_warnings():  # fast-forwarding the schedule without optimiser steps
                warnings.simplefilter("ignore", UserWarning)
                for _ in range(a.resume):
                    self.scheduler.step()
            self.start_epoch = a.resume + 1
            self.log(f"loaded {path}; optimiser state restarts, training continues at epoch {self.start_epoch}")
        elif a.pre_train != ".":
            load_weights(self.net, a.pre_train, note=lambda text: self.log(f"note: {text}"))
            self.log(f"initialised from {a.pre_train}")

    def _rescale_lr(self, factor: float) -> None:
        """Scale the current and every future learning rate of the restored optimiser and schedule."""
        for group in self.optimizer.param_groups:
            group["lr"] *= factor
            if "initial_lr" in group:
                group["initial_lr"] *= factor
        self.scheduler.base_lrs = [lr * factor for lr in self.scheduler.base_lrs]
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]  # type: ignore[attr-defined]

    def _wrap(self, net: nn.Module, use_cuda: bool) -> nn.Module:
        if self.dist.enabled:
            return DistributedDataParallel(net, device_ids=[self.device.index] if use_cuda else None)
        if use_cuda and self.config.n_GPUs > 1:
            return DataParallel(net, device_ids=list(range(min(self.config.n_GPUs, torch.cuda.device_count()))))
        return net

    def _build_train_set(self) -> Dataset:
        """The ``--task`` set, or the teacher-target set of a distillation run (:mod:`adfnet.engine.distill`), whose
        cache the first process writes while the others wait."""
        if not distill.uses_teacher(self.config):
            return self._build_task_set()
        if not self.dist.is_main:
            barrier(self.dist)
        dataset = distill.training_set(
            self.config, self._build_task_set, self.device, self.log, write=self.dist.is_main
        )
        if self.dist.enabled and self.dist.is_main:
            barrier(self.dist)
        return dataset

    def _build_task_set(self) -> Dataset:
        a = self.config
        workers = max(1, a.n_threads)
        cache = None
        if a.cache:  # --cache / --ext sep: decoded once into <cache_dir>, patches memory-mapped from there
            decoding = BAYER_DECODING if a.raw and a.task == "paired" else IMAGE_DECODING
            cache = DecodedCache(a.cache_dir, decoding, rebuild=a.ext == "sep_reset")
        if a.task == "paired":
            if a.raw:
                dataset: Dataset = RawPairedTrain(a.dir_data, a.patch_size, a.seed, a.cfa_pattern, cache, workers)
            else:
                dataset = PairedTrain(a.dir_data, a.patch_size, a.seed, workers, cache)
        else:
            files = training_files(a.data_train, a.dir_data)
            # --test_every iterations, or (MIX without it) the official MIX epoch: every image twice
            length = a.test_every * a.batch_size if a.test_every else 2 * len(files)
            if a.raw:
                dataset = UnprocessedRawTrain(
                    files, a.patch_size, length, a.seed, self.noise, a.cfa_pattern, cache, workers
                )
            else:
                dataset = SyntheticNoiseTrain(
                    files, a.n_colors, a.patch_size, self.noise, length, a.seed, workers, a.clip_noisy, cache
                )
        if cache is not None:
            self.log(cache.summary)
        for problem in dataset.left_out:  # type: ignore[attr-defined]
            self.log(f"warning: training image left out: {problem}")
        return dataset

    def _build_val_set(self) -> Dataset:
        a = self.config
        if a.task == "paired":
            return RawPairedVal(a.data_val, a.cfa_pattern, a.n_val) if a.raw else PairedVal(a.data_val, a.n_val)
        files = validation_files(a.data_val, a.n_val)
        if a.raw:
            return UnprocessedRawVal(files, a.val_seed, self.noise, a.cfa_pattern)
        return SyntheticNoiseVal(files, a.n_colors, self.noise, a.val_seed)

    def _open_writer(self) -> Any:
        if not self.dist.is_main or self.config.test_only:
            return None
        from torch.utils.tensorboard import SummaryWriter  # slow import: only on the main process

        append_text(self.run_dir / "config.txt", json.dumps(vars(self.config), indent=1, default=str) + "\n")
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    def log(self, message: str) -> None:
        """Print (without breaking the progress bar) and append to ``log.txt``; main process only."""
        if not self.dist.is_main:
            return
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}"
        tqdm.write(line)
        append_text(self.run_dir / "log.txt", line + "\n")

    def _loader(self, epoch: int, skip: int = 0) -> DataLoader:
        """A loader whose shuffling depends only on (seed, epoch): resumed runs see the same batches; ``skip``
        leaves out the epoch's first batches (an epoch stopped part-way continues at its next batch)."""
        self.train_set.set_epoch(epoch)  # type: ignore[attr-defined]
        common = {
            "batch_size": self.batch_size,
            "num_workers": self.config.n_threads,
            "pin_memory": self.device.type == "cuda",
            "drop_last": False,
        }
        if self.dist.enabled:
            sampler: Sampler[int] = DistributedSampler(
                self.train_set, self.dist.world_size, self.dist.rank, shuffle=True, seed=self.config.seed
            )
            sampler.set_epoch(epoch)  # type: ignore[attr-defined]
            gen = None
        else:  # what DataLoader(shuffle=True, generator=gen) builds, made here so that batches can be skipped
            gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
            sampler = RandomSampler(self.train_set, generator=gen)
        if skip:
            sampler = SkipFirst(sampler, skip * self.batch_size)
        return DataLoader(self.train_set, sampler=sampler, generator=gen, **common)

    # ------------------------------------------------------------------ training
    def train_step(self, noisy: torch.Tensor, clean: torch.Tensor) -> float | None:
        """One optimiser step; returns the loss, or None if it was non-finite and the batch was skipped."""
        noisy, clean = noisy.to(self.device, non_blocking=True), clean.to(self.device, non_blocking=True)
        loss = self.compute_loss(noisy, clean)
        if not all_finite(loss, self.dist):
            self.nonfinite += 1
            message = f"non-finite loss at iteration {self.iteration + 1}: batch skipped ({self.nonfinite} in a row)"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            self.log(f"warning: {message}")
            if self.nonfinite >= self.config.max_nonfinite:
                raise NonFiniteLossError(f"{self.nonfinite} non-finite losses in a row")
            return None
        self.nonfinite = 0
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if not bool(torch.stack([torch.isfinite(p).all() for p in self.net.parameters()]).all()):
            raise NonFiniteLossError(
                f"the weights became NaN/inf at iteration {self.iteration + 1} (loss {float(loss):.4g})"
            )
        return float(loss.detach())

    def compute_loss(self, noisy: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """The loss of one batch: the network's output (under ``--amp``; clamped with ``--clamp_output``) against
        the clean target."""
        amp = self.amp_dtype is not None
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=amp):
            output = self.model(noisy)
        if self.config.clamp_output:
            output = output.clamp(0.0, 1.0)
        return self.loss_fn(output, clean)

    def train_epoch(self, epoch: int) -> float:
        """Train one epoch (validating at the planned points); returns the mean loss over processes.

        An epoch that ``--time_budget`` stopped part-way (:attr:`position`) continues at its next batch; when the
        budget is spent, the epoch ends after the current iteration (validated there), with :attr:`budget_stop`
        and :attr:`position` saying where.
        """
        a = self.config
        done = self.position if self.position is not None and self.position["epoch"] == epoch else None
        skip = done["batches"] if done else 0
        total, count = (done["loss_total"], done["loss_count"]) if done else (0.0, 0)
        loader = self._loader(epoch, skip)
        n = skip + len(loader)  # the whole epoch's batches
        points = validation_points(n, a.val_per_epoch) if epoch > a.val_after_epoch else set()
        rng = np.random.default_rng([a.seed, epoch, self.dist.rank, 7])  # MixUp draws
        mixing = epoch > a.mixup_after_epoch >= 0
        for _ in range(skip if mixing else 0):
            mixup_draws(rng, self.batch_size)
        lr = self.optimizer.param_groups[0]["lr"]
        self.model.train()
        bar = tqdm(
            loader,
            desc=f"epoch {epoch}/{a.epochs} lr {lr:.3g}",
            disable=not self.dist.is_main,
            dynamic_ncols=True,
            leave=False,
            initial=skip,
            total=n,
        )
        for i, (noisy, clean) in enumerate(bar, start=skip + 1):
            if mixing:
                noisy, clean = mixup(noisy, clean, rng)
            loss = self.train_step(noisy, clean)
            self.iteration += 1
            if loss is not None:
                total, count = total + loss, count + 1
                bar.set_postfix(loss=f"{loss:.4g}", run_left=self._time_left(n - i, epoch, n))
                if self.writer is not None:
                    self.writer.add_scalar("train/loss", loss, self.iteration)
                if i % a.print_every == 0:
                    self.log(f"epoch {epoch} [{i}/{n}] loss {total / count:.6g}")
            over = self._budget_spent()
            if i in points or over:
                self._validate_and_keep_best(epoch)
                self.model.train()
            if over:
                self.budget_stop = i
                psnr_log = {str(k): v for k, v in self.psnr_log.items()}
                self.position = {"epoch": epoch, "batches": i, "loss_total": total, "loss_count": count,
                                 "psnr_log": psnr_log} if i < n else None  # fmt: skip
                break
        bar.close()
        return mean_over_processes(total / max(count, 1), self.dist)

    def _trained(self) -> float:
        """Seconds this run has trained: earlier invocations, and this one since its first iteration."""
        return self.elapsed + (time.time() - self._clock[0] if self._clock is not None else 0.0)

    def _budget_spent(self) -> bool:
        """Whether ``--time_budget`` is spent (decided alike on every process: any one's clock stops all)."""
        budget = self.config.time_budget
        return budget is not None and any_process(self._trained() >= 60 * budget, self.dist)

    def _time_left(self, left_in_epoch: int, epoch: int, per_epoch: int) -> str:
        """The whole run's remaining time at this run's pace so far (validations included), for the bar:
        the epoch bar's own estimate covers only its epoch."""
        if self._clock is None or self.iteration <= self._clock[1]:
            return "?"
        pace = (time.time() - self._clock[0]) / (self.iteration - self._clock[1])
        left = pace * (left_in_epoch + (self.config.epochs - epoch) * per_epoch)
        if self.config.time_budget is not None:
            left = min(left, max(0.0, 60 * self.config.time_budget - self._trained()))
        return tqdm.format_interval(left)

    def fit(self) -> dict[str, Any]:
        """Train from ``start_epoch`` to ``--epochs``, or until ``--time_budget`` is spent; returns the best
        validation result.

        The budget counts the run's training time over all its invocations (the checkpoint keeps it): from the
        first iteration of each to its end, validations and saves included, start-up (building the model,
        checking the images, writing teacher targets) not. It is checked after every iteration: the iteration
        in which it is spent is the last; the run validates, saves (an epoch stopped part-way is resumed at its
        next batch, exactly as if uninterrupted) and logs why it stopped. ``--resume -1`` continues with what is
        left of the ``--time_budget`` then given, so a larger value extends the run and none lifts the limit.

        A Ctrl-C from the first check of the training images on stops cleanly (exit code 130).
        """
        a = self.config
        epoch, stage = self.start_epoch, "while checking the training images"
        self._clock = None
        try:
            self.train_set = self._build_train_set()  # minutes on DIV2K: every image is decoded once
            if self.start_epoch > a.epochs:
                self.log(
                    f"nothing to train: {self.run_dir} already completed epoch {self.start_epoch - 1} of --epochs "
                    f"{a.epochs}; pass a larger --epochs to continue it"
                )
                return self.best
            if a.time_budget is not None and self.elapsed >= 60 * a.time_budget:
                self.log(
                    f"nothing to train: {self.run_dir} has spent its time budget ({self.elapsed / 60:.2f} min trained "
                    f"of --time_budget {a.time_budget:g}); pass a larger --time_budget, or none, to continue it"
                )
                return self.best
            self.log(
                f"training {a.model} ({sum(p.numel() for p in self.net.parameters()):,} parameters) on "
                f"{self.device}, {self.dist.world_size} process(es), epochs {self.start_epoch}..{a.epochs}"
            )
            self._clock = (time.time(), self.iteration)
            for epoch in range(self.start_epoch, a.epochs + 1):
                stage = f"in epoch {epoch}"
                start = time.time()
                lr = self.optimizer.param_groups[0]["lr"]
                loss = self.train_epoch(epoch)
                if self.position is not None and self.position["epoch"] == epoch and self.budget_stop:
                    self.save(epoch - 1)  # part of the epoch: its position is in the checkpoint
                    self._stopped_by_budget(epoch)
                    return self.best
                self.position = None
                self.scheduler.step()
                record = {"epoch": epoch, "loss": loss, "lr": lr, "psnr": self.psnr_log.get(epoch, math.nan)}
                self.history.append(record)
                self.log(
                    f"epoch {epoch}: loss {loss:.6g}, lr {lr:.4g}, val {self.val_metric} "
                    f"{record['psnr']:{self.val_format}} {self.val_unit} (best {self.best['psnr']:{self.val_format}} "
                    f"at epoch {self.best['epoch']}), {time.time() - start:.1f} s"
                )
                if self.writer is not None:
                    self.writer.add_scalar("train/epoch_loss", loss, epoch)
                    self.writer.add_scalar("train/lr", lr, epoch)
                self.save(epoch)
                if self.budget_stop:
                    self._stopped_by_budget(epoch)
                    return self.best
        except NonFiniteLossError as err:
            advice = f"{self.continue_command(lr=f'{a.lr / 10:g}')} (a lower --lr, e.g. a tenth)"
            raise NonFiniteLossError(self._stopped(f"training diverged in epoch {epoch}: {err}", advice)) from None
        except KeyboardInterrupt:
            self._stopped(f"interrupted (Ctrl-C) {stage}", self.continue_command())
            raise SystemExit(130) from None
        finally:
            if self.writer is not None:
                self.writer.close()
            cleanup(self.dist)
        return self.best

    def continue_command(self, **flags: str) -> str:
        """How a user continues this run (with ``flags`` changed, e.g. ``lr="1e-05"``), for the stop messages:
        :attr:`continue_hint`'s answer, else the command given with ``--resume -1``."""
        if self.continue_hint is not None:
            return self.continue_hint(**flags)
        return resume_command(self.run_dir.name, **flags)

    def _stopped_by_budget(self, epoch: int) -> None:
        a = self.config
        where = (
            f"the end of epoch {epoch}" if self.position is None else f"iteration {self.budget_stop} of epoch {epoch}"
        )
        command = self.continue_command(time_budget=f"{2 * a.time_budget:g}")
        self.log(
            f"stopped: the time budget is spent ({self._trained() / 60:.2f} min trained of --time_budget "
            f"{a.time_budget:g}) at {where}; validated and saved ({self.run_dir / CHECKPOINT}). Continue it with a "
            f"larger total budget (or none): {command}"
        )

    def _stopped(self, reason: str, command: str) -> str:
        """Log why the run stopped, where its last complete checkpoint is and how to continue; return it."""
        if self.saved_at:
            message = (
                f"{reason}. Nothing after {self.saved_at} was saved: the last complete checkpoint is "
                f"{self.run_dir / CHECKPOINT} ({self.saved_at}). Continue with: {command}"
            )
        else:
            message = f"{reason}. No epoch was completed, so nothing was saved: start the run again"
        self.log(f"stopped: {message}")
        return message

    # ------------------------------------------------------------------ validation and files
    def validation_forward(self) -> nn.Module:
        """What validation denoises with: the network (a recipe may validate one of its outputs)."""
        return self.net

    @torch.no_grad()
    def validate(self, save_dir: Path | None = None) -> float:
        """Mean PSNR (test protocol: clamped output, 8-bit, all pixels) over the validation set."""
        a = self.config
        self.net.eval()
        scores = []
        self.val_panels = []  # (name, noisy | output | clean panel) of the first VAL_PANELS images
        for noisy, clean, name in tqdm(self.val_set, desc="validation", leave=False, disable=not self.dist.is_main):
            try:
                if a.raw:  # raw: PSNR with peak 1 on unquantised data, CFA-aware ensemble (adfnet.evaluation.raw)
                    out = denoise_packed(self.net, noisy[None].to(self.device), chop=a.chop, ensemble=a.ensemble)
                else:
                    # the noisy input is ours, from a known noise model: no image-range check
                    tiling = "chop" if a.chop else "whole"
                    forward = self.validation_forward()
                    out = denoise(forward, noisy[None].to(self.device), tiling, a.ensemble, check_range=False)
            except NonFiniteOutputError:
                raise NonFiniteLossError(f"the validation output of {name} is NaN/inf") from None
            if a.raw:
                scores.append(psnr_raw(out[0], clean))
                if save_dir is not None:
                    with atomic_file(save_dir / f"{name}_{a.model}_raw_DN.npy") as f:
                        np.save(f, out[0].cpu().numpy())
                continue
            scores.append(psnr(out, clean))
            if len(self.val_panels) < VAL_PANELS:
                self.val_panels.append((name, comparison_panel(noisy, out, clean)))
            if save_dir is not None:
                suffix = f"_N{a.noiseL:g}" if a.task == "synthetic" else ""
                save_image(save_dir / f"{name}_{a.model}{suffix}_DN.png", tensor_to_image(out))
        return float(np.mean(scores))

    def _validate_and_keep_best(self, epoch: int) -> None:
        if self.dist.is_main:
            value = self.validate(self.run_dir / "results" if self.config.save_results else None)
            self.psnr_log[epoch] = value
            self.last_val = {"psnr": value, "epoch": epoch, "iteration": self.iteration}
            if self.writer is not None:
                self.writer.add_scalar(f"val/{self.val_metric.lower()}", value, self.iteration)
                for name, panel in self.val_panels:
                    self.writer.add_image(f"val/{name}", panel, self.iteration, dataformats="HWC")
            if value > self.best["psnr"]:
                self.best = {"psnr": value, "epoch": epoch, "iteration": self.iteration}
                atomic_save(weights_with_architecture(self.net), self.model_dir / "model_best.pt")
        barrier(self.dist)

    def save(self, epoch: int) -> None:
        """Weights first, then the training state, so a complete state always has its weights on disk.

        A Ctrl-C during the save is raised once it is complete and recorded (``saved_at``). With a
        :attr:`position` (an epoch stopped part-way), ``epoch`` is the last complete one.
        """
        with ctrl_c_deferred():
            self._save(epoch)

    def _save(self, epoch: int) -> None:
        if self.dist.is_main:
            weights = weights_with_architecture(self.net)
            atomic_save(weights, self.model_dir / "model_latest.pt")
            if self.config.save_models and self.position is None:
                atomic_save(weights, self.model_dir / f"model_{epoch}.pt")
            state = {
                "version": STATE_VERSION,
                "epoch": epoch,
                "iteration": self.iteration,
                "model": weights,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": rng_state(),
                "best": self.best,
                "val_metric": self.val_metric,  # what "best" and "last_val" measure (a recipe's summary names it)
                "history": self.history,
                "config": run_config(self.config),
                "elapsed": self._trained(),
                "last_val": self.last_val,
                "position": self.position,
            }
            atomic_save(state, self.run_dir / CHECKPOINT)
        barrier(self.dist)
        self.saved_at = self._where(epoch)

    def _where(self, epoch: int) -> str:
        """Where a checkpoint of complete ``epoch`` (and :attr:`position`) stands, for messages ("": nowhere)."""
        if self.position is not None:
            return f"iteration {self.position['batches']} of epoch {self.position['epoch']}"
        return f"epoch {epoch}" if epoch else ""


def trainer_for(config: TrainConfig) -> Trainer:
    """The trainer of ``config``'s model: DBSN's self-supervised one (:mod:`adfnet.engine.dbsn`) or the general."""
    if config.model == "dbsn":
        from adfnet.engine.dbsn import DBSNTrainer  # it builds on this module

        return DBSNTrainer(config)
    return Trainer(config)
