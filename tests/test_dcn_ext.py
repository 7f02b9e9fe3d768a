"""The compiled DCNv2 op (`dcn._C` through `dcn._ext`) against the pure-PyTorch reference.

The public API, backend selection and mmcv's golden values are tested in test_dcn.py; this file
tests the extension itself: kernels, registration (opcheck, torch.compile), checks and chunking.
Every kernel test runs on the CPU kernels (`ext`) at every instruction-set level this CPU supports
(baseline, AVX2, AVX-512: dcn.use_cpu_capability) and on the CUDA kernels compiled for the CPU
(`cuda_emulated`), the latter also with the 64-bit index path forced and with a capped grid. float64
runs the kernels' scalar code; the float32 and bfloat16 tests run their vector code.
"""

from __future__ import annotations

import ast
import contextlib
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.ops import deform_conv2d

from conftest import subprocess_env
from dcn import _ext, reference

if not _ext.has_emulation():  # the project ships the extension: not having it is a failure, never a skip
    raise ImportError(
        f"the dcn extension is not built ({_ext.load_error() or 'no emulated CUDA kernels'}): run `sh make.sh` or "
        "`pip install --no-build-isolation -e .` (to test the fallbacks alone: --ignore=tests/test_dcn_ext.py)"
    )

op = torch.ops.dcn.modulated_deform_conv
backward_op = torch.ops.dcn.modulated_deform_conv_backward
TOL64 = {"rtol": 1e-10, "atol": 1e-10}
ALL_GRADS = [True, True, True]

# The implementations under test, and the launch modes of the emulated CUDA kernels.
IMPLS = {"ext": _ext.modulated_deform_conv, "cuda_emulated": _ext.modulated_deform_conv_emulated}
CUDA_MODES = {
    "index32": {},
    "index64": {"DCN_CUDA_INDEX64": "1"},  # the 64-bit path, normally taken above 2^31 elements only
    "capped_grid": {"DCN_CUDA_MAX_BLOCKS": "1"},  # one block: every thread strides over many items
}
LEVELS = _ext.cpu_capabilities()
VARIANTS = [*(f"ext-{level}" for level in LEVELS), *(f"cuda_emulated-{mode}" for mode in CUDA_MODES)]


@pytest.fixture(params=VARIANTS)
def impl(request, monkeypatch):
    """An implementation of the op: the CPU kernels at one instruction-set level, or the emulated CUDA
    kernels in one launch mode."""
    name, _, mode = request.param.partition("-")
    for key, value in CUDA_MODES.get(mode, {}).items():
        monkeypatch.setenv(key, value)
    with _ext.use_cpu_capability(mode) if name == "ext" else contextlib.nullcontext():
        yield IMPLS[name]


@pytest.fixture(params=LEVELS)
def level(request):
    """The CPU kernels at each instruction-set level this CPU supports."""
    with _ext.use_cpu_capability(request.param):
        yield request.param


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


def forward_and_grads(fn, tensors, params, seed: int = 1, grad_dtype: torch.dtype | None = None):
    """Output and the gradients of every given tensor for a fixed random output gradient (rounded to
    ``grad_dtype`` first when given)."""
    out = fn(*tensors, *params)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    used = [t for t in tensors if t is not None]
    grads = torch.autograd.grad(out, used, grad_out.to(grad_dtype or out.dtype).to(out), allow_unused=True)
    return out, grads


def assert_matches_reference(tensors, params, fn=_ext.modulated_deform_conv):
    """Forward and all gradients of ``fn`` equal dcn.reference's (float64)."""
    out, grads = forward_and_grads(fn, tensors, params)
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
    "channel_blocks": {"c": 5, "cout": 3},  # the CUDA kernels split 5 channels into blocks of 2, 2, 1
    # ADFNet's shape: 72 samples per pixel (one chunk of whole deformable groups: the unrolled gather), 4 channels each
    "adfnet_groups": {"dg": 8, "c": 32, "cout": 4, "n": 1, "h": 5, "w": 6},
    # 144 samples of 4 channels: chunks of 80 that split a group's taps (the gather counts taps along)
    "split_groups": {"dg": 16, "c": 64, "cout": 4, "n": 1, "h": 5, "w": 6},
    # 20 channels per group: whole channel vectors and a partial one (16 + 4, or 8 + 8 + 4)
    "wide_groups": {"dg": 2, "c": 40, "cout": 3, "n": 1, "h": 5, "w": 4},
    # deformable groups across the convolution groups' boundary (channels 0-2 | 3-5 vs 0-1 | 2-3 | 4-5)
    "groups_across": {"groups": 2, "dg": 3, "c": 6, "cout": 4},
}


@pytest.mark.parametrize("name", list(GRID))
def test_matches_reference(name, impl):
    assert_matches_reference(*make_case(**GRID[name]), fn=impl)


@pytest.mark.parametrize("name", list(GRID))
def test_float32_matches_reference(name, level):
    """The vector code (planner, channel vectors, float32 sums) against float64 on the same rounded
    inputs: the CPU kernels at every instruction-set level."""
    assert_low_precision_matches_float64(_ext.modulated_deform_conv, torch.float32, **GRID[name])


