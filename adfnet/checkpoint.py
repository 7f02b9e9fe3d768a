"""The one checkpoint loader: :func:`load_checkpoint` (the network a file holds, built and loaded) and
:func:`load_weights` (weights into a network you built), strict, with errors that say what the checkpoint is.

The official code loaded with ``strict=False``, so a checkpoint of the wrong model silently ran a
random network; here any mismatch is an error.

Some architecture options change no parameter (the Table 4 "without MFI" ablation: MFI has no
weights), so a state_dict alone cannot tell them apart. Every checkpoint this package writes
therefore carries the model's :class:`~adfnet.models.ModelSpec` record (``model.spec``, set by ``build_model``)
in the state_dict's ``_metadata``, where PyTorch keeps per-module metadata: the file stays a plain
state_dict that any loader reads, and :func:`load_weights` compares the record with the model.
Checkpoints without a record (the official ones) are taken to be of the full model
(:data:`UNRECORDED_DEFAULTS`).

DBSN's authors save one state_dict per net (``state_dict_dbsn``, ``state_dict_sigma_mu``,
``state_dict_sigma_n``, beside optimizer states and their ``argparse`` options in training checkpoints);
they are merged into :class:`~adfnet.models.DBSN`'s state_dict, and a configuration mismatch is named
option by option from the shapes.
"""

from __future__ import annotations

import argparse
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from adfnet.errors import UserError
from adfnet.models import MODEL_NAMES, WIDTHS, ModelSpec, canonical_name
from adfnet.models.dbsn import CHECKPOINT_PARTS, dbsn_options_from_state_dict
from adfnet.models.spec import WAVELET_WIDTHS, in_raw_layout

# Where weights come from, for every "does not exist" of a weights file a new user meets.
WEIGHTS_HINT = (
    "no official weights are shipped: download them (checkpoints/README.md) or train your own "
    "(bash scripts/demo.sh writes experiment/demo_gray_n25/model/model_best.pt)"
)
_WRAPPERS = ("state_dict", "params", "model")  # official Real, BasicSR, our checkpoint_latest.pt
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile
_THOP_KEYS = ("total_ops", "total_params")  # buffers thop leaves behind after profiling
_MAX_LISTED = 20
ARCHITECTURE_KEY = "adfnet:architecture"  # in state_dict._metadata; ':' cannot occur in a module path
# What a checkpoint without an architecture record is assumed to be, for the options no parameter shows.
UNRECORDED_DEFAULTS = {"mfi": True}


def load_weights(
    model: nn.Module,
    path_or_state_dict: str | os.PathLike | Mapping[str, object],
    note: Callable[[str], object] | None = None,
) -> nn.Module:
    """Load ADFNet weights into ``model`` strictly and return it.

    Accepts a path (a torch file or ``.safetensors``) or an already loaded object: a raw state_dict,
    ``{"state_dict": ...}`` (official real-noise checkpoints), ``{"params": ...}`` (BasicSR), our
    ``checkpoint_latest.pt`` (``{"model": ...}``), DBSN's ``{"state_dict_dbsn": ..., "state_dict_sigma_mu": ...,
    "state_dict_sigma_n": ...}`` (other entries ignored), with or without a ``module.`` prefix. On any mismatch
    raises one ``ValueError`` naming the missing, unexpected and wrongly shaped keys and, when it can
    tell, which model the checkpoint belongs to; also when the checkpoint's architecture record (see the
    module docstring) differs from the model's. ``note`` (e.g. ``print``) is told when a checkpoint
    without a record is taken to be the full model, which the command lines show their users.
    """
    source = path_or_state_dict
    if isinstance(source, (str, os.PathLike)):
        source = _read(source)
    return _load_into(model, source, _shown(path_or_state_dict), note)


def _shown(path_or_state_dict: object) -> str:
    """How a checkpoint is named in notes: its path, or "the checkpoint" for a loaded one."""
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        return os.fspath(path_or_state_dict)
    return "the checkpoint"


