"""The compiled ops: loads `dcn._C` and registers fake kernels and autograd for its ops (the one home of
their Python registration).

The DCN: `dcn::modulated_deform_conv` (+ `_backward`), with CPU and (when compiled) CUDA kernels, and
`dcn::modulated_deform_conv_emulated` (+ `_backward`), the CUDA kernels compiled for the CPU (the
`cuda_emulated` backend). ADFNet's dynamic filter: `dcn::dynamic_filter` (+ `_backward`; CPU, CUDA) and
`dcn::dynamic_filter_emulated` (+ `_backward`); `adfnet.models.ops` wraps them in its `adfnet::dynamic_filter`
and calls them directly where nothing needs that wrapper (:func:`plain_eager`).
Importing this module never fails; when the extension is not built, `is_available()` is False and
`load_error()` says why.

The CPU kernels are compiled for several instruction sets and run with the best one this CPU has
(:func:`cpu_capability`); ``DCN_CPU_CAPABILITY=baseline|avx2|avx512`` forces a level (read at the
first use; a level this CPU lacks is a ``ValueError``), :func:`use_cpu_capability` another for a
block of code (the tests run every level).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator

import torch

_OP = "dcn::modulated_deform_conv"
_EMULATED_OP = "dcn::modulated_deform_conv_emulated"

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


# Asked once (the dispatcher's answer cannot change, and dynamo cannot trace the query).
_HAS_CUDA_KERNELS = _load_error is None and torch._C._dispatch_has_kernel_for_dispatch_key(_OP, "CUDA")
_HAS_EMULATION = _load_error is None and torch._C._dispatch_has_kernel_for_dispatch_key(_EMULATED_OP, "CPU")


def has_cuda_kernels() -> bool:
    """True when the extension was compiled with its CUDA kernels."""
    return is_available() and _HAS_CUDA_KERNELS


def has_emulation() -> bool:
    """True when the extension holds the CUDA kernels compiled for the CPU (`cuda_emulated`)."""
    return is_available() and _HAS_EMULATION


CPU_CAPABILITY_ENV = "DCN_CPU_CAPABILITY"


def _require() -> None:
    if _load_error is not None:
        raise RuntimeError(f"the dcn extension is not available ({_load_error}); build it with `sh make.sh`")


def cpu_capability() -> str:
    """The instruction set the CPU kernels run with now: ``"baseline"``, ``"avx2"`` or ``"avx512"``."""
    _require()
    return torch.ops.dcn.cpu_capability()


def cpu_capabilities() -> list[str]:
    """The levels this CPU (and build) can run, lowest first."""
    _require()
    return list(torch.ops.dcn.cpu_capabilities())


@contextlib.contextmanager
def use_cpu_capability(level: str) -> Iterator[str]:
    """Run the CPU kernels at ``level`` in the enclosed block (process-wide; ``ValueError`` if this CPU
    lacks it), then go back to the previous level."""
    _require()
    previous = torch.ops.dcn.set_cpu_capability(level)
    try:
        yield level
    finally:
        torch.ops.dcn.set_cpu_capability(previous)


@contextlib.contextmanager
def large_block_cache() -> Iterator[bool]:
    """In the enclosed block, keep the last CPU block of 32 MiB or more that was freed for the next request
    of its size (process-wide; nests), instead of glibc unmapping it and the next one faulting its pages
    in again (csrc/cpu/block_cache.cpp). It holds at most that one block beyond the live memory; a request
    of another size releases it, and so does leaving. Yields False, changing nothing, without the
    extension or when another CPU allocator is installed with a higher priority."""
    entered = is_available() and torch.ops.dcn.block_cache_enter()
    try:
        yield entered
    finally:
        if entered:
            torch.ops.dcn.block_cache_exit()


def large_block_cache_kept_bytes() -> int:
    """Bytes the large-block cache holds for reuse now (0 outside :func:`large_block_cache`)."""
    return torch.ops.dcn.block_cache_kept_bytes() if is_available() else 0


def _arguments(stride, padding, dilation, groups, deformable_groups) -> tuple[int, ...]:
    """The op schema's flat integer arguments."""
    return (*stride, *padding, *dilation, groups, deformable_groups)


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
    _require()
    params = _arguments(stride, padding, dilation, groups, deformable_groups)
    return torch.ops.dcn.modulated_deform_conv(input, offset, mask, weight, bias, *params)


