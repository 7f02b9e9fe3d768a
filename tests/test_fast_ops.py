"""Parity of the fast formulation (fused dynamic filter, MFI folded into the fusion conv) with the
reference one (unfold, unfused MFI, torchvision DCN), in float64: values and every gradient."""

import pytest
import torch

from adfnet.models import MCB, MDCB, ADFNet
from adfnet.models.ops import (
    _dynamic_filter_backward_reference,
    _fused_available,
    dynamic_filter,
    dynamic_filter_reference,
    use_formulation,
)

pytestmark = pytest.mark.skipif(not _fused_available(), reason="needs the dcn._C extension (sh make.sh)")


def _inputs(b=2, c=3, h=7, w=5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g, dtype=dtype, requires_grad=True)
    k = torch.randn(b, 9 * c, h, w, generator=g, dtype=dtype, requires_grad=True)
    return x, k


# Dilation 5 on a 7x5 image: some taps are outside the image for every pixel.
@pytest.mark.parametrize("dilation", [1, 2, 3, 5, 8])
def test_fused_dynamic_filter_equals_unfold_values_and_gradients(dilation, cpu_level):
    x, k = _inputs()
    fused = torch.ops.dcn.dynamic_filter(x, k, dilation)
    ref = dynamic_filter_reference(x, k, dilation)
    torch.testing.assert_close(fused, ref, rtol=0, atol=1e-13)
    g = torch.randn_like(ref)
    fused_grads = torch.autograd.grad(fused, (x, k), g)
    ref_grads = torch.autograd.grad(ref, (x, k), g)
    for a, b in zip(fused_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


def test_fused_dynamic_filter_gradcheck_and_gradgradcheck():
    x, k = _inputs(1, 2, 4, 5)
    for d in (1, 2):

        def f(a, b, d=d):
            return torch.ops.dcn.dynamic_filter(a, b, d)

        assert torch.autograd.gradcheck(f, (x, k))
        assert torch.autograd.gradgradcheck(f, (x, k))


def test_fused_ops_opcheck():
    x, k = _inputs(2, 3, 5, 6)
    grad = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    for d in (1, 3):
        torch.library.opcheck(torch.ops.dcn.dynamic_filter, (x, k, d))
        torch.library.opcheck(torch.ops.dcn.dynamic_filter_backward, (grad, x.detach(), k.detach(), d))


def test_formulations_select_kernels():
    """The registered op runs the fused kernels in the fast formulation and unfold in the reference one:
    both agree, and the reference's backward is unfold's (checked against the fused backward)."""
    x, k = _inputs()
    with use_formulation("reference"):
        ref = dynamic_filter(x, k, 3)
        ref_grads = torch.autograd.grad(ref.sum(), (x, k))
    fast = dynamic_filter(x, k, 3)
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-13)
    for a, b in zip(torch.autograd.grad(fast.sum(), (x, k)), ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


def test_fused_bfloat16_accumulates_in_float():
    x, k = _inputs(1, 4, 16, 16)
    out = torch.ops.dcn.dynamic_filter(x.bfloat16(), k.bfloat16(), 1).double()
    ref = dynamic_filter_reference(x.bfloat16().double(), k.bfloat16().double(), 1)
    # Only the final rounding to bfloat16 (relative 2^-8) separates them.
    torch.testing.assert_close(out, ref, rtol=2**-8, atol=1e-6)


def test_fused_rejects_bad_arguments_with_a_message():
    x, k = _inputs()
    with pytest.raises(RuntimeError, match=r"kernels must have shape \(B, 9C, H, W\)"):
        torch.ops.dcn.dynamic_filter(x, k[:, :-1], 1)
    with pytest.raises(RuntimeError, match="dilation must be >= 1"):
        torch.ops.dcn.dynamic_filter(x, k, 0)
    with pytest.raises(RuntimeError, match="must match x"):
        torch.ops.dcn.dynamic_filter(x, k.float(), 1)


@pytest.mark.parametrize("block", [MCB, MDCB])
def test_mfi_fusion_equals_unfused_mfi(block):
    torch.manual_seed(0)
    m = block(16, 8, offset_channels=8, deformable_groups=2).double()
    x = torch.randn(2, 16, 9, 7, dtype=torch.float64, requires_grad=True)
    params = [x, *m.parameters()]
    with use_formulation("reference"):
        ref = m(x)
        ref_grads = torch.autograd.grad(ref.square().sum(), params)
    fast = m(x)
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-12)
    for a, b in zip(torch.autograd.grad(fast.square().sum(), params), ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_adfnet_fast_equals_reference_float64():
    torch.manual_seed(0)
    model = ADFNet(3, (8, 8, 16, 16)).double()
    x = torch.rand(1, 3, 16, 24, dtype=torch.float64)
    params = list(model.parameters())
    with use_formulation("reference"):
        ref = model(x)
        ref_grads = torch.autograd.grad(ref.square().sum(), params)
    fast = model(x)
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-12)
    for a, b in zip(torch.autograd.grad(fast.square().sum(), params), ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("strip_bytes", [1, 3000])  # one row per strip; several rows with halos
def test_inference_strips_equal_one_piece(monkeypatch, strip_bytes):
    """Without gradients, the kernel tensors (generated_filter) and the DCN offset/mask prediction
    are made in strips of rows once they exceed a size; forced tiny here, every strip boundary,
    halo (dilations up to 5 > strip height) and image edge must give the one-piece output."""
    import dcn.modules
    import dcn.strips
    from adfnet.models import ops

    torch.manual_seed(0)
    model = ADFNet(3, (8, 8, 16, 16)).double().eval()
    for module in model.modules():  # non-zero offsets, so the DCN samples off the grid
        if isinstance(module, dcn.ModulatedDeformConvPack):
            torch.nn.init.normal_(module.conv_offset_mask.weight, std=0.1)
    x = torch.rand(1, 3, 24, 16, dtype=torch.float64)
    calls = []
    conv_rows = dcn.modules._conv_rows
    monkeypatch.setattr(dcn.modules, "_conv_rows", lambda *a: calls.append(a[2:]) or conv_rows(*a))
    with torch.no_grad():
        whole = model(x)
        monkeypatch.setattr(dcn.strips, "STRIP_BYTES", strip_bytes)
        strips = model(x)
    assert len(calls) > 7, "the prediction was not made in strips"
    torch.testing.assert_close(strips, whole, rtol=0, atol=1e-12)
    with monkeypatch.context() as m:  # a filter strip covers some rows only: check one directly
        m.setattr(dcn.strips, "STRIP_BYTES", strip_bytes)
        xr, feats = torch.randn(2, 4, 11, 6, dtype=torch.float64), torch.randn(2, 5, 11, 6, dtype=torch.float64)
        to_kernels = torch.nn.Conv2d(5, 36, 1).double()
        with torch.no_grad():
            got = ops.generated_filter(xr, feats, to_kernels, [1, 3, 5])
    want = [dynamic_filter_reference(xr, to_kernels(feats), d) for d in (1, 3, 5)]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


CL = torch.channels_last


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("dilation", [1, 3, 5, 8])
def test_fused_dynamic_filter_reads_channels_last_in_place(dilation, dtype, cpu_level):
    """channels_last x and kernels (the layout of CPU inference) give the unfold result, written
    channels_last; dilation 5 and 8 on a 7x5 image put taps outside the image everywhere."""
    x, k = (t.detach() for t in _inputs(2, 3, 7, 5))
    out = torch.ops.dcn.dynamic_filter(
        x.to(dtype).contiguous(memory_format=CL), k.to(dtype).contiguous(memory_format=CL), dilation
    )
    assert out.is_contiguous(memory_format=CL) and not out.is_contiguous() and out.dtype == dtype
    ref = dynamic_filter_reference(x.to(dtype).double(), k.to(dtype).double(), dilation)
    tol = {torch.float64: {"rtol": 0, "atol": 1e-13}, torch.float32: {"rtol": 1e-5, "atol": 1e-5}}
    torch.testing.assert_close(out.double(), ref, **tol.get(dtype, {"rtol": 2**-8, "atol": 1e-6}))
    fake = torch.library.opcheck(
        torch.ops.dcn.dynamic_filter, (x.contiguous(memory_format=CL), k.contiguous(memory_format=CL), dilation)
    )
    assert all(result == "SUCCESS" for result in fake.values())


TAP_MAJOR_TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}


