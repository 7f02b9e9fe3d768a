"""The pictures of runs: test.py --save_comparison panels, --plot, and training's TensorBoard panels."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from adfnet.cli import test as test_cli
from adfnet.data.io import read_image
from adfnet.data.noise import add_awgn
from adfnet.engine.options import parse_options
from adfnet.engine.trainer import Trainer
from adfnet.evaluation import DEFAULT_SEEDS
from adfnet.figures import BOX_COLOUR, comparison_panel
from adfnet.imaging import image_to_tensor
from adfnet.metrics import psnr
from adfnet.models import build_model
from conftest import SET12, TRAIN_GRAY

# comparison_panel's layout for a 48x56 image (hand-computed from its rules): crop side min(48, 56) // 4 = 12,
# zoom 56 // 12 = 4 (the close-up is 48 px high), font max(12, 56 // 18) = 12 px, caption int(12 * 1.6) = 19 px,
# gaps of 6 px: width 3 * 56 + 2 * 6, height 48 + 6 + 48 + 19.
PANEL_48x56 = (48 + 6 + 48 + 19, 3 * 56 + 2 * 6)
# the same for the 32x40 validation crops: crop 8, zoom 5 (40 px), font 12, caption 19
PANEL_32x40 = (32 + 6 + 40 + 19, 3 * 40 + 2 * 6)
CAPTION = re.compile(r"^Noisy  (\d+\.\d\d) dB \| ADFNet  (\d+\.\d\d) dB \| Clean$")


def checksums(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def gray_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "gray.pt"
    torch.manual_seed(0)
    torch.save(build_model("adfnet", n_colors=1).state_dict(), path)
    return path


@pytest.fixture
def set12(tmp_path: Path) -> Path:
    """Two 48x56 crops in a folder named Set12 (so that the published numbers are found)."""
    folder = tmp_path / "Set12"
    folder.mkdir()
    for name in ("01.png", "02.png"):
        cv2.imwrite(str(folder / name), cv2.imread(str(SET12 / name), cv2.IMREAD_UNCHANGED)[100:148, 60:116])
    return folder


def test_save_comparison_panels_and_psnr_plot(tmp_path: Path, set12: Path, gray_weights: Path, one_thread, capsys):
    before = checksums(set12)
    out = tmp_path / "results"
    argv = ["--n_colors", "1", "--weights", str(gray_weights), "--input_dir", str(set12), "--test_noiseL", "15", "25"]
    argv += ["--save_images", "--save_comparison", "--plot", "--result_dir", str(out), "--cpu"]
    assert test_cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert checksums(set12) == before  # nothing written into the input set
    for sigma in (15, 25):
        rows = (out / f"Set12/sigma{sigma}/results.csv").read_text().splitlines()[1:]
        scores = {row.split(",")[0]: float(row.split(",")[2]) for row in rows}
        for name in ("01.png", "02.png"):
            path = out / f"Set12/sigma{sigma}/comparison" / name
            with Image.open(path) as im:
                caption = im.text["Description"]
                pixels = np.asarray(im.convert("RGB"))
            assert pixels.shape == (*PANEL_48x56, 3)
            # the same panel, rebuilt from independent pieces: the clean crop, the official noise, the saved output
            clean = image_to_tensor(read_image(set12 / name, 1))
            noisy = add_awgn(clean, sigma, seed=DEFAULT_SEEDS[1])
            ours = read_image(out / f"Set12/sigma{sigma}" / name, 1)
            assert np.array_equal(pixels, comparison_panel(noisy, ours, clean))
            noisy_db, ours_db = CAPTION.match(caption).groups()
            assert noisy_db == f"{psnr(noisy, clean):.2f}" and ours_db == f"{psnr(ours, clean):.2f}"
            assert float(ours_db) == pytest.approx(scores[name], abs=0.005)  # the number in results.csv
    plot = out / "Set12/psnr_per_sigma.png"
    assert f"plot: {plot}" in printed
    with Image.open(plot) as im:
        assert im.format == "PNG" and im.size == (600, 432)
        rgb = np.asarray(im.convert("RGB")).astype(int)
    # both series are drawn: ours in matplotlib's first colour, the published Set12 numbers in its second
    for colour in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)):
        assert (np.abs(rgb - colour).sum(axis=2) < 30).sum() > 100, colour


def test_comparison_outputs_inside_the_input_set_are_refused(tmp_path: Path, set12: Path, capsys):
    before = checksums(set12)
    argv = ["--n_colors", "1", "--weights", str(tmp_path / "never_loaded.pt"), "--input_dir", str(set12)]
    assert test_cli.main([*argv, "--save_comparison", "--result_dir", str(set12.parent), "--cpu"]) == 1
    assert "outputs could overwrite inputs" in capsys.readouterr().err
    assert checksums(set12) == before


def test_plot_without_matplotlib_is_refused_before_any_work(tmp_path: Path, set12: Path, monkeypatch, capsys):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else find_spec(name))
    argv = ["--n_colors", "1", "--weights", str(tmp_path / "never_loaded.pt"), "--input_dir", str(set12)]
    assert test_cli.main([*argv, "--plot", "--result_dir", str(tmp_path / "r"), "--cpu"]) == 1
    assert "--plot needs matplotlib: pip install matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "r" / "Set12").exists()


def test_training_writes_sample_panels_to_tensorboard(tmp_path: Path, one_thread):
    val = tmp_path / "val"
    val.mkdir()
    for name in ("01.png", "02.png", "03.png"):
        cv2.imwrite(str(val / name), cv2.imread(str(SET12 / name), cv2.IMREAD_UNCHANGED)[:32, :40])
    args = ["--n_colors", "1", "--dir_data", str(TRAIN_GRAY), "--data_val", str(val), "--epochs", "1"]
    args += ["--test_every", "2", "--patch_size", "16", "--batch_size", "2", "--cpu", "--n_threads", "0"]
    trainer = Trainer(parse_options([*args, "--dir_experiment", str(tmp_path), "--save", "run"]))
    trainer.fit()
    events = EventAccumulator(str(tmp_path / "run/tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert sorted(events.Tags()["images"]) == ["val/01", "val/02"]  # the first two validation images
    val_steps = [e.step for e in events.Scalars("val/psnr")]
    for tag in ("val/01", "val/02"):
        shots = events.Images(tag)
        assert [e.step for e in shots] == val_steps  # one panel per validation
        panel = np.asarray(Image.open(io.BytesIO(shots[-1].encoded_image_string)).convert("RGB"))
        assert panel.shape == (*PANEL_32x40, 3)
        # the third column is the clean image (gray, replicated to RGB) wherever the red crop box is not drawn
        column = panel[:32, 2 * (40 + 6) : 2 * (40 + 6) + 40]
        box = (column == BOX_COLOUR).all(axis=2)
        clean = cv2.imread(str(val / f"{tag[4:]}.png"), cv2.IMREAD_UNCHANGED)
        assert box.sum() < 0.2 * box.size and np.array_equal(column[~box], np.repeat(clean[~box, None], 3, axis=1))
