"""The strip policy of CPU inference, one for every per-pixel tensor too large to make whole.

Without gradients, a tensor that exists only to be consumed at once (the DCN's offset/mask prediction,
:mod:`dcn.modules`; ADFNet's generated 3x3 kernels, ``adfnet.models.ops``) is made and consumed one strip of
output rows at a time when the whole would exceed :data:`STRIP_BYTES`: every output pixel sees the same
inputs and values as in one piece, and the full tensor never exists. Such tensors have many channels per
pixel (9 or 27 per feature channel), so they, not the features, set a network's peak memory.
"""

from __future__ import annotations

import torch

# Small enough that the whole tensor never has to exist and that each strip stays below glibc's largest
# mmap threshold (32 MiB), so a strip's memory is reused instead of faulted in afresh; large enough that a
# strip is still one efficient GEMM: smaller strips save little memory and cost time (each strip is a few
# parallel regions whose threads wait for the scheduler on a busy machine; docs/SPEED.md has the measurement).
STRIP_BYTES = 16 << 20


def eager_inference(x: torch.Tensor) -> bool:
    """Whether ``x`` flows through eager inference: no autograd graph, no tracing (ONNX export) or compiling,
    which see the plain one-piece formulation."""
    return not torch.is_grad_enabled() and not torch.jit.is_tracing() and not torch.compiler.is_compiling()


def strip_rows(height: int, row_bytes: int) -> int:
    """Rows per strip of a tensor of ``height`` rows of ``row_bytes`` bytes each: 0 (one piece) when the whole
    fits :data:`STRIP_BYTES`, else as many rows as fit (at least one)."""
    if height * row_bytes <= STRIP_BYTES:
        return 0
    return max(1, STRIP_BYTES // row_bytes)
