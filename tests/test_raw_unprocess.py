"""adfnet.data.unprocess: sRGB <-> raw camera pipeline (Brooks et al. 2019) and the raw training set."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from adfnet.data.datasets import dihedral, random_crop, sample_rng, torch_generator
from adfnet.data.io import image_to_tensor, list_images, read_image, save_image
from adfnet.data.noise import build_noise
from adfnet.data.raw import cfa_self_ensemble, mosaic, pack
from adfnet.data.unprocess import (
    BLUE_GAIN_RANGE,
    HIGHLIGHT,
    RED_GAIN_RANGE,
    UnprocessedRawTrain,
    UnprocessedRawVal,
    apply_ccm,
    gamma_compression,
    gamma_expansion,
    inverse_smoothstep,
    process,
    random_camera,
    safe_invert_gains,
    smoothstep,
    unprocess,
)
from adfnet.inference import denoise
from conftest import ROOT

TRAIN = ROOT / "datasets/trainsets/CBSD432_sample"


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_tone_curve_and_gamma_invert_each_other():
    x = torch.linspace(0, 1, 1001, dtype=torch.float64)
    torch.testing.assert_close(inverse_smoothstep(smoothstep(x)), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(smoothstep(inverse_smoothstep(x)), x, rtol=0, atol=1e-12)
    # 3x^2 - 2x^3 by hand at a few points
    torch.testing.assert_close(smoothstep(torch.tensor([0.0, 0.25, 0.5, 1.0])), torch.tensor([0.0, 0.15625, 0.5, 1.0]))
    y = x[x > 1e-3]
    torch.testing.assert_close(gamma_compression(gamma_expansion(y)), y, rtol=1e-12, atol=0)
    torch.testing.assert_close(gamma_expansion(torch.tensor([0.5])), torch.tensor([0.5**2.2]))


def test_random_camera_follows_brooks_distributions():
    cams = [random_camera(gen(s)) for s in range(200)]
    for cam in cams:
        torch.testing.assert_close(cam.rgb2cam.sum(dim=1), torch.ones(3, dtype=torch.float64))  # white stays white
        torch.testing.assert_close(cam.rgb2cam @ cam.cam2rgb, torch.eye(3, dtype=torch.float64))
        assert RED_GAIN_RANGE[0] <= cam.red_gain <= RED_GAIN_RANGE[1]
        assert BLUE_GAIN_RANGE[0] <= cam.blue_gain <= BLUE_GAIN_RANGE[1]
    # 1 / rgb_gain ~ N(0.8, 0.1): mean within 5 standard errors (0.1 / sqrt(200))
    inv = torch.tensor([1 / c.rgb_gain for c in cams])
    assert abs(inv.mean().item() - 0.8) < 5 * 0.1 / math.sqrt(200)
    a, b = random_camera(gen(3)), random_camera(gen(3))
    assert torch.equal(a.rgb2cam, b.rgb2cam) and (a.rgb_gain, a.red_gain, a.blue_gain) == (
        b.rgb_gain,
        b.red_gain,
        b.blue_gain,
    )
    assert not torch.equal(cams[0].rgb2cam, cams[1].rgb2cam)


def test_gains_are_inverted_below_the_highlight_and_kept_at_white():
    cam = random_camera(gen(0))
    dark = torch.full((1, 3, 2, 2), 0.4, dtype=torch.float64)
    torch.testing.assert_close(safe_invert_gains(dark, cam), dark / cam.gains().view(1, 3, 1, 1))
    white = torch.ones(1, 3, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(safe_invert_gains(white, cam), white)
    bright = torch.full((1, 3, 1, 1), (1 + HIGHLIGHT) / 2, dtype=torch.float64)  # in the fade: between the two
    out = safe_invert_gains(bright, cam)
    assert ((out > bright / cam.gains().view(1, 3, 1, 1)) & (out <= bright)).all()


def crops() -> list[torch.Tensor]:
    return [image_to_tensor(read_image(f, 3))[..., :128, :128].double() for f in list_images(TRAIN)[:4]]


def test_process_inverts_unprocess_on_bundled_images():
    """Exact (float64 rounding) wherever nothing was clipped: pixels whose colour-corrected linear values
    lie in [0, 1] and whose mean is below the highlight threshold. Elsewhere clipping loses information;
    over the whole crops the round trip stays above 40 dB (measured: 44.4 dB worst on these crops)."""
    for k, x in enumerate(crops()):
        for seed in (0, 1):
            cam = random_camera(gen(seed))
            y = process(unprocess(x, cam), cam)
            linear = apply_ccm(gamma_expansion(inverse_smoothstep(x)), cam.rgb2cam)
            safe = ((linear >= 0) & (linear <= 1)).all(1, keepdim=True) & (linear.mean(1, keepdim=True) <= HIGHLIGHT)
            assert safe.float().mean() > 0.9, f"crop {k}: too few unclipped pixels to test"
            err = (y - x).abs()
            assert err[safe.expand_as(x)].max() < 1e-9
            psnr = 10 * math.log10(1 / (y - x).square().mean().item())
            assert psnr > 40, f"crop {k}, camera {seed}: {psnr:.1f} dB"


def test_unprocessed_values_are_linear_raw_in_range():
    x = crops()[0]
    cam = random_camera(gen(2))
    raw = unprocess(x, cam)
    assert raw.min() >= 0 and raw.max() <= 1
    # Darker than sRGB on average (gamma expansion and inverse gains both darken mid-tones).
    assert raw.mean() < 0.6 * x.mean()


def test_raw_training_set(tmp_path):
    files = list_images(TRAIN)[:3]
    ds = UnprocessedRawTrain(files, patch_size=32, length=6, seed=5)
    noisy, clean = ds[0]
    assert noisy.shape == clean.shape == (4, 16, 16) and noisy.dtype == clean.dtype == torch.float32
    assert clean.min() >= 0 and clean.max() <= 1 and not torch.equal(noisy, clean)
    # Samples depend only on (seed, epoch, index): any order gives the same pairs; a new epoch new ones.
    forward = [ds[i] for i in range(6)]
    backward = [ds[i] for i in reversed(range(6))][::-1]
    for (n1, c1), (n2, c2) in zip(forward, backward, strict=True):
        assert torch.equal(n1, n2) and torch.equal(c1, c2)
    # ...and any number of DataLoader workers.
    for workers in (0, 2):
        batches = list(DataLoader(ds, batch_size=4, num_workers=workers))
        assert torch.equal(torch.cat([b[0] for b in batches]), torch.stack([n for n, _ in forward]))
    ds.set_epoch(2)
    assert not torch.equal(ds[0][1], forward[0][1])


def test_raw_training_set_noise_and_errors():
    files = list_images(TRAIN)[:2]
    fixed = build_noise("poisson_gaussian", [0.01, 0.0004])
    ds = UnprocessedRawTrain(files, patch_size=64, length=4, seed=1, noise=fixed, pattern="GBRG")
    noisy, clean = ds[1]
    r, var = noisy - clean, 0.01 * clean.clamp(min=0) + 0.0004
    # mean of r^2 against mean variance; SE from Var(r^2) ~ 2 v^2 + a^3 x (Poisson 4th cumulant)
    se = math.sqrt((2 * var.square() + 0.01**3 * clean).sum().item()) / r.numel()
    assert abs(r.square().mean().item() - var.mean().item()) < 5 * se
    with pytest.raises(ValueError, match="even --patch_size"):
        UnprocessedRawTrain(files, patch_size=33, length=1)
    with pytest.raises(ValueError, match="unknown Bayer pattern"):
        UnprocessedRawTrain(files, patch_size=32, length=1, pattern="XYZW")


def test_dataset_clean_is_a_mosaic_of_the_unprocessed_crop():
    """Recompute one sample by hand from the same random stream: crop, transform, camera, mosaic."""
    files = list_images(TRAIN)[:1]
    ds = UnprocessedRawTrain(files, patch_size=32, length=1, seed=9, pattern="BGGR")
    rng = sample_rng(9, 1, 0)
    img = read_image(files[0], 3)
    top, left = random_crop(img, 32, rng)
    patch = dihedral(img[top : top + 32, left : left + 32], int(rng.integers(8)))
    cam = random_camera(torch_generator(rng))
    expected = pack(mosaic(unprocess(image_to_tensor(patch), cam), "BGGR"), "BGGR")[0]
    assert torch.equal(ds[0][1], expected)


def test_cfa_ensemble_runs_through_the_forward_path():
    """Packed raw of any even size goes through :func:`adfnet.inference.denoise` (padding to a multiple of
    8, cropping back) inside the CFA-aware ensemble and comes back at its own size."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(4, 4, 3, padding=1).eval()
    noisy = torch.rand(1, 4, 12, 10)
    plain = denoise(model, noisy)
    ensembled = cfa_self_ensemble(lambda t: denoise(model, t), noisy)
    assert plain.shape == ensembled.shape == noisy.shape
    assert not torch.equal(plain, ensembled) and ensembled.min() >= 0 and ensembled.max() <= 1


def test_raw_validation_set_fixed_per_image(tmp_path):
    odd = tmp_path / "odd.png"
    save_image(odd, np.random.default_rng(0).random((33, 47, 3), dtype=np.float32))
    files = [odd, odd, list_images(TRAIN)[0]]
    ds = UnprocessedRawVal(files, seed=20)
    noisy, clean, name = ds[0]
    assert noisy.shape == clean.shape == (4, 16, 23) and name == "odd"
    again = [ds[i] for i in (2, 1, 0)][::-1]  # any order, same pairs
    for i in range(3):
        assert torch.equal(ds[i][0], again[i][0]) and torch.equal(ds[i][1], again[i][1])
    assert not torch.equal(ds[0][1], ds[1][1])  # same image, another camera: each index has its own
    assert not torch.equal(UnprocessedRawVal(files, seed=21)[0][0], noisy)
    with pytest.raises(ValueError, match="unknown Bayer pattern"):
        UnprocessedRawVal(files, seed=1, pattern="RGB")
