"""The pictures of an evaluation: a comparison panel per image, a PSNR-per-sigma plot per test set.

Both go under the run's own output folders (``<result_dir>/<set>/sigma<N>/comparison/`` and
``<result_dir>/<set>/psnr_per_sigma.png``), which :func:`adfnet.outputs.check_outputs_apart` has already
proved to lie outside every input set. The drawing itself is :mod:`adfnet.figures`'.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from adfnet.figures import comparison_panel, panel_captions, psnr_sigma_plot, save_panel

from .published import published_for
from .results import Evaluation

COMPARISON_FOLDER = "comparison"
PLOT_NAME = "psnr_per_sigma.png"


def comparison_path(out_dir: Path, image_name: str) -> Path:
    """``out_dir/comparison/<name>.png``: a PNG input keeps its name, any other gets ``.png`` appended
    (``1.tif`` -> ``1.tif.png``), so ``01.png`` and ``01.tif`` of one set never share a panel."""
    name = image_name if Path(image_name).suffix.lower() == ".png" else f"{image_name}.png"
    return out_dir / COMPARISON_FOLDER / name


def save_comparison(path: Path, noisy: torch.Tensor, ours: torch.Tensor, clean: torch.Tensor, label: str) -> None:
    """The noisy | ``label`` | clean panel with a zoomed crop; the PSNR captions also in the PNG's text."""
    labels = ("Noisy", label, "Clean")
    save_panel(path, comparison_panel(noisy, ours, clean, labels=labels), panel_captions(noisy, ours, clean, labels))


def psnr_plots(
    run: Evaluation, result_dir: Path, model: str, n_colors: int, options: Mapping[str, object] | None = None
) -> list[Path]:
    """One plot per set of its mean PSNR at each sigma, beside the published numbers where there are any."""
    ours: dict[str, dict[float, float]] = {}
    for result in run.results:
        if result.rows and result.noise.is_awgn:  # the axis is AWGN's sigma
            ours.setdefault(result.set_name, {})[result.noise.sigma] = result.mean_psnr
    label = f"{model} (first images only: --limit)" if run.limited else model
    paths = []
    for set_name, points in ours.items():
        published = {}
        for sigma in points:
            number = published_for(model, n_colors, set_name, sigma, options)
            if number is not None:
                published[sigma] = number.psnr
        title = f"{set_name}, {'gray' if n_colors == 1 else 'colour'} AWGN"
        paths.append(psnr_sigma_plot(result_dir / set_name / PLOT_NAME, points, published, title, label))
    return paths