def test_forward_matches_torchvision(impl):
    (x, offset, mask, weight, bias), (stride, padding, dilation, _, _) = make_case(n=3, dg=2, groups=2)
    out = impl(x, offset, mask, weight, bias, stride, padding, dilation, 2, 2)
    expected = deform_conv2d(x, offset, weight, bias, stride, padding, dilation, mask)
    torch.testing.assert_close(out, expected, **TOL64)


def test_zero_offsets_follow_dcnv2_not_torchvision(impl):
    """Samples at exactly -1: the offset gradient is 0 there (DCNv2), torchvision's is not."""
    tensors, params = make_case(offset_scale=None, bias=False)
    _, grads = forward_and_grads(impl, tensors, params)
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


def test_zero_offsets_half_mask_is_half_conv(impl):
    (x, offset, mask, weight, bias), _ = make_case(offset_scale=None)
    out = impl(x, offset, torch.full_like(mask, 0.5), weight, bias, (1, 1), (1, 1), (1, 1), 1, 1)
    expected = 0.5 * torch.nn.functional.conv2d(x, weight, padding=1) + bias.view(1, -1, 1, 1)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_offsets_far_outside_give_bias_and_zero_offset_grad(impl):
    tensors, params = make_case(offset_scale=1e4)
    out, grads = forward_and_grads(impl, tensors, params)
    bias = tensors[4]
    torch.testing.assert_close(out, bias.view(1, -1, 1, 1).expand_as(out).detach())
    assert torch.all(grads[0] == 0) and torch.all(grads[1] == 0) and torch.all(grads[2] == 0)


def test_batch_zero(impl):
    (x, offset, mask, weight, bias), params = make_case(n=0)
    out = impl(x, offset, mask, weight, bias, *params)
    assert out.shape == (0, 6, 7, 6)
    grads = torch.autograd.grad(out.sum(), [x, offset, mask, weight, bias])
    assert [g.shape for g in grads] == [t.shape for t in (x, offset, mask, weight, bias)]
    assert torch.all(grads[3] == 0) and torch.all(grads[4] == 0)


def test_row_blocks_with_stride_and_groups(monkeypatch, impl):
    """Blocks of one output row shift the padding by row * stride: same results with stride 2 and groups."""
    tensors, params = make_case(n=2, c=4, h=9, w=6, cout=4, stride=(2, 1), groups=2, dg=2)
    results = []
    for budget in ("0", "1024"):
        monkeypatch.setenv("DCN_COLUMN_BUDGET_MB", budget)
        results.append(forward_and_grads(impl, tensors, params))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-13, atol=1e-13)
    for got, want in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)


