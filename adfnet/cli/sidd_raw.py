"""SIDD raw tools of ``adfnet-real``: the raw validation blocks (scored) and the raw benchmark (submission).

SIDD's raw files hold ``N x K x H x W`` float32 Bayer blocks in [0, 1] (40 x 32 x 256 x 256):
``ValidationNoisyBlocksRaw.mat`` / ``ValidationGtBlocksRaw.mat`` (variables of the same names) and
``BenchmarkNoisyBlocksRaw.mat``. Each block is packed in ``--cfa_pattern``, denoised by a 4-channel
(``--n_colors 4``) model, optionally with the CFA-aware x8 ensemble, and unpacked. The score is MWRCANet's:
PSNR with peak 1 per block on the float output, averaged over all blocks.

The CFA pattern: SIDD's blocks come from five phones whose sensors differ (per the metadata of the SIDD
raw images: GP and N6 and G4 BGGR, IP RGGB, S6 GRBG); the block files carry no pattern. One pattern
for all blocks (default RGGB) is therefore an approximation for the blocks of the other phones: the
packed channels are then a permutation of R, Gr, Gb, B. Pass the pattern your model was trained for.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from adfnet.checkpoint import load_checkpoint
from adfnet.cli.common import check_writable_dir, dcn_backend, print_note, select_device
from adfnet.cli.flags import model_spec
from adfnet.data.raw import CFA_PATTERNS
from adfnet.evaluation.published import PUBLISHED_RAW
from adfnet.evaluation.raw import denoise_raw_blocks, score_raw_blocks
from adfnet.fileio import text_file
from adfnet.matio import SIDD_RAW_SUBMISSION_KEY, load_sidd_raw_blocks, save_sidd_raw_submission

SUBMISSION = "SubmitRaw.mat"


def _add_common(parser: argparse.ArgumentParser, default_input: str, default_result: str) -> None:
    parser.add_argument("--input_dir", default=default_input, help="folder of the SIDD raw .mat block files")
    parser.add_argument(
        "--result_dir", default=default_result, help="output folder (mat/SubmitRaw.mat; validation: results.csv)"
    )
    parser.add_argument(
        "--cfa_pattern",
        choices=CFA_PATTERNS,
        default="RGGB",
        help="Bayer pattern used to pack every block (see the tool's description: SIDD's phones differ)",
    )
    parser.add_argument("--method_name", default="ADFNet (raw)", help="OptionalData.MethodName of the submission")


def _denoise(args: argparse.Namespace, noisy: np.ndarray) -> tuple[np.ndarray, float]:
    device = select_device(args.cpu, args.device)
    with dcn_backend(args.dcn_backend):
        model, _ = load_checkpoint(args.weights, model_spec(args, 4), device=device, note=print_note)
        return denoise_raw_blocks(model, noisy, device, args.cfa_pattern, args.chop, args.ensemble)


def _write_submission(args: argparse.Namespace, result_dir: Path, blocks: np.ndarray, time_mp: float) -> Path:
    path = result_dir / "mat" / SUBMISSION
    optional = {"MethodName": args.method_name, "CfaPattern": args.cfa_pattern, "Ensemble": str(args.ensemble)}
    save_sidd_raw_submission(path, blocks, time_mp, optional)
    return path


def add_raw_val_arguments(parser: argparse.ArgumentParser) -> None:
    _add_common(parser, "datasets/SIDD/val_raw", "results/sidd_raw_val")


def run_raw_val(args: argparse.Namespace) -> int:
    """Denoise and score SIDD's raw validation blocks (PSNR, peak 1, mean over all blocks), write SubmitRaw.mat.

    Reads <input_dir>/ValidationNoisyBlocksRaw.mat and ValidationGtBlocksRaw.mat; writes results.csv (one
    PSNR per block i-k) and mat/SubmitRaw.mat (DenoisedBlocksRaw, TimeMPRaw, OptionalData), and prints the
    mean beside MWRCANet's published numbers (NTIRE 2020 winner).
    """
    folder = Path(args.input_dir)
    try:
        noisy = load_sidd_raw_blocks(folder / "ValidationNoisyBlocksRaw.mat", "ValidationNoisyBlocksRaw")
        gt = load_sidd_raw_blocks(folder / "ValidationGtBlocksRaw.mat", "ValidationGtBlocksRaw")
        if noisy.shape != gt.shape:
            raise ValueError(f"noisy blocks {noisy.shape} and ground truth {gt.shape} differ in shape")
        result_dir = check_writable_dir(args.result_dir, "--result_dir")
        denoised, time_mp = _denoise(args, noisy)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    mat = _write_submission(args, result_dir, denoised, time_mp)
    scores = score_raw_blocks(denoised, gt)
    noisy_scores = score_raw_blocks(noisy, gt)
    n, k = scores.shape
    with text_file(result_dir / "results.csv") as fh:
        fh.write("block,psnr,noisy_psnr\n")
        for i in range(n):
            for j in range(k):
                fh.write(f"{i}-{j},{scores[i, j]:.6f},{noisy_scores[i, j]:.6f}\n")
    reference = PUBLISHED_RAW["sidd_raw_val_ensemble" if args.ensemble else "sidd_raw_val"]
    mean = float(scores.mean())
    print(
        f"{n * k} raw blocks ({args.cfa_pattern}, ensemble {args.ensemble}): PSNR {mean:.4f} dB (peak 1, mean over "
        f"blocks); noisy input {float(noisy_scores.mean()):.4f} dB\n"
        f"reference ({reference.source}): {reference.psnr:.2f} dB; ours - reference: {mean - reference.psnr:+.3f} dB\n"
        f"wrote {result_dir / 'results.csv'} and {mat}"
    )
    return 0


def add_raw_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    _add_common(parser, "datasets/SIDD/benchmark_raw", "results/sidd_raw_benchmark")


def run_raw_benchmark(args: argparse.Namespace) -> int:
    """Denoise SIDD's raw benchmark blocks and write the submission SubmitRaw.mat.

    Reads <input_dir>/BenchmarkNoisyBlocksRaw.mat; writes <result_dir>/mat/SubmitRaw.mat with
    DenoisedBlocksRaw (an N x K cell of float32 H x W blocks), TimeMPRaw (seconds per megapixel, as
    measured here) and OptionalData (MethodName, CfaPattern, Ensemble): upload it to the SIDD benchmark.
    """
    try:
        noisy = load_sidd_raw_blocks(Path(args.input_dir) / "BenchmarkNoisyBlocksRaw.mat", "BenchmarkNoisyBlocksRaw")
        result_dir = check_writable_dir(args.result_dir, "--result_dir")
        denoised, time_mp = _denoise(args, noisy)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    mat = _write_submission(args, result_dir, denoised, time_mp)
    print(f"wrote {mat} ({SIDD_RAW_SUBMISSION_KEY}: {denoised.shape[0]} x {denoised.shape[1]} blocks)")
    return 0