@pytest.mark.parametrize("dtype", list(TAP_MAJOR_TOL))
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL])
@pytest.mark.parametrize("channels", [3, 20])  # 20: whole channel vectors and a partial one
def test_tap_major_kernels(layout, dtype, channels, cpu_level):
    """Tap-major kernels (B, 9, C, H, W) (a view of a 9C-channel conv output whose rows are reordered
    to t * C + c, as generated_filter makes them on the CPU) give the unfold result and gradients, in
    x's layout, at every instruction-set level; grad_kernels keeps the kernels' strides."""
    x, k = (t.detach() for t in _inputs(2, channels, 7, 5))
    x, k = x.to(dtype).contiguous(memory_format=layout), k.to(dtype)
    tap_major = k.view(2, channels, 9, 7, 5).transpose(1, 2).contiguous()  # [b, t, c] = k[b, 9c + t]
    tap_major = tap_major.view(2, 9 * channels, 7, 5).contiguous(memory_format=layout).view(2, 9, channels, 7, 5)
    grad = torch.randn(x.shape, dtype=torch.float64).to(dtype).contiguous(memory_format=layout)
    exact = [t.double() for t in (x, k, grad)]
    for d in (1, 3):
        out = torch.ops.dcn.dynamic_filter(x, tap_major, d)
        grad_x, grad_k = torch.ops.dcn.dynamic_filter_backward(grad, x, tap_major, d)
        want_x, want_k = _dynamic_filter_backward_reference(exact[2], exact[0], exact[1], d)
        tol = {"rtol": TAP_MAJOR_TOL[dtype], "atol": TAP_MAJOR_TOL[dtype]}
        torch.testing.assert_close(out.double(), dynamic_filter_reference(exact[0], exact[1], d), **tol)
        torch.testing.assert_close(grad_x.double(), want_x, **tol)
        assert out.stride() == grad_x.stride() == x.stride() and grad_k.stride() == tap_major.stride()
        want_k = want_k.view(2, channels, 9, 7, 5).transpose(1, 2)
        torch.testing.assert_close(grad_k.double(), want_k, **tol)
        rows = torch.zeros_like(x)
        torch.ops.dcn.dynamic_filter_rows(x, tap_major[:, :, :, 2:5], d, 2, rows)
        torch.testing.assert_close(rows[:, :, 2:5], out[:, :, 2:5], rtol=0, atol=0)


