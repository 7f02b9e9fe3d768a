"""The compiled DCNv2 op (`dcn._C` through `dcn._ext`) against the pure-PyTorch reference.

The public API, backend selection and mmcv's golden values are tested in test_dcn.py; this file
tests the extension itself: kernels, registration (opcheck, torch.compile), checks and chunking.
"""

from __future__ import annotations

import os

import pytest
import torch
from torchvision.ops import deform_conv2d

from dcn import _ext, reference

if not _ext.is_available():  # the project ships the extension: not having it is a failure, never a skip
    raise ImportError(
        f"the dcn extension is not built ({_ext.load_error()}): run `sh make.sh` or "
        "`pip install --no-build-isolation -e .` (to test the fallbacks alone: --ignore=tests/test_dcn_ext.py)"
    )

op = torch.ops.dcn.modulated_deform_conv
backward_op = torch.ops.dcn.modulated_deform_conv_backward
TOL64 = {"rtol": 1e-10, "atol": 1e-10}


def make_case(
    n: int = 2,
    c: int = 4,
    h: int = 7,
    w: int = 6,
    cout: int = 6,
    kernel: tuple[int, int] = (3, 3),
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
    dg: int = 1,
    offset_scale: float | None = 1.5,
    bias: bool = True,
    dtype: torch.dtype = torch.float64,
    device: str = "cpu",
    seed: int = 0,
) -> tuple[list[torch.Tensor | None], tuple]:
    """Random tensors (input, offset, mask, weight, bias) and the conv parameters.

    offset_scale=None gives zero offsets (every padded border tap sits exactly on -1).
    """
    gen = torch.Generator().manual_seed(seed)
    kh, kw = kernel
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    offset = torch.randn(n, 2 * dg * kh * kw, ho, wo, generator=gen, dtype=torch.float64)
    offset = offset * offset_scale if offset_scale is not None else torch.zeros_like(offset)
    tensors = [
        torch.randn(n, c, h, w, generator=gen, dtype=torch.float64),
        offset,
        torch.rand(n, dg * kh * kw, ho, wo, generator=gen, dtype=torch.float64),
        torch.randn(cout, c // groups, kh, kw, generator=gen, dtype=torch.float64),
        torch.randn(cout, generator=gen, dtype=torch.float64) if bias else None,
    ]
    tensors = [t.to(device=device, dtype=dtype).requires_grad_() if t is not None else None for t in tensors]
    return tensors, (stride, padding, dilation, groups, dg)


def forward_and_grads(fn, tensors, params, seed: int = 1):
    """Output and the gradients of every given tensor for a fixed random output gradient."""
    out = fn(*tensors, *params)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    used = [t for t in tensors if t is not None]
    grads = torch.autograd.grad(out, used, grad_out.to(out), allow_unused=True)
    return out, grads


def assert_matches_reference(tensors, params):
    """Forward and all gradients equal dcn.reference's (float64)."""
    out, grads = forward_and_grads(_ext.modulated_deform_conv, tensors, params)
    ref_out, ref_grads = forward_and_grads(reference.modulated_deform_conv, tensors, params)
    torch.testing.assert_close(out, ref_out, **TOL64)
    for name, got, want in zip(["input", "offset", "mask", "weight", "bias"], grads, ref_grads, strict=False):
        torch.testing.assert_close(got, want, **TOL64, msg=lambda m, name=name: f"grad {name}: {m}")


GRID = {
    "basic": {},
    "stride2": {"stride": (2, 2), "h": 9, "w": 8},
    "dilation2": {"dilation": (2, 2), "padding": (2, 2)},
    "anisotropic": {"kernel": (3, 2), "stride": (2, 1), "padding": (1, 0), "dilation": (2, 1), "h": 9, "w": 7},
    "groups2": {"groups": 2, "c": 4, "cout": 6},
    "dg2": {"dg": 2},
    "dg8": {"dg": 8, "c": 16, "cout": 8, "n": 1},
    "groups2_dg2_no_bias": {"groups": 2, "dg": 2, "bias": False},
    "odd_sizes": {"n": 3, "c": 3, "h": 5, "w": 11, "cout": 5, "dg": 3},
    "kernel1": {"kernel": (1, 1), "padding": (0, 0)},
    "zero_offsets": {"offset_scale": None},
    "far_outside": {"offset_scale": 50.0},
}


@pytest.mark.parametrize("name", list(GRID))
def test_matches_reference(name):
    assert_matches_reference(*make_case(**GRID[name]))


def test_forward_matches_torchvision():
    (x, offset, mask, weight, bias), (stride, padding, dilation, _, _) = make_case(n=3, dg=2, groups=2)
    out = _ext.modulated_deform_conv(x, offset, mask, weight, bias, stride, padding, dilation, 2, 2)
    expected = deform_conv2d(x, offset, weight, bias, stride, padding, dilation, mask)
    torch.testing.assert_close(out, expected, **TOL64)


def test_zero_offsets_follow_dcnv2_not_torchvision():
    """Samples at exactly -1: the offset gradient is 0 there (DCNv2), torchvision's is not."""
    tensors, params = make_case(offset_scale=None, bias=False)
    _, grads = forward_and_grads(_ext.modulated_deform_conv, tensors, params)
    x, offset, mask, weight, _ = tensors
    tv_out = deform_conv2d(x, offset, weight, None, params[0], params[1], params[2], mask)
    grad_out = torch.randn(tv_out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    tv_grads = torch.autograd.grad(tv_out, [x, offset, mask, weight], grad_out)
    for i in (0, 2, 3):  # input, mask, weight agree
        torch.testing.assert_close(grads[i], tv_grads[i], **TOL64)
    # Tap row 0 (dy channel 0) of output row 0 samples y = -1 exactly.
    assert torch.all(grads[1][:, 0, 0] == 0)
    assert torch.all(grads[1][:, 1, :, 0] == 0)  # tap column 0 (dx channel 1) of output column 0: x = -1
    assert not torch.allclose(grads[1], tv_grads[1])


def test_zero_offsets_half_mask_is_half_conv():
    (x, offset, mask, weight, bias), _ = make_case(offset_scale=None)
    out = _ext.modulated_deform_conv(x, offset, torch.full_like(mask, 0.5), weight, bias, (1, 1), (1, 1), (1, 1), 1, 1)
    expected = 0.5 * torch.nn.functional.conv2d(x, weight, padding=1) + bias.view(1, -1, 1, 1)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_offsets_far_outside_give_bias_and_zero_offset_grad():
    tensors, params = make_case(offset_scale=1e4)
    out, grads = forward_and_grads(_ext.modulated_deform_conv, tensors, params)
    bias = tensors[4]
    torch.testing.assert_close(out, bias.view(1, -1, 1, 1).expand_as(out).detach())
    assert torch.all(grads[0] == 0) and torch.all(grads[1] == 0) and torch.all(grads[2] == 0)


def test_batch_zero():
    (x, offset, mask, weight, bias), params = make_case(n=0)
    out = _ext.modulated_deform_conv(x, offset, mask, weight, bias, *params)
    assert out.shape == (0, 6, 7, 6)
    grads = torch.autograd.grad(out.sum(), [x, offset, mask, weight, bias])
    assert [g.shape for g in grads] == [t.shape for t in (x, offset, mask, weight, bias)]
    assert torch.all(grads[3] == 0) and torch.all(grads[4] == 0)


def test_chunking_invariance(monkeypatch):
    """Results do not depend on how the batch is chunked (incl. a smaller last chunk)."""
    tensors, params = make_case(n=5, c=4, h=7, w=6, dg=2)
    per_image_mb = 4 * 9 * 7 * 6 * 8 / 2**20  # column bytes of one float64 image
    results = []
    for budget in ("0", str(2.5 * per_image_mb), "1024"):  # 1, 2 (+1 last) and 5 images per chunk
        monkeypatch.setenv("DCN_COLUMN_BUDGET_MB", budget)
        results.append(forward_and_grads(_ext.modulated_deform_conv, tensors, params))
    for out, grads in results[1:]:
        torch.testing.assert_close(out, results[0][0], rtol=1e-13, atol=1e-13)
        for got, want in zip(grads, results[0][1], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)


def test_cpu_backward_is_deterministic():
    """The CPU kernels partition the work race-free: repeated runs are bitwise identical."""
    tensors, params = make_case(n=3, c=8, h=9, w=9, dg=4, offset_scale=3.0, dtype=torch.float32)
    first = forward_and_grads(_ext.modulated_deform_conv, tensors, params)
    second = forward_and_grads(_ext.modulated_deform_conv, tensors, params)
    assert torch.equal(first[0], second[0])
    assert all(torch.equal(a, b) for a, b in zip(first[1], second[1], strict=True))


def test_bad_budget_is_an_error(monkeypatch):
    monkeypatch.setenv("DCN_COLUMN_BUDGET_MB", "lots")
    tensors, params = make_case(n=1)
    with pytest.raises(RuntimeError, match="DCN_COLUMN_BUDGET_MB"):
        _ext.modulated_deform_conv(*tensors, *params)


def test_float32_agrees_with_float64():
    tensors64, params = make_case(n=2, dg=2)
    tensors32 = [t.detach().float().requires_grad_() for t in tensors64]
    out64, grads64 = forward_and_grads(_ext.modulated_deform_conv, tensors64, params)
    out32, grads32 = forward_and_grads(_ext.modulated_deform_conv, tensors32, params)
    torch.testing.assert_close(out32.double(), out64, rtol=1e-4, atol=1e-4)
    for got, want in zip(grads32, grads64, strict=True):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)


def test_non_contiguous_inputs():
    tensors, params = make_case(n=2)
    x = tensors[0].detach().transpose(2, 3).contiguous().transpose(2, 3).requires_grad_()
    assert not x.is_contiguous()
    assert_matches_reference([x, *tensors[1:]], params)


def test_gradcheck():
    # Random offsets are non-integer, away from the kinks of bilinear sampling.
    tensors, params = make_case(n=2, c=4, h=5, w=4, cout=2, groups=2, dg=2, offset_scale=0.7)
    assert torch.autograd.gradcheck(lambda *t: _ext.modulated_deform_conv(*t, *params), tensors, fast_mode=True)


def _flat_args(tensors, params):
    stride, padding, dilation, groups, dg = params
    return (*tensors, *stride, *padding, *dilation, groups, dg)


@pytest.mark.parametrize("bias", [True, False])
def test_opcheck_forward(bias):
    tensors, params = make_case(n=2, dg=2, bias=bias)
    torch.library.opcheck(op, _flat_args(tensors, params))


def test_opcheck_backward():
    tensors, params = make_case(n=2, dg=2)
    tensors = [t.detach() for t in tensors]
    grad_out = torch.randn(2, 6, 7, 6, dtype=torch.float64)
    torch.library.opcheck(backward_op, (grad_out, *_flat_args(tensors, params)))


def test_torch_compile():
    """Inductor compiles forward and backward around the op (fake kernels + registered autograd)."""
    tensors, params = make_case(n=2, dg=2, dtype=torch.float32)

    def layer(x, offset, mask, weight, bias):
        return torch.relu(_ext.modulated_deform_conv(x, offset, torch.sigmoid(mask), weight, bias, *params))

    compiled = torch.compile(layer, fullgraph=True)
    out, grads = forward_and_grads(compiled, tensors, ())
    ref_out, ref_grads = forward_and_grads(layer, tensors, ())
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_autocast_runs_in_float32():
    tensors, params = make_case(n=1, dtype=torch.float32)
    x = tensors[0].detach().bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _ext.modulated_deform_conv(x, *tensors[1:], *params)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert x.grad.dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"offset": lambda t: t[:, :-2]}, "offset must have shape"),
        ({"mask": lambda t: t[:, :, :-1]}, "mask must have shape"),
        ({"weight": lambda t: t[:, :-1]}, r"weight.size\(1\) \* groups"),
        ({"bias": lambda t: t[:-1]}, "bias must have shape"),
        ({"offset": lambda t: t.float()}, "offset has dtype"),
        ({"input": lambda t: t[0]}, "input must be 4-D"),
    ],
)
def test_bad_arguments_raise(change, message):
    tensors, params = make_case(n=2)
    named = dict(zip(["input", "offset", "mask", "weight", "bias"], [t.detach() for t in tensors], strict=True))
    for key, fn in change.items():
        named[key] = fn(named[key])
    with pytest.raises(RuntimeError, match=message):
        op(*_flat_args(list(named.values()), params))


