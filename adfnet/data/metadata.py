"""What a photo carries besides its pixels, kept from a denoised input to its output: the ICC profile, the
EXIF data and the resolution (DPI).

Dropping the ICC profile changes the colours of wide-gamut photos (a Display P3 or Adobe RGB image
would be shown as sRGB). The pixels are encoded by OpenCV as before (8 or 16 bits, alpha); the
metadata, read with Pillow, is then added to the encoded file: PNG ``iCCP``/``eXIf``/``pHYs`` chunks,
JPEG ``APP1`` (EXIF) and ``APP2`` (ICC) segments and the JFIF density, TIFF tags in a rewritten first
IFD (written by Pillow's TIFF tag writer, the pixel data untouched). The output is written upright,
so the EXIF orientation becomes 1 (and the resolution's x and y swap with a quarter turn); tags that
describe the stored pixels of a TIFF input (size, strips, compression, ...) are not carried.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

ORIENTATION = 0x0112
# TIFF tags about the stored pixels of a file (layout, compression, strips, tiles, samples), or handled
# apart (resolution, ICC): never copied from an input's EXIF into another file.
_PIXEL_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 282, 283, 284, 296, 317, 320}
    | {322, 323, 324, 325, 330, 338, 339, 340, 341, 347, 513, 514, 530, 531, 532, 32997, 34675}
)
_JPEG_SEGMENT = 65533  # payload bytes of one JPEG marker segment
_ICC_CHUNK = _JPEG_SEGMENT - 14  # "ICC_PROFILE\0" + sequence number + count


@dataclass(frozen=True)
class PhotoInfo:
    """``orientation``: the input's EXIF orientation (1-8); the rest as the upright output carries it."""

    orientation: int = 1
    icc_profile: bytes | None = None
    exif: bytes | None = None  # "Exif\0\0" + TIFF structure, orientation 1, pixel tags left out
    dpi: tuple[float, float] | None = None

    @property
    def empty(self) -> bool:
        return self.icc_profile is None and self.exif is None and self.dpi is None


def read_photo_info(path: Path) -> PhotoInfo:
    """The metadata of ``path`` (an empty :class:`PhotoInfo` if Pillow cannot read the file)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            exif, icc, dpi = im.getexif(), im.info.get("icc_profile") or None, im.info.get("dpi")
            orientation = exif.get(ORIENTATION, 1)
            for tag in [t for t in exif if t in _PIXEL_TAGS]:
                del exif[tag]
            if ORIENTATION in exif:
                exif[ORIENTATION] = 1
            exif_bytes = exif.tobytes() if len(exif) else None  # reads sub-IFDs from the open file
    except Exception:  # not an image Pillow reads (OpenCV may still decode it): nothing to carry
        return PhotoInfo()
    orientation = orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1
    if dpi is not None:
        dpi = (float(dpi[0]), float(dpi[1]))
        if orientation >= 5:  # a quarter turn: x and y swap
            dpi = dpi[::-1]
        if min(dpi) <= 0:
            dpi = None
    return PhotoInfo(orientation, icc, exif_bytes, dpi)


def add_metadata(data: bytes, suffix: str, info: PhotoInfo) -> tuple[bytes, list[str]]:
    """``data`` (a PNG, JPEG or TIFF file OpenCV encoded) with ``info`` added; and what could not be kept."""
    if info.empty:
        return data, []
    kind = suffix.lower()
    if kind == ".png":
        return _png(data, info), []
    if kind in (".jpg", ".jpeg"):
        return _jpeg(data, info)
    if kind in (".tif", ".tiff"):
        return _tiff(data, info), []
    return data, [f"{kind} files cannot carry the ICC profile, EXIF and resolution: use --format png or tif"]


# --- PNG ------------------------------------------------------------------------------------------
def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(data: bytes, info: PhotoInfo) -> bytes:
    """The chunks right after IHDR (before any PLTE or IDAT, as the PNG specification requires)."""
    if data[12:16] != b"IHDR":
        raise ValueError("not a PNG file: cannot add its metadata")
    chunks = b""
    if info.icc_profile:
        chunks += _chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(info.icc_profile))
    if info.dpi:
        x, y = (round(d / 0.0254) for d in info.dpi)  # pixels per metre
        chunks += _chunk(b"pHYs", struct.pack(">IIB", x, y, 1))
    if info.exif:
        chunks += _chunk(b"eXIf", info.exif[6:])  # without the "Exif\0\0" of JPEG's APP1
    end = 8 + 4 + 4 + 13 + 4  # signature, IHDR
    return data[:end] + chunks + data[end:]


# --- JPEG -----------------------------------------------------------------------------------------
def _segment(marker: int, body: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(body) + 2) + body


def _jpeg(data: bytes, info: PhotoInfo) -> tuple[bytes, list[str]]:
    """APP1 (EXIF) and APP2 (ICC, in numbered parts) after the JFIF APP0 segment, whose density is set."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG file: cannot add its metadata")
    out, notes = bytearray(data), []
    at = 2
    if data[2:4] == b"\xff\xe0" and data[6:11] == b"JFIF\0":
        if info.dpi:
            out[13:18] = struct.pack(">BHH", 1, *(min(65535, max(1, round(d))) for d in info.dpi))
        at = 4 + struct.unpack(">H", data[4:6])[0]
    added = b""
    if info.exif:
        if len(info.exif) <= _JPEG_SEGMENT:
            added += _segment(0xE1, info.exif)
        else:
            notes.append(f"its EXIF data ({len(info.exif)} bytes) exceeds a JPEG segment: not kept")
    if info.icc_profile:
        parts = [info.icc_profile[i : i + _ICC_CHUNK] for i in range(0, len(info.icc_profile), _ICC_CHUNK)]
        for number, part in enumerate(parts, 1):
            added += _segment(0xE2, b"ICC_PROFILE\0" + bytes((number, len(parts))) + part)
    return bytes(out[:at]) + added + bytes(out[at:]), notes


