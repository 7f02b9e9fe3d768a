"""Pictures where people would rather look than read.

* :func:`comparison_panel`: noisy | ours | clean side by side, each with a zoomed crop of the same
  region below it and its PSNR in the caption (the layout of the paper's Fig. 5). Used by
  ``test.py --save_comparison`` and as TensorBoard sample panels at validation (an ``(H, W, 3)`` uint8
  array: ``writer.add_image(tag, panel, step, dataformats="HWC")``).
* :func:`psnr_sigma_plot`: PSNR per noise level against the published numbers (needs matplotlib).

Images are ``(H, W)`` / ``(H, W, C)`` arrays or ``(C, H, W)`` / ``(1, C, H, W)`` tensors in [0, 1] or
uint8, as :mod:`adfnet.metrics` takes them; PSNRs come from there (the official 8-bit protocol).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from adfnet.fileio import atomic_file
from adfnet.metrics import psnr, quantize

BACKGROUND = 255
BOX_COLOUR = (230, 30, 30)
GAP = 6


def _rgb8(img: np.ndarray | torch.Tensor) -> np.ndarray:
    arr = quantize(img)
    if arr.ndim == 2:
        arr = arr[..., None]
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr


def pick_crop(reference: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` x ``size`` window with the most detail (highest variance) in
    ``reference`` (uint8 HWC): where denoisers differ, as the paper's close-ups."""
    gray = reference.astype(np.float64).mean(2)
    h, w = gray.shape
    step = max(size // 4, 1)
    best, corner = -1.0, (0, 0)
    for y in range(0, h - size + 1, step):
        for x in range(0, w - size + 1, step):
            v = gray[y : y + size, x : x + size].var()
            if v > best:
                best, corner = v, (y, x)
    return corner


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def comparison_panel(
    noisy: np.ndarray | torch.Tensor,
    ours: np.ndarray | torch.Tensor,
    clean: np.ndarray | torch.Tensor | None = None,
    *,
    crop: tuple[int, int, int] | None = None,
    labels: Sequence[str] = ("Noisy", "ADFNet", "Clean"),
) -> np.ndarray:
    """``(H', W', 3)`` uint8 panel: the images in a row, a red box on the crop, the crop zoomed below.

    ``crop`` is ``(y, x, size)``; by default a window of a quarter of the shorter side where ``clean``
    (or ``ours``) has the most detail. The zoom fills each column's width (nearest neighbour: pixels stay
    visible). Captions give the PSNR against ``clean`` when it is given.
    """
    images = [_rgb8(noisy), _rgb8(ours)] + ([_rgb8(clean)] if clean is not None else [])
    h, w = images[0].shape[:2]
    if any(im.shape[:2] != (h, w) for im in images):
        raise ValueError(f"all images must have the same size, got {[im.shape[:2] for im in images]}")
    if crop is None:
        size = max(min(h, w) // 4, 8)
        crop = (*pick_crop(images[-1], size), size)
    cy, cx, cs = crop
    if cs < 1 or cy < 0 or cx < 0 or cy + cs > h or cx + cs > w:
        raise ValueError(f"crop {crop} is not inside the {h}x{w} image")
    zoom = max(w // cs, 1)
    font_size = max(12, w // 18)
    caption_h = int(font_size * 1.6)
    column_h = h + GAP + cs * zoom + caption_h
    canvas = Image.new("RGB", (len(images) * (w + GAP) - GAP, column_h), (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(canvas)
    font = _font(font_size)
    texts = _captions(images, labels, clean)
    for i, im in enumerate(images):
        x0 = i * (w + GAP)
        canvas.paste(Image.fromarray(im), (x0, 0))
        line = max(1, w // 200)
        draw.rectangle([x0 + cx - line, cy - line, x0 + cx + cs + line - 1, cy + cs + line - 1], outline=BOX_COLOUR,
                       width=line)  # fmt: skip
        close_up = np.repeat(np.repeat(im[cy : cy + cs, cx : cx + cs], zoom, 0), zoom, 1)
        canvas.paste(Image.fromarray(close_up), (x0, h + GAP))
        draw.text((x0 + w // 2, h + GAP + cs * zoom + caption_h // 2), texts[i], fill=(0, 0, 0), font=font,
                  anchor="mm")  # fmt: skip
    return np.asarray(canvas)


def panel_captions(
    noisy: np.ndarray | torch.Tensor,
    ours: np.ndarray | torch.Tensor,
    clean: np.ndarray | torch.Tensor | None = None,
    labels: Sequence[str] = ("Noisy", "ADFNet", "Clean"),
) -> list[str]:
    """The captions :func:`comparison_panel` draws: ``"Noisy  20.31 dB"``, ``"ADFNet  29.87 dB"``, ``"Clean"``
    (the PSNR of :func:`adfnet.metrics.psnr` against ``clean``; only the labels without it)."""
    return _captions([_rgb8(noisy), _rgb8(ours)] + ([_rgb8(clean)] if clean is not None else []), labels, clean)


def _captions(images: list[np.ndarray], labels: Sequence[str], clean: object) -> list[str]:
    if clean is None:
        return list(labels[: len(images)])
    return [f"{label}  {psnr(im, images[-1]):.2f} dB" for im, label in zip(images[:-1], labels, strict=False)] + [
        labels[len(images) - 1]
    ]


def save_panel(path: str | Path, panel: np.ndarray, captions: Sequence[str] = ()) -> None:
    """Write ``panel`` as a PNG; ``captions`` also go into its ``Description`` text chunk (`` | ``-separated),
    so the numbers can be read back without reading the pixels."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    if captions:
        info.add_text("Description", " | ".join(captions))
    with atomic_file(path) as f:
        Image.fromarray(panel).save(f, format="PNG", pnginfo=info)


def require_matplotlib(what: str) -> None:
    """``ValueError`` saying how to install matplotlib (the ``figures`` extra) when it is missing, so a
    command can refuse ``what`` before any work rather than fail at its end."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError(f"{what} needs matplotlib: pip install matplotlib (or the project's [figures] extra)")


def psnr_sigma_plot(
    path: str | Path,
    ours: Mapping[float, float],
    published: Mapping[float, float] | None = None,
    title: str = "",
    label: str = "ours",
) -> Path:
    """Write a PNG of PSNR (dB) against noise level: our points and line, the published ones dashed,
    each point labelled with its value; returns the path."""
    require_matplotlib("the PSNR plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not ours:
        raise ValueError("no results to plot")
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    try:
        # our values below the points, the published ones above: close values stay readable
        series = [(label, ours, "o-", -11)] + ([("published", published, "s--", 6)] if published else [])
        for name, points, style, dy in series:
            sigmas = sorted(points)
            values = [points[s] for s in sigmas]
            ax.plot(sigmas, values, style, label=name)
            for s, v in zip(sigmas, values, strict=True):
                ax.annotate(f"{v:.2f}", (s, v), textcoords="offset points", xytext=(0, dy), ha="center", fontsize=7)
        ax.set_xlabel("noise level sigma")
        ax.set_ylabel("PSNR (dB)")
        ax.set_xticks(sorted(set(ours) | set(published or {})))
        ax.margins(x=0.08, y=0.18)  # room for the value labels at the extremes
        ax.grid(alpha=0.3)
        ax.legend()
        if title:
            ax.set_title(title)
        fig.tight_layout()
        path = Path(path)
        with atomic_file(path) as f:
            fig.savefig(f, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path
