"""``--precision bf16`` of the inference commands: it really runs in bfloat16 and stays close to float32."""

import csv
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from adfnet import build_model
from adfnet.cli import test as test_cli
from adfnet.cli.denoise import main as denoise_main
from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "golden"))
from weights import golden_state_dict  # noqa: E402


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def _golden_checkpoint(path: Path, n_colors: int) -> Path:
    model = build_model("adfnet", n_colors)
    torch.save(golden_state_dict(model.state_dict(), 0), path)
    return path


def test_denoise_command_bf16_is_close_to_fp32(tmp_path):
    src = cv2.imread(str(ROOT / "datasets/real/SIDD_samples/NOISY/11.png"))[:64, :64]
    cv2.imwrite(str(tmp_path / "crop.png"), src)
    ckpt = _golden_checkpoint(tmp_path / "rgb.pt", 3)
    outputs = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        argv = [str(tmp_path / "crop.png"), "--weights", str(ckpt), "--out", str(out), "--precision", precision]
        assert denoise_main([*argv, "--cpu"]) == 0
        outputs[precision] = cv2.imread(str(out / "crop.png"))
    assert not np.array_equal(outputs["bf16"], outputs["fp32"])  # bf16 really ran
    assert _psnr(outputs["bf16"], outputs["fp32"]) > 40


def test_test_command_bf16_is_close_to_fp32(tmp_path):
    folder = tmp_path / "Set12"
    folder.mkdir()
    src = cv2.imread(str(ROOT / "datasets/testsets/Set12/01.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(folder / "01.png"), src[:48, :48])
    ckpt = _golden_checkpoint(tmp_path / "gray.pt", 1)
    images, psnrs = {}, {}
    for precision in ("fp32", "bf16"):
        result_dir = tmp_path / precision
        argv = ["--n_colors", "1", "--weights", str(ckpt), "--input_dir", str(folder), "--test_noiseL", "25"]
        argv += ["--result_dir", str(result_dir), "--save_images", "--cpu", "--precision", precision]
        assert test_cli.main(argv) == 0
        images[precision] = cv2.imread(str(next(result_dir.rglob("01.png"))), cv2.IMREAD_UNCHANGED)
        with open(result_dir / "summary.csv", newline="") as fh:
            psnrs[precision] = float(next(csv.DictReader(fh))["psnr"])
    assert not np.array_equal(images["bf16"], images["fp32"])
    assert _psnr(images["bf16"], images["fp32"]) > 40
    assert abs(psnrs["bf16"] - psnrs["fp32"]) < 0.1
