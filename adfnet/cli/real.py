"""Real-noise tools (``adfnet-real <tool>``): denoise and score SIDD, denoise DND, score and bundle submissions.

    adfnet-real sidd-val-mat   --input_dir datasets/SIDD/val_mat --weights checkpoints/adfnet_real.pth
    adfnet-real sidd-val-png   --input_dir datasets/SIDD/val --save_images
    adfnet-real sidd-benchmark --input_dir datasets/SIDD/benchmark
    adfnet-real dnd            --input_dir datasets/DND
    adfnet-real score-sidd     --submission results/sidd_val_mat/mat/SubmitSrgb.mat --gt .../ValidationGtBlocksSrgb.mat
    adfnet-real bundle-dnd     --mat_dir results/dnd/mat
    adfnet-real sidd-raw-val   --input_dir datasets/SIDD/val_raw --weights checkpoints/adfnet_raw.pt [--ensemble]
    adfnet-real sidd-raw-benchmark --input_dir datasets/SIDD/benchmark_raw --weights checkpoints/adfnet_raw.pt

The official script names (scripts/test_sidd_val_mat.py, ...) run the same tools. ``adfnet-real <tool> -h``
describes each one.
"""

from __future__ import annotations

import argparse
import sys

from adfnet.cli import dnd, sidd, sidd_raw
from adfnet.cli.common import join_negative_numbers
from adfnet.cli.flags import add_real_model_arguments
from adfnet.fileio import WriteError

# tool name -> (the function adding its flags, the function running it)
TOOLS = {
    "sidd-val-mat": (sidd.add_val_mat_arguments, sidd.run_val_mat),
    "sidd-val-png": (sidd.add_val_png_arguments, sidd.run_val_png),
    "sidd-benchmark": (sidd.add_benchmark_arguments, sidd.run_benchmark),
    "score-sidd": (sidd.add_score_arguments, sidd.run_score),
    "dnd": (dnd.add_denoise_arguments, dnd.run_denoise),
    "bundle-dnd": (dnd.add_bundle_arguments, dnd.run_bundle),
    "sidd-raw-val": (sidd_raw.add_raw_val_arguments, sidd_raw.run_raw_val),
    "sidd-raw-benchmark": (sidd_raw.add_raw_benchmark_arguments, sidd_raw.run_raw_benchmark),
}
DENOISERS = ("sidd-val-mat", "sidd-val-png", "sidd-benchmark", "dnd", "sidd-raw-val", "sidd-raw-benchmark")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adfnet-real", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    tools = parser.add_subparsers(dest="tool", required=True, metavar="<tool>")
    for name, (add_arguments, run) in TOOLS.items():
        doc = run.__doc__
        sub = tools.add_parser(
            name,
            help=doc.splitlines()[0].replace("%", "%%"),
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_arguments(sub)
        if name in DENOISERS:
            add_real_model_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(join_negative_numbers(sys.argv[1:] if argv is None else argv))
    run = TOOLS[args.tool][1]
    try:
        return run(args)
    except WriteError as err:  # a full disk or an unwritable output stops any tool with its one line
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
