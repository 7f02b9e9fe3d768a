"""Export ADFNet weights: ONNX for onnxruntime and other runtimes, safetensors for safe sharing.

    adfnet-export --weights W --onnx adfnet.onnx [--dcn auto|deformconv|gridsample] [--check]
    adfnet-export --weights W --safetensors adfnet.safetensors      (or python -m adfnet.export ...)

The ONNX graph has only standard operators (opset 19) and a dynamic batch, height and width (H and W
must be multiples of 8, as for the network itself). The two non-standard pieces of the network map as:

* the DCNv2 layers -> ``DeformConv`` (opset 19), whose offset and mask layout is DCNv2's and whose
  out-of-image rule (bilinear corners outside the image read 0) is the same; or, for runtimes without a
  ``DeformConv`` kernel, an exact decomposition: ``GridSample`` (bilinear, zero padding) at the offset
  sampling points of each tap, times the mask, then a 1x1 ``Conv`` with the layer's weight;
* dynamic filtering (``adfnet::dynamic_filter``: DConv and the MDCB branches) -> ``Pad``, nine shifted
  ``Slice``s, ``Mul`` with the matching kernel channels, ``Add``: the formulation of
  :func:`adfnet.models.blocks.dynamic_filter`, with no im2col operator (ONNX has none).

MFI, SEKG and the rest trace to standard operators by themselves. The export uses PyTorch's
TorchScript-based ONNX exporter, which needs no extra package; the DCN runs on the torchvision backend
while tracing so that one operator (``torchvision::deform_conv2d``) stands for every DCN call.
"""

from __future__ import annotations

import functools
import io
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

import dcn
from adfnet.fileio import write_bytes

OPSET = 19
DCN_MODES = ("auto", "deformconv", "gridsample")
INPUT_NAME, OUTPUT_NAME = "noisy", "denoised"
_INT64_MAX = 2**63 - 1


# --- symbolic functions: how each custom operator is written in ONNX ---------------------------------
def _const(g, value, dtype=torch.int64):
    return g.op("Constant", value_t=torch.tensor(value, dtype=dtype))


def _dim(g, shape, index: int):
    """Dimension ``index`` of a ``Shape`` output as a 1-element int64 tensor (for Concat into shapes)."""
    return g.op("Gather", shape, _const(g, [index]), axis_i=0)


def _static_sizes(value) -> list[int]:
    from torch.onnx import symbolic_helper

    sizes = symbolic_helper._get_tensor_sizes(value)
    if sizes is None or any(s is None for s in sizes):
        raise ValueError("the DCN weight must have a static shape to be exported")
    return list(sizes)


def _deform_conv2d_standard(g, input, weight, offset, mask, bias, sh, sw, ph, pw, dh, dw, groups, dgroups, use_mask):
    """``torchvision::deform_conv2d`` -> one ``DeformConv`` node (same offset layout and border rule)."""
    kh, kw = _static_sizes(weight)[2:]
    inputs = [input, weight, offset, bias] + ([mask] if use_mask else [])
    return g.op(
        "DeformConv", *inputs, dilations_i=[dh, dw], group_i=groups, kernel_shape_i=[kh, kw],
        offset_group_i=dgroups, pads_i=[ph, pw, ph, pw], strides_i=[sh, sw],
    )  # fmt: skip


