"""The CUDA kernels of the fused dynamic filter (dcn/csrc/cuda/dynamic_filter_cuda.cu), run on the CPU.

No GPU is available to this project, so these kernels are compiled a second time by the host compiler
through the CUDA-runtime shim (dcn/csrc/cuda/gpu_runtime.h) and registered as the ops
``dcn::dynamic_filter_emulated`` (+ ``_backward``), which run every GPU thread one after another. The
tests below hold them to the unfold formulation (the parity oracle), to the CPU fused op, and to float64
in half/bfloat16, in two launch modes: the normal grid, and a grid capped at one block so that every
thread walks the grid-stride loop over many elements.
"""

from __future__ import annotations

import pytest
import torch

import dcn
from adfnet.models.ops import _dynamic_filter_backward_reference, dynamic_filter_reference
from dcn import _ext

if not _ext.has_dynamic_filter_emulation():  # the project ships the extension: not having it is a failure, never a skip
    raise ImportError(
        "the dcn extension is not built or lacks dcn::dynamic_filter_emulated: run `sh make.sh` "
        "(to test the fallbacks alone: --ignore=tests/test_dynamic_filter_emulated.py)"
    )

ops = torch.ops.dcn
THREADS = 256  # kThreads of dynamic_filter_cuda.cu: launches are whole blocks of it
LAUNCH_MODES = {
    "grid": {},
    "capped_grid": {"DCN_CUDA_MAX_BLOCKS": "1"},  # one block: each thread strides over many elements
}


@pytest.fixture(params=list(LAUNCH_MODES))
def mode(request, monkeypatch):
    for key, value in LAUNCH_MODES[request.param].items():
        monkeypatch.setenv(key, value)
    ops.emulated_launches()  # clear the log of earlier tests
    return request.param


def _inputs(b=2, c=3, h=7, w=5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g, dtype=dtype)
    k = torch.randn(b, 9 * c, h, w, generator=g, dtype=dtype)
    grad = torch.randn(b, c, h, w, generator=g, dtype=dtype)
    return x, k, grad


