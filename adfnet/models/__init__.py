"""ADFNet, SADNet and their building blocks; ``build_model`` is the one way to make a network."""

from __future__ import annotations

import argparse

from .adfnet import PLACEMENTS, ADFNet
from .blocks import AFG, CB, DCB, MCB, MDCB, MFI, SEKG, DConv, DynamicBranch, OffsetBlock, dynamic_filter
from .sadnet import ContextBlock, ResBlock, RSABlock, SADNet

__all__ = [
    "ADFNet",
    "AFG",
    "CB",
    "ContextBlock",
    "DCB",
    "DConv",
    "DynamicBranch",
    "MCB",
    "MDCB",
    "MFI",
    "OffsetBlock",
    "RSABlock",
    "ResBlock",
    "SADNet",
    "SEKG",
    "add_model_arguments",
    "build_model",
    "canonical_name",
    "dynamic_filter",
    "model_options",
    "MODEL_NAMES",
    "PLACEMENTS",
]

WIDTHS = {"adfnet": (32, 64, 128, 256), "adfnet_l": (64, 128, 256, 512)}
MODEL_NAMES = (*WIDTHS, "sadnet")
OPTIONS = {"adfnet": ("placement", "dcb", "mdcb", "mfi"), "sadnet": ("n_channel", "offset_channel")}


def canonical_name(name: str) -> str:
    """``"adfnet"``, ``"adfnet_l"`` or ``"sadnet"`` for any accepted spelling (``"ADFNet-L"``, ``"adfnet*"``, ...)."""
    key = name.strip().lower().replace("-", "_").replace("*", "_l")
    if key not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return key


def build_model(name: str, n_colors: int = 3, **options: object) -> ADFNet | SADNet:
    """``"adfnet"``, ``"adfnet_l"`` (also ``"ADFNet-L"``, ``"adfnet*"``: the paper's ADFNet*) or ``"sadnet"``.

    ``n_colors`` is 1 (gray) or 3 (colour, real noise). ``options`` are, for ADFNet, the Table 4
    ablations ``placement``, ``dcb``, ``mdcb``, ``mfi`` (documented on :class:`ADFNet`); for SADNet
    the widths ``n_channel`` and ``offset_channel`` (documented on :class:`SADNet`).
    """
    key = canonical_name(name)
    if n_colors not in (1, 3):
        raise ValueError(f"n_colors must be 1 (gray) or 3 (colour), got {n_colors!r}")
    family = "sadnet" if key == "sadnet" else "adfnet"
    valid = OPTIONS[family]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown model option(s) {', '.join(unknown)} for {key}; valid options: {', '.join(valid)}")
    if family == "sadnet":
        return SADNet(n_colors, **options)  # type: ignore[arg-type]
    return ADFNet(n_colors, WIDTHS[key], **options)  # type: ignore[arg-type]


def add_model_arguments(parser: argparse.ArgumentParser, baselines: tuple[str, ...] = ()) -> None:
    """The model flags shared by train.py, test.py and ``adfnet.complexity`` (Table 4 ablations included).

    ``baselines`` are further ``--model`` names that are not networks (test.py's classical methods).
    """

    def model_arg(text: str) -> str:
        if text.strip().lower() in baselines:
            return text.strip().lower()
        try:
            return _model_arg(text)
        except argparse.ArgumentTypeError as err:
            raise argparse.ArgumentTypeError(f"{err}{''.join(f', {b}' for b in baselines)}") from None

    parser.add_argument(
        "--model",
        default="adfnet",
        type=model_arg,
        help="adfnet, adfnet_l (the paper's ADFNet*) or sadnet"
        + "".join(f", {name}" for name in baselines)
        + "; case and '-' do not matter",
    )
    parser.add_argument(
        "--placement",
        choices=PLACEMENTS,
        default="decoder",
        help="ablation: where DCB + MDCB go (decoder = ADFNet; encoder; everywhere)",
    )
    parser.add_argument("--no_dcb", action="store_true", help="ablation 'without DCB': a CB in its place")
    parser.add_argument("--no_mdcb", action="store_true", help="ablation 'without MDCB': an MCB in its place")
    parser.add_argument("--no_mfi", action="store_true", help="ablation 'without MFI': concatenate, then fuse")


def model_options(args: argparse.Namespace) -> dict[str, object]:
    """The ``build_model`` options selected by :func:`add_model_arguments` flags.

    The ablation flags are ADFNet's: with any other ``--model`` (sadnet, a baseline) they are refused (``ValueError``).
    """
    if args.model not in WIDTHS:
        ablations = {
            "--placement": args.placement != "decoder",
            "--no_dcb": args.no_dcb,
            "--no_mdcb": args.no_mdcb,
            "--no_mfi": args.no_mfi,
        }
        given = [flag for flag, on in ablations.items() if on]
        if given:
            raise ValueError(f"{', '.join(given)}: ablation flags apply to ADFNet only, not to --model {args.model}")
        return {}
    return {"placement": args.placement, "dcb": not args.no_dcb, "mdcb": not args.no_mdcb, "mfi": not args.no_mfi}


def _model_arg(text: str) -> str:
    try:
        return canonical_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
