"""ADFNet's two parameter-light operations and the switch between their two formulations.

* ``dynamic_filter`` -- per-pixel, per-channel 3x3 filtering (DConv, MDCB branches);
* ``generated_filter`` -- kernels generated pixel-wise (a 1x1 conv) and applied at one or more
  dilations; in inference made one strip of rows at a time;
* ``mfi_fusion`` -- MFI followed by the 1x1 fusion conv and the block's residual.

``"fast"`` (the default) runs the dynamic filter with the fused kernels of the ``dcn._C``
extension (9 shifted multiply-adds read in place; falls back to unfold when the extension is not
built) and MFI folded into the fusion conv; on the CPU the network runs in channels_last, in
inference and training (:func:`channels_last_cpu`), with tap-major kernels
(:func:`generated_filter`). ``"reference"`` is the original formulation: unfold, product and sum
for the filter, MFI as four full-size temporaries then ``cat`` and the 1x1 conv, and
torchvision's ``deform_conv2d`` for the DCN. Both compute the same function (parity tests in
tests/test_fast_ops.py); the reference exists for those tests and for benchmarks/adfnet_speed.py.
Select it with :func:`use_formulation` or ``ADFNET_FORMULATION=reference``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

import dcn
from dcn import _ext
from dcn.strips import eager_inference, strip_rows

__all__ = [
    "FORMULATIONS",
    "channels_last_cpu",
    "conv_add",
    "conv_lrelu",
    "dynamic_filter",
    "dynamic_filter_reference",
    "generated_filter",
    "get_formulation",
    "mfi_fusion",
    "use_formulation",
]

FORMULATIONS = ("fast", "reference")
ENV_VAR = "ADFNET_FORMULATION"
_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("adfnet_formulation", default=None)


def get_formulation() -> str:
    """``"fast"`` or ``"reference"``: :func:`use_formulation` > ``ADFNET_FORMULATION`` > ``"fast"``."""
    name = _override.get() or os.environ.get(ENV_VAR, "").strip().lower() or "fast"
    if name not in FORMULATIONS:
        raise ValueError(f"{ENV_VAR}={name!r} is not a formulation; use one of {', '.join(FORMULATIONS)}")
    return name


@contextlib.contextmanager
def use_formulation(name: str) -> Iterator[str]:
    """Run the enclosed ADFNet calls in formulation ``name``; ``"reference"`` also selects the
    torchvision DCN backend (the original network's DCN)."""
    if name not in FORMULATIONS:
        raise ValueError(f"unknown formulation {name!r}; use one of {', '.join(FORMULATIONS)}")
    token = _override.set(name)
    try:
        with dcn.use_backend("torchvision") if name == "reference" else contextlib.nullcontext():
            yield name
    finally:
        _override.reset(token)


def _fused_available() -> bool:
    return _ext.has_dynamic_filter()


def _use_fused() -> bool:
    return get_formulation() == "fast" and _fused_available()


def dynamic_filter_reference(x: Tensor, kernels: Tensor, dilation: int = 1) -> Tensor:
    """The unfold formulation (9 shifted copies of ``x``, a product, a sum): the parity oracle."""
    b, c, h, w = x.shape
    patches = F.unfold(x, 3, dilation=dilation, padding=dilation).view(b, c, 9, h, w)
    return (patches * kernels.reshape(b, c, 9, h, w)).sum(2)


def _dynamic_filter_backward_reference(grad: Tensor, x: Tensor, kernels: Tensor, d: int) -> tuple[Tensor, Tensor]:
    b, c, h, w = x.shape
    grad = grad.unsqueeze(2)
    cols = (kernels.reshape(b, c, 9, h, w) * grad).reshape(b, 9 * c, h * w)
    grad_x = F.fold(cols, (h, w), 3, dilation=d, padding=d)
    patches = F.unfold(x, 3, dilation=d, padding=d).view(b, c, 9, h, w)
    return grad_x, (patches * grad).reshape(b, 9 * c, h, w)


# One registered op in both formulations, so that complexity counters (torch.utils.flop_counter,
# formula in adfnet.complexity) and torch.compile see dynamic filtering as one operation with a
# known cost; its kernels are the fused ones or unfold (reference formulation, or no extension).
@torch.library.custom_op("adfnet::dynamic_filter", mutates_args=())
def _dynamic_filter_op(x: Tensor, kernels: Tensor, dilation: int) -> Tensor:
    if _use_fused():
        return torch.ops.dcn.dynamic_filter(x, kernels, dilation)
    return dynamic_filter_reference(x, kernels, dilation)


@_dynamic_filter_op.register_fake
def _(x: Tensor, kernels: Tensor, dilation: int) -> Tensor:
    taps = kernels.shape[1] * (kernels.shape[2] if kernels.dim() == 5 else 1)
    torch._check(taps == 9 * x.shape[1], lambda: "kernels must have 9 channels per input channel")
    return torch.empty_like(x, memory_format=_fused_layout(x))


def _fused_layout(x: Tensor) -> torch.memory_format:
    """The layout of the CPU kernels' results: channels_last for a channels_last x."""
    cpu_cl = x.device.type == "cpu" and _ext.is_channels_last(x) and _use_fused()
    return torch.channels_last if cpu_cl else torch.contiguous_format


def _setup_context(ctx, inputs, output) -> None:
    x, kernels, dilation = inputs
    ctx.save_for_backward(x, kernels)
    ctx.dilation = dilation


def _backward(ctx, grad: Tensor):
    x, kernels = ctx.saved_tensors
    if _use_fused():
        grad_x, grad_kernels = torch.ops.dcn.dynamic_filter_backward(grad, x, kernels, ctx.dilation)
    else:
        grad_x, grad_kernels = _dynamic_filter_backward_reference(grad, x, kernels, ctx.dilation)
    return grad_x, grad_kernels, None


_dynamic_filter_op.register_autograd(_backward, setup_context=_setup_context)


def dynamic_filter(x: Tensor, kernels: Tensor, dilation: int = 1) -> Tensor:
    """Per-pixel, per-channel 3x3 filtering of ``x`` (B, C, H, W) with zero padding.

    ``kernels`` (B, 9C, H, W) holds at channel 9c + t the weight of tap t = 3i + j (row-major) for
    channel c (or, tap-major, (B, 9, C, H, W) at [b, t, c]: the compiled CPU kernels only); taps are
    ``dilation`` pixels apart:
    out[b, c, h, w] = sum_t x[b, c, h + d(i-1), w + d(j-1)] * kernels[b, 9c + t, h, w].
    Mixed dtypes (autocast) run in the wider one.
    """
    if x.dtype != kernels.dtype:
        dtype = torch.promote_types(x.dtype, kernels.dtype)
        x, kernels = x.to(dtype), kernels.to(dtype)
    if _ext.plain_eager(x):  # not through adfnet::dynamic_filter: its first call imports torch._dynamo
        if _use_fused():  # the compiled op carries its own autograd (dcn/_ext.py)
            return torch.ops.dcn.dynamic_filter(x, kernels, dilation)
        if not torch.is_grad_enabled():  # with gradients, the registered op's hand-written backward
            return dynamic_filter_reference(x, kernels, dilation)
    return _dynamic_filter_op(x, kernels, dilation)


def _eager(x: Tensor) -> bool:
    """The fast formulation on real tensors, not traced (ONNX export traces the plain formulation) nor compiled."""
    return (
        get_formulation() == "fast"
        and x.device.type != "meta"
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
    )


def _eager_inference(x: Tensor) -> bool:
    return _eager(x) and eager_inference(x)


def channels_last_cpu(x: Tensor) -> bool:
    """Whether a network runs in channels_last: on the CPU in the fast formulation with the compiled
    ops, whose kernels (forward and backward) read and write channels_last in place.

    oneDNN convolutions are faster in channels_last and allocate less: an NCHW one reorders its
    input and output through blocked copies, which cost time and fresh pages (docs/SPEED.md measures
    it); their backward likewise.
    """
    return x.device.type == "cpu" and _eager(x) and _fused_available() and dcn.get_backend() == "ext"


def _tap_major(to_kernels: Callable[[Tensor], Tensor], x: Tensor) -> bool:
    """Whether generated_filter makes tap-major kernels: ``to_kernels`` a plain 1x1 conv, and the CPU
    kernels run the filter."""
    conv = to_kernels
    return (
        isinstance(conv, torch.nn.Conv2d)
        and conv.kernel_size == (1, 1)
        and conv.stride == (1, 1)
        and conv.padding == (0, 0)
        and conv.groups == 1
        and x.device.type == "cpu"
        and _eager(x)
        and _fused_available()
    )


def _tap_major_kernels(conv: torch.nn.Conv2d, features: Tensor, channels: int, buffer: Tensor | None = None) -> Tensor:
    """``conv(features)`` (9C channels, tap t of channel c at 9c + t) made tap-major: the conv's rows
    reordered to t * C + c, the result viewed as (B, 9, C, H, W). In channels_last a tap's C weights
    then lie together, so the CPU kernels load them as one vector (a reordering of the weights, not
    of the kernels). A channels_last ``features`` map is multiplied as the (BHW, C) matrix it is, one
    GEMM writing the channels_last result (torch runs a one-thread 1x1 conv through an NCHW copy),
    written into the front of ``buffer`` when one is given (:func:`_kernel_buffer`)."""
    weight = conv.weight.view(channels, 9, -1).transpose(0, 1).reshape(9 * channels, -1)
    bias = None if conv.bias is None else conv.bias.view(channels, 9).t().reshape(-1)
    b, _, h, w = features.shape
    if _ext.is_channels_last(features):
        pixels = features.permute(0, 2, 3, 1).reshape(b * h * w, -1)
        if buffer is None:
            out = pixels @ weight.t() if bias is None else torch.addmm(bias, pixels, weight.t())
        else:  # autocast does not see out= calls: its dtype (the buffer's) by hand
            out = buffer[: pixels.shape[0] * weight.shape[0]].view(pixels.shape[0], -1)
            pixels, weight = pixels.to(out.dtype), weight.to(out.dtype)
            if bias is None:
                torch.mm(pixels, weight.t(), out=out)
            else:
                torch.addmm(bias.to(out.dtype), pixels, weight.t(), out=out)
        return out.view(b, h, w, 9, channels).permute(0, 3, 4, 1, 2)
    out = F.conv2d(features, weight.view(*weight.shape, 1, 1), bias)
    return out.view(b, 9, channels, h, w)


def _fused_conv(conv: torch.nn.Module, x: Tensor) -> bool:
    """Whether ``conv`` and the operation after it run as one oneDNN primitive: CPU inference in
    channels_last in the fast formulation, a plain zero-padded Conv2d."""
    return (
        isinstance(conv, torch.nn.Conv2d)
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and _eager_inference(x)
        and _ext.is_channels_last(x)
        and torch.backends.mkldnn.is_available()
    )


def _run_dtype(x: Tensor) -> torch.dtype:
    """The dtype a convolution or GEMM of ``x`` runs in on the CPU (autocast's rule: bfloat16 under CPU
    bfloat16 autocast), for the calls that autocast does not see (oneDNN's fused ops, ``out=``)."""
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype


def _conv_operands(conv: torch.nn.Conv2d, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None, list]:
    """x, weight, bias in the dtype the conv runs in (:func:`_run_dtype`) and the conv's geometry
    arguments."""
    dtype = _run_dtype(x)
    bias = None if conv.bias is None else conv.bias.to(dtype)
    geometry = [list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups]
    return x.to(dtype), conv.weight.to(dtype), bias, geometry


def conv_lrelu(conv: torch.nn.Module, act: torch.nn.LeakyReLU, x: Tensor) -> Tensor:
    """``act(conv(x))``; in CPU inference in channels_last one oneDNN primitive that applies the
    activation before the output leaves the registers (a separate pass over the map otherwise: in
    bfloat16, where the convolution itself is fast, that pass is a large share of its time)."""
    if _fused_conv(conv, x):
        x, weight, bias, geometry = _conv_operands(conv, x)
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, *geometry, "leaky_relu", [act.negative_slope], ""
        )
    return act(conv(x))


