"""Losses: the official MSE (sum of squares / 2B), L1, Charbonnier, and the --loss syntax."""

from __future__ import annotations

import pytest
import torch

from adfnet.losses import build_loss


def test_mse_is_half_sum_of_squares_per_image() -> None:
    gen = torch.Generator().manual_seed(0)
    out, ref = torch.rand(4, 3, 8, 8, generator=gen), torch.rand(4, 3, 8, 8, generator=gen)
    expected = float(((out - ref) ** 2).sum()) / (2 * 4)
    assert float(build_loss("1*MSE")(out, ref)) == pytest.approx(expected, rel=1e-6)
    # the batch size is the tensor's, not a configured one (the last batch may be smaller)
    assert float(build_loss("1*MSE")(out[:1], ref[:1])) == pytest.approx(float(((out[0] - ref[0]) ** 2).sum()) / 2)
    # relation to PyTorch's mean MSE: factor C*H*W/2
    assert float(build_loss("MSE")(out, ref)) == pytest.approx(
        float(torch.nn.functional.mse_loss(out, ref)) * 3 * 8 * 8 / 2, rel=1e-6
    )


def test_l1_charbonnier_and_weights() -> None:
    out = torch.tensor([[[[0.0, 0.5]]]])
    ref = torch.tensor([[[[0.0, 0.0]]]])
    assert float(build_loss("L1")(out, ref)) == pytest.approx(0.25)
    charb = (1e-3 + (0.25 + 1e-6) ** 0.5) / 2  # mean(sqrt(d^2 + eps^2)), eps 1e-3
    assert float(build_loss("1*Charbonnier")(out, ref)) == pytest.approx(charb, rel=1e-6)
    mse = 0.25 / 2
    assert float(build_loss("2*MSE+0.5*L1")(out, ref)) == pytest.approx(2 * mse + 0.5 * 0.25, rel=1e-6)


def test_gradient_of_mse() -> None:
    out = torch.zeros(2, 1, 2, 2, requires_grad=True)
    ref = torch.ones(2, 1, 2, 2)
    build_loss("1*MSE")(out, ref).backward()
    assert torch.allclose(out.grad, (out - ref).detach() / 2)  # d/dx sum((x-y)^2)/(2B) = (x-y)/B, B = 2


@pytest.mark.parametrize("spec, match", [("1*SSIM", "unknown loss"), ("x*MSE", "not a number")])
def test_bad_spec(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_loss(spec)


def test_l2_is_the_mean_squared_error_of_sadnet() -> None:
    """``L2`` = ``torch.nn.MSELoss()`` (SADNet's ``--t_loss L2``): the mean over every element, hand-computed."""
    out = torch.tensor([[[[0.0, 0.5], [1.0, 0.25]]]])
    ref = torch.zeros(1, 1, 2, 2)
    assert float(build_loss("1*L2")(out, ref)) == pytest.approx((0.25 + 1.0 + 0.0625) / 4)
    assert float(build_loss("l2")(out, ref)) == pytest.approx(float(torch.nn.MSELoss()(out, ref)))
