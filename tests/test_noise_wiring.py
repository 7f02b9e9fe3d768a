"""The noise models in the command lines: train.py / test.py --noise, per-image test seeds, --save_noisy, the
DBSN reference numbers, and AWGN staying bit-identical to the official noise."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from adfnet.cli import test as test_cli
from adfnet.data.datasets import SyntheticNoiseTrain
from adfnet.data.io import read_image, save_image
from adfnet.data.noise import add_awgn, build_noise
from adfnet.engine.options import parse_options
from adfnet.evaluation import EvalOptions, evaluate_set
from adfnet.evaluation.published import reference_for
from adfnet.imaging import image_to_tensor
from adfnet.models import build_model
from conftest import MCMASTER, SET12, TRAIN_RGB


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two 48 x 40 crops per task, in folders named like the DBSN test sets."""
    root = tmp_path_factory.mktemp("sets")
    for name in ("01.png", "02.png"):
        save_image(root / "BSD68" / name, read_image(SET12 / name, 1)[:48, :40])
    for name in ("1.tif", "2.tif"):
        save_image(root / "CBSD68" / f"{Path(name).stem}.png", read_image(MCMASTER / name, 3)[:48, :40])
    return {"gray": root / "BSD68", "rgb": root / "CBSD68"}


def test_evaluate_set_awgn_is_the_official_noise_and_saved_exactly(tmp_path, small_sets):
    """No --noise: the official AWGN (add_awgn, reseeded per image); --save_noisy npy holds it bit for bit."""
    files = sorted(small_sets["rgb"].iterdir())
    opts = EvalOptions(n_colors=3, save_noisy="npy")
    result = evaluate_set(identity, files, "CBSD68", build_noise("awgn", (25.0,)), tmp_path / "out", opts)
    for path in files:
        clean = image_to_tensor(read_image(path, 3))
        expected = add_awgn(clean, 25.0, seed=20)[0].permute(1, 2, 0).numpy()
        saved = np.load(tmp_path / "out" / "noisy" / f"{path.stem}.npy")
        assert saved.dtype == np.float32 and np.array_equal(saved, expected)
        assert saved.min() < 0 or saved.max() > 1  # unclipped
    rows = read_rows(tmp_path / "out" / "results.csv")
    assert [r["noise"] for r in rows] == ["awgn(sigma=25)"] * 2 and [r["sigma"] for r in rows] == ["25", "25"]
    assert result.noise.name == "awgn"


def test_test_noise_is_per_image_not_per_order(tmp_path, small_sets):
    """hg test noise of an image is the same whatever images come before it (fresh seed per image)."""
    files = sorted(small_sets["gray"].iterdir())
    hg = build_noise("hg", (40, 10))
    opts = EvalOptions(n_colors=1, save_noisy="npy", seed=7)
    evaluate_set(identity, files, "BSD68", hg, tmp_path / "both", opts)
    evaluate_set(identity, files[::-1][:1], "BSD68", hg, tmp_path / "last", opts)
    last = files[-1].stem
    a, b = (np.load(tmp_path / d / "noisy" / f"{last}.npy") for d in ("both", "last"))
    assert np.array_equal(a, b)
    clean = image_to_tensor(read_image(files[-1], 1))
    assert np.array_equal(a[..., 0], hg(clean, seed=7)[0, 0].numpy())
    # and it is hg: the residual variance follows sigma_s^2 x + sigma_c^2 (on 0-1 scale)
    x = clean[0, 0].numpy()
    resid = a[..., 0] - x
    predicted = ((40 / 255) ** 2 * x + (10 / 255) ** 2).mean()
    assert float((resid**2).mean()) == pytest.approx(predicted, rel=0.1)


