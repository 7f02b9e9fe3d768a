"""The full training state used by ``--resume -1``, and checkpoint writes that a Ctrl-C cannot tear.

Checkpoints go through the one writer, :mod:`adfnet.fileio`: a temporary file in the same folder,
renamed over the target once complete, so a run killed at any moment leaves either the previous
complete file or the new complete one; a full disk (or a file-size limit) leaves the previous file
intact and raises :class:`~adfnet.fileio.DiskFullError` saying how much space is missing where.
Temporary files of killed processes are removed when the next run starts
(:func:`adfnet.fileio.remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adfnet.fileio import atomic_file

STATE_VERSION = 1
STATE_KEYS = ("version", "epoch", "iteration", "model", "optimizer", "scheduler", "rng", "best", "history")
# How a run continues once space is freed: the end of a failed checkpoint write's message.
RESUME_ADVICE = "then continue with --resume -1 (or move --dir_experiment to a larger disk)"


class CheckpointError(RuntimeError):
    """A training checkpoint exists but cannot be used (corrupt, truncated, wrong format)."""


def _tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in ``obj`` (nested dicts, lists, tuples): about the size of its file."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


_held: list[int] | None = None  # the SIGINTs caught while a ctrl_c_deferred block runs (None: none runs)


@contextlib.contextmanager
def ctrl_c_deferred() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) until the block ends, then raise it as ``KeyboardInterrupt``.

    A ``KeyboardInterrupt`` raised inside ``torch.save`` surfaces as a zip-writer ``RuntimeError`` from its
    clean-up, so an interrupted save would end in a traceback and a lost checkpoint instead of the clean
    stop the trainer gives; a save takes seconds, so it is finished first. Nested blocks hold until the
    outermost ends (the trainer holds over a whole save: weights, state and its bookkeeping). Only the
    main thread can hold signals.
    """
    global _held
    if _held is not None or threading.current_thread() is not threading.main_thread():
        yield
        return
    _held = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: _held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        caught, _held = _held, None
    if caught:
        raise KeyboardInterrupt


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` through :func:`adfnet.fileio.atomic_file`; a Ctrl-C during the write is
    raised once the file is complete.

    Raises :class:`~adfnet.fileio.DiskFullError` (the previous ``path`` untouched) when the disk is full:
    ``torch.save`` reports the failed write as a ``RuntimeError``, the writer knows it was the disk.
    """
    with ctrl_c_deferred(), atomic_file(path, _tensor_bytes(obj), RESUME_ADVICE) as f:
        torch.save(obj, f)


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states (only plain types and tensors)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        },
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
            "Check --save / --dir_experiment, or start the run anew without --resume."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a damaged zip/pickle
        weights = path.parent / "model" / "model_latest.pt"
        raise CheckpointError(
            f"cannot resume: {path} is corrupt or not a training checkpoint ({type(err).__name__}: {err}). "
            "Restore it from a backup to continue the run exactly; or keep this run as it is and start a new one "
            f"from its last weights: --save <new name> --pre_train {weights} (optimiser and schedule restart)."
        ) from err
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"cannot resume: {path} is not a training checkpoint (missing {', '.join(missing)})")
    if state["version"] != STATE_VERSION:
        raise CheckpointError(f"cannot resume: {path} has format version {state['version']}, expected {STATE_VERSION}")
    return state
