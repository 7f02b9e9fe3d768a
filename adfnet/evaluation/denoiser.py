"""What the harness evaluates: any forward ``noisy -> denoised``, a torch model or a plain per-image function.

:func:`.synthetic.evaluate_set` runs every denoiser through :func:`adfnet.inference.denoise`, so a
network and a classical method get the same noise, the same padding rule (reflect-pad to the
denoiser's ``size_multiple`` and crop back; ADFNet 8, a per-image function 1, i.e. none), the same
clamp to [0, 1] and the same metrics. A torch model is such a forward already; :class:`ImageFunction`
makes one of a function written for a single image, in numpy or torch, so nothing in the harness
assumes a network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from adfnet.imaging import image_to_tensor, tensor_to_image

# The harness's forward: a (B, C, H, W) float tensor in [0, 1] (noisy: unclipped) -> the same shape.
Denoiser = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ImageFunction:
    """A :data:`Denoiser` made of a function that denoises one image.

    ``fn`` receives the noisy image in [0, 1] (unclipped, float32), one image at a time: with
    ``numpy=True`` as an ``(H, W, C)`` array (``C`` = 1 for gray; it may return ``(H, W)`` then),
    with ``numpy=False`` as a ``(1, C, H, W)`` CPU tensor. It returns the denoised image of the same
    size. ``size_multiple`` = 1: the image is passed unpadded, as classical methods were published;
    a function that needs multiples of N sets N and gets the reflect padding networks get.
    """

    fn: Callable[[Any], Any]
    name: str = "function"
    numpy: bool = True
    size_multiple: int = 1

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._one(batch[i : i + 1]) for i in range(batch.shape[0])])

    def _one(self, x: torch.Tensor) -> torch.Tensor:
        if self.numpy:
            img = tensor_to_image(x)
            out = np.asarray(self.fn(img), dtype=np.float32)
            if out.ndim == 2 and img.shape[2] == 1:
                out = out[..., None]
            got, want = out.shape, img.shape
            y = image_to_tensor(out) if got == want else None
        else:
            y = torch.as_tensor(self.fn(x.detach().cpu()), dtype=torch.float32)
            got, want = tuple(y.shape), tuple(x.shape)
        if got != want:
            raise ValueError(f"{self.name} returned an image of shape {got} for an input of shape {want}")
        return y.to(x.device)
