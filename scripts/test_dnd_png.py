"""Denoise DND crops (PNG) and write the per-crop and bundled ``.mat`` files of a DND submission.

    python scripts/test_dnd_png.py --input_dir datasets/DND --weights checkpoints/adfnet_real.pth \\
        --result_dir results/dnd --ensemble

Reads ``<input_dir>/lq/*.png`` (or ``<input_dir>/*.png``), named ``%04d_%d.png`` (image, crop;
1-based) as the official bundler expects. Writes ``mat/<name>.mat`` (``Idenoised_crop``, float32
in [0, 1], unquantised) for every crop, then bundles ``mat/bundled/%04d.mat`` when all
``--n_images`` x ``--n_crops`` crops are there. ``--save_images`` also writes ``png/<name>.png``.
DND has no public ground truth: upload ``mat/bundled`` to the DND server.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm  # noqa: E402

from adfnet.data.io import list_images, read_image, save_image  # noqa: E402
from adfnet.evaluation import add_model_args, dcn_backend, denoise_uint8, load_real_model, select_device  # noqa: E402
from adfnet.matio import bundle_dnd_submission, save_dnd_crop  # noqa: E402
from adfnet.metrics import quantize  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input_dir", default="datasets/DND", help="folder with lq/ (or the PNGs themselves)")
    parser.add_argument("--result_dir", default="results/dnd")
    parser.add_argument("--save_images", action="store_true", help="also write the denoised PNGs")
    parser.add_argument("--n_images", type=int, default=50, help="images to bundle (DND: 50)")
    parser.add_argument("--n_crops", type=int, default=20, help="crops per image (DND: 20)")
    add_model_args(parser, "checkpoints/adfnet_real.pth")
    args = parser.parse_args(argv)
    folder = Path(args.input_dir)
    result_dir = Path(args.result_dir)
    failures = 0
    try:
        device = select_device(args.cpu, args.device)
        files = list_images(folder / "lq" if (folder / "lq").is_dir() else folder)
        with dcn_backend(args.dcn_backend):
            model = load_real_model(args, device)
            for path in tqdm(files, desc="DND", unit="crop"):
                try:
                    out = denoise_uint8(model, quantize(read_image(path, 3)), device, args.chop, args.ensemble)
                except (OSError, ValueError, RuntimeError) as err:
                    tqdm.write(f"error: {path}: {err}")
                    failures += 1
                    continue
                save_dnd_crop(result_dir / "mat" / f"{path.stem}.mat", out)
                if args.save_images:
                    save_image(result_dir / "png" / f"{path.stem}.png", out)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        written = bundle_dnd_submission(result_dir / "mat", result_dir / "mat" / "bundled", args.n_images, args.n_crops)
        print(f"bundled {len(written)} image(s) into {result_dir / 'mat' / 'bundled'}")
    except FileNotFoundError as err:
        print(f"not bundled: {err}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
