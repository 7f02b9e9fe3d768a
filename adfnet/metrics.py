"""The one metrics module: the official ADFNet test protocol on 8-bit images.

Inputs may be numpy arrays ``(H, W)`` / ``(H, W, C)`` (float in [0, 1] or uint8) or torch tensors
``(C, H, W)`` / ``(1, C, H, W)`` (float in [0, 1] or uint8). Float images are quantised with
:func:`adfnet.imaging.quantize` first, exactly as the official code passed both the clamped output and the clean
image through ``skimage.img_as_ubyte``; the rounding is part of the published numbers.

SADNet's own protocol scores unquantised floats instead: :func:`psnr_float` and :func:`ssim_matlab_float`
(the MATLAB-style SSIM of :func:`ssim_matlab3d`, one implementation, without the 8-bit step).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
import torch
from scipy.ndimage import correlate1d

from adfnet.imaging import quantize

WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
C1 = (0.01 * 255) ** 2  # SSIM's stabilisers for 8-bit images (data range 255)
C2 = (0.03 * 255) ** 2


def _pair(output: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    out = quantize(output).astype(np.float64)
    ref = quantize(target).astype(np.float64)
    out = out[..., None] if out.ndim == 2 else out
    ref = ref[..., None] if ref.ndim == 2 else ref
    if out.shape != ref.shape:
        raise ValueError(f"output and target shapes differ: {out.shape} vs {ref.shape}")
    return out, ref


def psnr(output: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """PSNR (dB, peak 255) over all pixels and channels of the 8-bit images; no border crop; inf if equal."""
    out, ref = _pair(output, target)
    mse = float(np.mean((out - ref) ** 2))
    if mse == 0.0:
        return math.inf
    return 20.0 * math.log10(255.0 / math.sqrt(mse))


def psnr_raw(output: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """PSNR (dB, peak 1) of float raw data in [0, 1], NOT quantised: ``10 log10(1 / mse)``.

    The raw-domain score of SIDD's raw blocks as MWRCANet (NTIRE 2020) computed it, one value per block.
    """
    out = (output.detach().cpu().numpy() if isinstance(output, torch.Tensor) else np.asarray(output)).astype(np.float64)
    ref = (target.detach().cpu().numpy() if isinstance(target, torch.Tensor) else np.asarray(target)).astype(np.float64)
    if out.shape != ref.shape:
        raise ValueError(f"output and target shapes differ: {out.shape} vs {ref.shape}")
    mse = float(np.mean((out - ref) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def _gaussian_window() -> np.ndarray:
    g = cv2.getGaussianKernel(WINDOW_SIZE, WINDOW_SIGMA)
    return g @ g.T


def _ssim_mean(x: np.ndarray, y: np.ndarray, filt: Callable[[np.ndarray], np.ndarray], c1: float, c2: float) -> float:
    """The SSIM formula (Wang et al. 2004), averaged over its map: local means, variances and covariance
    from ``filt`` (the Gaussian window, in whichever flavour), stabilised by ``c1`` and ``c2``."""
    mu_x, mu_y = filt(x), filt(y)
    mu_x2, mu_y2, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = filt(x * x) - mu_x2
    var_y = filt(y * y) - mu_y2
    cov = filt(x * y) - mu_xy
    ssim_map = ((2 * mu_xy + c1) * (2 * cov + c2)) / ((mu_x2 + mu_y2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def _ssim_channel(x: np.ndarray, y: np.ndarray) -> float:
    win = _gaussian_window()
    b = WINDOW_SIZE // 2

    def filt(a: np.ndarray) -> np.ndarray:
        # full-size filtering then a crop of b px = the 'valid' region (border mode is irrelevant)
        return cv2.filter2D(a, -1, win)[b:-b, b:-b]

    return _ssim_mean(x, y, filt, C1, C2)


def ssim(output: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """SSIM of the official code ("same as MATLAB" 2-D): 11x11 Gaussian (sigma 1.5), 'valid' region,
    C1=(0.01*255)^2, C2=(0.03*255)^2, computed per channel and averaged over channels."""
    out, ref = _pair(output, target)
    h, w = out.shape[:2]
    if h < WINDOW_SIZE or w < WINDOW_SIZE:
        raise ValueError(f"SSIM needs images of at least {WINDOW_SIZE}x{WINDOW_SIZE} pixels, got {h}x{w}")
    return float(np.mean([_ssim_channel(out[..., c], ref[..., c]) for c in range(out.shape[2])]))


def _float_image(img: np.ndarray | torch.Tensor) -> np.ndarray:
    """An unquantised ``(H, W, C)`` float64 copy of a float image (tensor or array); no rounding, no clipping."""
    if isinstance(img, torch.Tensor):
        t = img.detach().cpu()
        t = t[0] if t.dim() == 4 and t.shape[0] == 1 else t
        if t.dim() != 3:
            raise ValueError(f"expected a (C, H, W) or (1, C, H, W) tensor, got shape {tuple(img.shape)}")
        img = t.permute(1, 2, 0).numpy()
    arr = np.asarray(img)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"the float metrics take float images in [0, 1], got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    return arr[..., None] if arr.ndim == 2 else arr


def _float_pair(output: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    out, ref = _float_image(output), _float_image(target)
    if out.shape != ref.shape:
        raise ValueError(f"output and target shapes differ: {out.shape} vs {ref.shape}")
    return out, ref


def psnr_float(output: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, data_range: float = 1.0) -> float:
    """PSNR (dB) of unquantised float images, MSE over all pixels and channels in float64; inf if equal.

    SADNet's test protocol (its ``metrics.compare_psnr`` with data range 1 on the clipped float output),
    not the 8-bit :func:`psnr` of ADFNet's.
    """
    out, ref = _float_pair(output, target)
    mse = float(np.mean((out - ref) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(data_range**2 / mse)


def _ssim_volume(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """MATLAB's ``ssim`` on an array of any dimension: a separable 11-tap Gaussian (sigma 1.5) along every
    axis, 'replicate' padding, same-size map, mean over the whole map, C1/C2 scaled by ``data_range``."""
    g = cv2.getGaussianKernel(WINDOW_SIZE, WINDOW_SIGMA)[:, 0]

    def filt(a: np.ndarray) -> np.ndarray:
        for axis in range(a.ndim):
            a = correlate1d(a, g, axis=axis, mode="nearest")
        return a

    return _ssim_mean(x, y, filt, (0.01 * data_range) ** 2, (0.03 * data_range) ** 2)


def ssim_matlab3d(output: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """SSIM as MATLAB's default ``ssim`` computes it on an ``H x W x 3`` block (``evaluate_SIDD.m``).

    MATLAB treats a 3-D array as a volume: one 11x11x11 Gaussian (sigma 1.5) across rows, columns
    and the 3 channels, 'replicate' padding, same-size map, mean over the whole map. This is not the
    per-channel average of :func:`ssim`; SIDD's published SSIM used this flavour. 8-bit inputs (quantised).
    """
    out, ref = _pair(output, target)
    return _ssim_volume(out, ref, 255.0)


def ssim_matlab_float(output: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """The same MATLAB-style SSIM on unquantised float images in [0, 1] (data range 1): SADNet's protocol.

    Gray images get the 2-D 11x11 window, colour images the one 11x11x11 volume window over
    ``H x W x C``, as SADNet's ``metrics.compare_ssim`` (a 2-D or 3-D replicate-padded convolution).
    """
    out, ref = _float_pair(output, target)
    if out.shape[2] == 1:
        out, ref = out[..., 0], ref[..., 0]
    return _ssim_volume(out, ref, 1.0)
