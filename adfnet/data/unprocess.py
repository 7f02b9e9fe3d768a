"""sRGB -> raw "unprocessing" (Brooks et al., CVPR 2019), its forward processing, and a raw training set.

No raw dataset is needed to train a raw denoiser: each clean sRGB crop is turned into plausible linear
camera data by inverting, in reverse order, the steps of a camera pipeline with random camera
parameters (:func:`random_camera`): the global tone curve (:func:`inverse_smoothstep`), the gamma
(:func:`gamma_expansion`), the colour correction (the random sRGB -> camera matrix) and the white
balance and brightening gains (:func:`safe_invert_gains`); then it is mosaicked and packed
(:mod:`adfnet.data.raw`) and raw noise is added (``poisson_gaussian`` of :mod:`adfnet.data.noise`).
:func:`process` runs the pipeline forwards, for looking at raw results as sRGB.

The camera constants are facts from the paper's release: four Adobe DNG XYZ -> camera matrices mixed
with random convex weights, sRGB (D65) -> XYZ, brightening ``1 / N(0.8, 0.1)``, red gain ``U(1.9, 2.4)``,
blue gain ``U(1.5, 1.9)``, highlights (mean above 0.9) protected from dimming.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from adfnet.data.cache import DecodedCache
from adfnet.data.datasets import (
    MIN_VAL_SIDE,
    TrainingSet,
    check_validation_sizes,
    crop_window,
    decodable,
    dihedral,
    keep_large_enough,
    patch_from,
    random_crop,
    sample_rng,
    torch_generator,
)
from adfnet.data.io import ImageWarning, image_to_tensor, read_image
from adfnet.data.noise import NoiseModel, build_noise
from adfnet.data.raw import mosaic, pack, unpack
from adfnet.fileio import atomic_file

XYZ_TO_CAMS = (
    ((1.0234, -0.2969, -0.2266), (-0.5625, 1.6328, -0.0469), (-0.0703, 0.2188, 0.6406)),
    ((0.4913, -0.0541, -0.0202), (-0.6130, 1.3513, 0.2906), (-0.1564, 0.2151, 0.7183)),
    ((0.8380, -0.2630, -0.0639), (-0.2887, 1.0725, 0.2496), (-0.0627, 0.1427, 0.5438)),
    ((0.6596, -0.2079, -0.0562), (-0.4782, 1.3016, 0.1933), (-0.0970, 0.1581, 0.5181)),
)
SRGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375), (0.2126729, 0.7151522, 0.0721750), (0.0193339, 0.1191920, 0.9503041))
RGB_GAIN_MEAN, RGB_GAIN_STD = 0.8, 0.1  # the brightening gain is 1 / N(0.8, 0.1)
RED_GAIN_RANGE, BLUE_GAIN_RANGE = (1.9, 2.4), (1.5, 1.9)
HIGHLIGHT = 0.9  # gains fade out above this mean intensity so that saturated pixels stay saturated
GAMMA = 2.2
EPS = 1e-8


@dataclass(frozen=True)
class Camera:
    """The random metadata of one unprocessed image: sRGB -> camera matrix (rows sum to 1) and gains."""

    rgb2cam: torch.Tensor  # (3, 3) float64
    rgb_gain: float
    red_gain: float
    blue_gain: float

    @property
    def cam2rgb(self) -> torch.Tensor:
        return torch.linalg.inv(self.rgb2cam)

    def gains(self) -> torch.Tensor:
        """The camera's white balance and brightening, per R, G, B channel (float64)."""
        return torch.tensor([self.red_gain, 1.0, self.blue_gain], dtype=torch.float64) * self.rgb_gain


def random_camera(g: torch.Generator) -> Camera:
    """Random camera parameters drawn from ``g`` (a CPU generator), with Brooks et al.'s distributions."""

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape or (1,), generator=g, dtype=torch.float64)

    weights = uniform(1e-8, 1e8, len(XYZ_TO_CAMS), 1, 1)
    xyz2cam = (torch.tensor(XYZ_TO_CAMS, dtype=torch.float64) * weights).sum(0) / weights.sum()
    rgb2cam = xyz2cam @ torch.tensor(SRGB_TO_XYZ, dtype=torch.float64)
    rgb2cam = rgb2cam / rgb2cam.sum(dim=1, keepdim=True)
    rgb_gain = 1.0 / (RGB_GAIN_MEAN + RGB_GAIN_STD * float(torch.randn(1, generator=g, dtype=torch.float64)))
    return Camera(rgb2cam, rgb_gain, float(uniform(*RED_GAIN_RANGE)), float(uniform(*BLUE_GAIN_RANGE)))