@pytest.mark.parametrize("layout", [torch.contiguous_format, CL])
def test_dynamic_filter_rows_are_the_rows_of_the_whole_filter(layout):
    """dcn::dynamic_filter_rows (inference strips: kernels of some output rows, x whole) writes those
    rows of the whole filter bit for bit into the output and leaves its other rows alone, strips at
    the edges and of one row included, for dilations larger than a strip; an output of the other
    layout gets the same rows; rows outside x and an output of another shape are refused."""
    x, k = (t.detach().contiguous(memory_format=layout) for t in _inputs(2, 3, 11, 6))
    other = torch.channels_last if layout == torch.contiguous_format else torch.contiguous_format
    for d in (1, 3, 5):
        whole = torch.ops.dcn.dynamic_filter(x, k, d)
        for out_layout in (layout, other):
            for r0, r1 in [(0, 2), (2, 3), (3, 9), (9, 11)]:
                out = torch.full_like(x, float("nan")).contiguous(memory_format=out_layout)
                torch.ops.dcn.dynamic_filter_rows(x, k[:, :, r0:r1].contiguous(memory_format=layout), d, r0, out)
                assert torch.equal(out[:, :, r0:r1], whole[:, :, r0:r1])
                assert out[:, :, :r0].isnan().all() and out[:, :, r1:].isnan().all()
    with pytest.raises(RuntimeError, match="are not inside the 11 rows"):
        torch.ops.dcn.dynamic_filter_rows(x, k[:, :, :3], 1, 9, torch.empty_like(x))
    with pytest.raises(RuntimeError, match="out must match x"):
        torch.ops.dcn.dynamic_filter_rows(x, k[:, :, :3], 1, 0, torch.empty_like(x[:, :, 1:]))


