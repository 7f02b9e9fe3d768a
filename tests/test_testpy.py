"""test.py end to end (real ADFNet, tiny images) and adfnet.evaluation with a small stand-in model."""

import csv
import warnings

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from adfnet.cli import test as test_cli
from adfnet.data.io import read_image
from adfnet.data.noise import build_noise
from adfnet.evaluation import PUBLISHED_ABLATIONS, EvalOptions, evaluate_set, published_for, set_key
from adfnet.imaging import image_to_tensor
from adfnet.inference import denoise
from adfnet.metrics import psnr, ssim
from conftest import ROOT


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from adfnet.checkpoint import weights_with_architecture
    from adfnet.models import build_model

    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    torch.save(build_model("adfnet", n_colors=1).state_dict(), folder / "gray_n25.pt")
    torch.save(build_model("adfnet", n_colors=3).state_dict(), folder / "rgb.pt")
    no_mfi = weights_with_architecture(build_model("adfnet", n_colors=3, mfi=False))  # the record says "no MFI"
    torch.save(no_mfi, folder / "rgb_no_mfi.pt")
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
    code = test_cli.main(
        [
            "--n_colors",
            "1",
            "--weights",
            str(checkpoints / "gray_n{sigma}.pt"),
            "--input_dir",
            str(sets),
            str(empty),
            "--test_noiseL",
            "25",
            "50",
            "--result_dir",
            str(tmp_path / "res"),
            "--save_images",
            "--chop",
            "--cpu",
            "--dcn_backend",
            "torchvision",
            "--limit",
            "4",
        ]
    )
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
    gray_as_rgb = ["--weights", str(checkpoints / "gray_n25.pt"), "--n_colors", "3"]  # no record: the keys tell
    assert test_cli.main([*gray_as_rgb, *common]) == 1
    assert "cannot use checkpoint" in capsys.readouterr().out
    assert test_cli.main(["--weights", str(checkpoints / "rgb.pt"), "--dcn_backend", "nope", *common]) == 1
    assert "nope" in capsys.readouterr().err
    for bad in (["--model", "unet"], ["--limit", "0"], ["--n_colors", "2"]):
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
    opts = EvalOptions(n_colors=3, chop=chop, ensemble=ensemble, save_images=True)
    result = evaluate_set(model, [folder / "x.tif"], "in", build_noise("awgn", (30.0,)), tmp_path / "out", opts)
    clean = image_to_tensor(read_image(folder / "x.tif", 3))
    torch.manual_seed(20)  # the official RGB test: reseed, CPU FloatTensor noise
    noisy = clean + torch.FloatTensor(1, 3, 61, 90).normal_(0, 30 / 255)
    out = denoise(model, noisy, "chop" if chop else "whole", ensemble)
    ((name, p, s, _, noisy_p, noisy_s),) = result.rows
    assert name == "x.tif" and p == pytest.approx(psnr(out, clean), abs=1e-9) and s == pytest.approx(ssim(out, clean))
    # the noisy input's scores (what the table prints as "noisy input"), clamped as any output is
    assert noisy_p == pytest.approx(psnr(noisy.clamp(0, 1), clean), abs=1e-9)
    assert noisy_s == pytest.approx(ssim(noisy.clamp(0, 1), clean))
    assert abs(noisy_p - 20 * np.log10(255 / 30)) < 1.0  # AWGN of sigma 30: 18.6 dB, a little more after clipping
    assert (tmp_path / "out" / "x.tif").is_file() and (tmp_path / "out" / "results.csv").is_file()


def test_published_lookup():
    assert set_key("Kodak24", 3) == "kodak24" and set_key("BSD68", 3) == "cbsd68" and set_key("BSD68", 1) == "bsd68"
    assert published_for("adfnet", 3, "McMaster", 50.0).psnr == pytest.approx(29.959591)
    assert published_for("adfnet_l", 3, "kodak", 50).psnr == 29.92
    assert published_for("adfnet", 3, "McMaster", 25) is None
    assert published_for("adfnet", 1, "Urban100", 15).ssim == pytest.approx(0.937789)


def test_ablation_flags_reach_the_builder():
    """train.py, test.py and adfnet.complexity share the model flags; each selects its Table 4 variant."""
    from adfnet.cli.flags import model_options
    from adfnet.engine.options import parse_options
    from adfnet.models import DCB, MCB, MFI, build_model

    argv = ["--placement", "everywhere", "--no_mdcb", "--no_mfi"]
    for args in (parse_options(argv), test_cli.parse_args([*argv, "--weights", "w.pt"])):
        assert model_options(args) == {"placement": "everywhere", "dcb": True, "mdcb": False, "mfi": False}
        net = build_model("adfnet", 1, **model_options(args))
        assert isinstance(net.fe1.fe[0], DCB) and isinstance(net.dfe1.fe[1], MCB)
        assert not any(isinstance(m, MFI) for m in net.modules())
    assert model_options(parse_options([])) == {"placement": "decoder", "dcb": True, "mdcb": True, "mfi": True}


