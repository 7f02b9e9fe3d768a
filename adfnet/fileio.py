"""The one file writer: every file the package writes (images, CSVs, ``.mat``, ONNX, safetensors,
checkpoints, logs) goes through here, so that a full disk never looks like success.

C-level writers (``ndarray.tofile``, ``cv2.imwrite``, the zip writer of ``torch.save`` given a path)
do not all check the final flush at close, and a failed write inside ``torch.save`` surfaces as a
``RuntimeError`` ("unexpected pos") rather than as an ``OSError``. Here every write, the flush, the
``fsync`` and the close are checked by Python, on a temporary file beside the target
(``.<name>.tmp<pid>``) that replaces it with ``os.replace`` only once complete (atomic on POSIX and
Windows). A failure removes the temporary file, leaves a previous file intact and raises a
:class:`WriteError` naming the file; a lack of space (``ENOSPC``, ``EDQUOT``, or ``EFBIG`` under a
file-size limit, which Python reports as an error because it ignores ``SIGXFSZ``) raises
:class:`DiskFullError` naming the disk, its mount point and the space needed and free. Both are
user errors (:class:`adfnet.errors.UserError`), which every command line prints as a one-line ``error: ...``.

Appending (``log.txt``, a ``results.csv`` that grows per image so that a killed run keeps what it
did) cannot be atomic; :func:`append_text` checks the same steps and on failure cuts the file back to
its previous length, so no half line is left.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from adfnet.errors import UserError

__all__ = [
    "DiskFullError",
    "WriteError",
    "append_text",
    "atomic_file",
    "mount_point",
    "remove_stale_temporaries",
    "temporary_path",
    "text_file",
    "write_bytes",
    "write_text",
]

# errno -> how the lack of space shows (EFBIG: the process's file-size limit, ``ulimit -f``)
_NO_SPACE = {errno.ENOSPC: "no space left", errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file-size limit"}
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)$")


class WriteError(UserError):
    """A file could not be written; nothing partial is left and a previous file is intact."""


class DiskFullError(WriteError):
    """A file could not be written for lack of space (or a file-size limit); the message says how much."""


def temporary_path(path: str | Path) -> Path:
    """Where ``path`` is written before it is renamed into place: ``.<name>.tmp<pid>`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


class _CheckedFile(io.RawIOBase):
    """The temporary file as the writers see it: records the first ``OSError`` of any write, so that
    a writer which turns it into another exception (``torch.save``) is still known to have hit it.

    It has no ``fileno``, on purpose: writers that find one write to the descriptor themselves
    (``ndarray.tofile`` through ``np.save``, Pillow's encoders) and bypass these checks.
    """

    def __init__(self, fh: io.BufferedWriter) -> None:
        super().__init__()
        self._fh, self.error, self.written = fh, None, 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[no-untyped-def, override]
        size = memoryview(data).nbytes
        try:
            self._fh.write(data)
        except OSError as err:
            self.error = self.error or err
            raise
        self.written += size
        return size

    def flush(self) -> None:
        try:
            self._fh.flush()
        except OSError as err:
            self.error = self.error or err
            raise

    def tell(self) -> int:
        return self._fh.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def close(self) -> None:  # the writer's close does not end the file: atomic_file does
        pass


@contextlib.contextmanager
def atomic_file(path: str | Path, size_hint: int | None = None, advice: str = "") -> Iterator[io.RawIOBase]:
    """A binary file object that becomes ``path`` when the block ends without an exception.

    Parent folders are created. ``size_hint`` (bytes) improves the "it needs about" of a
    :class:`DiskFullError` when the writer fails part-way (e.g. the tensors of a checkpoint);
    ``advice`` ends its message (e.g. ``"then continue with --resume -1"``). An exception of the
    block that is not about the file (a ``ValueError`` of an encoder) passes unchanged; either way
    no temporary file is left.
    """
    path = _check_target(Path(path))
    tmp = temporary_path(path)
    try:
        fh = open(tmp, "wb")  # noqa: SIM115 (closed below, where its error is checked)
    except OSError as err:
        raise _error(path, err, size_hint or 0, advice) from None
    checked = _CheckedFile(fh)
    try:
        yield checked
        if checked.error is not None:  # the writer swallowed it
            raise checked.error
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            fh.close()
        with contextlib.suppress(OSError):
            tmp.unlink()
        cause = checked.error or (err if isinstance(err, OSError) else None)
        if cause is None:
            raise
        raise _error(path, cause, max(size_hint or 0, checked.written), advice) from None
    _sync_folder(path.parent)


def write_bytes(path: str | Path, data: bytes | bytearray | memoryview, advice: str = "") -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, memoryview(data).nbytes, advice) as f:
        f.write(data)


def write_text(path: str | Path, text: str, advice: str = "") -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"), advice)


@contextlib.contextmanager
def text_file(path: str | Path, advice: str = "") -> Iterator[io.StringIO]:
    """A text file composed in memory (e.g. by ``csv.writer``; no newline translation) and written to
    ``path`` atomically when the block ends without an exception."""
    buffer = io.StringIO(newline="")
    yield buffer
    write_text(path, buffer.getvalue(), advice)


def append_text(path: str | Path, text: str, advice: str = "") -> None:
    """Append ``text`` (UTF-8) to ``path`` (created if missing), flushed to disk.

    On failure the file is cut back to its length before (or removed if this call created it), so
    what was there stays complete and nothing half-written follows it.
    """
    path = _check_target(Path(path))
    data = text.encode("utf-8")
    before = path.stat().st_size if path.exists() else None
    try:
        with open(path, "ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        with contextlib.suppress(OSError):
            if before is None:
                path.unlink()
            else:
                os.truncate(path, before)
        raise _error(path, err, len(data), advice, appending=before is not None) from None


def _check_target(path: Path) -> Path:
    if path.is_dir():
        raise WriteError(f"cannot write {path}: it is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _error(path, err, 0, "") from None
    return path


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a folder cannot be opened for that on Windows)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def mount_point(path: str | Path) -> Path:
    """The mount point of the file system holding ``path``."""
    path = Path(path).resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _size(n: float) -> str:
    if n < 2**10:
        return f"{n:.0f} bytes"
    if n < 2**20:
        return f"{n / 2**10:.0f} kB"
    if n < 2**30:
        return f"{n / 2**20:,.0f} MB"
    return f"{n / 2**30:,.1f} GB"


def _file_size_limit() -> str:
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return "unknown"
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return "unlimited" if soft == resource.RLIM_INFINITY else _size(soft)


def _error(path: Path, err: OSError, need: int, advice: str, appending: bool = False) -> WriteError:
    """The one-line message of a failed write of ``path``: what, where, how much, what is left, what to do."""
    if appending:
        kept = f"what {path.name} held before is intact"
    else:
        kept = f"the previous {path.name} is intact" if path.is_file() else f"{path.name} was not written"
    then = f", {advice}" if advice else ""
    if err.errno not in _NO_SPACE:
        reason = err.strerror or str(err)
        return WriteError(f"cannot write {path}: {reason}; {kept}. Choose a place you can write to{then}")
    folder = path.parent
    free = shutil.disk_usage(folder).free if folder.is_dir() else 0
    where = f"the disk of {folder} (mounted at {mount_point(folder)})"
    if err.errno == errno.EFBIG:
        return DiskFullError(
            f"{path.name} would exceed the file-size limit of this process ({_file_size_limit()}, ulimit -f) "
            f"on {where}: it needs about {_size(need)}, {_size(free)} are free on the disk; {kept}. Raise the "
            f"limit (ulimit -f unlimited){then}"
        )
    return DiskFullError(
        f"{_NO_SPACE[err.errno]} on {where} while writing {path.name}: it needs about {_size(need)}, "
        f"{_size(free)} are free; {kept}. Free some space or write to another disk{then}"
    )


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files that killed processes left in ``folder`` and its subfolders (those of a
    process still running are kept); returns the deleted paths."""
    removed = []
    for tmp in Path(folder).rglob(".*.tmp*"):
        match = _TEMPORARY.match(tmp.name)
        if match is None or not tmp.is_file() or _alive(int(match["pid"])):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a file of ours that a failed write left behind
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