def test_mfi_fusion_on_channels_last_parts():
    """mfi_fusion multiplies channels_last parts as (B, HW, C) matrices: the same result as on NCHW
    parts, returned channels_last."""
    from adfnet.models.ops import mfi_fusion

    torch.manual_seed(0)
    fusion = torch.nn.Conv2d(12, 6, 1).double()
    parts = [torch.randn(2, 3, 5, 7, dtype=torch.float64) for _ in range(4)]
    residual = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        want = mfi_fusion(parts, fusion, residual)
        got = mfi_fusion([p.contiguous(memory_format=CL) for p in parts], fusion, residual.contiguous(memory_format=CL))
    assert got.is_contiguous(memory_format=CL) and not got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_cpu_inference_runs_channels_last_and_equals_nchw(monkeypatch):
    """CPU inference in the fast formulation runs in channels_last (convolutions, DCN in strips, the
    fused filter, MFI all read it in place) and returns NCHW: equal to the NCHW run in float64,
    with the strips forced tiny too. The reference formulation and the torchvision backend stay
    NCHW; training runs channels_last too (test_cpu_training_runs_channels_last_and_equals_nchw)."""
    import dcn
    import dcn.strips
    from adfnet.models import adfnet as adfnet_module
    from adfnet.models import ops

    torch.manual_seed(0)
    model = ADFNet(3, (8, 8, 16, 16)).double().eval()
    for module in model.modules():
        if isinstance(module, dcn.ModulatedDeformConvPack):
            torch.nn.init.normal_(module.conv_offset_mask.weight, std=0.1)
    x = torch.rand(1, 3, 24, 16, dtype=torch.float64)
    layouts = []
    conv_forward = torch.nn.Conv2d._conv_forward
    monkeypatch.setattr(
        torch.nn.Conv2d,
        "_conv_forward",
        lambda self, a, *r: layouts.append(a.is_contiguous()) or conv_forward(self, a, *r),
    )
    with torch.no_grad():
        assert ops.channels_last_cpu(x)
        cl = model(x)
        assert not any(layouts[1:]), "a convolution ran on an NCHW tensor"
        monkeypatch.setattr(dcn.strips, "STRIP_BYTES", 3000)
        cl_strips = model(x)
        monkeypatch.setattr(adfnet_module, "channels_last_cpu", lambda x: False)
        nchw = model(x)
        with use_formulation("reference"):
            assert not ops.channels_last_cpu(x)
        with dcn.use_backend("torchvision"):
            assert not ops.channels_last_cpu(x)
    assert cl.is_contiguous() and cl_strips.is_contiguous()
    torch.testing.assert_close(cl, nchw, rtol=0, atol=1e-12)
    torch.testing.assert_close(cl_strips, nchw, rtol=0, atol=1e-12)


