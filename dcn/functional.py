"""``modulated_deform_conv``: argument validation, then dispatch to the selected backend."""

from __future__ import annotations

import torch
from torch.nn.modules.utils import _pair

from . import _backend

IntPair = int | tuple[int, int]


def modulated_deform_conv(
    input: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: IntPair,
    padding: IntPair,
    dilation: IntPair,
    groups: int,
    deformable_groups: int,
) -> torch.Tensor:
    """Modulated deformable convolution (DCNv2), argument order of DCNv2's ``dcn_v2_conv``.

    out[n, o, p] = bias[o] + sum over input channel c and tap k = i*kw + j of
    weight[o, c, i, j] * mask[n, g*K + k, p] * bilinear(input[n, c], y, x), where g is the
    deformable group of c, K = kh*kw, y = py*stride - pad + i*dil + offset[n, 2*(g*K + k), p] and
    x likewise with channel 2*(g*K + k) + 1. A sample counts only if -1 < y < H and -1 < x < W;
    bilinear corners outside the image read 0; the offset gradient is 0 outside that open box
    (the DCNv2/mmcv convention, also applied to the torchvision backend).

    Shapes: input (N, Cin, H, W), offset (N, 2*dg*K, Ho, Wo), mask (N, dg*K, Ho, Wo) already
    passed through a sigmoid, weight (Cout, Cin/groups, kh, kw), bias (Cout,) or None.
    All tensors share one floating dtype and one device; a ``ValueError`` names any mismatch.

    The backend comes from :func:`dcn.use_backend`, ``DCN_BACKEND`` or the default; one that cannot
    run the dtype/device at hand (or, in deterministic mode, the gradients needed) hands the call
    to its fallback: see :func:`dcn._backend.resolve` and the table beside it.

    Under ``torch.autocast`` the op runs in float32 and returns float32, as torchvision's autocast
    kernel does: in half precision the sampling positions (grid + offset) keep only a few
    fractional bits on large maps, and the layer's float32 weight would not match half inputs.
    The exception is bfloat16 autocast on the CPU with the compiled extension, whose bfloat16
    kernels form the sampling positions and bilinear weights in float32 (from the bfloat16 offsets)
    and accumulate in float32: there all tensors are cast to bfloat16 and the result is bfloat16.
    """
    device_type = input.device.type if isinstance(input, torch.Tensor) else "cpu"
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        tensors = autocast_tensors(device_type, (input, offset, mask, weight, bias))
        with torch.autocast(device_type, enabled=False):
            return modulated_deform_conv(*tensors, stride, padding, dilation, groups, deformable_groups)
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    _validate(input, offset, mask, weight, bias, stride, padding, dilation, groups, deformable_groups)
    grad = torch.is_grad_enabled()
    grads = _backend.Grads(
        input=grad and input.requires_grad,
        sampling=grad and (offset.requires_grad or mask.requires_grad),
        weight=grad and (weight.requires_grad or (bias is not None and bias.requires_grad)),
    )
    fn = _backend.resolve(input, grads).function()
    return fn(input, offset, mask, weight, bias, stride, padding, dilation, groups, deformable_groups)


def autocast_tensors(device_type: str, tensors):
    """``tensors`` (input, offset, mask, weight, bias) in the dtype the op runs in under autocast:
    bfloat16 under CPU bfloat16 autocast when the extension runs it, else float32."""
    bf16 = device_type == "cpu" and torch.get_autocast_dtype("cpu") == torch.bfloat16
    ext = bf16 and _backend.backend_for("cpu", torch.bfloat16).name == "ext"
    dtype = torch.bfloat16 if ext else torch.float32
    return [t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in tensors]


def _validate(
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
) -> None:
    """Raise a ``ValueError`` naming the first inconsistency, so no kernel ever sees bad input."""
    _check_tensors(input, offset, mask, weight, bias)
    _check_hyperparameters(stride, padding, dilation, groups, deformable_groups)
    _check_channels(input, offset, mask, weight, bias, groups, deformable_groups)
    _check_spatial(input, offset, mask, weight, stride, padding, dilation)


