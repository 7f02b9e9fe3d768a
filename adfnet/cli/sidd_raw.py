"""SIDD raw tools of ``adfnet-real``: the raw validation blocks (scored) and the raw benchmark (submission).

SIDD's raw files hold ``N x K x H x W`` float32 Bayer blocks in [0, 1] (40 x 32 x 256 x 256):
``ValidationNoisyBlocksRaw.mat`` / ``ValidationGtBlocksRaw.mat`` (variables of the same names) and
``BenchmarkNoisyBlocksRaw.mat``. The score is MWRCANet's: PSNR with peak 1 per block on the float output,
averaged over all blocks. ``--raw_layout`` says how a block reaches the network:

* ``packed`` (ours, and the only layout of ADFNet and SADNet): packed in ``--cfa_pattern`` to R, Gr, Gb, B for a
  4-channel model (trained with ``--raw``), optionally with the CFA-aware x8 ensemble, and unpacked;
* ``plane`` (MWRCANet's protocol, the default of ``--model mwrcanet`` / ``mwresnet``): the block as stored, one
  Bayer plane, to the one-plane network, whose first Haar transform packs it; ``--ensemble`` is then the
  authors' geometric x8, under which six of the eight passes see another CFA pattern.

MWRCANet's and MWResNet's weights serve both layouts (a checkpoint of either loads into the other), so one
checkpoint is scored under both protocols. The published numbers (MWRCANet, NTIRE 2020) are printed beside ours.

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

from adfnet.checkpoint import load_checkpoint, read_state_dict
from adfnet.cli.common import check_writable_dir, dcn_backend, print_note, select_device
from adfnet.cli.flags import checkpoint_model_spec
from adfnet.data.raw import CFA_PATTERNS
from adfnet.errors import UserError
from adfnet.evaluation.published import PUBLISHED_RAW
from adfnet.evaluation.raw import RAW_LAYOUTS, denoise_raw_blocks, score_raw_blocks
from adfnet.fileio import text_file
from adfnet.matio import SIDD_RAW_SUBMISSION_KEY, load_sidd_raw_blocks, save_sidd_raw_submission
from adfnet.models.spec import SHARED_RAW_LAYOUTS

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
    parser.add_argument(
        "--raw_layout",
        choices=tuple(RAW_LAYOUTS),
        default=None,
        help="how a block reaches the network: packed (ours: packed in --cfa_pattern, CFA-aware x8) or plane "
        "(MWRCANet's protocol: one Bayer plane as stored, the authors' geometric x8); default plane for --model "
        "mwrcanet and mwresnet, packed otherwise",
    )
    parser.add_argument(
        "--method_name", default=None, help="OptionalData.MethodName of the submission (default: '<model> (raw)')"
    )


def raw_layout(args: argparse.Namespace) -> str:
    """``--raw_layout``, or the default of ``--model``: MWRCANet's one plane for the networks that take it."""
    if args.raw_layout is not None:
        return args.raw_layout
    return "plane" if args.model in SHARED_RAW_LAYOUTS else "packed"


def _denoise(args: argparse.Namespace, noisy: np.ndarray) -> tuple[np.ndarray, float]:
    layout = raw_layout(args)
    if layout == "plane" and args.model not in SHARED_RAW_LAYOUTS:
        raise UserError(
            f"--raw_layout plane is MWRCANet's one-Bayer-plane layout (--model {' or '.join(SHARED_RAW_LAYOUTS)}); "
            f"--model {args.model} takes packed raw: leave --raw_layout out or give packed"
        )
    n_colors = 1 if layout == "plane" else 4
    device = select_device(args.cpu, args.device)
    with dcn_backend(args.dcn_backend):
        state = read_state_dict(args.weights)
        spec = checkpoint_model_spec(args, state, n_colors)
        if spec.n_colors != n_colors:
            raise UserError(
                f"--weights {args.weights} holds a {spec.name} for n_colors={spec.n_colors} (not raw): the raw tools "
                "run raw models, packed raw (n_colors=4, trained with --raw) or, for MWRCANet and MWResNet, either "
                "raw layout"
            )
        model, _ = load_checkpoint(state, spec, device=device, note=print_note)
        return denoise_raw_blocks(model, noisy, device, args.cfa_pattern, args.chop, args.ensemble, layout)


def _write_submission(args: argparse.Namespace, result_dir: Path, blocks: np.ndarray, time_mp: float) -> Path:
    path = result_dir / "mat" / SUBMISSION
    optional = {
        "MethodName": args.method_name or f"{args.model} (raw)",
        "CfaPattern": args.cfa_pattern if raw_layout(args) == "packed" else "as stored",
        "Layout": raw_layout(args),
        "Ensemble": str(args.ensemble),
    }
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
    mean = float(scores.mean())
    print(
        f"{n * k} raw blocks, {args.model}, {_protocol(args)}: PSNR {mean:.4f} dB (peak 1, mean over blocks); noisy "
        f"input {float(noisy_scores.mean()):.4f} dB\n{_beside_published(args, mean)}\n"
        f"wrote {result_dir / 'results.csv'} and {mat}"
    )
    return 0


def _protocol(args: argparse.Namespace) -> str:
    layout = raw_layout(args)
    where = f"packed in {args.cfa_pattern}" if layout == "packed" else "one Bayer plane as stored"
    ensemble = {"packed": "CFA-aware x8", "plane": "the authors' geometric x8"}[layout] if args.ensemble else "plain"
    return f"{where}, {ensemble}"


def _beside_published(args: argparse.Namespace, mean: float) -> str:
    """The published numbers (with and without the ensemble), ours minus the matching one, and whether it is the
    same protocol (the authors': one plane, their geometric x8)."""
    plain, x8 = PUBLISHED_RAW["sidd_raw_val"], PUBLISHED_RAW["sidd_raw_val_ensemble"]
    reference = x8 if args.ensemble else plain
    same = raw_layout(args) == "plane" or not args.ensemble
    caveat = (
        "the same protocol"
        if same
        else "not like-for-like: theirs is the geometric x8 on one plane (--raw_layout plane), ours the CFA-aware x8"
    )
    return (
        f"published, MWRCANet (NTIRE 2020 raw winner), SIDD raw validation: {plain.psnr:.2f} dB without, {x8.psnr:.2f} "
        f"dB with its x8 ensemble; ours - published ({'x8' if args.ensemble else 'without'}): "
        f"{mean - reference.psnr:+.3f} dB ({caveat})"
    )


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
    print(
        f"wrote {mat} ({SIDD_RAW_SUBMISSION_KEY}: {denoised.shape[0]} x {denoised.shape[1]} blocks; {args.model}, "
        f"{_protocol(args)})"
    )
    return 0
