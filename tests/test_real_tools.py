"""SIDD/DND tools: .mat round trips with the real structure, built from the bundled SIDD sample pairs."""

import sys

import numpy as np
import pytest
import scipy.io as sio
import torch

from adfnet.cli import real
from adfnet.data.io import read_image, save_image
from adfnet.evaluation import score_pairs
from adfnet.imaging import quantize
from adfnet.matio import (
    bundle_dnd_submission,
    load_dnd_bundle,
    load_sidd_blocks,
    save_dnd_crop,
    save_sidd_submission,
)
from adfnet.metrics import psnr
from conftest import SIDD_SAMPLES as SAMPLES

BLOCK = 32


# the official script names -> the adfnet-real tools they run
TOOLS = {
    "bundle_submissions": "bundle-dnd",
    "evaluate_sidd": "score-sidd",
    "test_dnd_png": "dnd",
    "test_sidd_benchmark_mat": "sidd-benchmark",
    "test_sidd_val_mat": "sidd-val-mat",
    "test_sidd_val_png": "sidd-val-png",
}


class _Tool:
    """One ``adfnet-real`` tool, called in-process by its official script name."""

    def __init__(self, name):
        self.name = TOOLS[name]
        self.module = sys.modules[real.TOOLS[self.name][1].__module__]  # where the tool loads its model

    def main(self, argv):
        return real.main([self.name, *argv])


def _script(name):
    return _Tool(name)


def _identity_model(monkeypatch, tool):
    """Skip ADFNet: with an identity 'denoiser' every output is known exactly."""
    monkeypatch.setattr(tool.module, "load_checkpoint", lambda *args, **kwargs: (lambda x: x, None))


def _pairs(n):
    """n (noisy, clean) uint8 BLOCK x BLOCK crops of the bundled sample pairs."""
    out = []
    for i in range(n):
        noisy = quantize(read_image(SAMPLES / "NOISY" / f"{i}.png", 3))[100 : 100 + BLOCK, 200 : 200 + BLOCK]
        clean = quantize(read_image(SAMPLES / "GT" / f"{i}.png", 3))[100 : 100 + BLOCK, 200 : 200 + BLOCK]
        out.append((noisy, clean))
    return out


@pytest.fixture(scope="module")
def blocks():
    pairs = _pairs(4)
    noisy = np.stack([p[0] for p in pairs]).reshape(2, 2, BLOCK, BLOCK, 3)
    clean = np.stack([p[1] for p in pairs]).reshape(2, 2, BLOCK, BLOCK, 3)
    return noisy, clean


def test_sidd_mat_round_trip(tmp_path, blocks):
    noisy, clean = blocks
    save_sidd_submission(tmp_path / "SubmitSrgb.mat", noisy)
    raw = sio.loadmat(str(tmp_path / "SubmitSrgb.mat"))["DenoisedBlocksSrgb"]
    assert raw.shape == (2, 2) and raw.dtype == object and raw[1, 0].dtype == np.uint8  # a cell, as the server
    np.testing.assert_array_equal(load_sidd_blocks(tmp_path / "SubmitSrgb.mat"), noisy)
    sio.savemat(str(tmp_path / "numeric.mat"), {"x": clean})
    np.testing.assert_array_equal(load_sidd_blocks(tmp_path / "numeric.mat"), clean)
    sio.savemat(str(tmp_path / "single.mat"), {"x": clean.astype(np.float32) / 255})  # im2single form
    np.testing.assert_array_equal(load_sidd_blocks(tmp_path / "single.mat"), clean)
    sio.savemat(str(tmp_path / "two.mat"), {"a": clean, "b": clean})
    with pytest.raises(ValueError, match="say which one"):
        load_sidd_blocks(tmp_path / "two.mat")
    with pytest.raises(ValueError, match="N x K x H x W x 3"):
        load_sidd_blocks(_flat(tmp_path, clean))
    with pytest.raises(FileNotFoundError):
        load_sidd_blocks(tmp_path / "missing.mat")


