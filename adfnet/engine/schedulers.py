"""Per-epoch learning-rate schedules, stepped once at the END of every epoch (after the optimiser).

The official Gray/RGB code stepped ``StepLR`` at the start of each epoch under PyTorch 1.0, whose
constructor did not step; stepping after the epoch under current PyTorch gives the same learning
rate for every epoch (RGB: epochs 1-200 at 1e-4, 201-400 at 5e-5, ...), whereas the official code run
on PyTorch >= 1.1 would decay one epoch early.

The real-noise recipe (``warmup_cosine``) reproduces ``GradualWarmupScheduler`` (warmup-scheduler 0.3,
multiplier 1) chained to ``CosineAnnealingLR`` as the official ``train_denoising.py`` drives them on
current PyTorch (one step before training, one after each epoch). Its closed form, used here so that
it does not depend on PyTorch's chainable-update internals, is, for the LR used during epoch ``e``::

    e <= W:  base * e / W
    e >  W:  eta_min + (base - eta_min) * (1 + cos(pi k / T)) / (1 + cos(pi / T)),   k = e - W - 1

(the denominator is the package's hand-over quirk: epoch W+1 sits a hair above ``base``).
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, MultiStepLR, StepLR


def warmup_cosine_factor(epoch: int, warmup_epochs: int, t_max: int, lr_min_ratio: float) -> float:
    """LR multiplier for the (1-based) ``epoch`` of the official warm-up + cosine schedule."""
    if warmup_epochs > 0 and epoch <= warmup_epochs:
        return epoch / warmup_epochs
    k = epoch - warmup_epochs - 1
    cosine = (1 + math.cos(math.pi * k / t_max)) / (1 + math.cos(math.pi / t_max))
    return lr_min_ratio + (1 - lr_min_ratio) * cosine


class _WarmupCosine:
    """Picklable multiplier of ``LambdaLR.last_epoch`` (0-based: epoch ``last_epoch + 1`` runs next)."""

    def __init__(self, warmup_epochs: int, t_max: int, lr_min_ratio: float) -> None:
        self.warmup_epochs, self.t_max, self.lr_min_ratio = warmup_epochs, t_max, lr_min_ratio

    def __call__(self, last_epoch: int) -> float:
        return warmup_cosine_factor(last_epoch + 1, self.warmup_epochs, self.t_max, self.lr_min_ratio)


def build_scheduler(
    optimizer: Optimizer,
    decay_type: str,
    lr_decay: int = 200,
    gamma: float = 0.5,
    warmup_epochs: int = 3,
    t_max: int = 157,
    lr_min: float = 1e-6,
) -> LRScheduler:
    """``decay_type``: ``step`` (x gamma every ``lr_decay`` epochs), ``step_a_b_...`` (x gamma after
    epochs a, b, ...), ``warmup_cosine`` (the real-noise recipe)."""
    if decay_type == "step":
        return StepLR(optimizer, step_size=lr_decay, gamma=gamma)
    if decay_type.startswith("step_"):
        try:
            milestones = [int(m) for m in decay_type.split("_")[1:]]
        except ValueError:
            raise ValueError(f"--decay_type {decay_type!r}: expected step_<epoch>_..., e.g. step_200_400") from None
        return MultiStepLR(optimizer, milestones=milestones, gamma=gamma)
    if decay_type == "warmup_cosine":
        base = optimizer.param_groups[0]["lr"]
        return LambdaLR(optimizer, _WarmupCosine(warmup_epochs, t_max, lr_min / base))
    raise ValueError(f"unknown --decay_type {decay_type!r}: use step, step_a_b... or warmup_cosine")
