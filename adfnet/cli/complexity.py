"""Parameters and MACs of ADFNet: ``adfnet-complexity --model adfnet --size 128 [--thop_convention]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from adfnet.cli.common import command_name
from adfnet.cli.flags import add_model_arguments, model_options
from adfnet.complexity import report
from adfnet.models import ADFNet


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=command_name("adfnet-complexity"), description=__doc__)
    add_model_arguments(parser.add_argument_group("model"))
    parser.add_argument(
        "--n_colors", type=int, default=3, choices=(1, 3), help="1 for a gray model, 3 for colour (default 3)"
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs="+",
        default=[128],
        metavar=("H", "W"),
        help=f"input H [W] (default 128; multiples of {ADFNet.size_multiple})",
    )
    parser.add_argument(
        "--thop_convention",
        action="store_true",
        help="count as the official figures did (old thop: DCN and dynamic filtering left out)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if len(args.size) > 2 or any(n % ADFNet.size_multiple for n in args.size):
        parser.error(f"--size takes H or H W, multiples of {ADFNet.size_multiple}")
    try:
        print(report(args.model, args.n_colors, args.size, args.thop_convention, **model_options(args)))
    except ValueError as err:  # e.g. an unknown model name
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
