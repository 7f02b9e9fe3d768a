"""What every command line shares: the runtime flags, number types, device and DCN-backend selection, checks."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from dcn._backend import BACKENDS

# The --precision help of every tool that has the flag (adfnet.inference.PRECISIONS).
PRECISION_HELP = (
    "bf16: bfloat16 autocast (the DCN stays in float32), faster on CPUs with bf16 units; its output is at "
    "least 50 dB PSNR against fp32's (default fp32)"
)

# A negative number argparse would otherwise take for an option (``--lr -1e-3``: it only knows ``-1``, ``-.5``).
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|nan)$", re.IGNORECASE)


def join_negative_numbers(argv: Sequence[str]) -> list[str]:
    """``["--lr", "-1e-3"]`` -> ``["--lr=-1e-3"]`` so that the value reaches its option's checks.

    argparse treats ``-1e-3`` as an unknown option ("expected one argument"); joined, the option's
    type and range checks run and say what is wrong with the value.
    """
    out: list[str] = []
    for token in argv:
        prev = out[-1] if out else ""
        if _NEGATIVE_NUMBER.match(token) and prev.startswith("--") and "=" not in prev:
            out[-1] = f"{prev}={token}"
        else:
            out.append(token)
    return out


def finite_float(minimum: float, strict: bool = False, maximum: float | None = None, why: str = ""):
    """An argparse type: a finite float ``>= minimum`` (``> minimum`` when ``strict``), and ``<= maximum``
    if given (``why`` says why, in the message)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if value < minimum or (strict and value == minimum):
            relation = ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"must be {relation} {minimum:g}, got {text!r}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum:g}{why}, got {text!r}")
        return value

    return parse


def int_at_least(minimum: int, maximum: int | None = None):
    """An argparse type: an integer ``>= minimum`` (and ``<= maximum`` if given), named in the message."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text!r}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {text!r}")
        return value

    return parse


def command_name(console: str) -> str:
    """The command as the user typed it, for usage lines: ``test.py`` when a script file was run
    (``python test.py``), ``python -m adfnet.denoise`` for a module, else ``console`` (the console
    script, also when called from Python)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None:  # python -m <module>
        return f"python -m {spec.name}" if spec.name.split(".")[0] == "adfnet" else console
    typed = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return typed if typed.endswith(".py") else console


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cpu``, ``--device``, ``--dcn_backend``: defined here once for every command line."""
    group = parser.add_argument_group("runtime")
    group.add_argument("--cpu", action="store_true", help="run on the CPU even if CUDA is available")
    group.add_argument("--device", default=None, help="explicit device, e.g. cuda:1 (overrides --cpu)")
    group.add_argument(
        "--dcn_backend",
        default=None,
        help=f"DCN backend: {', '.join(BACKENDS[:-1])} or {BACKENDS[-1]} (all compute the same operator; "
        "default: $DCN_BACKEND, else the fastest available)",
    )


def select_device(cpu: bool = False, device: str | None = None) -> torch.device:
    """``--device`` wins, ``--cpu`` forces the CPU, else CUDA when available."""
    if device:
        try:
            dev = torch.device(device)
        except RuntimeError as err:
            raise ValueError(f"--device {device!r} is not a device name (e.g. cpu, cuda, cuda:1): {err}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available on this machine (use --cpu)")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")


def training_on_cpu(cpu: bool = False, device: str | None = None) -> bool:
    """``--cpu`` / ``--device`` in the trainer's terms (``TrainConfig.cpu``): True for the CPU; a ``cuda:N``
    device becomes the current GPU, which the trainer then uses."""
    dev = select_device(cpu, device)
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev.index)
    return dev.type == "cpu"


@contextlib.contextmanager
def dcn_backend(name: str | None) -> Iterator[None]:
    """Run with DCN backend ``name`` (``ext``/``torchvision``/``reference``); ``None`` keeps the default."""
    if not name:
        yield
        return
    import dcn

    with dcn.use_backend(name):
        yield


def check_writable_dir(path: str | Path, flag: str) -> Path:
    """Create ``path`` if needed and prove it takes files; ``ValueError`` naming ``flag`` otherwise.

    Called before a model is loaded or anything is computed, so a bad output folder costs nothing.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file, not a folder: choose a folder for the outputs")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        reason = err.strerror or str(err)
        raise ValueError(f"{flag} {path} cannot be written ({reason}): choose a folder you can write to") from None
    if not os.access(path, os.W_OK):
        raise ValueError(f"{flag} {path} is not writable: choose a folder you can write to")
    return path


def print_note(text: str) -> None:
    """How a command line shows a note (e.g. :func:`adfnet.checkpoint.load_checkpoint`'s) to its user."""
    print(f"note: {text}")
