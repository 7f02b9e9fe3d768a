"""The one forward path (test.py, training validation, real-noise scripts and the demo use it).

ADFNet downsamples three times, so H and W must be multiples of 8 inside the network. Two official
protocols exist and :func:`denoise` serves both: the colour test reflect-padded bottom/right first and
then ran the model (plain, chopped, x8 self-ensemble or both) before cropping back; the gray test
chopped the unpadded image, whose quadrants are multiples of 8 by construction. Chop is the official
quadrant algorithm; because ADFNet's MFI pools over whole rows, columns and channels, chopped output
is close to, not equal to, the full-image output, and where the quadrant windows sit matters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Forward = Callable[[torch.Tensor], torch.Tensor]

MULTIPLE = 8
CHOP_OVERLAP = 24
# Official quadrant-size thresholds (pixels of one quadrant) of the test scripts: gray utils.py
# 400,000 and RGB utils.py 4,000,000; the real-noise scripts used 400,000.
CHOP_MIN_SIZE_GRAY = 400_000
CHOP_MIN_SIZE_RGB = 4_000_000
CHOP_MIN_SIZE_REAL = 400_000


PRECISIONS = ("fp32", "bf16")


def pad_to_multiple(x: torch.Tensor, multiple: int = MULTIPLE) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad ``(B, C, H, W)`` at the bottom/right to multiples of ``multiple``.

    Returns the padded tensor and the original ``(H, W)`` to crop back with ``y[..., :H, :W]``.
    Reflection needs each pad smaller than the side, hence the minimum size check.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if (pad_h and pad_h >= h) or (pad_w and pad_w >= w):
        raise ValueError(f"image of {h}x{w} px is too small to pad to a multiple of {multiple}")
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    return x, (h, w)


def self_ensemble(fn: Forward, x: torch.Tensor) -> torch.Tensor:
    """x8 geometric self-ensemble: run ``fn`` on the 8 dihedral transforms, invert each, average.

    The batch dimension is preserved (each image gets its own average), unlike the EDSR-style
    ``forward_x8`` of the official trainer.
    """
    total = None
    for k in range(4):
        for flip in (False, True):
            t = torch.rot90(x, k, dims=(2, 3))
            if flip:
                t = torch.flip(t, dims=(2,))
            y = fn(t)
            if flip:
                y = torch.flip(y, dims=(2,))
            y = torch.rot90(y, -k, dims=(2, 3))
            total = y if total is None else total + y
    return total / 8


def _run_whole(model: Forward, x: torch.Tensor, ensemble: bool) -> torch.Tensor:
    """Run on the whole input, padded to a multiple of 8 for the network and cropped back."""
    padded, (h, w) = pad_to_multiple(x)
    y = self_ensemble(model, padded) if ensemble else model(padded)
    return y[..., :h, :w]


def forward_chop(
    model: Forward,
    x: torch.Tensor,
    min_size: int,
    overlap: int = CHOP_OVERLAP,
    ensemble: bool = False,
) -> torch.Tensor:
    """The official ``forward_chop``: 4 overlapping quadrants, no blending, recursion above ``min_size``.

    Each quadrant has sides ``(side // 2 // 8) * 8 + overlap`` (multiples of 8 when ``overlap`` is,
    whatever the input size, which is why the official gray test could chop unpadded images) and
    contributes only its own quarter of the output, which therefore sees at least ``overlap`` pixels
    of context towards the centre. A quadrant with ``h * w >= min_size`` is chopped again; the others
    are run (with :func:`self_ensemble` when ``ensemble``) one at a time to bound memory. An input too
    small to split (a quadrant would not be smaller than it; the official code crashed there) is run
    whole, reflect-padded to a multiple of 8 if needed.
    """
    if overlap < 0 or overlap % MULTIPLE:
        raise ValueError(f"overlap must be a non-negative multiple of {MULTIPLE}, got {overlap}")
    _, _, h, w = x.shape
    h2, w2 = h // 2, w // 2
    hs = (h2 // MULTIPLE) * MULTIPLE + overlap
    ws = (w2 // MULTIPLE) * MULTIPLE + overlap
    if hs >= h or ws >= w:
        return _run_whole(model, x, ensemble)

    patches = [x[..., :hs, :ws], x[..., :hs, w - ws :], x[..., h - hs :, :ws], x[..., h - hs :, w - ws :]]
    if hs * ws < min_size:
        outs = [self_ensemble(model, p) if ensemble else model(p) for p in patches]
    else:
        outs = [forward_chop(model, p, min_size, overlap, ensemble) for p in patches]

    out = x.new_empty((x.shape[0], outs[0].shape[1], h, w))
    out[..., :h2, :w2] = outs[0][..., :h2, :w2]
    out[..., :h2, w2:] = outs[1][..., :h2, ws - w + w2 :]
    out[..., h2:, :w2] = outs[2][..., hs - h + h2 :, :w2]
    out[..., h2:, w2:] = outs[3][..., hs - h + h2 :, ws - w + w2 :]
    return out


def default_chop_min_size(n_colors: int) -> int:
    """The official threshold of the synthetic test scripts for this number of channels."""
    return CHOP_MIN_SIZE_GRAY if n_colors == 1 else CHOP_MIN_SIZE_RGB


def official_pad_before_chop(n_colors: int) -> bool:
    """The official synthetic test's order for this task: colour padded then chopped, gray chopped unpadded."""
    return n_colors != 1


