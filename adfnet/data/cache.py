"""The decoded training cache (``--cache``, or the official spelling ``--ext sep``).

A training sample cuts one patch from one image, and decoding a 2040x1356 PNG takes ~75 ms: four
loader workers then give ~50 patches/s where one GPU consumes hundreds. The cache decodes each
training file once into a ``.npy`` file that the loader memory-maps, so a patch reads only its own
rows. The official code (``--ext sep``) kept one ``.npy`` beside each image; this project never
writes into an input folder, so entries live in a cache folder of their own:
``--cache_dir``, else ``$ADFNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/adfnet/decoded`` (by default
``~/.cache/adfnet/decoded``), shared by every run and experiment. Layout::

    <cache_dir>/<kind>/<folder name>-<hash of the folder's absolute path>/<file name>.npy

What is stored is the pixels as decoded (:func:`adfnet.data.io.decode_pixels`: 8/16-bit stays
integer, RGB, alpha dropped), not the model's float32, so an entry is as large as the raw pixels
(6.6 GB for DIV2K's 800 images) and does not depend on ``--n_colors``; each patch is converted
on the way out with the same function as an uncached read, so samples are bit-identical. Whole-image
decisions (a colour image whose channels are all equal goes to a gray model as one channel, not as
luma) are recorded in the entry.

Every entry is an ordinary ``.npy`` (``np.load(path, mmap_mode="r")`` opens it) followed by a
trailer: a JSON record (format, decoder and its version, the source's size and modification time,
a CRC-32 of the array) and its length and magic. At the start of a run every entry is checked
against its source and its CRC (about 20 ms per DIV2K image, a quarter of decoding it); a stale,
truncated or corrupt entry is decoded again, never used. Entries are written by the package's one
file writer (:func:`adfnet.fileio.atomic_file`: a temporary file beside the entry, every write checked,
fsynced, renamed), so a killed run or several processes building the same entry (DDP) leave whole files
only, and a full disk or an unwritable ``--cache_dir`` is one :class:`~adfnet.fileio.WriteError` (a
user error) naming the entry. The fsync is cheap next to decoding the image, and paid once.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import warnings
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from adfnet.data.io import ImageReadError, ImageWarning, decode_pixels, same_channels
from adfnet.fileio import atomic_file, remove_stale_temporaries
from adfnet.outputs import check_outputs_apart

CACHE_FORMAT = 1
ENV_VAR = "ADFNET_CACHE_DIR"
_MAGIC = b"ADFNETc1"
_TRAILER = struct.Struct("<Q8s")  # length of the JSON record, magic


def default_cache_dir() -> Path:
    """``$ADFNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/adfnet/decoded``, else ``~/.cache/adfnet/decoded``."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "adfnet" / "decoded"


@dataclass(frozen=True)
class Decoding:
    """How a source file becomes the cached array. ``name`` is recorded in every entry: an entry made
    by another decoder, or another version of it, is rebuilt."""

    kind: str  # the cache's sub-folder: entries of different decodings never share a path
    version: str
    decode: Callable[[Path], np.ndarray]


# OpenCV's version is part of the key: another libjpeg could decode a JPEG to other pixels.
IMAGE_DECODING = Decoding("image", f"opencv-{cv2.__version__}/1", decode_pixels)


@dataclass(frozen=True)
class Entry:
    """One checked entry: where its array lies in the file, and the whole-image channel test."""

    path: Path
    offset: int
    shape: tuple[int, ...]
    dtype: str
    equal_channels: bool | None


