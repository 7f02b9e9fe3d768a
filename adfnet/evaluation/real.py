"""Real-noise helpers (SIDD blocks, DND crops): the 8-bit denoising step and the scoring of pairs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from adfnet.imaging import image_to_tensor, quantize, tensor_to_image
from adfnet.inference import CHOP_MIN_SIZE_REAL, denoise
from adfnet.metrics import psnr, ssim, ssim_matlab3d

Model = Callable[[torch.Tensor], torch.Tensor]


def denoise_uint8(
    model: Model, img: np.ndarray, device: torch.device, chop: bool = False, ensemble: bool = False
) -> np.ndarray:
    """Denoise one ``H x W x 3`` uint8 real-noise image; returns the float32 ``H x W x 3`` output in [0, 1]."""
    x = image_to_tensor(img).to(device)
    out = denoise(model, x, "chop" if chop else "whole", ensemble, min_size=CHOP_MIN_SIZE_REAL)
    return tensor_to_image(out)


def denoise_blocks(
    model: Model, blocks: np.ndarray, device: torch.device, chop: bool = False, ensemble: bool = False
) -> np.ndarray:
    """Denoise ``N x K x H x W x 3`` uint8 SIDD blocks; returns uint8 blocks of the same shape."""
    out = np.empty_like(blocks)
    n, k = blocks.shape[:2]
    for index in tqdm(range(n * k), desc="blocks", unit="block"):
        i, j = divmod(index, k)
        out[i, j] = quantize(denoise_uint8(model, blocks[i, j], device, chop, ensemble))
    return out


def score_pairs(outputs: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> list[tuple[float, float, float]]:
    """(PSNR, per-channel SSIM, MATLAB-style 3-D SSIM) for each output/target pair (8-bit protocol)."""
    return [(psnr(o, t), ssim(o, t), ssim_matlab3d(o, t)) for o, t in zip(outputs, targets, strict=True)]
