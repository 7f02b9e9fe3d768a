"""The one noise generator (training, validation and test all call it)."""

from __future__ import annotations

import torch


def add_awgn(
    clean: torch.Tensor,
    sigma: float,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return ``clean + N(0, (sigma/255)^2)``, unclipped and unquantised (the official recipe).

    The noise is always drawn on the CPU as a float32 tensor of ``clean``'s shape and then moved to
    ``clean``'s device and dtype, so results do not depend on the device. ``seed`` uses a fresh
    generator: ``seed=20`` reproduces the official ``torch.manual_seed(20);
    FloatTensor(1, C, H, W).normal_(0, sigma/255)`` exactly (1 for gray). ``generator`` continues a
    caller-owned CPU stream; with neither, the global torch RNG is used.
    """
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator to add_awgn, not both")
    if sigma < 0:
        raise ValueError(f"noise level sigma must be >= 0, got {sigma}")
    if seed is not None:
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.empty(tuple(clean.shape), dtype=torch.float32)
    noise.normal_(0.0, float(sigma) / 255.0, generator=generator)
    return clean + noise.to(device=clean.device, dtype=clean.dtype)
