"""SADNet beside ADFNet: both test protocols through test.py, its float metrics, its published numbers, its
training recipes at toy scale, the authors' checkpoint layout through --weights, and packed-raw n_colors=4.

The SADNet-protocol numbers are checked against the release's own formulas written out here (its
``metrics.compare_psnr`` / ``compare_ssim``: numpy MSE in float64, a replicate-padded torch Conv2d/Conv3d
Gaussian), with the noise drawn the official way (``torch.manual_seed``; ``FloatTensor.normal_``).
"""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from adfnet.checkpoint import load_weights
from adfnet.cli import test as test_cli
from adfnet.data.datasets import SyntheticNoiseTrain
from adfnet.data.noise import build_noise
from adfnet.data.sidd import generate_patches
from adfnet.evaluation import format_real_scores, published_for, published_real_for, reproduced_for
from adfnet.inference import denoise
from adfnet.metrics import psnr, psnr_float, ssim, ssim_matlab3d, ssim_matlab_float
from adfnet.models import build_model
from conftest import MCMASTER, ROOT, SIDD_SAMPLES, TRAIN_GRAY, subprocess_env


def release_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SADNet's ``compare_ssim`` (data range 1): an 11x11 (gray) or 11x11x11 (colour) Gaussian of sigma 1.5 as
    one replicate-padded convolution, same-size map, mean; C1 = 0.01^2, C2 = 0.03^2."""
    g = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(g, g)
    if x.ndim == 3:
        window = np.stack([window * k for k in g[:, 0]], axis=0)
        conv = torch.nn.Conv3d(1, 1, 11, padding=5, bias=False, padding_mode="replicate")
    else:
        conv = torch.nn.Conv2d(1, 1, 11, padding=5, bias=False, padding_mode="replicate")
    with torch.no_grad():
        conv.weight[0, 0] = torch.tensor(window)
        a, b = (torch.tensor(v, dtype=torch.float32)[None, None] for v in (x, y))
        mu1, mu2 = conv(a), conv(b)
        s11, s22, s12 = conv(a * a) - mu1**2, conv(b * b) - mu2**2, conv(a * b) - mu1 * mu2
        c1, c2 = 0.01**2, 0.03**2
        ssim_map = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))
    return float(ssim_map.mean())


@pytest.mark.parametrize("shape", [(40, 37), (40, 37, 3)])
def test_float_metrics_are_the_releases(shape):
    rng = np.random.default_rng(0)
    clean = rng.random(shape, dtype=np.float32)
    out = np.clip(clean + rng.normal(0, 0.1, shape).astype(np.float32), 0, 1)
    mse = np.mean((out - clean) ** 2, dtype=np.float64)
    assert psnr_float(out, clean) == pytest.approx(10 * np.log10(1 / mse), abs=1e-7)  # release: float32 squares
    assert psnr_float(out, clean) == pytest.approx(peak_signal_noise_ratio(clean, out, data_range=1), abs=1e-5)
    assert ssim_matlab_float(out, clean) == pytest.approx(release_ssim(out, clean), abs=2e-6)
    # the same implementation as the 8-bit MATLAB-style SSIM, without the quantisation (SSIM is scale-free)
    u_out, u_clean = (np.rint(v * 255).astype(np.uint8) for v in (out, clean))
    if len(shape) == 3:
        assert ssim_matlab3d(u_out, u_clean) == pytest.approx(
            ssim_matlab_float(u_out / 255.0, u_clean / 255.0), abs=1e-12
        )
    assert abs(ssim_matlab_float(out, clean) - ssim_matlab3d(out, clean)) > 1e-6  # floats are not rounded
    with pytest.raises(ValueError, match="float images"):
        psnr_float(u_out, u_clean)


@pytest.fixture(scope="module")
def authors_checkpoint(tmp_path_factory) -> Path:
    """A SADNet checkpoint as the release's train.py wrote it: torch.save(model.state_dict(), model_%04d_dict.pth)."""
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    path = folder / f"model_{200:04d}_dict.pth"  # the release: "model_%04d_dict.pth" % epoch
    torch.save(build_model("sadnet", 3).state_dict(), path)
    return path


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _official_noisy(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """The official test noise (reseed, CPU FloatTensor normal_) on an H x W x C float image."""
    torch.manual_seed(seed)
    noise = torch.FloatTensor(1, clean.shape[2], *clean.shape[:2]).normal_(0, sigma / 255)
    return clean + noise[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("protocol", ["sadnet", "adfnet"])
def test_testpy_sadnet_chop_save_images_under_both_protocols(tmp_path, authors_checkpoint, protocol, capsys):
    sets = tmp_path / "Kodak24"  # the set name selects the published SADNet numbers
    sets.mkdir()
    src = cv2.imread(str(MCMASTER / "1.tif"))[:61, :90]  # 61 x 90: not a multiple of 8
    cv2.imwrite(str(sets / "k01.png"), src)
    result_dir = tmp_path / "res"
    argv = ["--model", "sadnet", "--weights", str(authors_checkpoint), "--input_dir", str(sets), "--test_noiseL", "50"]
    argv += ["--chop", "--save_images", "--protocol", protocol, "--result_dir", str(result_dir), "--cpu"]
    assert test_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f"Kodak24  sigma 50  ({protocol} protocol)" in out
    assert "29.6400" in out and "ADFNet paper Table 1, SADNet row" in out  # published
    assert "29.8600" in out and "[Re] SADNet reproduction; sadnet protocol" in out  # reproduced
    if protocol == "sadnet":
        assert "--chop: the sadnet protocol runs the whole image in one forward pass" in out
    else:
        assert "ours used the adfnet protocol, the reference numbers the sadnet protocol" in out
    (row,) = _read_csv(result_dir / "Kodak24/sigma50/results.csv")
    (summary,) = _read_csv(result_dir / "summary.csv")
    assert row["protocol"] == summary["protocol"] == protocol
    assert float(summary["published_psnr"]) == 29.64 and float(summary["reproduced_psnr"]) == 29.86
    saved = cv2.imread(str(result_dir / "Kodak24/sigma50/k01.png"))

    model = load_weights(build_model("sadnet", 3), authors_checkpoint).eval()
    clean = src[..., ::-1].astype(np.float32) / 255  # RGB as imread gives it
    noisy = _official_noisy(clean, 50, seed=20)
    if protocol == "sadnet":
        # the noisy PNG (clipped, rounded to 8 bits), then both images cropped to 56 x 88
        noisy = (np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8).astype(np.float32) / 255)[:56, :88]
        clean = clean[:56, :88]
        assert saved.shape == (56, 88, 3)
    else:
        assert saved.shape == (61, 90, 3)
    x = torch.from_numpy(np.ascontiguousarray(noisy.transpose(2, 0, 1)))[None]
    output = denoise(model, x, "chop")[0].permute(1, 2, 0).numpy()
    if protocol == "sadnet":
        mse = np.mean((output - clean) ** 2, dtype=np.float64)
        assert float(row["psnr"]) == pytest.approx(10 * np.log10(1 / mse), abs=1e-5)
        assert float(row["ssim"]) == pytest.approx(release_ssim(output, clean), abs=1e-5)
    else:
        assert float(row["psnr"]) == pytest.approx(psnr(output, clean), abs=1e-5)
        assert float(row["ssim"]) == pytest.approx(ssim(output, clean), abs=1e-5)
    assert np.array_equal(saved[..., ::-1], np.rint(output * 255).astype(np.uint8))


def test_protocol_choice_is_checked(capsys):
    with pytest.raises(SystemExit):
        test_cli.parse_args(["--weights", "x.pt", "--protocol", "dncnn"])
    assert "invalid choice: 'dncnn'" in capsys.readouterr().err


def test_published_sadnet_numbers():
    table1 = {("Kodak24", 30): 31.86, ("Kodak24", 50): 29.64, ("Kodak24", 70): 28.28, ("CBSD68", 30): 30.64}
    table1.update({("CBSD68", 50): 28.32, ("BSD68", 70): 26.93, ("McMaster", 50): 29.72})
    for (name, sigma), value in table1.items():
        pub = published_for("sadnet", 3, name, sigma)
        assert pub.psnr == value and pub.protocol is None and "ADFNet paper Table 1" in pub.source
    re_sadnet = {("Kodak24", 30): 32.06, ("Kodak24", 50): 29.86, ("Kodak24", 70): 28.47, ("CBSD68", 30): 30.58}
    re_sadnet.update({("CBSD68", 50): 28.30, ("CBSD68", 70): 26.91})
    for (name, sigma), value in re_sadnet.items():
        rep = reproduced_for("sadnet", 3, name, sigma)
        assert rep.psnr == value and rep.protocol == "sadnet"
    assert reproduced_for("sadnet", 3, "McMaster", 50) is None and reproduced_for("adfnet", 3, "Kodak24", 50) is None
    assert published_for("sadnet", 1, "Set12", 50) is None
    assert published_for("adfnet", 3, "Kodak24", 30).psnr == 32.01  # ADFNet's own row is unchanged
    published, reproduced = published_real_for("sadnet", "sidd_val")
    assert (published.psnr, reproduced.psnr) == (39.46, 39.41)
    text = format_real_scores([(39.0, 0.9, 0.95)], published, reproduced)
    assert "PSNR 39.46; ours - published: -0.460 dB" in text and "PSNR 39.41; ours - reproduced: -0.410 dB" in text
    assert published_real_for("adfnet", "sidd_val")[0].psnr == 39.79


def test_n_colors_4_packed_raw_for_both_families():
    """Four input/output planes (packed Bayer); each extra colour adds a first-layer input and a last-layer output,
    so the counts step by the same amount from 1 to 3 to 4 colours."""
    for name in ("adfnet", "sadnet"):
        with torch.device("meta"):
            counts = {n: sum(p.numel() for p in build_model(name, n).parameters()) for n in (1, 3, 4)}
        assert counts[4] - counts[3] == (counts[3] - counts[1]) // 2
    model = build_model("sadnet", n_colors=4).eval()
    x = torch.rand(1, 4, 16, 16)
    with torch.no_grad():
        assert model(x).shape == (1, 4, 16, 16)
    for bad in (2, 5):
        with pytest.raises(ValueError, match=r"n_colors must be 1 \(gray\), 3 \(colour\) or 4 \(packed raw\)"):
            build_model("adfnet", n_colors=bad)


def test_clip_noisy_training_inputs():
    files = sorted(TRAIN_GRAY.iterdir())[:2]
    awgn50 = build_noise("awgn", [50])
    plain = SyntheticNoiseTrain(files, 1, 32, awgn50, 4, seed=3)
    clipped = SyntheticNoiseTrain(files, 1, 32, awgn50, 4, seed=3, clip_noisy=True)
    noisy, clean = plain[1]
    noisy_c, clean_c = clipped[1]
    assert torch.equal(clean, clean_c) and (noisy.min() < 0 or noisy.max() > 1)  # same sample, unclipped by default
    assert torch.equal(noisy_c, noisy.clamp(0, 1))


def _train(script: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    toy = ["--epochs", "1", "--patch_size", "16", "--batch_size", "2", "--cpu", "--n_threads", "0"]
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / script), *args, *toy, "--dir_experiment", str(tmp_path)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=600,
    )


