"""Bayer raw data: mosaicking, packing to 4 half-resolution channels, and a CFA-aware x8 self-ensemble.

A Bayer mosaic is a ``(B, 1, H, W)`` tensor (``H``, ``W`` even) whose 2 x 2 tile is named by its colours
in reading order (:data:`CFA_PATTERNS`). Packed raw is ``(B, 4, H/2, W/2)`` with the channels ALWAYS in
the order R, Gr (the green of the red rows), Gb (the green of the blue rows), B, whatever the mosaic's
pattern, so a network sees the same colour in the same channel for every camera (Brooks et al. 2019
packed RGGB this way).

The geometric x8 self-ensemble of sRGB models (:func:`adfnet.inference.self_ensemble`) cannot be used on
a mosaic as it is: a flip or transpose changes the CFA pattern (a horizontal flip turns RGGB into GRBG),
so the model would see red where it learned green. :func:`cfa_forward` unpacks to the mosaic, applies
the transform, then reflect-pads one row/column on both sides where needed, which shifts the pattern
back to RGGB (with a one-pixel reflection the padded pixel repeats the pixel two away, a pixel of the
right colour), and packs again; :func:`cfa_inverse` undoes the three steps exactly (Liu et al. 2019,
"Learning raw image denoising with Bayer pattern unification and Bayer preserving augmentation").
Red stays red and blue stays blue in every transform; a transpose swaps which green is Gr and which Gb
(geometrically consistent: the green then sharing the red pixel's row is the new Gr).

MWRCANet (NTIRE 2020 raw winner) did not do this: its evaluation rotated and flipped the whole mosaic
and fed it to a network that packs by a 2 x 2 Haar transform, so 6 of its 8 runs saw another pattern.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

CFA_PATTERNS = ("RGGB", "GRBG", "GBRG", "BGGR")
PACKED_CHANNELS = ("R", "Gr", "Gb", "B")
# The dihedral transforms, coded as in adfnet.data.datasets.dihedral: 1 = horizontal flip,
# 2 = vertical flip, 4 = transpose, applied in that order.
TRANSFORMS = tuple(range(8))


def _check_pattern(pattern: str) -> str:
    key = pattern.upper()
    if key not in CFA_PATTERNS:
        raise ValueError(f"unknown Bayer pattern {pattern!r}; choose one of {', '.join(CFA_PATTERNS)}")
    return key


def cfa_offsets(pattern: str) -> tuple[tuple[int, int], ...]:
    """``(row, col)`` inside the 2 x 2 tile of R, Gr, Gb and B for ``pattern``."""
    key = _check_pattern(pattern)
    sites = [(i // 2, i % 2) for i in range(4)]
    red = sites[key.index("R")]
    blue = sites[key.index("B")]
    greens = [s for s, c in zip(sites, key, strict=True) if c == "G"]
    green_red = next(s for s in greens if s[0] == red[0])  # the green sharing the red pixel's row
    green_blue = next(s for s in greens if s != green_red)
    return red, green_red, green_blue, blue


def check_mosaic(mosaic: torch.Tensor) -> None:
    """``ValueError`` naming the fix unless ``mosaic`` is a ``(B, 1, H, W)`` Bayer mosaic of whole 2 x 2 tiles."""
    if mosaic.dim() != 4 or mosaic.shape[1] != 1:
        hint = " (packed raw? unpack it: adfnet.data.raw.unpack)" if mosaic.dim() == 4 and mosaic.shape[1] == 4 else ""
        raise ValueError(f"a Bayer mosaic must be a (B, 1, H, W) tensor, got shape {tuple(mosaic.shape)}{hint}")
    h, w = mosaic.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(
            f"a Bayer mosaic needs an even height and width (whole 2x2 CFA tiles), got {h}x{w}: crop or pad it to "
            "an even size"
        )


def pack(mosaic: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """``(B, 1, H, W)`` Bayer mosaic -> ``(B, 4, H/2, W/2)`` packed R, Gr, Gb, B."""
    check_mosaic(mosaic)
    return torch.cat([mosaic[..., r::2, c::2] for r, c in cfa_offsets(pattern)], dim=1)


def unpack(packed: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """Inverse of :func:`pack`: ``(B, 4, h, w)`` -> ``(B, 1, 2h, 2w)`` mosaic in ``pattern``."""
    if packed.dim() != 4 or packed.shape[1] != 4:
        raise ValueError(f"packed raw must be a (B, 4, h, w) tensor, got shape {tuple(packed.shape)}")
    b, _, h, w = packed.shape
    mosaic = packed.new_empty((b, 1, 2 * h, 2 * w))
    for k, (r, c) in enumerate(cfa_offsets(pattern)):
        mosaic[:, 0, r::2, c::2] = packed[:, k]
    return mosaic


def mosaic(rgb: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """Sample a ``(B, 3, H, W)`` RGB image through a Bayer filter: ``(B, 1, H, W)``, each site keeps its colour."""
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ValueError(f"mosaic expects a (B, 3, H, W) RGB tensor, got shape {tuple(rgb.shape)}")
    out = rgb.new_empty((rgb.shape[0], 1, *rgb.shape[2:]))
    check_mosaic(out)
    for channel, (r, c) in zip((0, 1, 1, 2), cfa_offsets(pattern), strict=True):
        out[:, 0, r::2, c::2] = rgb[:, channel, r::2, c::2]
    return out


def demosaic_bilinear(mosaic_: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """Bilinear demosaicking ``(B, 1, H, W)`` -> ``(B, 3, H, W)``, for looking at raw data (not for scoring).

    Each colour is the normalised average of its known samples in the 3 x 3 neighbourhood: the 4-neighbour
    cross for green (its diagonal neighbours are green too, and must not blur the measured samples),
    weights 1-2-4 for red and blue. Borders are reflect-padded by one pixel, which keeps the CFA pattern.
    """
    check_mosaic(mosaic_)
    masks = torch.zeros((1, 3, *mosaic_.shape[-2:]), dtype=mosaic_.dtype, device=mosaic_.device)
    for channel, (r, c) in zip((0, 1, 1, 2), cfa_offsets(pattern), strict=True):
        masks[:, channel, r::2, c::2] = 1
    full = [[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]
    cross = [[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]
    kernel = torch.tensor([full, cross, full], dtype=mosaic_.dtype, device=mosaic_.device)[:, None]
    samples = F.pad(mosaic_ * masks, (1, 1, 1, 1), mode="reflect")
    weights = F.pad(masks.expand(mosaic_.shape[0], -1, -1, -1), (1, 1, 1, 1), mode="reflect")
    return F.conv2d(samples, kernel, groups=3) / F.conv2d(weights, kernel, groups=3)


def _dihedral(x: torch.Tensor, code: int) -> torch.Tensor:
    if code & 1:
        x = x.flip(-1)
    if code & 2:
        x = x.flip(-2)
    if code & 4:
        x = x.transpose(-2, -1)
    return x


def _dihedral_inverse(x: torch.Tensor, code: int) -> torch.Tensor:
    if code & 4:
        x = x.transpose(-2, -1)
    if code & 2:
        x = x.flip(-2)
    if code & 1:
        x = x.flip(-1)
    return x


def _pattern_shift(code: int) -> tuple[int, int]:
    """Rows/columns ``(dy, dx)`` to pad on each side so that the transformed RGGB mosaic is RGGB again."""
    tile = torch.tensor([[0, 1], [1, 2]])  # R G / G B: the colours of RGGB
    moved = _dihedral(tile, code)
    for dy in (0, 1):
        for dx in (0, 1):
            if torch.equal(moved.roll((dy, dx), dims=(0, 1)), tile):
                return dy, dx
    raise AssertionError("every dihedral image of a Bayer tile is a shifted Bayer tile")


def cfa_forward(packed: torch.Tensor, code: int) -> torch.Tensor:
    """Packed raw seen through dihedral transform ``code``, repacked with the same colour per channel.

    The output is one pixel larger on a side when the transform moved the pattern (see the module).
    """
    dy, dx = _pattern_shift(code)
    moved = _dihedral(unpack(packed), code)
    return pack(F.pad(moved, (dx, dx, dy, dy), mode="reflect") if dy or dx else moved)


def cfa_inverse(packed: torch.Tensor, code: int) -> torch.Tensor:
    """Inverse of :func:`cfa_forward` (also for a model's output of the forward-transformed input)."""
    dy, dx = _pattern_shift(code)
    moved = unpack(packed)
    moved = moved[..., dy : moved.shape[-2] - dy, dx : moved.shape[-1] - dx]
    return pack(_dihedral_inverse(moved, code))


def cfa_self_ensemble(fn: Callable[[torch.Tensor], torch.Tensor], packed: torch.Tensor) -> torch.Tensor:
    """x8 CFA-aware self-ensemble of a packed-raw model ``fn``: the mean of the 8 transformed runs.

    The sum is taken in float64, so the mean of 8 equal outputs is that output exactly (an identity
    ``fn`` returns ``packed`` bit for bit).
    """
    total = None
    for code in TRANSFORMS:
        out = cfa_inverse(fn(cfa_forward(packed, code)), code).to(torch.float64)
        total = out if total is None else total + out
    return (total / len(TRANSFORMS)).to(packed.dtype)
