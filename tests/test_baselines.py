"""``adfnet-test --model bm3d`` and the per-image callable adapter, against independent computations.

The reference side calls the ``bm3d`` package directly on the noise of our generator and scores with
numpy by hand; the harness side is the command line. ``bm3d`` is a test requirement (requirements.txt):
when it is missing this module fails to import, which fails CI rather than skipping.
"""

from __future__ import annotations

import csv
import math
import statistics
import subprocess
import sys
from pathlib import Path

import bm3d
import cv2
import numpy as np
import pytest
import torch

from adfnet.cli import test as testpy
from adfnet.data.noise import add_awgn, build_noise
from adfnet.evaluation import EvalOptions, evaluate_set
from adfnet.evaluation.denoiser import ImageFunction
from adfnet.models import MODEL_NAMES
from conftest import MCMASTER, ROOT, SET12, subprocess_env
from experiments.harness import merge_parts, write_report


def _crop(src: Path, dst: Path, size: tuple[int, int] = (40, 48)) -> np.ndarray:
    """A small 8-bit crop (RGB or gray, as on disk), written as PNG; returned as stored (RGB order)."""
    raw = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)[60 : 60 + size[0], 50 : 50 + size[1]]
    dst.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(dst), raw)
    return raw if raw.ndim == 2 else raw[..., ::-1]