def _load_into(
    model: nn.Module, source: Mapping[str, object], shown: str, note: Callable[[str], object] | None
) -> nn.Module:
    record = checkpoint_architecture(source)
    state = _normalise(source)
    target = _unwrap_model(model)
    spec = _spec(target)
    _check_architecture(spec.record() if spec else None, record)
    _check(target, state)
    target.load_state_dict(state, strict=True)
    if note is not None and record is None and spec is not None:
        assumed = ", ".join(f"{k}={v!r}" for k, v in UNRECORDED_DEFAULTS.items())
        note(
            f"{shown} carries no architecture record (an official checkpoint?): taken to be the full model ({assumed})"
        )
    return model


def weights_with_architecture(model: nn.Module) -> OrderedDict[str, Tensor]:
    """``model.state_dict()`` carrying the model's spec record (if it has one) for :func:`load_weights`."""
    target = _unwrap_model(model)
    state = target.state_dict()
    spec = _spec(target)
    if spec is not None:
        state._metadata[ARCHITECTURE_KEY] = spec.record()  # type: ignore[attr-defined]
    return state


def _spec(model: nn.Module) -> ModelSpec | None:
    """The spec of a network made by ``build_model`` (None for any other module: only its keys are checked)."""
    spec = getattr(model, "spec", None)
    return spec if isinstance(spec, ModelSpec) else None


def checkpoint_architecture(obj: Mapping[str, object]) -> dict[str, object] | None:
    """The architecture record of a loaded checkpoint (any accepted layout), or None if it has none."""
    while isinstance(obj, Mapping):
        metadata = getattr(obj, "_metadata", None)
        if isinstance(metadata, Mapping) and isinstance(metadata.get(ARCHITECTURE_KEY), Mapping):
            return dict(metadata[ARCHITECTURE_KEY])
        obj = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
    return None


def _check_architecture(model: Mapping[str, object] | None, checkpoint: Mapping[str, object] | None) -> None:
    """Refuse weights recorded for another architecture (or, unrecorded, for a model without the defaults)."""
    if model is None:
        return  # a model not made by build_model: only the keys can be checked
    if checkpoint is not None and "n_colors" in model:  # MWRCANet's two raw layouts share their weights
        layout = in_raw_layout(ModelSpec.from_record(checkpoint), int(model["n_colors"]))  # type: ignore[call-overload]
        checkpoint = {**checkpoint, "n_colors": layout.n_colors}
    assumed = checkpoint is None
    if assumed:
        checkpoint = {**model, **UNRECORDED_DEFAULTS}
    differ = [k for k in model if k in checkpoint and checkpoint[k] != model[k]]
    if not differ:
        return
    pairs = "; ".join(f"{k}: checkpoint {checkpoint[k]!r}, model {model[k]!r}" for k in differ)
    if assumed:
        raise ValueError(
            f"The checkpoint carries no architecture record (official checkpoints and those written before the "
            f"record existed do not), so it is taken to be the full model, which differs from this one ({pairs}). "
            "Build the model without these ablation options, or use weights trained with them by this package."
        )
    flags = ", ".join(f"{k}={checkpoint[k]!r}" for k in differ)
    raise ValueError(
        f"The checkpoint was trained with another architecture ({pairs}). Build the model with {flags} "
        "(the --model / --n_colors / --placement / --no_dcb / --no_mdcb / --no_mfi flags), or use weights of this "
        "architecture."
    )


def read_state_dict(path: str | os.PathLike) -> OrderedDict[str, Tensor]:
    """The bare state_dict stored in ``path`` (``.pt``/``.pth`` of any layout :func:`load_weights` reads,
    or ``.safetensors``), without a model: for tools that pick the model from the checkpoint. It keeps
    the architecture record (:func:`checkpoint_architecture` reads it, :func:`load_weights` checks it)."""
    source = _read(path)
    state = OrderedDict(_normalise(source))
    record = checkpoint_architecture(source)
    if record is not None:
        state._metadata = {ARCHITECTURE_KEY: record}  # type: ignore[attr-defined]
    return state


