"""CPU speed of the compiled DCNv2 op against torchvision's deform_conv2d (forward + backward).

ADFNet shapes: 3x3 kernel, padding 1, 8 deformable groups, Cin = Cout, modulation mask on.
Each timing is the minimum over repeats (the machine may be shared), after one warm-up run.

    .venv/bin/python benchmarks/dcn_speed.py [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torchvision.ops import deform_conv2d

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dcn import _ext  # noqa: E402

SHAPES = [(1, 32, 256, 256), (1, 64, 128, 128), (4, 128, 32, 32)]
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
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
