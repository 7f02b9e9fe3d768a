"""Evaluate ADFNet on synthetic AWGN test sets (the official test.py flags, plus a few).

    adfnet-test --model adfnet --n_colors 3 --weights checkpoints/adfnet_rgb_n50.pt \\
        --input_dir datasets/testsets/McMaster --test_noiseL 50 --chop --save_images

(``python test.py ...`` takes the same flags.) Several ``--input_dir`` and ``--test_noiseL`` values run
in one go; ``--weights`` may contain ``{sigma}`` to pick the per-noise-level checkpoint. Exit code 0
when every image was evaluated, 1 when anything failed (the failures are listed; the other images are
still processed).
"""

from __future__ import annotations

import argparse
import sys

from adfnet.cli.common import (
    add_runtime_arguments,
    check_writable_dir,
    dcn_backend,
    finite_float,
    join_negative_numbers,
    select_device,
)
from adfnet.data.datasets import DATASETS_ROOT
from adfnet.evaluation import (
    DEFAULT_SEEDS,
    EvalOptions,
    check_outputs_apart,
    format_run,
    run_evaluation,
    write_summary_csv,
)
from adfnet.inference import PRECISIONS
from adfnet.models import add_model_arguments, model_options
from adfnet.runtime import tune_allocator

BUNDLED_SETS = {1: DATASETS_ROOT / "testsets/Set12", 3: DATASETS_ROOT / "testsets/McMaster"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="adfnet-test", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    model = p.add_argument_group("model")
    add_model_arguments(model)
    model.add_argument("--n_colors", type=int, default=3, choices=[1, 3], help="1 for gray models, 3 for colour")
    model.add_argument(
        "--weights",
        required=True,
        help="checkpoint (.pt/.pth); '{sigma}' is replaced by each noise level, e.g. adfnet_n{sigma}.pt",
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--input_dir",
        nargs="+",
        default=None,
        help="one or more test-set folders, each with its own folder name (default: bundled Set12 for "
        "gray, McMaster for colour)",
    )
    data.add_argument(
        "--test_noiseL",
        nargs="+",
        type=finite_float(0),
        default=[50.0],
        help="noise level(s) sigma on 0-255 (finite, >= 0)",
    )
    data.add_argument(
        "--seed",
        type=int,
        default=None,
        help=f"noise seed, reset before every image (default: official {DEFAULT_SEEDS[1]} gray, "
        f"{DEFAULT_SEEDS[3]} colour)",
    )
    data.add_argument(
        "--limit",
        type=int,
        default=None,
        help="only the first N images of each set (a quick check; published numbers are full-set means)",
    )
    protocol = p.add_argument_group("protocol")
    protocol.add_argument(
        "--chop",
        action="store_true",
        help="official 4-quadrant chop (less memory, ~same result) in each task's official order: "
        "gray chops the unpadded image, colour pads to a multiple of 8 first",
    )
    protocol.add_argument(
        "--ensemble",
        "--self_ensemble",
        dest="ensemble",
        action="store_true",
        help="x8 self-ensemble (flips and rotations)",
    )
    protocol.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="bf16: bfloat16 autocast, faster on CPUs with bf16 units, output within ~50 dB PSNR of fp32",
    )
    output = p.add_argument_group("output")
    output.add_argument("--result_dir", default="results/test", help="outputs go to <result_dir>/<set>/sigma<N>/")
    output.add_argument("--save_images", action="store_true", help="write denoised images under their input names")
    add_runtime_arguments(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(join_negative_numbers(sys.argv[1:] if argv is None else argv))
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tune_allocator()
    input_dirs = args.input_dir or [BUNDLED_SETS[args.n_colors]]
    options = model_options(args)
    try:
        # everything a user can get wrong about the outputs is checked before a model is loaded
        check_outputs_apart(input_dirs, args.test_noiseL, args.result_dir)
        result_dir = check_writable_dir(args.result_dir, "--result_dir")
        opts = EvalOptions(
            n_colors=args.n_colors,
            device=select_device(args.cpu, args.device),
            seed=args.seed,
            chop=args.chop,
            ensemble=args.ensemble,
            save_images=args.save_images,
            limit=args.limit,
            precision=args.precision,
        )
        with dcn_backend(args.dcn_backend):
            run = run_evaluation(args.model, args.weights, input_dirs, args.test_noiseL, result_dir, opts, options)
    except ValueError as err:  # bad --device / --dcn_backend / --result_dir, clashing or overlapping folders
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(format_run(run, args.model, opts, result_dir, options), flush=True)
    if run.results:
        write_summary_csv(result_dir / "summary.csv", run.results, args.model, args.n_colors, options)
    if run.failures:
        print(f"{run.failures} failure(s): see the errors above", file=sys.stderr)
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
