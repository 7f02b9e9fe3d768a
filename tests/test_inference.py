"""adfnet.inference: padding, the official chop, the x8 ensemble, the combined path."""

import numpy as np
import pytest
import torch
from torch import nn

from adfnet.inference import NonFiniteOutputError, denoise, forward_chop, pad_to_multiple, self_ensemble


def local_net(channels: int = 3) -> nn.Module:
    """Receptive field 7x7 (radius 3), well inside the 24 px overlap: chop must be exact."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(8, channels, 3, padding=1),
    ).eval()


class Recorder(nn.Module):
    """Identity that records the input sizes it sees."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return x.clone()


class NotEquivariant(nn.Module):
    """A fixed asymmetric conv plus a horizontal ramp: changes under every flip/rotation."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        ramp = torch.linspace(0, 1, x.shape[-1]).to(x)
        return self.conv(x) + ramp


def test_pad_to_multiple_reflects_bottom_right():
    x = torch.arange(13 * 17, dtype=torch.float32).reshape(1, 1, 13, 17)
    y, (h, w) = pad_to_multiple(x)
    assert y.shape == (1, 1, 16, 24) and (h, w) == (13, 17)
    assert torch.equal(y[..., :13, :17], x)
    assert torch.equal(y[0, 0, 13:, :17], x[0, 0, [11, 10, 9]])  # reflect without repeating the edge
    assert torch.equal(y[0, 0, :13, 17:], x[0, 0, :, [15, 14, 13, 12, 11, 10, 9]])
    z, size = pad_to_multiple(torch.zeros(1, 1, 16, 8))
    assert z.shape == (1, 1, 16, 8) and size == (16, 8)


@pytest.mark.parametrize(
    "shape, min_size",
    [((1, 3, 96, 128), 10**9), ((2, 3, 120, 200), 10**9), ((1, 3, 328, 488), 10**9), ((1, 3, 200, 256), 10_000)],
)
def test_chop_equals_full_for_local_model(shape, min_size):
    model, x = local_net(), torch.rand(shape)
    with torch.no_grad():
        assert torch.allclose(forward_chop(model, x, min_size), model(x), atol=1e-6)


def test_chop_differs_for_global_model():
    def global_model(t):
        return t - t.mean(dim=(2, 3), keepdim=True)

    x = torch.rand(1, 3, 96, 96)
    assert not torch.allclose(forward_chop(global_model, x, 10**9), global_model(x), atol=1e-3)


def test_chop_quadrant_sizes_and_recursion():
    rec = Recorder()
    x = torch.rand(1, 3, 328, 488)  # BSD68 321x481 after padding
    assert torch.equal(forward_chop(rec, x, min_size=4_000_000), x)
    assert rec.sizes == [(184, 264)] * 4  # official sizes
    # 256 -> 152 (not below min_size: recurse) -> 96: 16 leaves
    rec.sizes.clear()
    y = forward_chop(rec, x[..., :256, :256], min_size=152 * 152)
    assert rec.sizes == [(96, 96)] * 16 and torch.equal(y, x[..., :256, :256])
    rec.sizes.clear()
    small = torch.rand(1, 3, 32, 64)  # too small to split in height: run whole
    assert torch.equal(forward_chop(rec, small, 10), small) and rec.sizes == [(32, 64)]
    with pytest.raises(ValueError, match="overlap"):
        forward_chop(rec, x, 10**9, overlap=20)


def _official_test_x8(model, x):
    """The official test_x8 mode list (numpy on H, W), written independently of self_ensemble."""

    def aug(a, mode):
        ops = {
            0: lambda t: t,
            1: lambda t: np.flipud(np.rot90(t)),
            2: np.flipud,
            3: lambda t: np.rot90(t, k=3),
            4: lambda t: np.flipud(np.rot90(t, k=2)),
            5: np.rot90,
            6: lambda t: np.rot90(t, k=2),
            7: lambda t: np.flipud(np.rot90(t, k=3)),
        }
        return np.ascontiguousarray(ops[mode](a))

    arr = x.numpy().transpose(2, 3, 1, 0)  # H, W, C, B
    outs = []
    for mode in range(8):
        y = model(torch.from_numpy(aug(arr, mode).transpose(3, 2, 0, 1).copy()))
        inverse = {3: 5, 5: 3}.get(mode, mode)
        outs.append(aug(y.numpy().transpose(2, 3, 1, 0), inverse).transpose(3, 2, 0, 1))
    return torch.from_numpy(np.mean(outs, axis=0))


def test_self_ensemble_inverts_every_transform():
    model = NotEquivariant()
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        ens = self_ensemble(model, x)
        assert not torch.allclose(ens, model(x), atol=1e-3)
        assert torch.allclose(ens, _official_test_x8(model, x), atol=1e-6)
        assert torch.allclose(ens[1:], self_ensemble(model, x[1:]), atol=1e-6)  # batch preserved
    assert torch.allclose(self_ensemble(lambda t: 2 * t, x), 2 * x, atol=1e-6)


def test_denoise_modes():
    model = local_net()
    noisy = torch.rand(1, 3, 61, 75) * 1.2 - 0.1
    with torch.no_grad():
        padded, _ = pad_to_multiple(noisy)
        expected = model(padded)[..., :61, :75].clamp(0, 1)
        plain = denoise(model, noisy)
        assert plain.shape == noisy.shape and plain.min() >= 0 and plain.max() <= 1
        assert torch.allclose(plain, expected, atol=1e-6)
        assert torch.allclose(denoise(model, noisy, "chop", min_size=500), plain, atol=1e-6)
        ens = denoise(model, noisy, ensemble=True)
        assert torch.allclose(ens, self_ensemble(model, padded)[..., :61, :75].clamp(0, 1), atol=1e-6)
        assert torch.allclose(denoise(model, noisy, "chop", ensemble=True, min_size=500), ens, atol=1e-6)
    with pytest.raises(ValueError, match="too small"):
        denoise(model, torch.rand(1, 3, 7, 30))


class Multiple8(nn.Module):
    """A local model that, like ADFNet, only accepts sides that are multiples of 8."""

    def __init__(self, channels: int = 1):
        super().__init__()
        self.net = local_net(channels)

    def forward(self, x):
        assert x.shape[-2] % 8 == 0 and x.shape[-1] % 8 == 0, f"got {tuple(x.shape)}"
        return self.net(x)


class PositionStamp(nn.Module):
    """Adds a ramp over the pixel positions of its own input: the output tells where each window sat."""

    def forward(self, x):
        h, w = x.shape[-2:]
        ramp = torch.arange(h * w, dtype=x.dtype).reshape(h, w) / (h * w)
        return x + 0.05 * ramp


@pytest.mark.parametrize(
    "shape, min_size, ensemble",
    [
        ((1, 1, 321, 481), 400_000, False),
        ((1, 1, 121, 139), 5_000, True),  # one recursion
        ((2, 1, 61, 75), 10**9, True),
    ],
)
def test_both_chop_protocols_equal_the_full_output_for_a_local_model(shape, min_size, ensemble):
    model, noisy = Multiple8(), torch.rand(shape) * 0.8 + 0.1
    with torch.no_grad():
        padded = denoise(model, noisy, "chop", ensemble=ensemble, min_size=min_size, pad_before_chop=True)  # colour
        assert torch.allclose(padded, denoise(model, noisy, ensemble=ensemble), atol=1e-6)
        # gray protocol: equals the model on the unpadded image, which Multiple8 itself would refuse
        gray = denoise(model, noisy, "chop", ensemble=ensemble, min_size=min_size, pad_before_chop=False)
        full = self_ensemble(model.net, noisy) if ensemble else model.net(noisy)
        assert torch.allclose(gray, full.clamp(0, 1), atol=1e-6)


def test_gray_protocol_chops_the_unpadded_image_like_the_official_test():
    noisy = torch.rand(1, 1, 321, 481) * 0.8 + 0.1  # BSD68 size
    model = PositionStamp()
    # the official gray forward_chop on the unpadded image, written out:
    # h2, w2 = 160, 240; hs = (160 // 8) * 8 + 24 = 184; ws = (240 // 8) * 8 + 24 = 264
    q = [
        model(noisy[..., :184, :264]),
        model(noisy[..., :184, 217:]),
        model(noisy[..., 137:, :264]),
        model(noisy[..., 137:, 217:]),
    ]
    expected = torch.empty_like(noisy)
    expected[..., :160, :240] = q[0][..., :160, :240]
    expected[..., :160, 240:] = q[1][..., :160, 23:]
    expected[..., 160:, :240] = q[2][..., 23:, :240]
    expected[..., 160:, 240:] = q[3][..., 23:, 23:]
    with torch.no_grad():
        gray = denoise(model, noisy, "chop", min_size=400_000, pad_before_chop=False)
        padded_first = denoise(model, noisy, "chop", min_size=400_000, pad_before_chop=True)
    assert torch.equal(gray, expected.clamp(0, 1))
    assert not torch.allclose(padded_first, gray, atol=1e-4)  # padding to 328x488 moves the windows


def test_gray_protocol_pads_only_what_it_cannot_chop():
    model = Multiple8()
    rec = Recorder()
    noisy = torch.rand(1, 1, 20, 61)  # too short to split: run whole, padded to 24x64
    with torch.no_grad():
        assert torch.allclose(denoise(model, noisy, "chop", pad_before_chop=False), denoise(model, noisy))
        denoise(rec, noisy, "chop", pad_before_chop=False)
    assert rec.sizes == [(24, 64)]


def test_chop_order_defaults_to_the_official_order_of_the_task():
    """Gray input is chopped unpadded, colour input padded first, unless the caller says otherwise."""
    model = PositionStamp()
    with torch.no_grad():
        for channels, official in ((1, False), (3, True)):
            noisy = torch.rand(1, channels, 121, 139)
            default = denoise(model, noisy, "chop", min_size=5_000)
            assert torch.equal(default, denoise(model, noisy, "chop", min_size=5_000, pad_before_chop=official))
            assert not torch.equal(default, denoise(model, noisy, "chop", min_size=5_000, pad_before_chop=not official))


def test_tiles_take_the_model_multiple_and_the_same_checks_as_the_other_tilings(one_thread):
    """One entry: tiles pad and start on the model's own size multiple (here 1, not 8), and get the NaN check
    and the bf16 precision that whole and chop get."""
    net = local_net()  # radius 3 <= overlap // 4: tiling is exact
    net.size_multiple = 1
    x = torch.rand(1, 3, 37, 45)
    with torch.no_grad():
        whole = net(x).clamp(0, 1)  # multiple 1: no padding (reflect-padded to 40 x 48, the borders would differ)
    assert torch.equal(denoise(net, x, "tiles", tile=24, overlap=12), whole)
    broken = nn.Conv2d(3, 3, 1)
    nn.init.constant_(broken.weight, float("nan"))
    for tiling in ("whole", "chop", "tiles"):
        with pytest.raises(NonFiniteOutputError):
            denoise(broken, x, tiling, tile=24, overlap=8)
    bf16 = denoise(net, x, "tiles", precision="bf16", tile=24, overlap=12)
    assert bf16.dtype == torch.float32 and 0 < (bf16 - whole).abs().max() < 0.05  # ran in bfloat16, blended in fp32
    with pytest.raises(ValueError, match="tiling must be one of whole, chop, tiles"):
        denoise(net, x, "quadrants")
