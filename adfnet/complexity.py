"""Parameters and multiply-accumulates of ADFNet (the command line: ``adfnet-complexity --model adfnet --size 128``).

The default counts everything that multiplies: convolutions (transposed ones by their true cost),
the DCN main convolutions and the dynamic filtering, through ``torch.utils.flop_counter`` (formulas
for the DCN ops and ``adfnet::dynamic_filter`` are given here: registering the latter beside the op
would make ``import adfnet`` import flop_counter, and with it triton, ~0.3 s).

``--thop_convention`` reproduces the figures of the official code and paper (7.650979 M parameters,
13.909240672 G "FLOPs" for ADFNet on 1x3x128x128), which came from an old thop: per Conv2d,
ConvTranspose2d and Conv1d, output elements x (input channels / groups) x kernel taps (for a
transposed conv this is stride^2 times its real cost) plus 1 per output element for the bias; 1 per
LeakyReLU element; input + output elements per average pool (``mean``); nothing for the DCN main
convolution (also left out of the parameters) nor for the dynamic filtering.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

import dcn
from adfnet.models import build_model
from adfnet.models.ops import use_formulation

aten = torch.ops.aten


@register_flop_formula(torch.ops.adfnet.dynamic_filter)
def _dynamic_filter_flops(x_shape, kernels_shape, *args, out_shape=None, **kwargs) -> int:
    """One multiply-add per kernel entry (flop_counter counts a multiply-add as 2 flops)."""
    return 2 * math.prod(kernels_shape)


def _deform_conv_flops(weight_index: int) -> Callable[..., int]:
    def flops(*args, out_shape, **kwargs) -> int:
        weight = args[weight_index]
        return 2 * math.prod(out_shape) * weight[1] * math.prod(weight[2:])

    return flops


def _dcn_formulas() -> dict:
    """flop_counter formulas of the ops of the available DCN backends."""
    with contextlib.suppress(ImportError):
        import torchvision.ops  # noqa: F401  (registers torchvision::deform_conv2d; dcn imports it lazily)
    formulas = {}
    for namespace, name, weight_index in (("torchvision", "deform_conv2d", 1), ("dcn", "modulated_deform_conv", 3)):
        try:
            op = getattr(getattr(torch.ops, namespace), name)
        except (AttributeError, RuntimeError):
            continue
        formulas[op] = _deform_conv_flops(weight_index)
    return formulas


def _thop_conv(x, w, bias, stride, padding, dilation, transposed, output_padding, groups, *, out_shape, **kw) -> int:
    return math.prod(out_shape) * (x[1] // groups * math.prod(w[2:]) + 1)


def _thop_elementwise(x, *args, out_shape, **kwargs) -> int:
    return math.prod(x)


def _thop_mean(x, *args, out_shape, **kwargs) -> int:
    return math.prod(x) + math.prod(out_shape)


_THOP = {
    aten.convolution: _thop_conv,
    aten.leaky_relu: _thop_elementwise,
    aten.leaky_relu_: _thop_elementwise,
    aten.mean: _thop_mean,
}


def count_parameters(model: nn.Module, thop_convention: bool = False) -> int:
    """All parameters, or (thop convention) all but the DCN main weights and biases."""
    skip = dcn.ModulatedDeformConv if thop_convention else ()
    return sum(p.numel() for m in model.modules() if not isinstance(m, skip) for p in m.parameters(recurse=False))


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: Sequence[int], thop_convention: bool = False) -> dict[str, int]:
    """Multiply-accumulates of one forward pass on an input of ``input_shape``.

    Returns ``{"total": ...}`` plus, in the default mode, the split into ``convolution``, ``dcn``
    (DCN main convolutions), ``dynamic_filter`` and ``other``. A model on the ``meta`` device is
    counted without computing anything (``report`` does that).
    """
    weight = next(model.parameters())
    x = torch.rand(*input_shape, dtype=weight.dtype, device=weight.device)
    mapping = _THOP if thop_convention else _dcn_formulas()
    # The paper's operations: the reference formulation (MFI and its 1x1 fusion conv unfused).
    with use_formulation("reference"):
        counter = FlopCounterMode(display=False, custom_mapping=mapping)
        with counter:
            model(x)
    per_op = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    if thop_convention:
        return {"total": sum(per_op.get(str(op), 0) for op in _THOP)}
    macs = {
        "convolution": per_op.pop("aten.convolution", 0) // 2,
        "dcn": sum(per_op.pop(str(op), 0) for op in _dcn_formulas()) // 2,
        "dynamic_filter": per_op.pop("adfnet.dynamic_filter", 0) // 2,
    }
    macs["other"] = sum(per_op.values()) // 2  # e.g. the matmuls of the pure-PyTorch DCN reference
    macs["total"] = sum(macs.values())
    return macs


def report(name: str, n_colors: int, size: Sequence[int], thop_convention: bool = False, **options: object) -> str:
    """Parameters and MACs of ``build_model(name, n_colors, **options)`` on a 1 x n_colors x H x W input."""
    with torch.device("meta"):
        model = build_model(name, n_colors, **options)
    h, w = (size[0], size[0]) if len(size) == 1 else size
    params = count_parameters(model, thop_convention)
    macs = count_macs(model, (1, n_colors, h, w), thop_convention)
    lines = [f"{name} (n_colors={n_colors}), input 1x{n_colors}x{h}x{w}"]
    if thop_convention:
        lines += [
            f"parameters  {params:,}  (thop convention: DCN main weights left out)",
            f"MACs        {macs['total'] / 1e9:.9f} G  (old-thop convention: DCN main convs and dynamic filtering "
            "left out, conv bias and LeakyReLU counted)",
        ]
    else:
        parts = ", ".join(f"{k} {v / 1e9:.3f} G" for k, v in macs.items() if k != "total" and v)
        lines += [f"parameters  {params:,}", f"MACs        {macs['total'] / 1e9:.9f} G  ({parts})"]
    return "\n".join(lines)
