"""torchvision backend: ``torchvision.ops.deform_conv2d`` with DCNv2's offset gradient.

torchvision's coordinate gradient lacks DCNv2's outer border guard (pytorch/vision#6885): at a
sampling coordinate of exactly -1 it returns a one-sided derivative where DCNv2 and mmcv return 0.
Zero offsets with padding >= 1 (every freshly initialised DCN layer) land exactly there, so plain
torchvision trains differently from DCNv2. The forward and the other gradients already agree.
"""

from __future__ import annotations

import torch
from torchvision.ops import deform_conv2d


def _outside_open_box(
    offset: torch.Tensor,
    size: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> torch.Tensor:
    """Boolean ``(N, dg, K, 1, Ho, Wo)``: the sample point is not inside ``(-1, H) x (-1, W)``.

    y and x are formed as torchvision's kernels do -- integer part ``o*s - p + i*d`` first, converted
    to the tensor dtype (also for half, where dcn's own kernels use float), then ``+ offset`` -- so
    the comparison agrees with theirs bit for bit.
    """
    n, channels, ho, wo = offset.shape
    kh, kw = kernel
    dg = channels // (2 * kh * kw)
    off = offset.detach().reshape(n, dg, kh, kw, 2, ho, wo)
    dev = offset.device
    rows = torch.arange(kh, device=dev)[:, None] * dilation[0] + torch.arange(ho, device=dev) * stride[0] - padding[0]
    cols = torch.arange(kw, device=dev)[:, None] * dilation[1] + torch.arange(wo, device=dev) * stride[1] - padding[1]
    y = rows[:, None, :, None].to(offset.dtype) + off[..., 0, :, :]  # (N, dg, kh, kw, Ho, Wo)
    x = cols[:, None, :].to(offset.dtype) + off[..., 1, :, :]
    outside = (y <= -1) | (y >= size[0]) | (x <= -1) | (x >= size[1])
    return outside.view(n, dg, kh * kw, 1, ho, wo)


class _DCNv2OffsetGrad(torch.autograd.Function):
    """Identity on the offset whose backward zeroes dy and dx of samples outside the open box."""

    @staticmethod
    def forward(ctx, offset, size, kernel, stride, padding, dilation):  # type: ignore[override]
        ctx.save_for_backward(offset)
        ctx.geometry = (size, kernel, stride, padding, dilation)
        return offset.view_as(offset)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (offset,) = ctx.saved_tensors
        outside = _outside_open_box(offset, *ctx.geometry)
        grad = grad.reshape(outside.shape[:3] + (2,) + outside.shape[4:]).masked_fill(outside, 0)
        return grad.view(offset.shape), None, None, None, None, None


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
) -> torch.Tensor:
    """DCNv2 via torchvision; arguments already validated by :func:`dcn.modulated_deform_conv`.

    torchvision infers ``groups`` from the weight and ``deformable_groups`` from the offset, which
    the caller has checked against the explicit values.
    """
    if offset.requires_grad:
        geometry = (tuple(input.shape[-2:]), tuple(weight.shape[-2:]), stride, padding, dilation)
        offset = _DCNv2OffsetGrad.apply(offset, *geometry)
    return deform_conv2d(input, offset, weight, bias, stride, padding, dilation, mask)
