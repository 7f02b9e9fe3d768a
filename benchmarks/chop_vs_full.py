"""How far ADFNet's chopped output (``--chop``) is from its full-image output, and what it does to PSNR.

MFI pools over whole rows, columns and channels, so a quadrant sees other statistics than the whole
image and ``forward_chop`` cannot reproduce the full forward exactly (for a model whose receptive
field fits the 24-px overlap it does; tests/test_inference.py proves that). This measures the gap:

    .venv/bin/python benchmarks/chop_vs_full.py --weights experiment/demo_gray_n25/model/model_best.pt --n_colors 1
    .venv/bin/python benchmarks/chop_vs_full.py --n_colors 3 --input_dir datasets/testsets/McMaster --limit 3

Without ``--weights`` the network has PyTorch's default random initialisation (a worst case: its
statistics are not those of a trained denoiser).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adfnet.checkpoint import load_weights  # noqa: E402
from adfnet.data.io import image_to_tensor, list_images, read_image  # noqa: E402
from adfnet.data.noise import add_awgn  # noqa: E402
from adfnet.inference import default_chop_min_size, forward_chop, pad_to_multiple  # noqa: E402
from adfnet.metrics import psnr  # noqa: E402
from adfnet.models import build_model  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=None, help="checkpoint (default: random initialisation)")
    p.add_argument("--n_colors", type=int, choices=(1, 3), default=1)
    p.add_argument("--input_dir", default=None, help="default: bundled Set12 (gray) / McMaster (colour)")
    p.add_argument("--sigma", type=float, default=25)
    p.add_argument("--limit", type=int, default=3, help="images to measure")
    args = p.parse_args(argv)
    folder = args.input_dir or ("datasets/testsets/Set12" if args.n_colors == 1 else "datasets/testsets/McMaster")

    torch.manual_seed(0)
    model = build_model("adfnet", args.n_colors).eval()
    if args.weights:
        load_weights(model, args.weights)
    print(
        f"{'image':>10} {'size':>9} {'max |chop - full|':>18} {'mean':>9} {'PSNR(chop, full)':>17} "
        f"{'PSNR full':>10} {'PSNR chop':>10}"
    )
    for path in list_images(folder)[: args.limit]:
        clean = image_to_tensor(read_image(path, args.n_colors))
        noisy, (h, w) = pad_to_multiple(add_awgn(clean, args.sigma, seed=1))
        with torch.no_grad():
            full = model(noisy)[..., :h, :w].clamp(0, 1)
            chopped = forward_chop(model, noisy, default_chop_min_size(args.n_colors))[..., :h, :w].clamp(0, 1)
        diff = (chopped - full).abs()
        full_img, chop_img, clean_img = (t[0].permute(1, 2, 0).numpy() for t in (full, chopped, clean))
        print(
            f"{path.name:>10} {h:>4}x{w:<4} {diff.max().item():>18.4f} {diff.mean().item():>9.5f} "
            f"{psnr(chop_img, full_img):>14.2f} dB {psnr(full_img, clean_img):>10.3f} "
            f"{psnr(chop_img, clean_img):>10.3f}"
        )


if __name__ == "__main__":
    main()
