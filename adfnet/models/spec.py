"""Which network is which: the model table, :class:`ModelSpec` (the architecture record) and ``build_model``.

A checkpoint's ``state_dict`` alone cannot tell every architecture apart (the Table 4 "without MFI" ablation
has no weights of its own), so every model made here carries its :class:`ModelSpec` (``model.spec``), every
checkpoint this package writes stores it (``adfnet.checkpoint``) and loading compares the two.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

from torch import nn

from .adfnet import ADFNet
from .dbsn import DBSN
from .dncnn import DnCNN
from .mwcnn import MWCNN
from .mwrcanet import MWRCANet
from .rdn import RDN
from .sadnet import SADNet

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
# The networks whose one plane is a Bayer mosaic: their one-plane (n_colors=1) and packed raw (n_colors=4)
# layouts run the same weights (adfnet.models.wavelet), so a checkpoint of either layout serves both.
RAW_LAYOUTS = {1: "one Bayer plane", 4: "packed raw"}
SHARED_RAW_LAYOUTS = ("mwrcanet", "mwresnet")


def canonical_name(name: str) -> str:
    """The key in :data:`MODEL_NAMES` for any accepted spelling (``"ADFNet-L"``, ``"adfnet*"``, ``"DnCNN"``, ...)."""
    key = name.strip().lower().replace("-", "_").replace("*", "_l")
    if key not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return key


def family(name: str) -> str:
    """The option set a model name shares (``"adfnet_l"`` is an ``"adfnet"``)."""
    key = canonical_name(name)
    return "adfnet" if key in WIDTHS else key


@dataclass(frozen=True)
class ModelSpec:
    """A network as data: its name (any spelling of :data:`MODEL_NAMES`), colours and architecture options.

    ``options`` not given take their defaults when the network is built; ``model.spec`` of a built network
    holds every option that shapes it, defaults resolved. :meth:`record` is the plain mapping a checkpoint
    stores (``{"model": name, "n_colors": n, **options}``), :meth:`from_record` reads one back.
    """

    name: str
    n_colors: int
    options: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", canonical_name(self.name))  # one spelling: "ADFNet-L" is "adfnet_l"

    def build(self) -> nn.Module:
        """The network, untrained (``build_model(name, n_colors, **options)``)."""
        return build_model(self.name, self.n_colors, **self.options)

    def record(self) -> dict[str, object]:
        return {"model": self.name, "n_colors": self.n_colors, **self.options}

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> ModelSpec:
        options = {k: v for k, v in record.items() if k not in ("model", "n_colors")}
        return cls(str(record["model"]), int(record["n_colors"]), options)  # type: ignore[call-overload]


def in_raw_layout(spec: ModelSpec, n_colors: int) -> ModelSpec:
    """``spec`` in the raw layout ``n_colors`` (1: one Bayer plane, 4: packed) when it is a network of
    :data:`SHARED_RAW_LAYOUTS` in the other raw layout (the same weights); any other ``spec`` unchanged."""
    if spec.name in SHARED_RAW_LAYOUTS and {spec.n_colors, n_colors} <= set(RAW_LAYOUTS):
        return ModelSpec(spec.name, n_colors, spec.options)
    return spec


def ablation_options(
    model: str, placement: str = "decoder", no_dcb: bool = False, no_mdcb: bool = False, no_mfi: bool = False
) -> dict[str, object]:
    """The ``build_model`` options of the Table 4 ablations as the command lines name them (``--placement``,
    ``--no_dcb``, ``--no_mdcb``, ``--no_mfi``): all four for ADFNet; for any other ``model`` (a network or a
    baseline of test.py) none, and a ``ValueError`` naming the flags if one was given."""
    if model in WIDTHS:
        return {"placement": placement, "dcb": not no_dcb, "mdcb": not no_mdcb, "mfi": not no_mfi}
    given = {"--placement": placement != "decoder", "--no_dcb": no_dcb, "--no_mdcb": no_mdcb, "--no_mfi": no_mfi}
    flags = [flag for flag, on in given.items() if on]
    if flags:
        raise ValueError(f"{', '.join(flags)}: ablation flags apply to ADFNet only, not to --model {model}")
    return {}


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
    The returned model's ``spec`` (:class:`ModelSpec`: name, colours and every option) is recorded in the
    checkpoints written from it and checked when weights are loaded (``adfnet.checkpoint``): ``mfi`` changes no
    parameter.
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
    kind = family(key)
    valid = OPTIONS[kind]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown model option(s) {', '.join(unknown)} for {key}; valid options: {', '.join(valid)}")
    widths = (WIDTHS[key],) if kind == "adfnet" else ()
    model = CLASSES[kind](n_colors, *widths, **options)  # type: ignore[arg-type]
    recorded = getattr(model, "architecture_options", None)  # DBSN: defaults resolved by n_colors, no MAP settings
    if recorded is None:
        recorded = {**{k: inspect.signature(CLASSES[kind]).parameters[k].default for k in valid}, **options}
    model.spec = ModelSpec(key, n_colors, recorded)
    return model
