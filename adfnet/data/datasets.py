"""Training and validation datasets: synthetic AWGN on clean images, and paired real noise (hq/ + lq/).

Every random decision of a training sample (which crop, which of the 8 dihedral transforms, the
noise) comes from a generator seeded by ``(seed, epoch, index)``. Samples therefore do not depend on
the number of DataLoader workers or processes, each epoch sees fresh crops and fresh noise, and a run
resumed at an epoch boundary sees exactly the samples the uninterrupted run would have seen. (The
official loader seeded only torch in its workers, so every worker replayed the same Python RNG
stream of crops and flips.)

Before training, every training image is decoded once (:func:`decodable`): a truncated file with a
valid header, or one with NaN/inf pixels, is named and left out at the start instead of killing a
run hours later when the loader reaches it. With a decoded cache (:mod:`adfnet.data.cache`,
``--cache``) that pass builds or checks the cache, and samples cut their patch from the memory-mapped
pixels instead of decoding the whole image; the samples are the same, bit for bit.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from tqdm import tqdm

from adfnet.data.cache import DecodedCache
from adfnet.data.io import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    ImageWarning,
    decode_pixels,
    image_to_tensor,
    list_images,
    pixels_to_float,
    read_image,
    same_channels,
)
from adfnet.data.noise import NoiseModel

# The repository's bundled and downloaded data: set names (--data_val Set12) and the default --dir_data
# are looked up here, not in the current folder, so train.py works from any folder.
DATASETS_ROOT = Path(__file__).resolve().parents[2] / "datasets"

# Folders of the official MIX training set (ADFNet*), under <dir_data>/MIX.
MIX_FOLDERS = ("WED", "DIV2K", "Flickr2K", "BSD400")
# Where DIV2K's 800 training images may sit under <dir_data>/DIV2K (first match wins).
DIV2K_SUBFOLDERS = ("DIV2K_train_HR", "DIV2K_HQ", "DIV2K_train_Color_HQ")
DIV2K_HINT = (
    "download DIV2K_train_HR.zip (800 images) from https://data.vision.ee.ethz.ch/cvl/DIV2K/ and unzip it "
    "so that the images are in <dir_data>/DIV2K/DIV2K_train_HR/ (see datasets/README.md), or pass "
    "--dir_data <a folder of clean images>"
)
MIX_HINT = (
    "ADFNet* trains on <dir_data>/MIX/{WED,DIV2K,Flickr2K,BSD400}/: put the images of the Waterloo "
    "Exploration Database, DIV2K_train_HR, Flickr2K_HR and BSD400 in these four folders (see datasets/README.md)"
)


def dihedral(img: np.ndarray, code: int) -> np.ndarray:
    """Apply one of the 8 dihedral transforms to an ``(H, W, C)`` array.

    Bits of ``code``: 1 = horizontal flip, 2 = vertical flip, 4 = transpose (the official order).
    """
    if code & 1:
        img = img[:, ::-1]
    if code & 2:
        img = img[::-1]
    if code & 4:
        img = img.transpose(1, 0, 2)
    return img


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one training sample: independent of workers, fresh every epoch."""
    return np.random.default_rng([seed, epoch, index])


class TrainingSet(Dataset):
    """What every training set shares: ``length`` samples per epoch, the epoch the trainer sets before each
    (:meth:`set_epoch`), sample ``index``'s generator of ``(seed, epoch, index)`` (:meth:`rng`), and the
    decoded ``cache`` its patches come from when given (:meth:`pixels`; prepared by :func:`decodable`)."""

    def __init__(self, length: int, seed: int, cache: DecodedCache | None = None) -> None:
        self.length, self.seed, self.epoch, self.cache = length, seed, 1, cache

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def rng(self, index: int) -> np.random.Generator:
        return sample_rng(self.seed, self.epoch, index)

    def pixels(self, path: Path, n_colors: int) -> tuple[np.ndarray, bool | None]:
        """:func:`stored_pixels` of ``path``, from this set's cache if it has one."""
        return stored_pixels(path, n_colors, self.cache)


