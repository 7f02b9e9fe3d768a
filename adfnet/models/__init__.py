"""ADFNet models and their building blocks; ``build_model`` is the one way to make a network."""

from __future__ import annotations

from .adfnet import PLACEMENTS, ADFNet
from .blocks import AFG, CB, DCB, MCB, MDCB, MFI, SEKG, DConv, DynamicBranch, OffsetBlock, dynamic_filter

__all__ = [
    "ADFNet", "AFG", "CB", "DCB", "DConv", "DynamicBranch", "MCB", "MDCB", "MFI", "OffsetBlock", "SEKG",
    "build_model", "dynamic_filter", "MODEL_NAMES", "PLACEMENTS",
]

WIDTHS = {"adfnet": (32, 64, 128, 256), "adfnet_l": (64, 128, 256, 512)}
MODEL_NAMES = tuple(WIDTHS)
OPTIONS = ("placement", "dcb", "mdcb", "mfi")


def build_model(name: str, n_colors: int = 3, **options: object) -> ADFNet:
    """``"adfnet"`` or ``"adfnet_l"`` (also ``"ADFNet-L"``, ``"adfnet*"``: the paper's ADFNet*).

    ``n_colors`` is 1 (gray) or 3 (colour, real noise). ``options`` are the Table 4 ablations
    ``placement``, ``dcb``, ``mdcb``, ``mfi``, documented on :class:`ADFNet`.
    """
    key = name.strip().lower().replace("-", "_").replace("*", "_l")
    if key not in WIDTHS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    if n_colors not in (1, 3):
        raise ValueError(f"n_colors must be 1 (gray) or 3 (colour), got {n_colors!r}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown model option(s) {', '.join(unknown)}; valid options: {', '.join(OPTIONS)}")
    return ADFNet(n_colors, WIDTHS[key], **options)  # type: ignore[arg-type]