def _psnr_8bit(out01: np.ndarray, clean8: np.ndarray) -> float:
    out8 = np.clip(np.rint(np.clip(out01, 0, 1) * 255.0), 0, 255)
    mse = np.mean((out8 - clean8.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / mse)


def _one_thread():
    """The package's default profile 'np' on one thread, as the harness runs it: bit-reproducible.

    (With its default "auto" threads, two calls on the same input differ by up to ~1e-4 per pixel.)
    """
    profile = bm3d.BM3DProfile()
    profile.num_threads = 1
    return profile


def _as_8bit(img01: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(img01, 0, 1) * 255.0).astype(np.uint8)


def _rows(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="") as fh:
        return list(csv.DictReader(fh))


def _noisy(clean8: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Our generator's noisy image (the official per-image reseed), as a float (H, W[, 3]) array."""
    hwc = clean8[..., None] if clean8.ndim == 2 else clean8
    t = torch.from_numpy(hwc.transpose(2, 0, 1).astype(np.float32) / 255.0)[None]
    noisy = add_awgn(t, sigma, seed=seed)[0].numpy().transpose(1, 2, 0)
    return noisy[..., 0] if clean8.ndim == 2 else noisy


@pytest.mark.parametrize(
    ("n_colors", "src", "sigma", "seed"),
    [(1, SET12 / "01.png", 25, 1), (3, MCMASTER / "1.tif", 50, 20)],
    ids=["bm3d-gray", "cbm3d-rgb"],
)
def test_bm3d_equals_the_package_on_our_noise(tmp_path, capsys, n_colors, src, sigma, seed):
    clean8 = _crop(src, tmp_path / "crop" / "img.png")
    code = testpy.main(
        ["--model", "BM3D", "--n_colors", str(n_colors), "--input_dir", str(tmp_path / "crop")]
        + ["--test_noiseL", str(sigma), "--result_dir", str(tmp_path / "out"), "--save_images"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    noisy = _noisy(clean8, sigma, seed).astype(np.float64)
    denoiser = bm3d.bm3d if n_colors == 1 else bm3d.bm3d_rgb
    direct = denoiser(noisy, sigma / 255, _one_thread())
    row = _rows(tmp_path / "out/crop" / f"sigma{sigma}" / "results.csv")[0]
    saved = cv2.imread(str(tmp_path / "out/crop" / f"sigma{sigma}" / "img.png"), cv2.IMREAD_UNCHANGED)
    saved = saved if n_colors == 1 else saved[..., ::-1]
    np.testing.assert_array_equal(saved, _as_8bit(direct))
    assert float(row["psnr"]) == pytest.approx(_psnr_8bit(direct, clean8), abs=2e-6)
    assert f"{float(row['psnr']):.4f}" in printed  # the same table as ADFNet's
    assert (tmp_path / "out/summary.csv").is_file()


def test_seeds_report_each_seed_and_the_spread(tmp_path, capsys):
    clean8 = _crop(SET12 / "02.png", tmp_path / "crop" / "img.png", (32, 32))
    argv = ["--model", "bm3d", "--n_colors", "1", "--input_dir", str(tmp_path / "crop"), "--test_noiseL", "30"]
    assert testpy.main(argv + ["--seeds", "3", "--result_dir", str(tmp_path / "out"), "--save_images"]) == 0
    printed = capsys.readouterr().out
    seeds = _rows(tmp_path / "out/seeds.csv")
    assert [r["seed"] for r in seeds] == ["1", "2", "3"]  # the official gray seed, then +1, +2
    by_hand = []
    for seed in (1, 2, 3):
        folder = tmp_path / f"out/seed{seed}/crop/sigma30"
        saved = cv2.imread(str(folder / "img.png"), cv2.IMREAD_UNCHANGED)
        direct = bm3d.bm3d(_noisy(clean8, 30, seed).astype(np.float64), 30 / 255, _one_thread())
        np.testing.assert_array_equal(saved, _as_8bit(direct))
        by_hand.append(_psnr_8bit(direct, clean8))
        assert float(_rows(folder / "results.csv")[0]["psnr"]) == pytest.approx(by_hand[-1], abs=2e-6)
    assert len(set(by_hand)) == 3  # the seeds really draw different noise
    spread_line = [line for line in printed.splitlines() if line.startswith("crop ")][-1]  # the spread table
    assert f"{statistics.fmean(by_hand):8.3f} {statistics.stdev(by_hand):6.3f}" in spread_line


@pytest.mark.parametrize("numpy_in", [True, False], ids=["numpy", "tensor"])
def test_identity_callable_scores_the_noisy_image(tmp_path, numpy_in):
    """Any per-image function is evaluated like a network: identity -> the PSNR of the noisy image itself."""
    clean8 = _crop(MCMASTER / "2.tif", tmp_path / "crop" / "img.png")
    calls = []

    def identity(x):
        calls.append(type(x))
        return x.copy() if numpy_in else x.clone()

    result = evaluate_set(
        ImageFunction(identity, numpy=numpy_in),
        [tmp_path / "crop" / "img.png"],
        "crop",
        build_noise("awgn", (40,)),
        tmp_path / "out",
        EvalOptions(n_colors=3),
    )
    assert calls == [np.ndarray if numpy_in else torch.Tensor]
    assert result.errors == []
    assert result.rows[0].psnr == pytest.approx(_psnr_8bit(_noisy(clean8, 40, 20), clean8), abs=1e-9)
    assert result.rows[0].noisy_psnr == result.rows[0].psnr  # the identity gains nothing over its input


def test_callable_of_wrong_size_is_an_error_not_a_score(tmp_path):
    _crop(SET12 / "03.png", tmp_path / "crop" / "img.png")
    fn = ImageFunction(lambda x: x[1:], name="shrinker")
    awgn15, opts = build_noise("awgn", (15,)), EvalOptions(n_colors=1)
    result = evaluate_set(fn, [tmp_path / "crop" / "img.png"], "crop", awgn15, tmp_path / "out", opts)
    assert result.rows == []
    assert "shrinker returned an image of shape (39, 48, 1) for an input of shape (40, 48, 1)" in result.errors[0]


def test_missing_bm3d_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "bm3d", None)  # import bm3d now raises ImportError
    code = testpy.main(["--model", "bm3d", "--input_dir", str(MCMASTER), "--result_dir", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err
    assert "--model bm3d needs the bm3d package" in err and "pip install" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "bm3d", "--chop"], "--model bm3d runs whole images"),
        (["--model", "bm3d", "--weights", "x.pt"], "--model bm3d takes no --weights"),
        (["--model", "adfnet"], "--weights is required for --model adfnet"),
        (["--model", "nlm", "--weights", "x.pt"], f"choose one of {', '.join(MODEL_NAMES)}, bm3d"),
        (["--model", "bm3d", "--seeds", "0"], "--seeds must be at least 1"),
    ],
)
def test_flag_mistakes_are_refused(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        testpy.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_ablation_flags_refused_for_bm3d(capsys):
    assert testpy.main(["--model", "bm3d", "--no_mfi"]) == 1
    assert "ablation flags apply to ADFNet only, not to --model bm3d" in capsys.readouterr().err


def test_harness_report_compares_with_published_and_the_spread(tmp_path):
    """docs/HARNESS.md's table from hand-made seeds.csv files: difference, spread, verdict."""
    header = "model,n_colors,set,sigma,seed,images,failed,psnr,ssim\n"
    for k, (images, mean) in enumerate([(34, 28.5), (34, 28.7)], 1):  # PARTS=2: the set mean is 28.6
        (tmp_path / f"BSD68_c1_s1_p{k}of2").mkdir()
        (tmp_path / f"BSD68_c1_s1_p{k}of2/seeds.csv").write_text(header + f"bm3d,1,BSD68,25,1,{images},0,{mean},0.8\n")
    (tmp_path / "BSD68_c1_s5_l8").mkdir()
    subset = [28.0, 28.02, 28.04, 28.01, 28.03]  # std 0.0158
    (tmp_path / "BSD68_c1_s5_l8/seeds.csv").write_text(
        header + "".join(f"bm3d,1,BSD68,25,{k + 1},8,0,{p:.6f},0.8\n" for k, p in enumerate(subset))
    )
    (tmp_path / "CBSD68_c3_s1").mkdir()
    (tmp_path / "CBSD68_c3_s1/seeds.csv").write_text(header + "bm3d,3,CBSD68,50,20,68,0,27.800000,0.7\n")
    (tmp_path / "CBSD68_c3_s2_l4").mkdir()
    (tmp_path / "CBSD68_c3_s2_l4/seeds.csv").write_text(
        header + "bm3d,3,CBSD68,50,20,4,0,27.000000,0.7\nbm3d,3,CBSD68,50,21,4,0,27.020000,0.7\n"
    )
    doc = tmp_path / "HARNESS.md"
    write_report(tmp_path, "/data/testsets", doc)
    text = doc.read_text()
    std = statistics.stdev(subset)
    bsd = next(line for line in text.splitlines() if line.startswith("| BM3D | BSD68 | 25 | 68 |"))
    assert f"| 28.600 | 28.57 | +0.030 | {std:.4f} | 8 images x 5 seeds | {0.03 / std:.1f} | within" in bsd
    cbsd = next(line for line in text.splitlines() if line.startswith("| CBM3D | CBSD68 | 50 | 68 |"))
    assert "| +0.420 |" in cbsd and "**outside**" in cbsd  # 0.42 dB vs a std of 0.0141: 29.7 std
    assert "Outside 3 std of the seed spread: CBM3D CBSD68 sigma 50; the reason is stated under Findings" in text
    # the report is committed: a root outside the repository is a placeholder, never this machine's path
    assert 'CASES="1:BSD68:25" SEEDS=5 LIMIT=8 scripts/validate_harness.sh <testsets>' in text
    assert 'CASES="1:BSD68:25" SEEDS=1 PARTS=2 scripts/validate_harness.sh <testsets>' in text
    assert "Test sets from `<testsets>`" in text and "/data/testsets" not in text
    write_report(tmp_path, "datasets/testsets", doc)  # a folder of the repository is named as it is
    assert "SEEDS=5 LIMIT=8 scripts/validate_harness.sh datasets/testsets" in doc.read_text()
    (tmp_path / "BSD68_c1_s1_p2of2/seeds.csv").unlink()  # a part missing: that run is left out, and said so
    write_report(tmp_path, "/data/testsets", doc)
    text = doc.read_text()
    assert "| BM3D | BSD68 | 25 | 68 |" not in text
    assert "incomplete, left out: BSD68_c1_s1 (BSD68 sigma 25 seed 1: 1 of 2 parts)" in text


def test_validate_harness_script_parts_equal_one_run(tmp_path):
    """scripts/validate_harness.sh end to end on 4 crops: PARTS=2 (parallel halves, merged) = one whole run."""
    for name in ("01.png", "02.png", "03.png", "04.png"):
        _crop(SET12 / name, tmp_path / "root/gray/Set12" / name, (32, 40))
    env = subprocess_env(CASES="1:Set12:25", DOC=str(tmp_path / "HARNESS.md"))
    script = str(ROOT / "scripts/validate_harness.sh")
    for out, parts in (("whole", "1"), ("parts", "2")):
        run_env = {**env, "OUT": str(tmp_path / out), "PARTS": parts}
        done = subprocess.run(["bash", script, str(tmp_path / "root")], env=run_env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    whole = _rows(tmp_path / "whole/Set12_c1_s1/seeds.csv")[0]
    assert whole["images"] == "4"
    assert sorted(p.name for p in (tmp_path / "parts").glob("Set12_c1_s1_p*of2.in/Set12/*")) == [
        "01.png",
        "02.png",
        "03.png",
        "04.png",
    ]
    rows, runs, incomplete = merge_parts(sorted((tmp_path / "parts").glob("*/seeds.csv")))
    assert (runs, incomplete, rows[0]["images"]) == (["Set12_c1_s1"], [], "4")
    assert float(rows[0]["psnr"]) == pytest.approx(float(whole["psnr"]), abs=2e-6)
    text = (tmp_path / "HARNESS.md").read_text()  # the last run's report
    assert 'CASES="1:Set12:25" SEEDS=1 PARTS=2 scripts/validate_harness.sh <testsets>' in text
    assert str(tmp_path) not in text
    assert "| BM3D | Set12 | 25 | 4 | 1 |" in text and "| 29.97 |" in text