def _read(path: str | os.PathLike) -> Mapping[str, object]:
    shown = os.fspath(path)
    if os.path.isdir(path):
        found = sorted(str(p.relative_to(path)) for p in Path(path).rglob("*.pt"))[:5]
        hint = f" (it holds {', '.join(found)})" if found else ""
        raise ValueError(f"{shown!r} is a folder, not a checkpoint file: pass the .pt file itself{hint}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {shown!r} does not exist (download it or check the path)")
    if shown.lower().endswith(".safetensors"):
        return _read_safetensors(path)
    try:
        # DBSN's training checkpoints keep their argparse options (``args``): a plain attribute bag, safe to build
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        if "Weights only load failed" not in str(err):  # a damaged zip, a truncated file, not a torch file
            raise ValueError(
                f"cannot read {shown!r}: the file is truncated, damaged or not a PyTorch checkpoint "
                f"({type(err).__name__}: {err}). Download or copy it again"
            ) from err
        raise ValueError(  # a complete pickle that holds more than tensors and plain types
            f"cannot read {shown!r} as a weights-only checkpoint ({err}). If the file comes "
            "from a source you trust, load it yourself with torch.load(path, weights_only=False) and "
            "pass the resulting dict to load_weights"
        ) from err


def _read_safetensors(path: str | os.PathLike) -> Mapping[str, object]:
    """A ``.safetensors`` file: tensors only, no code can run while reading it."""
    try:
        from safetensors.torch import load_file
    except ImportError as err:
        raise ValueError(f"reading {os.fspath(path)!r} needs the safetensors package: pip install safetensors") from err
    try:
        return load_file(os.fspath(path), device="cpu")
    except Exception as err:  # truncated or not a safetensors file
        raise ValueError(f"cannot read {os.fspath(path)!r} as a safetensors file ({err})") from err


