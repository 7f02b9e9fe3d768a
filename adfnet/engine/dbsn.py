"""DBSN's self-supervised training through the one :class:`~adfnet.engine.trainer.Trainer`: what differs is its
network's parameter groups, the loss of each stage and what validation measures.

The authors (XHWXD/DBSN) train in stages, one script each (``--dbsn_stage``; the ``dbsn_*`` recipes run them in
turn, :func:`adfnet.engine.recipe.staged_run`):

* ``mu``: D-BSN alone, its blind-spot estimate ``mu`` against the noisy image (their ``L2Loss``:
  ``gray_pretrain_mu.py``, ``rgb_pretrain_mu.py``); the sigma nets are frozen.
* ``sigma``: the two noise-level nets with D-BSN frozen (their ``MAPLoss_Pretrain``, or ``DBSNLoss_Pretrain``
  for cross-channel noise: ``rgb_pretrain_sigma.py``).
* ``all``: every net, the negative log-likelihood of the noisy image (their ``MAPLoss``: ``gray_train.py``,
  ``rgb_train.py``).

One Adam over three parameter groups, D-BSN at ``--lr``, sigma_mu at ``--lr_sigma_mu`` and sigma_n at
``--lr_sigma_n`` (the authors' three optimisers with the same schedule: Adam's update is per parameter, so the
groups are the same thing); a frozen net has ``requires_grad`` off and is left out of the step. The variances
are formed as in the authors' training scripts (``map_form='trainval'``), and each loss is divided by twice
the batch size, as theirs (a scale Adam all but ignores; it keeps the logged values on their scale).

The authors' losses guard against blow-ups by reading 0 above a threshold while keeping the gradient, so their
step still happened with the exploding gradient. Here such a batch is skipped instead: its loss counts as
non-finite, which the trainer's divergence guard counts toward ``--max_nonfinite``.

Validation: with clean references (``--task synthetic``, an experiment) the PSNR of the MAP estimate (of
``mu`` in the ``mu`` stage) on ``--data_val``; without (``--task noisy``) the stage's loss on centre crops of
noisy images, negated so that higher is better, as PSNR.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from adfnet.checkpoint import infer_model, load_checkpoint, read_state_dict
from adfnet.data.datasets import NoisyImagesTrain, NoisyImagesVal
from adfnet.data.noise import LearnedNoise
from adfnet.engine.config import TrainConfig
from adfnet.engine.trainer import Trainer
from adfnet.errors import UserError
from adfnet.losses import DBSN_LOSSES, build_dbsn_loss
from adfnet.models import DBSN

# The authors' loss of each stage (their class names); cross-channel noise pre-trains with DBSNLoss_Pretrain.
STAGE_LOSSES = {"mu": "L2Loss", "sigma": "MAPLoss_Pretrain", "all": "MAPLoss"}
# The nets each stage trains (the others are frozen).
STAGE_NETS = {"mu": ("dbsn",), "sigma": ("sigma_mu", "sigma_n"), "all": ("dbsn", "sigma_mu", "sigma_n")}
# DBSN's noise_type that models each synthetic noise of adfnet.data.noise.
NOISE_TYPE_OF = {
    "awgn": "gaussian",
    "hg": "poisson_gaussian",
    "hg_dbsn": "poisson_gaussian",
    "mg": "multivariate_gaussian",
}


class _Mu(nn.Module):
    """D-BSN's ``mu`` alone, what the ``mu`` stage validates (the sigma nets are untrained then)."""

    size_multiple = 1

    def __init__(self, net: DBSN) -> None:
        super().__init__()
        self.net = net

    def forward(self, noisy: Tensor) -> Tensor:
        return self.net.dbsn(noisy)[0]


def check_dbsn_config(config: TrainConfig) -> None:
    """What DBSN's training cannot do, refused before a run folder is made (``ValueError`` naming the flag)."""
    if config.amp != "none":
        raise ValueError("--amp: DBSN's losses invert covariance matrices, which needs float32: leave --amp out")
    if config.n_GPUs > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            "DBSN trains in one process on one device (its losses read the three nets' outputs, not one forward): "
            "leave --n_GPUs and torchrun out"
        )
    if config.raw or config.task == "paired":
        raise ValueError("--model dbsn trains on noisy images (--task noisy) or on synthetic noise (--task synthetic)")
    if config.loss != "1*MSE" and config.loss not in DBSN_LOSSES:
        raise ValueError(
            f"--loss {config.loss}: DBSN's stages use the authors' losses ({', '.join(tuple(DBSN_LOSSES))}); leave "
            "--loss out for the stage's own"
        )