def modulated_deform_conv_emulated(
    input, offset, mask, weight, bias, stride, padding, dilation, groups, deformable_groups
):
    """The CUDA kernels run on the CPU, one GPU thread after another (differentiable; slow).
    Arguments as :func:`modulated_deform_conv`."""
    if not has_emulation():
        raise RuntimeError(f"the emulated CUDA kernels are not available ({_load_error}); build with `sh make.sh`")
    params = _arguments(stride, padding, dilation, groups, deformable_groups)
    return torch.ops.dcn.modulated_deform_conv_emulated(input, offset, mask, weight, bias, *params)


def has_dynamic_filter() -> bool:
    """True when the extension holds the dynamic-filter kernels (`dcn::dynamic_filter`)."""
    return is_available() and torch._C._dispatch_has_kernel("dcn::dynamic_filter")


def has_dynamic_filter_emulation() -> bool:
    """True when the extension holds the dynamic-filter CUDA kernels compiled for the CPU."""
    return is_available() and torch._C._dispatch_has_kernel_for_dispatch_key("dcn::dynamic_filter_emulated", "CPU")


def is_channels_last(t: torch.Tensor) -> bool:
    """True for a dense channels_last tensor that is not also NCHW-contiguous: the layout the CPU
    kernels read in place and answer in."""
    return not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def plain_eager(x: torch.Tensor) -> bool:
    """Whether a call can run a compiled op directly rather than through a ``torch.library.custom_op`` that
    wraps it (``adfnet::dynamic_filter``): eager, on real tensors, with no dispatch mode (flop counters, fake
    tensors) that should see the wrapper as one operation.

    The first call of an op made with ``torch.library.custom_op`` imports ``torch._dynamo`` (the op disables
    it around its kernel), and with it sympy and triton: resident memory that an eager inference never needs
    and that outweighs a small image's activations (docs/SPEED.md). The compiled ops' own registrations
    (below: fake kernels, autograd) import nothing when called.
    """
    return (
        not torch.compiler.is_compiling()  # first: dynamo can evaluate it, not the dispatch-stack query
        and not torch.jit.is_tracing()
        and x.device.type != "meta"
        and not torch._C._len_torch_dispatch_stack()
    )


def _forward_fake(input, offset, mask, weight, bias, *params):
    # The CPU kernels write a channels_last output for a channels_last input when groups = 1.
    channels_last = input.device.type == "cpu" and params[-2] == 1 and is_channels_last(input)
    size = (input.shape[0], weight.shape[0], offset.shape[2], offset.shape[3])
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(size, dtype=input.dtype, device=input.device, memory_format=layout)


def _backward_fake_of(in_layouts: bool):
    """The backward's fake: gradients in their inputs' layouts (``in_layouts``: the CPU kernels) or contiguous."""

    def fake(grad_output, input, offset, mask, weight, bias, *params):
        need_input, need_sampling, need_weight = params[-1]
        layout = torch.preserve_format if in_layouts and input.device.type == "cpu" else torch.contiguous_format
        return (
            torch.empty_like(input, memory_format=layout) if need_input else None,
            torch.empty_like(offset, memory_format=layout) if need_sampling else None,
            torch.empty_like(mask, memory_format=layout) if need_sampling else None,
            torch.empty_like(weight, memory_format=torch.contiguous_format) if need_weight else None,
            weight.new_empty((weight.shape[0],)),
        )

    return fake


def _setup_context(ctx, inputs, output):
    input, offset, mask, weight, bias, *params = inputs
    ctx.save_for_backward(input, offset, mask, weight, bias)
    ctx.params = params


def _backward_of(backward_op):
    """The autograd formula of an op whose gradients `backward_op` computes."""

    def backward(ctx, grad_output):
        input, offset, mask, weight, bias = ctx.saved_tensors
        need = ctx.needs_input_grad
        # Only the gradients autograd asks for: (input, offset and mask, weight); grad_bias is a cheap sum.
        output_mask = [need[0], need[1] or need[2], need[3]]
        grad_input, grad_offset, grad_mask, grad_weight, grad_bias = backward_op(
            grad_output, input, offset, mask, weight, bias, *ctx.params, output_mask
        )
        computed = (grad_input, grad_offset, grad_mask, grad_weight)
        grads = [g if needed else None for g, needed in zip(computed, need[:4], strict=True)]
        grads.append(grad_bias if bias is not None and need[4] else None)
        return (*grads, *(None,) * len(ctx.params))

    return backward


