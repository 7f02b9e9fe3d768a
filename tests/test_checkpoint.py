"""load_weights: every accepted checkpoint layout, strict loading and errors that name the keys."""

import datetime

import pytest
import torch
from torch import nn

from adfnet import build_model, load_weights
from adfnet.checkpoint import checkpoint_architecture, load_checkpoint, weights_with_architecture
from adfnet.models import ADFNet, ModelSpec
from adfnet.models.dbsn import CHECKPOINT_PARTS


def small(n_colors=3):
    return ADFNet(n_colors, (8, 8, 16, 16))


def meta(name, n_colors=3):
    with torch.device("meta"):  # mismatches are found before any tensor is copied
        return build_model(name, n_colors)


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    return small().state_dict()


def assert_loaded(model, state):
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def with_thop_entries(state):
    out = {f"module.{k}": v for k, v in state.items()}
    out.update({"total_ops": torch.zeros(1), "head.total_params": torch.zeros(1)})
    return out


LAYOUTS = {
    "raw": lambda sd: sd,
    "state_dict": lambda sd: {"state_dict": sd},
    "params": lambda sd: {"params": sd},
    "module prefix": lambda sd: {f"module.{k}": v for k, v in sd.items()},
    "official real": lambda sd: {
        "epoch": 3,
        "state_dict": {f"module.{k}": v for k, v in sd.items()},
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
    },
    "thop entries": with_thop_entries,
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("from_file", [False, True], ids=["dict", "file"])
def test_accepted_layouts(source, layout, from_file, tmp_path):
    checkpoint = LAYOUTS[layout](source)
    if from_file:
        torch.save(checkpoint, tmp_path / "ckpt.pt")
        checkpoint = str(tmp_path / "ckpt.pt")
    model = small()
    assert load_weights(model, checkpoint) is model
    assert_loaded(model, source)


def test_wrapped_model_targets(source):
    model = small()
    load_weights(nn.DataParallel(model), source)
    assert_loaded(model, source)


def test_missing_file_and_unsafe_pickle(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        load_weights(small(), tmp_path / "nothere.pt")
    torch.save({"when": datetime.timedelta(days=1)}, tmp_path / "pickled.pt")  # a class no weights-only load builds
    with pytest.raises(ValueError, match="weights_only=False"):
        load_weights(small(), tmp_path / "pickled.pt")


def test_missing_and_unexpected_keys_are_named(source):
    state = dict(source)
    del state["tail.bias"], state["dfe1.fe.1.branch_3.fuse.weight"]
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as err:
        load_weights(small(), state)
    msg = str(err.value)
    assert "2 missing keys: dfe1.fe.1.branch_3.fuse.weight, tail.bias" in msg
    assert "1 unexpected keys: extra.weight" in msg
    assert "wrongly shaped" not in msg


@pytest.mark.parametrize("ckpt_colors, model_colors", [(1, 3), (3, 1)])
def test_gray_rgb_mismatch_is_explained(ckpt_colors, model_colors):
    with pytest.raises(ValueError) as err:
        load_weights(meta("adfnet", model_colors), meta("adfnet", ckpt_colors).state_dict())
    msg = str(err.value)
    names = {1: "gray", 3: "RGB"}
    assert f"The checkpoint is for {names[ckpt_colors]} images (n_colors={ckpt_colors})" in msg
    assert f"build the model with n_colors={ckpt_colors}" in msg
    assert "3 wrongly shaped keys: head.weight: checkpoint" in msg
    assert "tail.weight" in msg and "tail.bias" in msg and "missing" not in msg


@pytest.mark.parametrize("ckpt, model", [("adfnet_l", "adfnet"), ("adfnet", "adfnet_l")])
def test_width_mismatch_is_explained(ckpt, model):
    with pytest.raises(ValueError) as err:
        load_weights(meta(model), meta(ckpt).state_dict())
    msg = str(err.value)
    label = {"adfnet": "ADFNet ('adfnet')", "adfnet_l": "ADFNet-L ('adfnet_l')"}
    assert f"The checkpoint is {label[ckpt]} (first width" in msg and f"the model {label[model]}" in msg
    assert "166 wrongly shaped keys: head.weight" in msg and "... and 146 more" in msg  # listing capped


def test_ablation_checkpoint_is_explained():
    with pytest.raises(ValueError, match="another ablation variant"):
        load_weights(small(), ADFNet(3, (8, 8, 16, 16), dcb=False).state_dict())


def test_not_an_adfnet_checkpoint():
    with pytest.raises(ValueError, match="shares no key"):
        load_weights(small(), {"conv.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="not a tensor"):
        load_weights(small(), {"head.weight": [1, 2]})


def test_architecture_record_round_trip_and_mismatch(tmp_path):
    """MFI has no parameters: only the record tells a --no_mfi checkpoint from a full one."""
    full, no_mfi = build_model("adfnet", 1), build_model("adfnet", 1, mfi=False)
    assert set(full.state_dict()) == set(no_mfi.state_dict())  # the keys alone cannot tell them apart
    torch.save(weights_with_architecture(no_mfi), tmp_path / "no_mfi.pt")
    assert checkpoint_architecture(torch.load(tmp_path / "no_mfi.pt", weights_only=True))["mfi"] is False
    load_weights(build_model("adfnet", 1, mfi=False), tmp_path / "no_mfi.pt")
    with pytest.raises(ValueError, match=r"another architecture \(mfi: checkpoint False, model True\).*mfi=False"):
        load_weights(full, tmp_path / "no_mfi.pt")
    with pytest.raises(ValueError, match=r"no architecture record.*full model.*mfi: checkpoint True, model False"):
        load_weights(no_mfi, full.state_dict())  # an official checkpoint carries no record
    load_weights(full, no_mfi.state_dict())  # unrecorded weights into the full model: assumed to be it


def test_our_training_checkpoint_is_unwrapped(source, tmp_path):
    torch.save({"version": 1, "epoch": 3, "iteration": 30, "model": source, "optimizer": {}}, tmp_path / "ckpt.pt")
    model = small()
    load_weights(model, tmp_path / "ckpt.pt")
    assert_loaded(model, source)


def test_truncated_file_and_folder_messages(source, tmp_path):
    torch.save(source, tmp_path / "w.pt")
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as err:
        load_weights(small(), tmp_path / "cut.pt")
    assert "truncated, damaged or not a PyTorch checkpoint" in str(err.value)
    assert "weights_only=False" not in str(err.value)
    with pytest.raises(ValueError, match=r"is a folder, not a checkpoint file: pass the \.pt file itself \(it holds"):
        load_weights(small(), tmp_path)


def test_load_checkpoint_builds_the_network_the_checkpoint_holds(tmp_path):
    """One loader: without a spec it builds what the checkpoint records (an ablation included) or, for an
    unrecorded (official) checkpoint, what its head conv shows; with one, the checkpoint must be of it."""
    net = build_model("adfnet", 1, mfi=False).eval()
    torch.save(weights_with_architecture(net), tmp_path / "no_mfi.pt")
    model, spec = load_checkpoint(tmp_path / "no_mfi.pt")
    assert spec == net.spec and spec.options["mfi"] is False and not model.training
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), net(x))
    with pytest.raises(ValueError, match="mfi: checkpoint False, model True"):
        load_checkpoint(tmp_path / "no_mfi.pt", ModelSpec("adfnet", 1))
    torch.save(build_model("adfnet", 3).state_dict(), tmp_path / "official.pt")
    notes = []
    _, spec = load_checkpoint(tmp_path / "official.pt", note=notes.append)
    assert (spec.name, spec.n_colors, spec.options["mfi"]) == ("adfnet", 3, True)
    assert "carries no architecture record" in notes[0]
    with pytest.raises(ValueError, match="n_colors=3"):  # a colour checkpoint asked for as gray
        load_checkpoint(tmp_path / "official.pt", n_colors=1)


def test_unrecorded_checkpoints_of_every_network_are_recognised(tmp_path):
    """The authors' checkpoints carry no record: each network is told by its keys and shapes (DBSN's three-part
    layout with its configuration read from the shapes), so load_checkpoint needs no --model for them."""
    cases = [("sadnet", 1, {}), ("mwcnn", 3, {}), ("mwresnet", 1, {}), ("dbsn", 1, {"mid_ch": 8})]
    for name, n_colors, options in cases:
        net = build_model(name, n_colors, **options)
        state = net.state_dict()
        if name == "dbsn":  # the authors' layout: one state_dict per net
            state = {part: getattr(net, sub).state_dict() for part, sub in CHECKPOINT_PARTS.items()}
        torch.save(state, tmp_path / f"{name}.pth")
        assert load_checkpoint(tmp_path / f"{name}.pth")[1] == net.spec, name
