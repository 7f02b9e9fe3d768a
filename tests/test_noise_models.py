"""adfnet.data.noise models: their statistics against the definitions, reproducibility, the build API.

Statistical tolerances: every estimate is compared with its expected value within Z = 5 standard errors,
the standard error computed from the sample size and the model's own moments (written out in each
test). A correct model fails a single check with probability < 6e-7; the seeds are fixed, so the tests
are deterministic. The alternatives that matter (std proportional to x instead of sqrt(x), a missing
channel correlation, Gaussian instead of Poisson shot noise) sit tens of standard errors away.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from adfnet.data.io import image_to_tensor, read_image
from adfnet.data.noise import (
    NOISE_NAMES,
    READ_INTERCEPT,
    READ_LOG_STD,
    READ_SLOPE,
    SHOT_RANGE,
    add_awgn,
    brooks_noise_levels,
    build_noise,
    mg_factors,
)
from conftest import ROOT

Z = 5.0
ALL_MODELS = [("awgn", [25]), ("hg", [40, 10]), ("hg_dbsn", [40, 10]), ("mg", []), ("poisson_gaussian", [])]


def near(estimate: float, expected: float, se: float, what: str) -> None:
    assert abs(estimate - expected) <= Z * se, f"{what}: {estimate:.6g} vs {expected:.6g} (tolerance {Z * se:.3g})"


def gray_image() -> torch.Tensor:
    return image_to_tensor(read_image(ROOT / "datasets/testsets/Set12/01.png", 1)).double()


def colour_image() -> torch.Tensor:
    return image_to_tensor(read_image(ROOT / "datasets/testsets/McMaster/1.tif", 3))[..., :256, :256].double()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def check_heteroscedastic(clean: torch.Tensor, noisy: torch.Tensor, variance: torch.Tensor) -> None:
    """Per intensity bin (width 0.1): mean of r = noisy - clean is 0 (SE sqrt(sum v)/n) and mean of r^2 is
    mean(v) (for Gaussian r, Var(r^2) = 2 v^2, so SE sqrt(2 sum v^2)/n), v the per-pixel variance of the
    definition; standardised residuals of horizontal neighbours are uncorrelated (SE 1/sqrt(n))."""
    r = (noisy - clean).double().flatten()
    v = variance.double().flatten()
    bins = (clean.flatten() * 10).clamp(max=9.999).long()
    n = torch.bincount(bins, minlength=10)
    sums = torch.stack([torch.bincount(bins, w, minlength=10) for w in (r, r * r, v, v * v)])
    checked = 0
    for b in range(10):
        if n[b] < 2000:
            continue
        count, (sum_r, sum_r2, sum_v, sum_v2) = int(n[b]), sums[:, b].tolist()
        near(sum_r / count, 0.0, math.sqrt(sum_v) / count, f"mean, bin {b}")
        near(sum_r2 / count, sum_v / count, math.sqrt(2 * sum_v2) / count, f"var, bin {b}")
        checked += 1
    assert checked >= 5
    z = (noisy - clean).double() / variance.sqrt()
    lag = (z[..., :, 1:] * z[..., :, :-1]).mean().item()
    near(lag, 0.0, 1 / math.sqrt(z[..., 1:].numel()), "horizontal neighbour correlation")


def test_awgn_model_is_add_awgn_bit_for_bit():
    clean = torch.rand(1, 3, 20, 24)
    awgn = build_noise("awgn", [50])
    assert torch.equal(awgn(clean, seed=20), add_awgn(clean, 50, seed=20))
    assert torch.equal(awgn(clean[0], seed=20), add_awgn(clean[0], 50, seed=20))
    assert torch.equal(awgn(clean, generator=gen(3)), add_awgn(clean, 50, generator=gen(3)))


def test_hg_variance_per_intensity_bin_is_the_paper_formula():
    clean = gray_image().repeat(8, 1, 1, 1)  # 8 independent draws of 65,536 pixels
    noisy = build_noise("hg", [40, 10])(clean, generator=gen())
    s, c = 40 / 255, 10 / 255
    check_heteroscedastic(clean, noisy, s * s * clean + c * c)


def test_hg_colour_channels_are_independent():
    clean = colour_image().repeat(4, 1, 1, 1)
    r = build_noise("hg", [40, 10])(clean, generator=gen(1)) - clean
    z = r / ((40 / 255) ** 2 * clean + (10 / 255) ** 2).sqrt()
    n = z[:, 0].numel()
    for a, b in ((0, 1), (0, 2), (1, 2)):
        near((z[:, a] * z[:, b]).mean().item(), 0.0, 1 / math.sqrt(n), f"channel correlation {a}{b}")


def test_hg_dbsn_is_dbsns_code_std_proportional_to_x():
    clean = gray_image().repeat(8, 1, 1, 1)
    s, c = 40 / 255, 10 / 255
    model = build_noise("hg_dbsn", [40, 10])
    # Training: independent draws of the two terms, variance s^2 x^2 + c^2.
    check_heteroscedastic(clean, model(clean, generator=gen(2)), s * s * clean.square() + c * c)
    # Test time: DBSN reseeded both draws with the same seed, so one standard normal field scaled by s x + c.
    one = clean[:1]
    r = model(one, seed=0) - one
    z = torch.empty(one.shape, dtype=torch.float32).normal_(generator=gen(0)).double()
    torch.testing.assert_close(r, (s * one + c) * z, rtol=1e-5, atol=1e-7)


def test_hg_formula_is_not_dbsns_variant():
    """The statistical check tells the two definitions apart (so the tests above can fail)."""
    clean = gray_image().repeat(8, 1, 1, 1)
    s, c = 40 / 255, 10 / 255
    noisy = build_noise("hg_dbsn", [40, 10])(clean, generator=gen(4))
    with pytest.raises(AssertionError):
        check_heteroscedastic(clean, noisy, s * s * clean + c * c)


def test_mg_covariance_is_dbsns_construction():
    seed, level = 7, 75 / 255
    u, d = mg_factors(gen(seed))
    # Independent reference: scipy's orth of the same uniform matrix (drawn after the 3 diagonal values).
    g = gen(seed)
    torch.rand(3, generator=g, dtype=torch.float64)
    basis = scipy.linalg.orth(torch.rand(3, 3, generator=g, dtype=torch.float64).numpy())
    np.testing.assert_allclose(np.abs(u.numpy()), np.abs(basis), atol=1e-12)
    assert ((d >= 0) & (d < 1)).all()
    sigma = level**2 * u.T @ torch.diag(d) @ u
    torch.testing.assert_close(torch.linalg.eigvalsh(sigma), torch.sort(level**2 * d).values)

    side = 512
    r = build_noise("mg", [])(torch.zeros(1, 3, side, side, dtype=torch.float64), seed=seed)[0].reshape(3, -1)
    n = r.shape[1]
    check_covariance(r, sigma, "seeded")
    for a in range(3):  # mean 0; neighbouring pixels independent: E[r_i r_j] = 0, SE s_aa / sqrt(n)
        near(r[a].mean().item(), 0.0, math.sqrt(sigma[a, a] / n), f"mean of channel {a}")
        img = r[a].reshape(side, side)
        lag = (img[:, 1:] * img[:, :-1]).mean().item()
        near(lag, 0.0, sigma[a, a].item() / math.sqrt(n), f"neighbour covariance, channel {a}")


def check_covariance(r: torch.Tensor, sigma: torch.Tensor, what: str) -> None:
    """Sample covariance of zero-mean Gaussian pixels r (3, n): Var(S_ab) = (s_aa s_bb + s_ab^2) / n."""
    n = r.shape[1]
    sample = r @ r.T / n
    for a in range(3):
        for b in range(3):
            se = math.sqrt((sigma[a, a] * sigma[b, b] + sigma[a, b] ** 2) / n)
            near(sample[a, b].item(), sigma[a, b].item(), se, f"{what}: covariance {a}{b}")


def test_mg_fixed_by_seed_random_per_image_in_training():
    mg = build_noise("mg", [75])
    a, b = torch.zeros(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(mg(a, seed=3) - a, mg(b, seed=3) - b)  # signal-independent, fixed by the seed
    # Training: each image of the stream draws its own covariance, then its pixels.
    side = 256
    r = mg(torch.zeros(2, 3, side, side, dtype=torch.float64), generator=gen(5)).reshape(2, 3, -1)
    g = gen(5)
    sigmas = []
    for _ in range(2):
        u, d = mg_factors(g)
        torch.empty(3, side * side).normal_(generator=g)  # that image's pixels
        sigmas.append((75 / 255) ** 2 * u.T @ torch.diag(d) @ u)
    for i in range(2):
        check_covariance(r[i], sigmas[i], f"image {i}")
    assert (sigmas[0] - sigmas[1]).abs().max() > 0.01
    with pytest.raises(ValueError, match="3 colour channels"):
        mg(torch.zeros(1, 1, 8, 8), seed=0)


@pytest.mark.parametrize("x", [0.02, 0.1, 0.5, 0.9])
def test_poisson_gaussian_moments(x):
    """mean x, variance a x + b, third cumulant a^2 x (Poisson shot noise: cumulant k of a*Poisson(x/a) is
    a^(k-1) x), independent pixels. SEs: sqrt(var/n); sqrt((k4 + 2 var^2)/n) with k4 = a^3 x; sqrt(15 var^3/n)
    (Gaussian approximation of the sixth moment, close here since k3, k4 are small against var)."""
    a, b = 0.01, 0.0004
    clean = torch.full((1, 1, 256, 256), x, dtype=torch.float64)
    r = (build_noise("poisson_gaussian", [a, b])(clean, seed=11) - clean).flatten()
    n, var = r.numel(), a * x + b
    near(r.mean().item(), 0.0, math.sqrt(var / n), "mean")
    near(r.square().mean().item(), var, math.sqrt((a**3 * x + 2 * var**2) / n), "variance")
    near(r.pow(3).mean().item(), a * a * x, math.sqrt(15 * var**3 / n), "third cumulant")
    img = r.reshape(256, 256)  # neighbours independent: E[r_i r_j] = 0, SE var / sqrt(n)
    near((img[:, 1:] * img[:, :-1]).mean().item(), 0.0, var / math.sqrt(n), "neighbour covariance")


def test_poisson_shot_noise_is_quantised_and_read_noise_alone_is_gaussian():
    a = 0.01
    clean = torch.rand(1, 4, 64, 64, dtype=torch.float64)
    counts = build_noise("poisson_gaussian", [a, 0])(clean, seed=1) / a
    assert (counts - counts.round()).abs().max() < 1e-3 and counts.min() > -1e-3  # float32 rounding only
    r = build_noise("poisson_gaussian", [0, 0.0025])(clean, seed=1) - clean
    near(r.square().mean().item(), 0.0025, 0.0025 * math.sqrt(2 / r.numel()), "read-only variance")


def test_poisson_gaussian_log_linear_read_noise():
    shot = 0.004
    read = math.exp(READ_SLOPE * math.log(shot) + READ_INTERCEPT)
    clean = torch.full((1, 1, 256, 256), 0.3, dtype=torch.float64)
    r = build_noise("poisson_gaussian", [shot])(clean, seed=2) - clean
    var = shot * 0.3 + read
    near(r.square().mean().item(), var, math.sqrt((shot**3 * 0.3 + 2 * var**2) / r.numel()), "variance")


def test_brooks_noise_level_distribution():
    """log shot ~ U(log 1e-4, log 0.012); log read - (2.18 log shot + 1.20) ~ N(0, 0.26^2)."""
    g, n = gen(8), 4000
    levels = torch.tensor([brooks_noise_levels(g) for _ in range(n)], dtype=torch.float64).log()
    lo, hi = math.log(SHOT_RANGE[0]), math.log(SHOT_RANGE[1])
    assert levels[:, 0].min() >= lo and levels[:, 0].max() <= hi
    near(levels[:, 0].mean().item(), (lo + hi) / 2, (hi - lo) / math.sqrt(12 * n), "mean log shot")
    near(levels[:, 0].var().item(), (hi - lo) ** 2 / 12, (hi - lo) ** 2 / math.sqrt(180 * n), "var log shot")
    e = levels[:, 1] - READ_SLOPE * levels[:, 0] - READ_INTERCEPT
    near(e.mean().item(), 0.0, READ_LOG_STD / math.sqrt(n), "mean log read residual")
    near(e.var().item(), READ_LOG_STD**2, READ_LOG_STD**2 * math.sqrt(2 / (n - 1)), "var log read residual")
    # The random model draws one level pair per image: two images of a batch get different variances.
    clean = torch.full((2, 4, 64, 64), 0.5)
    r = build_noise("poisson_gaussian")(clean, generator=gen(9)) - clean
    assert r[0].var() / r[1].var() > 1.5 or r[1].var() / r[0].var() > 1.5


@pytest.mark.parametrize("name, params", ALL_MODELS)
def test_reproducible_by_seed_and_stream(name, params):
    model = build_noise(name, params)
    clean = torch.rand(1, 3, 32, 32)
    state = torch.random.get_rng_state()
    assert torch.equal(model(clean, seed=4), model(clean, seed=4))
    assert torch.equal(torch.random.get_rng_state(), state)  # seeded draws leave the global RNG alone
    assert not torch.equal(model(clean, seed=4), model(clean, seed=5))
    g = gen(4)
    first, second = model(clean, generator=g), model(clean, generator=g)
    assert not torch.equal(first, second)
    # A seed is a fresh generator, except for hg_dbsn whose test-time draw differs from training (its quirk).
    assert torch.equal(first, model(clean, seed=4)) == (name != "hg_dbsn")
    assert model(clean.double(), seed=4).dtype == torch.float64


@pytest.mark.parametrize("name, params", ALL_MODELS)
def test_test_noise_independent_of_batch_composition_and_order(name, params):
    model = build_noise(name, params)
    images = torch.rand(3, 3, 24, 24)
    alone = [model(images[i : i + 1], seed=20) for i in range(3)]
    batch = model(images[[2, 0, 1]], seed=20)
    for pos, i in enumerate((2, 0, 1)):
        assert torch.equal(batch[pos : pos + 1], alone[i])


def test_build_noise_errors_and_labels():
    assert NOISE_NAMES == ("awgn", "hg", "hg_dbsn", "mg", "poisson_gaussian", "learned")
    labels = {
        ("awgn", (25,)): "awgn(sigma=25)",
        ("HG", (40, 10)): "hg(sigma_s=40, sigma_c=10)",
        ("hg_dbsn", (40, 10)): "hg_dbsn(sigma_s=40, sigma_c=10)",
        ("mg", ()): "mg(L=75)",
        ("poisson_gaussian", (0.01, 0.0005)): "poisson_gaussian(shot=0.01, read=0.0005)",
        ("poisson_gaussian", (0.01,)): "poisson_gaussian(shot=0.01, read=log-linear)",
        ("poisson_gaussian", ()): "poisson_gaussian(shot, read=random log-linear)",
    }
    for (name, params), label in labels.items():
        assert build_noise(name, params).describe() == label
    with pytest.raises(ValueError, match="unknown noise model 'gauss'.*awgn, hg"):
        build_noise("gauss", [25])
    with pytest.raises(ValueError, match=r"hg takes 2 parameter\(s\) \(sigma_s sigma_c\), got 1"):
        build_noise("hg", [40])
    with pytest.raises(ValueError, match="takes 0 or 1 or 2"):
        build_noise("poisson_gaussian", [1, 2, 3])
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sigma of awgn must be a finite number >= 0"):
            build_noise("awgn", [bad])
    with pytest.raises(ValueError, match="either seed or generator"):
        build_noise("hg", [1, 1])(torch.zeros(1, 1, 4, 4), seed=1, generator=gen())
    with pytest.raises(ValueError, match=r"\(C, H, W\) or \(B, C, H, W\)"):
        build_noise("hg", [1, 1])(torch.zeros(4, 4), seed=1)
