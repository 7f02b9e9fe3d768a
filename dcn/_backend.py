"""Backend discovery and selection for :func:`dcn.modulated_deform_conv`.

Three backends compute the same DCNv2 operator:

* ``ext`` -- the compiled extension (``dcn._C``), fastest, built by ``sh make.sh``;
* ``torchvision`` -- ``torchvision.ops.deform_conv2d`` with the DCNv2 offset-gradient rule restored;
* ``reference`` -- pure PyTorch, any floating dtype, deterministic; the test oracle.

Precedence: :func:`use_backend` (innermost wins) > the ``DCN_BACKEND`` environment variable >
the default (``ext`` when built, else ``torchvision`` with one warning that says how to build).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import warnings
from collections.abc import Iterator
from types import ModuleType

from . import _ext  # importing never raises; is_available() says whether dcn._C loaded

BACKENDS = ("ext", "torchvision", "reference")
ENV_VAR = "DCN_BACKEND"
BUILD_HINT = "build it with `sh make.sh` (in place) or `pip install --no-build-isolation -e .`"

_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("dcn_backend", default=None)
_default_warned = False


def _load_ext() -> ModuleType | None:
    """``dcn._ext`` if the compiled ops are loaded, else ``None`` (tests replace this to simulate)."""
    return _ext if _ext.is_available() else None


try:
    import torchvision.ops  # noqa: F401  (registers torchvision::deform_conv2d)

    _HAS_TORCHVISION = True
except ImportError:
    _HAS_TORCHVISION = False


def available_backends() -> list[str]:
    """Names of the backends usable in this process, fastest first."""
    names = []
    if _load_ext() is not None:
        names.append("ext")
    if _HAS_TORCHVISION:
        names.append("torchvision")
    names.append("reference")
    return names


def _check_name(name: str, origin: str) -> str:
    key = name.strip().lower()
    available = available_backends()
    if key not in available:
        if key == "ext":
            reason = f"the compiled extension is not available ({_ext.load_error() or 'not loaded'}); {BUILD_HINT}"
        elif key in BACKENDS:
            reason = f"backend {key!r} is not available"
        else:
            reason = f"unknown backend {name!r} (known: {', '.join(BACKENDS)})"
        raise ValueError(f"{origin}: {reason}. Available backends: {', '.join(available)}")
    return key


def get_backend() -> str:
    """The backend :func:`dcn.modulated_deform_conv` uses now (see the module docstring)."""
    override = _override.get()
    if override is not None:
        return override
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return _check_name(env, f"{ENV_VAR}={env}")
    available = available_backends()
    if available[0] != "ext":
        _warn_no_ext(available[0])
    return available[0]


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
        stacklevel=4,
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
