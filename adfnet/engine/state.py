"""Crash-safe files: atomic writes, and the full training state used by ``--resume -1``.

Every file is written to a temporary name in the same folder, flushed to disk, then renamed over the
target with ``os.replace`` (atomic on POSIX and Windows). A run killed at any moment therefore leaves
either the previous complete file or the new complete one, never a truncated one; a leftover
temporary file is ignored (and overwritten by the next save).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_VERSION = 1
STATE_KEYS = ("version", "epoch", "iteration", "model", "optimizer", "scheduler", "rng", "best", "history")


class CheckpointError(RuntimeError):
    """A training checkpoint exists but cannot be used (corrupt, truncated, wrong format)."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states (only plain types and tensors)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "cached": cached},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (CUDA states only if CUDA is available)."""
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read a ``checkpoint_latest.pt``; missing, unreadable or incomplete files raise with advice."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"cannot resume: {path} does not exist (no epoch of this run was completed). "
            "Check --save / --dir_experiment, or start a new run with --resume 0."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a damaged zip/pickle
        raise CheckpointError(
            f"cannot resume: {path} is corrupt or not a training checkpoint ({type(err).__name__}: {err}). "
            "Delete it and restart with --resume 0 (model/model_latest.pt still holds the last weights)."
        ) from err
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"cannot resume: {path} is not a training checkpoint (missing {', '.join(missing)})")
    if state["version"] != STATE_VERSION:
        raise CheckpointError(f"cannot resume: {path} has format version {state['version']}, expected {STATE_VERSION}")
    return state