class PositionStamp(nn.Module):
    """Adds a ramp over the positions of its own input, so the result depends on where the chop windows sit."""

    def forward(self, x):
        h, w = x.shape[-2:]
        return x + 0.05 * torch.arange(h * w, dtype=x.dtype).reshape(h, w) / (h * w)


def test_evaluate_set_gray_chops_unpadded(tmp_path):
    """The official gray test chopped the unpadded image; the colour test padded first."""
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "g.png"), cv2.imread(str(ROOT / "datasets/testsets/Set12/01.png"), 0)[:61, :90])
    model = PositionStamp()
    awgn25, opts = build_noise("awgn", (25.0,)), EvalOptions(n_colors=1, chop=True)
    result = evaluate_set(model, [folder / "g.png"], "in", awgn25, tmp_path / "out", opts)
    clean = image_to_tensor(read_image(folder / "g.png", 1))
    torch.manual_seed(1)
    noisy = clean + torch.FloatTensor(1, 1, 61, 90).normal_(0, 25 / 255)
    unpadded = psnr(denoise(model, noisy, "chop", pad_before_chop=False), clean)
    padded_first = psnr(denoise(model, noisy, "chop", pad_before_chop=True), clean)
    assert unpadded != pytest.approx(padded_first, abs=1e-3)
    assert result.rows[0][1] == pytest.approx(unpadded, abs=1e-9)


def test_published_ablations():
    """Table 4 variants are compared with their own row; unpublished combinations with nothing."""
    no_mfi = {"placement": "decoder", "dcb": True, "mdcb": True, "mfi": False}
    pub = published_for("adfnet", 3, "Kodak24", 50, no_mfi)
    assert pub.psnr == 29.77 and pub.ssim is None and "Table 4" in pub.source and "without MFI" in pub.source
    assert published_for("adfnet", 3, "BSD68", 50, no_mfi).psnr == 28.40  # colour BSD68 = CBSD68
    expected = {
        ("decoder", False, False, True): (29.61, 28.33),
        ("decoder", False, True, True): (29.69, 28.36),
        ("decoder", True, False, True): (29.66, 28.37),
        ("decoder", True, True, False): (29.77, 28.40),
        ("everywhere", True, True, True): (29.77, 28.38),
        ("encoder", True, True, True): (29.73, 28.38),
    }
    for (placement, dcb, mdcb, mfi), (kodak, cbsd) in expected.items():
        options = {"placement": placement, "dcb": dcb, "mdcb": mdcb, "mfi": mfi}
        assert published_for("adfnet", 3, "Kodak24", 50, options).psnr == kodak
        assert published_for("adfnet", 3, "CBSD68", 50.0, options).psnr == cbsd
    assert set(PUBLISHED_ABLATIONS) == set(expected)
    # ADFNet itself ("only in the decoder", 29.81 / 28.43 in Table 4) keeps the official log's digits
    for options in (None, {}, {"placement": "decoder", "dcb": True, "mdcb": True, "mfi": True}):
        assert published_for("adfnet", 3, "Kodak24", 50, options).psnr == pytest.approx(29.805204)
    assert published_for("adfnet", 3, "CBSD68", 50, {"mfi": True}).psnr == pytest.approx(28.425820)
    for args in [
        ("adfnet", 3, "McMaster", 50, no_mfi),
        ("adfnet", 3, "Kodak24", 30, no_mfi),
        ("adfnet", 1, "BSD68", 50, no_mfi),
        ("adfnet_l", 3, "Kodak24", 50, no_mfi),
        ("adfnet", 3, "Kodak24", 50, {"placement": "encoder", "mfi": False}),
        ("adfnet", 3, "Kodak24", 50, {"dcb": False, "mfi": False}),
    ]:
        assert published_for(*args) is None, args


def _write_gray_set(folder, n=1):
    folder.mkdir(parents=True)
    src = cv2.imread(str(ROOT / "datasets/testsets/Set12/01.png"), cv2.IMREAD_UNCHANGED)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:02d}.png"), src[40 * i : 40 * i + 40, :48])
    return folder


