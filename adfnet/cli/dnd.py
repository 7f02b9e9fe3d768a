"""DND tools of ``adfnet-real``: denoise the crops into a submission, and bundle per-crop files.

DND has no public ground truth: the bundled ``%04d.mat`` files (``Idenoised`` cell, ``israw`` False,
``eval_version`` "1.0") go to the DND server. Formats: :mod:`adfnet.matio`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from adfnet.checkpoint import load_checkpoint
from adfnet.cli.common import check_writable_dir, dcn_backend, print_note, select_device
from adfnet.cli.flags import model_spec
from adfnet.data.io import list_images, read_image, save_image
from adfnet.evaluation import denoise_uint8
from adfnet.imaging import quantize
from adfnet.matio import bundle_dnd_submission, save_dnd_crop
from adfnet.outputs import check_outputs_apart


def add_denoise_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input_dir", default="datasets/DND", help="folder with lq/ (or the PNGs themselves)")
    parser.add_argument(
        "--result_dir",
        default="results/dnd",
        help="output folder: mat/ (per-crop and bundled .mat files), png/ with --save_images (default %(default)s)",
    )
    parser.add_argument("--save_images", action="store_true", help="also write the denoised PNGs")
    parser.add_argument("--n_images", type=int, default=50, help="images to bundle (DND: 50)")
    parser.add_argument("--n_crops", type=int, default=20, help="crops per image (DND: 20)")


def _denoise_all(args: argparse.Namespace, files: list[Path], result_dir: Path) -> int:
    device = select_device(args.cpu, args.device)
    failures = 0
    with dcn_backend(args.dcn_backend):
        model, _ = load_checkpoint(args.weights, model_spec(args, 3), device=device, note=print_note)
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
    return failures


def run_denoise(args: argparse.Namespace) -> int:
    """Denoise DND crops (PNG) and write the per-crop and bundled .mat files of a DND submission.

    Reads <input_dir>/lq/*.png (or <input_dir>/*.png), named %04d_%d.png (image, crop; 1-based) as the
    official bundler expects. Writes mat/<name>.mat (Idenoised_crop, float32 in [0, 1], unquantised) for
    every crop, then bundles mat/bundled/%04d.mat when all --n_images x --n_crops crops are there.
    --save_images also writes png/<name>.png.
    """
    folder, result_dir = Path(args.input_dir), Path(args.result_dir)
    try:
        check_outputs_apart({"the .mat files": result_dir / "mat", "the PNGs": result_dir / "png"}, [folder])
        files = list_images(folder / "lq" if (folder / "lq").is_dir() else folder)
        result_dir = check_writable_dir(args.result_dir, "--result_dir")
        failures = _denoise_all(args, files, result_dir)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        written = bundle_dnd_submission(result_dir / "mat", result_dir / "mat" / "bundled", args.n_images, args.n_crops)
        print(f"bundled {len(written)} image(s) into {result_dir / 'mat' / 'bundled'}")
    except FileNotFoundError as err:
        print(f"not bundled: {err}")
    return 1 if failures else 0


def add_bundle_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mat_dir", required=True, help="folder with the per-crop .mat files")
    parser.add_argument("--out_dir", default=None, help="default: <mat_dir>/bundled")
    parser.add_argument("--n_images", type=int, default=50, help="images to bundle (DND: 50)")
    parser.add_argument("--n_crops", type=int, default=20, help="crops per image (DND: 20)")
    parser.add_argument("--delete_crops", action="store_true", help="remove the per-crop files afterwards")


def run_bundle(args: argparse.Namespace) -> int:
    """Bundle per-crop DND results (%04d_%d.mat with Idenoised_crop) into the %04d.mat files the DND server takes.

    Per-crop files are kept unless --delete_crops.
    """
    out_dir = Path(args.out_dir) if args.out_dir else Path(args.mat_dir) / "bundled"
    try:
        written = bundle_dnd_submission(args.mat_dir, out_dir, args.n_images, args.n_crops, args.delete_crops)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} file(s) to {out_dir}")
    return 0