def test_chunking_invariance(monkeypatch, impl):
    """Results do not depend on how the batch is chunked or an image split into blocks of output rows
    (incl. a smaller last chunk and a smaller last block)."""
    tensors, params = make_case(n=5, c=4, h=7, w=6, dg=2)
    per_image_mb = 4 * 9 * 7 * 6 * 8 / 2**20  # column bytes of one float64 image (7 output rows)
    results = []
    # blocks of 1 row, of 3 rows (+1 last), whole images 2 (+1 last) and 5 per chunk
    for budget in ("0", str(3.5 / 7 * per_image_mb), str(2.5 * per_image_mb), "1024"):
        monkeypatch.setenv("DCN_COLUMN_BUDGET_MB", budget)
        results.append(forward_and_grads(impl, tensors, params))
    for out, grads in results[1:]:
        torch.testing.assert_close(out, results[0][0], rtol=1e-13, atol=1e-13)
        for got, want in zip(grads, results[0][1], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("case", ["plain", "stride_dilation_groups", "channels_last_one_image"])
def test_rows_entry_point_equals_the_rows_of_the_whole_output(case):
    """dcn::modulated_deform_conv_rows (inference strips) writes the rows of the whole output (up to
    the GEMM's summation order) into those rows of the output it is given and leaves the others alone,
    for every strip of a partition incl. first, last and one-row strips, in place (one channels_last
    image) or through a copy (the other layouts); it checks that the strip lies inside the output and
    that the output has the right shape."""
    kwargs = {
        "plain": {},
        "stride_dilation_groups": {"stride": (2, 1), "dilation": (2, 1), "groups": 2, "dg": 2},
        "channels_last_one_image": {"n": 1},
    }
    n = kwargs[case].pop("n", 2)
    tensors, (stride, padding, dilation, groups, dg) = make_case(n=n, c=4, h=13, w=6, cout=4, **kwargs[case])
    x, offset, mask, weight, bias = (t.detach() for t in tensors)
    layout = torch.channels_last if case == "channels_last_one_image" else torch.contiguous_format
    x, offset, mask = (t.contiguous(memory_format=layout) for t in (x, offset, mask))
    whole = op(x, offset, mask, weight, bias, *stride, *padding, *dilation, groups, dg)
    bounds = [0, 1, 3, 4, whole.shape[2]]
    for start, stop in itertools.pairwise(bounds):
        out = torch.full_like(whole, float("nan"))
        torch.ops.dcn.modulated_deform_conv_rows(
            x, offset[:, :, start:stop], mask[:, :, start:stop], weight, bias,
            *stride, *padding, *dilation, groups, dg, start, out,
        )  # fmt: skip
        torch.testing.assert_close(out[:, :, start:stop], whole[:, :, start:stop], rtol=1e-13, atol=1e-13)
        assert out[:, :, :start].isnan().all() and out[:, :, stop:].isnan().all()
    rows = (x, offset[:, :, 2:], mask[:, :, 2:], weight, bias, *stride, *padding, *dilation, groups, dg)
    with pytest.raises(ValueError, match="are not inside the"):
        torch.ops.dcn.modulated_deform_conv_rows(*rows, 3, torch.empty_like(whole))
    with pytest.raises(ValueError, match="first_row must be non-negative"):
        torch.ops.dcn.modulated_deform_conv_rows(*rows, -1, torch.empty_like(whole))
    with pytest.raises(ValueError, match="out must be the whole output"):
        torch.ops.dcn.modulated_deform_conv_rows(*rows, 0, torch.empty_like(whole[:, 1:]))


CL_CASES = {"plain": {}, "strided": {"stride": (2, 1), "dilation": (2, 1), "dg": 2}, "groups": {"groups": 2, "dg": 2}}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", list(CL_CASES))
def test_channels_last_forward_reads_in_place(monkeypatch, case, dtype, level):
    """A channels_last input with offset and mask as channel slices of one channels_last prediction
    (as CPU inference passes them) gives the NCHW result, written channels_last (groups = 1),
    whole and in row blocks, and through the rows entry point."""
    tensors, (stride, padding, dilation, groups, dg) = make_case(n=2, c=4, h=9, w=6, cout=4, **CL_CASES[case])
    x, offset, mask, weight, bias = (t.detach().to(dtype) for t in tensors)
    params = (*stride, *padding, *dilation, groups, dg)
    want = op(x, offset, mask, weight, bias, *params)
    prediction = torch.cat([offset, mask], 1).contiguous(memory_format=torch.channels_last)
    cl_offset, cl_mask = prediction[:, : offset.shape[1]], prediction[:, offset.shape[1] :]
    x_cl = x.contiguous(memory_format=torch.channels_last)
    tol = 1e-13 if dtype == torch.float64 else 1e-5
    for budget in ("1024", "0"):  # whole images; one output row per block
        monkeypatch.setenv("DCN_COLUMN_BUDGET_MB", budget)
        got = op(x_cl, cl_offset, cl_mask, weight, bias, *params)
        assert got.is_contiguous(memory_format=torch.channels_last) == (groups == 1)
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)
        rows = torch.zeros_like(got)
        torch.ops.dcn.modulated_deform_conv_rows(
            x_cl, cl_offset[:, :, 1:3], cl_mask[:, :, 1:3], weight, bias, *params, 1, rows
        )
        torch.testing.assert_close(rows[:, :, 1:3], want[:, :, 1:3], rtol=tol, atol=tol)
    fake = torch.library.opcheck(op, (x_cl, cl_offset, cl_mask, weight, bias, *params), test_utils=("test_faketensor",))
    assert fake["test_faketensor"] == "SUCCESS"


# float32 channels_last layers with output channels a multiple of 8: on AVX2 and AVX-512 the forward
# samples a few pixels at a time and multiplies their columns in registers (the fused forward).
FUSED_CASES = {
    "adfnet": {"c": 32, "cout": 32, "dg": 8, "h": 7, "w": 11},  # 77 pixels: partial register blocks
    "border": {"c": 32, "cout": 32, "dg": 8, "h": 3, "w": 4, "offset_scale": 3.0},  # most samples cross the edge
    "all_outside": {"c": 32, "cout": 32, "dg": 8, "offset_scale": 50.0},
    "wide_out_no_bias": {"c": 16, "cout": 48, "dg": 2, "bias": False},  # 8 channels per group; outputs 32 + 16
    "general_gather": {"c": 12, "cout": 8, "dg": 4},  # 3 channels per group
    "stride2": {"c": 16, "cout": 16, "dg": 4, "stride": (2, 2), "h": 9, "w": 8},
    "many_tiles": {"c": 8, "cout": 16, "dg": 2, "h": 40, "w": 61, "n": 1},  # tiles of 455 pixels over the threads
}