def _normalise(obj: Mapping[str, object]) -> dict[str, Tensor]:
    """The bare state_dict: unwrapped, prefixes stripped, thop entries dropped."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a state_dict (a mapping of names to tensors), got {type(obj).__name__}")
    parts = [k for k in CHECKPOINT_PARTS if isinstance(obj.get(k), Mapping)]
    if parts:  # DBSN's layout: one state_dict per net
        return {f"{CHECKPOINT_PARTS[p]}.{k}": v for p in parts for k, v in _normalise(obj[p]).items()}
    while True:
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    state = {}
    for key, value in obj.items():
        if not isinstance(value, Tensor):
            raise ValueError(
                f"entry {key!r} is a {type(value).__name__}, not a tensor: this is not a state_dict "
                f"(top-level keys: {', '.join(map(str, list(obj)[:10]))})"
            )
        if key.rsplit(".", 1)[-1] in _THOP_KEYS:
            continue
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        state[key] = value
    return state


def _unwrap_model(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def _check(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)}, model {expected[k]}"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    if not (missing or unexpected or shapes):
        return
    lines = [f"The checkpoint does not match the model ({type(model).__name__})."]
    dbsn_notes = _diagnose_dbsn(expected, state) if any(k.startswith("dbsn.") for k in expected) else []
    configuration = [note for note in dbsn_notes if note.startswith("The checkpoint is a DBSN of another")]
    if configuration:  # the options say it all: one line, not the hundreds of keys they change
        raise ValueError(f"{lines[0]} {configuration[0]}")
    lines += dbsn_notes
    lines += _diagnose(expected, state)
    if missing and unexpected and all(".fe." in k for k in missing + unexpected):
        lines.append(
            "The blocks differ: the checkpoint may come from another ablation variant "
            "(build_model options placement, dcb, mdcb)."
        )
    if missing + unexpected and all(".cuca." in k or k.endswith(".act.weight") for k in missing + unexpected):
        lines.append(
            "The blocks differ in channel attention ('cuca') and PReLU ('act'): the checkpoint is of the other "
            "wavelet network (MWRCANet has both, MWResNet neither): build the model with the checkpoint's name "
            "('mwrcanet' or 'mwresnet')."
        )
    for title, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrongly shaped keys", shapes)):
        if keys:
            listed = ", ".join(keys[:_MAX_LISTED])
            more = f", ... and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
            lines.append(f"{len(keys)} {title}: {listed}{more}")
    raise ValueError("\n".join(lines))


def _diagnose(expected: Mapping[str, tuple[int, ...]], state: Mapping[str, Tensor]) -> list[str]:
    """What the checkpoint probably is, read from the head conv (width x colours)."""
    if not any(k in expected for k in state):
        return ["It shares no key with the model: it is not a checkpoint of this network."]
    if "head.weight" not in expected or "head.weight" not in state:
        return []
    if (2, 2) in (expected["head.weight"][2:], tuple(state["head.weight"].shape[2:])):
        return []  # a wavelet network's head is the fixed Haar DWT: it tells neither width nor colours
    (m_width, m_colors), (c_width, c_colors) = expected["head.weight"][:2], tuple(state["head.weight"].shape[:2])
    notes = []
    if c_colors != m_colors:
        notes.append(
            f"The checkpoint is for {_colour(c_colors)} images (n_colors={c_colors}), "
            f"the model for {_colour(m_colors)} (n_colors={m_colors}): "
            f"build the model with n_colors={c_colors}, or use {_colour(m_colors)} weights."
        )
    if c_width != m_width:
        notes.append(
            f"The checkpoint is {_variant(c_width)} (first width {c_width}), the model {_variant(m_width)} "
            f"(first width {m_width}): build the model with the checkpoint's name."
        )
    return notes


def _diagnose_dbsn(expected: Mapping[str, tuple[int, ...]], state: Mapping[str, Tensor]) -> list[str]:
    """Which DBSN options (read from the shapes) differ, and which of the three nets the checkpoint lacks."""
    notes = []
    absent = [p for p, sub in CHECKPOINT_PARTS.items() if not any(k.startswith(f"{sub}.") for k in state)]
    if absent and len(absent) < len(CHECKPOINT_PARTS):
        notes.append(f"The checkpoint has no {', '.join(absent)} (a pre-training checkpoint of part of DBSN?).")
    ours, theirs = dbsn_options_from_state_dict(expected), dbsn_options_from_state_dict(state)
    differ = {k: v for k, v in theirs.items() if k in ours and ours[k] != v}
    if differ:
        pairs = "; ".join(f"{k}: checkpoint {v!r}, model {ours[k]!r}" for k, v in differ.items())
        notes.append(
            f"The checkpoint is a DBSN of another configuration ({pairs}): build the model with these options "
            "(build_model('dbsn', n_colors=..., **options); adfnet-train --model_options), or use weights of this "
            "configuration."
        )
    return notes


def _colour(n_colors: int) -> str:
    return {1: "gray", 3: "RGB"}.get(n_colors, f"{n_colors}-channel")


def _variant(width: int) -> str:
    return {32: "ADFNet ('adfnet')", 64: "ADFNet-L ('adfnet_l')"}.get(width, f"a width-{width} model")


def infer_model(
    source: Mapping[str, object],
    model: str | None = None,
    n_colors: int | None = None,
    default: tuple[str, int] | None = None,
) -> ModelSpec:
    """The network a loaded checkpoint (any layout :func:`load_weights` reads) holds.

    Its architecture record, where it has one (every checkpoint this package writes), options included;
    ``model`` and ``n_colors`` (what a user gave: ``--model`` / ``--n_colors``; None: not given) must agree
    with it (:class:`~adfnet.errors.UserError` naming the flag). Else its keys and shapes: ADFNet and ADFNet-L
    by the width of their head conv, SADNet, MWCNN, MWRCANet and MWResNet (channel attention or not, their
    widths and blocks per group) by their first layers, DBSN by its three nets with every option their shapes
    show; options no shape shows take their defaults (:data:`UNRECORDED_DEFAULTS`; a DBSN for Poisson-Gaussian
    noise has the shapes of the Gaussian one, MWRCANet's one-plane Bayer input, ``n_colors=1``, those of the
    packed raw one: ask for those). MWRCANet's and MWResNet's two raw layouts (``n_colors`` 1 and 4) share
    their weights, so either may be given for a checkpoint of the other
    (:func:`~adfnet.models.spec.in_raw_layout`). Given values win over the shapes (a mismatch then fails the
    strict loading, which names it). A checkpoint that shows nothing takes the given values completed by
    ``default``; without one, that is an error asking for both flags.
    """
    model = canonical_name(model) if model else None
    record = checkpoint_architecture(source)
    if record is not None:
        spec = ModelSpec.from_record(record)
        if n_colors is not None:
            spec = in_raw_layout(spec, n_colors)
        for flag, given, key, value in (
            ("--model", model, "model", spec.name),
            ("--n_colors", n_colors, "n_colors", spec.n_colors),
        ):
            if given is not None and given != value:
                raise UserError(
                    f"{flag} {given} contradicts the checkpoint's architecture record ({key}={value!r}): "
                    f"leave {flag} out (it is read from the checkpoint) or use weights of that model"
                )
        return spec
    found = _recognise(_normalise(source))
    if found is None or (model and model != found[0]):
        if model and n_colors:
            return ModelSpec(model, n_colors)
        if found is None and default is not None:
            return ModelSpec(model or default[0], n_colors or default[1])
        if found is None:
            raise UserError("cannot tell the model from this checkpoint: pass --model and --n_colors")
        found = (model, found[1], {})
    name, colours, options = found
    return ModelSpec(name, n_colors or colours, options)


def _recognise(state: Mapping[str, Tensor]) -> tuple[str, int, dict[str, object]] | None:
    """``(name, n_colors, options)`` that a state_dict's keys and shapes show, or None."""

    def shape(key: str) -> tuple[int, ...] | None:
        value = state.get(key)
        return tuple(value.shape) if isinstance(value, Tensor) else None

    if shape("dbsn.dbsn_head.0.weight"):
        options = {k: v for k, v in dbsn_options_from_state_dict(state).items() if v is not None}
        if options.get("noise_type") != "multivariate_gaussian":
            options["noise_type"] = "gaussian"  # or poisson_gaussian: the same shapes
        return "dbsn", int(options.pop("n_colors")), options
    if shape("res1.conv0.weight"):
        return "sadnet", shape("res1.conv0.weight")[1], {}
    if shape("level1_prev.block.0.weight"):
        return "mwcnn", shape("level1_prev.block.0.weight")[1] // 4, {}
    head = shape("head.weight")
    if head is None or len(head) != 4:
        return None
    if head[2:] == (2, 2):  # the fixed Haar DWT of the wavelet networks: their first conv tells the colours
        name = "mwrcanet" if any(".cuca." in k for k in state) else "mwresnet"
        widths = (shape("down1.0.weight")[0], shape("down2.1.weight")[0], shape("down3.1.weight")[0])
        blocks = {k.split(".")[3] for k in state if k.startswith("down1.2.body.")}  # the first group's blocks
        options = {**dict(zip(WAVELET_WIDTHS, widths, strict=True)), "n_rb": len(blocks)}
        return name, 3 if shape("down1.0.weight")[1] == 12 else 1, options
    names = [name for name, widths in WIDTHS.items() if widths[0] == head[0]]
    if len(names) != 1:
        raise UserError(f"the checkpoint's first width is {head[0]}, which is none of {', '.join(MODEL_NAMES)}")
    return names[0], head[1], {}


def load_checkpoint(
    path: str | os.PathLike | Mapping[str, object],
    spec: ModelSpec | None = None,
    *,
    name: str | None = None,
    n_colors: int | None = None,
    device: torch.device | str = "cpu",
    note: Callable[[str], object] | None = None,
) -> tuple[nn.Module, ModelSpec]:
    """The network a checkpoint holds, its weights loaded strictly, on ``device``, in eval mode, and its spec.

    ``spec`` is the network the caller asks for (a command line's flags): the checkpoint must be of it. Without
    one the checkpoint says (:func:`infer_model`; ``name`` / ``n_colors`` given on a command line must agree). Any
    layout :func:`load_weights` reads; ``note`` as there. Errors: ``FileNotFoundError``, ``ValueError`` naming
    what the checkpoint is and what differs.
    """
    source = _read(path) if isinstance(path, (str, os.PathLike)) else path
    if spec is None:
        spec = infer_model(source, name, n_colors)
    model = spec.build()
    _load_into(model, source, _shown(path), note)
    return model.to(device).eval(), model.spec