def _blocks(work: int, mode: str) -> int:
    return 1 if mode == "capped_grid" else -(-work // THREADS)


# 7x5 images: at dilation 5 and 8 some taps fall outside for every pixel (at 8, all but the centre).
@pytest.mark.parametrize("dilation", [1, 2, 3, 5, 8])
def test_matches_unfold_reference(dilation, mode):
    x, k, grad = _inputs()
    out = ops.dynamic_filter_emulated(x, k, dilation)
    torch.testing.assert_close(out, dynamic_filter_reference(x, k, dilation), rtol=0, atol=1e-13)
    grad_x, grad_k = ops.dynamic_filter_emulated_backward(grad, x, k, dilation)
    want_x, want_k = _dynamic_filter_backward_reference(grad, x, k, dilation)
    torch.testing.assert_close(grad_x, want_x, rtol=0, atol=1e-13)
    torch.testing.assert_close(grad_k, want_k, rtol=0, atol=1e-13)
    # The kernels really ran, with the grid the launcher chose: forward over the B*C*H*W outputs, then
    # grad_x over the same and grad_kernels over 9 times as many.
    n = x.numel()
    blocks = [_blocks(n, mode), _blocks(n, mode), _blocks(9 * n, mode)]
    assert ops.emulated_launches() == [b * THREADS for b in blocks]
    if mode == "capped_grid":
        assert 9 * n > THREADS  # so each thread of grad_kernels looped over several elements


@pytest.mark.parametrize("dilation", [1, 2, 3, 5, 8])
def test_equals_cpu_fused_op(dilation, mode):
    """Same per-element sums in the same tap order as the CPU kernels (bitwise on x86-64; 1e-12 allows
    a compiler that contracts multiply-adds into FMAs differently in the two files)."""
    x, k, grad = _inputs(2, 4, 9, 6, seed=dilation)
    assert x.numel() > THREADS  # with the capped grid, forward threads loop too
    out = ops.dynamic_filter_emulated(x, k, dilation)
    torch.testing.assert_close(out, ops.dynamic_filter(x, k, dilation), rtol=0, atol=1e-12)
    for got, want in zip(
        ops.dynamic_filter_emulated_backward(grad, x, k, dilation),
        ops.dynamic_filter_backward(grad, x, k, dilation),
        strict=True,
    ):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_autograd_gradcheck_and_gradgradcheck():
    """The emulated pair has the CPU pair's autograd (dcn._ext._register_dynamic_filter)."""
    x, k, _ = _inputs(1, 2, 4, 5)
    for d in (1, 2):

        def f(a, b, d=d):
            return ops.dynamic_filter_emulated(a, b, d)

        leaves = (x.clone().requires_grad_(), k.clone().requires_grad_())
        assert torch.autograd.gradcheck(f, leaves)
        assert torch.autograd.gradgradcheck(f, leaves)


def test_opcheck():
    x, k, grad = _inputs(2, 3, 5, 6)
    for d in (1, 3):
        torch.library.opcheck(ops.dynamic_filter_emulated, (x.requires_grad_(), k.requires_grad_(), d))
        torch.library.opcheck(ops.dynamic_filter_emulated_backward, (grad, x.detach(), k.detach(), d))


# Output and gradients of half/bfloat16 inputs against float64 on the same (rounded) inputs. Each
# element is at most 9 products summed in float (error ~1e-7 of the summands) and rounded once to
# the dtype (relative half-ulp: 2^-11 for float16, 2^-8 = 2^-9 doubled for bfloat16's margin).
LOW_PRECISION_RTOL = {torch.float16: 2**-10, torch.bfloat16: 2**-8}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("dilation", [1, 3])
def test_low_precision_matches_float64(dtype, dilation, mode):
    x, k, grad = (t.to(dtype) for t in _inputs(2, 3, 7, 5))
    exact = [t.double() for t in (x, k, grad)]
    out = ops.dynamic_filter_emulated(x, k, dilation)
    grad_x, grad_k = ops.dynamic_filter_emulated_backward(grad, x, k, dilation)
    assert out.dtype == grad_x.dtype == grad_k.dtype == dtype
    want_out = dynamic_filter_reference(exact[0], exact[1], dilation)
    want_x, want_k = _dynamic_filter_backward_reference(exact[2], exact[0], exact[1], dilation)
    tol = {"rtol": LOW_PRECISION_RTOL[dtype], "atol": 1e-5}
    for name, got, want in [("output", out, want_out), ("grad_x", grad_x, want_x), ("grad_kernels", grad_k, want_k)]:
        torch.testing.assert_close(got.double(), want, **tol, msg=lambda m, name=name: f"{name}: {m}")
    # The baseline CPU kernels accumulate in float in the same order, each product rounded (no fused
    # multiply-add, which the AVX2/AVX-512 kernels use): the same rounded results.
    with dcn.use_cpu_capability("baseline"):
        torch.testing.assert_close(out, ops.dynamic_filter(x, k, dilation), rtol=0, atol=0)
        for got, want in zip((grad_x, grad_k), ops.dynamic_filter_backward(grad, x, k, dilation), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_half_accumulates_in_float():
    """256 * 256 = 65536 overflows float16 (max 65504): two taps of +-65536 cancel only in float."""
    x = torch.full((1, 1, 5, 5), 256.0, dtype=torch.float16)
    k = torch.zeros(1, 9, 5, 5, dtype=torch.float16)
    k[:, 0], k[:, 1], k[:, 4] = 256.0, -256.0, 1.0  # taps up-left, up, centre
    out = ops.dynamic_filter_emulated(x, k, 1)
    inner = out[0, 0, 1:, 1:]  # pixels whose up-left and up taps are inside: 65536 - 65536 + 256
    assert torch.isfinite(out).all()
    assert (inner == 256.0).all()


@pytest.mark.parametrize("shape", [(0, 3, 7, 5), (2, 0, 7, 5), (2, 3, 0, 5), (2, 3, 7, 0)])
def test_empty_tensors_launch_nothing(shape):
    b, c, h, w = shape
    x = torch.zeros(b, c, h, w, dtype=torch.float64)
    k = torch.zeros(b, 9 * c, h, w, dtype=torch.float64)
    ops.emulated_launches()
    out = ops.dynamic_filter_emulated(x, k, 2)
    grad_x, grad_k = ops.dynamic_filter_emulated_backward(x, x, k, 2)
    assert out.shape == grad_x.shape == x.shape and grad_k.shape == k.shape
    assert ops.emulated_launches() == []  # no zero-block launch (invalid on a GPU)


def test_non_contiguous_inputs():
    x, k, grad = _inputs(2, 3, 5, 7)
    xt, kt, gt = (t.transpose(2, 3).contiguous().transpose(2, 3) for t in (x, k, grad))
    assert not xt.is_contiguous()
    with dcn.use_cpu_capability("baseline"):  # the same arithmetic as the emulated kernels (see above)
        want_out = ops.dynamic_filter(x, k, 2)
        want_grads = ops.dynamic_filter_backward(grad, x, k, 2)
    torch.testing.assert_close(ops.dynamic_filter_emulated(xt, kt, 2), want_out, rtol=0, atol=0)
    for got, want in zip(ops.dynamic_filter_emulated_backward(gt, xt, kt, 2), want_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def _bad_calls():
    x, k, grad = _inputs()
    return {
        "kernels shape": ("forward", (x, k[:, :-1], 1)),
        "dilation": ("forward", (x, k, 0)),
        "dtype": ("forward", (x, k.float(), 1)),
        "3-D x": ("forward", (x[0], k[0], 1)),
        "integer x": ("forward", (x.long(), k.long(), 1)),
        "grad shape": ("backward", (grad[:, :-1], x, k, 1)),
        "grad dtype": ("backward", (grad.float(), x, k, 1)),
        "backward dilation": ("backward", (grad, x, k, -1)),
    }


@pytest.mark.parametrize("case", list(_bad_calls()))
def test_bad_arguments_raise_like_the_cpu_op(case):
    which, args = _bad_calls()[case]
    emulated = ops.dynamic_filter_emulated if which == "forward" else ops.dynamic_filter_emulated_backward
    cpu = ops.dynamic_filter if which == "forward" else ops.dynamic_filter_backward
    with pytest.raises(RuntimeError, match="^dynamic_filter: ") as want:
        cpu(*args)
    with pytest.raises(RuntimeError) as got:
        emulated(*args)
    assert str(got.value) == str(want.value)
