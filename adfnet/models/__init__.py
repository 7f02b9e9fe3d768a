"""ADFNet, SADNet, DBSN, their building blocks, the Fig. 7 backbones (DnCNN, RDN) and the wavelet networks (MWCNN,
MWRCANet, MWResNet); ``build_model`` makes them all, each with its :class:`ModelSpec` (:mod:`.spec`)."""

from __future__ import annotations

from .adfnet import PLACEMENTS, ADFNet
from .blocks import AFG, CB, DCB, MCB, MDCB, MFI, SEKG, DConv, DynamicBranch, OffsetBlock, dynamic_filter
from .dbsn import DBSN, DilatedBSN, SigmaMuNet, SigmaNNet
from .dncnn import DnCNN
from .mwcnn import MWCNN
from .mwrcanet import MWRCANet
from .rdn import RDB, RDN
from .sadnet import ContextBlock, ResBlock, RSABlock, SADNet
from .spec import MODEL_NAMES, OPTIONS, WIDTHS, ModelSpec, build_model, canonical_name, family

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
    "build_model",
    "canonical_name",
    "dynamic_filter",
    "MODEL_NAMES",
    "ModelSpec",
    "OPTIONS",
    "WIDTHS",
    "family",
    "PLACEMENTS",
]