def test_bf16_inference_strips_equal_one_piece(monkeypatch):
    """Under CPU bfloat16 autocast the strips of generated kernels share one buffer in the dtype autocast
    gives the 1x1 conv (bfloat16): strips forced tiny give the one-piece bfloat16 output up to its rounding,
    and the kernels that reach the filter are bfloat16."""
    import dcn.strips
    from adfnet.models import ops

    torch.manual_seed(0)
    model = ADFNet(3, (8, 8, 16, 16)).eval()
    x = torch.rand(1, 3, 24, 16)
    kernel_dtypes = []
    tap_major_kernels = ops._tap_major_kernels

    def recorded(*args):
        kernels = tap_major_kernels(*args)
        kernel_dtypes.append(kernels.dtype)
        return kernels

    monkeypatch.setattr(ops, "_tap_major_kernels", recorded)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        whole = model(x)
        monkeypatch.setattr(dcn.strips, "STRIP_BYTES", 1000)
        strips = model(x)
    assert set(kernel_dtypes) == {torch.bfloat16}
    torch.testing.assert_close(strips.float(), whole.float(), rtol=0, atol=2e-2)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpu_training_runs_channels_last_and_equals_nchw(monkeypatch, dtype, cpu_level):
    """Training on the CPU runs in channels_last too: every convolution, the DCN (forward and
    backward), the tap-major dynamic filter and MFI take channels_last tensors in place, and the
    output and all parameter gradients equal the NCHW run's, at every instruction-set level."""
    import dcn
    from adfnet.models import adfnet as adfnet_module
    from adfnet.models import ops

    torch.manual_seed(0)
    model = ADFNet(3, (8, 8, 16, 16)).to(dtype)
    for module in model.modules():
        if isinstance(module, dcn.ModulatedDeformConvPack):
            torch.nn.init.normal_(module.conv_offset_mask.weight, std=0.1)
    x = torch.rand(2, 3, 16, 24, dtype=dtype)
    params = list(model.parameters())
    layouts = []
    conv_forward = torch.nn.Conv2d._conv_forward
    with monkeypatch.context() as m:
        m.setattr(
            torch.nn.Conv2d,
            "_conv_forward",
            lambda self, a, *r: layouts.append(a.is_contiguous()) or conv_forward(self, a, *r),
        )
        assert torch.is_grad_enabled() and ops.channels_last_cpu(x)
        cl = model(x)
        cl_grads = torch.autograd.grad(cl.square().sum(), params)
    assert not any(layouts[1:]), "a convolution ran on an NCHW tensor"
    monkeypatch.setattr(adfnet_module, "channels_last_cpu", lambda x: False)
    nchw = model(x)
    nchw_grads = torch.autograd.grad(nchw.square().sum(), params)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(cl, nchw, rtol=tol, atol=tol)
    for a, b in zip(cl_grads, nchw_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * max(1.0, b.abs().max().item()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_conv_activation_and_residual(dtype):
    """conv_lrelu and conv_add (one oneDNN primitive in CPU inference in channels_last) give the plain
    conv + LeakyReLU / + residual, in channels_last, under bfloat16 autocast too; with gradients
    they are the plain modules."""
    from adfnet.models.ops import conv_add, conv_lrelu

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2).to(dtype)
    act = torch.nn.LeakyReLU(0.2)
    x = torch.randn(2, 8, 9, 7).to(dtype).contiguous(memory_format=CL)
    residual = torch.randn(2, 8, 9, 7).to(dtype).contiguous(memory_format=CL)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    with torch.no_grad():
        for got, want in [
            (conv_lrelu(conv, act, x), torch.nn.functional.leaky_relu(conv(x), 0.2)),
            (conv_add(conv, x, residual), conv(x) + residual),
        ]:
            assert got.dtype == dtype and got.is_contiguous(memory_format=CL) and not got.is_contiguous()
            torch.testing.assert_close(got, want, **tol)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = conv_lrelu(conv.float(), act, x.float())
        assert mixed.dtype == torch.bfloat16
        want = torch.nn.functional.leaky_relu(conv.float()(x.float()), 0.2)
        torch.testing.assert_close(mixed.float(), want, rtol=2e-2, atol=2e-2)
    out = conv_lrelu(conv.float(), act, x.float().requires_grad_())
    assert out.grad_fn is not None and "LeakyRelu" in type(out.grad_fn).__name__


def test_unknown_formulation_is_refused():
    with pytest.raises(ValueError, match="unknown formulation"), use_formulation("fastest"):
        pass


def test_bf16_denoise_stays_close_to_fp32():
    """precision="bf16" (autocast, fused filter in bfloat16 with float accumulation) against float32 on
    golden weights; benchmarks/bf16_psnr.py measures the bundled McMaster set (lowest 53.8 dB)."""
    import sys
    from pathlib import Path

    from adfnet.inference import denoise
    from adfnet.models import build_model

    sys.path.insert(0, str(Path(__file__).parent / "golden"))
    from weights import golden_state_dict

    model = build_model("adfnet", 3).eval()
    model.load_state_dict(golden_state_dict(model.state_dict(), 0))
    noisy = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        fp32 = denoise(model, noisy)
        bf16 = denoise(model, noisy, precision="bf16")
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    psnr = -10 * torch.log10((fp32 - bf16).square().mean()).item()
    assert 45 < psnr < 100  # close, but really computed in bfloat16 (not identical)
    with pytest.raises(ValueError, match="precision must be one of"):
        denoise(model, noisy, precision="fp8")
