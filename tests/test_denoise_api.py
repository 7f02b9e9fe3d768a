"""denoise(): what it accepts (documented conversions), what it refuses with a message, chop tile progress."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adfnet.inference import (
    CHOP_MIN_SIZE_GRAY,
    ImageTooLargeError,
    NonFiniteOutputError,
    chop_tiles,
    denoise,
    forward_chop,
)
from adfnet.models import ADFNet


@pytest.fixture(scope="module")
def net() -> ADFNet:
    torch.manual_seed(0)
    return ADFNet(1, (8, 8, 16, 16)).eval()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (24, 32), dtype=np.uint8)


def test_numpy_and_uint8_inputs_are_converted(net: ADFNet, image: np.ndarray) -> None:
    reference = denoise(net, torch.from_numpy(image).float().div(255)[None, None])
    from_uint8_tensor = denoise(net, torch.from_numpy(image)[None, None])
    assert torch.equal(from_uint8_tensor, reference)
    out = denoise(net, image)  # numpy (H, W) uint8 -> numpy (H, W, 1) float32 in [0, 1]
    assert isinstance(out, np.ndarray) and out.shape == (24, 32, 1) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], reference[0, 0].numpy())
    again = denoise(net, image[..., None].astype(np.float32) / 255)  # float (H, W, C) in [0, 1]
    np.testing.assert_array_equal(again, out)


@pytest.mark.parametrize(
    "bad, error, message",
    [
        ([[0.5] * 16] * 16, TypeError, "denoise takes a torch.Tensor (B, C, H, W) in [0, 1], or a numpy image"),
        (torch.rand(1, 16, 16), ValueError, "add the batch dimension: x[None]"),
        (torch.ones(1, 1, 16, 16, dtype=torch.int64), ValueError, "float tensor in [0, 1] or uint8"),
        (np.ones((16, 16), bool), ValueError, "uint8 or float in [0, 1]; got shape (16, 16), dtype bool"),
        (torch.full((1, 1, 16, 16), 128.0), ValueError, "divide a 0-255 float image by 255"),
        (torch.full((1, 1, 16, 16), float("nan")), ValueError, "256 NaN/inf value(s)"),
        (torch.full((1, 1, 16, 16), float("inf")), ValueError, "NaN/inf value(s)"),
    ],
)
def test_bad_inputs_are_refused_with_what_is_expected(net: ADFNet, bad: object, error: type, message: str) -> None:
    with pytest.raises(error) as err:
        denoise(net, bad)  # type: ignore[arg-type]
    assert message in str(err.value)


def test_noisy_values_slightly_outside_0_1_are_accepted(net: ADFNet) -> None:
    gen = torch.Generator().manual_seed(0)
    noisy = torch.rand(1, 1, 64, 64, generator=gen) + torch.randn(1, 1, 64, 64, generator=gen) * 75 / 255
    assert noisy.min() < 0 and noisy.max() > 1
    assert denoise(net, noisy).shape == noisy.shape


def test_broken_weights_raise_instead_of_a_clamped_image(image: np.ndarray) -> None:
    broken = ADFNet(1, (8, 8, 16, 16)).eval()
    with torch.no_grad():
        broken.tail.bias.fill_(float("inf"))  # clamping would have turned this into a white image
    with pytest.raises(NonFiniteOutputError, match="weights are broken"):
        denoise(broken, image)


def test_out_of_memory_suggests_chop() -> None:
    def huge(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: ...")

    with pytest.raises(ImageTooLargeError, match=r"a 3000x4000 image in one piece.*tiling='chop' \(test.py --chop\)"):
        denoise(huge, torch.zeros(1, 1, 3000, 4000))
    with pytest.raises(RuntimeError, match="other"):  # any other error is not disguised
        denoise(lambda x: (_ for _ in ()).throw(RuntimeError("other")), torch.zeros(1, 1, 16, 16))


@pytest.mark.parametrize(
    "h, w, min_size", [(3000, 4000, CHOP_MIN_SIZE_GRAY), (481, 321, 1000), (40, 40, 10), (100, 30, 100)]
)
def test_chop_tile_count_and_progress(h: int, w: int, min_size: int) -> None:
    calls = []

    def identity(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape[-2:]))
        return x

    class Bar:
        n = 0

        def update(self, k: int = 1) -> None:
            self.n += k

    bar = Bar()
    x = torch.rand(1, 1, h, w)
    assert torch.equal(forward_chop(identity, x, min_size, progress=bar.update), x)  # type: ignore[arg-type]
    assert chop_tiles(h, w, min_size) == len(calls) == bar.n
    if (h, w) == (3000, 4000):
        assert len(calls) == 64  # a 12-megapixel photo chopped: 64 tiles, shown by a progress bar


def test_chop_progress_bar_is_shown_for_many_tiles(capsys: pytest.CaptureFixture[str]) -> None:
    denoise(lambda x: x.clamp(0, 1), torch.rand(1, 1, 200, 200), "chop", min_size=1000)
    assert f"tiles:   0%|          | 0/{chop_tiles(200, 200, 1000)}" in capsys.readouterr().err
    denoise(lambda x: x.clamp(0, 1), torch.rand(1, 1, 64, 64), "chop", min_size=10**6)
    assert "tiles" not in capsys.readouterr().err  # 4 tiles: no bar