def torch_generator(rng: np.random.Generator) -> torch.Generator:
    """A CPU torch generator seeded from ``rng`` (for :func:`add_awgn`)."""
    return torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a uniformly random ``size x size`` crop (every position possible)."""
    h, w = img.shape[:2]
    return int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))


def crop_window(img: np.ndarray, size: int, rng: np.random.Generator) -> tuple[slice, slice]:
    """The rows and columns of :func:`random_crop`."""
    top, left = random_crop(img, size, rng)
    return slice(top, top + size), slice(left, left + size)


@dataclass(frozen=True)
class ImageHeader:
    """What a file header says: the stored size and whether the pixels are gray (one colour band)."""

    height: int
    width: int
    gray: bool


def probe_image(path: Path) -> ImageHeader:
    """Size and gray/colour of ``path`` from its header only, for the checks made before training.

    Not :func:`~adfnet.data.io.read_image`, on purpose: decoding the 800 2K DIV2K images (8,600 for
    MIX) only to learn their sizes would delay every start by minutes. The probe describes the
    file; ``read_image`` alone decides the pixels the model gets. The two agree (tested): the size is
    the stored one (``read_image`` decodes with ``IMREAD_UNCHANGED``, which ignores EXIF orientation),
    and "gray" means one stored colour band (every PIL mode whose base is ``L``: 1-bit, 8/16-bit,
    float, big- or little-endian, with or without alpha), the images that reach a colour model as one
    band replicated three times.
    """
    try:
        with Image.open(path) as im:
            w, h = im.size
            return ImageHeader(h, w, Image.getmodebase(im.mode) == "L")
    except UnidentifiedImageError as err:
        raise ImageReadError(f"cannot decode {path}: the file is corrupt or not a supported image") from err


# The smallest validation image side: ADFNet downsamples three times (reflect padding needs a side >= 8).
MIN_VAL_SIDE = 8


def check_validation_sizes(files: Sequence[Path], minimum: int = MIN_VAL_SIDE) -> None:
    """Refuse, before any training, a validation image smaller than ``minimum`` px, naming it (headers only)."""
    for path in files:
        header = probe_image(path)
        if min(header.height, header.width) < minimum:
            raise ValueError(
                f"validation image {path} is {header.height}x{header.width} px: too small (ADFNet needs at least "
                f"{minimum}x{minimum}); remove it from --data_val or pass another folder"
            )


def keep_large_enough(files: Sequence[Path], patch_size: int) -> dict[Path, ImageHeader]:
    """Headers of the images at least ``patch_size`` on both sides, in order: the others are dropped
    with one warning; raise if none is left."""
    headers = {f: probe_image(f) for f in files}
    kept = {f: h for f, h in headers.items() if min(h.height, h.width) >= patch_size}
    skipped = len(files) - len(kept)
    if not kept:
        raise ValueError(f"all {len(files)} training images are smaller than --patch_size {patch_size}")
    if skipped:
        warnings.warn(
            f"{skipped} of {len(files)} training images are smaller than the {patch_size}-px patch and are skipped",
            UserWarning,
            stacklevel=2,
        )
    return kept


def _decode_problem(path: Path, n_colors: int) -> str | None:
    """Why ``path`` cannot be a training image (None if it decodes to finite pixels)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImageWarning)
            img = read_image(path, n_colors)
    except (ImageReadError, OSError) as err:
        return str(err)
    if not np.isfinite(img).all():
        return f"{path}: NaN/inf pixel values"
    return None


