"""test.py end to end (real ADFNet, tiny images) and adfnet.evaluation with a small stand-in model."""

import csv
import importlib.util
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from adfnet.data.io import image_to_tensor, read_image
from adfnet.evaluation import evaluate_set, published_for, set_key
from adfnet.inference import denoise
from adfnet.metrics import psnr, ssim

ROOT = Path(__file__).resolve().parents[1]
# load the repository's test.py under another name (the standard library has a `test` package)
_spec = importlib.util.spec_from_file_location("adfnet_test_cli", ROOT / "test.py")
test_cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_cli)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from adfnet.models import build_model

    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    torch.save(build_model("adfnet", n_colors=1).state_dict(), folder / "gray_n25.pt")
    torch.save(build_model("adfnet", n_colors=3).state_dict(), folder / "rgb.pt")
    return folder


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_gray_run_with_bad_inputs(tmp_path, checkpoints, capsys):
    # a folder named Set12 so the published numbers appear beside ours
    src = cv2.imread(str(ROOT / "datasets/testsets/Set12/01.png"), cv2.IMREAD_UNCHANGED)
    sets = tmp_path / "Set12"
    sets.mkdir()
    cv2.imwrite(str(sets / "01.png"), src[100:148, 60:113])  # 48 x 53: padded to 56 inside
    rgba = np.dstack([np.repeat(src[:40, :48, None], 3, axis=2), np.full((40, 48), 200, np.uint8)])
    cv2.imwrite(str(sets / "02_alpha.png"), rgba)
    (sets / "03_corrupt.png").write_bytes(b"not an image")
    cv2.imwrite(str(sets / "04_tiny.png"), src[:6, :6])
    cv2.imwrite(str(sets / "05_not_used.png"), src[:48, :48])  # beyond --limit
    empty = tmp_path / "empty"
    empty.mkdir()
    code = test_cli.main([
        "--n_colors", "1", "--weights", str(checkpoints / "gray_n{sigma}.pt"), "--input_dir", str(sets), str(empty),
        "--test_noiseL", "25", "50", "--result_dir", str(tmp_path / "res"), "--save_images", "--chop", "--cpu",
        "--dcn_backend", "torchvision", "--limit", "4",
    ])
    out = capsys.readouterr().out
    assert code == 1
    assert "no images in" in out and "empty" in out
    assert "03_corrupt.png" in out and "corrupt" in out
    assert "04_tiny.png is 6x6 px: too small" in out
    assert "alpha channel dropped" in out
    assert "only the first 4 of 5 images" in out
    assert "gray_n50.pt" in out and "does not exist" in out  # sigma 50 has no checkpoint
    assert "30.9458" in out and "official gray test log" in out  # published Set12 sigma 25 beside ours

    run = tmp_path / "res" / "Set12" / "sigma25"
    rows = _read_csv(run / "results.csv")
    assert [r["image"] for r in rows] == ["01.png", "02_alpha.png"]
    assert all(r["sigma"] == "25" for r in rows)
    for row in rows:
        saved = read_image(run / row["image"], 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the alpha warning, already checked above
            clean = read_image(sets / row["image"], 1)
        assert saved.shape == clean.shape
        assert float(row["psnr"]) == pytest.approx(psnr(saved, clean), abs=1e-5)
        assert float(row["ssim"]) == pytest.approx(ssim(saved, clean), abs=1e-5)
    summary = _read_csv(tmp_path / "res" / "summary.csv")
    assert summary[0]["set"] == "Set12" and summary[0]["failed"] == "2"
    assert float(summary[0]["published_psnr"]) == pytest.approx(30.945811)


def test_checkpoint_and_option_errors(tmp_path, checkpoints, capsys):
    folder = tmp_path / "set"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((16, 16, 3), np.uint8))
    common = ["--input_dir", str(folder), "--result_dir", str(tmp_path / "res"), "--cpu"]
    assert test_cli.main(["--weights", str(tmp_path / "missing.pt"), *common]) == 1
    assert "does not exist" in capsys.readouterr().out
    assert test_cli.main(["--weights", str(checkpoints / "gray_n25.pt"), *common]) == 1  # gray weights, RGB model
    assert "cannot use checkpoint" in capsys.readouterr().out
    assert test_cli.main(["--weights", str(checkpoints / "rgb.pt"), "--dcn_backend", "nope", *common]) == 1
    assert "nope" in capsys.readouterr().err
    for bad in (["--model", "dncnn"], ["--limit", "0"], ["--n_colors", "2"]):
        with pytest.raises(SystemExit):
            test_cli.parse_args(["--weights", "x.pt", *bad])


class LocalNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return x + 0.1 * self.conv(x)


@pytest.mark.parametrize("chop, ensemble", [(False, False), (True, True)])
def test_evaluate_set_follows_the_official_recipe(tmp_path, chop, ensemble):
    src = ROOT / "datasets/testsets/McMaster/1.tif"
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "x.tif"), cv2.imread(str(src))[:61, :90])
    model = LocalNet().eval()
    result = evaluate_set(model, [folder / "x.tif"], "in", 30.0, 3, torch.device("cpu"), tmp_path / "out",
                          chop=chop, ensemble=ensemble, save_images=True)
    clean = image_to_tensor(read_image(folder / "x.tif", 3))
    torch.manual_seed(20)  # the official RGB test: reseed, CPU FloatTensor noise
    noisy = clean + torch.FloatTensor(1, 3, 61, 90).normal_(0, 30 / 255)
    out = denoise(model, noisy, chop=chop, ensemble=ensemble)
    (name, p, s, _), = result.rows
    assert name == "x.tif" and p == pytest.approx(psnr(out, clean), abs=1e-9) and s == pytest.approx(ssim(out, clean))
    assert (tmp_path / "out" / "x.tif").is_file() and (tmp_path / "out" / "results.csv").is_file()


def test_published_lookup():
    assert set_key("Kodak24", 3) == "kodak24" and set_key("BSD68", 3) == "cbsd68" and set_key("BSD68", 1) == "bsd68"
    assert published_for("adfnet", 3, "McMaster", 50.0).psnr == pytest.approx(29.959591)
    assert published_for("adfnet_l", 3, "kodak", 50).psnr == 29.92
    assert published_for("adfnet", 3, "McMaster", 25) is None
    assert published_for("adfnet", 1, "Urban100", 15).ssim == pytest.approx(0.937789)


def test_ablation_flags_reach_the_builder():
    """train.py, test.py and adfnet.complexity share the model flags; each selects its Table 4 variant."""
    from adfnet.engine.options import parse_options
    from adfnet.models import DCB, MCB, MFI, build_model, model_options

    argv = ["--placement", "everywhere", "--no_mdcb", "--no_mfi"]
    for args in (parse_options(argv), test_cli.parse_args([*argv, "--weights", "w.pt"])):
        assert model_options(args) == {"placement": "everywhere", "dcb": True, "mdcb": False, "mfi": False}
        net = build_model("adfnet", 1, **model_options(args))
        assert isinstance(net.fe1.fe[0], DCB) and isinstance(net.dfe1.fe[1], MCB)
        assert not any(isinstance(m, MFI) for m in net.modules())
    assert model_options(parse_options([])) == {"placement": "decoder", "dcb": True, "mdcb": True, "mfi": True}