@torch.no_grad()
def denoise(
    model: Forward,
    noisy: torch.Tensor,
    chop: bool = False,
    ensemble: bool = False,
    min_size: int | None = None,
    pad_before_chop: bool = True,
    precision: str = "fp32",
) -> torch.Tensor:
    """Denoise a ``(B, C, H, W)`` batch in [0, 1], clamped to [0, 1], at the input size.

    ``chop`` uses :func:`forward_chop` (``min_size`` defaults to the official per-task threshold,
    :func:`default_chop_min_size`); ``ensemble`` adds the x8 self-ensemble (per quadrant when
    chopping, as the official code did). ``pad_before_chop`` picks the protocol when chopping: True
    reflect-pads to a multiple of 8 first (official colour test), False chops the image as it is
    (official gray test; see :func:`official_pad_before_chop`), which places the bottom/right
    quadrant windows differently. Without ``chop`` the image is padded, run and cropped back; unlike
    the official colour test, ``ensemble`` without ``chop`` ensembles the whole image. The model's
    train/eval mode is left to the caller. ``precision="bf16"`` runs under bfloat16 autocast (the
    DCN stays in float32) and returns the input's dtype; its output is within about 50 dB PSNR of
    float32 (benchmarks/bf16_psnr.py).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16":
        with torch.autocast(noisy.device.type, dtype=torch.bfloat16):
            return denoise(model, noisy, chop, ensemble, min_size, pad_before_chop).to(noisy.dtype)
    if noisy.dim() != 4:
        raise ValueError(f"denoise expects a (B, C, H, W) tensor, got shape {tuple(noisy.shape)}")
    h, w = noisy.shape[-2:]
    if h < MULTIPLE or w < MULTIPLE:
        raise ValueError(f"image of {h}x{w} px is too small: ADFNet needs at least {MULTIPLE}x{MULTIPLE}")
    if not chop:
        y = _run_whole(model, noisy, ensemble)
    else:
        size = default_chop_min_size(noisy.shape[1]) if min_size is None else min_size
        if pad_before_chop:
            x, (h, w) = pad_to_multiple(noisy)
            y = forward_chop(model, x, size, ensemble=ensemble)[..., :h, :w]
        else:
            y = forward_chop(model, noisy, size, ensemble=ensemble)
    return y.clamp(0.0, 1.0)
