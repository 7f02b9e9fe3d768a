"""Evaluate ADFNet on synthetic AWGN test sets (the official test.py flags, plus a few).

    adfnet-test --model adfnet --n_colors 3 --weights checkpoints/adfnet_rgb_n50.pt \\
        --input_dir datasets/testsets/McMaster --test_noiseL 50 --chop --save_images
    adfnet-test --model sadnet --protocol sadnet --weights ckpt/SADNET_color_sig50/model_0200_dict.pth \\
        --input_dir datasets/testsets/McMaster --test_noiseL 50

(``python test.py ...`` takes the same flags.) ``--model`` and ``--n_colors`` are read from the
checkpoint when it says what it is (the architecture record every checkpoint of ours carries, else the
first convolution, as ``adfnet-denoise`` reads them); flags that contradict the record are refused.
Several ``--input_dir`` and ``--test_noiseL`` values run in one go; ``--weights`` may contain ``{sigma}``
to pick the per-noise-level checkpoint. Another noise model: ``--noise hg --noise_params 40 10`` (also
``hg_dbsn``, ``mg``, ``poisson_gaussian``; docs/EVALUATION.md); ``--save_noisy npy`` writes the exact
noisy inputs. ``--model bm3d`` runs BM3D (gray) / CBM3D (colour) through the same protocol, without
weights; ``--seeds N`` repeats the run with N noise seeds and reports the spread of each set's mean
(docs/HARNESS.md). The noisy input's PSNR/SSIM is printed beside the result ("noisy input"). Exit code 0
when every image was evaluated, 1 when anything failed (the failures are listed; the other images are
still processed).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from adfnet.checkpoint import infer_model, read_state_dict
from adfnet.cli.common import (
    PRECISION_HELP,
    add_runtime_arguments,
    check_writable_dir,
    command_name,
    dcn_backend,
    finite_float,
    join_negative_numbers,
    select_device,
)
from adfnet.cli.flags import add_model_arguments, add_noise_arguments, model_options
from adfnet.data.datasets import DATASETS_ROOT
from adfnet.data.noise import noise_from_flags, sigma_label
from adfnet.evaluation import (
    DEFAULT_SEEDS,
    PROTOCOLS,
    EvalOptions,
    Evaluation,
    format_run,
    psnr_plots,
    run_evaluation,
    write_summary_csv,
)
from adfnet.evaluation.baselines import BASELINES, check_available
from adfnet.evaluation.seeds import format_spreads, seed_list, seed_rows, spreads, write_seed_rows
from adfnet.evaluation.synthetic import planned_outputs
from adfnet.figures import require_matplotlib
from adfnet.inference import PRECISIONS
from adfnet.models import family
from adfnet.models.spec import RAW_LAYOUTS, SHARED_RAW_LAYOUTS
from adfnet.outputs import check_outputs_apart
from adfnet.runtime import tune_allocator

# The largest --test_noiseL: four times the whole 0-255 range. The noisy input is made by the harness
# from this sigma, so its values are not checked as an image's; a bound still catches typos (1e6).
MAX_SIGMA = 1000.0
BUNDLED_SETS = {1: DATASETS_ROOT / "testsets/Set12", 3: DATASETS_ROOT / "testsets/McMaster"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=command_name("adfnet-test"), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    model = p.add_argument_group("model")
    add_model_arguments(model, baselines=tuple(BASELINES))
    model.set_defaults(model=None)  # None: read from the checkpoint (resolve_model)
    model.add_argument(
        "--n_colors",
        type=int,
        default=None,
        choices=[1, 3],
        help="1 for gray models, 3 for colour (default: read from the checkpoint; 3 when it does not say)",
    )
    model.add_argument(
        "--map_gamma",
        type=finite_float(0, strict=True),
        default=None,
        help="--model dbsn: the weight gamma > 0 of its MAP combination of mu and the noisy image (default 1, the "
        "authors' tests; their colour HG test used 0.9)",
    )
    model.add_argument(
        "--weights",
        help="checkpoint (.pt, .pth or .safetensors); '{sigma}' is replaced by each noise level, e.g. "
        f"adfnet_n{{sigma}}.pt (required, except for the baselines: {', '.join(BASELINES)})",
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
        type=finite_float(0, maximum=MAX_SIGMA, why=" (noise sigma on the 0-255 scale)"),
        default=[50.0],
        help=f"noise level(s) sigma on 0-255, from 0 to {MAX_SIGMA:g}: noisy values then stray far outside "
        "[0, 1], which the harness accepts (the input range check is for images); beyond that the image is "
        "lost in the noise",
    )
    add_noise_arguments(data, "--test_noiseL", "AWGN at each --test_noiseL, the official protocol")
    data.add_argument(
        "--seed",
        type=int,
        default=None,
        help=f"noise seed, reset before every image (default: official {DEFAULT_SEEDS[1]} gray, "
        f"{DEFAULT_SEEDS[3]} colour; 0 with --protocol dbsn, as DBSN's test)",
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
        "--protocol",
        choices=sorted(PROTOCOLS),
        default="adfnet",
        help="adfnet: seeded float noise, reflect padding, 8-bit PSNR/SSIM (ours, ADFNet's test); sadnet: "
        "SADNet's test.py (noisy clipped and quantised to 8 bits, crop to a multiple of 8, PSNR and MATLAB-style "
        "SSIM on floats); dbsn: DBSN's test (its NumPy noise reseeded with 0 per image, PSNR on clamped floats). "
        "results.csv, summary.csv and the tables name it",
    )
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
        help=PRECISION_HELP,
    )
    output = p.add_argument_group("output")
    output.add_argument("--result_dir", default="results/test", help="outputs go to <result_dir>/<set>/sigma<N>/")
    output.add_argument("--save_images", action="store_true", help="write denoised images under their input names")
    output.add_argument(
        "--save_noisy",
        choices=("npy", "png16"),
        default=None,
        help="write each noisy input to <set>/<noise>/noisy/: npy = the exact unclipped float32 H x W x C "
        "values; png16 = clipped to [0, 1], round(65535 x) in a 16-bit PNG (not exact where clipped)",
    )
    output.add_argument(
        "--save_comparison",
        action="store_true",
        help="per image, a noisy | ours | clean panel with a zoomed crop and the PSNRs: "
        "<result_dir>/<set>/sigma<N>/comparison/",
    )
    output.add_argument(
        "--plot",
        action="store_true",
        help="per set, PSNR per noise level against the published numbers: <result_dir>/<set>/psnr_per_sigma.png",
    )
    add_runtime_arguments(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(join_negative_numbers(sys.argv[1:] if argv is None else argv))
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    _noises(parser, args)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    if args.model in BASELINES:
        if args.chop:
            parser.error(f"--chop splits an image for a network's memory; --model {args.model} runs whole images")
        if args.weights:
            parser.error(f"--model {args.model} takes no --weights")
    elif not args.weights:
        parser.error(f"--weights is required for --model {args.model or 'adfnet'}")
    # What the user gave; resolve_model reads the rest from the checkpoint (these defaults otherwise).
    args.given = {"model": args.model, "n_colors": args.n_colors}
    args.model = args.model or "adfnet"
    args.n_colors = args.n_colors or 3
    return args


def _noises(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``args.noises``: the noise models of the run (:func:`adfnet.data.noise.noise_from_flags`)."""
    try:
        args.noises = noise_from_flags(args.noise, args.noise_params, args.test_noiseL)
    except ValueError as err:
        parser.error(str(err))
    if any(noise.name == "learned" for noise in args.noises):
        parser.error("--noise learned is a trained network's noise, for training (distillation): test with known noise")
    awgn = all(noise.is_awgn for noise in args.noises)
    if awgn and max(noise.sigma for noise in args.noises) > MAX_SIGMA:
        parser.error(f"--noise awgn --noise_params: sigma must be <= {MAX_SIGMA:g}, like --test_noiseL")
    if not awgn and args.weights and "{sigma}" in args.weights:
        parser.error(f"--weights {args.weights} has a {{sigma}} placeholder, but --noise {args.noise} has no sigma")
    if not awgn and args.model in BASELINES:
        parser.error(f"--model {args.model} is given the true AWGN sigma: use --test_noiseL, not --noise {args.noise}")


