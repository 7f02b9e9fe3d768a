"""Evaluate ADFNet on synthetic AWGN test sets (the official test.py flags, plus a few).

    adfnet-test --model adfnet --n_colors 3 --weights checkpoints/adfnet_rgb_n50.pt \\
        --input_dir datasets/testsets/McMaster --test_noiseL 50 --chop --save_images

(``python test.py ...`` takes the same flags.) Several ``--input_dir`` and ``--test_noiseL`` values run
in one go; ``--weights`` may contain ``{sigma}`` to pick the per-noise-level checkpoint. ``--model bm3d``
runs BM3D (gray) / CBM3D (colour) through the same protocol, without weights; ``--seeds N`` repeats
the run with N noise seeds and reports the spread of each set's mean (docs/HARNESS.md). Exit code 0
when every image was evaluated, 1 when anything failed (the failures are listed; the other images are
still processed).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

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
from adfnet.evaluation.baselines import BASELINES, check_available
from adfnet.evaluation.seeds import format_spreads, seed_list, seed_rows, spreads, write_seed_rows
from adfnet.models import add_model_arguments, model_options

BUNDLED_SETS = {1: DATASETS_ROOT / "testsets/Set12", 3: DATASETS_ROOT / "testsets/McMaster"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="adfnet-test", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    model = p.add_argument_group("model")
    add_model_arguments(model, baselines=tuple(BASELINES))
    model.add_argument("--n_colors", type=int, default=3, choices=[1, 3], help="1 for gray models, 3 for colour")
    model.add_argument(
        "--weights",
        help="checkpoint (.pt/.pth); '{sigma}' is replaced by each noise level, e.g. adfnet_n{sigma}.pt "
        f"(required, except for the baselines: {', '.join(BASELINES)})",
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
        "--seeds",
        type=int,
        default=1,
        help="run N noise seeds (the seed above, then +1, +2, ...) and report the mean and std of each set's "
        "PSNR over them; each seed's outputs go to <result_dir>/seed<S>/ (default 1: <result_dir>/)",
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
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    if args.model in BASELINES:
        if args.chop:
            parser.error(f"--chop splits an image for a network's memory; --model {args.model} runs whole images")
        if args.weights:
            parser.error(f"--model {args.model} takes no --weights")
    elif not args.weights:
        parser.error(f"--weights is required for --model {args.model}")
    return args


def _seed_dirs(result_dir: str | Path, seeds: list[int]) -> list[Path]:
    """Where each seed's outputs go: ``result_dir`` itself for one seed, ``result_dir/seed<S>`` for several."""
    return [Path(result_dir)] if len(seeds) == 1 else [Path(result_dir) / f"seed{seed}" for seed in seeds]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    input_dirs = args.input_dir or [BUNDLED_SETS[args.n_colors]]
    try:
        options = model_options(args)
        if args.model in BASELINES:
            check_available(args.model)
        # everything a user can get wrong about the outputs is checked before a model is loaded
        first_seed = DEFAULT_SEEDS[args.n_colors] if args.seed is None else args.seed
        seeds = seed_list(first_seed, args.seeds)
        for folder in _seed_dirs(args.result_dir, seeds):
            check_outputs_apart(input_dirs, args.test_noiseL, folder)
        result_dir = check_writable_dir(args.result_dir, "--result_dir")
        opts = EvalOptions(
            n_colors=args.n_colors,
            device=select_device(args.cpu, args.device),
            seed=args.seed,
            chop=args.chop,
            ensemble=args.ensemble,
            save_images=args.save_images,
            limit=args.limit,
        )
        failures, rows = 0, []
        for seed, folder in zip(seeds, _seed_dirs(result_dir, seeds), strict=True):
            seed_opts = dataclasses.replace(opts, seed=seed)
            with dcn_backend(args.dcn_backend):
                run = run_evaluation(
                    args.model, args.weights or "", input_dirs, args.test_noiseL, folder, seed_opts, options
                )
            if len(seeds) > 1:
                print(f"\n=== noise seed {seed} ===")
            print(format_run(run, args.model, seed_opts, folder, options), flush=True)
            if run.results:
                write_summary_csv(folder / "summary.csv", run.results, args.model, args.n_colors, options)
            rows += seed_rows(args.model, args.n_colors, seed, run.results)
            write_seed_rows(result_dir / "seeds.csv", rows)  # after every seed: a killed run keeps the done ones
            failures += run.failures
    except ValueError as err:  # bad --device / --dcn_backend / --result_dir, clashing or overlapping folders
        print(f"error: {err}", file=sys.stderr)
        return 1
    if len(seeds) > 1 and rows:
        print(f"\nSpread over noise seeds {seeds[0]}..{seeds[-1]} (mean PSNR of each set per seed; std over seeds):")
        print(format_spreads(spreads(rows), options), flush=True)
    if failures:
        print(f"{failures} failure(s): see the errors above", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
