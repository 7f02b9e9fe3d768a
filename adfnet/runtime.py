"""Process-wide runtime settings for the command-line entry points (not for library users).

ADFNet allocates and frees tensors of tens to hundreds of MB per block. glibc serves each one above
32 MiB with a fresh ``mmap`` and returns it on ``free``, so every forward pass page-faults those
again. :func:`tune_allocator` keeps freed memory in the heap for reuse instead. A caching allocator
preloaded by the user (tcmalloc, jemalloc) already does this; then nothing is changed.

Why this setting: page faults, not arithmetic, are then what a forward pass saves, so inference and
training get faster at the price of the heap keeping freed memory; the price grows with the image,
and the largest images go through tiles in ``adfnet-denoise`` anyway. Without the trim threshold
(``mmap`` off alone) the retained heap grows with every distinct tensor size; the 1 GB threshold caps
the freed memory kept. benchmarks/adfnet_speed.py measures both allocators side by side (its "default"
and "tuned" tables): rerun it on another machine.

:func:`release_free_memory` is the other way round, for processes that keep glibc's defaults (library
users): ADFNet's CPU inference calls it before its larger decoder stages, so that the heap memory
freed by the smaller ones is not still resident when the full-resolution maps are allocated.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_PRELOADED = ("tcmalloc", "jemalloc", "mimalloc")
_kept = False  # tune_allocator made glibc keep freed memory on purpose


def preloaded_allocator() -> str | None:
    """Name of a caching malloc mapped into this process (e.g. through LD_PRELOAD), if any."""
    try:
        with open("/proc/self/maps") as maps:
            text = maps.read()
    except OSError:
        return None
    return next((name for name in _PRELOADED if f"lib{name}" in text), None)


def tune_allocator(trim_threshold_mb: int = 1024) -> str:
    """Make large allocations reuse freed memory; returns what was done (for logs).

    With glibc: no ``mmap`` for large blocks (they come from the heap and are reused after
    ``free``), and freed memory above ``trim_threshold_mb`` at the top of the heap is still
    returned to the system, which bounds the extra resident memory. Does nothing with a preloaded
    caching allocator, on other platforms, or on a libc without ``mallopt``.
    """
    preloaded = preloaded_allocator()
    if preloaded is not None:
        return f"{preloaded} (preloaded)"
    if not sys.platform.startswith("linux"):
        return "system default"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "system default (no mallopt)"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, trim_threshold_mb << 20) == 1
    global _kept
    _kept = ok
    return f"glibc mallopt (no mmap, trim above {trim_threshold_mb} MB)" if ok else "system default (mallopt failed)"


def release_free_memory() -> None:
    """Return the free memory inside glibc's heap to the system (``malloc_trim``).

    With glibc's defaults, blocks below its mmap threshold (which rises to 32 MiB as larger blocks are
    freed) come from the heap, and freed heap memory stays resident, between live blocks, until
    trimmed. In ADFNet's CPU inference that is the strips and the maps of the low-resolution levels;
    the full-resolution maps of a large image are mapped afresh on top of it. Trimming before the
    decoder's larger stages lowers the first inference's peak; the trimmed pages are faulted in again
    when the heap serves later blocks (:func:`release_free_memory_before`). Does nothing after
    :func:`tune_allocator` (which keeps freed memory on purpose), under a preloaded allocator, or
    without glibc.
    """
    trim = None if _kept else _malloc_trim()
    if trim is not None:
        trim(0)


# glibc's largest dynamic mmap threshold on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX): larger blocks are
# always mapped afresh, smaller ones come from the heap once the threshold has risen to their size.
MMAP_THRESHOLD_MAX = 32 << 20


def release_free_memory_before(block_bytes: int) -> None:
    """:func:`release_free_memory` when the blocks about to be allocated (``block_bytes`` each) are too large
    to come from the heap: only then would its free memory stay resident, unused, beside them. Blocks
    below glibc's largest mmap threshold are served from that free memory; trimming it would only make
    them fault its pages in again (docs/SPEED.md measures the cost)."""
    if block_bytes > MMAP_THRESHOLD_MAX:
        release_free_memory()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux") or preloaded_allocator() is not None:
        return None
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim
