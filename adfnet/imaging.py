"""Ground floor of the package: 8-bit quantisation and image <-> tensor conversion.

Everything that reads, writes or scores images (``data/``, ``matio``, ``metrics``, ``evaluation``)
imports these from here, so none of them has to import another for a conversion. Numpy images are
``(H, W, C)``; tensors ``(1, C, H, W)``.
"""

from __future__ import annotations

import numpy as np
import torch


def quantize(img: np.ndarray | torch.Tensor) -> np.ndarray:
    """Float [0, 1] -> uint8 as ``img_as_ubyte``: x255 (in the input's precision), round half to even, clip.

    A tensor ``(C, H, W)`` / ``(1, C, H, W)`` is returned as an ``(H, W, C)`` array; uint8 passes through.
    The rounding is part of the published numbers (the official code passed both the clamped output and
    the clean image through ``skimage.img_as_ubyte``).
    """
    if isinstance(img, torch.Tensor):
        t = img.detach().cpu()
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ValueError(f"expected a batch of one image, got shape {tuple(t.shape)}")
            t = t[0]
        if t.dim() != 3:
            raise ValueError(f"expected a (C, H, W) or (1, C, H, W) tensor, got shape {tuple(t.shape)}")
        img = t.permute(1, 2, 0).numpy()
    arr = np.asarray(img)
    if arr.dtype == np.uint8:
        return arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"expected a float image in [0, 1] or uint8, got dtype {arr.dtype}")
    scaled = np.rint(arr * arr.dtype.type(255))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def image_to_tensor(img: np.ndarray) -> torch.Tensor:
    """``(H, W[, C])`` array -> float32 ``(1, C, H, W)`` tensor (uint8 is divided by 255)."""
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"image_to_tensor expects (H, W) or (H, W, C), got shape {arr.shape}")
    arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).unsqueeze(0)


def tensor_to_image(t: torch.Tensor) -> np.ndarray:
    """``(1, C, H, W)`` or ``(C, H, W)`` tensor -> float32 ``(H, W, C)`` numpy array on the CPU."""
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"tensor_to_image expects a batch of one, got shape {tuple(t.shape)}")
        t = t[0]
    if t.dim() != 3:
        raise ValueError(f"tensor_to_image expects (1, C, H, W) or (C, H, W), got shape {tuple(t.shape)}")
    return t.detach().to("cpu", torch.float32).permute(1, 2, 0).contiguous().numpy()