def _deform_conv2d_gridsample(g, input, weight, offset, mask, bias, sh, sw, ph, pw, dh, dw, groups, dgroups, use_mask):
    """``torchvision::deform_conv2d`` -> GridSample + 1x1 Conv, for runtimes without ``DeformConv``.

    Tap k = (i, j) of output pixel (ho, wo) in deformable group d samples the input at
    y = ho*sh - ph + i*dh + offset[2(dK + k)], x likewise with offset[2(dK + k) + 1]; GridSample with
    align_corners=0 reads pixel y at the normalised coordinate (2y + 1)/H - 1, and its zero padding gives
    the DCNv2 border rule. The samples of the K taps are stacked along the grid's height, multiplied by
    the mask and contracted with the weight by a 1x1 convolution over (channel, tap).
    """
    cout, cin, kh, kw = _static_sizes(weight)
    if groups != 1:
        raise ValueError("the GridSample decomposition supports groups=1 (as every DCN of ADFNet)")
    taps, per_group = kh * kw, cin // dgroups
    f32 = functools.partial(g.op, "Cast", to_i=1)  # TensorProto.FLOAT
    x_shape, o_shape = g.op("Shape", input), g.op("Shape", offset)
    h, w, ho, wo = _dim(g, x_shape, 2), _dim(g, x_shape, 3), _dim(g, o_shape, 2), _dim(g, o_shape, 3)

    def shape(*parts):
        return g.op("Concat", *[_const(g, p) if isinstance(p, list) else p for p in parts], axis_i=0)

    def axis(length, step, pad, tap_shift, view):  # sampling grid of one axis: (1, K, Ho, 1) or (1, K, 1, Wo)
        scalar = g.op("Squeeze", length, _const(g, [0]))
        pos = f32(g.op("Range", _const(g, 0), scalar, _const(g, 1)))
        pos = g.op("Sub", g.op("Mul", pos, _const(g, float(step), torch.float32)), _const(g, float(pad), torch.float32))
        pos = g.op("Reshape", pos, _const(g, view))
        return g.op("Add", pos, _const(g, [[[[v]] for v in tap_shift]], torch.float32))

    rows = axis(ho, sh, ph, [float((k // kw) * dh) for k in range(taps)], [1, 1, -1, 1])
    cols = axis(wo, sw, pw, [float((k % kw) * dw) for k in range(taps)], [1, 1, 1, -1])
    off = g.op("Reshape", offset, shape([-1, taps, 2], ho, wo))
    y = g.op("Add", g.op("Gather", off, _const(g, 0), axis_i=2), rows)  # (N*dg, K, Ho, Wo)
    x = g.op("Add", g.op("Gather", off, _const(g, 1), axis_i=2), cols)

    def normalise(coord, length):
        two, one = _const(g, 2.0, torch.float32), _const(g, 1.0, torch.float32)
        return g.op("Sub", g.op("Div", g.op("Add", g.op("Mul", coord, two), one), f32(length)), one)

    last = _const(g, [-1])
    grid = g.op("Concat", g.op("Unsqueeze", normalise(x, w), last), g.op("Unsqueeze", normalise(y, h), last), axis_i=-1)
    grid = g.op("Reshape", grid, shape([-1], g.op("Mul", ho, _const(g, [taps])), wo, [2]))
    grouped = g.op("Reshape", input, shape([-1, per_group], h, w))
    samples = g.op("GridSample", grouped, grid, mode_s="bilinear", padding_mode_s="zeros", align_corners_i=0)
    samples = g.op("Reshape", samples, shape([-1, per_group, taps], ho, wo))
    if use_mask:
        samples = g.op("Mul", samples, g.op("Reshape", mask, shape([-1, 1, taps], ho, wo)))
    columns = g.op("Reshape", samples, shape([-1, cin * taps], ho, wo))
    kernel = g.op("Reshape", weight, _const(g, [cout, cin * taps, 1, 1]))
    return g.op("Conv", columns, kernel, bias, kernel_shape_i=[1, 1])


def _dynamic_filter(g, x, kernels, dilation):
    """``adfnet::dynamic_filter`` -> Pad + 9 x (Slice, Slice, Mul) + Add: out = sum_t shift_t(x) * k_t."""
    d = dilation
    padded = g.op("Pad", x, _const(g, [0, 0, d, d, 0, 0, d, d]), mode_s="constant")
    out = None
    for i in range(3):
        for j in range(3):
            ends = [-(2 - i) * d if i < 2 else _INT64_MAX, -(2 - j) * d if j < 2 else _INT64_MAX]
            shifted = g.op("Slice", padded, _const(g, [i * d, j * d]), _const(g, ends), _const(g, [2, 3]))
            tap = g.op(
                "Slice", kernels, _const(g, [3 * i + j]), _const(g, [_INT64_MAX]), _const(g, [1]), _const(g, [9])
            )
            term = g.op("Mul", shifted, tap)
            out = term if out is None else g.op("Add", out, term)
    return out


def _register_symbolics(dcn_mode: str) -> None:
    from torch.onnx import register_custom_op_symbolic, symbolic_helper

    parse = symbolic_helper.parse_args
    deform = _deform_conv2d_standard if dcn_mode == "deformconv" else _deform_conv2d_gridsample
    register_custom_op_symbolic(
        "torchvision::deform_conv2d", parse("v", "v", "v", "v", "v", *"iiiiiiii", "b")(deform), OPSET
    )
    register_custom_op_symbolic("adfnet::dynamic_filter", parse("v", "v", "i")(_dynamic_filter), OPSET)


# --- onnxruntime capability -----------------------------------------------------------------------
@functools.cache
def onnxruntime_has_deformconv() -> bool:
    """Whether the installed onnxruntime's CPU provider runs a ``DeformConv`` node (1.32, tested, does)."""
    try:
        import numpy as np
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return False
    names = ["X", "W", "offset", "B", "mask"]
    dims = {"X": [1, 1, 4, 4], "W": [1, 1, 3, 3], "offset": [1, 18, 4, 4], "B": [1], "mask": [1, 9, 4, 4]}
    node = helper.make_node("DeformConv", names, ["Y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node], "probe", [helper.make_tensor_value_info(n, TensorProto.FLOAT, dims[n]) for n in names],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1, 4, 4])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        session.run(None, {n: np.ones(dims[n], np.float32) for n in names})
    except Exception:  # NOT_IMPLEMENTED or an unknown operator
        return False
    del onnx
    return True


def resolve_dcn_mode(mode: str) -> str:
    if mode not in DCN_MODES:
        raise ValueError(f"--dcn must be one of {', '.join(DCN_MODES)}, got {mode!r}")
    if mode == "auto":
        return "deformconv" if onnxruntime_has_deformconv() else "gridsample"
    return mode


# --- exports ------------------------------------------------------------------------------------------
def export_onnx(model: nn.Module, path: str | Path, n_colors: int, dcn_mode: str = "auto", size: int = 64) -> str:
    """Write ``model`` as ONNX (opset 19, dynamic batch/height/width); returns the DCN mode used.

    Traced on a ``size`` x ``size`` input in eval mode; the graph accepts any H, W that are multiples of 8.
    The graph is built in memory and written by :func:`adfnet.fileio.write_bytes` (a full disk is an
    error, never a truncated model).
    """
    # dcn imports torchvision lazily; its import runs ops (torchvision::_cuda_version) that the tracer would
    # otherwise record into the graph when the first DCN call imports it mid-trace
    import torchvision.ops  # noqa: F401

    mode = resolve_dcn_mode(dcn_mode)
    _register_symbolics(mode)
    model = model.eval()
    example = torch.rand(1, n_colors, size, size)
    axes = {0: "batch", 2: "height", 3: "width"}
    graph = io.BytesIO()
    with dcn.use_backend("torchvision"), warnings.catch_warnings(), torch.no_grad():
        # the TorchScript-based exporter is deprecated in favour of torch.export's, which needs onnxscript;
        # tracing warnings concern the H, W % 8 check, which the exported graph documents instead
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            model, (example,), graph, dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
        )  # fmt: skip
    write_bytes(path, _annotate(graph.getvalue(), mode))
    return mode


def _annotate(model: bytes, mode: str) -> bytes:
    import onnx

    proto = onnx.load_model_from_string(model)
    notes = {
        "input": "float32 (N, C, H, W) in [0, 1], RGB or gray; H and W multiples of 8 (pad, then crop)",
        "output": "the denoised image, same shape, not clamped",
        "dcn": mode,
    }
    for key, value in notes.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def export_safetensors(model: nn.Module, path: str | Path, name: str, n_colors: int) -> None:
    """The state_dict as ``.safetensors`` (official key names), with the model name in its metadata."""
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    write_bytes(path, save(state, metadata={"model": name, "n_colors": str(n_colors)}))


def check_onnx(model: nn.Module, path: str | Path, x: torch.Tensor) -> float:
    """Max |onnxruntime - PyTorch| on ``x`` (the PyTorch side with the same DCN maths, any backend)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {INPUT_NAME: x.numpy()})
    with torch.no_grad():
        ref = model.eval()(x)
    return float((torch.from_numpy(got) - ref).abs().max())


if __name__ == "__main__":  # python -m adfnet.export: the command line lives with the others
    from adfnet.cli.export import main

    sys.exit(main())