def test_float_sidd_blocks_use_the_one_quantize(tmp_path, monkeypatch):
    """Float blocks are rounded by adfnet.metrics.quantize (ties to even, clipped), not by a private copy."""
    import adfnet.matio

    values = np.array([0.0, 0.5 / 255, 1.5 / 255, 2.5 / 255, 0.3, 1.2, -0.1, 1.0], np.float32)
    blocks = np.resize(values, (1, 2, 2, 2, 3))
    sio.savemat(str(tmp_path / "float.mat"), {"x": blocks})
    np.testing.assert_array_equal(load_sidd_blocks(tmp_path / "float.mat"), quantize(blocks))
    calls = []

    def spy(img):
        calls.append(img.shape)
        return quantize(img)

    monkeypatch.setattr(adfnet.matio, "quantize", spy)
    load_sidd_blocks(tmp_path / "float.mat")
    assert calls == [(1, 2, 2, 2, 3)]


def _flat(tmp_path, clean):
    sio.savemat(str(tmp_path / "flat.mat"), {"x": clean[0]})
    return tmp_path / "flat.mat"


def test_dnd_bundle_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    crops = {(i, c): rng.random((16, 24, 3)).astype(np.float32) for i in (1, 2) for c in (1, 2)}
    for (i, c), img in crops.items():
        save_dnd_crop(tmp_path / "mat" / f"{i:04d}_{c}.mat", img)
    with pytest.raises(FileNotFoundError, match="0003_1.mat"):
        bundle_dnd_submission(tmp_path / "mat", tmp_path / "bundled", n_images=3, n_crops=2)
    written = bundle_dnd_submission(tmp_path / "mat", tmp_path / "bundled", n_images=2, n_crops=2)
    assert [p.name for p in written] == ["0001.mat", "0002.mat"]
    got, israw, version = load_dnd_bundle(tmp_path / "bundled" / "0002.mat")
    assert not israw and version == "1.0" and len(got) == 2
    np.testing.assert_array_equal(got[1], crops[(2, 2)])
    assert got[1].dtype == np.float32
    code = _script("bundle_submissions").main(
        ["--mat_dir", str(tmp_path / "mat"), "--n_images", "2", "--n_crops", "2", "--delete_crops"]
    )
    assert code == 0 and (tmp_path / "mat" / "bundled" / "0001.mat").is_file()
    assert not list((tmp_path / "mat").glob("*.mat"))


def test_sidd_val_mat_and_evaluate(tmp_path, blocks, monkeypatch, capsys):
    noisy, clean = blocks
    data = tmp_path / "val"
    data.mkdir()
    sio.savemat(str(data / "ValidationNoisyBlocksSrgb.mat"), {"ValidationNoisyBlocksSrgb": noisy})
    sio.savemat(str(data / "ValidationGtBlocksSrgb.mat"), {"ValidationGtBlocksSrgb": clean})
    script = _script("test_sidd_val_mat")
    _identity_model(monkeypatch, script)
    assert script.main(["--input_dir", str(data), "--result_dir", str(tmp_path / "res"), "--ensemble", "--cpu"]) == 0
    printed = capsys.readouterr().out
    submission = tmp_path / "res" / "mat" / "SubmitSrgb.mat"
    np.testing.assert_array_equal(load_sidd_blocks(submission), noisy)  # identity: denoised == noisy
    flat_noisy, flat_clean = noisy.reshape(4, BLOCK, BLOCK, 3), clean.reshape(4, BLOCK, BLOCK, 3)
    expected = np.mean([psnr(n, c) for n, c in zip(flat_noisy, flat_clean, strict=True)])
    assert f"PSNR {expected:.4f} dB" in printed and "MATLAB 3-D" in printed and "39.79" in printed

    evaluate = _script("evaluate_sidd")
    assert (
        evaluate.main(
            [
                "--submission",
                str(submission),
                "--gt",
                str(data / "ValidationGtBlocksSrgb.mat"),
                "--csv",
                str(tmp_path / "blocks.csv"),
            ]
        )
        == 0
    )
    assert f"PSNR {expected:.4f} dB" in capsys.readouterr().out
    assert (tmp_path / "blocks.csv").read_text().splitlines()[0] == "image,psnr,ssim,ssim_matlab3d"
    sio.savemat(str(tmp_path / "numeric.mat"), {"DenoisedBlocksSrgb": noisy})  # what evaluate_SIDD.m indexes
    assert (
        evaluate.main(["--submission", str(tmp_path / "numeric.mat"), "--gt", str(data / "ValidationGtBlocksSrgb.mat")])
        == 0
    )
    assert f"PSNR {expected:.4f} dB" in capsys.readouterr().out
    assert evaluate.main(["--submission", str(submission), "--gt", str(_flat(tmp_path, clean))]) == 1


