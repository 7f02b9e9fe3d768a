"""CPU speed of the compiled DCNv2 op: against torchvision's deform_conv2d (forward + backward), and
its forward's rate against an equal-size 3x3 convolution at every instruction-set level.

ADFNet shapes: 3x3 kernel, padding 1, 8 deformable groups, Cin = Cout, modulation mask on.
Each fwd+bwd timing is the minimum over repeats (the machine may be shared), after one warm-up run.
The forward-rate table runs as CPU inference does (channels_last input, offsets and masks as the
predictor makes them), float32 and bfloat16, alternating DCN and convolution calls so that a
busy machine slows both alike, and reports medians.

    .venv/bin/python benchmarks/dcn_speed.py [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torchvision.ops import deform_conv2d

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dcn  # noqa: E402
from dcn import _ext  # noqa: E402

SHAPES = [(1, 32, 256, 256), (1, 64, 128, 128), (4, 128, 32, 32)]
FORWARD_SHAPES = [(1, 32, 256, 384), (1, 64, 128, 192)]
REQUIRED_FORWARD_SHARE = 0.35  # of the equal-size convolution's rate
DEFORMABLE_GROUPS = 8
REQUIRED_SPEEDUP = 2.0


def op_inputs(
    shape: tuple[int, int, int, int],
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> list[torch.Tensor]:
    """input, offset, mask, weight, bias of one ADFNet-like layer, all requiring grad."""
    n, c, h, w = shape
    gen = torch.Generator().manual_seed(seed)
    taps = 9
    tensors = [
        torch.randn(n, c, h, w, generator=gen),
        torch.randn(n, 2 * DEFORMABLE_GROUPS * taps, h, w, generator=gen) * 2.0,
        torch.rand(n, DEFORMABLE_GROUPS * taps, h, w, generator=gen),
        torch.randn(c, c, 3, 3, generator=gen) / (3 * c**0.5),
        torch.randn(c, generator=gen),
    ]
    return [t.to(device, dtype).requires_grad_() for t in tensors]


def _run_ext(x, offset, mask, weight, bias) -> torch.Tensor:
    return _ext.modulated_deform_conv(x, offset, mask, weight, bias, (1, 1), (1, 1), (1, 1), 1, DEFORMABLE_GROUPS)


def _run_torchvision(x, offset, mask, weight, bias) -> torch.Tensor:
    return deform_conv2d(x, offset, weight, bias, stride=1, padding=1, dilation=1, mask=mask)


def time_fwd_bwd(fn: Callable[..., torch.Tensor], tensors: list[torch.Tensor], repeats: int) -> float:
    """Minimum wall time (seconds) of forward + backward over `repeats` runs after a warm-up."""
    grad = torch.ones(1)
    best = float("inf")
    for i in range(repeats + 1):
        for t in tensors:
            t.grad = None
        start = time.perf_counter()
        out = fn(*tensors)
        out.backward(grad.expand_as(out))
        elapsed = time.perf_counter() - start
        if i > 0:
            best = min(best, elapsed)
    return best


def forward_share(shape: tuple[int, int, int, int], dtype: torch.dtype, repeats: int) -> tuple[float, float]:
    """Median seconds of the DCN forward and of an equal-size 3x3 conv, calls alternating."""
    n, c, h, w = shape
    cl = torch.channels_last
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=gen).to(dtype).contiguous(memory_format=cl)
    taps = 9 * DEFORMABLE_GROUPS
    offset = (torch.randn(n, 2 * taps, h, w, generator=gen) * 2).to(dtype).contiguous(memory_format=cl)
    mask = torch.rand(n, taps, h, w, generator=gen).to(dtype).contiguous(memory_format=cl)
    weight = (torch.randn(c, c, 3, 3, generator=gen) / (3 * c**0.5)).to(dtype)
    bias = torch.randn(c, generator=gen).to(dtype)
    conv = torch.nn.Conv2d(c, c, 3, padding=1).to(dtype).to(memory_format=cl)
    op = torch.ops.dcn.modulated_deform_conv
    times: dict[str, list[float]] = {"dcn": [], "conv": []}
    with torch.inference_mode():
        for i in range(repeats + 1):
            for name, fn in (("dcn", lambda: op(x, offset, mask, weight, bias, 1, 1, 1, 1, 1, 1, 1, DEFORMABLE_GROUPS)),
                             ("conv", lambda: conv(x))):  # fmt: skip
                start = time.perf_counter()
                fn()
                if i > 0:
                    times[name].append(time.perf_counter() - start)
    return statistics.median(times["dcn"]), statistics.median(times["conv"])


def main(argv: list[str] | None = None) -> int:
    """Print the timing table; exit status 1 if some shape misses the required speed-up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case, minimum reported")
    args = parser.parse_args(argv)
    if not _ext.is_available():
        print(f"dcn extension not available: {_ext.load_error()} (build it with `sh make.sh`)")
        return 1
    torch.set_num_threads(args.threads)

    print(f"CPU, {args.threads} threads, fp32, 3x3 pad 1, dg={DEFORMABLE_GROUPS}, mask on; min of {args.repeats}")
    print(f"{'shape (N,C,H,W)':<20} {'ext fwd+bwd':>12} {'torchvision':>12} {'speed-up':>9}")
    ok = True
    for shape in SHAPES:
        tensors = op_inputs(shape)
        t_ext = time_fwd_bwd(_run_ext, tensors, args.repeats)
        t_tv = time_fwd_bwd(_run_torchvision, tensors, args.repeats)
        ratio = t_tv / t_ext
        ok &= ratio >= REQUIRED_SPEEDUP
        label = "x".join(map(str, shape))
        print(f"{label:<20} {t_ext * 1e3:>10.1f}ms {t_tv * 1e3:>10.1f}ms {ratio:>8.2f}x")
    print(f"required: >= {REQUIRED_SPEEDUP:.1f}x on every shape: {'PASS' if ok else 'FAIL'}")

    print(f"\nDCN forward against an equal-size 3x3 conv (channels_last, median of {args.repeats}, alternating)")
    print(f"{'level':<9} {'dtype':<9} {'shape (N,C,H,W)':<18} {'DCN fwd':>9} {'conv':>9} {'DCN rate':>9}")
    for level in dcn.cpu_capabilities():
        with dcn.use_cpu_capability(level):
            for dtype in (torch.float32, torch.bfloat16):
                for shape in FORWARD_SHAPES:
                    t_dcn, t_conv = forward_share(shape, dtype, args.repeats)
                    share = t_conv / t_dcn
                    if level == dcn.cpu_capabilities()[-1] and dtype == torch.float32:
                        ok &= share >= REQUIRED_FORWARD_SHARE
                    label = "x".join(map(str, shape))
                    dtype_name = str(dtype).split(".")[-1]
                    print(f"{level:<9} {dtype_name:<9} {label:<18} {t_dcn * 1e3:>7.1f}ms {t_conv * 1e3:>7.1f}ms "
                          f"{100 * share:>8.0f}%")  # fmt: skip
    print(
        f"required: float32 forward >= {100 * REQUIRED_FORWARD_SHARE:.0f}% of the conv's rate at the best level: "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