def _check_tensors(input, offset, mask, weight, bias) -> None:
    """Tensors of the right rank, floating point, one dtype and one device."""
    tensors = {"input": input, "offset": offset, "mask": mask, "weight": weight}
    if bias is not None:
        tensors["bias"] = bias
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"modulated_deform_conv: {name} must be a tensor, got {type(t).__name__}")
        want = 1 if name == "bias" else 4
        if t.dim() != want:
            raise ValueError(f"modulated_deform_conv: {name} must be {want}-D, got shape {tuple(t.shape)}")
    if not input.is_floating_point():
        raise ValueError(f"modulated_deform_conv: input must be floating point, got {input.dtype}")
    for name, t in tensors.items():
        if t.dtype != input.dtype:
            raise ValueError(f"modulated_deform_conv: dtype mismatch: input is {input.dtype}, {name} is {t.dtype}")
        if t.device != input.device:
            raise ValueError(
                f"modulated_deform_conv: device mismatch: input is on {input.device}, {name} on {t.device}"
            )


def _check_hyperparameters(stride, padding, dilation, groups, deformable_groups) -> None:
    for name, value, low in (("stride", stride, 1), ("padding", padding, 0), ("dilation", dilation, 1)):
        if any(not isinstance(v, int) or v < low for v in value):
            raise ValueError(f"modulated_deform_conv: {name} must be integers >= {low}, got {value}")
    for name, value in (("groups", groups), ("deformable_groups", deformable_groups)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"modulated_deform_conv: {name} must be a positive integer, got {value!r}")


def _check_channels(input, offset, mask, weight, bias, groups, deformable_groups) -> None:
    """Channel counts that the groups divide, and offset/mask channels for every tap of every group."""
    cin = input.shape[1]
    cout, cin_per_group, kh, kw = weight.shape
    taps = kh * kw
    if cin == 0:
        raise ValueError("modulated_deform_conv: input has 0 channels; a convolution needs at least one")
    if cout == 0:
        raise ValueError(
            f"modulated_deform_conv: weight has 0 output channels (shape {tuple(weight.shape)}); a convolution "
            "needs at least one"
        )
    if cin_per_group * groups != cin:
        raise ValueError(
            f"modulated_deform_conv: weight has {cin_per_group} input channels per group, "
            f"so groups={groups} needs {cin_per_group * groups} input channels, but input has {cin}"
        )
    if cout % groups:
        raise ValueError(f"modulated_deform_conv: out channels {cout} (weight) not divisible by groups={groups}")
    if cin % deformable_groups:
        raise ValueError(
            f"modulated_deform_conv: deformable_groups={deformable_groups} does not divide the {cin} input channels"
        )
    if bias is not None and bias.shape[0] != cout:
        raise ValueError(f"modulated_deform_conv: bias has {bias.shape[0]} elements, weight has {cout} out channels")
    if offset.shape[1] != 2 * deformable_groups * taps:
        raise ValueError(
            f"modulated_deform_conv: offset has {offset.shape[1]} channels, expected "
            f"2 * deformable_groups * kh * kw = 2 * {deformable_groups} * {kh} * {kw} = {2 * deformable_groups * taps}"
        )
    if mask.shape[1] != deformable_groups * taps:
        raise ValueError(
            f"modulated_deform_conv: mask has {mask.shape[1]} channels, expected "
            f"deformable_groups * kh * kw = {deformable_groups} * {kh} * {kw} = {deformable_groups * taps}"
        )


def _check_spatial(input, offset, mask, weight, stride, padding, dilation) -> None:
    """A positive output size that offset and mask match, batch for batch."""
    n, _, h, w = input.shape
    kh, kw = weight.shape[-2:]
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(
            f"modulated_deform_conv: output size {ho}x{wo} is not positive for input {h}x{w}, kernel {kh}x{kw}, "
            f"stride {stride}, padding {padding}, dilation {dilation}"
        )
    for name, t in (("offset", offset), ("mask", mask)):
        if t.shape[0] != n:
            raise ValueError(f"modulated_deform_conv: {name} batch size {t.shape[0]} != input batch size {n}")
        if tuple(t.shape[-2:]) != (ho, wo):
            raise ValueError(
                f"modulated_deform_conv: {name} spatial size {tuple(t.shape[-2:])} != output size {(ho, wo)}"
            )
