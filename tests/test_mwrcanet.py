"""MWRCANet and MWResNet: the authors' network (golden outputs, x8 ensemble), their checkpoint layout, and the
CFA-aware ensemble beside the authors' one."""

import sys
from pathlib import Path

import pytest
import torch

from adfnet.checkpoint import load_weights, weights_with_architecture
from adfnet.data.raw import mosaic, pack, unpack
from adfnet.models import MWRCANet, build_model
from adfnet.models.mwrcanet import authors_self_ensemble, cfa_ensemble
from adfnet.models.wavelet import haar_filters

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
from weights import golden_weights  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"filters_level1": 16, "filters_level2": 16, "filters_level3": 16, "n_rb": 1}


@pytest.fixture(scope="module")
def golden():
    """The published configuration with the golden weights (27 M parameters: built once, run 9 times)."""
    g = torch.load(GOLDEN / "mwrcanet_seed0.pt")
    model = build_model("mwrcanet").eval()
    keys = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    model.load_state_dict(golden_weights(model, g), strict=True)
    return g, model, keys


def test_keys_parameters_and_fixed_filters_are_the_authors(golden):
    g, model, keys = golden
    assert keys == [(k, tuple(shape)) for k, shape in g["keys"]]
    counts = {
        "all": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    assert counts == g["param_counts"] == {"all": 27_216_061, "trainable": 27_215_965}
    fixed = [k for k, p in model.named_parameters() if not p.requires_grad]
    assert fixed == g["fixed_keys"]
    assert all(torch.equal(model.state_dict()[k], haar_filters(torch.float32)) for k in fixed)
    assert g["input"].shape == (1, 1, 64, 96)  # the layout: one Bayer plane
    assert model.spec.record() == {
        "model": "mwrcanet",
        "n_colors": 1,
        "filters_level1": 96,
        "filters_level2": 128,
        "filters_level3": 128,
        "n_rb": 20,
    }


def test_output_and_authors_x8_float32(golden):
    """One pass and DN_valid_SIDD.py's x8 (its first pass is the plain one)."""
    g, model, _ = golden
    passes = []

    def recorded(x):
        y = model(x)
        passes.append((x, y))
        return y

    with torch.no_grad():
        x8 = authors_self_ensemble(recorded, g["input"])
    plain = [y for x, y in passes if torch.equal(x, g["input"])]
    assert len(passes) == 8 and len(plain) == 1
    assert (plain[0] - g["output"]).abs().max().item() <= 1e-5
    assert (x8 - g["output_x8"]).abs().max().item() <= 1e-5
    assert x8.min() == 0 and x8.max() == 1  # clamped (6% of the pixels are)


def test_output_float64(golden):
    g, model, _ = golden
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with torch.no_grad():
            out = model.double()(g["input"].double())
    finally:
        torch.set_default_dtype(before)
        model.float()
    assert out.dtype == torch.float64
    assert (out - g["output_float64"]).abs().max().item() <= 1e-9
    # The x8 reference in float64 is the same eight passes averaged and clamped: checked against the
    # float32 ensemble above; the float64 one would cost eight more passes of this network.


def test_authors_checkpoint_layout_loads_strictly(tmp_path):
    """{'state_dict': ...} with DataParallel's 'module.' prefix, saved as the authors did, read from disk."""
    source = build_model("mwrcanet", **TINY)
    path = tmp_path / "dn_mwrcanet_raw_c1.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    model = build_model("mwrcanet", **TINY)
    x = torch.rand(1, 1, 16, 24)
    with torch.no_grad():
        assert not torch.equal(model(x), source(x))
        load_weights(model, path)
        assert torch.equal(model(x), source(x))
    broken = {"state_dict": {f"module.{k}": v for k, v in list(model.state_dict().items())[:-1]}}
    with pytest.raises(ValueError, match="1 missing keys: tail.weight"):
        load_weights(build_model("mwrcanet", **TINY), broken)


# --- MWResNet ---------------------------------------------------------------------------------------------
def test_mwresnet_is_mwrcanet_without_channel_attention(golden):
    g, _, _ = golden
    model = build_model("mwresnet", n_rb=20)
    plain = [(k, tuple(s)) for k, s in g["keys"] if ".cuca." not in k and ".act." not in k]
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == plain
    block = model.middle.body[0]
    assert isinstance(block.act, torch.nn.ReLU) and block.cuca is None
    assert build_model("mwresnet").spec.record() == {
        "model": "mwresnet",
        "n_colors": 1,
        "filters_level1": 96,
        "filters_level2": 128,
        "filters_level3": 128,
        "n_rb": 4,
    }


def test_one_network_s_weights_are_refused_by_the_other():
    mwresnet = build_model("mwresnet", **TINY)
    with pytest.raises(ValueError, match="the other wavelet network.*'mwrcanet' or 'mwresnet'"):
        load_weights(build_model("mwrcanet", **TINY), mwresnet.state_dict())  # no record: the keys tell
    with pytest.raises(ValueError, match="model: checkpoint 'mwresnet', model 'mwrcanet'"):
        load_weights(build_model("mwrcanet", **TINY), weights_with_architecture(mwresnet))


def test_block_type_is_checked():
    with pytest.raises(ValueError, match="block must be one of rcab, res"):
        MWRCANet(block="dense")


# --- the two self-ensembles -------------------------------------------------------------------------------
# A mosaic of constant colours: which colour each site of the network's input holds shows its CFA pattern.
RED, GREEN, BLUE = 0.9, 0.5, 0.1


def patterns_seen(run, model, x):
    """The CFA pattern of the network's input (top-left 2x2 tile, read by colour) in each pass of ``run``."""
    seen = []

    def look(_module, args):
        tile = args[0][0, 0, :2, :2].flatten().tolist()
        names = {RED: "R", GREEN: "G", BLUE: "B"}
        seen.append("".join(names[min(names, key=lambda c: abs(c - v))] for v in tile))
        # the whole plane has one pattern: each 2x2 phase holds one colour
        plane = args[0][0, 0]
        assert all(plane[i::2, j::2].unique().numel() == 1 for i in (0, 1) for j in (0, 1))

    handle = model.head.register_forward_pre_hook(look)
    try:
        with torch.no_grad():
            run(model, x)
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR"])
def test_cfa_ensemble_shows_every_pass_the_input_pattern(pattern):
    model = build_model("mwrcanet", **TINY).eval()
    rgb = torch.tensor([RED, GREEN, BLUE]).view(1, 3, 1, 1).expand(1, 3, 32, 48)
    x = mosaic(rgb, pattern)
    assert patterns_seen(lambda m, v: cfa_ensemble(m, v, pattern), model, x) == [pattern] * 8
    authors = patterns_seen(authors_self_ensemble, model, x)
    assert len(authors) == 8 and authors.count(pattern) == 2  # identity and one other of the 8 transforms
    assert set(authors) == {"RGGB", "GRBG", "GBRG", "BGGR"}


def test_cfa_ensemble_is_the_same_on_both_raw_layouts():
    plane = build_model("mwrcanet", **TINY).eval()
    packed_model = build_model("mwrcanet", n_colors=4, **TINY).eval()
    packed_model.load_state_dict(plane.state_dict())
    x = torch.rand(1, 1, 32, 48)
    with torch.no_grad():
        a = cfa_ensemble(plane, x)
        b = cfa_ensemble(packed_model, pack(x))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.allclose(unpack(b), a, atol=1e-6)
    with pytest.raises(ValueError, match="raw models"):
        cfa_ensemble(build_model("mwrcanet", n_colors=3, **TINY), torch.rand(1, 3, 16, 16))
