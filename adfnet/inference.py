"""The one inference entry, :func:`denoise` (test.py, training validation, the real-noise tools, adfnet-denoise).

``denoise(model, x, tiling, ensemble, precision)`` runs a network on an image of any size in one of three ways:

* ``"whole"``: reflect-padded bottom/right to the network's size multiple (ADFNet downsamples three times: 8),
  run, cropped back;
* ``"chop"``: the official quadrant algorithm (:func:`forward_chop`), in each task's official order: the colour
  test reflect-padded first, the gray test chopped the unpadded image, whose quadrants are multiples of 8 by
  construction. Because ADFNet's MFI pools over whole rows, columns and channels, chopped output is close to,
  not equal to, the whole-image output, and where the quadrant windows sit matters;
* ``"tiles"``: overlapping tiles blended smoothly in bounded memory (:func:`forward_tiled`), for people's own
  images.

Every way gets the same checks and the same precision: the input must be a finite image in [0, 1] (numpy and
uint8 inputs are converted), ``precision="bf16"`` runs the network under bfloat16 autocast with its outputs
blended in the input's dtype, and a non-finite output from a finite input means broken weights and raises
:class:`NonFiniteOutputError` rather than being clamped into a plausible-looking image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from adfnet.imaging import image_to_tensor, tensor_to_image

Forward = Callable[[torch.Tensor], torch.Tensor]

MULTIPLE = 8
CHOP_OVERLAP = 24
# Official quadrant-size thresholds (pixels of one quadrant) of the test scripts: gray utils.py
# 400,000 and RGB utils.py 4,000,000; the real-noise scripts used 400,000.
CHOP_MIN_SIZE_GRAY = 400_000
CHOP_MIN_SIZE_RGB = 4_000_000
CHOP_MIN_SIZE_REAL = 400_000
# Float input beyond these is not a [0, 1] image (AWGN of sigma 75 stays well inside): most likely 0-255.
INPUT_RANGE = (-2.0, 3.0)
TILINGS = ("whole", "chop", "tiles")
PRECISIONS = ("fp32", "bf16")
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 64


class NonFiniteOutputError(ValueError):
    """The model returned NaN/inf for a finite input: its weights are broken (e.g. a diverged training run)."""


class ImageTooLargeError(ValueError):
    """Not enough memory to run the image in one piece (use ``tiling="chop"`` or ``"tiles"``)."""


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


def size_multiple(model: Forward) -> int:
    """The side multiple the network needs: its ``size_multiple`` (ADFNet: 8), else :data:`MULTIPLE`."""
    inner = getattr(model, "module", model)  # DataParallel / DistributedDataParallel
    return int(getattr(inner, "size_multiple", MULTIPLE))


def _run_whole(model: Forward, x: torch.Tensor, ensemble: bool, multiple: int | None = None) -> torch.Tensor:
    """Run on the whole input, padded to ``multiple`` (default: the model's size multiple) and cropped back."""
    padded, (h, w) = pad_to_multiple(x, size_multiple(model) if multiple is None else multiple)
    y = self_ensemble(model, padded) if ensemble else model(padded)
    return y[..., :h, :w]


def forward_chop(
    model: Forward,
    x: torch.Tensor,
    min_size: int,
    overlap: int = CHOP_OVERLAP,
    ensemble: bool = False,
    progress: Callable[[int], object] | None = None,
) -> torch.Tensor:
    """The official ``forward_chop``: 4 overlapping quadrants, no blending, recursion above ``min_size``.

    Each quadrant has sides ``(side // 2 // 8) * 8 + overlap`` (multiples of 8 when ``overlap`` is,
    whatever the input size, which is why the official gray test could chop unpadded images) and
    contributes only its own quarter of the output, which therefore sees at least ``overlap`` pixels
    of context towards the centre. A quadrant with ``h * w >= min_size`` is chopped again; the others
    are run (with :func:`self_ensemble` when ``ensemble``) one at a time to bound memory. An input too
    small to split (a quadrant would not be smaller than it; the official code crashed there) is run
    whole, reflect-padded to a multiple of 8 if needed. ``progress(1)`` is called after each tile run
    (:func:`chop_tiles` of them).
    """
    if overlap < 0 or overlap % MULTIPLE:
        raise ValueError(f"overlap must be a non-negative multiple of {MULTIPLE}, got {overlap}")
    _, _, h, w = x.shape
    h2, w2 = h // 2, w // 2
    hs, ws = _quadrant(h, w, overlap)
    if hs >= h or ws >= w:
        out = _run_whole(model, x, ensemble, MULTIPLE)
        if progress is not None:
            progress(1)
        return out

    patches = [x[..., :hs, :ws], x[..., :hs, w - ws :], x[..., h - hs :, :ws], x[..., h - hs :, w - ws :]]
    if hs * ws < min_size:
        outs = []
        for p in patches:
            outs.append(self_ensemble(model, p) if ensemble else model(p))
            if progress is not None:
                progress(1)
    else:
        outs = [forward_chop(model, p, min_size, overlap, ensemble, progress) for p in patches]

    out = x.new_empty((x.shape[0], outs[0].shape[1], h, w))
    out[..., :h2, :w2] = outs[0][..., :h2, :w2]
    out[..., :h2, w2:] = outs[1][..., :h2, ws - w + w2 :]
    out[..., h2:, :w2] = outs[2][..., hs - h + h2 :, :w2]
    out[..., h2:, w2:] = outs[3][..., hs - h + h2 :, ws - w + w2 :]
    return out


def _quadrant(h: int, w: int, overlap: int) -> tuple[int, int]:
    """Height and width of the four quadrant windows of an ``h x w`` input."""
    return (h // 2 // MULTIPLE) * MULTIPLE + overlap, (w // 2 // MULTIPLE) * MULTIPLE + overlap


def chop_tiles(h: int, w: int, min_size: int, overlap: int = CHOP_OVERLAP) -> int:
    """How many tiles :func:`forward_chop` runs for an ``h x w`` input."""
    hs, ws = _quadrant(h, w, overlap)
    if hs >= h or ws >= w:
        return 1
    return 4 if hs * ws < min_size else 4 * chop_tiles(hs, ws, min_size, overlap)


def default_chop_min_size(n_colors: int) -> int:
    """The official threshold of the synthetic test scripts for this number of channels."""
    return CHOP_MIN_SIZE_GRAY if n_colors == 1 else CHOP_MIN_SIZE_RGB


def official_pad_before_chop(n_colors: int) -> bool:
    """The official synthetic test's order for this task: colour padded then chopped, gray chopped unpadded."""
    return n_colors != 1


def _as_batch(noisy: object, model: Forward) -> tuple[torch.Tensor, bool]:
    """``noisy`` as a float ``(B, C, H, W)`` tensor, and whether it came as a numpy image."""
    if isinstance(noisy, np.ndarray):
        if noisy.ndim not in (2, 3) or not (noisy.dtype == np.uint8 or np.issubdtype(noisy.dtype, np.floating)):
            raise ValueError(
                f"denoise takes a numpy image as (H, W) or (H, W, C), uint8 or float in [0, 1]; got "
                f"shape {noisy.shape}, dtype {noisy.dtype}"
            )
        params = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
        return image_to_tensor(noisy).to(params.device if params is not None else "cpu"), True
    if not isinstance(noisy, torch.Tensor):
        raise TypeError(
            f"denoise takes a torch.Tensor (B, C, H, W) in [0, 1], or a numpy image (H, W[, C]); got a "
            f"{type(noisy).__name__} (convert it with numpy.asarray first)"
        )
    if noisy.dim() != 4:
        hint = " (add the batch dimension: x[None])" if noisy.dim() == 3 else ""
        raise ValueError(f"denoise expects a (B, C, H, W) tensor, got shape {tuple(noisy.shape)}{hint}")
    if noisy.dtype == torch.uint8:
        return noisy.float() / 255.0, False
    if not noisy.is_floating_point():
        raise ValueError(f"denoise takes a float tensor in [0, 1] or uint8 in 0-255, got dtype {noisy.dtype}")
    return noisy, False


def _check_input(x: torch.Tensor, check_range: bool = True) -> None:
    if x.numel() == 0:
        raise ValueError(
            f"denoise got an empty batch of shape {tuple(x.shape)}: give at least one image with at least one channel"
        )
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"the input holds {bad} NaN/inf value(s): denoise needs finite pixel values")
    if not check_range:
        return
    low, high = float(x.amin()), float(x.amax())
    if low < INPUT_RANGE[0] or high > INPUT_RANGE[1]:
        raise ValueError(
            f"the input values range from {low:.4g} to {high:.4g}, but denoise expects an image in [0, 1] "
            "(noise may stray a little outside): divide a 0-255 float image by 255 (uint8 input is "
            "converted for you)"
        )


def _out_of_memory(err: RuntimeError) -> bool:
    text = str(err)
    return isinstance(err, torch.OutOfMemoryError) or "can't allocate memory" in text or "out of memory" in text


def _in_precision(model: Forward, precision: str) -> Forward:
    """``model`` as it runs at ``precision``: bf16 under bfloat16 autocast (the DCN stays in float32), its
    output back in the input's dtype, so that chopped quadrants and blended tiles are put together at it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return model

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return model(x).to(x.dtype)

    return forward


def _progress(total: int, progress: bool | Callable[[int], object] | None) -> tuple[Callable[[int], object], tqdm]:
    """A tile counter: the caller's ``progress`` callable, or a bar of ``total`` tiles (None: when more than 4)."""
    bar = tqdm(
        total=total,
        desc="tiles",
        unit="tile",
        leave=False,
        disable=callable(progress) or not (total > 4 if progress is None else progress),
    )
    return (progress if callable(progress) else bar.update), bar


@torch.no_grad()
def denoise(
    model: Forward,
    noisy: torch.Tensor | np.ndarray,
    tiling: str = "whole",
    ensemble: bool = False,
    precision: str = "fp32",
    *,
    min_size: int | None = None,
    pad_before_chop: bool | None = None,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    progress: bool | Callable[[int], object] | None = None,
    check_range: bool = True,
) -> torch.Tensor | np.ndarray:
    """Denoise a ``(B, C, H, W)`` batch in [0, 1], clamped to [0, 1], at the input size.

    Input: a float tensor in [0, 1] (noisy values slightly outside are fine; 0-255 values are refused),
    a uint8 tensor (divided by 255), or a numpy image ``(H, W[, C])`` uint8 or float in [0, 1], which is
    run on the model's device and returned as a float32 ``(H, W, C)`` numpy array in [0, 1]. NaN/inf
    input raises ``ValueError``; NaN/inf output raises :class:`NonFiniteOutputError`; an image too large
    for memory in one piece raises :class:`ImageTooLargeError`.

    ``tiling`` (:data:`TILINGS`, see the module docstring): ``"whole"`` pads to the model's size multiple, runs
    and crops back; ``"chop"`` is :func:`forward_chop` (``min_size`` defaults to the official per-task
    threshold, :func:`default_chop_min_size`; ``pad_before_chop`` True reflect-pads to a multiple of 8 first,
    the official colour test, False chops the image as it is, the official gray test, which places the
    bottom/right quadrant windows differently; the default ``None`` takes the task's official order from the
    channel count, :func:`official_pad_before_chop`, so test.py and training validation chop alike);
    ``"tiles"`` is :func:`forward_tiled` with ``tile`` and ``overlap``. ``ensemble`` adds the x8 self-ensemble
    (of the whole image, of each quadrant as the official code did, of each tile). ``progress`` counts the
    tiles of chop and tiles: a callable is called with 1 after each, True/False shows a bar or not (default:
    when there are more than 4). The model's train/eval mode is left to the caller.
    ``precision="bf16"`` runs under bfloat16 autocast (on the CPU the DCN and the dynamic filter too, with
    float32 sampling and sums) and returns float32; its output is within about 55 dB PSNR of float32
    (benchmarks/bf16_psnr.py).

    ``check_range=False`` skips the [0, 1] range check, which is there to catch 0-255 images given
    by mistake: a caller that made the noisy input itself from a known sigma (the test harness, the
    training validation) may pass any finite values (sigma 400 strays far outside [0, 1]).
    """
    if tiling not in TILINGS:
        raise ValueError(f"tiling must be one of {', '.join(TILINGS)}, got {tiling!r}")
    forward = _in_precision(model, precision)
    noisy, from_numpy = _as_batch(noisy, model)
    h, w = noisy.shape[-2:]
    if h < MULTIPLE or w < MULTIPLE:
        raise ValueError(f"image of {h}x{w} px is too small: ADFNet needs at least {MULTIPLE}x{MULTIPLE}")
    _check_input(noisy, check_range)
    if tiling == "whole":
        y = _whole(forward, noisy, ensemble, size_multiple(model))
    elif tiling == "chop":
        size = default_chop_min_size(noisy.shape[1]) if min_size is None else min_size
        if pad_before_chop is None:
            pad_before_chop = official_pad_before_chop(noisy.shape[1])
        x, (h, w) = pad_to_multiple(noisy) if pad_before_chop else (noisy, (h, w))
        step, bar = _progress(chop_tiles(*x.shape[-2:], size), progress)
        with bar:
            y = forward_chop(forward, x, size, ensemble=ensemble, progress=step)[..., :h, :w]
    else:
        multiple = size_multiple(model)
        step, bar = _progress(count_tiles(h, w, tile, overlap, multiple), progress)
        with bar:
            y = forward_tiled(forward, noisy, tile, overlap, ensemble, step, multiple)
    if not bool(torch.isfinite(y).all()):
        raise NonFiniteOutputError(
            "the model returned NaN/inf for a finite input: its weights are broken (a diverged training run?); "
            "use other weights, e.g. an earlier checkpoint of the run"
        )
    y = y.clamp(0.0, 1.0)
    return tensor_to_image(y) if from_numpy else y


def _whole(forward: Forward, noisy: torch.Tensor, ensemble: bool, multiple: int) -> torch.Tensor:
    """:func:`_run_whole`, with running out of memory said as what to do about it."""
    try:
        return _run_whole(forward, noisy, ensemble, multiple)
    except RuntimeError as err:
        if not _out_of_memory(err):
            raise
        h, w = noisy.shape[-2:]
        raise ImageTooLargeError(
            f"not enough memory to denoise a {h}x{w} image in one piece ({str(err).splitlines()[0][:200]}): "
            "run it in pieces with tiling='chop' (test.py --chop) or tiling='tiles' (adfnet-denoise)"
        ) from None


# --- Tiled inference (bounded memory, any image size) ----------------------------------------------
# The chop above is the official protocol; tiling is for people's own images. Tiles are blended with
# weights that are 0 within ``overlap // 4`` of a tile's cut edges, so every output pixel comes only from
# tiles that saw at least that much context around it: for a model whose receptive-field radius is at
# most ``overlap // 4`` the tiled output equals the full-image output bit for bit. ADFNet's MFI pools
# over whole rows, columns and channels, so for it tiling is close to, not equal to, the full image.
# Peak memory of one ADFNet float32 forward pass per input pixel, measured on the CPU (no grad) at
# n1 = 32 for tiles of 256 to 768 px and rounded up; it scales with the first width (ADFNet-L: x2).
ADFNET_BYTES_PER_PIXEL = 8_000


def tile_starts(size: int, tile: int, overlap: int, multiple: int = MULTIPLE) -> list[int]:
    """Start offsets (multiples of ``multiple``) of tiles of ``tile`` px covering ``size`` px (a multiple of it).

    Neighbours share at least ``overlap`` px; the starts are spread evenly, the first at 0 and the last
    at ``size - tile``. Starts on the network's size multiple (ADFNet: 8) keep every tile on the full
    image's grid of strided convolutions, so a tile sees exactly what the full image would around the
    pixels it contributes.
    """
    if size <= tile:
        return [0]
    units, step_max = (size - tile) // multiple, (tile - overlap) // multiple
    steps = -(-units // step_max)  # ceil
    return [multiple * (k * units // steps) for k in range(steps + 1)]


def _edge_weight(length: int, cut_before: bool, cut_after: bool, overlap: int) -> torch.Tensor:
    """1-D blending weight of a tile: 0 within ``overlap // 4`` of a cut edge, a raised cosine up to 1.

    Image borders are not cuts (weight 1 up to the border).
    """
    margin = overlap // 4
    ramp = max(overlap - 2 * margin, 1)
    pos = torch.arange(length, dtype=torch.float64)
    dist = torch.full((length,), float("inf"), dtype=torch.float64)
    if cut_before:
        dist = torch.minimum(dist, pos)
    if cut_after:
        dist = torch.minimum(dist, length - 1 - pos)
    t = ((dist - margin + 1) / (ramp + 1)).clamp(0, 1)
    return (0.5 - 0.5 * torch.cos(torch.pi * t)).float()


def count_tiles(h: int, w: int, tile: int, overlap: int, multiple: int = MULTIPLE) -> int:
    """How many model calls :func:`forward_tiled` makes for an ``h`` x ``w`` image (for progress bars)."""
    ph, pw = h + (-h) % multiple, w + (-w) % multiple
    return len(tile_starts(ph, tile, overlap, multiple)) * len(tile_starts(pw, tile, overlap, multiple))


def check_tiling(tile: int, overlap: int, multiple: int = MULTIPLE) -> None:
    """Raise a ``ValueError`` saying what to change when ``tile``/``overlap`` cannot be used."""
    if tile < 2 * multiple or tile % multiple:
        raise ValueError(f"--tile must be a multiple of {multiple} and at least {2 * multiple}, got {tile}")
    if overlap < 0 or overlap % multiple:
        raise ValueError(f"--overlap must be a non-negative multiple of {multiple}, got {overlap}")
    if 2 * overlap > tile:
        raise ValueError(f"--overlap {overlap} is more than half of --tile {tile}: use a larger tile or less overlap")


@torch.no_grad()
def forward_tiled(
    model: Forward,
    x: torch.Tensor,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    ensemble: bool = False,
    progress: Callable[[int], object] | None = None,
    multiple: int | None = None,
) -> torch.Tensor:
    """Run ``model`` on overlapping ``tile`` x ``tile`` windows of ``x`` and blend them smoothly.

    ``x`` is reflect-padded to ``multiple`` (default: the model's size multiple; as the whole-image path
    does), cut into the tiles of
    :func:`tile_starts` (an image side not larger than ``tile`` is one tile), each tile run alone (with
    :func:`self_ensemble` when ``ensemble``) and accumulated as a running weighted mean with the
    :func:`_edge_weight` windows. The running mean leaves a pixel bit-identical when all tiles that
    cover it agree, which is what makes tiling exact for local models. Memory is the model's on one
    tile plus three image-sized buffers. ``progress(1)`` is called after each tile. Not clamped, not
    checked: :func:`denoise` is the entry that does both.
    """
    multiple = size_multiple(model) if multiple is None else multiple
    check_tiling(tile, overlap, multiple)
    padded, (h, w) = pad_to_multiple(x, multiple)
    ph, pw = padded.shape[-2:]
    ys, xs = tile_starts(ph, tile, overlap, multiple), tile_starts(pw, tile, overlap, multiple)
    th, tw = min(tile, ph), min(tile, pw)
    out = weight_sum = None
    for y0 in ys:
        wy = _edge_weight(th, y0 > 0, y0 + th < ph, overlap).to(x.device)
        for x0 in xs:
            wx = _edge_weight(tw, x0 > 0, x0 + tw < pw, overlap).to(x.device)
            patch = padded[..., y0 : y0 + th, x0 : x0 + tw]
            y = self_ensemble(model, patch) if ensemble else model(patch)
            if out is None:
                out = y.new_zeros((*y.shape[:2], ph, pw))
                weight_sum = y.new_zeros((1, 1, ph, pw))
            wt = (wy[:, None] * wx[None, :]).to(y.dtype)
            acc = weight_sum[..., y0 : y0 + th, x0 : x0 + tw]
            acc += wt
            share = torch.where(acc > 0, wt / acc.clamp_min(torch.finfo(y.dtype).tiny), 0)
            region = out[..., y0 : y0 + th, x0 : x0 + tw]
            region += share * (y - region)
            del y
            if progress is not None:
                progress(1)
    return out[..., :h, :w]


def tile_for_memory(budget_bytes: float, bytes_per_pixel: float, image_bytes: float = 0.0) -> int:
    """The largest tile side (a multiple of 8, which suits every network here; at most 2048) whose forward pass
    fits in ``budget_bytes``.

    ``bytes_per_pixel`` is the model's peak memory per input pixel (e.g. :data:`ADFNET_BYTES_PER_PIXEL`
    scaled by width); ``image_bytes`` is what the caller holds anyway (input and output buffers).
    """
    free = budget_bytes - image_bytes
    side = int((max(free, 0) / bytes_per_pixel) ** 0.5) // MULTIPLE * MULTIPLE
    if side < 8 * MULTIPLE:
        raise ValueError(
            f"a memory budget of {budget_bytes / 2**30:.2f} GiB is too small for this image and model "
            f"(the image buffers alone take {image_bytes / 2**30:.2f} GiB): raise --max_memory or set --tile"
        )
    return min(side, 2048)
