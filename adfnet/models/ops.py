"""ADFNet's two parameter-light operations and the switch between their two formulations.

* ``dynamic_filter`` -- per-pixel, per-channel 3x3 filtering (DConv, MDCB branches);
* ``generated_filter`` -- kernels generated pixel-wise (a 1x1 conv) and applied at one or more
  dilations; in inference made one strip of rows at a time;
* ``mfi_fusion`` -- MFI followed by the 1x1 fusion conv and the block's residual.

``"fast"`` (the default) runs the dynamic filter with the fused kernels of the ``dcn._C``
extension (9 shifted multiply-adds read in place; falls back to unfold when the extension is not
built) and MFI folded into the fusion conv; CPU inference runs in channels_last
(:func:`channels_last_inference`). ``"reference"`` is the original formulation: unfold,
product and sum for the filter, MFI as four full-size temporaries then ``cat`` and the 1x1 conv,
and torchvision's ``deform_conv2d`` for the DCN. Both compute the same function (parity tests in
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
    "channels_last_inference",
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
    torch._check(kernels.shape[1] == 9 * x.shape[1], lambda: "kernels must have 9 channels per input channel")
    return torch.empty_like(x, memory_format=torch.contiguous_format)


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
    channel c; taps are ``dilation`` pixels apart:
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


def _eager_inference(x: Tensor) -> bool:
    return get_formulation() == "fast" and x.device.type != "meta" and eager_inference(x)


def channels_last_inference(x: Tensor) -> bool:
    """Whether a network runs in channels_last: CPU inference in the fast formulation with the
    compiled ops, which read and write channels_last in place.

    oneDNN convolutions are faster in channels_last and allocate less: an NCHW one reorders its
    input and output through blocked copies (benchmarks/adfnet_speed.py measures the difference).
    Training stays NCHW (the backward kernels read NCHW).
    """
    return x.device.type == "cpu" and _eager_inference(x) and _fused_available() and dcn.get_backend() == "ext"


def generated_filter(
    x: Tensor, features: Tensor, to_kernels: Callable[[Tensor], Tensor], dilations: Sequence[int]
) -> list[Tensor]:
    """``[dynamic_filter(x, to_kernels(features), d) for d in dilations]``.

    ``to_kernels`` must act pixel by pixel (ADFNet's 1x1 conv from C to 9C channels). In CPU
    inference in the fast formulation, a large kernel tensor (9x the size of the features it filters) is made
    one strip of rows at a time (:mod:`dcn.strips`):
    each strip's kernels are generated and applied to ``x`` for those output rows only
    (``dcn::dynamic_filter_rows`` reads the rows around the strip from the whole ``x``). Every
    output pixel sees the same inputs and kernel values as in one piece, and the full kernel
    tensor never exists.
    """
    b, c, h, w = x.shape
    rows = strip_rows(h, 9 * b * c * w * x.element_size())
    if not (rows and x.device.type == "cpu" and _eager_inference(x) and _fused_available()):
        kernels = to_kernels(features)
        return [dynamic_filter(x, kernels, d) for d in dilations]
    outs: list[Tensor] = []
    for r0 in range(0, h, rows):
        r1 = min(r0 + rows, h)
        kernels = to_kernels(features[:, :, r0:r1])
        if kernels.dtype != x.dtype:  # autocast: both in the wider dtype, as dynamic_filter does
            dtype = torch.promote_types(x.dtype, kernels.dtype)
            x, kernels = x.to(dtype), kernels.to(dtype)
        strips = [torch.ops.dcn.dynamic_filter_rows(x, kernels, d, r0) for d in dilations]
        if not outs:
            outs = [torch.empty_like(x, dtype=s.dtype) for s in strips]
        for out, strip in zip(outs, strips, strict=True):
            out[:, :, r0:r1] = strip
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
        acc = torch.promote_types(p.dtype, torch.float32)  # gate statistics in float at least
        # channels_last parts are (B, HW, C) matrices as they lie: reduced and multiplied in that form
        # (a reduction over W of the NCHW view of a channels_last map runs strided, 50x slower), the
        # GEMMs give (B, HW, O), a channels_last output, and nothing is reordered.
        pixels_first = _ext.is_channels_last(p)
        if pixels_first:
            p = p.permute(0, 2, 3, 1)  # (B, H, W, C) view, contiguous
            row_parts.append(p.sum(2, dtype=acc))  # (B, H, C)
            col_parts.append(p.sum(1, dtype=acc))  # (B, W, C)
            a = _gate(row_parts[-1].transpose(1, 2).sum(2) / (h * w))  # (B, C)
        else:
            row_parts.append(p.sum(3, dtype=acc))  # (B, C, H)
            col_parts.append(p.sum(2, dtype=acc))  # (B, C, W)
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
    out = out.mul_(g.to(out.dtype)).add_(residual)
    if fusion.bias is not None:
        out.add_(fusion.bias.view(1, -1, 1, 1).to(out.dtype))
    return out
