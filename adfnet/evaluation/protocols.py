"""The test protocols a synthetic-noise number can be measured under; every protocol fact lives here.

- ``adfnet`` (ours; ADFNet's official test): the seeded float noise is added and left as it is (no clip,
  no rounding); :func:`adfnet.inference.denoise` reflect-pads to a multiple of 8 and crops back; output
  and clean image are quantised to 8 bits and scored with :func:`adfnet.metrics.psnr` and the per-channel
  :func:`adfnet.metrics.ssim`.
- ``sadnet`` (SADNet's release, ``test.py`` at 413fddf): its noisy inputs were 8-bit PNGs, so the same
  seeded noise is clipped to [0, 1] and quantised to 8 bits; clean and noisy images are cropped top-left
  to a multiple of 8 (no padding); one forward pass; the output is clipped to [0, 1] and kept float;
  PSNR on floats with data range 1 (:func:`adfnet.metrics.psnr_float`) and MATLAB-style SSIM on floats
  (:func:`adfnet.metrics.ssim_matlab_float`: 2-D window for gray, one 11x11x11 window for colour).
- ``dbsn`` (DBSN's ``gray_test.py`` / ``rgb_test.py`` at 4cf51b0): the noise their test set drew, NumPy reseeded
  with 0 before each image's noise (:func:`adfnet.data.noise.dbsn_test_noise`: AWGN, their HG ``hg_dbsn``, colour
  MG), added as floats (no clip, no rounding); the whole image in one forward pass; the output clamped to
  [0, 1] and kept float; PSNR on floats with data range 1, per image, then the mean (their ``batch_psnr``,
  skimage's PSNR). DBSN published no SSIM: the SSIM column is the MATLAB-style one on floats, as ``sadnet``'s.

:func:`adfnet.evaluation.synthetic.evaluate_set` asks the protocol for the model's input and for the
scores; ``--chop`` / ``--ensemble`` stay the caller's choice and :meth:`Protocol.caveats` says when they
depart from what the protocol's published numbers used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from adfnet.data.noise import NoiseModel, dbsn_test_noise
from adfnet.imaging import image_to_tensor, quantize
from adfnet.metrics import psnr, psnr_float, ssim, ssim_matlab_float

# SADNet's test.py cropped clean and noisy images to this multiple (its three stride-2 levels).
SADNET_CROP_MULTIPLE = 8

Scores = tuple[float, float]


def _noisy_as_float(clean: torch.Tensor, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return clean, noisy


def _noisy_as_png(clean: torch.Tensor, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy as an 8-bit PNG would store it (clip, round), both images cropped top-left to a multiple of 8."""
    noisy = image_to_tensor(quantize(noisy)).to(noisy.dtype)  # quantize clips to [0, 255] after rounding
    h, w = (side - side % SADNET_CROP_MULTIPLE for side in clean.shape[-2:])
    return clean[..., :h, :w], noisy[..., :h, :w]


def _scores_uint8(out: torch.Tensor, clean: torch.Tensor) -> Scores:
    return psnr(out, clean), ssim(out, clean)


def _scores_float(out: torch.Tensor, clean: torch.Tensor) -> Scores:
    return psnr_float(out, clean), ssim_matlab_float(out, clean)


@dataclass(frozen=True)
class Protocol:
    """How inputs are made and outputs scored. ``inputs(clean, noisy)`` maps the clean image and the seeded
    float noisy image (``(1, C, H, W)``) to what is denoised and what is scored against; ``score(out, clean)``
    gives (PSNR, SSIM) of the clamped output."""

    name: str
    summary: str
    inputs: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    score: Callable[[torch.Tensor, torch.Tensor], Scores]
    plain_forward: bool  # the protocol's numbers come from one forward pass on the whole image (no chop)
    gray_chops: bool  # the protocol's gray numbers were measured with the 4-quadrant chop
    # (clean, noise, seed) -> the seeded float noisy image; None: the noise model's own seeded draw
    noisy: Callable[[torch.Tensor, NoiseModel, int], torch.Tensor] | None = None
    default_seed: int | None = None  # the noise seed of the protocol's numbers; None: the task's official seed

    def make_noisy(self, clean: torch.Tensor, noise: NoiseModel, seed: int) -> torch.Tensor:
        """The seeded float noisy image of ``clean`` (``(1, C, H, W)``) that :attr:`inputs` starts from."""
        return noise(clean, seed=seed) if self.noisy is None else self.noisy(clean, noise, seed)

    def caveats(self, n_colors: int, chop: bool, ensemble: bool, network: bool = True) -> list[str]:
        """Why a run with these options is not like-for-like with numbers measured under this protocol
        (``network`` False: a classical baseline, which the published tables ran on whole images)."""
        notes = []
        if ensemble:
            notes.append(f"--ensemble: the {self.name} protocol's numbers are without self-ensemble")
        if chop and self.plain_forward:
            notes.append(f"--chop: the {self.name} protocol runs the whole image in one forward pass")
        if self.gray_chops and n_colors == 1 and not chop and network:
            notes.append("gray without --chop: the official gray test always chopped")
        return notes


PROTOCOLS: dict[str, Protocol] = {
    "adfnet": Protocol(
        "adfnet",
        "ADFNet protocol: seeded float noise (unclipped), reflect padding, PSNR/SSIM on 8-bit images",
        _noisy_as_float,
        _scores_uint8,
        plain_forward=False,
        gray_chops=True,
    ),
    "sadnet": Protocol(
        "sadnet",
        "SADNet protocol: noisy clipped and quantised to 8 bits, crop to a multiple of 8, PSNR and "
        "MATLAB-style SSIM on float images",
        _noisy_as_png,
        _scores_float,
        plain_forward=True,
        gray_chops=False,
    ),
    "dbsn": Protocol(
        "dbsn",
        "DBSN protocol: DBSN's NumPy noise reseeded with 0 per image (unclipped), whole image, PSNR on clamped "
        "floats (SSIM: MATLAB-style on floats; DBSN published none)",
        _noisy_as_float,
        _scores_float,
        plain_forward=True,
        gray_chops=False,
        noisy=dbsn_test_noise,
        default_seed=0,
    ),
}


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name`` (``adfnet``, ``sadnet``, ``dbsn``); ``ValueError`` naming the choices otherwise."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}") from None