def conv_add(conv: torch.nn.Module, x: Tensor, residual: Tensor) -> Tensor:
    """``conv(x) + residual``; fused like :func:`conv_lrelu` when ``residual`` is a channels_last map of
    the output's dtype."""
    if _fused_conv(conv, x) and _ext.is_channels_last(residual):
        x, weight, bias, geometry = _conv_operands(conv, x)
        if residual.dtype == x.dtype:
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x, residual, weight, bias, *geometry, "add", None, None, [], None
            )
    return conv(x).add_(residual)


def _kernel_buffer(features: Tensor, numel: int) -> Tensor | None:
    """One strip's worth of kernels, which every strip of :func:`generated_filter` writes in turn, in the
    dtype the 1x1 conv runs in (:func:`_run_dtype`): a fresh tensor per strip would be mapped and
    page-faulted anew each time (a large share of an inference's time under glibc's defaults)."""
    return torch.empty(numel, dtype=_run_dtype(features)) if _ext.is_channels_last(features) else None


def generated_filter(
    x: Tensor, features: Tensor, to_kernels: Callable[[Tensor], Tensor], dilations: Sequence[int]
) -> list[Tensor]:
    """``[dynamic_filter(x, to_kernels(features), d) for d in dilations]``.

    ``to_kernels`` must act pixel by pixel (ADFNet's 1x1 conv from C to 9C channels). On the CPU in
    the fast formulation the kernels are made tap-major (:func:`_tap_major_kernels`), and in
    inference a large kernel tensor is made one strip of rows at a time (:mod:`dcn.strips`):
    each strip's kernels are generated and applied to ``x`` for those output rows only
    (``dcn::dynamic_filter_rows`` reads the rows around the strip from the whole ``x`` and writes
    the strip's rows of the whole output in place). Every output pixel sees the same inputs and
    kernel values as in one piece, and the full kernel tensor never exists; the strips share one
    kernel buffer (:func:`_kernel_buffer`).
    """
    b, c, h, w = x.shape
    rows = strip_rows(h, 9 * b * c * w * x.element_size())
    strips = rows and x.device.type == "cpu" and _eager_inference(x) and _fused_available()
    if _tap_major(to_kernels, x):
        conv = to_kernels
        buffer = _kernel_buffer(features, b * rows * w * 9 * c) if strips else None
        to_kernels = lambda f: _tap_major_kernels(conv, f, c, buffer)  # noqa: E731
    if not strips:
        kernels = to_kernels(features)
        return [dynamic_filter(x, kernels, d) for d in dilations]
    outs: list[Tensor] = []
    for r0 in range(0, h, rows):
        r1 = min(r0 + rows, h)
        kernels = to_kernels(features[:, :, r0:r1])
        if kernels.dtype != x.dtype:  # autocast: both in the wider dtype, as dynamic_filter does
            dtype = torch.promote_types(x.dtype, kernels.dtype)
            x, kernels = x.to(dtype), kernels.to(dtype)
        if not outs:
            outs = [torch.empty_like(x) for _ in dilations]
        for out, d in zip(outs, dilations, strict=True):
            torch.ops.dcn.dynamic_filter_rows(x, kernels, d, r0, out)  # writes rows [r0, r1) of out
    return outs


