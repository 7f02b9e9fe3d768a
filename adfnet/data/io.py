"""The one image reader/writer of the package.

Images leave this module as float32 ``(H, W, C)`` arrays in [0, 1], RGB channel order (the official
RGB test fed BGR by mistake; we do not), ``C`` equal to the model's ``n_colors``. Decoding goes
through OpenCV with ``IMREAD_UNCHANGED`` so that bit depth and alpha are visible and handled
explicitly instead of being silently converted.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np

from adfnet.errors import UserError
from adfnet.fileio import write_bytes
from adfnet.imaging import image_to_tensor, quantize, tensor_to_image

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "ImageWarning",
    "decode_pixels",
    "image_to_tensor",
    "list_images",
    "pixels_to_float",
    "read_image",
    "rgb_to_gray",
    "same_channels",
    "save_image",
    "tensor_to_image",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# ITU-R BT.601 luma, the formula of cv2.COLOR_BGR2GRAY that the official gray training used.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


class ImageReadError(UserError):
    """A file exists but cannot be decoded as a supported image."""


class ImageWarning(UserWarning):
    """An image was read but converted (bit depth, alpha, channel count); results may differ."""


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files (png/jpg/jpeg/bmp/tif/tiff, any case) directly inside ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder} (check --input_dir)")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no images in {folder}: expected files ending in {', '.join(IMAGE_EXTENSIONS)}")
    return files


def rgb_to_gray(img: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` RGB float -> ``(H, W, 1)`` luma ``0.299 R + 0.587 G + 0.114 B`` (BT.601), not requantised."""
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb_to_gray expects an (H, W, 3) array, got shape {img.shape}")
    r, g, b = GRAY_WEIGHTS
    gray = r * img[..., 0] + g * img[..., 1] + b * img[..., 2]
    return gray[..., None].astype(np.float32)


def _decode(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    # via bytes: works with non-ASCII paths too; through Python's open, so an audit hook sees every image read
    data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise ImageReadError(f"cannot decode {path}: the file is corrupt or not a supported image")
    return img


def decode_pixels(path: str | Path) -> np.ndarray:
    """The pixels of ``path`` as stored, before any conversion to the model's colours and range.

    ``(H, W, 1)`` or ``(H, W, 3)`` in RGB order, alpha dropped; 8- and 16-bit images keep their integer
    type, float images become float32 clipped to [0, 1]. :func:`read_image` is :func:`pixels_to_float`
    of this array, which acts pixel by pixel: so a crop of it converts to exactly the same values as
    the crop of the whole converted image (the decoded training cache stores this array). Warns as
    :func:`read_image` does about bit depth, float pixels and alpha.
    """
    path = Path(path)
    img = _decode(path)
    if img.dtype == np.uint16:
        warnings.warn(
            f"{path.name}: 16-bit image scaled to [0, 1] by 1/65535; metrics are still computed on 8-bit values",
            ImageWarning,
            stacklevel=3,
        )
    elif img.dtype in (np.float32, np.float64):
        if not np.isfinite(img).all():
            raise ImageReadError(
                f"{path}: the floating-point image holds NaN or infinite values; re-export it with finite pixel "
                "values in [0, 1] (or as an 8/16-bit image)"
            )
        warnings.warn(f"{path.name}: floating-point image, assumed in [0, 1] and clipped", ImageWarning, stacklevel=3)
        img = np.clip(img.astype(np.float32), 0.0, 1.0)
    elif img.dtype != np.uint8:
        raise ImageReadError(f"{path}: unsupported pixel type {img.dtype} (use 8- or 16-bit images)")
    if img.ndim == 2:
        img = img[..., None]
    channels = img.shape[2]
    if channels in (2, 4):
        warnings.warn(f"{path.name}: alpha channel dropped", ImageWarning, stacklevel=3)
        img = img[..., : channels - 1]
        channels -= 1
    if channels == 3:
        img = img[..., ::-1]  # OpenCV decodes BGR
    elif channels != 1:
        raise ImageReadError(f"{path}: {channels} channels are not supported (expected gray or RGB)")
    return img


def same_channels(pixels: np.ndarray) -> bool:
    """Whether an ``(H, W, 3)`` image's three channels are equal (a gray image stored as colour): a gray
    model then takes one channel instead of the luma. Whole-image property: decide it before cropping."""
    return bool(np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2]))


def pixels_to_float(
    pixels: np.ndarray, n_colors: int, path: str | Path, equal_channels: bool | None = None
) -> np.ndarray:
    """:func:`decode_pixels`' array (or a crop of it) as float32 ``(H, W, n_colors)`` in [0, 1].

    ``equal_channels`` is :func:`same_channels` of the WHOLE image, needed when a colour image goes to
    a gray model; a crop must be given its image's value (None: computed from ``pixels``).
    """
    name = Path(path).name
    img = pixels.astype(np.float32)  # a copy: pixels may be a read-only memory map
    if pixels.dtype == np.uint8:
        img /= 255.0
    elif pixels.dtype == np.uint16:
        img /= 65535.0
    if n_colors == 1 and img.shape[2] == 3:
        if same_channels(pixels) if equal_channels is None else equal_channels:
            img = img[..., :1]
        else:
            warnings.warn(
                f"{name}: colour image given to a gray model, converted to luma (0.299 R + 0.587 G + 0.114 B)",
                ImageWarning,
                stacklevel=3,
            )
            img = rgb_to_gray(img)
    elif n_colors == 3 and img.shape[2] == 1:
        warnings.warn(
            f"{name}: gray image given to an RGB model, channel replicated 3 times", ImageWarning, stacklevel=3
        )
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img, dtype=np.float32)


def read_image(path: str | Path, n_colors: int = 3) -> np.ndarray:
    """Read ``path`` as float32 ``(H, W, n_colors)`` in [0, 1], RGB.

    Colour images given to a gray model go through :func:`rgb_to_gray` with an :class:`ImageWarning`
    (silently when the three channels are equal: nothing is lost); gray images given to an RGB model
    are replicated with an :class:`ImageWarning`; alpha is dropped with a warning; 16-bit images are
    scaled by 1/65535. Raises ``FileNotFoundError`` for a missing file and :class:`ImageReadError` for
    an undecodable one or a float image with NaN/inf pixels.
    """
    if n_colors not in (1, 3):
        raise ValueError(f"n_colors must be 1 or 3, got {n_colors}")
    return pixels_to_float(decode_pixels(path), n_colors, path)


def save_image(path: str | Path, img: np.ndarray) -> None:
    """Write an ``(H, W[, C])`` float [0, 1] (or uint8) RGB/gray image as 8-bit, rounded like the metrics.

    The format follows the file extension; JPEG is written at quality 100 (still lossy: prefer png).
    Parent folders are created; the file is written by :func:`adfnet.fileio.write_bytes` (a full disk
    raises :class:`~adfnet.fileio.DiskFullError`, nothing partial is left).
    """
    path = Path(path)
    arr = quantize(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    elif arr.ndim == 3 and arr.shape[2] == 3:
        arr = np.ascontiguousarray(arr[..., ::-1])  # RGB -> BGR for OpenCV
    elif arr.ndim != 2:
        raise ValueError(f"save_image expects (H, W), (H, W, 1) or (H, W, 3), got shape {arr.shape}")
    params = [cv2.IMWRITE_JPEG_QUALITY, 100] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix or ".png", arr, params)
    if not ok:
        raise ValueError(f"cannot encode an image as {path.suffix!r} for {path}")
    write_bytes(path, buf.tobytes())