@pytest.mark.parametrize("case", list(FUSED_CASES))
def test_fused_channels_last_forward(case, level):
    """The channels_last float32 forward at every level against float64 on the rounded inputs."""
    tensors, params = make_case(**({"n": 2} | FUSED_CASES[case]))
    rounded = [t.detach().float() if t is not None else None for t in tensors]
    want = reference.modulated_deform_conv(*[t.double() if t is not None else None for t in rounded], *params)
    x, *rest = rounded
    with torch.inference_mode():
        got = _ext.modulated_deform_conv(x.contiguous(memory_format=torch.channels_last), *rest, *params)
    assert got.is_contiguous(memory_format=torch.channels_last)
    tol = LOW_PRECISION_TOL[torch.float32] * want.abs().max().item()
    torch.testing.assert_close(got.double(), want, rtol=0, atol=tol)
    # the strips entry point (CPU inference), which writes the rows of one image's output in place
    x1, offset, mask = (t[:1].contiguous(memory_format=torch.channels_last) for t in rounded[:3])
    rows = torch.full_like(got[:1], float("nan"))
    start, stop = 1, min(3, got.shape[2])
    flat = (*params[0], *params[1], *params[2], params[3], params[4])
    with torch.inference_mode():
        torch.ops.dcn.modulated_deform_conv_rows(
            x1, offset[:, :, start:stop], mask[:, :, start:stop], *rounded[3:], *flat, start, rows
        )
    torch.testing.assert_close(rows[:, :, start:stop].double(), want[:1, :, start:stop], rtol=0, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", list(CL_CASES))
def test_channels_last_backward_reads_and_writes_in_place(monkeypatch, case, dtype, level):
    """Training in channels_last: the backward takes channels_last input, offset, mask and output
    gradient as they are and returns every gradient in its input's layout, equal to the NCHW ones,
    whole and in row blocks."""
    tensors, (stride, padding, dilation, groups, dg) = make_case(n=2, c=4, h=9, w=6, cout=4, **CL_CASES[case])
    x, offset, mask, weight, bias = (t.detach().to(dtype) for t in tensors)
    params = (*stride, *padding, *dilation, groups, dg)
    grad_out = torch.randn(op(x, offset, mask, weight, bias, *params).shape, dtype=dtype)
    want = backward_op(grad_out, x, offset, mask, weight, bias, *params, ALL_GRADS)
    cl = [t.contiguous(memory_format=torch.channels_last) for t in (grad_out, x, offset, mask)]
    tol = 1e-13 if dtype == torch.float64 else 1e-5
    for budget in ("1024", "0"):
        monkeypatch.setenv("DCN_COLUMN_BUDGET_MB", budget)
        got = backward_op(*cl, weight, bias, *params, ALL_GRADS)
        for name, g, w, like in zip(("input", "offset", "mask"), got, want, cl[1:], strict=False):
            assert g.stride() == like.stride(), name  # the input's layout, channels_last
            torch.testing.assert_close(g, w, rtol=tol, atol=tol, msg=lambda m, name=name: f"{name}: {m}")
        for g, w in zip(got[3:], want[3:], strict=True):
            torch.testing.assert_close(g, w, rtol=tol, atol=tol)
    fake = torch.library.opcheck(backward_op, (*cl, weight, bias, *params, ALL_GRADS), test_utils=("test_faketensor",))
    assert fake["test_faketensor"] == "SUCCESS"


def test_cpu_backward_is_deterministic():
    """The CPU kernels partition the work race-free: repeated runs are bitwise identical."""
    tensors, params = make_case(n=3, c=8, h=9, w=9, dg=4, offset_scale=3.0, dtype=torch.float32)
    first = forward_and_grads(_ext.modulated_deform_conv, tensors, params)
    second = forward_and_grads(_ext.modulated_deform_conv, tensors, params)
    assert torch.equal(first[0], second[0])
    assert all(torch.equal(a, b) for a, b in zip(first[1], second[1], strict=True))


def test_kernels_are_built_to_run_on_all_intra_op_threads():
    """at::parallel_for is inlined into the extension: without -fopenmp at build time it compiles to
    a plain serial loop (every CPU kernel then used one thread, silently). With it, the library
    calls into the OpenMP runtime, as torch itself does when it was built with OpenMP."""
    import dcn._C

    library = Path(dcn._C.__file__).read_bytes()
    uses_openmp = b"GOMP_parallel" in library or b"__kmpc_fork_call" in library
    assert uses_openmp == (torch.backends.openmp.is_available() and sys.platform.startswith("linux"))


def _capability_in_fresh_process(value: str) -> subprocess.CompletedProcess:
    """dcn.cpu_capability() in a new interpreter with DCN_CPU_CAPABILITY=value (it is read at the first use)."""
    code = "import dcn\ntry:\n    print(dcn.cpu_capability())\nexcept ValueError as e:\n    print('ValueError:', e)"
    env = subprocess_env(DCN_CPU_CAPABILITY=value)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_cpu_capability_is_the_best_supported_unless_forced():
    """Without DCN_CPU_CAPABILITY the kernels run at the best level this CPU supports; the variable forces
    any supported level; use_cpu_capability switches and restores it in one process."""
    assert _ext.cpu_capability() == LEVELS[-1] and LEVELS[0] == "baseline"
    for level in LEVELS:
        assert _capability_in_fresh_process(level).stdout.strip() == level
        with _ext.use_cpu_capability(level):
            assert _ext.cpu_capability() == level
    assert _ext.cpu_capability() == LEVELS[-1]


def test_unknown_cpu_capability_is_a_clear_error():
    result = _capability_in_fresh_process("sse9")
    assert result.returncode == 0, result.stderr
    assert "ValueError: DCN_CPU_CAPABILITY=sse9: unknown CPU capability 'sse9'" in result.stdout
    with pytest.raises(ValueError, match="unknown CPU capability 'avx'"), _ext.use_cpu_capability("avx"):
        pass


@pytest.mark.parametrize("level", [lv for lv in ("avx2", "avx512") if lv not in LEVELS])
def test_capability_above_this_cpu_is_refused(level):
    """A level this CPU lacks is an error, never a silent fallback (runs only on such CPUs)."""
    assert f"this CPU does not support {level}" in _capability_in_fresh_process(level).stdout
    with pytest.raises(ValueError, match=f"does not support {level}"), _ext.use_cpu_capability(level):
        pass


def test_bad_budget_is_an_error(monkeypatch):
    monkeypatch.setenv("DCN_COLUMN_BUDGET_MB", "lots")
    tensors, params = make_case(n=1)
    with pytest.raises(ValueError, match="DCN_COLUMN_BUDGET_MB"):
        _ext.modulated_deform_conv(*tensors, *params)


def test_float32_agrees_with_float64(impl):
    tensors64, params = make_case(n=2, dg=2)
    tensors32 = [t.detach().float().requires_grad_() for t in tensors64]
    out64, grads64 = forward_and_grads(impl, tensors64, params)
    out32, grads32 = forward_and_grads(impl, tensors32, params)
    torch.testing.assert_close(out32.double(), out64, rtol=1e-4, atol=1e-4)
    for got, want in zip(grads32, grads64, strict=True):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)