def resolve_model(args: argparse.Namespace) -> None:
    """``args.model`` and ``args.n_colors`` as the checkpoint says (:func:`adfnet.checkpoint.infer_model`, the
    reading adfnet-denoise, adfnet-export and torch.hub share): its architecture record, else its keys and
    shapes; flags given that contradict the record are a ``ValueError`` naming them. The first readable
    ``{sigma}`` checkpoint decides; one that cannot be read is left to the evaluation, which reports it for its
    noise level. ``args.recorded_options``: the options of a network other than ADFNet (MWRCANet's widths, ...),
    which have no flags: the checkpoint's (ADFNet's are its ablation flags)."""
    args.recorded_options = {}
    if args.model in BASELINES:
        return
    for noise in args.noises:
        path = args.weights.replace("{sigma}", sigma_label(noise.sigma)) if "{sigma}" in args.weights else args.weights
        try:
            state = read_state_dict(path)
        except (OSError, ValueError):
            continue
        try:
            default = (args.model, args.n_colors)
            spec = infer_model(state, args.given["model"], args.given["n_colors"], default=default)
        except ValueError as err:
            raise ValueError(f"--weights {path}: {err}") from None
        args.model, args.n_colors = spec.name, spec.n_colors
        if family(spec.name) != "adfnet":
            args.recorded_options = dict(spec.options)
        if args.n_colors not in BUNDLED_SETS or (args.n_colors == 1 and args.model in SHARED_RAW_LAYOUTS):
            raise ValueError(
                f"--weights {path} is a raw {args.model} ({RAW_LAYOUTS.get(args.n_colors, args.n_colors)}, n_colors="
                f"{args.n_colors}): adfnet-test evaluates gray and colour models (raw models: adfnet-real sidd-raw-val)"
            )
        return