def test_save_noisy_png16_encoding(tmp_path, small_sets):
    """png16: clipped to [0, 1], round(65535 x), RGB stored as a colour PNG."""
    path = sorted(small_sets["rgb"].iterdir())[0]
    opts = EvalOptions(n_colors=3, save_noisy="png16")
    evaluate_set(identity, [path], "CBSD68", build_noise("awgn", (50.0,)), tmp_path, opts)
    stored = cv2.imread(str(tmp_path / "noisy" / f"{path.stem}.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    noisy = add_awgn(image_to_tensor(read_image(path, 3)), 50.0, seed=20)[0].permute(1, 2, 0).numpy()
    assert stored.dtype == np.uint16
    assert np.array_equal(stored, np.round(np.clip(noisy, 0, 1) * 65535).astype(np.uint16))
    assert stored.max() == 65535 and stored.min() == 0  # sigma 50 clips somewhere


def test_testpy_noise_flags(tmp_path, small_sets, capsys, one_thread):
    """test.py --noise hg: a folder named by the model, the model in results.csv / summary.csv and the
    tables, DBSN's N2C number beside ours; --noise awgn --noise_params 25 is --test_noiseL 25."""
    torch.manual_seed(0)
    weights = tmp_path / "gray.pt"
    torch.save(build_model("adfnet", 1).state_dict(), weights)
    common = ["--n_colors", "1", "--weights", str(weights), "--input_dir", str(small_sets["gray"]), "--cpu"]
    assert (
        test_cli.main([*common, "--noise", "hg", "--noise_params", "40", "10", "--result_dir", str(tmp_path / "a")])
        == 0
    )
    out = capsys.readouterr().out
    assert "noise hg(sigma_s=40, sigma_c=10)" in out and "30.1600" in out and "DBSN Table 1 N2C" in out
    rows = read_rows(tmp_path / "a" / "BSD68" / "hg_40_10" / "results.csv")
    assert len(rows) == 2 and all(r["noise"] == "hg(sigma_s=40, sigma_c=10)" and r["sigma"] == "" for r in rows)
    summary = read_rows(tmp_path / "a" / "summary.csv")
    assert summary[0]["noise"] == "hg(sigma_s=40, sigma_c=10)" and float(summary[0]["published_psnr"]) == 30.16

    assert test_cli.main([*common, "--noise", "awgn", "--noise_params", "25", "--result_dir", str(tmp_path / "b")]) == 0
    assert test_cli.main([*common, "--test_noiseL", "25", "--result_dir", str(tmp_path / "c")]) == 0
    b, c = ((tmp_path / d / "BSD68" / "sigma25" / "results.csv").read_text().splitlines() for d in "bc")
    assert [r.split(",")[:4] for r in b] == [r.split(",")[:4] for r in c]
    out = capsys.readouterr().out
    assert "29.4100" in out  # DBSN's gray BSD68 sigma 25 N2C beside ours


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--noise_params", "40", "10"], "--noise_params needs --noise"),
        (["--noise", "hg", "--noise_params", "40"], "takes 2 parameter"),
        (["--noise", "hg", "--noise_params", "40", "10", "--weights", "w_{sigma}.pt"], "placeholder"),
    ],
)
def test_testpy_noise_mistakes(argv, message, capsys):
    args = ["--weights", "w.pt", *argv] if "--weights" not in argv else argv
    with pytest.raises(SystemExit) as exit_info:
        test_cli.parse_args(args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_train_options_build_the_noise(capsys):
    args = parse_options(["--n_colors", "3", "--noise", "hg", "--noise_params", "40", "10"])
    assert args.noise_model == build_noise("hg", (40, 10))
    assert parse_options(["--noiseL", "25"]).noise_model == build_noise("awgn", (25,))
    assert parse_options(["--noise", "awgn", "--noiseL", "15"]).noise_model == build_noise("awgn", (15,))
    raw = parse_options(["--raw"])
    assert raw.n_colors == 4 and raw.noise_model == build_noise("poisson_gaussian")
    assert parse_options(["--n_colors", "4"]).raw
    for argv, message in (
        (["--noise", "mg", "--n_colors", "1"], "needs --n_colors 3"),
        (["--noise_params", "3"], "--noise_params needs --noise"),
        (["--raw", "--patch_size", "24"], "multiple of 16"),
        (["--noise", "poisson_gaussian", "--noise_params", "1", "2", "3"], "takes 0 or 1 or 2"),
    ):
        with pytest.raises(SystemExit):
            parse_options(argv)
        assert message in capsys.readouterr().err


def test_training_samples_use_the_noise_model():
    """A training sample's noise is the chosen model's: mg's residual correlates the colour channels."""
    mg = build_noise("mg")
    ds = SyntheticNoiseTrain(sorted(TRAIN_RGB.iterdir())[:2], 3, 64, mg, length=4, seed=2)
    noisy, clean = ds[1]
    resid = (noisy - clean).reshape(3, -1).double()
    corr = torch.corrcoef(resid)
    assert corr[0, 1].abs() > 0.2 or corr[0, 2].abs() > 0.2 or corr[1, 2].abs() > 0.2  # AWGN's would be ~0
    assert torch.equal(ds[1][0], noisy)  # reproducible per (seed, epoch, index)


def test_dbsn_references():
    assert reference_for(1, "BSD68", "awgn", (15.0,)).psnr == 31.86
    assert reference_for(1, "BSD68", "awgn", (50.0,)).psnr == 26.53
    assert reference_for(1, "BSD68", "hg", (40.0, 10.0)).psnr == 30.16
    assert reference_for(3, "CBSD68", "awgn", (25.0,)).psnr == 31.40
    assert reference_for(3, "BSD68", "hg", (40.0, 10.0)).psnr == 32.10  # colour BSD68 means CBSD68
    assert reference_for(3, "CBSD68", "mg", (75.0,)).psnr == 26.89
    assert "hg_dbsn" in reference_for(3, "CBSD68", "hg", (40.0, 10.0)).source  # the caveat is stated
    assert reference_for(1, "Set12", "awgn", (25.0,)) is None and reference_for(3, "CBSD68", "hg", (30.0, 10.0)) is None


def test_noise_in_a_recipe(tmp_path):
    recipe = tmp_path / "hg.yml"
    recipe.write_text("n_colors: 1\nnoise: hg\nnoise_params: [40, 10]\n")
    assert parse_options(["--config", str(recipe)]).noise_model == build_noise("hg", (40, 10))
    recipe.write_text("noise: hg\nnoise_params: [40, -1]\n")
    with pytest.raises(SystemExit):
        parse_options(["--config", str(recipe)])
