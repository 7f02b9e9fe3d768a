"""DBSN's self-supervised training through the one trainer, its staged recipes, and its test protocol.

What is checked against what: each stage's loss against the authors' formulas written out here (gray
``gray_train.py``/``gray_pretrain_mu.py``), which nets a stage changes (the others bit-identical), the
learning rates against the recipes, the blow-up guard against a batch built to fire it, the protocol's noise
against the authors' NumPy code (``dn_dataset.py``, with scipy's ``orth``) and its PSNR against scikit-image's,
and that training from noisy images never opens a clean one (an audit hook on ``open`` in a real process).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.linalg import orth
from skimage.metrics import peak_signal_noise_ratio

from adfnet.cli import test as test_cli
from adfnet.cli import train as train_cli
from adfnet.data.io import read_image, save_image
from adfnet.data.noise import build_noise, dbsn_test_noise
from adfnet.engine.config import TrainConfig
from adfnet.engine.dbsn import DBSNTrainer
from adfnet.evaluation.protocols import get_protocol
from conftest import SET12, SIDD_SAMPLES, TRAIN_GRAY, subprocess_env

TOY = {"mid_ch": 8, "br1_block_num": 1, "br2_block_num": 1, "sigma_mu_mid_ch": 4, "sigma_n_mid_ch": 4}
TOY_FLAGS = ["--model_options", json.dumps(TOY), "--patch_size", "16", "--batch_size", "2", "--cpu"]
TOY_FLAGS += ["--n_threads", "0", "--epochs", "1", "--test_every", "2"]


def toy_config(tmp: Path, stage: str, task: str = "synthetic", **changes: object) -> TrainConfig:
    """A gray toy DBSN run of one stage on the bundled Train400 crops, validated on a 32x32 crop of Set12/01."""
    val = tmp / "val"
    if not val.is_dir():
        save_image(val / "01.png", read_image(SET12 / "01.png", 1)[:32, :32])
    values = {
        "model": "dbsn",
        "n_colors": 1,
        "model_options": TOY,
        "task": task,
        "dir_data": str(TRAIN_GRAY if task == "synthetic" else val),
        "data_val": str(val),
        "noiseL": 25,
        "patch_size": 16,
        "batch_size": 2,
        "test_every": 1,
        "epochs": 1,
        "cpu": True,
        "n_threads": 0,
        "dir_experiment": str(tmp / "runs"),
        "save": f"{stage}_{task}",
        "dbsn_stage": stage,
        "lr": 1e-3,
        "lr_sigma_mu": 2e-3,
        "lr_sigma_n": 3e-3,
    }
    return TrainConfig(**{**values, **changes})


def batch(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(2, 1, 16, 16, generator=g) + 0.1 * torch.randn(2, 1, 16, 16, generator=g)).float()


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("stage", ["mu", "sigma", "all"])
def test_each_stage_trains_its_nets_with_the_authors_loss(tmp_path: Path, stage: str) -> None:
    trainer = DBSNTrainer(toy_config(tmp_path, stage))
    net, noisy = trainer.net, batch()
    groups = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert groups == {"dbsn": 1e-3, "sigma_mu": 2e-3, "sigma_n": 3e-3}  # the authors' three Adams, as groups
    with torch.no_grad():  # the authors' gray formulas, written out
        mu, features = net.dbsn(noisy)
        sigma_mu = net.sigma_mu(features) ** 2
        s_n = net.sigma_n(noisy).mean(dim=(2, 3), keepdim=True)  # gaussian: one level per image (training form)
        sigma_y = sigma_mu + (F.softplus(s_n - 4) + 1e-3) ** 2
        expected = {
            "mu": ((mu - noisy) ** 2).mean(),
            "sigma": ((noisy - mu) ** 2 / sigma_y + sigma_y.log()).mean(),  # MAPLoss_Pretrain, gray
            "all": ((noisy - mu) ** 2 / sigma_y + sigma_y.log()).mean(),  # MAPLoss
        }[stage] / (2 * noisy.shape[0])
        assert torch.allclose(trainer.compute_loss(noisy, noisy), expected, rtol=1e-5, atol=1e-7)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert trainer.train_step(noisy, torch.zeros_like(noisy)) is not None  # "clean" is never read
    changed = {part for k, v in net.state_dict().items() if not torch.equal(v, before[k]) for part in [k.split(".")[0]]}
    assert changed == {"mu": {"dbsn"}, "sigma": {"sigma_mu", "sigma_n"}, "all": {"dbsn", "sigma_mu", "sigma_n"}}[stage]


@pytest.mark.usefixtures("one_thread")
def test_a_batch_that_fires_the_blow_up_guard_is_skipped(tmp_path: Path) -> None:
    """The authors' MAPLoss reads 0 above 1e8 and still steps; here the batch counts as non-finite and is skipped."""
    trainer = DBSNTrainer(toy_config(tmp_path, "all"))
    with torch.no_grad():  # sigma_y ~ 1e-6 (the floor), residuals ~ 1e2: d^2 / sigma_y ~ 1e10 > 1e8
        trainer.net.sigma_mu.conv[-1].weight.zero_()
        trainer.net.sigma_mu.conv[-1].bias.zero_()
        trainer.net.sigma_n.conv_final.bias.fill_(-100.0)
    noisy = 100.0 * torch.ones(2, 1, 16, 16)
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    with pytest.warns(RuntimeWarning, match="batch skipped"):
        assert trainer.train_step(noisy, noisy) is None
    assert all(torch.equal(v, before[k]) for k, v in trainer.net.state_dict().items())
    assert "MAPLoss's blow-up guard fired" in (trainer.run_dir / "log.txt").read_text()


