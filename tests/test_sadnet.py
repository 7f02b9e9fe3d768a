"""SADNet: true parameter counts by hand, training on every DCN backend, the authors' checkpoints.

Equality with the authors' network (golden outputs, state_dict keys and shapes) is checked for every
golden file, SADNet's included, in ``test_golden.py``.
"""

import argparse
import sys
from pathlib import Path

import pytest
import torch

import dcn
from adfnet import load_weights
from adfnet.cli.flags import add_model_arguments, model_options
from adfnet.complexity import count_macs, count_parameters
from adfnet.models import SADNet, build_model

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
from weights import golden_state_dict  # noqa: E402

PUBLISHED_PARAMS = {3: 4_234_723, 1: 4_234_081}  # the authors' SADNET(n_channel=32, offset_channel=32)


def _conv(cin: int, cout: int, k: int) -> int:
    return cout * cin * k * k + cout


def hand_count(n_colors: int, n: int = 32, o: int = 32) -> int:
    """SADNet's parameters from the paper's layout, block by block (a 3x3 DCN has 8 groups x 27 offset/mask maps)."""
    encoder = _conv(n_colors, n, 1) + 2 * _conv(n, n, 3)  # res1 (with its 1x1 widening)
    for c in (n, 2 * n, 4 * n):  # down (2x2, stride 2) then a ResBlock at twice the width
        encoder += _conv(c, 2 * c, 2) + 2 * _conv(2 * c, 2 * c, 3)
    context = _conv(8 * n, 2 * n, 1) + 4 * _conv(2 * n, 2 * n, 3) + _conv(8 * n, 8 * n, 1)
    rsab = sum(2 * _conv(c, c, 3) + _conv(o, 8 * 27, 3) for c in (n, 2 * n, 4 * n, 8 * n))  # DCN + conv1
    offsets = _conv(8 * n, o, 3) + _conv(o, o, 3)  # lowest level: no coarser offsets
    offsets += sum(_conv(c, o, 3) + _conv(2 * o, o, 3) + _conv(o, o, 3) for c in (n, 2 * n, 4 * n))
    up = sum(c * (c // 2) * 4 + c // 2 + _conv(c, c // 2, 1) for c in (2 * n, 4 * n, 8 * n))  # up + 1x1 fusion
    return encoder + context + rsab + offsets + up + _conv(n, n_colors, 3)


@pytest.mark.parametrize("n_colors", [3, 1])
def test_parameter_count_is_published_and_hand_counted(n_colors):
    with torch.device("meta"):
        model = build_model("sadnet", n_colors)
    assert hand_count(n_colors) == PUBLISHED_PARAMS[n_colors]
    assert count_parameters(model) == PUBLISHED_PARAMS[n_colors]


def test_widths_are_options():
    with torch.device("meta"):
        model = build_model("SADNet", 3, n_channel=16, offset_channel=8)
    assert count_parameters(model) == hand_count(3, 16, 8)
    assert model.dres1.dcnpack.conv_offset_mask.in_channels == 8
    with pytest.raises(ValueError, match="unknown model option.*placement for sadnet.*n_channel, offset_channel"):
        build_model("sadnet", 3, placement="encoder")
    with pytest.raises(ValueError, match="multiple of 8"):
        build_model("sadnet", 3, n_channel=12)


def test_dcn_macs_counted():
    """The four RSAB DCNs cost 9 C^2 per pixel at (C, side) = (32, 128), (64, 64), (128, 32), (256, 16)."""
    with torch.device("meta"):
        model = build_model("sadnet", 3)
    macs = count_macs(model, (1, 3, 128, 128))
    assert macs["dcn"] == sum(9 * c * c * s * s for c, s in ((32, 128), (64, 64), (128, 32), (256, 16)))
    assert macs["other"] == 0
    assert macs["total"] == macs["convolution"] + macs["dcn"]


def test_size_multiple_is_a_model_property():
    model = build_model("sadnet", 1).eval()
    assert SADNet.size_multiple == model.size_multiple == 8  # three stride-2 levels
    with torch.no_grad():
        assert model(torch.rand(1, 1, 24, 40)).shape == (1, 1, 24, 40)
        with pytest.raises(ValueError, match="divisible by 8, got 24x36.*pad_to_multiple"):
            model(torch.rand(1, 1, 24, 36))


def test_release_initialisation():
    """As the release's ``initialize_weights``: zero biases, Xavier convs (offset predictors too), U(+-1/sqrt(fan_in))
    DCN weights."""
    torch.manual_seed(0)
    model = build_model("sadnet", 3)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert not p.any(), name
    predictor = model.dres4.dcnpack.conv_offset_mask.weight  # 216 x 32 x 3 x 3, Xavier: sqrt(6 / (fan_in + fan_out))
    bound = (6 / (32 * 9 + 216 * 9)) ** 0.5
    assert predictor.abs().max() <= bound and predictor.abs().max() > 0.9 * bound
    weight = model.dres4.dcnpack.weight  # 256 x 256 x 3 x 3
    assert weight.abs().max() <= 1 / (256 * 9) ** 0.5


@pytest.mark.parametrize("backend", dcn.available_backends())
def test_training_step(backend):
    """A few Adam steps on one noisy/clean pair lower the L2 loss; every gradient is finite and reaches
    every parameter, the offset predictors included."""
    torch.manual_seed(0)
    model = build_model("sadnet", 3).train()
    clean = torch.rand(1, 3, 16, 16)
    noisy = (clean + 0.2 * torch.randn_like(clean)).clamp(0, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    losses = []
    with dcn.use_backend(backend):
        for step in range(3):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(noisy), clean)
            loss.backward()
            if step == 0:
                for name, p in model.named_parameters():
                    assert p.grad is not None and torch.isfinite(p.grad).all(), name
                    assert p.grad.abs().sum() > 0, name
            optimizer.step()
            losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_gradients_agree_across_backends():
    """float64 input and weight gradients of the whole network are the same on every DCN backend."""
    torch.manual_seed(0)
    model = build_model("sadnet", 1).double()
    x = torch.rand(1, 1, 16, 24, dtype=torch.float64)
    grads = {}
    for backend in dcn.available_backends():
        model.zero_grad()
        xb = x.clone().requires_grad_()
        with dcn.use_backend(backend):
            model(xb).square().sum().backward()
        grads[backend] = [xb.grad] + [p.grad.clone() for p in model.parameters()]
    reference = grads.pop("reference")
    for backend, g in grads.items():
        for a, b in zip(g, reference, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10, msg=lambda m, backend=backend: f"{backend}: {m}")


@pytest.mark.parametrize("n_colors", [3, 1])
def test_authors_checkpoint_loads_strictly(tmp_path, n_colors):
    """A raw state_dict with the release's key names, as its train.py saved it (``model_%04d_dict.pth``)."""
    name = {3: "rgb", 1: "gray"}[n_colors]
    g = torch.load(GOLDEN / f"sadnet_{name}_seed0.pt")
    authors = {key: torch.empty(shape) for key, shape in g["keys"]}  # the authors' keys, shapes and order
    path = tmp_path / "model_0200_dict.pth"
    torch.save(golden_state_dict(authors, g["seed"]), path)
    model = load_weights(build_model("sadnet", n_colors), path).eval()
    with torch.no_grad():
        out = model(g["input"])
    assert (out - g["output"]).abs().max() <= 1e-5

    other = build_model("sadnet", 4 - n_colors)  # the other colour
    with pytest.raises(ValueError, match="wrongly shaped keys: res1.conv0.weight"):
        load_weights(other, path)
    with pytest.raises(ValueError, match="(?s)missing keys: head.weight.*unexpected keys: res1.conv0.weight"):
        load_weights(build_model("adfnet", n_colors), path)


def test_ablation_flags_refused_for_sadnet():
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    assert model_options(parser.parse_args(["--model", "SADNet"])) == {}
    with pytest.raises(ValueError, match="--no_mfi: ablation flags apply to ADFNet only"):
        model_options(parser.parse_args(["--model", "sadnet", "--no_mfi"]))