def test_non_contiguous_inputs():
    tensors, params = make_case(n=2)
    x = tensors[0].detach().transpose(2, 3).contiguous().transpose(2, 3).requires_grad_()
    assert not x.is_contiguous()
    assert_matches_reference([x, *tensors[1:]], params)


@pytest.mark.parametrize("name", list(IMPLS))
def test_gradcheck(name):
    # Random offsets are non-integer, away from the kinks of bilinear sampling.
    tensors, params = make_case(n=2, c=4, h=5, w=4, cout=2, groups=2, dg=2, offset_scale=0.7)
    assert torch.autograd.gradcheck(lambda *t: IMPLS[name](*t, *params), tensors, fast_mode=True)


def _flat_args(tensors, params):
    stride, padding, dilation, groups, dg = params
    return (*tensors, *stride, *padding, *dilation, groups, dg)


emulated = torch.ops.dcn
OPS = {
    "ext": (op, backward_op),
    "cuda_emulated": (emulated.modulated_deform_conv_emulated, emulated.modulated_deform_conv_emulated_backward),
}


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("bias", [True, False])
def test_opcheck_forward(name, bias):
    tensors, params = make_case(n=2, dg=2, bias=bias)
    torch.library.opcheck(OPS[name][0], _flat_args(tensors, params))


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("output_mask", [ALL_GRADS, [False, True, False], [True, False, True]])
def test_opcheck_backward(name, output_mask):
    tensors, params = make_case(n=2, dg=2)
    tensors = [t.detach() for t in tensors]
    grad_out = torch.randn(2, 6, 7, 6, dtype=torch.float64)
    torch.library.opcheck(OPS[name][1], (grad_out, *_flat_args(tensors, params), output_mask))


@pytest.mark.parametrize("case", list(GRID))
@pytest.mark.parametrize("name", list(OPS))
def test_opcheck_parity_grid(name, case):
    """opcheck (schema, fake kernel, autograd registration, dispatch) on every case of the parity grid,
    forward and backward: the registration must hold for every shape the kernels are tested on."""
    tensors, params = make_case(**GRID[case])
    torch.library.opcheck(OPS[name][0], _flat_args(tensors, params))
    tensors = [None if t is None else t.detach() for t in tensors]  # the backward op has no autograd itself
    out = OPS[name][0](*_flat_args(tensors, params))
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=out.dtype)
    torch.library.opcheck(OPS[name][1], (grad_out, *_flat_args(tensors, params), ALL_GRADS))


@pytest.mark.parametrize("name", list(OPS))
def test_backward_computes_only_the_requested_gradients(name):
    """output_mask leaves the other gradients undefined; the requested ones equal the full backward's."""
    tensors, params = make_case(n=2, dg=2)
    args = (torch.randn(2, 6, 7, 6, dtype=torch.float64), *_flat_args([t.detach() for t in tensors], params))
    full = OPS[name][1](*args, ALL_GRADS)
    for output_mask in ([True, False, False], [False, True, False], [False, False, True]):
        part = OPS[name][1](*args, output_mask)
        wanted = [output_mask[0], output_mask[1], output_mask[1], output_mask[2], True]
        for got, want, needed in zip(part, full, wanted, strict=True):
            if needed:
                torch.testing.assert_close(got, want, rtol=0, atol=0)
            else:
                assert got is None


def test_autograd_asks_only_for_needed_gradients():
    """Through autograd, the emulated launches show what the backward ran: im2col (weight gradient),
    col2im (input gradient), col2im_coord (offset and mask gradients)."""
    tensors, params = make_case(n=1)
    x, offset, mask, weight, bias = (t.detach() for t in tensors)
    torch.ops.dcn.emulated_launches()  # clear the log

    def backward_launches(*requires):
        leaves = [t.clone().requires_grad_(r) for t, r in zip((x, offset, mask, weight, bias), requires, strict=True)]
        out = _ext.modulated_deform_conv_emulated(*leaves, *params)
        torch.ops.dcn.emulated_launches()
        out.sum().backward()
        return len(torch.ops.dcn.emulated_launches())

    assert backward_launches(False, False, False, True, True) == 1  # im2col only
    assert backward_launches(True, False, False, False, False) == 1  # col2im only
    assert backward_launches(False, True, False, False, False) == 1  # col2im_coord only
    assert backward_launches(True, True, True, True, True) == 3


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
@pytest.mark.parametrize("name", list(OPS))
def test_bad_arguments_raise(change, message, name):
    """The C++ checks raise ValueError, like dcn.functional's."""
    tensors, params = make_case(n=2)
    named = dict(zip(["input", "offset", "mask", "weight", "bias"], [t.detach() for t in tensors], strict=True))
    for key, fn in change.items():
        named[key] = fn(named[key])
    with pytest.raises(ValueError, match=message):
        OPS[name][0](*_flat_args(list(named.values()), params))


