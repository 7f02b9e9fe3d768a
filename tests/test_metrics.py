"""adfnet.metrics against hand-computed values and scikit-image where the definitions coincide."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage import img_as_ubyte
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from adfnet.metrics import C1, C2, psnr, quantize, ssim, ssim_matlab3d


def _pair(shape, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.random(shape).astype(np.float32)
    out = np.clip(clean + rng.normal(0, 0.08, shape), 0, 1).astype(np.float32)
    return out, clean


def test_quantize_matches_img_as_ubyte():
    x = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    x[0, :10, 0] = (np.arange(10, dtype=np.float32) + 0.5) / 255  # near-ties
    np.testing.assert_array_equal(quantize(x), img_as_ubyte(x))
    np.testing.assert_array_equal(quantize(x.astype(np.float64)), img_as_ubyte(x.astype(np.float64)))
    assert quantize(np.array([-0.3, 1.7])).tolist() == [0, 255]  # clipped
    ties = np.array([2.5, 3.5]) / 255
    assert (ties * 255).tolist() == [2.5, 3.5]
    assert quantize(ties).tolist() == [2, 4]  # round half to even, as img_as_ubyte
    t = torch.from_numpy(x.transpose(2, 0, 1)).unsqueeze(0)
    np.testing.assert_array_equal(quantize(t), quantize(x))


def test_psnr_hand_computed():
    a = np.full((10, 10, 3), 100, np.uint8)
    b = a.copy()
    b[0, 0, 0] = 130  # one error of 30 over 300 values: MSE 3
    assert psnr(b, a) == pytest.approx(20 * math.log10(255 / math.sqrt(3.0)))
    assert psnr(a, a) == math.inf
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(a, a[..., :1])


def test_ssim_hand_computed_constant_images():
    x, y = 100.0, 110.0
    expected = (2 * x * y + C1) / (x * x + y * y + C1)  # variances and covariance are zero
    a, b = np.full((20, 24), 100, np.uint8), np.full((20, 24), 110, np.uint8)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-12)
    assert ssim_matlab3d(a, b) == pytest.approx(expected, abs=1e-12)
    assert ssim(a, a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(a[:10], b[:10])


@pytest.mark.parametrize("shape", [(48, 40), (48, 40, 3)])
def test_against_skimage(shape):
    out, clean = _pair(shape)
    qo, qc = img_as_ubyte(out), img_as_ubyte(clean)
    # skimage filters the whole image then averages the map without a 5 px border: the 'valid' region
    ref = structural_similarity(
        qo,
        qc,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=2 if len(shape) == 3 else None,
    )
    assert ssim(out, clean) == pytest.approx(ref, abs=1e-12)
    assert psnr(out, clean) == pytest.approx(peak_signal_noise_ratio(qc, qo, data_range=255), abs=1e-12)


def test_tensor_inputs_equal_numpy():
    out, clean = _pair((32, 36, 3), seed=1)
    to = torch.from_numpy(out.transpose(2, 0, 1)).unsqueeze(0)
    tc = torch.from_numpy(clean.transpose(2, 0, 1))
    assert psnr(to, tc) == psnr(out, clean)
    assert ssim(to, tc) == ssim(out, clean)


def test_ssim_matlab3d_is_a_volume_ssim():
    out, clean = _pair((40, 44, 3), seed=2)
    o, c = img_as_ubyte(out).astype(np.float64), img_as_ubyte(clean).astype(np.float64)

    def g(a):  # independent 11x11x11 Gaussian, replicate padding
        return gaussian_filter(a, 1.5, mode="nearest", truncate=5 / 1.5)

    mo, mc = g(o), g(c)
    vo, vc, cov = g(o * o) - mo * mo, g(c * c) - mc * mc, g(o * c) - mo * mc
    ref = np.mean((2 * mo * mc + C1) * (2 * cov + C2) / ((mo * mo + mc * mc + C1) * (vo + vc + C2)))
    assert ssim_matlab3d(out, clean) == pytest.approx(ref, abs=1e-12)
    assert abs(ssim_matlab3d(out, clean) - ssim(out, clean)) > 1e-4  # a different flavour
    gray = np.repeat(out[..., :1], 3, axis=2), np.repeat(clean[..., :1], 3, axis=2)
    assert ssim_matlab3d(*gray) == pytest.approx(ssim_matlab3d(out[..., 0], clean[..., 0]), abs=1e-12)
