"""Classical baselines evaluated through the same harness as ADFNet: ``--model bm3d`` (BM3D / CBM3D).

They need no weights, so their published numbers check the protocol itself (noise, metrics, sets)
without a checkpoint: see docs/HARNESS.md. Each baseline is a factory ``(n_colors, sigma) ->``
:class:`~.denoiser.ImageFunction`, given the true noise level as in the published tables. The
``bm3d`` package is optional (``pip install 'adfnet[baselines]'``); it is imported only when used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

from .denoiser import ImageFunction
from .results import sigma_label


def _import_bm3d() -> ModuleType:
    try:
        return importlib.import_module("bm3d")
    except ImportError as err:
        raise ValueError(
            f"--model bm3d needs the bm3d package ({err}): install it with `pip install 'bm3d>=4,<5'` "
            "or `pip install 'adfnet[baselines]'`"
        ) from None


def bm3d_denoiser(n_colors: int, sigma: float) -> ImageFunction:
    """BM3D (gray, ``bm3d.bm3d``) or CBM3D (colour, ``bm3d.bm3d_rgb``, opponent colour space) at the true sigma.

    The package's default profile ``'np'`` is used, on one thread: with several (its default, "auto")
    the aggregation order varies and two runs differ by up to ~1e-4 per pixel, one thread is
    bit-reproducible. It takes images in [0, 1], so sigma is / 255.
    """
    if sigma <= 0:
        raise ValueError(f"BM3D needs a noise level sigma > 0, got {sigma_label(sigma)}")
    bm3d = _import_bm3d()
    std = float(sigma) / 255.0
    profile = bm3d_profile(bm3d)
    if n_colors == 1:
        return ImageFunction(lambda img: bm3d.bm3d(img[..., 0].astype("float64"), std, profile), name="BM3D")
    return ImageFunction(lambda img: bm3d.bm3d_rgb(img.astype("float64"), std, profile), name="CBM3D")


def bm3d_profile(bm3d: ModuleType) -> object:
    """The package's default profile ``'np'``, single-threaded (reproducible results)."""
    profile = bm3d.BM3DProfile()
    profile.num_threads = 1
    return profile


# --model name -> factory (n_colors, sigma) -> denoiser. Add a baseline here (docs/HARNESS.md).
BASELINES: dict[str, Callable[[int, float], ImageFunction]] = {"bm3d": bm3d_denoiser}


def check_available(name: str) -> None:
    """Raise ``ValueError`` with what to install when baseline ``name``'s package is missing (before any work)."""
    if name == "bm3d":
        _import_bm3d()
