"""Result records of an evaluation: one :class:`SetResult` per set and noise, one :class:`Evaluation` per run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from adfnet.data.noise import NoiseModel, sigma_label

__all__ = ["Evaluation", "ImageScore", "SetResult", "sigma_label"]


class ImageScore(NamedTuple):
    image: str
    psnr: float
    ssim: float
    seconds: float
    noisy_psnr: float = math.nan  # the noisy input's scores (clamped to [0, 1]): what denoising gained
    noisy_ssim: float = math.nan


@dataclass
class SetResult:
    """Per-image scores of one set under one noise model, plus what went wrong."""

    set_name: str
    noise: NoiseModel
    rows: list[ImageScore] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def mean_psnr(self) -> float:
        return sum(r.psnr for r in self.rows) / len(self.rows) if self.rows else math.nan

    @property
    def mean_ssim(self) -> float:
        return sum(r.ssim for r in self.rows) / len(self.rows) if self.rows else math.nan

    @property
    def mean_noisy_psnr(self) -> float:
        return sum(r.noisy_psnr for r in self.rows) / len(self.rows) if self.rows else math.nan

    @property
    def mean_noisy_ssim(self) -> float:
        return sum(r.noisy_ssim for r in self.rows) / len(self.rows) if self.rows else math.nan


@dataclass
class Evaluation:
    """A whole run: the per-set results, failures outside any set (folders, checkpoints), whether ``--limit`` cut."""

    results: list[SetResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    limited: bool = False

    @property
    def failures(self) -> int:
        return len(self.errors) + sum(len(r.errors) for r in self.results)
