"""ADFNet, SADNet and their building blocks; ``build_model`` is the one way to make a network."""

from __future__ import annotations

import argparse
import inspect

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

    ``n_colors`` is 1 (gray), 3 (colour, real noise) or 4 (packed Bayer raw: the four CFA planes at half
    resolution, see :mod:`adfnet.data.raw`). ``options`` are, for ADFNet, the Table 4 ablations
    ``placement``, ``dcb``, ``mdcb``, ``mfi`` (documented on :class:`ADFNet`); for SADNet the widths
    ``n_channel`` and ``offset_channel`` (documented on :class:`SADNet`).
    The returned model's ``architecture`` (name, colours and every option) is recorded in the checkpoints
    written from it and checked when weights are loaded (``adfnet.checkpoint``): ``mfi`` changes no parameter.
    """
    key = canonical_name(name)
    if n_colors not in (1, 3, 4):
        raise ValueError(f"n_colors must be 1 (gray), 3 (colour) or 4 (packed raw), got {n_colors!r}")
    family = "sadnet" if key == "sadnet" else "adfnet"
    valid = OPTIONS[family]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown model option(s) {', '.join(unknown)} for {key}; valid options: {', '.join(valid)}")
    widths = () if family == "sadnet" else (WIDTHS[key],)
    model = (SADNet if family == "sadnet" else ADFNet)(n_colors, *widths, **options)  # type: ignore[arg-type]
    defaults = {k: inspect.signature(type(model)).parameters[k].default for k in valid}
    model.architecture = {"model": key, "n_colors": n_colors, **defaults, **options}
    return model


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model flags shared by train.py, test.py and ``adfnet.complexity`` (Table 4 ablations included)."""
    parser.add_argument(
        "--model",
        default="adfnet",
        type=_model_arg,
        help="adfnet, adfnet_l (the paper's ADFNet*) or sadnet; case and '-' do not matter",
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

    The ablation flags are ADFNet's: with ``--model sadnet`` they are refused (``ValueError``).
    """
    if args.model == "sadnet":
        ablations = {
            "--placement": args.placement != "decoder",
            "--no_dcb": args.no_dcb,
            "--no_mdcb": args.no_mdcb,
            "--no_mfi": args.no_mfi,
        }
        given = [flag for flag, on in ablations.items() if on]
        if given:
            raise ValueError(f"{', '.join(given)}: ablation flags apply to ADFNet only, not to --model sadnet")
        return {}
    return {"placement": args.placement, "dcb": not args.no_dcb, "mdcb": not args.no_mdcb, "mfi": not args.no_mfi}


def _model_arg(text: str) -> str:
    try:
        return canonical_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
