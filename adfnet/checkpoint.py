"""Strict loading of ADFNet weights, with errors that say what the checkpoint is.

The official code loaded with ``strict=False``, so a checkpoint of the wrong model silently ran a
random network; here any mismatch is an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import Tensor, nn

_WRAPPERS = ("state_dict", "params")  # official Real / our training, BasicSR
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile
_THOP_KEYS = ("total_ops", "total_params")  # buffers thop leaves behind after profiling
_MAX_LISTED = 20


def load_weights(model: nn.Module, path_or_state_dict: str | os.PathLike | Mapping[str, object]) -> nn.Module:
    """Load ADFNet weights into ``model`` strictly and return it.

    Accepts a path (a torch file or ``.safetensors``) or an already loaded object: a raw state_dict,
    ``{"state_dict": ...}`` (official real-noise checkpoints), ``{"params": ...}`` (BasicSR), with or
    without a ``module.`` prefix.
    On any mismatch raises one ``ValueError`` naming the missing, unexpected and wrongly shaped keys
    and, when it can tell, which model the checkpoint belongs to.
    """
    source = path_or_state_dict
    if isinstance(source, (str, os.PathLike)):
        source = _read(source)
    state = _normalise(source)
    target = _unwrap_model(model)
    _check(target, state)
    target.load_state_dict(state, strict=True)
    return model


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """The bare state_dict stored in ``path`` (``.pt``/``.pth`` of any layout :func:`load_weights` reads,
    or ``.safetensors``), without a model: for tools that pick the model from the checkpoint."""
    return _normalise(_read(path))


def _read(path: str | os.PathLike) -> Mapping[str, object]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {os.fspath(path)!r} does not exist (download it or check the path)")
    if os.fspath(path).lower().endswith(".safetensors"):
        return _read_safetensors(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle of arbitrary objects, or not a torch file at all
        raise ValueError(
            f"cannot read {os.fspath(path)!r} as a weights-only checkpoint ({err}). If the file comes "
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
                key = key[len(prefix):]
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
    lines += _diagnose(expected, state)
    if missing and unexpected and all(".fe." in k for k in missing + unexpected):
        lines.append("The blocks differ: the checkpoint may come from another ablation variant "
                     "(build_model options placement, dcb, mdcb).")
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


def _colour(n_colors: int) -> str:
    return {1: "gray", 3: "RGB"}.get(n_colors, f"{n_colors}-channel")


def _variant(width: int) -> str:
    return {32: "ADFNet ('adfnet')", 64: "ADFNet-L ('adfnet_l')"}.get(width, f"a width-{width} model")