def _seed_dirs(result_dir: str | Path, seeds: list[int]) -> list[Path]:
    """Where each seed's outputs go: ``result_dir`` itself for one seed, ``result_dir/seed<S>`` for several."""
    return [Path(result_dir)] if len(seeds) == 1 else [Path(result_dir) / f"seed{seed}" for seed in seeds]


def _run_seed(args, input_dirs, opts: EvalOptions, folder: Path, options, n_seeds: int) -> Evaluation:
    """One evaluation at noise seed ``opts.seed`` into ``folder``: run, print, summary.csv, plots."""
    with dcn_backend(args.dcn_backend):
        run = run_evaluation(args.model, args.weights or "", input_dirs, args.noises, folder, opts, options)
    if n_seeds > 1:
        print(f"\n=== noise seed {opts.seed} ===")
    print(format_run(run, args.model, opts, folder, options), flush=True)
    if run.results:
        write_summary_csv(folder / "summary.csv", run.results, args.model, args.n_colors, options, args.protocol)
    if args.plot and run.results:
        for path in psnr_plots(run, folder, args.model, args.n_colors, options):
            print(f"plot: {path}")
    return run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tune_allocator()
    try:
        resolve_model(args)
        input_dirs = args.input_dir or [BUNDLED_SETS[args.n_colors]]
        options = {**model_options(args), **args.recorded_options}
        if args.map_gamma is not None:
            if args.model != "dbsn":
                raise ValueError(f"--map_gamma weights DBSN's MAP combination; --model {args.model} has none")
            options["gamma"] = args.map_gamma
        if args.model in BASELINES:
            check_available(args.model)
        # everything a user can get wrong about the outputs is checked before a model is loaded
        first_seed = EvalOptions(n_colors=args.n_colors, seed=args.seed, protocol=args.protocol).noise_seed
        seeds = seed_list(first_seed, args.seeds)
        for folder in _seed_dirs(args.result_dir, seeds):
            check_outputs_apart(planned_outputs(input_dirs, args.noises, folder), input_dirs)
        if args.plot:
            require_matplotlib("--plot")
        result_dir = check_writable_dir(args.result_dir, "--result_dir")
        opts = EvalOptions(
            n_colors=args.n_colors,
            device=select_device(args.cpu, args.device),
            seed=args.seed,
            chop=args.chop,
            ensemble=args.ensemble,
            save_images=args.save_images,
            save_comparison=args.save_comparison,
            limit=args.limit,
            save_noisy=args.save_noisy,
            protocol=args.protocol,
            precision=args.precision,
        )
        failures, rows = 0, []
        for seed, folder in zip(seeds, _seed_dirs(result_dir, seeds), strict=True):
            run = _run_seed(args, input_dirs, dataclasses.replace(opts, seed=seed), folder, options, len(seeds))
            failures += run.failures
            rows += seed_rows(args.model, args.n_colors, seed, run.results)
            write_seed_rows(result_dir / "seeds.csv", rows)  # after every seed: a killed run keeps the done ones
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
