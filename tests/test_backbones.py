"""The Fig. 7 backbones (DnCNN + DConv, RDN + MDCB), docs/PLUGIN.md's example and ``scripts/fig7.sh --quick``.

Parameter counts are checked against hand counts written out below from the layer lists of the
DnCNN and RDN papers and the ADFNet block definitions (docs/PLUGIN.md, and the specification it quotes).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import dcn
from adfnet.checkpoint import load_weights, weights_with_architecture
from adfnet.cli.flags import model_options
from adfnet.engine.options import parse_options
from adfnet.models import MDCB, RDB, DConv, DnCNN, build_model
from adfnet.models import blocks as adfnet_blocks
from conftest import MCMASTER, ROOT, subprocess_env


# ---------------------------------------------------------------- hand counts
def dconv_params(c: int) -> int:
    # SEKG: depthwise 3x3 (9c + c bias) + Conv1d(1, 1, 3) (3 + 1); AFG 1x1 c -> 9c (9c^2 + 9c)
    return 9 * c + c + 4 + 9 * c * c + 9 * c


def dncnn_params(c0: int, depth: int, c: int, dconv: bool) -> int:
    first = 9 * c0 * c + c  # conv + bias
    middle = (depth - 2) * (9 * c * c + 2 * c)  # conv without bias (BN follows) + BN weight and bias
    last = 9 * c * c0 + c0
    swap = dconv_params(c) - 9 * c * c if dconv else 0  # the middle conv becomes a DConv, its BN stays
    return first + middle + last + swap


def rdb_params(g0: int, g: int, layers: int) -> int:
    dense = sum(9 * (g0 + i * g) * g + g for i in range(layers))
    return dense + (g0 + layers * g) * g0 + g0  # + local feature fusion 1x1


def mdcb_params(c: int, offset: int = 32, groups: int = 8) -> int:
    offset_block = 9 * c * offset + offset
    dcn_main = 9 * c * c + c
    offset_mask = 9 * offset * (3 * groups * 9) + 3 * groups * 9
    sekg = 9 * c + c + 4
    kernels = c * 9 * c + 9 * c  # 1x1 c -> 9 mid, mid = c
    branches = 3 * (9 * c * c + c)
    fusion = 4 * c * c + c
    return offset_block + dcn_main + offset_mask + sekg + kernels + branches + fusion


def rdn_params(c0: int, blocks: int, g0: int, g: int, layers: int, mdcb: bool) -> int:
    sfe = 9 * c0 * g0 + g0 + 9 * g0 * g0 + g0
    body = blocks * rdb_params(g0, g, layers)
    if mdcb:
        body += 3 * mdcb_params(g0) - rdb_params(g0, g, layers)
    gff = blocks * g0 * g0 + g0 + 9 * g0 * g0 + g0
    return sfe + body + gff + 9 * g0 * c0 + c0


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("depth", [3, 5, 10, 15])
@pytest.mark.parametrize("channels", [16, 32])
@pytest.mark.parametrize("dconv", [False, True])
def test_dncnn_parameters_match_hand_count(depth, channels, dconv):
    assert count(build_model("dncnn", 3, depth=depth, channels=channels, dconv=dconv)) == dncnn_params(
        3, depth, channels, dconv
    )
    assert count(build_model("dncnn", 1, depth=depth, channels=channels, dconv=dconv)) == dncnn_params(
        1, depth, channels, dconv
    )


def test_hand_count_of_a_known_size():
    # the DnCNN paper's colour model: 17 layers, 64 channels (558,403 with BN affine parameters, no middle bias)
    assert dncnn_params(3, 17, 64, False) == 558_403 == count(build_model("dncnn", 3))


@pytest.mark.parametrize("blocks", [1, 3, 6])
@pytest.mark.parametrize("channels,growth,layers", [(16, 16, 4), (32, 8, 3)])
@pytest.mark.parametrize("mdcb", [False, True])
def test_rdn_parameters_match_hand_count(blocks, channels, growth, layers, mdcb):
    net = build_model("rdn", 3, blocks=blocks, channels=channels, growth=growth, layers=layers, mdcb=mdcb)
    assert count(net) == rdn_params(3, blocks, channels, growth, layers, mdcb)


def test_block_hand_counts_match_the_adfnet_classes():
    assert count(DConv(24)) == dconv_params(24)
    assert count(MDCB(16)) == mdcb_params(16)
    assert count(RDB(16, 8, 3)) == rdb_params(16, 8, 3)


# ---------------------------------------------------------------- structure
@pytest.mark.parametrize("depth", [3, 5, 10, 15])
def test_dconv_sits_in_the_middle_layer(depth):
    net = build_model("dncnn", depth=depth, channels=16, dconv=True)
    assert len(net.layers) == depth
    middle = net.layers[depth // 2]
    assert type(middle[0]) is adfnet_blocks.DConv  # the ADFNet class itself, not a copy
    assert isinstance(middle[1], nn.BatchNorm2d) and isinstance(middle[2], nn.ReLU)
    assert [i for i, layer in enumerate(net.layers) if isinstance(layer[0], DConv)] == [depth // 2]
    assert sum(isinstance(m, DConv) for m in net.modules()) == 1
    # every other layer is a static 3x3 conv; BN on all but the first and last
    for i, layer in enumerate(net.layers):
        if i != depth // 2:
            assert isinstance(layer[0], nn.Conv2d) and layer[0].kernel_size == (3, 3)
        assert any(isinstance(m, nn.BatchNorm2d) for m in layer) == (0 < i < depth - 1)
    assert not any(isinstance(m, DConv) for m in build_model("dncnn", depth=depth, channels=16).modules())


@pytest.mark.parametrize("blocks", [1, 3, 6, 9])
def test_three_mdcbs_replace_the_middle_rdb(blocks):
    net = build_model("rdn", blocks=blocks, channels=16, mdcb=True)
    assert len(net.rdbs) == blocks
    middle = net.rdbs[blocks // 2]
    assert isinstance(middle, nn.Sequential) and [type(m) for m in middle] == [adfnet_blocks.MDCB] * 3
    assert all(isinstance(b, RDB) for i, b in enumerate(net.rdbs) if i != blocks // 2)
    assert sum(isinstance(m, MDCB) for m in net.modules()) == 3
    assert net.gff[0].in_channels == blocks * 16  # the three MDCBs stand for one block in the fusion
    # each MDCB predicts its offsets from its own input through its own OffsetBlock (3x3 conv to 32 + LReLU)
    for m in middle:
        assert m.offset.offset_conv1.in_channels == 16 and m.offset.offset_conv1.out_channels == 32


@pytest.mark.parametrize(
    "name,options",
    [("dncnn", {"depth": 5, "channels": 16, "dconv": True}), ("rdn", {"blocks": 3, "channels": 8, "mdcb": True})],
)
@pytest.mark.parametrize("n_colors", [1, 3])
def test_shapes_any_size(name, options, n_colors):
    net = build_model(name, n_colors, **options).eval()
    x = torch.rand(2, n_colors, 19, 26)  # no size multiple needed: both are fully convolutional at one scale
    with torch.no_grad():
        assert net(x).shape == x.shape


def test_residual_learning_zero_last_layer_returns_the_input():
    x = torch.rand(2, 3, 16, 20)
    dncnn = build_model("dncnn", depth=5, channels=16, dconv=True).eval()
    nn.init.zeros_(dncnn.layers[-1][0].weight)
    nn.init.zeros_(dncnn.layers[-1][0].bias)
    rdn = build_model("rdn", blocks=3, channels=8, mdcb=True).eval()
    nn.init.zeros_(rdn.tail.weight)
    nn.init.zeros_(rdn.tail.bias)
    with torch.no_grad():
        assert torch.equal(dncnn(x), x)
        assert torch.equal(rdn(x), x)
        # and with the last layer back, the output is not the input (the test above can fail)
        assert not torch.equal(build_model("dncnn", depth=5, channels=16).eval()(x), x)


@pytest.mark.parametrize("backend", dcn.available_backends())
def test_a_training_step_runs_on_every_dcn_backend(backend):
    torch.manual_seed(0)
    for name, options in (
        ("rdn", {"blocks": 3, "channels": 8, "mdcb": True}),
        ("dncnn", {"depth": 5, "channels": 8, "dconv": True}),
    ):
        net = build_model(name, **options)
        before = {k: v.clone() for k, v in net.state_dict().items()}
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        noisy, clean = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
        with dcn.use_backend(backend):
            loss = ((net(noisy) - clean) ** 2).sum() / 4
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert math.isfinite(loss.item())
        assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
        plugin = net.rdbs[1][0].generate_kernel[0] if name == "rdn" else net.layers[2][0]
        assert all(p.grad is not None for p in plugin.parameters())  # the plug-in is trained
        changed = [k for k, v in net.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
        assert changed


def test_backbone_outputs_agree_across_dcn_backends():
    torch.manual_seed(0)
    net = build_model("rdn", blocks=3, channels=8, mdcb=True).eval()
    with torch.no_grad():  # non-zero offsets so that the DCN really samples off the grid
        for m in net.modules():
            if isinstance(m, dcn.ModulatedDeformConvPack):
                m.conv_offset_mask.weight.normal_(0, 0.05)
    x = torch.rand(1, 3, 16, 16)
    outs = {}
    for backend in dcn.available_backends():
        with dcn.use_backend(backend), torch.no_grad():
            outs[backend] = net(x)
    ref = outs["reference"]  # the pure-PyTorch backend, always available
    for out in outs.values():
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- registration
def test_build_model_records_the_architecture_and_checks_it_on_load():
    net = build_model("DnCNN", depth=5, channels=16, dconv=True)
    assert net.spec.record() == {"model": "dncnn", "n_colors": 3, "depth": 5, "channels": 16, "dconv": True}
    assert build_model("rdn").spec.record() == {
        "model": "rdn", "n_colors": 3, "blocks": 6, "channels": 16, "growth": None, "layers": 4, "mdcb": False,
    }  # fmt: skip
    weights = weights_with_architecture(net)
    load_weights(build_model("dncnn", depth=5, channels=16, dconv=True), weights)
    with pytest.raises(ValueError):
        load_weights(build_model("dncnn", depth=5, channels=16), weights)
    with pytest.raises(ValueError, match="unknown model option.*placement"):
        build_model("dncnn", placement="decoder")
    with pytest.raises(ValueError, match="depth must be >= 3"):
        build_model("dncnn", depth=2)
    with pytest.raises(ValueError, match="divisible by 8"):
        build_model("rdn", channels=12, mdcb=True)


def test_train_options_pass_backbone_options_and_refuse_adfnet_ablations():
    args = parse_options(["--model", "dncnn", "--save", "x"])
    assert model_options(args) == {}
    config = dataclasses.replace(args, model_options={"depth": 7, "dconv": True})  # options without flags: data
    assert config.spec.options == {"depth": 7, "dconv": True}
    assert isinstance(config.spec.build(), DnCNN)
    with pytest.raises(ValueError, match="--no_mfi: ablation flags apply to ADFNet only, not to --model rdn"):
        model_options(parse_options(["--model", "rdn", "--no_mfi", "--save", "x"]))


# ---------------------------------------------------------------- docs/PLUGIN.md
def plugin_example() -> str:
    text = (ROOT / "docs/PLUGIN.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    marked = [b for b in blocks if b.startswith("# runnable example")]
    assert len(marked) == 1, "docs/PLUGIN.md must hold exactly one ```python block starting '# runnable example'"
    return marked[0]


def test_plugin_guide_example_runs(one_thread):
    namespace: dict = {}
    exec(compile(plugin_example(), "docs/PLUGIN.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert namespace["out"].shape == namespace["x"].shape


# ---------------------------------------------------------------- the experiment
def test_fig7_quick_end_to_end(tmp_path):
    sets = tmp_path / "testsets" / "Tiny"
    sets.mkdir(parents=True)
    image = np.asarray(Image.open(sorted(MCMASTER.iterdir())[0]).convert("RGB"))[:48, :40]
    Image.fromarray(image).save(sets / "crop.png")
    out = tmp_path / "out"
    cmd = ["bash", str(ROOT / "scripts/fig7.sh"), "--quick", "--data_root", str(sets.parent), "--sets", "Tiny"]
    cmd += ["--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / "fig7.png").stat().st_size > 10_000
    with open(out / "fig7_runs.csv") as fh:
        rows = list(csv.DictReader(fh))
    # 2 DnCNN depths + 2 RDN block counts, each baseline and enhanced, 2 seeds
    assert len(rows) == 16 and {r["variant"] for r in rows} == {"baseline", "dconv", "mdcb"}
    assert all(math.isfinite(float(r["psnr"])) and 5 < float(r["psnr"]) < 60 for r in rows)
    table = (out / "fig7_table.md").read_text()
    gains = re.findall(r"\| (-?\d+\.\d+) \+- (\d+\.\d+) \|\n", table)
    assert len(gains) == 4 and all(math.isfinite(float(m)) for m, _ in gains)

    # the gain column is enhanced - baseline of the same seed, averaged over seeds (sample std)
    def score(variant: str, seed: int) -> float:
        return json.loads((out / f"runs/dncnn_depth3_c8_{variant}_seed{seed}/score.json").read_text())["psnr"]["Tiny"]

    gains = [score("dconv", s) - score("baseline", s) for s in (1, 2)]
    assert f"| {np.mean(gains):.3f} +- {np.std(gains, ddof=1):.3f} |" in table
    # a second run reads the finished runs back instead of training again
    again = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=600)
    assert again.returncode == 0 and "epochs 1..4" not in again.stdout, again.stdout[-2000:]
    assert (out / "fig7_table.md").read_text() == table
    # ... but never mixes in runs made with other settings
    other = subprocess.run(
        [*cmd, "--iterations", "8"], capture_output=True, text=True, env=subprocess_env(), timeout=600
    )
    assert other.returncode == 1 and "other settings" in other.stderr and "Traceback" not in other.stderr


def test_fig7_missing_test_set_is_a_clear_error(tmp_path):
    cmd = ["bash", str(ROOT / "scripts/fig7.sh"), "--quick", "--data_root", str(tmp_path), "--out", str(tmp_path / "o")]
    run = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert run.returncode == 1
    assert "test set McMaster not found" in run.stderr and "--data_root" in run.stderr
    assert "Traceback" not in run.stderr
