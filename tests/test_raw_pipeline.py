"""The raw pipeline end to end: unprocessed bundled images -> a few training iterations of a 4-channel ADFNet ->
SIDD-format raw blocks scored with and without the CFA-aware ensemble -> the benchmark submission; plus real
raw pairs by path, the SIDD raw .mat formats and the raw PSNR."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
import torch
from test_scripts import record

from adfnet.cli import real
from adfnet.cli import train as train_cli
from adfnet.data.io import list_images, read_image, save_image
from adfnet.data.raw import CFA_PATTERNS, mosaic, pack, unpack
from adfnet.data.raw_pairs import RawPairedTrain, RawPairedVal, read_bayer
from adfnet.data.unprocess import UnprocessedRawVal
from adfnet.engine.options import parse_options
from adfnet.evaluation.raw import denoise_mosaic
from adfnet.matio import SIDD_RAW_SUBMISSION_KEY, load_sidd_raw_blocks, save_sidd_raw_submission
from adfnet.metrics import psnr_raw
from adfnet.models import build_model
from conftest import MCMASTER, TRAIN_RGB

GRID, BLOCK = (2, 3), 32


def write_sidd_raw(folder: Path, stems: tuple[str, ...] = ("Validation",)) -> tuple[np.ndarray, np.ndarray]:
    """SIDD-structured raw .mat files (N x K x H x W float32 Bayer blocks in [0, 1]) from bundled images,
    unprocessed with poisson_gaussian noise by UnprocessedRawVal."""
    ds = UnprocessedRawVal(list_images(MCMASTER)[: GRID[0]], seed=11)
    noisy = np.zeros((*GRID, BLOCK, BLOCK), np.float32)
    gt = np.zeros_like(noisy)
    for i in range(GRID[0]):
        n, c, _ = ds[i]
        n, c = unpack(n[None])[0, 0].numpy(), unpack(c[None])[0, 0].numpy()
        for k in range(GRID[1]):
            window = (slice(0, BLOCK), slice(k * BLOCK, (k + 1) * BLOCK))
            noisy[i, k], gt[i, k] = n[window], c[window]
    folder.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        sio.savemat(folder / f"{stem}NoisyBlocksRaw.mat", {f"{stem}NoisyBlocksRaw": noisy})
    sio.savemat(folder / "ValidationGtBlocksRaw.mat", {"ValidationGtBlocksRaw": gt})
    return noisy, gt


def read_scores(path: Path) -> np.ndarray:
    with open(path, newline="") as fh:
        return np.array([float(r["psnr"]) for r in csv.DictReader(fh)])


def test_toy_raw_run_end_to_end(tmp_path, capsys, one_thread):
    """unprocess -> train 2 iterations -> sidd-raw-val with and without the x8 ensemble -> sidd-raw-benchmark."""
    val = tmp_path / "val_img"
    save_image(val / "1.png", read_image(MCMASTER / "1.tif", 3)[:64, :96])
    best = train_cli.main(
        ["--raw", "--dir_data", str(TRAIN_RGB), "--data_val", str(val), "--epochs", "1", "--test_every", "2",
         "--patch_size", "32", "--batch_size", "2", "--cpu", "--n_threads", "0", "--dir_experiment", str(tmp_path),
         "--save", "raw"]
    )  # fmt: skip
    assert best == 0
    log = (tmp_path / "raw" / "log.txt").read_text()
    psnr_line = next(line for line in log.splitlines() if "val PSNR" in line)
    assert math.isfinite(float(psnr_line.split("val PSNR ")[1].split()[0]))
    weights = tmp_path / "raw" / "model" / "model_latest.pt"
    assert torch.load(weights, weights_only=True)["head.weight"].shape[1] == 4  # a 4-channel ADFNet

    noisy, gt = write_sidd_raw(tmp_path / "sidd", ("Validation", "Benchmark"))
    common = ["--input_dir", str(tmp_path / "sidd"), "--weights", str(weights), "--cpu"]
    means = {}
    for ensemble in (False, True):
        out = tmp_path / f"res_{ensemble}"
        argv = ["sidd-raw-val", *common, "--result_dir", str(out)] + (["--ensemble"] if ensemble else [])
        assert real.main(argv) == 0
        printed = capsys.readouterr().out
        scores = read_scores(out / "results.csv")
        assert scores.shape == (GRID[0] * GRID[1],) and np.isfinite(scores).all()
        # the score is MWRCANet's: per-block PSNR (peak 1) of the submitted float blocks, mean over all blocks
        submitted = load_sidd_raw_blocks(out / "mat" / "SubmitRaw.mat", SIDD_RAW_SUBMISSION_KEY)
        assert submitted.shape == noisy.shape and submitted.dtype == np.float32
        by_hand = [10 * math.log10(1 / np.mean((submitted[i, k].astype(np.float64) - gt[i, k]) ** 2))
                   for i in range(GRID[0]) for k in range(GRID[1])]  # fmt: skip
        np.testing.assert_allclose(scores, by_hand, atol=1e-5)
        means[ensemble] = scores.mean()
        assert f"PSNR {scores.mean():.4f} dB" in printed
        assert ("52.38" if ensemble else "52.35") in printed  # MWRCANet's published number as the reference
    assert means[True] != means[False]

    bench = tmp_path / "bench"
    assert real.main(["sidd-raw-benchmark", *common, "--result_dir", str(bench)]) == 0
    mat = sio.loadmat(bench / "mat" / "SubmitRaw.mat")
    cell = mat[SIDD_RAW_SUBMISSION_KEY]
    assert cell.dtype == object and cell.shape == GRID and cell[1, 2].shape == (BLOCK, BLOCK)
    assert cell[1, 2].dtype == np.float32 and float(mat["TimeMPRaw"][0, 0]) > 0
    assert str(mat["OptionalData"]["CfaPattern"][0, 0][0]) == "RGGB"
    plain = load_sidd_raw_blocks(tmp_path / "res_False" / "mat" / "SubmitRaw.mat", SIDD_RAW_SUBMISSION_KEY)
    np.testing.assert_array_equal(np.stack([np.stack(list(row)) for row in cell]), plain)  # same blocks, same model


def test_sidd_raw_mistakes(tmp_path, capsys):
    assert real.main(["sidd-raw-val", "--input_dir", str(tmp_path), "--weights", "x.pt", "--cpu"]) == 1
    assert "ValidationNoisyBlocksRaw.mat" in capsys.readouterr().err
    sio.savemat(tmp_path / "ValidationNoisyBlocksRaw.mat", {"ValidationNoisyBlocksRaw": np.zeros((2, 2, 8, 8, 3))})
    with pytest.raises(ValueError, match="N x K x H x W Bayer"):
        load_sidd_raw_blocks(tmp_path / "ValidationNoisyBlocksRaw.mat")
    with pytest.raises(ValueError, match="float"):
        save_sidd_raw_submission(tmp_path / "s.mat", np.zeros((1, 1, 4, 4), np.uint16), 1.0)


def test_raw_submission_round_trip(tmp_path):
    blocks = np.random.default_rng(0).random((2, 3, 6, 8), dtype=np.float32)
    save_sidd_raw_submission(tmp_path / "SubmitRaw.mat", blocks, 0.5, {"MethodName": "x"})
    np.testing.assert_array_equal(load_sidd_raw_blocks(tmp_path / "SubmitRaw.mat", SIDD_RAW_SUBMISSION_KEY), blocks)


def test_psnr_raw_by_hand():
    a = np.zeros((4, 4), np.float32)
    assert psnr_raw(a + 0.1, a) == pytest.approx(20.0)  # mse 0.01 -> 10 log10(100)
    assert psnr_raw(torch.full((1, 4, 2, 2), 0.5), torch.full((1, 4, 2, 2), 0.5)) == math.inf


def test_denoise_mosaic_identity_model_returns_the_mosaic():
    """pack -> model -> unpack in every pattern, plain and with the CFA ensemble, is lossless for an identity."""
    m = np.random.default_rng(1).random((16, 24), dtype=np.float32)
    for pattern in CFA_PATTERNS:
        for ensemble in (False, True):
            out = denoise_mosaic(lambda x: x, m, torch.device("cpu"), pattern, ensemble=ensemble)
            np.testing.assert_array_equal(out, m)


def _write_pair(root: Path, name: str, clean: np.ndarray, noisy: np.ndarray) -> None:
    for sub, arr in (("clean", clean), ("noisy", noisy)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        np.save(root / sub / f"{name}.npy", arr)


def test_real_raw_pairs_by_path(tmp_path):
    """Crops stay on the CFA grid (every packed channel keeps its colour under all 8 augmentations) and
    noisy/clean stay aligned; .mat files read too; integer mosaics are refused."""
    colours = torch.tensor([0.1, 0.5, 0.9]).view(1, 3, 1, 1)
    flat = mosaic(colours.expand(1, 3, 40, 48).contiguous(), "GRBG")[0, 0].numpy()
    ramp = np.linspace(0, 0.05, flat.size, dtype=np.float32).reshape(flat.shape)
    _write_pair(tmp_path / "train", "a", flat, flat + ramp)
    ds = RawPairedTrain(tmp_path / "train", patch_size=16, seed=3, pattern="GRBG")
    seen = set()
    for epoch in range(1, 9):
        ds.set_epoch(epoch)
        noisy, clean = ds[0]
        assert noisy.shape == clean.shape == (4, 8, 8)
        np.testing.assert_allclose(clean.mean(dim=(1, 2)), [0.1, 0.5, 0.5, 0.9], atol=1e-6)
        assert (noisy - clean).min() >= 0 and (noisy - clean).max() <= 0.05 + 1e-6
        seen.add(tuple(noisy[0, 0, :2].tolist()))
    assert len(seen) > 1  # crops/augmentations vary by epoch

    sio.savemat(tmp_path / "m.mat", {"x": flat})
    np.testing.assert_array_equal(read_bayer(tmp_path / "m.mat"), flat)
    _write_pair(tmp_path / "val", "b", flat, flat)
    noisy, clean, name = RawPairedVal(tmp_path / "val", "GRBG")[0]
    assert name == "b" and torch.equal(noisy, pack(torch.from_numpy(flat)[None, None], "GRBG")[0])
    np.save(tmp_path / "int.npy", (flat * 1000).astype(np.uint16))
    with pytest.raises(ValueError, match="float in"):
        read_bayer(tmp_path / "int.npy")
    with pytest.raises(FileNotFoundError, match="clean/"):
        RawPairedVal(tmp_path / "nothing")


def test_train_on_real_raw_pairs(tmp_path, one_thread):
    """--raw --task paired trains a 4-channel model on <dir_data>/{clean,noisy}/ and validates on a second folder."""
    rng = np.random.default_rng(0)
    for split, size in (("train", 48), ("val", 32)):
        clean = rng.random((size, size), dtype=np.float32) * 0.8
        _write_pair(tmp_path / split, "x", clean, clean + rng.normal(0, 0.02, clean.shape).astype(np.float32))
    argv = ["--raw", "--task", "paired", "--dir_data", str(tmp_path / "train"), "--data_val", str(tmp_path / "val"),
            "--epochs", "1", "--patch_size", "32", "--batch_size", "1", "--cpu", "--n_threads", "0",
            "--dir_experiment", str(tmp_path), "--save", "run", "--cfa_pattern", "BGGR"]  # fmt: skip
    assert train_cli.main(argv) == 0
    assert "val PSNR" in (tmp_path / "run" / "log.txt").read_text()


def test_raw_scripts_run_the_recipe_and_the_sidd_raw_tools(tmp_path):
    """train_adfnet_raw.sh runs configs/raw.yml; test_adfnet_raw.sh scores SIDD raw plain and with the CFA
    ensemble and writes the benchmark submission (command lines recorded, parsed by the tools' own parsers)."""
    for sub in ("data/DIV2K", "t", "e"):
        (tmp_path / sub).mkdir(parents=True)
    (train_argv,) = record(tmp_path / "t", "train_adfnet_raw.sh", env={"DATA_DIR": str(tmp_path / "data")})
    args = parse_options(train_argv[1:])
    assert (args.raw, args.n_colors, args.noise_model.name, args.patch_size, args.loss) == (
        True, 4, "poisson_gaussian", 256, "1*L1"
    )  # fmt: skip
    write_sidd_raw(tmp_path / "real" / "SIDD" / "val_raw")
    write_sidd_raw(tmp_path / "real" / "SIDD" / "benchmark_raw", ("Benchmark",))
    runs = record(tmp_path / "e", "test_adfnet_raw.sh", "--cpu", env={"REAL": str(tmp_path / "real")})
    parsed = [real.build_parser().parse_args(argv[2:]) for argv in runs]
    assert [p.tool for p in parsed] == ["sidd-raw-val", "sidd-raw-val", "sidd-raw-benchmark"]
    assert [p.ensemble for p in parsed] == [False, True, False] and all(p.cpu for p in parsed)
    assert all(p.weights == "checkpoints/adfnet_raw.pt" and p.cfa_pattern == "RGGB" for p in parsed)


@pytest.mark.parametrize("name", ["adfnet", "sadnet"])
def test_models_take_packed_raw(name):
    """build_model(..., n_colors=4): 4 channels in, 4 out (packed R, Gr, Gb, B)."""
    torch.manual_seed(0)
    model = build_model(name, n_colors=4).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 4, 16, 16))
    assert out.shape == (1, 4, 16, 16) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="n_colors"):
        build_model(name, n_colors=2)