@pytest.mark.parametrize("name", list(OPS))
def test_bad_hyperparameters_raise(name):
    forward = OPS[name][0]
    tensors = [t.detach() for t in make_case(n=1, c=4, dg=1)[0]]
    with pytest.raises(ValueError, match="divisible by deformable_groups"):
        forward(*tensors, 1, 1, 1, 1, 1, 1, 1, 3)
    with pytest.raises(ValueError, match="stride must be positive"):
        forward(*tensors, 0, 1, 1, 1, 1, 1, 1, 1)


def test_cpu_kernels_reject_half():
    tensors = [t.detach().half() for t in make_case(n=1, c=4, dg=1)[0]]
    with pytest.raises(NotImplementedError, match="float32, float64 and bfloat16"):
        op(*tensors, 1, 1, 1, 1, 1, 1, 1, 1)


@pytest.mark.parametrize("case", ["basic", "adfnet_groups", "wide_groups"])
def test_cpu_bfloat16(case, level):
    """The CPU kernels in bfloat16 (sampling and sums in float32, bfloat16 GEMMs, the input gradient
    summed in float32) at every instruction-set level."""
    assert_low_precision_matches_float64(_ext.modulated_deform_conv, torch.bfloat16, **GRID[case])


@pytest.mark.parametrize("name", list(OPS))
def test_zero_channels_is_a_value_error(name):
    """0 input channels used to divide by zero in the CPU backward (SIGFPE): now rejected up front."""
    forward, backward = OPS[name]
    x = torch.zeros(1, 0, 4, 4, dtype=torch.float64)
    offset, mask = torch.zeros(1, 18, 4, 4, dtype=torch.float64), torch.ones(1, 9, 4, 4, dtype=torch.float64)
    weight = torch.zeros(2, 0, 3, 3, dtype=torch.float64)
    args = (x, offset, mask, weight, None, 1, 1, 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="0 channels"):
        forward(*args)
    with pytest.raises(ValueError, match="0 channels"):
        backward(torch.zeros(1, 2, 4, 4, dtype=torch.float64), *args, ALL_GRADS)


@pytest.mark.parametrize("name", list(OPS))
def test_input_smaller_than_kernel_is_a_value_error(name):
    """H=1, kernel 2, stride 2: C++ division truncated (1 - 2) / 2 to 0 and gave one output row."""
    x = torch.zeros(1, 1, 1, 4, dtype=torch.float64)
    offset, mask = torch.zeros(1, 8, 1, 2, dtype=torch.float64), torch.ones(1, 4, 1, 2, dtype=torch.float64)
    weight = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="smaller than the kernel extent"):
        OPS[name][0](x, offset, mask, weight, None, 2, 2, 0, 0, 1, 1, 1, 1)
    with pytest.raises(RuntimeError):  # conv2d agrees that there is no output
        torch.nn.functional.conv2d(x, weight, stride=2)


LOW_PRECISION_TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 4e-2}


