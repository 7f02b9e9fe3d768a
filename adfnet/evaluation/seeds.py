"""The spread of a set's mean PSNR over noise seeds (``--seeds N``): is a gap to a published number noise?

A published mean comes from one noise draw we cannot reproduce (MATLAB's for BM3D, other code's
for others). Re-running the same protocol with N seeds gives the standard deviation of the set mean
over draws; a difference of a few standard deviations is noise, a larger one is a protocol error.
``seeds.csv`` holds one row per set, noise and seed, so runs of different seeds (in parallel, or
killed and resumed with the missing seeds) are combined by reading all their files.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from adfnet.data.noise import NoiseModel, build_noise, sigma_label
from adfnet.fileio import text_file

from .published import published_for
from .results import SetResult

# "sigma" is AWGN's (empty for another model); "noise" and "noise_params" name any model (files without them: AWGN)
SEED_FIELDS = ["model", "n_colors", "set", "sigma", "seed", "images", "failed", "psnr", "ssim", "noise", "noise_params"]


def seed_list(first: int, count: int) -> list[int]:
    """``count`` consecutive noise seeds from ``first`` (the task's official seed unless ``--seed``)."""
    return [first + k for k in range(count)]


@dataclass
class SeedSpread:
    """One set and noise of one model over several seeds: the per-seed set means."""

    model: str
    n_colors: int
    set_name: str
    noise: NoiseModel
    images: int
    psnrs: dict[int, float]  # seed -> mean PSNR of the set

    @property
    def sigma(self) -> float:
        """The AWGN sigma (the published numbers' key; see :attr:`NoiseModel.sigma`)."""
        return self.noise.sigma

    @property
    def mean(self) -> float:
        return statistics.fmean(self.psnrs.values())

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (nan with one seed)."""
        return statistics.stdev(self.psnrs.values()) if len(self.psnrs) > 1 else math.nan


def seed_rows(model: str, n_colors: int, seed: int, results: Iterable[SetResult]) -> list[dict[str, str]]:
    """``seeds.csv`` rows of one seed's results."""
    return [
        {
            "model": model,
            "n_colors": str(n_colors),
            "set": r.set_name,
            "sigma": sigma_label(r.noise.sigma) if r.noise.is_awgn else "",
            "seed": str(seed),
            "images": str(len(r.rows)),
            "failed": str(len(r.errors)),
            "psnr": f"{r.mean_psnr:.6f}",
            "ssim": f"{r.mean_ssim:.6f}",
            "noise": r.noise.name,
            "noise_params": " ".join(f"{v:g}" for v in r.noise.params),
        }
        for r in results
    ]


def write_seed_rows(path: Path, rows: Sequence[Mapping[str, str]]) -> None:
    with text_file(path) as fh:
        writer = csv.DictWriter(fh, SEED_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def read_seed_rows(paths: Iterable[Path]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in paths:
        with open(path, newline="") as fh:
            rows += list(csv.DictReader(fh))
    return rows


def row_noise(row: Mapping[str, str]) -> NoiseModel:
    """The noise model of a ``seeds.csv`` row (AWGN at its sigma when the row names none)."""
    if not row.get("noise") or row["noise"] == "awgn":
        return build_noise("awgn", (float(row["sigma"]),))
    return build_noise(row["noise"], [float(v) for v in row.get("noise_params", "").split()])


def spreads(rows: Iterable[Mapping[str, str]]) -> list[SeedSpread]:
    """Group ``seeds.csv`` rows by model, task, set and noise (first-seen order).

    Rows with failed images are left out (their mean is over fewer images); runs over different image
    counts (a ``--limit`` subset and the full set) are different groups.
    """
    groups: dict[tuple[str, int, str, NoiseModel, int], SeedSpread] = {}
    for row in rows:
        if int(row["failed"]) or not int(row["images"]):
            continue
        key = (row["model"], int(row["n_colors"]), row["set"], row_noise(row), int(row["images"]))
        groups.setdefault(key, SeedSpread(*key, {})).psnrs[int(row["seed"])] = float(row["psnr"])
    return list(groups.values())


def format_spreads(items: Sequence[SeedSpread], options: Mapping[str, object] | None = None) -> str:
    """Mean and std of the set PSNR over seeds, the published number and how many stds away it is.

    ``options`` are the run's ``build_model`` options (an ablation compares with its own row).
    """
    header = (
        f"{'set':<12} {'sigma':>5} {'images':>6} {'seeds':>5} {'mean':>8} {'std':>6} {'min':>8} {'max':>8} "
        f"{'pub.':>6} {'diff':>7} {'diff/std':>8}"
    )
    lines = [header, "-" * len(header)]
    for s in items:
        pub = published_for(s.model, s.n_colors, s.set_name, s.sigma, options) if s.noise.is_awgn else None
        diff = s.mean - pub.psnr if pub else math.nan
        lines.append(
            f"{s.set_name:<12} {_sigma_cell(s.noise):>5} {s.images:>6} {len(s.psnrs):>5} {s.mean:8.3f} {s.std:6.3f} "
            f"{min(s.psnrs.values()):8.3f} {max(s.psnrs.values()):8.3f} "
            + (f"{pub.psnr:6.2f} {diff:+7.3f} {diff / s.std:+8.1f}" if pub else f"{'-':>6} {'':>7} {'':>8}")
        )
    return "\n".join(lines)


def _sigma_cell(noise: NoiseModel) -> str:
    return sigma_label(noise.sigma) if noise.is_awgn else noise.folder_name()
