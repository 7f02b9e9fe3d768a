"""The compiled DCNv2 backend: loads `dcn._C` and registers fake kernels and autograd for its ops.

Importing this module never fails; when the extension is not built, `is_available()` is False and
`load_error()` says why.
"""

from __future__ import annotations

import importlib

import torch

_OP = "dcn::modulated_deform_conv"
_BACKWARD_OP = "dcn::modulated_deform_conv_backward"

_load_error: str | None = None
try:
    # Loading the library registers the dcn:: ops; a missing build reads "No module named 'dcn._C'".
    importlib.import_module("._C", __package__)
except (ImportError, OSError) as exc:  # not built, or built against another torch
    _load_error = f"{type(exc).__name__}: {exc}"


def is_available() -> bool:
    """True when `dcn._C` is loaded and its ops are registered."""
    return _load_error is None


def load_error() -> str | None:
    """Why the extension could not be loaded (None when it is available)."""
    return _load_error


def has_cuda_kernels() -> bool:
    """True when the extension was compiled with its CUDA kernels."""
    return is_available() and torch._C._dispatch_has_kernel_for_dispatch_key(_OP, "CUDA")


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
    """Modulated deformable convolution with the compiled kernels (differentiable)."""
    if _load_error is not None:
        raise RuntimeError(f"the dcn extension is not available ({_load_error}); build it with `sh make.sh`")
    return torch.ops.dcn.modulated_deform_conv(
        input, offset, mask, weight, bias, *stride, *padding, *dilation, groups, deformable_groups
    )


def _forward_fake(input, offset, mask, weight, bias, *params):
    return input.new_empty((input.shape[0], weight.shape[0], offset.shape[2], offset.shape[3]))


def _backward_fake(grad_output, input, offset, mask, weight, bias, *params):
    contiguous = torch.contiguous_format
    return (
        torch.empty_like(input, memory_format=contiguous),
        torch.empty_like(offset, memory_format=contiguous),
        torch.empty_like(mask, memory_format=contiguous),
        torch.empty_like(weight, memory_format=contiguous),
        weight.new_empty((weight.shape[0],)),
    )


def _setup_context(ctx, inputs, output):
    input, offset, mask, weight, bias, *params = inputs
    ctx.save_for_backward(input, offset, mask, weight, bias)
    ctx.params = params


def _backward(ctx, grad_output):
    input, offset, mask, weight, bias = ctx.saved_tensors
    grad_input, grad_offset, grad_mask, grad_weight, grad_bias = torch.ops.dcn.modulated_deform_conv_backward(
        grad_output, input, offset, mask, weight, bias, *ctx.params
    )
    if bias is None:
        grad_bias = None
    return (grad_input, grad_offset, grad_mask, grad_weight, grad_bias) + (None,) * len(ctx.params)


def _register() -> None:
    torch.library.register_fake(_OP)(_forward_fake)
    torch.library.register_fake(_BACKWARD_OP)(_backward_fake)
    torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)
    # Under autocast the op runs in float32 (inputs may arrive in mixed dtypes), as torchvision's does.
    for device in ("cpu", "cuda"):
        torch.library.register_autocast(_OP, device, torch.float32)


if _load_error is None:
    try:
        _register()
    except AttributeError as exc:  # torch.library before 2.5 lacks some of these registration functions
        _load_error = f"torch {torch.__version__} is too old for the dcn extension (needs >= 2.5): {exc}"