def test_sidd_benchmark_with_adfnet(tmp_path, blocks, capsys):
    from adfnet.models import build_model

    noisy = blocks[0][:1]  # 1 x 2 blocks: two real ADFNet forwards
    data = tmp_path / "bench"
    data.mkdir()
    sio.savemat(str(data / "BenchmarkNoisyBlocksSrgb.mat"), {"BenchmarkNoisyBlocksSrgb": noisy})
    torch.manual_seed(0)
    model = build_model("adfnet", 3)
    torch.save(
        {"epoch": 1, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
        tmp_path / "official_style.pth",
    )  # the official real-noise checkpoint layout
    code = _script("test_sidd_benchmark_mat").main(
        [
            "--input_dir",
            str(data),
            "--result_dir",
            str(tmp_path / "res"),
            "--weights",
            str(tmp_path / "official_style.pth"),
            "--save_images",
            "--cpu",
        ]
    )
    assert code == 0, capsys.readouterr()
    out = load_sidd_blocks(tmp_path / "res" / "mat" / "SubmitSrgb.mat")
    assert out.shape == noisy.shape and out.dtype == np.uint8
    png = read_image(tmp_path / "res" / "png" / "0000-0001.png", 3)
    np.testing.assert_array_equal(quantize(png), out[0, 1])
    assert _script("test_sidd_benchmark_mat").main(["--input_dir", str(tmp_path), "--cpu"]) == 1


def test_sidd_val_png(tmp_path, monkeypatch, capsys):
    pairs = _pairs(3)
    for i, (noisy, clean) in enumerate(pairs):
        save_image(tmp_path / "val" / "lq" / f"{i}.png", noisy)
        save_image(tmp_path / "val" / "hq" / f"{i}.png", clean)
    script = _script("test_sidd_val_png")
    _identity_model(monkeypatch, script)
    args = [
        "--input_dir",
        str(tmp_path / "val"),
        "--result_dir",
        str(tmp_path / "res"),
        "--cpu",
        "--chop",
        "--ensemble",
        "--save_images",
        "--grid",
        "1",
        "3",
    ]
    assert script.main(args) == 0
    scores = score_pairs([p[0] for p in pairs], [p[1] for p in pairs])
    assert f"PSNR {np.mean([s[0] for s in scores]):.4f} dB" in capsys.readouterr().out
    np.testing.assert_array_equal(load_sidd_blocks(tmp_path / "res" / "mat" / "SubmitSrgb.mat")[0, 2], pairs[2][0])
    assert (tmp_path / "res" / "png" / "1.png").is_file()
    (tmp_path / "val" / "hq" / "1.png").unlink()  # a missing partner: reported, the others still scored
    assert script.main(args) == 1
    printed = capsys.readouterr().out
    assert "1.png" in printed and "2 images" in printed and "no SubmitSrgb.mat" in printed


def test_dnd_png(tmp_path, monkeypatch, capsys):
    pairs = _pairs(4)
    names = ["0001_1", "0001_2", "0002_1", "0002_2"]
    for name, (noisy, _) in zip(names, pairs, strict=True):
        save_image(tmp_path / "dnd" / "lq" / f"{name}.png", noisy)
    script = _script("test_dnd_png")
    _identity_model(monkeypatch, script)
    common = ["--input_dir", str(tmp_path / "dnd"), "--result_dir", str(tmp_path / "res"), "--cpu", "--ensemble"]
    assert script.main([*common, "--n_images", "2", "--n_crops", "2", "--save_images"]) == 0
    crops, israw, version = load_dnd_bundle(tmp_path / "res" / "mat" / "bundled" / "0002.mat")
    np.testing.assert_allclose(crops[0], pairs[2][0].astype(np.float32) / 255, atol=1e-7)
    assert not israw and version == "1.0" and (tmp_path / "res" / "png" / "0001_2.png").is_file()
    assert script.main(common) == 0  # default 50 x 20: crops are written, bundling is skipped with a note
    assert "not bundled" in capsys.readouterr().out