def _gate(mean: Tensor) -> Tensor:
    return 2 * torch.sigmoid(mean)


def mfi_fusion(parts: Iterable[Tensor], fusion: torch.nn.Conv2d, residual: Tensor) -> Tensor:
    """``fusion(MFI(cat(parts))) + residual`` without the concatenation or any MFI temporary.

    MFI scales channel c by a_c and pixel (h, w) by g = 1 + rows_h + cols_w. The pixel factor
    commutes with the 1x1 fusion conv and the channel factor folds into its weight, so the result
    is g * (W diag(a) z) + bias + residual: one GEMM per part into the output, one pass to apply g.
    All gates come from the per-row and per-column sums of z (one reduction pass): the mean of
    a_c z over (c, w) is sum_c a_c rowsum_c(h) / (C W), likewise for columns.

    A part's channel gates depend on that part alone, so each part is folded into the output as
    soon as it arrives and can be freed: given a generator, only one part exists at a time (an
    MCB's peak drops from six feature maps to four); only its row and column sums are kept for g.
    """
    weight = fusion.weight.flatten(1)  # (O, C)
    out, start, h, w = None, 0, 0, 0
    row_parts, col_parts, gates = [], [], []
    pixels_first = False
    for p in parts:
        b, _, h, w = p.shape
        # Gate statistics in float at least. ATen sums bfloat16 in float and rounds the sum once; sum(dtype=float)
        # would first copy the whole map to float, a large share of a bf16 inference's time.
        acc = torch.promote_types(p.dtype, torch.float32)
        # channels_last parts are (B, HW, C) matrices as they lie: reduced and multiplied in that form
        # (a reduction over W of the NCHW view of a channels_last map runs strided, 50x slower), the
        # GEMMs give (B, HW, O), a channels_last output, and nothing is reordered.
        pixels_first = _ext.is_channels_last(p)
        if pixels_first:
            p = p.permute(0, 2, 3, 1)  # (B, H, W, C) view, contiguous
            row_parts.append(p.sum(2).to(acc))  # (B, H, C)
            col_parts.append(p.sum(1).to(acc))  # (B, W, C)
            a = _gate(row_parts[-1].transpose(1, 2).sum(2) / (h * w))  # (B, C)
        else:
            row_parts.append(p.sum(3).to(acc))  # (B, C, H)
            col_parts.append(p.sum(2).to(acc))  # (B, C, W)
            a = _gate(row_parts[-1].sum(2) / (h * w))
        gates.append(a)
        channels_here = p.shape[3] if pixels_first else p.shape[1]
        stop = start + channels_here
        lhs = (weight[:, start:stop] * a[:, None, :].to(weight.dtype)).to(p.dtype)  # (B, O, C) scaled by a
        if pixels_first:
            lhs, rhs = p.reshape(b, h * w, channels_here), lhs.transpose(1, 2)
        else:
            rhs = p.reshape(b, channels_here, h * w)
        out = torch.bmm(lhs, rhs) if out is None else out.baddbmm_(lhs, rhs)
        start = stop
        del p, lhs, rhs  # the part may go now
    if out is None:
        raise ValueError("mfi_fusion needs at least one part")
    b = out.shape[0]
    a = torch.cat(gates, 1)
    if pixels_first:
        row_sums = torch.cat(row_parts, 2).transpose(1, 2)  # (B, C, H)
        col_sums = torch.cat(col_parts, 2).transpose(1, 2)  # (B, C, W)
    else:
        row_sums, col_sums = torch.cat(row_parts, 1), torch.cat(col_parts, 1)
    channels = row_sums.shape[1]
    rows = _gate(torch.einsum("bc,bch->bh", a, row_sums) / (channels * w))
    cols = _gate(torch.einsum("bc,bcw->bw", a, col_sums) / (channels * h))
    g = (1 + rows[:, :, None] + cols[:, None, :]).unsqueeze(1)  # (B, 1, H, W)
    out = out.view(b, h, w, -1).permute(0, 3, 1, 2) if pixels_first else out.view(b, -1, h, w)
    bias = None if fusion.bias is None else fusion.bias.view(1, -1, 1, 1).to(out.dtype)
    if torch.is_grad_enabled():  # in place on a view, autograd would copy the whole base in the backward
        out = out * g.to(out.dtype) + residual
        return out if bias is None else out + bias
    out = out.mul_(g.to(out.dtype)).add_(residual)
    return out if bias is None else out.add_(bias)
