"""GPU timings: the DCN op against torchvision's deform_conv2d on ADFNet's shapes, and ADFNet's inference time.

Each timing is the best of ``--repeats`` runs after a warm-up, the device synchronised around each. The op
runs in float32 and float16 (forward, and forward + backward); ADFNet (colour, float32, no grad) at 256x256
and 512x768, beside the paper's 0.027 s per image on a 2080 Ti (Table 2; the image size is not stated).
``scripts/gpu_check.sh`` runs this after the GPU tests and puts the table in its report.

    python benchmarks/gpu_speed.py [--device cuda] [--repeats 20] [--out timings.md]
    python benchmarks/gpu_speed.py --device cpu --quick   # the script itself, in seconds (not GPU numbers)
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dcn_speed import DEFORMABLE_GROUPS, op_inputs  # noqa: E402 (this folder: the same layer as the CPU timing)

import dcn  # noqa: E402
from adfnet.fileio import write_text  # noqa: E402
from adfnet.models import build_model  # noqa: E402
from dcn import _ext  # noqa: E402

OP_SHAPES = [(1, 64, 128, 128), (4, 64, 64, 64), (1, 128, 64, 64)]  # 3x3 layers of ADFNet's widths
IMAGE_SIZES = [(256, 256), (512, 768)]
PAPER_SECONDS_PER_IMAGE = 0.027  # ADFNet on a 2080 Ti (paper, Table 2)


def best_time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` runs of ``fn`` after one warm-up."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def op_rows(device: torch.device, shapes: list, dtypes: list, repeats: int) -> list[str]:
    """Markdown rows: per shape and dtype, forward and forward + backward of ours and torchvision's (ms)."""
    from torchvision.ops import deform_conv2d

    rows = []
    for shape in shapes:
        for dtype in dtypes:
            x, offset, mask, weight, bias = on = op_inputs(shape, dtype, device)
            ours = functools.partial(_ext.modulated_deform_conv, *on, (1, 1), (1, 1), (1, 1), 1, DEFORMABLE_GROUPS)
            theirs = functools.partial(deform_conv2d, x, offset, weight, bias, 1, 1, 1, mask)
            cells = []
            for fn in (ours, theirs):
                cells.append(1e3 * best_time(lambda fn=fn: fn().detach(), device, repeats))
                cells.append(1e3 * best_time(lambda fn=fn: fn().sum().backward(), device, repeats))
            name = str(dtype).removeprefix("torch.")
            rows.append(f"| {'x'.join(map(str, shape))} | {name} | " + " | ".join(f"{v:.2f}" for v in cells) + " |")
    return rows


def inference_rows(device: torch.device, sizes: list, repeats: int) -> list[str]:
    """Markdown rows: ADFNet's seconds per colour image (float32, no grad, the compiled DCN)."""
    model = build_model("adfnet", 3).to(device).eval()
    rows = []
    with torch.no_grad(), dcn.use_backend("ext"):
        for h, w in sizes:
            x = torch.rand(1, 3, h, w, device=device)
            rows.append(f"| {h}x{w} | {best_time(lambda x=x: model(x), device, repeats):.4f} |")
    return rows


def report(device: torch.device, quick: bool, repeats: int) -> str:
    shapes = [(1, 16, 16, 16)] if quick else OP_SHAPES
    dtypes = [torch.float32] if quick or device.type == "cpu" else [torch.float32, torch.float16]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    lines = [
        f"## Timings on {name} (torch {torch.__version__}; best of {repeats})" + (" (--quick)" if quick else ""),
        "",
        "The DCN op (ours) against torchvision's deform_conv2d, 3x3, 8 deformable groups, ms:",
        "",
        "| N x C x H x W | dtype | ours fwd | ours fwd+bwd | torchvision fwd | torchvision fwd+bwd |",
        "|---|---|---:|---:|---:|---:|",
        *op_rows(device, shapes, dtypes, repeats),
        "",
        f"ADFNet inference, colour, float32 (paper: {PAPER_SECONDS_PER_IMAGE} s per image on a 2080 Ti):",
        "",
        "| image | seconds |",
        "|---|---:|",
        *inference_rows(device, [(16, 16)] if quick else IMAGE_SIZES, repeats),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per case, the best reported")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run: checks the script, not speed")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not (torch.cuda.is_available() and _ext.has_cuda_kernels()):
        print("gpu_speed: needs a visible GPU and the extension built with its CUDA kernels", file=sys.stderr)
        return 2
    text = report(device, args.quick, 1 if args.quick else args.repeats)
    print(text)
    if args.out:
        write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