def test_ablation_run_shows_table4_and_caveats(tmp_path, checkpoints, capsys):
    sets = _write_gray_set(tmp_path / "Kodak24", n=2)
    code = test_cli.main(
        [
            "--weights",
            str(checkpoints / "rgb_no_mfi.pt"),
            "--no_mfi",
            "--input_dir",
            str(sets),
            "--chop",
            "--ensemble",
            "--limit",
            "1",
            "--result_dir",
            str(tmp_path / "res"),
            "--cpu",
            "--dcn_backend",
            "torchvision",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "29.77" in out and "paper Table 4, without MFI" in out
    assert "29.805" not in out and "29.81" not in out  # not ADFNet's number
    note = next(line for line in out.splitlines() if "not like-for-like" in line)
    assert "--limit" in note and "--ensemble" in note and "--chop" not in note


def test_gray_caveat_without_chop(tmp_path, checkpoints, capsys):
    sets = _write_gray_set(tmp_path / "Set12")
    common = [
        "--n_colors",
        "1",
        "--weights",
        str(checkpoints / "gray_n25.pt"),
        "--input_dir",
        str(sets),
        "--test_noiseL",
        "25",
        "--result_dir",
        str(tmp_path / "res"),
        "--cpu",
        "--dcn_backend",
        "torchvision",
    ]
    assert test_cli.main(common) == 0
    out = capsys.readouterr().out
    assert "30.946" in out and "not like-for-like" in out and "gray without --chop" in out
    assert test_cli.main([*common, "--chop"]) == 0
    assert "not like-for-like" not in capsys.readouterr().out  # full set, chopped, no ensemble


def test_success_exit_code_and_awkward_inputs_for_rgb(tmp_path, checkpoints, capsys):
    """16-bit and gray files given to the RGB model: warned about, processed, scored; exit code 0."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    rgb = cv2.imread(str(ROOT / "datasets/testsets/McMaster/1.tif"))[:40, :48]
    cv2.imwrite(str(folder / "a_rgb.png"), rgb)
    cv2.imwrite(str(folder / "b_16bit.png"), rgb.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "c_gray.png"), cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY))
    assert cv2.imread(str(folder / "b_16bit.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    code = test_cli.main(
        [
            "--weights",
            str(checkpoints / "rgb.pt"),
            "--input_dir",
            str(folder),
            "--test_noiseL",
            "30",
            "--result_dir",
            str(tmp_path / "res"),
            "--save_images",
            "--cpu",
            "--dcn_backend",
            "torchvision",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0 and "failure" not in captured.err
    assert "b_16bit.png: 16-bit image scaled" in captured.out
    assert "c_gray.png: gray image given to an RGB model" in captured.out
    run = tmp_path / "res" / "mixed" / "sigma30"
    with open(run / "results.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header == ["image", "sigma", "psnr", "ssim", "seconds", "noise", "protocol", "noisy_psnr", "noisy_ssim"]
    rows = _read_csv(run / "results.csv")
    assert [r["image"] for r in rows] == ["a_rgb.png", "b_16bit.png", "c_gray.png"]
    for row in rows:
        assert row["sigma"] == "30" and row["noise"] == "awgn(sigma=30)" and row["protocol"] == "adfnet"
        assert 0 < float(row["psnr"]) < 100 and 0 < float(row["ssim"]) <= 1
        assert float(row["seconds"]) > 0
        assert read_image(run / row["image"], 3).shape == (40, 48, 3)
    # 16-bit x257 holds the same 8-bit values, the noise is reseeded per image: the same scores
    assert rows[1]["psnr"] == rows[0]["psnr"] and rows[1]["ssim"] == rows[0]["ssim"]


@pytest.mark.parametrize("second", ["Set12", "set12"])
def test_input_dirs_with_the_same_name_are_refused(tmp_path, checkpoints, capsys, second):
    first = _write_gray_set(tmp_path / "a" / "Set12")
    other = _write_gray_set(tmp_path / "b" / second)
    code = test_cli.main(
        [
            "--n_colors",
            "1",
            "--weights",
            str(checkpoints / "gray_n25.pt"),
            "--input_dir",
            str(first),
            str(other),
            "--test_noiseL",
            "25",
            "--result_dir",
            str(tmp_path / "res"),
            "--cpu",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "same name" in err and str(first) in err and str(other) in err
    assert not (tmp_path / "res").exists()  # refused before any work


def test_model_and_colours_are_read_from_the_checkpoint(tmp_path, checkpoints, capsys):
    """adfnet-test reads what adfnet-denoise reads: the architecture record (our checkpoints; the demo's
    gray weights need no --n_colors) or the first convolution (official checkpoints); flags that contradict
    the record are refused, naming the flag and the record's value."""
    from adfnet.checkpoint import weights_with_architecture
    from adfnet.models import build_model

    recorded = tmp_path / "gray_record.pt"
    torch.save(weights_with_architecture(build_model("adfnet", n_colors=1)), recorded)
    sets = tmp_path / "Set12"
    sets.mkdir()
    cv2.imwrite(
        str(sets / "01.png"), cv2.imread(str(ROOT / "datasets/testsets/Set12/01.png"), cv2.IMREAD_UNCHANGED)[:32, :40]
    )
    common = ["--input_dir", str(sets), "--test_noiseL", "25", "--cpu", "--dcn_backend", "torchvision"]
    for weights in (recorded, checkpoints / "gray_n25.pt"):  # with a record; official layout (no record)
        assert test_cli.main(["--weights", str(weights), *common, "--result_dir", str(tmp_path / weights.stem)]) == 0
        assert "Summary (adfnet, n_colors 1," in capsys.readouterr().out
    refused = tmp_path / "refused"
    for flag, value, record in (("--n_colors", "3", "n_colors=1"), ("--model", "adfnet_l", "model='adfnet'")):
        assert test_cli.main(["--weights", str(recorded), flag, value, *common, "--result_dir", str(refused)]) == 1
        err = capsys.readouterr().err
        assert f"{flag} {value} contradicts the checkpoint's architecture record ({record})" in err, err
        assert str(recorded) in err and "Traceback" not in err
    assert not refused.exists()  # refused before anything was written