# --- TIFF -----------------------------------------------------------------------------------------
def _tiff(data: bytes, info: PhotoInfo) -> bytes:
    """A new first IFD: OpenCV's entries plus the metadata's, written by Pillow at the end of the file.

    The pixel data and every offset OpenCV wrote stay valid: bytes are only appended, then the header
    points at the new IFD.
    """
    from PIL import Image, TiffImagePlugin

    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or struct.unpack(order + "H", data[2:4])[0] != 42:
        raise ValueError("not a classic TIFF file: cannot add its metadata")
    tags: dict[int, object] = {}
    if info.exif:
        exif = Image.Exif()
        exif.load(info.exif)
        tags.update({tag: exif.get_ifd(tag) if tag in (0x8769, 0x8825) else value for tag, value in exif.items()})
    if info.icc_profile:
        tags[34675] = info.icc_profile
    if info.dpi:
        tags.update({282: info.dpi[0], 283: info.dpi[1], 296: 2})  # resolution in pixels per inch
    first = struct.unpack(order + "I", data[4:8])[0]
    entries = _ifd_entries(data, first, order)
    end = first + 2 + 12 * struct.unpack(order + "H", data[first : first + 2])[0]
    following = data[end : end + 4]  # the next IFD's offset
    out = bytearray(data) + b"\0" * (len(data) % 2)  # IFDs start on a word boundary
    extra = TiffImagePlugin.ImageFileDirectory_v2(prefix=data[:2])
    for tag, value in tags.items():
        extra[tag] = value
    written = extra.tobytes(len(out))  # its entries' offsets point into itself, placed at len(out)
    entries.update(_ifd_entries(written, 0, order))
    out += written + b"\0" * (len(written) % 2)
    ifd = len(out)
    out += struct.pack(order + "H", len(entries)) + b"".join(entries[t] for t in sorted(entries)) + following
    out[4:8] = struct.pack(order + "I", ifd)
    return bytes(out)


def _ifd_entries(data: bytes, at: int, order: str) -> dict[int, bytes]:
    """The 12-byte entries of the IFD at ``at``, by tag."""
    count = struct.unpack(order + "H", data[at : at + 2])[0]
    raw = (data[at + 2 + 12 * i : at + 14 + 12 * i] for i in range(count))
    return {struct.unpack(order + "H", entry[:2])[0]: entry for entry in raw}
