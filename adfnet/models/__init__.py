"""ADFNet, SADNet, DBSN, their building blocks, the Fig. 7 backbones (DnCNN, RDN) and the wavelet networks (MWCNN,
MWRCANet, MWResNet); ``build_model`` makes them all."""

from __future__ import annotations

import argparse
import inspect
import numbers
from functools import partial

from .adfnet import PLACEMENTS, ADFNet
from .blocks import AFG, CB, DCB, MCB, MDCB, MFI, SEKG, DConv, DynamicBranch, OffsetBlock, dynamic_filter
from .dbsn import DBSN, DilatedBSN, SigmaMuNet, SigmaNNet
from .dncnn import DnCNN
from .mwcnn import MWCNN
from .mwrcanet import MWRCANet
from .rdn import RDB, RDN
from .sadnet import ContextBlock, ResBlock, RSABlock, SADNet

__all__ = [
    "ADFNet",
    "AFG",
    "CB",
    "ContextBlock",
    "DBSN",
    "DCB",
    "DConv",
    "DilatedBSN",
    "DnCNN",
    "DynamicBranch",
    "MCB",
    "MDCB",
    "MFI",
    "MWCNN",
    "MWRCANet",
    "OffsetBlock",
    "RDB",
    "RDN",
    "RSABlock",
    "ResBlock",
    "SADNet",
    "SEKG",
    "SigmaMuNet",
    "SigmaNNet",
    "add_model_arguments",
    "build_model",
    "canonical_name",
    "dynamic_filter",
    "model_options",
    "MODEL_NAMES",
    "PLACEMENTS",
]

WIDTHS = {"adfnet": (32, 64, 128, 256), "adfnet_l": (64, 128, 256, 512)}
MODEL_NAMES = (*WIDTHS, "sadnet", "dncnn", "rdn", "dbsn", "mwrcanet", "mwresnet", "mwcnn")
WAVELET_WIDTHS = ("filters_level1", "filters_level2", "filters_level3")
OPTIONS = {
    "adfnet": ("placement", "dcb", "mdcb", "mfi"),
    "sadnet": ("n_channel", "offset_channel"),
    "dncnn": ("depth", "channels", "dconv"),
    "rdn": ("blocks", "channels", "growth", "layers", "mdcb"),
    "dbsn": tuple(p for p in inspect.signature(DBSN).parameters if p != "n_colors"),
    "mwrcanet": (*WAVELET_WIDTHS, "n_rb"),
    "mwresnet": (*WAVELET_WIDTHS, "n_rb"),
    "mwcnn": WAVELET_WIDTHS,
}
# MWResNet is MWRCANet with plain residual blocks, 4 per group (see its docstring).
CLASSES = {
    "adfnet": ADFNet,
    "sadnet": SADNet,
    "dncnn": DnCNN,
    "rdn": RDN,
    "dbsn": DBSN,
    "mwrcanet": MWRCANet,
    "mwresnet": partial(MWRCANet, block="res", n_rb=4),
    "mwcnn": MWCNN,
}
# The authors' layout where it is not colour: one plane (a Bayer mosaic for MWRCANet, gray for MWCNN).
DEFAULT_COLORS = {"mwrcanet": 1, "mwresnet": 1, "mwcnn": 1}


def canonical_name(name: str) -> str:
    """The key in :data:`MODEL_NAMES` for any accepted spelling (``"ADFNet-L"``, ``"adfnet*"``, ``"DnCNN"``, ...)."""
    key = name.strip().lower().replace("-", "_").replace("*", "_l")
    if key not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return key


def build_model(
    name: str, n_colors: int | None = None, **options: object
) -> ADFNet | SADNet | DnCNN | RDN | DBSN | MWRCANet | MWCNN:
    """``"adfnet"``, ``"adfnet_l"`` (also ``"ADFNet-L"``, ``"adfnet*"``: the paper's ADFNet*), ``"sadnet"``,
    ``"dncnn"``, ``"rdn"``, ``"dbsn"``, ``"mwrcanet"``, ``"mwresnet"`` or ``"mwcnn"``.

    ``n_colors`` is 1 (gray), 3 (colour, real noise) or 4 (packed Bayer raw: the four CFA planes at half
    resolution, see :mod:`adfnet.data.raw`); by default 3, and 1 for the wavelet networks, their authors'
    layout (for MWRCANet and MWResNet one Bayer plane, see :mod:`adfnet.models.wavelet`). ``options`` are, for
    ADFNet, the Table 4 ablations ``placement``, ``dcb``, ``mdcb``, ``mfi`` (documented on :class:`ADFNet`); for
    SADNet the widths ``n_channel`` and ``offset_channel`` (documented on :class:`SADNet`); for the Fig. 7 backbones
    ``depth``, ``channels``, ``dconv`` (:class:`DnCNN`) and ``blocks``, ``channels``, ``growth``, ``layers``,
    ``mdcb`` (:class:`RDN`); for ``"dbsn"`` (gray or colour only) the authors' configuration options documented
    on :class:`DBSN` (default: their gray AWGN configuration for n_colors=1, colour MG for 3); for the wavelet
    networks the widths ``filters_level1``, ``filters_level2``, ``filters_level3`` and, but for MWCNN, ``n_rb``
    (:class:`MWRCANet`, :class:`MWCNN`).
    The returned model's ``architecture`` (name, colours and every option) is recorded in the checkpoints
    written from it and checked when weights are loaded (``adfnet.checkpoint``): ``mfi`` changes no parameter.
    """
    key = canonical_name(name)
    n_colors = DEFAULT_COLORS.get(key, 3) if n_colors is None else n_colors
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
    recorded = getattr(model, "architecture_options", None)  # DBSN: defaults resolved by n_colors, no MAP settings
    if recorded is None:
        recorded = {**{k: inspect.signature(CLASSES[family]).parameters[k].default for k in valid}, **options}
    model.architecture = {"model": key, "n_colors": n_colors, **recorded}
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
