"""Pure-PyTorch DCNv2: explicit bilinear gathers, then one matmul per convolution group.

Written for clarity, not speed: it is the test oracle, the backend for dtypes the others cannot
compute (e.g. bfloat16 on CPU) and a deterministic path. Every step is an ordinary differentiable
tensor op, so autograd gives all five gradients, and it works for any floating dtype.

DCNv2's border rules hold by construction: a sample point counts only strictly inside
``(-1, H) x (-1, W)`` (the ``inside`` factor, a constant for autograd, so the offset gradient is 0
exactly where DCNv2's is, including coordinates of exactly -1), and each bilinear corner outside
``[0, H-1] x [0, W-1]`` reads 0.
"""

from __future__ import annotations

import torch

# Bound on the elements of the sampled-column tensor of one batch chunk (N_chunk * C * K * Ho * Wo);
# the forward's temporaries are a small multiple of it.
MAX_COLUMN_ELEMENTS = 1 << 24


def _sample_columns(
    input: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    deformable_groups: int,
) -> torch.Tensor:
    """Modulated bilinear samples ``(N, C, K, Ho*Wo)`` of ``input`` at the deformed taps."""
    n, c, h, w = input.shape
    ho, wo = offset.shape[-2:]
    kh, kw = kernel
    taps, dg = kh * kw, deformable_groups
    dev = input.device

    # Sampling coordinates (N, dg, K, Ho, Wo): integer grid position first, then + offset (dy, dx
    # interleaved per tap) -- the order the compiled kernels use. Like them, coordinates, weights
    # and sums are formed in at least float32 (half keeps no fractional bit of a coordinate >= 1024);
    # the samples are rounded to the input dtype at the end.
    acc = torch.promote_types(input.dtype, torch.float32)
    tap_y = (torch.arange(kh, device=dev) * dilation[0]).repeat_interleave(kw)  # (K,)
    tap_x = (torch.arange(kw, device=dev) * dilation[1]).repeat(kh)
    grid_y = torch.arange(ho, device=dev) * stride[0] - padding[0]
    grid_x = torch.arange(wo, device=dev) * stride[1] - padding[1]
    off = offset.reshape(n, dg, taps, 2, ho, wo)
    y = (tap_y[:, None, None] + grid_y[None, :, None]).to(acc) + off[:, :, :, 0].to(acc)
    x = (tap_x[:, None, None] + grid_x[None, None, :]).to(acc) + off[:, :, :, 1].to(acc)

    inside = ((y > -1) & (y < h) & (x > -1) & (x < w)).to(acc)
    y0, x0 = torch.floor(y), torch.floor(x)
    fy, fx = y - y0, x - x0
    y0, x0 = y0.long(), x0.long()

    length = taps * ho * wo
    planes = input.reshape(n, dg, c // dg, h * w)
    samples = input.new_zeros(n, dg, c // dg, length, dtype=acc)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            index = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).reshape(n, dg, 1, length)
            corner = planes.gather(3, index.expand(n, dg, c // dg, length))
            samples = samples + corner.to(acc) * (wy * wx * valid * inside).reshape(n, dg, 1, length)
    samples = samples * mask.reshape(n, dg, 1, length).to(acc)
    return samples.reshape(n, c, taps, ho * wo).to(input.dtype)


def modulated_deform_conv(
    input: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    deformable_groups: int,
    max_column_elements: int = MAX_COLUMN_ELEMENTS,
) -> torch.Tensor:
    """DCNv2 in plain PyTorch; arguments already validated by :func:`dcn.modulated_deform_conv`.

    The batch is processed in chunks whose sampled columns hold at most ``max_column_elements``
    elements (at least one image per chunk) to bound the forward's peak memory.
    """
    n, c = input.shape[:2]
    cout, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    per_image = c * kh * kw * ho * wo
    step = max(1, max_column_elements // max(1, per_image))
    # (groups, Cout/groups, Cin/groups * K): a group's output channels see only its input channels.
    w = weight.reshape(groups, cout // groups, c // groups * kh * kw)
    outputs = []
    for sl in zip(input.split(step), offset.split(step), mask.split(step), strict=True):
        cols = _sample_columns(*sl, (kh, kw), stride, padding, dilation, deformable_groups)
        cols = cols.reshape(cols.shape[0], groups, w.shape[-1], ho * wo)  # (N, groups, Cin/groups * K, L)
        outputs.append(torch.matmul(w, cols).reshape(cols.shape[0], cout, ho, wo))
    out = torch.cat(outputs)
    return out if bias is None else out + bias.reshape(1, cout, 1, 1)
