"""SIDD tools of ``adfnet-real``: the validation set (.mat or PNG folders), the benchmark, and scoring a submission.

SIDD ``.mat`` files hold ``N x K x H x W x 3`` uint8 blocks (40 x 32 x 256 x 256 x 3); a submission
``SubmitSrgb.mat`` holds them as an ``N x K`` cell (see :mod:`adfnet.matio`). Scores are PSNR and both
SSIM flavours on 8-bit output: per channel (the official Python code) and MATLAB's 3-D ``ssim``
(``evaluate_SIDD.m`` and the benchmark server).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from adfnet.checkpoint import load_checkpoint
from adfnet.cli.common import check_writable_dir, dcn_backend, print_note, select_device
from adfnet.cli.flags import model_spec
from adfnet.data.io import list_images, read_image, save_image
from adfnet.evaluation import (
    PUBLISHED_REAL,
    denoise_blocks,
    denoise_uint8,
    format_real_scores,
    published_real_for,
    score_pairs,
    write_score_csv,
)
from adfnet.imaging import quantize
from adfnet.matio import SIDD_SUBMISSION_KEY, load_sidd_blocks, save_sidd_submission
from adfnet.outputs import check_outputs_apart


def _blocks(args: argparse.Namespace, noisy: np.ndarray) -> np.ndarray:
    device = select_device(args.cpu, args.device)
    with dcn_backend(args.dcn_backend):
        model, _ = load_checkpoint(args.weights, model_spec(args, 3), device=device, note=print_note)
        return denoise_blocks(model, noisy, device, args.chop, args.ensemble)


def _flat(blocks: np.ndarray) -> np.ndarray:
    return blocks.reshape(-1, *blocks.shape[2:])


def add_val_mat_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input_dir",
        default="datasets/SIDD/val_mat",
        help="folder with ValidationNoisyBlocksSrgb.mat and ValidationGtBlocksSrgb.mat",
    )
    parser.add_argument(
        "--result_dir",
        default="results/sidd_val_mat",
        help="output folder: results.csv (per-block scores) and mat/SubmitSrgb.mat (default %(default)s)",
    )


def run_val_mat(args: argparse.Namespace) -> int:
    """Denoise the SIDD validation .mat pair, score it and write a submission-format SubmitSrgb.mat.

    Prints PSNR, per-channel SSIM and MATLAB-style 3-D SSIM over all blocks (8-bit output), writes
    results.csv (one row per block i-k) and mat/SubmitSrgb.mat (re-score it with adfnet-real score-sidd).
    """
    folder, result_dir = Path(args.input_dir), Path(args.result_dir)
    try:
        check_outputs_apart(
            {"results.csv": result_dir / "results.csv", "the submission": result_dir / "mat" / "SubmitSrgb.mat"},
            [folder],
        )
        noisy = load_sidd_blocks(folder / "ValidationNoisyBlocksSrgb.mat", "ValidationNoisyBlocksSrgb")
        gt = load_sidd_blocks(folder / "ValidationGtBlocksSrgb.mat", "ValidationGtBlocksSrgb")
        if noisy.shape != gt.shape:
            raise ValueError(f"noisy blocks {noisy.shape} and ground truth {gt.shape} differ in shape")
        result_dir = check_writable_dir(args.result_dir, "--result_dir")
        denoised = _blocks(args, noisy)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    save_sidd_submission(result_dir / "mat" / "SubmitSrgb.mat", denoised)
    n, k = denoised.shape[:2]
    scores = score_pairs(_flat(denoised), _flat(gt))
    write_score_csv(result_dir / "results.csv", [f"{i}-{j}" for i in range(n) for j in range(k)], scores)
    print(format_real_scores(scores, *published_real_for(args.model, "sidd_val")))
    return 0


def add_val_png_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input_dir", default="datasets/SIDD/val", help="folder with hq/ and lq/")
    parser.add_argument(
        "--result_dir",
        default="results/sidd_val",
        help="output folder: results.csv, and png/ and mat/ with --save_images (default %(default)s)",
    )
    parser.add_argument("--save_images", action="store_true", help="write png/ and mat/SubmitSrgb.mat")
    parser.add_argument(
        "--grid", type=int, nargs=2, default=[40, 32], metavar=("N", "K"), help="block grid of the .mat submission"
    )


def _denoise_pairs(args: argparse.Namespace, lq: list[Path], result_dir: Path) -> tuple[list, list, list, int]:
    hq_dir = Path(args.input_dir) / "hq"
    device = select_device(args.cpu, args.device)
    names, outputs, targets, failures = [], [], [], 0
    with dcn_backend(args.dcn_backend):
        model, _ = load_checkpoint(args.weights, model_spec(args, 3), device=device, note=print_note)
        for path in tqdm(lq, desc="SIDD val", unit="img"):
            try:
                clean, noisy = read_image(hq_dir / path.name, 3), read_image(path, 3)
                if clean.shape != noisy.shape:
                    (h, w), (hn, wn) = clean.shape[:2], noisy.shape[:2]
                    raise ValueError(f"the pair differs in size (hq {h}x{w}, lq {hn}x{wn} px): skipped, not scored")
                out = denoise_uint8(model, quantize(noisy), device, args.chop, args.ensemble)
            except (OSError, ValueError, RuntimeError) as err:
                tqdm.write(f"error: {path}: {err}")
                failures += 1
                continue
            names.append(path.name)
            outputs.append(quantize(out))
            targets.append(quantize(clean))
            if args.save_images:
                save_image(result_dir / "png" / f"{path.stem}.png", out)
    return names, outputs, targets, failures


def run_val_png(args: argparse.Namespace) -> int:
    """Denoise SIDD validation pairs stored as PNG folders (hq/ clean, lq/ noisy) and score them.

    Pairs are matched by file name; a pair that cannot be read or differs in size is named and skipped,
    the others are scored (exit code 1). Writes results.csv. With --save_images: png/<name>.png and, when the
    number of images equals the --grid product (40 x 32 for SIDD), mat/SubmitSrgb.mat with the blocks
    placed row-major in sorted-name order, as the official script did.
    """
    result_dir = Path(args.result_dir)
    try:
        check_outputs_apart(
            {"results.csv": result_dir / "results.csv", "the PNGs": result_dir / "png", "the .mat": result_dir / "mat"},
            [args.input_dir],
        )
        lq = list_images(Path(args.input_dir) / "lq")
        result_dir = check_writable_dir(args.result_dir, "--result_dir")
        names, outputs, targets, failures = _denoise_pairs(args, lq, result_dir)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not outputs:
        print("error: no image could be processed", file=sys.stderr)
        return 1
    scores = score_pairs(outputs, targets)
    write_score_csv(result_dir / "results.csv", names, scores)
    print(format_real_scores(scores, *published_real_for(args.model, "sidd_val")))
    if args.save_images:
        n, k = args.grid
        if len(outputs) == n * k and not failures and len({o.shape for o in outputs}) == 1:
            mat = result_dir / "mat" / "SubmitSrgb.mat"
            save_sidd_submission(mat, np.stack(outputs).reshape(n, k, *outputs[0].shape))
            print(f"wrote {mat}")
        else:
            print(f"note: {len(outputs)} images do not fill a {n} x {k} grid of equal blocks: no SubmitSrgb.mat")
    return 1 if failures else 0


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input_dir", default="datasets/SIDD/benchmark", help="folder holding BenchmarkNoisyBlocksSrgb.mat"
    )
    parser.add_argument(
        "--result_dir",
        default="results/sidd_benchmark",
        help="output folder: mat/SubmitSrgb.mat, and png/ with --save_images (default %(default)s)",
    )
    parser.add_argument("--save_images", action="store_true", help="also write every block as PNG")


def run_benchmark(args: argparse.Namespace) -> int:
    """Denoise the SIDD benchmark blocks and write the submission SubmitSrgb.mat.

    Reads <input_dir>/BenchmarkNoisyBlocksSrgb.mat and writes <result_dir>/mat/SubmitSrgb.mat
    (DenoisedBlocksSrgb, an N x K cell of uint8 blocks: upload it to the SIDD benchmark).
    --save_images also writes png/%04d-%04d.png (0-based block index).
    """
    result_dir = Path(args.result_dir)
    try:
        check_outputs_apart({"the submission": result_dir / "mat", "the PNGs": result_dir / "png"}, [args.input_dir])
        noisy = load_sidd_blocks(Path(args.input_dir) / "BenchmarkNoisyBlocksSrgb.mat", "BenchmarkNoisyBlocksSrgb")
        result_dir = check_writable_dir(args.result_dir, "--result_dir")
        denoised = _blocks(args, noisy)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    save_sidd_submission(result_dir / "mat" / "SubmitSrgb.mat", denoised)
    if args.save_images:
        for i in range(denoised.shape[0]):
            for k in range(denoised.shape[1]):
                save_image(result_dir / "png" / f"{i:04d}-{k:04d}.png", denoised[i, k])
    print(f"wrote {result_dir / 'mat' / 'SubmitSrgb.mat'} ({denoised.shape[0]} x {denoised.shape[1]} blocks)")
    return 0


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--submission", required=True, help="SubmitSrgb.mat")
    parser.add_argument("--gt", required=True, help="ValidationGtBlocksSrgb.mat")
    parser.add_argument(
        "--submission_key", default=SIDD_SUBMISSION_KEY, help="variable of the submission (default %(default)s)"
    )
    parser.add_argument("--gt_key", default=None, help="default: the file's only variable")
    parser.add_argument("--csv", default=None, help="optional per-block CSV")


def run_score(args: argparse.Namespace) -> int:
    """Score a SIDD submission against the ground truth (the Python replacement of evaluate_SIDD.m).

    Reads the submission in the cell form the tools and the benchmark use, or as a numeric 5-D array
    (uint8 or float in [0, 1]), which evaluate_SIDD.m itself could not do.
    """
    try:
        if args.csv:
            check_outputs_apart({"the scores": args.csv}, [args.submission, args.gt], "--csv", "--submission / --gt")
        denoised = load_sidd_blocks(args.submission, args.submission_key)
        gt = load_sidd_blocks(args.gt, args.gt_key)
        if denoised.shape != gt.shape:
            raise ValueError(f"submission {denoised.shape} and ground truth {gt.shape} differ in shape")
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    n, k = gt.shape[:2]
    scores = score_pairs(_flat(denoised), _flat(gt))
    if args.csv:
        write_score_csv(Path(args.csv), [f"{i}-{j}" for i in range(n) for j in range(k)], scores)
    print(format_real_scores(scores, PUBLISHED_REAL["sidd_val"]))
    return 0
