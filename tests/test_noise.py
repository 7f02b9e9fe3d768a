"""adfnet.data.noise: the official test noise, bit for bit."""

import pytest
import torch

from adfnet.data.noise import add_awgn


@pytest.mark.parametrize("seed, channels", [(20, 3), (1, 1)])
def test_seed_reproduces_official_recipe(seed, channels):
    clean = torch.rand(1, channels, 33, 45)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    official = clean + torch.FloatTensor(1, channels, 33, 45).normal_(0, 50 / 255)
    torch.random.set_rng_state(state)
    assert torch.equal(add_awgn(clean, 50, seed=seed), official)
    assert torch.equal(torch.random.get_rng_state(), state)  # a seeded call leaves the global RNG alone


def test_unclipped_statistics_and_dtype():
    clean = torch.zeros(1, 3, 256, 256, dtype=torch.float64)
    noisy = add_awgn(clean, 25, seed=0)
    assert noisy.dtype == torch.float64 and noisy.min() < 0  # not clipped
    assert abs(noisy.std().item() - 25 / 255) < 1e-3
    assert torch.equal(add_awgn(clean, 0, seed=3), clean)


def test_generator_stream_and_errors():
    clean = torch.zeros(2, 1, 8, 8)
    g = torch.Generator().manual_seed(5)
    a, b = add_awgn(clean, 10, generator=g), add_awgn(clean, 10, generator=g)
    assert not torch.equal(a, b)
    assert torch.equal(a, add_awgn(clean, 10, seed=5))
    with pytest.raises(ValueError):
        add_awgn(clean, 10, seed=1, generator=g)
    with pytest.raises(ValueError):
        add_awgn(clean, -1)
