"""ADFNet, SADNet, their building blocks and the Fig. 7 backbones (DnCNN, RDN); ``build_model`` makes them all."""

from __future__ import annotations

import argparse
import inspect
import numbers

from .adfnet import PLACEMENTS, ADFNet
from .blocks import AFG, CB, DCB, MCB, MDCB, MFI, SEKG, DConv, DynamicBranch, OffsetBlock, dynamic_filter
from .dncnn import DnCNN
from .rdn import RDB, RDN
from .sadnet import ContextBlock, ResBlock, RSABlock, SADNet

__all__ = [
    "ADFNet",
    "AFG",
    "CB",
    "ContextBlock",
    "DCB",
    "DConv",
    "DnCNN",
    "DynamicBranch",
    "MCB",
    "MDCB",
    "MFI",
    "OffsetBlock",
    "RDB",
    "RDN",
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
MODEL_NAMES = (*WIDTHS, "sadnet", "dncnn", "rdn")
OPTIONS = {
    "adfnet": ("placement", "dcb", "mdcb", "mfi"),
    "sadnet": ("n_channel", "offset_channel"),
    "dncnn": ("depth", "channels", "dconv"),
    "rdn": ("blocks", "channels", "growth", "layers", "mdcb"),
}
CLASSES = {"adfnet": ADFNet, "sadnet": SADNet, "dncnn": DnCNN, "rdn": RDN}


def canonical_name(name: str) -> str:
    """The key in :data:`MODEL_NAMES` for any accepted spelling (``"ADFNet-L"``, ``"adfnet*"``, ``"DnCNN"``, ...)."""
    key = name.strip().lower().replace("-", "_").replace("*", "_l")
    if key not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return key


def build_model(name: str, n_colors: int = 3, **options: object) -> ADFNet | SADNet | DnCNN | RDN:
    """``"adfnet"``, ``"adfnet_l"`` (also ``"ADFNet-L"``, ``"adfnet*"``: the paper's ADFNet*), ``"sadnet"``,
    ``"dncnn"`` or ``"rdn"``.

    ``n_colors`` is 1 (gray), 3 (colour, real noise) or 4 (packed Bayer raw: the four CFA planes at half
    resolution, see :mod:`adfnet.data.raw`). ``options`` are, for ADFNet, the Table 4 ablations
    ``placement``, ``dcb``, ``mdcb``, ``mfi`` (documented on :class:`ADFNet`); for SADNet the widths
    ``n_channel`` and ``offset_channel`` (documented on :class:`SADNet`); for the Fig. 7 backbones
    ``depth``, ``channels``, ``dconv`` (:class:`DnCNN`) and ``blocks``, ``channels``, ``growth``, ``layers``,
    ``mdcb`` (:class:`RDN`).
    The returned model's ``architecture`` (name, colours and every option) is recorded in the checkpoints
    written from it and checked when weights are loaded (``adfnet.checkpoint``): ``mfi`` changes no parameter.
    """
    key = canonical_name(name)
    # an int: 3.0 == 3 and True == 1 would pass the membership test and fail deep inside torch
    if isinstance(n_colors, bool) or not isinstance(n_colors, numbers.Integral) or n_colors not in (1, 3, 4):
        raise ValueError(
            f"n_colors must be 1 (gray), 3 (colour) or 4 (packed raw), an int; got {n_colors!r} "
            f"({type(n_colors).__name__})"
        )
    n_colors = int(n_colors)
    family = "adfnet" if key in WIDTHS else key
    valid = OPTIONS[family]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown model option(s) {', '.join(unknown)} for {key}; valid options: {', '.join(valid)}")
    widths = (WIDTHS[key],) if family == "adfnet" else ()
    model = CLASSES[family](n_colors, *widths, **options)  # type: ignore[arg-type]
    defaults = {k: inspect.signature(type(model)).parameters[k].default for k in valid}
    model.architecture = {"model": key, "n_colors": n_colors, **defaults, **options}
    return model


def add_model_arguments(parser: argparse.ArgumentParser, baselines: tuple[str, ...] = ()) -> None:
    """The model flags shared by train.py, test.py and ``adfnet.complexity`` (Table 4 ablations included).

    ``baselines`` are further ``--model`` names that are not networks (test.py's classical methods).
    """

    def model_arg(text: str) -> str:
        if text.strip().lower() in baselines:
            return text.strip().lower()
        try:
            return canonical_name(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"{err}{''.join(f', {b}' for b in baselines)}") from None

    parser.add_argument(
        "--model",
        default="adfnet",
        type=model_arg,
        help="adfnet, adfnet_l (the paper's ADFNet*), sadnet, dncnn or rdn"
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

    The ablation flags are ADFNet's: with another ``--model`` (sadnet, a backbone, a baseline) they are
    refused (``ValueError``). The options of SADNet, DnCNN and RDN have no flags: a namespace holding them
    as attributes (``depth``, ``dconv``, ...; ``adfnet.cli.fig7`` builds one) passes them on, absent ones
    keep their defaults; a baseline has none.
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
        return {k: getattr(args, k) for k in OPTIONS.get(args.model, ()) if hasattr(args, k)}
    return {"placement": args.placement, "dcb": not args.no_dcb, "mdcb": not args.no_mdcb, "mfi": not args.no_mfi}