def decodable(
    files: Sequence[Path], n_colors: int, workers: int = 1, cache: DecodedCache | None = None
) -> tuple[list[Path], list[str]]:
    """Decode every file once (``workers`` threads; the decoder releases the GIL), or build/check its
    entry in ``cache``: the files that give finite pixels, in order, and one line per file left out,
    naming it. Raise if none is left."""
    if cache is not None:
        problems = cache.prepare(files, workers)
    else:
        pool = ThreadPoolExecutor(max(1, workers))
        try:
            problems = list(
                tqdm(
                    pool.map(lambda f: _decode_problem(f, n_colors), files),
                    total=len(files),
                    desc="checking training images",
                    unit="image",
                    leave=False,
                )
            )
        finally:  # a Ctrl-C stops at once: the images not started are cancelled, not decoded first
            pool.shutdown(wait=False, cancel_futures=True)
    good = [f for f, problem in zip(files, problems, strict=True) if problem is None]
    bad = [problem for problem in problems if problem is not None]
    if not good:
        raise ValueError(f"none of the {len(files)} training images can be used: {bad[0]}")
    if bad:
        warnings.warn(
            f"{len(bad)} of {len(files)} training images are left out:\n  " + "\n  ".join(bad),
            UserWarning,
            stacklevel=2,
        )
    return good, bad


def stored_pixels(path: Path, n_colors: int, cache: DecodedCache | None) -> tuple[np.ndarray, bool | None]:
    """The pixels of a training image as stored (:func:`~adfnet.data.io.decode_pixels`): mapped from
    ``cache``, or decoded now; and, for a colour image going to a gray model, whether its three
    channels are equal (a whole-image decision, so made before any crop)."""
    if cache is not None:
        return cache.array(path), cache.equal_channels(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImageWarning)  # bit depth and alpha: as read_image, silently
        pixels = decode_pixels(path)
    return pixels, same_channels(pixels) if n_colors == 1 and pixels.shape[2] == 3 else None


