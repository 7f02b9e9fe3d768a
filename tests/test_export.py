"""adfnet.export: ONNX in onnxruntime against the official golden outputs; safetensors round trip."""

import sys

import numpy as np
import onnx  # the test extra; requirements.txt installs it: missing, these tests fail rather than skip
import onnxruntime as ort
import pytest
import torch

from adfnet import build_model, load_weights
from adfnet.cli.export import main
from adfnet.export import export_onnx, export_safetensors, onnxruntime_has_deformconv, resolve_dcn_mode
from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "golden"))
from weights import golden_state_dict  # noqa: E402


def golden_model(name):
    g = torch.load(ROOT / "tests" / "golden" / name)
    model = build_model("adfnet", g["n_colors"]).eval()
    model.load_state_dict(golden_state_dict(model.state_dict(), g["seed"]))
    return model, g


def run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"noisy": x.numpy()})[0]


def test_auto_mode_follows_what_onnxruntime_runs():
    # onnxruntime 1.32 implements DeformConv on the CPU; gridsample exists for runtimes that do not
    expected = "deformconv" if onnxruntime_has_deformconv() else "gridsample"
    assert resolve_dcn_mode("auto") == expected
    with pytest.raises(ValueError, match="--dcn must be one of"):
        resolve_dcn_mode("fast")


@pytest.mark.parametrize(
    "golden, mode", [("adfnet_rgb_seed0.pt", "deformconv"), ("adfnet_gray_seed0.pt", "gridsample")]
)
def test_onnx_matches_the_official_golden_output(tmp_path, golden, mode):
    model, g = golden_model(golden)
    path = tmp_path / "adfnet.onnx"
    assert export_onnx(model, path, g["n_colors"], mode) == mode
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    ops = {node.op_type for node in proto.graph.node}
    assert {node.domain for node in proto.graph.node} <= {""}  # standard operators only
    assert proto.opset_import[0].version == 19
    assert ("DeformConv" in ops) == (mode == "deformconv") and ("GridSample" in ops) == (mode == "gridsample")
    assert "Col2Im" not in ops and not any("adfnet" in op or "deform_conv2d" in op for op in ops)
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    assert np.abs(run(path, g["input"]) - g["output"].numpy()).max() < 1e-4
    # dynamic height and width: another size (traced at 64x64) against PyTorch
    x = torch.rand(2, g["n_colors"], 40, 56)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(run(path, x) - ref).max() < 1e-4


def test_safetensors_round_trip_and_loading(tmp_path):
    model = build_model("adfnet", 1)
    path = tmp_path / "w.safetensors"
    export_safetensors(model, path, "adfnet", 1)
    again = load_weights(build_model("adfnet", 1), path)
    for (k, a), (k2, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"model": "adfnet", "n_colors": "1"}
    with pytest.raises(ValueError, match="n_colors=1"):  # strict loading still explains mismatches
        load_weights(build_model("adfnet", 3), path)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="cannot read .* as a safetensors file"):
        load_weights(build_model("adfnet", 1), broken)


def test_export_command_writes_safetensors_from_a_checkpoint(tmp_path, capsys):
    model = build_model("adfnet", 3)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "official.pth")
    out = tmp_path / "adfnet.safetensors"
    assert main(["--weights", str(tmp_path / "official.pth"), "--safetensors", str(out)]) == 0
    assert torch.equal(load_weights(build_model("adfnet", 3), out).tail.weight, model.tail.weight)
    assert main(["--weights", str(tmp_path / "official.pth")]) == 2
    assert "nothing to do" in capsys.readouterr().err