def test_bad_hyperparameters_raise():
    tensors = [t.detach() for t in make_case(n=1, c=4, dg=1)[0]]
    with pytest.raises(RuntimeError, match="divisible by deformable_groups"):
        op(*tensors, 1, 1, 1, 1, 1, 1, 1, 3)
    with pytest.raises(RuntimeError, match="stride must be positive"):
        op(*tensors, 0, 1, 1, 1, 1, 1, 1, 1)
    with pytest.raises(RuntimeError, match="float32 and float64"):
        op(*[t.half() for t in tensors], 1, 1, 1, 1, 1, 1, 1, 1)


def test_reports_kernels():
    """has_cuda_kernels() is the dispatcher's answer; a FORCE_CUDA=1 build (as in CI) must have them."""
    assert _ext.load_error() is None
    for op in ("dcn::modulated_deform_conv", "dcn::modulated_deform_conv_backward"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CPU")
    cuda_kernels = torch._C._dispatch_has_kernel_for_dispatch_key("dcn::modulated_deform_conv", "CUDA")
    assert _ext.has_cuda_kernels() is cuda_kernels
    if os.environ.get("FORCE_CUDA") == "1":
        assert cuda_kernels, "built with FORCE_CUDA=1 but no CUDA kernel is registered"


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("name", ["basic", "anisotropic", "groups2_dg2_no_bias", "zero_offsets", "far_outside"])
def test_cuda_matches_cpu(name):
    tensors, params = make_case(**GRID[name])
    out, grads = forward_and_grads(_ext.modulated_deform_conv, tensors, params)
    cuda_tensors = [t.detach().cuda().requires_grad_() if t is not None else None for t in tensors]
    cuda_out, cuda_grads = forward_and_grads(_ext.modulated_deform_conv, cuda_tensors, params)
    torch.testing.assert_close(cuda_out.cpu(), out, **TOL64)
    for got, want in zip(cuda_grads, grads, strict=True):
        torch.testing.assert_close(got.cpu(), want, **TOL64)


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_low_precision(dtype):
    tensors, params = make_case(n=2, dg=2, offset_scale=1.0)
    _, grads = forward_and_grads(_ext.modulated_deform_conv, tensors, params)
    low = [t.detach().to("cuda", dtype).requires_grad_() for t in tensors]
    _, low_grads = forward_and_grads(_ext.modulated_deform_conv, low, params)
    tol = {torch.float32: 1e-4, torch.float16: 3e-2, torch.bfloat16: 2e-1}[dtype]
    for got, want in zip(low_grads, grads, strict=True):
        torch.testing.assert_close(got.double().cpu(), want, rtol=tol, atol=tol)


@cuda
def test_cuda_backward_alerts_in_deterministic_mode():
    tensors, params = make_case(n=1, device="cuda")
    out = _ext.modulated_deform_conv(*tensors, *params)
    torch.use_deterministic_algorithms(True)
    try:
        with pytest.raises(RuntimeError, match="deterministic"):
            out.sum().backward()
    finally:
        torch.use_deterministic_algorithms(False)


@cuda
def test_cuda_opcheck():
    tensors, params = make_case(n=2, dg=2, device="cuda")
    torch.library.opcheck(op, _flat_args(tensors, params))