def patch_from(
    pixels: np.ndarray, equal: bool | None, window: tuple[slice, slice], n_colors: int, path: Path
) -> np.ndarray:
    """``read_image(path, n_colors)[window]``, converting only the window (conversion is per pixel)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImageWarning)  # gray-to-colour and the like: summarised per set
        return pixels_to_float(pixels[window], n_colors, path, equal)


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir())


def training_files(data_train: str, dir_data: str | Path) -> list[Path]:
    """Clean training images for ``--data_train`` (``DIV2K`` or ``MIX``) under ``--dir_data``.

    ``dir_data`` may be a folder of images itself (any names and extensions), or the root holding
    ``DIV2K/`` (images directly or in one of :data:`DIV2K_SUBFOLDERS`) or ``MIX/`` (:data:`MIX_FOLDERS`).
    """
    root = Path(dir_data)
    if _has_images(root):
        return list_images(root)
    if data_train.upper() == "MIX":
        mix = root / "MIX" if (root / "MIX").is_dir() else root
        found = [mix / name for name in MIX_FOLDERS if _has_images(mix / name)]
        if not found:
            raise FileNotFoundError(f"no MIX training images under {mix}: {MIX_HINT}")
        missing = [name for name in MIX_FOLDERS if mix / name not in found]
        if missing:
            warnings.warn(
                f"MIX: training without {', '.join(missing)} (not found under {mix})", UserWarning, stacklevel=2
            )
        return [f for folder in found for f in list_images(folder)]
    if data_train.upper() != "DIV2K":
        raise ValueError(f"unknown --data_train {data_train!r}: use DIV2K or MIX (or point --dir_data at a folder)")
    div2k = root / "DIV2K"
    for folder in (div2k, *(div2k / sub for sub in DIV2K_SUBFOLDERS)):
        if _has_images(folder):
            return list_images(folder)
    raise FileNotFoundError(f"no training images in {root} nor under {div2k}: {DIV2K_HINT}")


def validation_files(data_val: str, n_val: int = 0, root: str | Path = DATASETS_ROOT) -> list[Path]:
    """Images of ``--data_val``: a folder (relative to the current folder), else a set name under
    ``<root>/testsets`` or ``<root>`` (the repository's ``datasets/``, wherever train.py is run from);
    the first ``n_val`` if > 0."""
    folder = Path(data_val)
    if not folder.is_dir():
        candidates = [Path(root) / "testsets" / data_val, Path(root) / data_val]
        folder = next((c for c in candidates if c.is_dir()), folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"validation set {data_val!r} not found (neither a folder nor {Path(root) / 'testsets' / data_val}); "
            f"pass --data_val <folder of clean images> or one of the sets under {Path(root) / 'testsets'}"
        )
    files = list_images(folder)
    return files[:n_val] if n_val > 0 else files


class SyntheticNoiseTrain(TrainingSet):
    """Random ``patch_size`` crops of clean images, 8 dihedral augmentations, fresh ``noise`` (a
    :class:`~adfnet.data.noise.NoiseModel`, AWGN at ``--noiseL`` by default: ``noise_from_flags``),
    unclipped unless ``clip_noisy`` (SADNet's release clipped the noisy input to [0, 1]).

    ``length`` samples per epoch (``iterations x batch``); sample ``i`` comes from image ``i mod N``
    (the official DIV2K ``repeat``), so a shuffled epoch visits every image equally often.
    Returns ``(noisy, clean)`` as float32 ``(C, P, P)`` tensors. Images that do not decode are left out
    and listed in ``left_out`` (see :func:`decodable`). With ``cache`` the patches come from the decoded
    cache (built or checked here), the same patches as without.
    """

    def __init__(
        self,
        files: Sequence[Path],
        n_colors: int,
        patch_size: int,
        noise: NoiseModel,
        length: int,
        seed: int = 1,
        workers: int = 1,
        clip_noisy: bool = False,
        cache: DecodedCache | None = None,
    ) -> None:
        headers = keep_large_enough(files, patch_size)
        self.files, self.left_out = decodable(list(headers), n_colors, workers, cache)
        headers = {f: headers[f] for f in self.files}
        if n_colors == 3:  # one summary instead of a warning per image (e.g. the gray BSD400 images of MIX)
            gray = sum(h.gray for h in headers.values())
            if gray:
                warnings.warn(
                    f"{gray} of {len(self.files)} training images are gray: their channel is replicated "
                    "for the colour model",
                    UserWarning,
                    stacklevel=2,
                )
        super().__init__(length, seed, cache)
        self.n_colors, self.patch_size, self.noise = n_colors, patch_size, noise
        self.clip_noisy = clip_noisy

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng(index)
        path = self.files[index % len(self.files)]
        pixels, equal = self.pixels(path, self.n_colors)
        patch = patch_from(pixels, equal, crop_window(pixels, self.patch_size, rng), self.n_colors, path)
        clean = image_to_tensor(dihedral(patch, int(rng.integers(8))))[0]
        noisy = self.noise(clean, generator=torch_generator(rng))
        return (noisy.clamp(0.0, 1.0) if self.clip_noisy else noisy), clean


class SyntheticNoiseVal(Dataset):
    """Whole clean images with ``noise`` drawn from a FIXED seed per image (the test protocol), so the
    validation PSNR of different epochs is comparable (the official code drew fresh noise each epoch).
    Returns ``(noisy, clean, name)``."""

    def __init__(self, files: Sequence[Path], n_colors: int, noise: NoiseModel, seed: int) -> None:
        check_validation_sizes(files)
        self.files, self.n_colors, self.noise, self.seed = list(files), n_colors, noise, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        path = self.files[index]
        clean = image_to_tensor(read_image(path, self.n_colors))
        return self.noise(clean, seed=self.seed)[0], clean[0], path.stem


def paired_files(root: str | Path) -> list[tuple[Path, Path]]:
    """``(lq, hq)`` pairs of ``root/lq`` and ``root/hq``, matched by file name."""
    root = Path(root)
    for sub in ("hq", "lq"):
        if not (root / sub).is_dir():
            raise FileNotFoundError(
                f"{root / sub} not found: a paired set needs hq/ (clean) and lq/ (noisy) images with equal names "
                "(make training patches with scripts/generate_patches_SIDD.py; see datasets/README.md)"
            )
    hq = {p.name: p for p in list_images(root / "hq")}
    lq = {p.name: p for p in list_images(root / "lq")}
    if hq.keys() != lq.keys():
        odd = sorted(hq.keys() ^ lq.keys())
        raise ValueError(f"{root}: hq/ and lq/ hold different file names, e.g. {odd[:3]}")
    return [(lq[name], hq[name]) for name in sorted(hq)]


class PairedTrain(TrainingSet):
    """Random aligned crops of (noisy, clean) pairs with the same dihedral transform on both (from the
    decoded ``cache`` if given, the same crops)."""

    def __init__(
        self, root: str | Path, patch_size: int, seed: int = 1234, workers: int = 1, cache: DecodedCache | None = None
    ) -> None:
        pairs = paired_files(root)
        kept = keep_large_enough([hq for _, hq in pairs], patch_size)
        pairs = [p for p in pairs if p[1] in kept]
        good, self.left_out = decodable([f for pair in pairs for f in pair], 3, workers, cache)
        usable = set(good)
        self.pairs = [p for p in pairs if p[0] in usable and p[1] in usable]
        super().__init__(len(self.pairs), seed, cache)
        self.patch_size = patch_size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng(index)
        lq_path, hq_path = self.pairs[index]
        (noisy, noisy_equal), (clean, clean_equal) = (self.pixels(p, 3) for p in (lq_path, hq_path))
        if noisy.shape[:2] != clean.shape[:2]:
            raise ValueError(f"{lq_path.name}: noisy {noisy.shape[:2]} and clean {clean.shape[:2]} sizes differ")
        window = crop_window(clean, self.patch_size, rng)
        code = int(rng.integers(8))
        patches = (
            patch_from(noisy, noisy_equal, window, 3, lq_path),
            patch_from(clean, clean_equal, window, 3, hq_path),
        )
        return tuple(image_to_tensor(dihedral(x, code))[0] for x in patches)  # type: ignore[return-value]


def image_pair_patch(
    noisy: np.ndarray, target: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random ``size`` crop and dihedral transform of two aligned ``(H, W, C)`` images, as ``(C, P, P)``
    tensors, drawn as the paired sets draw theirs: the teacher-target pairs' sample (:mod:`adfnet.engine.distill`)."""
    window = crop_window(target, size, rng)
    code = int(rng.integers(8))
    return tuple(image_to_tensor(dihedral(np.asarray(x[window]), code))[0] for x in (noisy, target))  # type: ignore[return-value]


class PairedVal(Dataset):
    """Whole (noisy, clean, name) pairs, no augmentation."""

    def __init__(self, root: str | Path, n_val: int = 0) -> None:
        pairs = paired_files(root)
        self.pairs = pairs[:n_val] if n_val > 0 else pairs
        check_validation_sizes([path for pair in self.pairs for path in pair])

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        lq_path, hq_path = self.pairs[index]
        return image_to_tensor(read_image(lq_path, 3))[0], image_to_tensor(read_image(hq_path, 3))[0], hq_path.stem


# A folder of noisy images alone (DBSN's self-supervised training, ``--task noisy``).
# Fewer usable images than this get a pre-flight note: D-BSN learns what images look like from these images
# alone, so a handful teaches it little beyond them (the authors trained on about 50,000).
FEW_NOISY_IMAGES = 10
# Validation without clean references scores the self-supervised loss on the centre crops of the first images:
# whole photos would take minutes each on a CPU and tell no more about convergence.
NOISY_VAL_CROP = 256
NOISY_VAL_IMAGES = 8


def check_noisy_images(files: Sequence[Path], patch_size: int) -> tuple[dict[Path, ImageHeader], list[str]]:
    """The pre-flight check of a folder of noisy training images (headers only): the images at least
    ``patch_size`` px on both sides, in order, and notes for the user: images left out as too small, too few
    images, sizes that differ (fine: training takes random crops of each). Raise ``ValueError`` naming the
    folder and the fix when none is large enough."""
    headers = {f: probe_image(f) for f in files}
    kept = {f: h for f, h in headers.items() if min(h.height, h.width) >= patch_size}
    folder = Path(files[0]).parent if files else Path(".")
    if not kept:
        largest = max(headers.values(), key=lambda h: min(h.height, h.width))
        raise ValueError(
            f"none of the {len(files)} images in {folder} is at least {patch_size}x{patch_size} px (the largest "
            f"is {largest.height}x{largest.width}): pass a smaller --patch_size (a multiple of 8, at most "
            f"{min(largest.height, largest.width) // 8 * 8}) or larger images"
        )
    notes = []
    small = [f.name for f in files if f not in kept]
    if small:
        notes.append(
            f"{len(small)} of {len(files)} images in {folder} are smaller than the {patch_size}-px patch and are "
            f"left out: {', '.join(small[:5])}{', ...' if len(small) > 5 else ''}"
        )
    if len(kept) < FEW_NOISY_IMAGES:
        notes.append(
            f"only {len(kept)} usable image(s) in {folder}: D-BSN learns what images look like from these alone, "
            f"so it will fit their content; {FEW_NOISY_IMAGES} or more photos of the kind you want to denoise "
            "teach it more (the authors used about 50,000)"
        )
    sizes = {(h.height, h.width) for h in kept.values()}
    if len(sizes) > 1:
        by_area = sorted(sizes, key=lambda s: s[0] * s[1])
        notes.append(
            f"the images have {len(sizes)} different sizes ({by_area[0][0]}x{by_area[0][1]} to "
            f"{by_area[-1][0]}x{by_area[-1][1]} px): fine, training takes random {patch_size}x{patch_size} crops "
            "of each"
        )
    return kept, notes


class NoisyImagesTrain(TrainingSet):
    """Random ``patch_size`` crops of noisy images with the 8 dihedral augmentations, and nothing else: no
    clean image exists (DBSN's self-supervised training). Returns ``(noisy, noisy)``: the noisy crop is both the
    input and the target a blind-spot network learns from.

    ``length`` samples per epoch; sample ``i`` comes from image ``i mod N``. The pre-flight notes
    (:func:`check_noisy_images`) are in ``notes``, the images that do not decode in ``left_out``.
    """

    def __init__(
        self, folder: str | Path, n_colors: int, patch_size: int, length: int, seed: int = 1, workers: int = 1
    ) -> None:
        headers, self.notes = check_noisy_images(list_images(folder), patch_size)
        self.files, self.left_out = decodable(list(headers), n_colors, workers)
        if n_colors == 1:
            colour = sum(not headers[f].gray for f in self.files)
            if colour:
                self.notes.append(f"{colour} of {len(self.files)} images are colour: they are read as gray")
        super().__init__(length, seed)
        self.n_colors, self.patch_size = n_colors, patch_size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng(index)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImageWarning)  # colour-to-gray, summarised in the notes
            img = read_image(self.files[index % len(self.files)], self.n_colors)
        top, left = random_crop(img, self.patch_size, rng)
        patch = img[top : top + self.patch_size, left : left + self.patch_size]
        noisy = image_to_tensor(dihedral(patch, int(rng.integers(8))))[0]
        return noisy, noisy


class NoisyImagesVal(Dataset):
    """The centre ``crop`` x ``crop`` (at most) of the first ``n_val`` noisy images (0: :data:`NOISY_VAL_IMAGES`),
    for validating without clean references. Returns ``(noisy, noisy, name)``."""

    def __init__(self, folder: str | Path, n_colors: int, n_val: int = 0, crop: int = NOISY_VAL_CROP) -> None:
        files = list_images(folder)
        self.files = files[: n_val or NOISY_VAL_IMAGES]
        check_validation_sizes(self.files)
        self.n_colors, self.crop = n_colors, crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        path = self.files[index]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImageWarning)
            img = read_image(path, self.n_colors)
        h, w = img.shape[:2]
        top, left = max(0, (h - self.crop) // 2), max(0, (w - self.crop) // 2)
        noisy = image_to_tensor(img[top : top + self.crop, left : left + self.crop])[0]
        return noisy, noisy, path.stem