class DecodedCache:
    """Decoded training files, one memory-mapped entry each. :meth:`prepare` checks or builds the
    entries of a file list (once, before training); :meth:`array` maps one of them.

    ``rebuild`` decodes every file again (``--ext sep_reset``).
    """

    def __init__(
        self, folder: str | Path | None = None, decoding: Decoding = IMAGE_DECODING, rebuild: bool = False
    ) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else default_cache_dir()
        self.decoding, self.rebuild = decoding, rebuild
        self.entries: dict[Path, Entry] = {}
        self.summary = ""

    def entry_path(self, source: Path) -> Path:
        parent = source.resolve().parent
        digest = hashlib.sha1(str(parent).encode()).hexdigest()[:12]
        return self.folder / self.decoding.kind / f"{parent.name}-{digest}" / f"{source.name}.npy"

    def prepare(self, files: Sequence[Path], workers: int = 1, input_flag: str = "--dir_data") -> list[str | None]:
        """Check the entry of every file and build the missing, stale or damaged ones (``workers``
        threads; decoding, CRC and writing release the GIL). Returns, per file, None or why it
        cannot be decoded (such files have no entry)."""
        check_outputs_apart(
            {"the decoded cache": self.folder},
            sorted({Path(f).parent for f in files}),
            result_flag="--cache_dir",
            input_flag=input_flag,
        )
        for folder in {self.entry_path(Path(f)).parent for f in files}:
            if folder.is_dir():  # the temporary files of runs killed while writing an entry
                remove_stale_temporaries(folder)
        pool = ThreadPoolExecutor(max(1, workers))
        try:
            results = list(
                tqdm(
                    pool.map(self._prepare_one, [Path(f) for f in files]),
                    total=len(files),
                    desc=f"decoded cache {self.folder}",
                    unit="image",
                    leave=False,
                )
            )
        finally:  # a Ctrl-C or a full disk stops at once: the images not started are cancelled
            pool.shutdown(wait=False, cancel_futures=True)
        built, reused = (sum(r == state for r in results) for state in ("built", "reused"))
        self.summary = (
            f"decoded cache {self.folder}: {built} of {len(files)} images decoded now, {reused} checked and reused"
        )
        return [None if r in ("built", "reused") else r for r in results]

    def _prepare_one(self, source: Path) -> str:
        """ "built", "reused", or why ``source`` cannot be decoded."""
        target = self.entry_path(source)
        try:
            stat = source.stat()
        except OSError as err:
            return f"{source}: {err.strerror or err}"
        if not self.rebuild:
            entry = _check(target, self.decoding, stat)
            if entry is not None:
                self.entries[source] = entry
                return "reused"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ImageWarning)  # the dataset summarises conversions
                array = np.ascontiguousarray(self.decoding.decode(source))
        except (ImageReadError, OSError, ValueError) as err:
            return str(err)
        self.entries[source] = self._write(target, array, stat)
        return "built"

    def _write(self, target: Path, array: np.ndarray, stat: os.stat_result) -> Entry:
        equal = same_channels(array) if array.ndim == 3 and array.shape[2] == 3 else None
        record = json.dumps(
            {
                "format": CACHE_FORMAT,
                "decoding": f"{self.decoding.kind}/{self.decoding.version}",
                "source_size": stat.st_size,
                "source_mtime_ns": stat.st_mtime_ns,
                "equal_channels": equal,
                "crc32": zlib.crc32(array),
            }
        ).encode()
        header = np.lib.format.header_data_from_array_1_0(array)
        size = array.nbytes + len(record) + _TRAILER.size  # and the header's few bytes
        with atomic_file(target, size, advice="or put the decoded cache elsewhere with --cache_dir") as f:
            np.lib.format.write_array_header_1_0(f, header)
            offset = f.tell()
            f.write(memoryview(array).cast("B"))
            f.write(record)
            f.write(_TRAILER.pack(len(record), _MAGIC))
        return Entry(target, offset, array.shape, array.dtype.str, equal)

    def array(self, source: Path) -> np.ndarray:
        """The cached array of ``source``, memory-mapped read-only: slicing it reads only those rows.

        What ``np.load(path, mmap_mode="r")`` gives, without parsing the header again (checked by
        :meth:`prepare`) nor ``np.memmap``'s bookkeeping: 0.2 ms less per sample, a fifth of the
        budget of a loader worker. The mapping goes when the last view of it does.
        """
        entry = self.entries[source]
        fd = os.open(entry.path, os.O_RDONLY)
        try:
            mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)  # holds its own descriptor
        finally:
            os.close(fd)
        return np.ndarray(entry.shape, np.dtype(entry.dtype), buffer=mapped, offset=entry.offset)

    def equal_channels(self, source: Path) -> bool | None:
        """Whether the cached colour image's three channels are all equal (None: not a colour image)."""
        return self.entries[source].equal_channels


def _check(path: Path, decoding: Decoding, stat: os.stat_result) -> Entry | None:
    """The entry at ``path`` if it is whole, current (same decoder, same source size and time) and its
    CRC matches; None otherwise (missing, stale, truncated or corrupt)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < _TRAILER.size:
                return None
            f.seek(size - _TRAILER.size)
            length, magic = _TRAILER.unpack(f.read(_TRAILER.size))
            if magic != _MAGIC or length > size - _TRAILER.size:
                return None
            f.seek(size - _TRAILER.size - length)
            record = json.loads(f.read(length))
            current = {
                "format": CACHE_FORMAT,
                "decoding": f"{decoding.kind}/{decoding.version}",
                "source_size": stat.st_size,
                "source_mtime_ns": stat.st_mtime_ns,
            }
            if any(record.get(key) != value for key, value in current.items()):
                return None
            f.seek(0)
            version = np.lib.format.read_magic(f)
            if version != (1, 0):
                return None
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            offset = f.tell()
            nbytes = int(np.prod(shape)) * dtype.itemsize
            if fortran or dtype.hasobject or offset + nbytes + length + _TRAILER.size != size:
                return None
            crc = 0
            while nbytes:
                chunk = f.read(min(nbytes, 16 << 20))
                if not chunk:
                    return None
                crc, nbytes = zlib.crc32(chunk, crc), nbytes - len(chunk)
            if crc != record["crc32"]:
                return None
    except (OSError, ValueError, KeyError, TypeError, struct.error):  # unreadable, or not one of our entries
        return None
    return Entry(path, offset, tuple(shape), dtype.str, record.get("equal_channels"))
