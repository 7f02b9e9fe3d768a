"""DCNv2 modules with the official parameter names (``weight``, ``bias``, ``conv_offset_mask``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from . import _backend, _ext
from .functional import autocast_tensors, modulated_deform_conv
from .strips import eager_inference, strip_rows


def _conv_rows(conv: nn.Conv2d, x: torch.Tensor, start: int, stop: int, channels: slice = slice(None)) -> torch.Tensor:
    """Output rows [start, stop) and ``channels`` of ``conv(x)`` from the input rows they need
    (zero rows past the edges)."""
    kh, sh, (ph, pw), dh = conv.kernel_size[0], conv.stride[0], conv.padding, conv.dilation[0]
    first, last = start * sh - ph, (stop - 1) * sh - ph + dh * (kh - 1) + 1
    rows = x[:, :, max(first, 0) : min(last, x.shape[2])]
    if first < 0 or last > x.shape[2]:  # only strips at the edges: F.pad copies even when it pads nothing
        rows = F.pad(rows, (0, 0, max(-first, 0), max(last - x.shape[2], 0)))
    return _predict(conv, rows, channels, padding=(0, pw))


def _predict(conv: nn.Conv2d, x: torch.Tensor, channels: slice, padding: tuple[int, int] | None = None) -> torch.Tensor:
    """``channels`` of ``conv(x)`` (with ``padding`` instead of the conv's own, if given)."""
    bias = None if conv.bias is None else conv.bias[channels]
    padding = conv.padding if padding is None else padding
    return F.conv2d(x, conv.weight[channels], bias, conv.stride, padding, conv.dilation, conv.groups)


def _strip_rows(layer: ModulatedDeformConvPack, input: torch.Tensor, out_w: int, out_h: int) -> int:
    """Output rows per strip for :func:`_forward_in_strips`, or 0 to run in one piece (:mod:`dcn.strips`).

    On the compiled CPU backend, the offset/mask prediction (3 * dg * kh * kw channels, oneDNN briefly holding
    an NCHW convolution's output twice) is made and consumed strip by strip (``dcn::modulated_deform_conv_rows``).
    A strip is also small enough that the op's column buffer (C * kh * kw rows) fits the same budget: one GEMM
    per strip.
    """
    taps = layer.kernel_size[0] * layer.kernel_size[1]
    # Per output row and tap: 3 * dg predicted channels, C column-buffer rows; the larger one sets the strip.
    row_bytes = input.shape[0] * out_w * input.element_size() * max(3 * layer.deformable_groups, layer.in_channels)
    rows = strip_rows(out_h, row_bytes * taps)
    if rows and input.device.type == "cpu" and eager_inference(input) and _backend.resolve(input).name == "ext":
        return rows
    return 0


def _forward_in_strips(
    layer: ModulatedDeformConvPack, input: torch.Tensor, features: torch.Tensor, out_h: int, rows: int
) -> torch.Tensor:
    """The layer's output strip by strip: prediction, in-place mask sigmoid, DCN of those rows.

    Offsets and masks are predicted separately, so that each is a dense tensor in the features'
    layout: a sigmoid over the mask channels of one channels_last map would run strided, 7x slower.
    """
    conv = layer.conv_offset_mask
    out = None
    n_offset = 2 * conv.out_channels // 3
    for start in range(0, out_h, rows):
        stop = min(start + rows, out_h)
        offset = _conv_rows(conv, features, start, stop, slice(0, n_offset))
        mask = _conv_rows(conv, features, start, stop, slice(n_offset, None)).sigmoid_()
        tensors = (input, offset, mask, layer.weight, layer.bias)
        if torch.is_autocast_enabled("cpu"):  # the op's dtype under autocast, as dcn.modulated_deform_conv's
            tensors = autocast_tensors("cpu", tensors)
        if out is None:  # in the layout the op writes (channels_last from a channels_last input, one group)
            channels_last = layer.groups == 1 and _ext.is_channels_last(input)
            layout = torch.channels_last if channels_last else torch.contiguous_format
            size = (input.shape[0], layer.out_channels, out_h, offset.shape[3])
            out = torch.empty(size, dtype=tensors[0].dtype, device=input.device, memory_format=layout)
        torch.ops.dcn.modulated_deform_conv_rows(
            *tensors,
            *layer.stride,
            *layer.padding,
            *layer.dilation,
            layer.groups,
            layer.deformable_groups,
            start,
            out,
        )  # writes the output rows [start, stop)
    return out


def _out_size(size: int, conv: nn.Conv2d, dim: int) -> int:
    k, s, p, d = conv.kernel_size[dim], conv.stride[dim], conv.padding[dim], conv.dilation[dim]
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


class ModulatedDeformConv(nn.Module):
    """Modulated deformable convolution with explicit ``offset`` and ``mask`` inputs."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        deformable_groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels {in_channels} and out_channels {out_channels} must be divisible by groups {groups}"
            )
        if in_channels % deformable_groups:
            raise ValueError(f"in_channels {in_channels} must be divisible by deformable_groups {deformable_groups}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.deformable_groups = deformable_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        # bias=False leaves no ``bias`` entry (as nn.Conv2d); DCNv2 kept a frozen bias parameter instead.
        self.register_parameter("bias", nn.Parameter(torch.empty(out_channels)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same as nn.Conv2d (the official DCNv2 copy used kaiming_uniform(a=sqrt(5)) too).
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return modulated_deform_conv(
            input,
            offset,
            mask,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.deformable_groups,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"deformable_groups={self.deformable_groups}, bias={self.bias is not None}"
        )


class ModulatedDeformConvPack(ModulatedDeformConv):
    """DCNv2 that predicts its own offsets and masks with ``conv_offset_mask``.

    The predictor's ``3 * deformable_groups * kh * kw`` output channels are used exactly as DCNv2
    does: the first two thirds are the offsets (interleaved dy, dx per tap), the last third the
    mask logits. It is zero-initialised, so a fresh layer samples the regular grid with mask 0.5.
    With ``extra_offset_mask=True`` the forward takes ``[x, features]`` and predicts from
    ``features`` (``offset_in_channel`` channels), as ADFNet does.

    The predictor uses the layer's kernel size, stride, padding and also its dilation (as mmcv
    does; DCNv2 omitted the dilation), so its map always has the output size. ADFNet uses
    dilation 1, where both conventions coincide.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int],
        padding: int | tuple[int, int],
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        deformable_groups: int = 1,
        bias: bool = True,
        extra_offset_mask: bool = False,
        offset_in_channel: int = 32,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, deformable_groups, bias
        )
        self.extra_offset_mask = extra_offset_mask
        predictor_in = offset_in_channel if extra_offset_mask else in_channels
        taps = self.kernel_size[0] * self.kernel_size[1]
        self.conv_offset_mask = nn.Conv2d(
            predictor_in,
            deformable_groups * 3 * taps,
            self.kernel_size,
            self.stride,
            self.padding,
            dilation=self.dilation,
            bias=True,
        )
        self.init_offset()

    def init_offset(self) -> None:
        """Zero the offset/mask predictor: regular sampling grid, mask sigmoid(0) = 0.5 (DCNv2)."""
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, x: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        if self.extra_offset_mask:
            if not isinstance(x, (list, tuple)) or len(x) != 2:
                raise ValueError("ModulatedDeformConvPack(extra_offset_mask=True) expects [input, offset_features]")
            input, features = x
        else:
            if isinstance(x, (list, tuple)):
                raise ValueError("ModulatedDeformConvPack(extra_offset_mask=False) expects a single tensor")
            input = features = x
        out_h, out_w = (_out_size(features.shape[2 + dim], self.conv_offset_mask, dim) for dim in (0, 1))
        rows = _strip_rows(self, input, out_w, out_h)
        if rows:
            return _forward_in_strips(self, input, features, out_h, rows)
        # Offsets and masks from two convolutions (the predictor's two row blocks of weights), not
        # as slices of one output: the backward of two slices (one of them changed in place by the
        # sigmoid) would build two zero-filled full-size (3 * dg * K)-channel gradients and copy
        # into them, each as large as the whole prediction. The sigmoid runs in place: a
        # convolution's backward does not need its output.
        n_offset = 2 * self.conv_offset_mask.out_channels // 3
        offset = _predict(self.conv_offset_mask, features, slice(0, n_offset))
        mask = _predict(self.conv_offset_mask, features, slice(n_offset, None)).sigmoid_()
        return super().forward(input, offset, mask)
