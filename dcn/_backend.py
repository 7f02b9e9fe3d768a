"""The backends of :func:`dcn.modulated_deform_conv`: one table, selection, and routing (``resolve``).

Four backends compute the same DCNv2 operator:

* ``ext`` -- the compiled extension (``dcn._C``), fastest, built by ``sh make.sh``;
* ``torchvision`` -- ``torchvision.ops.deform_conv2d`` with the DCNv2 offset-gradient rule restored;
* ``reference`` -- pure PyTorch, any floating dtype, deterministic; the test oracle;
* ``cuda_emulated`` -- the extension's CUDA kernels compiled for the CPU, each GPU thread run in
  turn (see ``dcn/csrc/cuda/gpu_runtime.h``): slow, for verifying the CUDA code without a GPU;
  only ever used when asked for by name.

Precedence of the selection: :func:`use_backend` (innermost wins) > the ``DCN_BACKEND`` environment
variable > the default (``ext`` when built, else ``torchvision`` with one warning that says how to
build). :func:`resolve` then hands an input the selected backend cannot run to its fallback.

Nothing here imports torchvision: it is probed with ``importlib.util.find_spec`` and imported only
when its backend runs (importing it costs seconds).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType

import torch

from . import _ext, reference  # importing _ext never raises; is_available() says whether dcn._C loaded

ENV_VAR = "DCN_BACKEND"
BUILD_HINT = "build it with `sh make.sh` (in place) or `pip install --no-build-isolation -e .`"


def _load_ext() -> ModuleType | None:
    """``dcn._ext`` if the compiled ops are loaded, else ``None`` (tests replace this to simulate)."""
    return _ext if _ext.is_available() else None


# Probed once, without importing it (find_spec only locates the package).
_HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


def _has_torchvision() -> bool:
    return _HAS_TORCHVISION


def _has_emulation() -> bool:
    ext = _load_ext()
    return ext is not None and ext.has_emulation()


def _torchvision_fn() -> Callable:
    from . import _torchvision  # imports torchvision

    return _torchvision.modulated_deform_conv


@dataclass(frozen=True)
class Grads:
    """Which gradients the call will need: of the input, of offset or mask, of weight or bias."""

    input: bool = False
    sampling: bool = False
    weight: bool = False

    @property
    def any(self) -> bool:
        return self.input or self.sampling or self.weight


def _deterministic() -> bool:
    return torch.are_deterministic_algorithms_enabled()


def _ext_supports(device: str, dtype: torch.dtype, grads: Grads) -> bool:
    if device == "cpu":
        return dtype in (torch.float32, torch.float64, torch.bfloat16)  # deterministic: no atomics
    ext = _load_ext()
    if device != "cuda" or ext is None or not ext.has_cuda_kernels():
        return False
    return not (grads.input and _deterministic())  # only grad_input is scattered with atomics


def _emulated_supports(device: str, dtype: torch.dtype, grads: Grads) -> bool:
    return device == "cpu" and not (grads.input and _deterministic())  # it emulates the CUDA atomics


def _torchvision_supports(device: str, dtype: torch.dtype, grads: Grads) -> bool:
    if dtype == torch.bfloat16:
        return False  # no bfloat16 kernels
    return not (device == "cuda" and grads.any and _deterministic())  # its CUDA backward uses atomics


@dataclass(frozen=True)
class Backend:
    """One row of the table: how to find, call and route to a backend."""

    name: str
    available: Callable[[], bool]
    function: Callable[[], Callable]  # returns the op (looked up at call time, so tests can spy on it)
    supports: Callable[[str, torch.dtype, Grads], bool]  # (device type, dtype, needed gradients)
    fallback: str | None  # where resolve() sends what this backend cannot run
    default: bool  # may be the default; else used only when named


TABLE: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("ext", lambda: _load_ext() is not None, lambda: _load_ext().modulated_deform_conv,
                _ext_supports, "torchvision", True),
        Backend("torchvision", _has_torchvision, _torchvision_fn, _torchvision_supports, "reference", True),
        Backend("reference", lambda: True, lambda: reference.modulated_deform_conv,
                lambda device, dtype, grads: True, None, True),
        Backend("cuda_emulated", _has_emulation, lambda: _load_ext().modulated_deform_conv_emulated,
                _emulated_supports, "reference", False),
    )
}  # fmt: skip
BACKENDS = tuple(TABLE)

_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("dcn_backend", default=None)
_default_warned = False


def available_backends() -> list[str]:
    """Names of the backends usable in this process: the default candidates fastest first, then
    ``cuda_emulated`` when built."""
    return [name for name, backend in TABLE.items() if backend.available()]


def _check_name(name: str, origin: str) -> str:
    key = name.strip().lower()
    available = available_backends()
    if key not in available:
        if key == "ext":
            reason = f"the compiled extension is not available ({_ext.load_error() or 'not loaded'}); {BUILD_HINT}"
        elif key == "cuda_emulated":
            reason = f"the emulated CUDA kernels are not built; {BUILD_HINT}"
        elif key in TABLE:
            reason = f"backend {key!r} is not available"
        else:
            reason = f"unknown backend {name!r} (known: {', '.join(BACKENDS)})"
        raise ValueError(f"{origin}: {reason}. Available backends: {', '.join(available)}")
    return key


def get_backend() -> str:
    """The backend selected now (see the module docstring); :func:`resolve` may route an input on."""
    override = _override.get()
    if override is not None:
        return override
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return _check_name(env, f"{ENV_VAR}={env}")
    default = next(name for name in available_backends() if TABLE[name].default)
    if default != "ext":
        _warn_no_ext(default)
    return default


def resolve(input: torch.Tensor, grads: Grads = Grads()) -> Backend:
    """The backend that runs ``input``: the selected one, or the first fallback that can.

    E.g. the extension's CPU kernels are float32/float64/bfloat16, so float16 on CPU goes on to
    torchvision; bfloat16 when the extension is not selected goes to ``reference`` (torchvision lacks
    it); under
    ``torch.use_deterministic_algorithms(True)`` a CUDA call that needs the gradients a backend
    scatters with atomics goes to the deterministic ``reference``.
    """
    return backend_for(input.device.type, input.dtype, grads)


def backend_for(device: str, dtype: torch.dtype, grads: Grads = Grads()) -> Backend:
    """:func:`resolve` for an input of this device type and dtype."""
    available = available_backends()
    name: str | None = get_backend()
    while name is not None:
        backend = TABLE[name]
        if name in available and backend.supports(device, dtype, grads):
            return backend
        name = backend.fallback
    return TABLE["reference"]


def _warn_no_ext(fallback: str) -> None:
    global _default_warned
    if _default_warned:
        return
    _default_warned = True
    warnings.warn(
        f"dcn: the compiled DCNv2 extension is not available ({_ext.load_error() or 'not loaded'}); using the slower "
        f"{fallback!r} backend (same results). To use the fast kernels, {BUILD_HINT}. "
        f"Set {ENV_VAR}={fallback} to silence this warning.",
        UserWarning,
        stacklevel=5,
    )


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Run the enclosed calls with backend ``name``; a ``ValueError`` if it is not available.

    Overrides ``DCN_BACKEND``; nests and is local to the current thread / async context.
    """
    token = _override.set(_check_name(name, f"use_backend({name!r})"))
    try:
        yield _override.get()  # type: ignore[misc]
    finally:
        _override.reset(token)
