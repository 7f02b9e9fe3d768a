"""Denoise SIDD validation pairs stored as PNG folders (``hq/`` clean, ``lq/`` noisy) and score them.

    python scripts/test_sidd_val_png.py --input_dir datasets/SIDD/val --weights checkpoints/adfnet_real.pth \\
        --result_dir results/sidd_val --save_images

Pairs are matched by file name. Prints PSNR and both SSIM flavours (per-channel and MATLAB 3-D) on
8-bit output and writes ``results.csv``. With ``--save_images``: ``png/<name>.png`` and, when the
number of images equals the ``--grid`` product (40 x 32 for SIDD), ``mat/SubmitSrgb.mat`` with the
blocks placed row-major in sorted-name order, as the official script did.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from adfnet.data.io import list_images, read_image, save_image  # noqa: E402
from adfnet.evaluation import (  # noqa: E402
    PUBLISHED_REAL,
    add_model_args,
    dcn_backend,
    denoise_uint8,
    format_real_scores,
    load_real_model,
    score_pairs,
    select_device,
    write_score_csv,
)
from adfnet.matio import save_sidd_submission  # noqa: E402
from adfnet.metrics import quantize  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input_dir", default="datasets/SIDD/val", help="folder with hq/ and lq/")
    parser.add_argument("--result_dir", default="results/sidd_val")
    parser.add_argument("--save_images", action="store_true", help="write png/ and mat/SubmitSrgb.mat")
    parser.add_argument("--grid", type=int, nargs=2, default=[40, 32], metavar=("N", "K"),
                        help="block grid of the .mat submission")
    add_model_args(parser, "checkpoints/adfnet_real.pth")
    args = parser.parse_args(argv)
    try:
        device = select_device(args.cpu, args.device)
        lq = list_images(Path(args.input_dir) / "lq")
        hq_dir = Path(args.input_dir) / "hq"
        with dcn_backend(args.dcn_backend):
            model = load_real_model(args, device)
            names, outputs, targets, failures = [], [], [], 0
            for path in tqdm(lq, desc="SIDD val", unit="img"):
                try:
                    clean = read_image(hq_dir / path.name, 3)
                    noisy = quantize(read_image(path, 3))
                    out = denoise_uint8(model, noisy, device, args.chop, args.ensemble)
                except (OSError, ValueError, RuntimeError) as err:
                    tqdm.write(f"error: {path}: {err}")
                    failures += 1
                    continue
                names.append(path.name)
                outputs.append(quantize(out))
                targets.append(quantize(clean))
                if args.save_images:
                    save_image(Path(args.result_dir) / "png" / f"{path.stem}.png", out)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not outputs:
        print("error: no image could be processed", file=sys.stderr)
        return 1
    scores = score_pairs(outputs, targets)
    write_score_csv(Path(args.result_dir) / "results.csv", names, scores)
    print(format_real_scores(scores, PUBLISHED_REAL["sidd_val"]))
    if args.save_images:
        n, k = args.grid
        if len(outputs) == n * k and not failures and len({o.shape for o in outputs}) == 1:
            mat = Path(args.result_dir) / "mat" / "SubmitSrgb.mat"
            save_sidd_submission(mat, np.stack(outputs).reshape(n, k, *outputs[0].shape))
            print(f"wrote {mat}")
        else:
            print(f"note: {len(outputs)} images do not fill a {n} x {k} grid of equal blocks: no SubmitSrgb.mat")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
