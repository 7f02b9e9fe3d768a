"""Tests of the DCNv2 op (``dcn``): every backend against an independent per-pixel loop, against the
others, against mmcv's published values; module layout; backend selection; input validation."""

from __future__ import annotations

import math
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

import dcn
from dcn import _backend, _ext, _torchvision, reference

BACKENDS = dcn.available_backends()
NAMES = ("input", "offset", "mask", "weight", "bias")


@pytest.fixture(autouse=True)
def _quiet_default(monkeypatch):
    """Tests choose backends explicitly; keep the once-per-process "not built" warning out of them."""
    monkeypatch.setattr(_backend, "_default_warned", True)
    monkeypatch.delenv(_backend.ENV_VAR, raising=False)


# ---------------------------------------------------------------------------------------------
# Independent oracle: one bilinear sample at a time, written from the DCNv2 definition.


def _sample(img: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """DCNv2 bilinear sample of ``img`` (H, W) at 0-d tensors ``y``, ``x`` (differentiable)."""
    h, w = img.shape
    if not (-1 < y.item() < h and -1 < x.item() < w):
        return img.new_zeros(())  # outside the open box: no contribution, no offset gradient
    y0, x0 = math.floor(y.item()), math.floor(x.item())
    total = img.new_zeros(())
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:  # corners outside the image read 0
                total = total + wy * wx * img[yy, xx]
    return total


def loop_dcn(input, offset, mask, weight, bias, stride, padding, dilation, groups, deformable_groups):
    n, c, _, _ = input.shape
    cout, _, kh, kw = weight.shape
    ho, wo = offset.shape[2:]
    taps = kh * kw
    w = weight.reshape(groups, cout // groups, -1)
    images = []
    for b in range(n):
        pixels = []
        for oy in range(ho):
            for ox in range(wo):
                column = []
                for ch in range(c):
                    g = ch // (c // deformable_groups)
                    for i in range(kh):
                        for j in range(kw):
                            k = g * taps + i * kw + j
                            y = offset[b, 2 * k, oy, ox] + (oy * stride[0] - padding[0] + i * dilation[0])
                            x = offset[b, 2 * k + 1, oy, ox] + (ox * stride[1] - padding[1] + j * dilation[1])
                            column.append(mask[b, k, oy, ox] * _sample(input[b, ch], y, x))
                column = torch.stack(column).reshape(groups, -1)
                pixels.append((w @ column[:, :, None]).reshape(cout))
        images.append(torch.stack(pixels, 1).reshape(cout, ho, wo))
    out = torch.stack(images) if images else input.new_zeros(0, cout, ho, wo)
    return out if bias is None else out + bias.reshape(1, -1, 1, 1)


# ---------------------------------------------------------------------------------------------
# Cases


def make_case(
    n=2,
    c=4,
    cout=4,
    h=5,
    w=6,
    k=(3, 3),
    stride=(1, 1),
    padding=(1, 1),
    dilation=(1, 1),
    groups=1,
    dg=1,
    offsets="random",
    bias=True,
    dtype=torch.float64,
    seed=0,
):
    g = torch.Generator().manual_seed(seed)
    kh, kw = k
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    off = torch.randn(n, 2 * dg * kh * kw, ho, wo, generator=g, dtype=torch.float64)
    off = {"random": off * 1.5, "zero": off * 0, "integer": (off * 2).round(), "far": off * 20}[offsets]
    tensors = {
        "input": torch.randn(n, c, h, w, generator=g, dtype=torch.float64),
        "offset": off,
        "mask": torch.rand(n, dg * kh * kw, ho, wo, generator=g, dtype=torch.float64),
        "weight": torch.randn(cout, c // groups, kh, kw, generator=g, dtype=torch.float64),
        "bias": torch.randn(cout, generator=g, dtype=torch.float64) if bias else None,
    }
    tensors = {name: None if t is None else t.to(dtype) for name, t in tensors.items()}
    grad_out = torch.randn(n, cout, ho, wo, generator=g, dtype=torch.float64).to(dtype)
    return tensors, (stride, padding, dilation, groups, dg), grad_out


def run(fn, case):
    """Output and the five gradients (zeros where autograd gave none) of ``fn`` on fresh leaves."""
    tensors, params, grad_out = case
    leaves = {name: None if t is None else t.clone().requires_grad_() for name, t in tensors.items()}
    out = fn(*(leaves[name] for name in NAMES), *params)
    out.backward(grad_out)
    grads = [None if t is None else (t.grad if t.grad is not None else torch.zeros_like(t)) for t in leaves.values()]
    return [out.detach(), *grads]


def assert_all_close(got, want, rtol=1e-10, atol=1e-10):
    for name, a, b in zip(("output", *NAMES), got, want, strict=True):
        if b is None:
            assert a is None, name
            continue
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, name=name: f"{name}: {m}")


def via(backend):
    def fn(*args):
        with dcn.use_backend(backend):
            return dcn.modulated_deform_conv(*args)

    return fn


GRID = {
    "base": {},
    "stride2": {"stride": (2, 2), "h": 7, "w": 6},
    "dilation2": {"dilation": (2, 2), "padding": (2, 2)},
    "groups2": {"groups": 2, "cout": 6},
    "dg2": {"dg": 2},
    "dg8": {"c": 8, "dg": 8, "cout": 2, "h": 4, "w": 3},
    "odd_anisotropic": {"h": 5, "w": 7, "k": (3, 2), "stride": (2, 1), "padding": (1, 0), "dilation": (1, 2)},
    "zero_offsets_pad1": {"offsets": "zero"},  # first tap row/column samples at exactly -1
    "integer_offsets": {"offsets": "integer", "padding": (2, 2)},
    "far_offsets": {"offsets": "far"},
    "no_bias_1x1": {"k": (1, 1), "padding": (0, 0), "bias": False},
    "batch0": {"n": 0},
    "batch3": {"n": 3, "c": 2, "cout": 2, "h": 4, "w": 4},
}


@pytest.fixture(scope="module")
def loop_results():
    return {name: run(loop_dcn, make_case(**kw)) for name, kw in GRID.items()}


@pytest.mark.parametrize("case", list(GRID))
@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_matches_loop_reference(backend, case, loop_results):
    got = run(via(backend), make_case(**GRID[case]))
    assert_all_close(got, loop_results[case])
    if case == "batch0":
        assert got[0].shape == (0, 4, 5, 6)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_agree_with_reference(backend, dtype, tol):
    case = make_case(
        n=3, c=8, cout=6, h=11, w=9, stride=(2, 1), dilation=(1, 2), padding=(1, 2), groups=2, dg=2, dtype=dtype, seed=3
    )
    got = run(via(backend), case)
    want = run(via("reference"), case)
    assert got[0].dtype == dtype
    assert_all_close(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs(backend):
    tensors, params, _ = make_case(dg=2, seed=4)
    strided = {
        name: t.transpose(-1, -2).contiguous().transpose(-1, -2) if t.dim() == 4 else t for name, t in tensors.items()
    }
    assert not strided["input"].is_contiguous()
    with dcn.use_backend(backend):
        got = dcn.modulated_deform_conv(*(strided[name] for name in NAMES), *params)
    torch.testing.assert_close(got, reference.modulated_deform_conv(*tensors.values(), *params))


def test_reference_chunking_is_invisible():
    tensors, params, _ = make_case(n=3, dg=2, seed=5)
    whole = reference.modulated_deform_conv(*tensors.values(), *params)
    per_image = reference.modulated_deform_conv(*tensors.values(), *params, max_column_elements=1)
    torch.testing.assert_close(per_image, whole, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend):
    tensors, params, _ = make_case(n=2, c=4, cout=2, h=4, w=5, k=(3, 2), dg=2, groups=2, seed=6)
    # Offsets 0.1..0.9 away from an integer keep every coordinate off bilinear's kinks.
    frac = torch.rand(tensors["offset"].shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    tensors["offset"] = tensors["offset"].round() + 0.1 + 0.8 * frac
    leaves = tuple(tensors[name].clone().requires_grad_() for name in NAMES)
    assert torch.autograd.gradcheck(via(backend), (*leaves, *params), fast_mode=True)


# ---------------------------------------------------------------------------------------------
# mmcv's published golden values (open-mmlab/mmcv, tests/test_ops/test_modulated_deform_conv.py,
# read at commit 08653020139b452cee07fd78fd19554e8b648a99):
# 3x3 input, ModulatedDeformConv2dPack(1, 1, kernel 2, stride 1, padding 1, bias=False), weight 1,
# zero-initialised offset conv, loss = output.sum(). Its offset conv is our conv_offset_mask.

MMCV_INPUT = [[[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]]]
MMCV_OUTPUT = [[[[0.5, 1.5, 2.5, 1.5], [1.0, 3.0, 5.0, 3.0], [1.0, 3.0, 5.0, 3.0], [0.5, 1.5, 2.5, 1.5]]]]
MMCV_INPUT_GRAD = [[[[2.0, 2.0, 2.0], [2.0, 2.0, 2.0], [2.0, 2.0, 2.0]]]]
MMCV_WEIGHT_GRAD = [[[[9.0, 9.0], [9.0, 9.0]]]]
MMCV_OFFSET_WEIGHT_GRAD = [
    [[[-7.0, -4.0], [0.0, 0.0]]],
    [[[-9.0, 7.5], [-6.0, 5.0]]],
    [[[-4.0, -7.0], [0.0, 0.0]]],
    [[[-7.5, -9.0], [-5.0, -6.0]]],
    [[[-7.0, -4.0], [-7.0, -4.0]]],
    [[[-6.0, 5.0], [-9.0, 7.5]]],
    [[[-4.0, -7.0], [-4.0, -7.0]]],
    [[[-5.0, -6.0], [-7.5, -9.0]]],
    [[[10.5, 6.0], [7.0, 4.0]]],
    [[[6.0, 10.5], [4.0, 7.0]]],
    [[[7.0, 4.0], [10.5, 6.0]]],
    [[[4.0, 7.0], [6.0, 10.5]]],
]
MMCV_OFFSET_BIAS_GRAD = [-3.0, -1.5, -3.0, -1.5, -3.0, -1.5, -3.0, -1.5, 4.5, 4.5, 4.5, 4.5]


def _mmcv_layer(dtype):
    layer = dcn.ModulatedDeformConvPack(1, 1, kernel_size=2, stride=1, padding=1, bias=False).to(dtype)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    return layer, torch.tensor(MMCV_INPUT, dtype=dtype, requires_grad=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("backend", BACKENDS)
def test_mmcv_golden_values(backend, dtype):
    layer, x = _mmcv_layer(dtype)
    with dcn.use_backend(backend):
        out = layer(x)
    out.sum().backward()

    def check(got, want):
        torch.testing.assert_close(got, torch.tensor(want, dtype=dtype), rtol=0, atol=1e-5)

    check(out.detach(), MMCV_OUTPUT)
    check(x.grad, MMCV_INPUT_GRAD)
    check(layer.weight.grad, MMCV_WEIGHT_GRAD)
    check(layer.conv_offset_mask.weight.grad, MMCV_OFFSET_WEIGHT_GRAD)
    check(layer.conv_offset_mask.bias.grad, MMCV_OFFSET_BIAS_GRAD)


def test_raw_torchvision_fails_mmcv_bias_gradient():
    """Why the torchvision backend masks the offset gradient (pytorch/vision#6885)."""
    layer, x = _mmcv_layer(torch.float64)
    predicted = layer.conv_offset_mask(x)
    offset, mask = predicted[:, :8], torch.sigmoid(predicted[:, 8:])
    deform_conv2d(x, offset, layer.weight, None, 1, 1, 1, mask).sum().backward()
    got = layer.conv_offset_mask.bias.grad
    assert not torch.allclose(got, torch.tensor(MMCV_OFFSET_BIAS_GRAD, dtype=torch.float64))
    assert got[:8].tolist() == [0.0, 0.0, 0.0, -1.5, -3.0, 0.0, -3.0, -1.5]


# ---------------------------------------------------------------------------------------------
# Modules


@pytest.mark.parametrize(
    "options",
    [{}, {"stride": 2}, {"dilation": 2, "padding": 2}, {"groups": 2, "deformable_groups": 2}, {"bias": False}],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_init_pack_is_half_a_convolution(backend, options):
    options = {"stride": 1, "padding": 1, **options}
    torch.manual_seed(0)
    layer = dcn.ModulatedDeformConvPack(4, 6, 3, **options).double()
    x = torch.randn(2, 4, 7, 8, dtype=torch.float64)
    with dcn.use_backend(backend):
        out = layer(x)
    expected = F.conv2d(
        x,
        0.5 * layer.weight,
        layer.bias,
        options["stride"],
        options["padding"],
        options.get("dilation", 1),
        options.get("groups", 1),
    )
    torch.testing.assert_close(out, expected)


def test_pack_state_dict_names_and_shapes():
    # ADFNet's DCN: C -> C, 3x3, 8 deformable groups, offsets predicted from 32 feature channels.
    layer = dcn.ModulatedDeformConvPack(64, 64, 3, 1, 1, deformable_groups=8, extra_offset_mask=True)
    shapes = {name: tuple(t.shape) for name, t in layer.state_dict().items()}
    assert shapes == {
        "weight": (64, 64, 3, 3),
        "bias": (64,),
        "conv_offset_mask.weight": (216, 32, 3, 3),
        "conv_offset_mask.bias": (216,),
    }
    assert not layer.conv_offset_mask.weight.any() and not layer.conv_offset_mask.bias.any()
    plain = dcn.ModulatedDeformConvPack(6, 4, (3, 2), 1, 1, groups=2, bias=False)
    assert {name: tuple(t.shape) for name, t in plain.state_dict().items()} == {
        "weight": (4, 3, 3, 2),
        "conv_offset_mask.weight": (18, 6, 3, 2),
        "conv_offset_mask.bias": (18,),
    }
    assert list(dcn.ModulatedDeformConv(4, 4, 3, 1, 1).state_dict()) == ["weight", "bias"]


def test_pack_splits_offset_and_mask_like_dcnv2():
    torch.manual_seed(1)
    layer = dcn.ModulatedDeformConvPack(
        4, 4, 3, 1, 1, deformable_groups=2, extra_offset_mask=True, offset_in_channel=5
    ).double()
    torch.nn.init.normal_(layer.conv_offset_mask.weight, std=0.3)
    x, feats = torch.randn(1, 4, 6, 6, dtype=torch.float64), torch.randn(1, 5, 6, 6, dtype=torch.float64)
    predicted = layer.conv_offset_mask(feats)
    o1, o2, m = torch.chunk(predicted, 3, dim=1)  # DCNv2's own split
    expected = reference.modulated_deform_conv(
        x, torch.cat((o1, o2), 1), torch.sigmoid(m), layer.weight, layer.bias, (1, 1), (1, 1), (1, 1), 1, 2
    )
    torch.testing.assert_close(layer([x, feats]), expected)
    torch.testing.assert_close(layer((x, feats)), expected)
    with pytest.raises(ValueError, match="expects"):
        layer(x)
    with pytest.raises(ValueError, match="single tensor"):
        dcn.ModulatedDeformConvPack(4, 4, 3, 1, 1)([x, x])


def test_modulated_deform_conv_module_matches_functional():
    tensors, (stride, padding, dilation, groups, dg), _ = make_case(c=4, cout=6, groups=2, dg=2, seed=8)
    layer = dcn.ModulatedDeformConv(4, 6, 3, stride, padding, dilation, groups, dg).double()
    with torch.no_grad():
        layer.weight.copy_(tensors["weight"])
        layer.bias.copy_(tensors["bias"])
    expected = dcn.modulated_deform_conv(*tensors.values(), stride, padding, dilation, groups, dg)
    torch.testing.assert_close(layer(tensors["input"], tensors["offset"], tensors["mask"]), expected)
    with pytest.raises(ValueError, match="deformable_groups"):
        dcn.ModulatedDeformConv(4, 4, 3, deformable_groups=3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_traces_without_graph_breaks(backend):
    """Backend selection is plain Python that dynamo can follow, so a model compiles as one graph."""
    torch._dynamo.reset()
    layer = dcn.ModulatedDeformConvPack(4, 4, 3, 1, 1, deformable_groups=2).double()
    torch.nn.init.normal_(layer.conv_offset_mask.weight, std=0.3)
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    with dcn.use_backend(backend):
        compiled = torch.compile(layer, backend="eager", fullgraph=True)(x)
        torch.testing.assert_close(compiled, layer(x))


# ---------------------------------------------------------------------------------------------
# Backend selection


@pytest.fixture
def calls(monkeypatch):
    """Names of the backends that ran, in order."""
    seen: list[str] = []

    def spy(name, owner):
        original = owner.modulated_deform_conv

        def wrapper(*args, **kwargs):
            seen.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, "modulated_deform_conv", wrapper)

    spy("torchvision", _torchvision)
    spy("reference", reference)
    if "ext" in BACKENDS:
        spy("ext", _backend._load_ext())
    if "cuda_emulated" in BACKENDS:
        original = _ext.modulated_deform_conv_emulated

        def emulated(*args, **kwargs):
            seen.append("cuda_emulated")
            return original(*args, **kwargs)

        monkeypatch.setattr(_ext, "modulated_deform_conv_emulated", emulated)
    return seen


def _tiny(dtype=torch.float64):
    tensors, params, _ = make_case(n=1, c=2, cout=2, h=3, w=3, dtype=dtype)
    return (*tensors.values(), *params)


def test_env_var_selects_backend(monkeypatch, calls):
    for name in BACKENDS:
        monkeypatch.setenv("DCN_BACKEND", f" {name.upper()} ")
        assert dcn.get_backend() == name
        dcn.modulated_deform_conv(*_tiny())
    assert calls == BACKENDS


def test_context_manager_nests_and_overrides_env(monkeypatch, calls):
    monkeypatch.setenv("DCN_BACKEND", "torchvision")
    with dcn.use_backend("reference") as active:
        assert active == "reference" and dcn.get_backend() == "reference"
        with dcn.use_backend("torchvision"):
            dcn.modulated_deform_conv(*_tiny())
        dcn.modulated_deform_conv(*_tiny())
    assert dcn.get_backend() == "torchvision"
    assert calls == ["torchvision", "reference"]


def test_unknown_backend_is_a_clear_error(monkeypatch):
    with (
        pytest.raises(ValueError, match=r"unknown backend 'cudnn'.*Available backends: .*reference"),
        dcn.use_backend("cudnn"),
    ):
        pass
    monkeypatch.setenv("DCN_BACKEND", "fast")
    with pytest.raises(ValueError, match=r"DCN_BACKEND=fast.*Available backends"):
        dcn.modulated_deform_conv(*_tiny())


def test_missing_ext_default_and_single_warning(monkeypatch, calls):
    monkeypatch.setattr(_backend, "_load_ext", lambda: None)
    monkeypatch.setattr(_backend, "_default_warned", False)
    assert dcn.available_backends() == ["torchvision", "reference"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert dcn.get_backend() == "torchvision"
        dcn.modulated_deform_conv(*_tiny())
        dcn.modulated_deform_conv(*_tiny())
    assert calls == ["torchvision", "torchvision"]
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "sh make.sh" in message and "pip install --no-build-isolation -e ." in message
    with (
        pytest.raises(ValueError, match=r"extension is not available.*make\.sh.*Available backends"),
        dcn.use_backend("ext"),
    ):
        pass
    monkeypatch.setenv("DCN_BACKEND", "ext")
    with pytest.raises(ValueError, match="DCN_BACKEND=ext"):
        dcn.get_backend()


def test_default_prefers_ext_when_built(monkeypatch):
    """ext silently when built; otherwise torchvision (its one warning is tested above)."""
    monkeypatch.setattr(_backend, "_default_warned", "ext" not in BACKENDS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dcn.get_backend() == ("ext" if "ext" in BACKENDS else "torchvision")


@pytest.mark.parametrize("backend", BACKENDS)
def test_bfloat16_on_cpu(backend, calls):
    """ext and cuda_emulated run bfloat16 in their own kernels; torchvision (which lacks it) hands it to reference."""
    args = _tiny(torch.bfloat16)
    with dcn.use_backend(backend):
        out = dcn.modulated_deform_conv(*args)
    assert calls == [backend if backend in ("ext", "cuda_emulated") else "reference"] and out.dtype == torch.bfloat16
    want = reference.modulated_deform_conv(*(a.double() if isinstance(a, torch.Tensor) else a for a in args))
    torch.testing.assert_close(out.double(), want, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float16_on_cpu(backend):
    args = _tiny(torch.float16)
    with dcn.use_backend(backend):
        out = dcn.modulated_deform_conv(*args)
    assert out.dtype == torch.float16
    want = reference.modulated_deform_conv(*(a.double() if isinstance(a, torch.Tensor) else a for a in args))
    torch.testing.assert_close(out.double(), want, rtol=0.01, atol=0.01)


def test_routing_when_the_backend_cannot_run_the_input(monkeypatch):
    """ext CPU kernels are float32/float64/bfloat16; an ext without CUDA kernels skips CUDA inputs; deterministic
    CUDA calls skip the backends whose backward needs atomics, but only when that gradient is needed."""
    fake_ext = types.SimpleNamespace(has_cuda_kernels=lambda: False, has_emulation=lambda: True)
    monkeypatch.setattr(_backend, "_load_ext", lambda: fake_ext)
    monkeypatch.setattr(_backend, "_HAS_TORCHVISION", True)

    def route(backend, device, dtype=torch.float32, **grads):
        tensor = types.SimpleNamespace(device=torch.device(device), dtype=dtype)
        with dcn.use_backend(backend):
            return _backend.resolve(tensor, _backend.Grads(**grads)).name

    assert route("ext", "cpu", torch.float64) == "ext"
    assert route("ext", "cpu", torch.float16) == "torchvision"
    assert route("ext", "cpu", torch.bfloat16) == "ext"
    assert route("torchvision", "cpu", torch.bfloat16) == "reference"
    assert route("ext", "cuda") == "torchvision"
    assert route("torchvision", "cpu") == "torchvision"
    assert route("reference", "cpu") == "reference"
    assert route("cuda_emulated", "cpu", torch.bfloat16) == "cuda_emulated"
    assert route("cuda_emulated", "cuda") == "reference"  # never falls to another fast backend
    monkeypatch.setattr(fake_ext, "has_cuda_kernels", lambda: True)
    assert route("ext", "cuda", torch.bfloat16) == "ext"
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    assert route("ext", "cuda") == "ext"  # inference: no backward, no atomics
    assert route("ext", "cuda", weight=True, sampling=True) == "ext"  # these gradients need no atomics
    assert route("ext", "cuda", input=True) == "reference"
    assert route("torchvision", "cuda") == "torchvision"
    assert route("torchvision", "cuda", weight=True) == "reference"
    assert route("cuda_emulated", "cpu", input=True) == "reference"
    assert route("ext", "cpu", input=True) == "ext"  # the CPU kernels are deterministic
    assert route("torchvision", "cpu", input=True) == "torchvision"


def test_backend_table_lists_every_backend():
    assert set(_backend.TABLE) == {"ext", "torchvision", "reference", "cuda_emulated"}
    assert not _backend.TABLE["cuda_emulated"].default  # for verification only, never chosen by default
    assert dcn.available_backends()[-1] == "cuda_emulated"


def test_import_does_not_import_torchvision():
    """`import dcn, adfnet` leaves torchvision (seconds to import) alone until its backend runs."""
    code = (
        "import sys, dcn, adfnet, torch\n"
        "assert 'torchvision' not in sys.modules, 'imported by import'\n"
        "print(dcn.available_backends())\n"
        "assert 'torchvision' not in sys.modules, 'imported by available_backends'\n"
        "x = torch.zeros(1, 1, 3, 3); o = torch.zeros(1, 18, 3, 3); m = torch.ones(1, 9, 3, 3)\n"
        "w = torch.ones(1, 1, 3, 3)\n"
        "with dcn.use_backend('torchvision'):\n"
        "    dcn.modulated_deform_conv(x, o, m, w, None, 1, 1, 1, 1, 1)\n"
        "assert 'torchvision' in sys.modules\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_autocast(backend):
    """Under CPU bfloat16 autocast the extension runs in bfloat16 (its kernels sample in float32); every
    other backend runs in float32, as torchvision's autocast kernel does."""
    torch.manual_seed(2)
    layer = dcn.ModulatedDeformConvPack(4, 4, 3, 1, 1, deformable_groups=2, extra_offset_mask=True, offset_in_channel=3)
    x, feats = torch.randn(1, 4, 6, 5), torch.randn(1, 3, 6, 5)
    with dcn.use_backend(backend):
        expected = layer([x, feats])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer([x.bfloat16(), feats])  # bf16 input, float32 weight, bf16 predicted offsets
    assert out.dtype == (torch.bfloat16 if backend == "ext" else torch.float32)
    # The zero-initialised predictor gives exact zero offsets and 0.5 masks in any precision.
    torch.testing.assert_close(out.float(), expected, rtol=0.02, atol=0.02)


# ---------------------------------------------------------------------------------------------
# Validation: a ValueError naming the problem before any backend runs


def _bad(change):
    tensors, params, _ = make_case(n=2, c=4, cout=4, dg=2)
    args = {
        **tensors,
        **dict(zip(("stride", "padding", "dilation", "groups", "deformable_groups"), params, strict=True)),
    }
    change(args)
    return args


BAD_INPUTS = {
    "offset channels": (lambda a: a.update(offset=a["offset"][:, :-2]), r"offset has 34 channels, expected 2 \*"),
    "mask channels": (lambda a: a.update(mask=a["mask"][:, :9]), r"mask has 9 channels, expected"),
    "dg not dividing": (lambda a: a.update(deformable_groups=3), r"deformable_groups=3 does not divide the 4"),
    "groups vs weight": (lambda a: a.update(groups=2), r"groups=2 needs 8 input channels, but input has 4"),
    "groups vs out": (
        lambda a: a.update(weight=a["weight"][:3, :2], bias=a["bias"][:3], groups=2),
        r"out channels 3 \(weight\) not divisible by groups=2",
    ),
    "offset spatial": (lambda a: a.update(offset=a["offset"][..., :-1]), r"offset spatial size \(5, 5\) != output"),
    "mask spatial": (lambda a: a.update(mask=a["mask"][:, :, 1:]), r"mask spatial size \(4, 6\) != output"),
    "batch": (lambda a: a.update(mask=a["mask"][:1]), r"mask batch size 1 != input batch size 2"),
    "empty output": (lambda a: a.update(input=a["input"][..., :1, :], padding=0), r"output size -1x4 is not positive"),
    "dtype": (lambda a: a.update(mask=a["mask"].float()), r"dtype mismatch: input is torch.float64, mask is"),
    "device": (lambda a: a.update(weight=a["weight"].to("meta")), r"device mismatch: input is on cpu, weight on meta"),
    "3-D input": (lambda a: a.update(input=a["input"][0]), r"input must be 4-D"),
    "bias length": (lambda a: a.update(bias=a["bias"][:2]), r"bias has 2 elements"),
    "integer input": (lambda a: a.update(input=a["input"].long()), r"input must be floating point"),
    "stride": (lambda a: a.update(stride=0), r"stride must be integers >= 1"),
    "negative padding": (lambda a: a.update(padding=(1, -1)), r"padding must be integers >= 0"),
    "groups zero": (lambda a: a.update(groups=0), r"groups must be a positive integer"),
    "dg zero": (lambda a: a.update(deformable_groups=0), r"deformable_groups must be a positive integer"),
}


@pytest.mark.parametrize("problem", list(BAD_INPUTS))
def test_bad_input_is_a_value_error(problem, calls):
    change, message = BAD_INPUTS[problem]
    args = _bad(change)
    with pytest.raises(ValueError, match=message):
        dcn.modulated_deform_conv(**args)
    assert calls == []  # rejected before reaching a backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_corners_outside_the_image_are_never_read(backend):
    """Samples at y = -0.5 read row 0 only (columns 1-4): an inf at pixel (0, 0) must not leak into the
    output or into grad_input[0, 0] (reading absent corners as 0 * value would make NaN)."""
    h, w = 4, 6
    oy, ox = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    offset = torch.stack([-0.5 - oy, 1.3 + ox % 3 - ox]).unsqueeze(0)  # y = -0.5, x in {1.3, 2.3, 3.3}
    mask = torch.ones(1, 1, h, w, dtype=torch.float64)
    weight = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    clean = torch.rand(1, 1, h, w, dtype=torch.float64)
    poisoned = clean.clone()
    poisoned[0, 0, 0, 0] = math.inf
    with dcn.use_backend(backend):
        expected = dcn.modulated_deform_conv(clean, offset, mask, weight, None, 1, 0, 1, 1, 1)
        x = poisoned.requires_grad_()
        out = dcn.modulated_deform_conv(x, offset, mask, weight, None, 1, 0, 1, 1, 1)
        grad_out = torch.ones_like(out)
        grad_out[0, 0, 2, 2] = math.inf
        out.backward(grad_out)
    torch.testing.assert_close(out, expected)  # finite, and the same as without the inf
    assert x.grad[0, 0, 0, 0] == 0 and x.grad[0, 0, 1:].eq(0).all()  # only row 0, columns 1-4 get gradient