def assert_low_precision_matches_float64(fn, dtype, device="cpu", **case):
    """Output and all gradients in ``dtype`` against float64 computed on the *rounded* inputs (rounding
    first moves no sample across a bilinear kink), within a tolerance relative to max|want|."""
    tensors, params = make_case(**({"n": 2, "offset_scale": 1.0} | (case or {"dg": 2})))
    rounded = [t.detach().to(dtype) if t is not None else None for t in tensors]
    exact = [t.double().requires_grad_() if t is not None else None for t in rounded]
    want_out, want_grads = forward_and_grads(reference.modulated_deform_conv, exact, params, grad_dtype=dtype)
    low = [t.to(device).requires_grad_() if t is not None else None for t in rounded]
    out, grads = forward_and_grads(fn, low, params, grad_dtype=dtype)
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    names = [n for n, t in zip(["output", "input", "offset", "mask", "weight", "bias"], [out, *tensors], strict=True)
             if t is not None]  # fmt: skip
    for name, got, want in zip(names, [out, *grads], [want_out, *want_grads], strict=True):
        tol = LOW_PRECISION_TOL[dtype] * want.abs().max().item()
        torch.testing.assert_close(got.double().cpu(), want, rtol=0, atol=tol, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("mode", list(CUDA_MODES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_emulated_low_precision(dtype, mode, monkeypatch):
    """The CUDA kernels' half and bfloat16 paths (the CPU kernels reject half: test_cpu_kernels_reject_half)."""
    for key, value in CUDA_MODES[mode].items():
        monkeypatch.setenv(key, value)
    assert_low_precision_matches_float64(_ext.modulated_deform_conv_emulated, dtype)


def test_half_weight_gradient_accumulates_in_float():
    """Each image's weight gradient (5.76e6 here) exceeds float16's 65504; the images cancel. Rounding each
    image's GEMM to half before summing gave inf - inf = NaN."""
    x = torch.full((2, 1, 8, 8), 300.0, dtype=torch.float16)
    offset, mask = torch.zeros(2, 2, 8, 8, dtype=torch.float16), torch.ones(2, 1, 8, 8, dtype=torch.float16)
    weight = torch.ones(1, 1, 1, 1, dtype=torch.float16, requires_grad=True)
    out = _ext.modulated_deform_conv_emulated(x, offset, mask, weight, None, (1, 1), (0, 0), (1, 1), 1, 1)
    grad_out = torch.full_like(out, 300.0)
    grad_out[1] = -300.0
    (grad_weight,) = torch.autograd.grad(out, weight, grad_out)
    assert grad_weight.item() == 0.0


@pytest.mark.parametrize("name", list(IMPLS))
def test_one_batched_gemm_per_chunk(name):
    """Forward, weight gradient and column gradients: one bmm each for the whole chunk (4 images,
    2 groups), no per-image, per-group mm."""
    tensors, params = make_case(n=4, c=4, cout=6, groups=2, dg=2)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        forward_and_grads(IMPLS[name], tensors, params)
    names = [event.name for event in prof.events()]
    assert names.count("aten::mm") == 0
    assert names.count("aten::bmm") == 3


def test_small_maps_get_channel_blocks():
    """1x256x16x16, dg 1: 2,304 (tap, pixel) items; the CUDA im2col and col2im split the channels so a
    large GPU gets >= 64x more threads. A large map keeps one thread per item."""
    tensors, params = make_case(n=1, c=256, h=16, w=16, cout=1, bias=False)
    x, offset, mask, weight = (t.detach() for t in tensors[:4])
    x.requires_grad_()
    torch.ops.dcn.emulated_launches()  # clear the log
    out = _ext.modulated_deform_conv_emulated(x, offset, mask, weight, None, *params)
    out.backward(torch.ones_like(out))  # only grad_input is needed: col2im alone
    im2col, col2im = torch.ops.dcn.emulated_launches()
    assert im2col >= 64 * 2304 and col2im >= 64 * 2304
    big, params = make_case(n=1, c=2, h=256, w=256, cout=1, kernel=(1, 1), padding=(0, 0), bias=False)
    _ext.modulated_deform_conv_emulated(*[t.detach() for t in big[:4]], None, *params)
    assert torch.ops.dcn.emulated_launches() == [256 * 256]


def test_reports_kernels():
    """has_cuda_kernels() is the dispatcher's answer; a FORCE_CUDA=1 build (as in CI) must have them."""
    assert _ext.load_error() is None
    assert _ext.has_emulation()
    for op in ("dcn::modulated_deform_conv", "dcn::modulated_deform_conv_backward"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CPU")
    cuda_kernels = torch._C._dispatch_has_kernel_for_dispatch_key("dcn::modulated_deform_conv", "CUDA")
    assert _ext.has_cuda_kernels() is cuda_kernels
    if os.environ.get("FORCE_CUDA") == "1":
        assert cuda_kernels, "built with FORCE_CUDA=1 but no CUDA kernel is registered"


# The GPU checks (scripts/gpu_check.sh runs every test marked so and writes the report); without a CUDA device
# tests/conftest.py skips them, saying so.
cuda = pytest.mark.cuda


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


LOW_PRECISION_CASES = {
    "basic": {"n": 2, "dg": 2, "offset_scale": 1.0},
    "anisotropic": GRID["anisotropic"],
    "groups2_dg2": {"groups": 2, "dg": 2},
    "zero_offsets": GRID["zero_offsets"],
    "far_outside": GRID["far_outside"],
}


@cuda
@pytest.mark.parametrize("name", list(LOW_PRECISION_CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_low_precision(dtype, name):
    """Cases of the parity grid in every dtype the CUDA kernels take (float64: test_cuda_matches_cpu)."""
    assert_low_precision_matches_float64(_ext.modulated_deform_conv, dtype, device="cuda", **LOW_PRECISION_CASES[name])


@cuda
@pytest.mark.parametrize("layout", ["channels_last", "non_contiguous"])
def test_cuda_layouts(layout):
    """Inputs in channels_last or with permuted strides give the reference's output and gradients."""
    tensors, params = make_case(n=2, c=8, dg=2, device="cuda")
    if layout == "channels_last":
        change = lambda t: t.contiguous(memory_format=torch.channels_last)  # noqa: E731
    else:
        change = lambda t: t.transpose(-1, -2).contiguous().transpose(-1, -2)  # noqa: E731
    moved = [change(t.detach()).requires_grad_() if t.dim() == 4 else t for t in tensors]
    assert_matches_reference(moved, params)


@cuda
def test_cuda_deterministic_mode_keeps_inference_on_the_kernels():
    """Deterministic mode: inference (no atomics) stays on the CUDA kernels and repeats bit for bit; a
    backward that needs grad_input (atomics) goes to the reference."""
    import dcn

    tensors, params = make_case(n=2, c=8, dg=2, device="cuda")
    torch.use_deterministic_algorithms(True)
    try:
        with dcn.use_backend("ext"):
            x = tensors[0]
            assert dcn._backend.resolve(x).name == "ext"
            assert dcn._backend.resolve(x, dcn._backend.Grads(input=True)).name == "reference"
            first, second = (forward_and_grads(dcn.modulated_deform_conv, tensors, params) for _ in range(2))
    finally:
        torch.use_deterministic_algorithms(False)
    assert torch.equal(first[0], second[0]) and all(map(torch.equal, first[1], second[1]))


def _one_hot_case(channels: int, size: int, kernel: int) -> tuple[float, float]:
    """Float16 CUDA run whose weight selects the last input channel: the output and that channel's input
    gradient equal the reference's DCN of the last channel alone, although every flat index is large.
    Returns the two errors relative to max|want|."""
    gen = torch.Generator().manual_seed(2)
    taps = kernel * kernel
    x = torch.empty(1, channels, size, size, dtype=torch.float16, device="cuda").uniform_(-1, 1).requires_grad_()
    offset = (torch.randn(1, 2 * taps, size, size, generator=gen) * 1.5).half().cuda()
    mask = torch.rand(1, taps, size, size, generator=gen).half().cuda()
    weight = torch.zeros(1, channels, kernel, kernel, dtype=torch.float16, device="cuda")
    weight[0, -1] = torch.randn(kernel, kernel, generator=gen).half()
    params = ((1, 1), (kernel // 2,) * 2, (1, 1), 1, 1)
    out = _ext.modulated_deform_conv(x, offset, mask, weight, None, *params)
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
    last = x.detach()[:, -1:].double().cpu().requires_grad_()
    want = reference.modulated_deform_conv(
        last, offset.double().cpu(), mask.double().cpu(), weight[:, -1:].double().cpu(), None, *params
    )
    (want_grad,) = torch.autograd.grad(want, last, torch.ones_like(want))
    errors = []
    for got, ref in ((out, want), (grad[:, -1:], want_grad)):
        errors.append(((got.double().cpu() - ref).abs().max() / ref.abs().max()).item())
    return errors[0], errors[1]


@cuda
@pytest.mark.skipif(
    torch.cuda.is_available() and torch.cuda.get_device_properties(0).total_memory < 24 * 2**30,
    reason="needs a CUDA device with 24 GiB",
)
def test_cuda_64bit_indexing():
    """A > 2^31-element input (4 GiB in float16) and a > 2^31-element column buffer take the 64-bit path
    (the CPU tests force it on small shapes with DCN_CUDA_INDEX64)."""
    out_err, grad_err = _one_hot_case(32769, 256, 1)
    assert 32769 * 256 * 256 > 2**31 and max(out_err, grad_err) <= LOW_PRECISION_TOL[torch.float16]
    torch.cuda.empty_cache()
    out_err, grad_err = _one_hot_case(4096, 256, 3)
    assert 4096 * 9 * 256 * 256 > 2**31 and max(out_err, grad_err) <= LOW_PRECISION_TOL[torch.float16]


@cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_cuda_second_device():
    """Tensors on cuda:1 while cuda:0 is current: the kernels run there and the results stay there."""
    tensors, params = make_case(n=2, c=8, dg=2)
    torch.cuda.set_device(0)
    moved = [t.detach().to("cuda:1").requires_grad_() if t is not None else None for t in tensors]
    out, grads = forward_and_grads(_ext.modulated_deform_conv, moved, params)
    assert out.device == torch.device("cuda:1") and all(g.device == out.device for g in grads)
    want, want_grads = forward_and_grads(reference.modulated_deform_conv, tensors, params)
    torch.testing.assert_close(out.cpu(), want, **TOL64)
    for got, ref in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(got.cpu(), ref, **TOL64)


@cuda
def test_cuda_backward_alerts_in_deterministic_mode():
    """Only grad_input is scattered with atomics: the backward alerts only when it is needed."""
    tensors, params = make_case(n=1, device="cuda")
    torch.use_deterministic_algorithms(True)
    try:
        out = _ext.modulated_deform_conv(tensors[0].detach(), *tensors[1:], *params)
        out.sum().backward()  # no grad_input: deterministic
        out = _ext.modulated_deform_conv(*tensors, *params)
        with pytest.raises(RuntimeError, match="deterministic"):
            out.sum().backward()
    finally:
        torch.use_deterministic_algorithms(False)


@cuda
def test_cuda_mixed_devices_is_a_value_error():
    """The device guard is built after the device check (it failed obscurely on a CPU input)."""
    tensors, params = make_case(n=1, device="cuda")
    args = [t.detach() for t in tensors]
    args[0] = args[0].cpu()
    with pytest.raises(ValueError, match="one device"):
        op(*_flat_args(args, params))


@cuda
def test_cuda_opcheck():
    tensors, params = make_case(n=2, dg=2, device="cuda")
    torch.library.opcheck(op, _flat_args(tensors, params))


def test_default_arch_list_embeds_ptx():
    """A FORCE_CUDA=1 build without a GPU must carry PTX, or GPUs newer than its SASS (sm_90, sm_100,
    sm_120) fail with "no kernel image is available"; make.sh must not override setup.py's default."""
    root = Path(__file__).resolve().parents[1]
    tree = ast.parse((root / "setup.py").read_text())
    defaults = [
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DEFAULT_ARCH_LIST" for t in node.targets)
    ]
    assert len(defaults) == 1 and defaults[0].endswith("+PTX"), defaults
    assert "TORCH_CUDA_ARCH_LIST=" not in (root / "make.sh").read_text()