class DBSNTrainer(Trainer):
    """The trainer of ``--model dbsn``: one stage of the authors' schedule (``--dbsn_stage``), see the module."""

    def __init__(self, config: TrainConfig) -> None:
        if config.model != "dbsn":
            raise ValueError(f"DBSNTrainer trains --model dbsn, not {config.model}")
        check_dbsn_config(config)
        self.stage = config.dbsn_stage
        if config.task == "noisy":
            self.val_metric, self.val_unit, self.val_format = "neg_loss", "(minus the self-supervised loss)", ".6g"
        super().__init__(config)
        net: DBSN = self.net  # type: ignore[assignment]
        noise = config.noise_model
        expected = NOISE_TYPE_OF.get(noise.name)
        if config.task == "synthetic" and expected and expected != net.noise_type:
            self.log(
                f"note: the training noise {noise.describe()} is what DBSN's noise_type {expected!r} models, but the "
                f"network's is {net.noise_type!r} (model_options noise_type)"
            )

    # ------------------------------------------------------------------ construction
    def build_network(self) -> nn.Module:
        net = super().build_network()
        for name in ("dbsn", "sigma_mu", "sigma_n"):
            getattr(net, name).requires_grad_(name in STAGE_NETS[self.stage])
        return net

    def parameter_groups(self) -> Any:
        a = self.config
        rates = {"dbsn": a.lr, "sigma_mu": a.lr_sigma_mu, "sigma_n": a.lr_sigma_n}
        return [
            {"params": list(getattr(self.net, name).parameters()), "lr": a.lr if lr is None else lr, "name": name}
            for name, lr in rates.items()
        ]

    def build_loss(self) -> nn.Module:
        a = self.config
        name = a.loss if a.loss in DBSN_LOSSES else STAGE_LOSSES[self.stage]
        if name == "MAPLoss_Pretrain" and self.net.noise_type == "multivariate_gaussian":
            name = "DBSNLoss_Pretrain"  # rgb_pretrain_sigma.py's choice for cross-channel noise
        self.loss_name = name
        return build_dbsn_loss(name, a.n_colors)

    def _build_task_set(self) -> Dataset:
        a = self.config
        if a.task != "noisy":
            return super()._build_task_set()
        dataset = NoisyImagesTrain(
            a.dir_data, a.n_colors, a.patch_size, a.test_every * a.batch_size, a.seed, max(1, a.n_threads)
        )
        for note in dataset.notes:
            self.log(f"note: {note}")
        for problem in dataset.left_out:
            self.log(f"warning: training image left out: {problem}")
        return dataset

    def _build_val_set(self) -> Dataset:
        a = self.config
        if a.task != "noisy":
            return super()._build_val_set()
        return NoisyImagesVal(a.data_val, a.n_colors, a.n_val)

    # ------------------------------------------------------------------ loss
    def stage_loss(self, noisy: Tensor) -> tuple[Tensor, bool]:
        """The stage's loss of one batch as the authors' class gives it, and whether its blow-up guard fired."""
        net: DBSN = self.net  # type: ignore[assignment]
        if self.loss_name == "L2Loss":
            return self.loss_fn(noisy, net.dbsn(noisy)[0]), False
        e = net.estimate(noisy, map_form="trainval")  # the frozen nets give no gradient (requires_grad off)
        loss = self.loss_fn(noisy, e.mu, e.sigma_mu, e.sigma_n, e.sigma_y)
        return loss, bool(getattr(self.loss_fn, "exploded", False))

    def compute_loss(self, noisy: Tensor, clean: Tensor) -> Tensor:
        """The self-supervised loss: the target is the noisy image itself (``clean``, if any, is never used)."""
        loss, exploded = self.stage_loss(noisy)
        if exploded:
            self.log(
                f"warning: {self.loss_name}'s blow-up guard fired at iteration {self.iteration + 1} (a squared "
                "residual over the variance above the authors' threshold): the batch is skipped"
            )
            return torch.full_like(loss, math.nan)
        return loss / (2 * noisy.shape[0])

    # ------------------------------------------------------------------ validation
    def validation_forward(self) -> nn.Module:
        return _Mu(self.net) if self.stage == "mu" else self.net  # type: ignore[arg-type]

    @torch.no_grad()
    def validate(self, save_dir: Path | None = None) -> float:
        """PSNR with clean references (see the module); else minus the mean stage loss over the noisy crops."""
        if self.config.task != "noisy":
            return super().validate(save_dir)
        self.net.eval()
        self.val_panels = []
        losses = []
        for noisy, _, _ in self.val_set:
            loss, exploded = self.stage_loss(noisy[None].to(self.device))
            losses.append(math.inf if exploded else float(loss) / 2)  # on the training loss's scale (batch 1)
        return -sum(losses) / len(losses)


def learned_noise(teachers: Sequence[str]) -> LearnedNoise:
    """The noise model a trained DBSN learned, bound to its sigma_n net (``--noise learned``): the first DBSN
    among the ``--teacher`` checkpoints."""
    for path in teachers:
        spec = infer_model(read_state_dict(path))
        if spec.name == "dbsn":
            net, _ = load_checkpoint(path, spec)
            net.requires_grad_(False)
            return LearnedNoise("learned", (), covariance=net.noise_covariance, source=Path(path).name)
    raise UserError(
        "--noise learned draws the noise a DBSN learned from noisy images: give that DBSN's checkpoint as --teacher "
        f"(given: {', '.join(teachers) or 'none'})"
    )
