"""The Haar DWT/IWT of the wavelet networks, their input layouts, and MWCNN against the authors' golden outputs."""

import sys
from pathlib import Path

import pytest
import torch

from adfnet.data.raw import pack, unpack
from adfnet.inference import denoise
from adfnet.models import MWCNN, MWRCANet, build_model
from adfnet.models.wavelet import DWT, IWT, haar_filters

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
from weights import golden_weights  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def float64_default():
    """Run under float64 as the golden references were (tensors made at run time are float64 too)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def tiny(cls, n_colors, seed=0):
    """A small network of the class (16 channels a level, one block a group), seeded."""
    torch.manual_seed(seed)
    options = {"n_rb": 1} if cls is MWRCANet else {}
    return cls(n_colors, filters_level1=16, filters_level2=16, filters_level3=16, **options).eval()


# --- the transform ------------------------------------------------------------------------------------
def test_dwt_of_one_tile_by_hand():
    # tile [[a, b], [c, d]] = [[1, 2], [3, 5]]: LL = (a+b+c+d)/2, LH = (a+b-c-d)/2, HL = (a-b+c-d)/2,
    # HH = (a-b-c+d)/2
    x = torch.tensor([[[[1.0, 2.0], [3.0, 5.0]]]])
    assert DWT()(x).flatten().tolist() == [5.5, -2.5, -1.5, 0.5]


def test_dwt_bands_are_interleaved_per_channel_and_tiles_independent():
    # channel 0 holds tiles [[1, 2], [3, 5]] and [[0, 0], [0, 4]]; channel 1 is channel 0 times 10
    c0 = torch.tensor([[1.0, 2.0, 0.0, 0.0], [3.0, 5.0, 0.0, 4.0]])
    y = DWT()(torch.stack([c0, 10 * c0])[None])
    assert y.shape == (1, 8, 1, 2)
    assert y[0, :, 0, 0].tolist() == [5.5, -2.5, -1.5, 0.5, 55.0, -25.0, -15.0, 5.0]
    assert y[0, :4, 0, 1].tolist() == [2.0, -2.0, -2.0, 2.0]


def test_authors_filter_listing():
    # As listed in both releases (LL, LH, HL, HH), each flipped in both axes before use.
    listed = 0.5 * torch.tensor([[[1, 1], [1, 1]], [[-1, -1], [1, 1]], [[-1, 1], [-1, 1]], [[1, -1], [-1, 1]]])
    assert torch.equal(haar_filters(torch.float32)[:, 0], listed.flip(-2, -1).float())


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-15), (torch.float32, 1e-6)])
def test_perfect_reconstruction(dtype, tol):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 12, generator=g, dtype=dtype)
    dwt, iwt = DWT().to(dtype), IWT().to(dtype)
    assert (iwt(dwt(x)) - x).abs().max() <= tol
    y = torch.randn(2, 12, 4, 6, generator=g, dtype=dtype)
    assert (dwt(iwt(y)) - y).abs().max() <= tol
    # orthogonal: the energy is kept
    assert torch.allclose((dwt(x) ** 2).sum(), (x**2).sum(), rtol=tol * 10)


def test_filters_are_fixed_parameters_in_the_state_dict():
    dwt = DWT()
    assert list(dwt.state_dict()) == ["weight"]
    assert not dwt.weight.requires_grad
    x = torch.rand(1, 2, 4, 4, requires_grad=True)
    dwt(x).square().sum().backward()
    assert x.grad is not None and dwt.weight.grad is None


def test_transform_errors():
    with pytest.raises(ValueError, match="even height and width"):
        DWT()(torch.zeros(1, 1, 5, 4))
    with pytest.raises(ValueError, match="multiple of 4 channels"):
        IWT()(torch.zeros(1, 6, 2, 2))


# --- layouts --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [MWRCANet, MWCNN])
def test_packed_layout_is_the_mosaic_network_with_the_same_weights(cls):
    plane = tiny(cls, 1)
    packed_model = tiny(cls, 4, seed=1)
    packed_model.load_state_dict(plane.state_dict(), strict=True)  # the same keys and shapes
    mosaic = torch.rand(2, 1, 32, 48)
    with torch.no_grad():
        expected = plane(mosaic)
        out = packed_model(pack(mosaic))
    assert out.shape == (2, 4, 16, 24)
    assert torch.allclose(unpack(out), expected, atol=1e-6)
    assert (plane.size_multiple, packed_model.size_multiple) == (8, 4)


@pytest.mark.parametrize("cls", [MWRCANet, MWCNN])
def test_srgb_layout(cls):
    model = tiny(cls, 3)
    assert model.size_multiple == 8
    first = next(v for k, v in model.state_dict().items() if k.endswith(".weight") and v.shape[-1] == 3)
    assert first.shape[1] == 12  # the DWT of three colours
    with torch.no_grad():
        assert model(torch.rand(1, 3, 16, 24)).shape == (1, 3, 16, 24)


@pytest.mark.parametrize(
    "n_colors, shape, message",
    [
        (1, (1, 4, 16, 16), "got 4 channels: packed raw.*adfnet.data.raw.unpack.*n_colors=4"),
        (4, (1, 1, 32, 32), "got one plane: a Bayer mosaic.*adfnet.data.raw.pack.*n_colors=1"),
        (1, (1, 1, 31, 32), "even height and width.*crop or pad it to an even size"),
        (1, (1, 1, 36, 32), "divisible by 8.*pad_to_multiple"),
        (4, (1, 4, 18, 16), "divisible by 4"),
        (3, (1, 1, 16, 16), "n_colors=3 .*got 1"),
        (1, (4, 16, 16), r"\(B, C, H, W\)"),
    ],
)
def test_layout_errors(n_colors, shape, message):
    model = tiny(MWRCANet, n_colors)
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(shape))


def test_denoise_pads_to_the_layout_multiple():
    """adfnet.inference.denoise reads size_multiple: packed raw of 30x42 runs, padded to 32x44."""
    model = tiny(MWRCANet, 4)
    packed = torch.rand(1, 4, 30, 42)
    out = denoise(model, packed)
    assert out.shape == packed.shape
    padded = torch.nn.functional.pad(packed, (0, 2, 0, 2), mode="reflect")
    with torch.no_grad():
        assert torch.allclose(out, model(padded)[..., :30, :42].clamp(0, 1), atol=1e-6)


def test_bad_layout_options():
    with pytest.raises(ValueError, match="n_colors must be one of"):
        MWCNN(2)
    with pytest.raises(ValueError, match="at least 16"):
        MWRCANet(1, filters_level1=8)


# --- MWCNN ----------------------------------------------------------------------------------------------
def test_mwcnn_init_is_orthogonal_as_released():
    conv = tiny(MWCNN, 1).level1_prev.block[2]
    w = conv.weight.detach().flatten(1)  # 16 x 144: orthonormal rows
    assert torch.allclose(w @ w.T, torch.eye(16), atol=1e-5)
    assert not conv.bias.any()


@pytest.fixture(scope="module")
def mwcnn_golden():
    g = torch.load(GOLDEN / "mwcnn_gray_seed0.pt")
    model = build_model("mwcnn").eval()
    keys = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    counts = {
        "all": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    model.load_state_dict(golden_weights(model, g), strict=True)
    return g, model, keys, counts


def test_mwcnn_keys_and_parameters_are_the_authors(mwcnn_golden):
    g, model, keys, counts = mwcnn_golden
    assert keys == [(k, tuple(shape)) for k, shape in g["keys"]]
    assert counts == g["param_counts"] == {"all": 16_145_924, "trainable": 16_145_892}
    assert [k for k, p in model.named_parameters() if not p.requires_grad] == g["fixed_keys"]
    assert model.spec.record() == {
        "model": "mwcnn",
        "n_colors": 1,
        "filters_level1": 160,
        "filters_level2": 256,
        "filters_level3": 256,
    }


def test_mwcnn_matches_the_authors_float32(mwcnn_golden):
    g, model, _, _ = mwcnn_golden
    with torch.no_grad():
        out = model(g["input"])
    assert (out - g["output"]).abs().max().item() <= 1e-5


def test_mwcnn_matches_the_authors_float64(mwcnn_golden, float64_default):
    g, model, _, _ = mwcnn_golden
    try:
        with torch.no_grad():
            out = model.double()(g["input"].double())
    finally:
        model.float()
    assert out.dtype == torch.float64
    assert (out - g["output_float64"]).abs().max().item() <= 1e-9