@pytest.mark.usefixtures("one_thread")
def test_validation_is_psnr_with_clean_references_else_the_loss(tmp_path: Path) -> None:
    synthetic = DBSNTrainer(toy_config(tmp_path, "all"))
    noisy, clean, _ = synthetic.val_set[0]
    with torch.no_grad():
        out = synthetic.net(noisy[None]).clamp(0, 1)  # the MAP estimate, the authors' test form
    mse = ((torch.round(out * 255) - torch.round(clean[None] * 255)) ** 2).double().mean()
    assert synthetic.validate() == pytest.approx(10 * math.log10(255**2 / float(mse)), abs=1e-3)
    assert synthetic.val_metric == "PSNR"
    noisy_only = DBSNTrainer(toy_config(tmp_path, "all", task="noisy"))
    image = noisy_only.val_set[0][0][None]
    with torch.no_grad():
        expected = -float(noisy_only.compute_loss(image, image))  # the training loss (batch 1), negated
    assert noisy_only.validate() == pytest.approx(expected, rel=1e-5)
    assert noisy_only.val_metric == "neg_loss"


NOISE_AUDIT = """
import json, os, sys
opened = []
sys.addaudithook(lambda event, args: opened.append(os.fsdecode(args[0])) if event == "open" and isinstance(
    args[0], (str, bytes, os.PathLike)) else None)
from adfnet.cli import train
code = train.main(sys.argv[1:])
print("OPENED " + json.dumps(sorted(set(opened))))
sys.exit(code)
"""


