"""Raw-domain evaluation: packed Bayer through a 4-channel model, and SIDD's raw blocks.

A mosaic is packed to R, Gr, Gb, B in its CFA pattern (:mod:`adfnet.data.raw`), denoised by
:func:`adfnet.inference.denoise` (padding, optional chop, output clamped to [0, 1]) or by the CFA-aware
x8 self-ensemble (:func:`adfnet.data.raw.cfa_self_ensemble`; the geometric sRGB ensemble would show the
model another pattern), unpacked, and scored by :func:`adfnet.metrics.psnr_raw` (peak 1, no quantisation),
one PSNR per block and the mean over every block, as MWRCANet scored SIDD's raw validation set.

Two raw layouts (:data:`RAW_LAYOUTS`): ``"packed"`` (ours, above: 4-channel models, the mosaic packed in a named
CFA pattern, the CFA-aware ensemble) and ``"plane"`` (MWRCANet's protocol: the mosaic as stored, one plane, to a
one-plane raw network, whose first Haar transform packs it; the ensemble is the geometric x8 of
:func:`adfnet.inference.denoise`, on sizes the network takes as they are the authors' x8,
:func:`adfnet.models.mwrcanet.authors_self_ensemble`, under which most passes see another CFA pattern).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from adfnet.data.raw import cfa_self_ensemble, check_mosaic, pack, unpack
from adfnet.inference import denoise
from adfnet.metrics import psnr_raw

Model = Callable[[torch.Tensor], torch.Tensor]
RAW_LAYOUTS = {
    "packed": "packed in the CFA pattern to R, Gr, Gb, B, CFA-aware x8",
    "plane": "one Bayer plane as stored, the authors' geometric x8",
}


def denoise_packed(model: Model, packed: torch.Tensor, chop: bool = False, ensemble: bool = False) -> torch.Tensor:
    """Denoise packed raw ``(B, 4, h, w)`` in [0, 1]; ``ensemble`` is the CFA-aware x8 self-ensemble."""
    if packed.dim() != 4 or packed.shape[1] != 4:
        raise ValueError(f"packed raw must be a (B, 4, h, w) tensor, got shape {tuple(packed.shape)}")

    def run(x: torch.Tensor) -> torch.Tensor:
        return denoise(model, x, "chop" if chop else "whole")

    with torch.no_grad():
        return cfa_self_ensemble(run, packed) if ensemble else run(packed)


def denoise_mosaic(
    model: Model,
    mosaic: np.ndarray,
    device: torch.device,
    pattern: str,
    chop: bool = False,
    ensemble: bool = False,
    layout: str = "packed",
) -> np.ndarray:
    """Denoise one ``H x W`` float Bayer mosaic (float32, [0, 1]): ``layout`` ``"packed"`` packs it in ``pattern``,
    denoises and unpacks; ``"plane"`` gives it as it is to a one-plane raw network (``pattern`` unused)."""
    x = torch.from_numpy(np.ascontiguousarray(mosaic, dtype=np.float32))[None, None].to(device)
    if layout == "plane":
        check_mosaic(x)  # padding would hide a half tile from the network's own check
        with torch.no_grad():
            return denoise(model, x, "chop" if chop else "whole", ensemble)[0, 0].float().cpu().numpy()
    out = denoise_packed(model, pack(x, pattern), chop, ensemble)
    return unpack(out, pattern)[0, 0].float().cpu().numpy()


def denoise_raw_blocks(
    model: Model,
    blocks: np.ndarray,
    device: torch.device,
    pattern: str,
    chop: bool = False,
    ensemble: bool = False,
    layout: str = "packed",
) -> tuple[np.ndarray, float]:
    """Denoise ``N x K x H x W`` raw blocks in ``layout`` (:func:`denoise_mosaic`); returns the float32 blocks and
    the seconds per megapixel."""
    out = np.empty(blocks.shape, dtype=np.float32)
    n, k = blocks.shape[:2]
    start = time.perf_counter()
    for index in tqdm(range(n * k), desc="raw blocks", unit="block"):
        i, j = divmod(index, k)
        out[i, j] = denoise_mosaic(model, blocks[i, j], device, pattern, chop, ensemble, layout)
    megapixels = blocks[..., 0, 0].size * blocks.shape[2] * blocks.shape[3] / 1e6
    return out, (time.perf_counter() - start) / max(megapixels, 1e-12)


def score_raw_blocks(denoised: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-block PSNR (peak 1) of ``N x K x H x W`` blocks, as an ``N x K`` array (its mean is the score)."""
    if denoised.shape != gt.shape:
        raise ValueError(f"denoised blocks {denoised.shape} and ground truth {gt.shape} differ in shape")
    n, k = gt.shape[:2]
    return np.array([[psnr_raw(denoised[i, j], gt[i, j]) for j in range(k)] for i in range(n)])