def _register() -> None:
    for op in [_OP, _EMULATED_OP] if has_emulation() else [_OP]:
        backward_name = f"{op}_backward"
        torch.library.register_fake(op)(_forward_fake)
        torch.library.register_fake(backward_name)(_backward_fake_of(op == _OP))
        backward_op = getattr(torch.ops.dcn, backward_name.split("::")[1])
        torch.library.register_autograd(op, _backward_of(backward_op), setup_context=_setup_context)
        # Under autocast the op runs in float32 (inputs may arrive in mixed dtypes), as torchvision's
        # does; dcn.functional runs the CPU kernels in bfloat16 under bfloat16 autocast instead.
        for device in ("cpu", "cuda"):
            torch.library.register_autocast(op, device, torch.float32)


def _register_dynamic_filter(name: str = "dynamic_filter") -> None:
    """Fake kernels (shapes only, for opcheck and compile) and autograd of the compiled ops
    ``dcn::<name>`` and ``dcn::<name>_backward``.

    Both gradients are bilinear in (grad, x, kernels), so the backward op differentiates into the
    two ops again: gradgrad = f(ggx, k) + f(x, ggk) and backward(grad, ggx, ggk) gives the
    gradients of x and kernels (f the filter, ggx/ggk the incoming gradients). The same is
    registered for ``dynamic_filter_emulated`` (the CUDA kernels run on the CPU), so that its
    tests go through autograd, gradgradcheck and opcheck like the CPU op's.
    """
    contiguous = torch.contiguous_format
    forward_op = getattr(torch.ops.dcn, name)
    backward_op = getattr(torch.ops.dcn, f"{name}_backward")

    @torch.library.register_fake(f"dcn::{name}")
    def _(x, kernels, dilation):
        # The CPU kernel writes channels_last for a channels_last x (adfnet.models.ops.channels_last_cpu).
        channels_last = x.device.type == "cpu" and name == "dynamic_filter" and is_channels_last(x)
        return torch.empty_like(x, memory_format=torch.channels_last if channels_last else contiguous)

    @torch.library.register_fake(f"dcn::{name}_backward")
    def _(grad, x, kernels, dilation):
        if x.device.type != "cpu" or name != "dynamic_filter":
            return torch.empty_like(x, memory_format=contiguous), torch.empty_like(kernels, memory_format=contiguous)
        # The CPU kernels: grad_x in x's layout, grad_kernels with the strides of the kernels they read
        # (NCHW work reads whole rows, so kernels whose rows are not contiguous are read from a copy).
        channels_last = is_channels_last(x)
        read = kernels if channels_last or kernels.stride(-1) == 1 else kernels.contiguous()
        layout = torch.channels_last if channels_last else contiguous
        return torch.empty_like(x, memory_format=layout), torch.empty_like(read)

    def setup_forward(ctx, inputs, output):
        x, kernels, ctx.dilation = inputs
        ctx.save_for_backward(x, kernels)

    def backward_forward(ctx, grad):
        x, kernels = ctx.saved_tensors
        return *backward_op(grad, x, kernels, ctx.dilation), None

    def setup_backward(ctx, inputs, output):
        grad, x, kernels, ctx.dilation = inputs
        ctx.save_for_backward(grad, x, kernels)

    def backward_backward(ctx, ggx, ggk):
        grad, x, kernels = ctx.saved_tensors
        d = ctx.dilation
        ggx = torch.zeros_like(x) if ggx is None else ggx
        ggk = torch.zeros_like(kernels) if ggk is None else ggk
        grad_grad = forward_op(ggx, kernels, d) + forward_op(x, ggk, d)
        return grad_grad, *backward_op(grad, ggx, ggk, d), None

    torch.library.register_autograd(f"dcn::{name}", backward_forward, setup_context=setup_forward)
    torch.library.register_autograd(f"dcn::{name}_backward", backward_backward, setup_context=setup_backward)


if _load_error is None:
    try:
        _register()
    except AttributeError as exc:  # torch.library before 2.5 lacks some of these registration functions
        _load_error = f"torch {torch.__version__} is too old for the dcn extension (needs >= 2.5): {exc}"
if has_dynamic_filter():
    _register_dynamic_filter()
if has_dynamic_filter_emulation():
    _register_dynamic_filter("dynamic_filter_emulated")
