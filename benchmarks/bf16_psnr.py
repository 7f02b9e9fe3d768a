"""How far bfloat16 inference is from float32: PSNR of the bf16 output against the fp32 output.

Runs ``adfnet.inference.denoise(..., precision="bf16")`` and the float32 default on test sets
with Gaussian noise (sigma 25/255, fixed seed) and prints the PSNR between the two outputs per
image (unquantised, peak 1) and the lowest per set, with both times (each image in fp32, then in
bf16). The weights are the deterministic golden-test weights (tests/golden/weights.py) unless
``--checkpoint`` gives trained ones. The default set is the bundled McMaster; Kodak24 is a folder
argument (``<testsets>/Kodak24``).

    .venv/bin/python benchmarks/bf16_psnr.py [--set datasets/testsets/McMaster <testsets>/Kodak24] \
        [--checkpoint model.pt]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "golden"))

from adfnet.data.io import image_to_tensor, read_image  # noqa: E402
from adfnet.inference import denoise  # noqa: E402
from adfnet.models import build_model  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--set", type=Path, nargs="+", default=[ROOT / "datasets" / "testsets" / "McMaster"], help="image folders"
    )
    parser.add_argument("--checkpoint", type=Path, help="trained RGB ADFNet weights (a state_dict)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images (0: all)")
    args = parser.parse_args(argv)
    model = build_model("adfnet", 3).eval()
    if args.checkpoint:
        model.load_state_dict(torch.load(args.checkpoint, map_location="cpu"), strict=True)
    else:
        from weights import golden_state_dict

        model.load_state_dict(golden_state_dict(model.state_dict(), 0), strict=True)
    summary = []
    for folder in args.set:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".tif", ".bmp", ".jpg"))
        if args.limit:
            paths = paths[: args.limit]
        if not paths:
            sys.exit(f"error: no images in {folder}")
        summary.append(measure(model, folder, paths))
    print()
    for line in summary:
        print(line)


def measure(model: torch.nn.Module, folder: Path, paths: list[Path]) -> str:
    """Prints the table of one set; returns its summary line."""
    gen = torch.Generator().manual_seed(0)
    worst = math.inf
    speedups = []
    print(f"\n{folder.name}\n\n| image | size | fp32 s | bf16 s | PSNR bf16 vs fp32 (dB) |\n|---|---|---|---|---|")
    for path in paths:
        clean = image_to_tensor(read_image(path, 3))
        noisy = clean + torch.randn(clean.shape, generator=gen) * 25 / 255
        with torch.inference_mode():
            start = time.perf_counter()
            fp32 = denoise(model, noisy)
            mid = time.perf_counter()
            bf16 = denoise(model, noisy, precision="bf16")
            end = time.perf_counter()
        psnr = 10 * math.log10(1 / (fp32 - bf16).square().mean().item())
        worst = min(worst, psnr)
        speedups.append((mid - start) / (end - mid))
        size = f"{clean.shape[-2]}x{clean.shape[-1]}"
        print(f"| {path.name} | {size} | {mid - start:.2f} | {end - mid:.2f} | {psnr:.1f} |", flush=True)
    return (
        f"{folder.name}: lowest PSNR of bf16 against fp32 {worst:.1f} dB over {len(paths)} images; "
        f"bf16 {statistics.median(speedups):.2f}x as fast as fp32 (median)"
    )


if __name__ == "__main__":
    main()