def test_training_from_noisy_images_never_opens_a_clean_one(tmp_path: Path) -> None:
    """The bundled SIDD pairs hold the clean GT beside NOISY; the whole staged recipe must read NOISY only."""
    argv = ["--config", "dbsn_rgb_hg", "--dir_data", str(SIDD_SAMPLES / "NOISY"), *TOY_FLAGS, "--n_val", "2"]
    argv += ["--dir_experiment", str(tmp_path), "--save", "photos"]
    done = subprocess.run(
        [sys.executable, "-c", NOISE_AUDIT, *argv], capture_output=True, text=True, env=subprocess_env(), timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    opened = json.loads(done.stdout.split("OPENED ", 1)[1])
    images = [p for p in opened if Path(p).suffix.lower() in (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")]
    noisy = {str(p) for p in (SIDD_SAMPLES / "NOISY").iterdir()}
    assert set(images) == noisy  # every noisy image read (probe and decode), nothing else: no GT, no test set
    assert not [p for p in opened if "GT" in Path(p).parts]
    assert (tmp_path / "photos/3_all/model/model_latest.pt").is_file()


def test_dbsn_protocol_draws_the_authors_noise_and_scores_as_skimage() -> None:
    """The authors' dn_dataset.py (split 'val'), written out with NumPy and scipy, and skimage's PSNR."""
    clean = torch.rand(1, 3, 7, 9, generator=torch.Generator().manual_seed(3))
    x = clean[0].numpy()
    np.random.seed(0)
    awgn = x + np.random.normal(0, 25 / 255.0, x.shape).astype(np.float32)
    np.random.seed(0)
    n1 = np.random.randn(*x.shape) * (40 / 255.0) * x
    np.random.seed(0)
    hg = x + (n1 + np.random.randn(*x.shape) * (10 / 255.0)).astype(np.float32)
    np.random.seed(0)
    d = np.diag(np.random.rand(3))
    np.random.seed(0)
    u = orth(np.random.rand(3, 3))
    covariance = np.abs((75 / 255.0) ** 2 * (u.T @ d @ u))
    np.random.seed(0)
    mg = x + np.random.multivariate_normal([0, 0, 0], covariance, (7, 9)).astype(np.float32).transpose(2, 0, 1)
    for noise, expected in (
        (build_noise("awgn", [25]), awgn),
        (build_noise("hg_dbsn", [40, 10]), hg),
        (build_noise("mg"), mg),
    ):
        assert np.array_equal(dbsn_test_noise(clean, noise)[0].numpy(), expected), noise
    protocol = get_protocol("dbsn")
    assert protocol.default_seed == 0 and protocol.make_noisy(clean, build_noise("mg"), 0).equal(
        torch.from_numpy(mg)[None]
    )
    out = (torch.from_numpy(awgn)[None] * 0.9).clamp(0, 1)
    reference = peak_signal_noise_ratio(x, out[0].numpy(), data_range=1.0)
    assert protocol.score(out, clean)[0] == pytest.approx(reference, abs=1e-4)
    with pytest.raises(ValueError, match="DBSN's test code draws awgn, hg_dbsn"):
        dbsn_test_noise(clean, build_noise("hg", [40, 10]))


@pytest.mark.usefixtures("one_thread")
def test_staged_recipe_then_adfnet_test_under_dbsn_protocol(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The gray recipe's two stages at toy scale on clean images with synthetic noise (an experiment), resumed as a
    whole, then adfnet-test reading the configuration from the checkpoint, DBSN's published rows beside it."""
    argv = ["--config", "dbsn_gray_awgn", "--task", "synthetic", "--dir_data", str(TRAIN_GRAY), *TOY_FLAGS]
    argv += ["--data_val", str(SET12), "--n_val", "1", "--dir_experiment", str(tmp_path), "--save", "g"]
    assert train_cli.main(argv) == 0
    weights = tmp_path / "g/2_all/model/model_latest.pt"
    mu_first = torch.load(tmp_path / "g/1_mu/model/model_latest.pt", weights_only=True)
    assert "initialised from" in (tmp_path / "g/2_all/log.txt").read_text()  # stage 2 starts from stage 1
    assert (
        torch.load(weights, weights_only=True)["dbsn.dbsn_head.0.weight"].shape
        == mu_first["dbsn.dbsn_head.0.weight"].shape
    )
    capsys.readouterr()
    assert train_cli.main([*argv, "--resume", "-1"]) == 0  # both stages complete: kept as they are
    assert capsys.readouterr().out.count("complete (1 epochs), kept as it is") == 2
    bsd = tmp_path / "BSD68"
    save_image(bsd / "test001.png", read_image(SET12 / "02.png", 1)[:40, :48])
    code = test_cli.main(
        ["--weights", str(weights), "--input_dir", str(bsd), "--test_noiseL", "25", "--protocol", "dbsn"]
        + ["--result_dir", str(tmp_path / "res"), "--cpu"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "(dbsn protocol)" in out and "28.8800" in out and "29.3800" in out and "29.4100" in out
    assert "'mid_ch': 8" in out  # the configuration came from the checkpoint's record