def smoothstep(x: torch.Tensor) -> torch.Tensor:
    """The global tone curve ``3x^2 - 2x^3`` assumed for the camera."""
    return x * x * (3.0 - 2.0 * x)


def inverse_smoothstep(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`smoothstep` on [0, 1] (input clipped to [0, 1])."""
    return 0.5 - torch.sin(torch.asin(1.0 - 2.0 * x.clamp(0.0, 1.0)) / 3.0)


def gamma_expansion(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(min=EPS) ** GAMMA


def gamma_compression(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(min=EPS) ** (1.0 / GAMMA)


def apply_ccm(x: torch.Tensor, ccm: torch.Tensor) -> torch.Tensor:
    """Multiply every pixel of ``(B, 3, H, W)`` by the 3 x 3 matrix ``ccm``."""
    return torch.einsum("ij,bjhw->bihw", ccm.to(x), x)


def safe_invert_gains(x: torch.Tensor, camera: Camera) -> torch.Tensor:
    """Undo the gains, except near white: a pixel whose channel mean exceeds :data:`HIGHLIGHT` is divided
    by less, fading smoothly to no change at 1, so that clipped highlights do not turn grey."""
    inverse = (1.0 / camera.gains()).to(x).view(1, 3, 1, 1)
    mask = ((x.mean(dim=1, keepdim=True) - HIGHLIGHT).clamp(min=0) / (1.0 - HIGHLIGHT)) ** 2
    return x * torch.maximum(mask + (1.0 - mask) * inverse, inverse)


def unprocess(srgb: torch.Tensor, camera: Camera) -> torch.Tensor:
    """``(B, 3, H, W)`` sRGB in [0, 1] -> linear camera RGB in [0, 1] (then :func:`adfnet.data.raw.mosaic`)."""
    x = gamma_expansion(inverse_smoothstep(srgb))
    x = apply_ccm(x, camera.rgb2cam)
    return safe_invert_gains(x, camera).clamp(0.0, 1.0)


def process(linear: torch.Tensor, camera: Camera) -> torch.Tensor:
    """Linear camera RGB ``(B, 3, H, W)`` -> sRGB in [0, 1]: gains, colour correction, gamma, tone curve.

    For raw data, demosaic first (:func:`adfnet.data.raw.demosaic_bilinear`). Unlike Brooks et al.'s
    ``process``, the brightening gain is applied too, so that ``process(unprocess(x))`` is ``x`` wherever
    nothing was clipped (tested).
    """
    x = (linear * camera.gains().to(linear).view(1, 3, 1, 1)).clamp(0.0, 1.0)
    x = apply_ccm(x, camera.cam2rgb).clamp(0.0, 1.0)
    return smoothstep(gamma_compression(x))


class UnprocessedRawTrain(TrainingSet):
    """Raw training pairs from clean sRGB images: ``(noisy, clean)`` packed ``(4, P/2, P/2)`` float32.

    Each sample: a random ``patch_size`` crop (even), one of the 8 dihedral transforms (of the sRGB
    crop, before the mosaic, so the CFA pattern is untouched), a random camera, :func:`unprocess`, a
    ``pattern`` mosaic packed as R, Gr, Gb, B, and ``noise`` (default ``poisson_gaussian`` with Brooks
    et al.'s random shot/read levels). Every random choice comes from
    ``(seed, epoch, index)`` (:class:`adfnet.data.datasets.TrainingSet`), like the other training sets: samples
    do not depend on worker count or order, and each epoch is fresh. Gray images are replicated to RGB.
    With ``cache``, the crops come from the decoded cache (the same crops); building it leaves out the
    files that do not decode (``left_out``).
    """

    def __init__(
        self,
        files: Sequence[Path],
        patch_size: int,
        length: int,
        seed: int = 1,
        noise: NoiseModel | None = None,
        pattern: str = "RGGB",
        cache: DecodedCache | None = None,
        workers: int = 1,
    ) -> None:
        if patch_size < 2 or patch_size % 2:
            raise ValueError(
                f"raw training patches need an even --patch_size (two Bayer rows per tile), got {patch_size}"
            )
        self.files, self.left_out = list(keep_large_enough(files, patch_size)), []
        if cache is not None:
            self.files, self.left_out = decodable(self.files, 3, workers, cache)
        self.noise = noise if noise is not None else build_noise("poisson_gaussian")
        super().__init__(length, seed, cache)
        self.patch_size, self.pattern = patch_size, pattern
        pack(torch.zeros(1, 1, 2, 2), pattern)  # an unknown pattern fails here, not in a worker

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng(index)
        path = self.files[index % len(self.files)]
        pixels, equal = self.pixels(path, 3)
        patch = dihedral(
            patch_from(pixels, equal, crop_window(pixels, self.patch_size, rng), 3, path), int(rng.integers(8))
        )
        g = torch_generator(rng)
        clean = raw_clean(image_to_tensor(patch), random_camera(g), self.pattern)
        return self.noise(clean, generator=g)[0], clean[0]


class UnprocessedRawVal(Dataset):
    """Whole clean sRGB images as raw validation/test pairs ``(noisy, clean, name)``, packed ``(4, h, w)``.

    Images are cropped to even sizes. Image ``i``'s camera and noise are fixed by ``(seed, i)``: the same
    pairs in every epoch and run, whatever the batch or worker, and the noise model's test-time draw
    (``seed=``) is used. Also the way to make synthetic raw test blocks from the bundled images.
    """

    def __init__(self, files: Sequence[Path], seed: int, noise: NoiseModel | None = None, pattern: str = "RGGB"):
        check_validation_sizes(files, 2 * MIN_VAL_SIDE)  # packed to half size
        self.files, self.seed, self.pattern = list(files), seed, pattern
        self.noise = noise if noise is not None else build_noise("poisson_gaussian")
        pack(torch.zeros(1, 1, 2, 2), pattern)  # an unknown pattern fails here

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        camera_seed, noise_seed = (int(v) for v in sample_rng(self.seed, 0, index).integers(2**63 - 1, size=2))
        img = _read_rgb(self.files[index])
        srgb = image_to_tensor(img[: img.shape[0] // 2 * 2, : img.shape[1] // 2 * 2])
        clean = raw_clean(srgb, random_camera(torch.Generator().manual_seed(camera_seed)), self.pattern)
        return self.noise(clean, seed=noise_seed)[0], clean[0], self.files[index].stem


def write_raw_pairs(
    files: Sequence[Path],
    folder: str | Path,
    seed: int,
    crop: int,
    copies: int = 1,
    noise: NoiseModel | None = None,
    pattern: str = "RGGB",
) -> int:
    """Fixed raw pairs from clean sRGB images, laid out as real raw pairs are read (:mod:`adfnet.data.raw_pairs`):
    ``folder/clean/<stem>_<k>.npy`` and ``folder/noisy/<stem>_<k>.npy``, float32 ``pattern`` mosaics.

    Each of the ``copies`` per image is a random ``crop`` x ``crop`` window (even) with its own camera and noise
    (default: ``poisson_gaussian`` with Brooks et al.'s random shot/read levels), all drawn from ``(seed, k,
    index)``: the same files for the same arguments. A fixed dataset of noisy inputs with clean truth, as SIDD's
    raw pairs are: what a distillation writes its teacher targets for. Images smaller than ``crop`` are left out
    (with a warning). Returns the number of pairs written (through :mod:`adfnet.fileio`).
    """
    if crop < 2 or crop % 2:
        raise ValueError(f"raw pairs need an even crop (whole 2x2 CFA tiles), got {crop}")
    noise = noise if noise is not None else build_noise("poisson_gaussian")
    pack(torch.zeros(1, 1, 2, 2), pattern)  # an unknown pattern fails before anything is written
    folder = Path(folder)
    written = 0
    for index, path in enumerate(tqdm(list(keep_large_enough(files, crop)), desc="raw pairs", unit="image")):
        img = _read_rgb(path)
        for k in range(copies):
            rng = sample_rng(seed, k, index)
            top, left = random_crop(img, crop, rng)
            g = torch_generator(rng)
            clean = raw_clean(image_to_tensor(img[top : top + crop, left : left + crop]), random_camera(g), pattern)
            noisy = noise(clean, generator=g)
            for sub, packed in (("clean", clean), ("noisy", noisy)):
                mosaic_ = unpack(packed, pattern)[0, 0].numpy()
                with atomic_file(folder / sub / f"{path.stem}_{k}.npy", mosaic_.nbytes) as f:
                    np.save(f, mosaic_)
            written += 1
    return written


def raw_clean(srgb: torch.Tensor, camera: Camera, pattern: str = "RGGB") -> torch.Tensor:
    """``(1, 3, H, W)`` sRGB -> clean packed raw ``(1, 4, H/2, W/2)``: :func:`unprocess`, mosaic, pack."""
    return pack(mosaic(unprocess(srgb, camera), pattern), pattern)


def _read_rgb(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImageWarning)  # gray images replicated to RGB
        return read_image(path, 3)