def test_toy_sadnet_training_then_test_py_on_its_weights(tmp_path, capsys):
    val = tmp_path / "val"
    val.mkdir()
    cv2.imwrite(str(val / "01.png"), cv2.imread(str(ROOT / "datasets/testsets/Set12/01.png"))[:32, :40, 0])
    data = ["--dir_data", str(TRAIN_GRAY), "--data_val", str(val), "--test_every", "2"]
    done = _train("train_sadnet_gray_n50.sh", tmp_path, *data)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "sadnet_gray_n50"
    config = (run / "config.txt").read_text()
    assert '"loss": "1*L2"' in config and '"clip_noisy": true' in config and '"lr_decay": 60' in config
    assert "training sadnet (4,234,081 parameters)" in (run / "log.txt").read_text()
    state = torch.load(run / "checkpoint_latest.pt", map_location="cpu", weights_only=True)
    assert state["iteration"] == 2 and state["history"][0]["lr"] == pytest.approx(1e-4)
    assert (run / "results/01_sadnet_N50_DN.png").is_file()
    # the trained weights, renamed to the authors' layout, evaluate through test.py under SADNet's protocol
    weights = tmp_path / "model_0001_dict.pth"
    weights.write_bytes((run / "model/model_latest.pt").read_bytes())
    argv = ["--model", "sadnet", "--n_colors", "1", "--weights", str(weights), "--input_dir", str(val)]
    argv += ["--protocol", "sadnet", "--result_dir", str(tmp_path / "res"), "--cpu"]
    assert test_cli.main(argv) == 0
    (row,) = _read_csv(tmp_path / "res/val/sigma50/results.csv")
    assert row["protocol"] == "sadnet" and 0 < float(row["psnr"]) < 100


def test_toy_sadnet_real_noise_training(tmp_path):
    patches = tmp_path / "patches"
    generate_patches(SIDD_SAMPLES, patches, ps=32, num_patches=1, seed=0)
    done = _train(
        "train_sadnet_real.sh", tmp_path, "--dir_data", str(patches), "--data_val", str(patches), "--n_val", "1"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "sadnet_real"
    config = (run / "config.txt").read_text()
    assert '"loss": "1*L1"' in config and '"task": "paired"' in config and '"model": "sadnet"' in config
    load_weights(build_model("sadnet", 3), run / "model/model_latest.pt")  # strict, the authors' keys
