"""DBSN's self-supervised training through the one trainer, its staged recipes, and its test protocol.

What is checked against what: each stage's loss against the authors' formulas written out here (gray
``gray_train.py``/``gray_pretrain_mu.py``), which nets a stage changes (the others bit-identical), the
learning rates against the recipes, the blow-up guard against a batch built to fire it, the protocol's noise
against the authors' NumPy code (``dn_dataset.py``, with scipy's ``orth``) and its PSNR against scikit-image's,
and that training from noisy images never opens a clean one (an audit hook on ``open`` in a real process).
"""

from __future__ import annotations

import csv
import dataclasses
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

from adfnet.checkpoint import load_checkpoint, weights_with_architecture
from adfnet.cli import test as test_cli
from adfnet.cli import train as train_cli
from adfnet.data.io import read_image, save_image
from adfnet.data.noise import LearnedNoise, build_noise, dbsn_test_noise
from adfnet.engine.config import TrainConfig
from adfnet.engine.dbsn import DBSNTrainer, learned_noise
from adfnet.engine.options import parse_options
from adfnet.engine.trainer import Trainer
from adfnet.evaluation.protocols import get_protocol
from adfnet.models import build_model
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
    with open(tmp_path / "g/summary.csv", newline="") as fh:  # the recipe's summary: clean references, PSNR
        rows = list(csv.DictReader(fh))
    assert [(r["step"], r["metric"], r["what"]) for r in rows] == [  # no noisy row: the noise is drawn in training
        ("1_mu", "PSNR", "train dbsn"),
        ("2_all", "PSNR", "train dbsn from 1_mu:latest"),
    ]
    assert all(5 < float(r["best"]) < 60 for r in rows)
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


# ------------------------------------------------------------------------------------------------ distillation
def test_learned_noise_draws_the_covariance_the_sigma_n_net_predicts() -> None:
    """sigma_n set to a known constant factor P (colour MG: 6 entries of an upper-triangular P; gray: one level):
    the drawn noise's covariance over many pixels is P P^T (x E[d^2] of the [0.9, 1.1) spread)."""
    spread = (1.1**3 - 0.9**3) / (3 * 0.2)  # E[d^2], d uniform in [0.9, 1.1)
    colour = build_model("dbsn", 3, **TOY)  # multivariate_gaussian: 6 outputs, no softplus
    with torch.no_grad():
        colour.sigma_n.conv_final.weight.zero_()
        colour.sigma_n.conv_final.bias.copy_(torch.tensor([0.2, 0.05, -0.03, 0.1, 0.02, 0.15]))
    p = torch.tensor([[0.2, 0.05, -0.03], [0.0, 0.1, 0.02], [0.0, 0.0, 0.15]], dtype=torch.float64)
    noise = LearnedNoise("learned", (), covariance=colour.noise_covariance, source="toy.pt")
    clean = torch.full((1, 3, 300, 300), 0.5)
    drawn = (noise(clean, seed=4) - clean)[0].reshape(3, -1).double()
    empirical, expected = drawn @ drawn.T / drawn.shape[1], p @ p.T
    d2 = float(empirical.trace() / expected.trace())  # one level factor d per image
    assert 0.81 <= d2 <= 1.21 and noise.describe() == "learned(toy.pt)"
    assert torch.allclose(empirical / d2, expected, atol=0.02 * float(expected.abs().max()))
    gray = build_model("dbsn", 1, **TOY)  # sigma_n's output 3e-4 + 0 at init: std softplus(3e-4 - 4) + 1e-3
    std = float(F.softplus(torch.tensor(3e-4 - 4)) + 1e-3)
    learned = LearnedNoise("learned", (), covariance=gray.noise_covariance)
    variances = torch.stack([(learned(clean[:, :1], seed=s) - clean[:, :1]).var() for s in range(40)])
    assert float(variances.mean()) == pytest.approx(std**2 * spread, rel=0.02)  # 40 levels d: E[d^2] shows
    with pytest.raises(ValueError, match="needs that network"):
        build_noise("learned")(clean)


def test_learned_noise_needs_its_dbsn(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--noise learned draws the noise a DBSN learned.*--teacher"):
        TrainConfig(noise="learned")
    weights = tmp_path / "dncnn.pt"
    torch.save(weights_with_architecture(build_model("dncnn", 1, depth=3, channels=8)), weights)
    with pytest.raises(ValueError, match="give that DBSN's checkpoint as --teacher"):
        learned_noise([str(weights)])


def _noisy_folder(tmp: Path) -> Path:
    """Four Train400 crops with AWGN 25, as 8-bit PNGs: a user's noisy photos (their clean versions are not here)."""
    folder = tmp / "noisy_photos"
    g = torch.Generator().manual_seed(0)
    for path in sorted(TRAIN_GRAY.iterdir())[:4]:
        clean = torch.from_numpy(read_image(path, 1))[:64, :64]
        save_image(folder / path.name, (clean + 25 / 255 * torch.randn(clean.shape, generator=g)).clamp(0, 1).numpy())
    return folder


@pytest.mark.usefixtures("one_thread")
def test_noisy_photos_to_dbsn_to_any_student(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The user's flow at toy scale: D-BSN on noisy images alone (its two gray stages), then distilled into each
    network of the project, the ADFNet student evaluated with DBSN's rows beside it."""
    photos = _noisy_folder(tmp_path)
    val = tmp_path / "val"
    save_image(val / "01.png", read_image(SET12 / "01.png", 1)[:32, :32])
    common = [*TOY_FLAGS, "--dir_experiment", str(tmp_path / "runs"), "--n_colors", "1"]
    assert train_cli.main(["--config", "dbsn_gray_awgn", "--dir_data", str(photos), *common, "--save", "d"]) == 0
    dbsn = tmp_path / "runs/d/2_all/model/model_latest.pt"
    students = {"adfnet": {}, "sadnet": {"n_channel": 8, "offset_channel": 8}, "mwcnn": {}, "dncnn": {"depth": 3}}
    for model, options in students.items():
        argv = ["--config", "distill_dbsn", "--model", model, "--teacher", str(dbsn), "--dir_data", str(TRAIN_GRAY)]
        argv += ["--teacher_inputs", str(photos), "--teacher_cache", str(tmp_path / "targets"), "--data_val", str(val)]
        argv += [*common, "--model_options", json.dumps(options), "--save", model]
        assert train_cli.main(argv) == 0, model
        log = (tmp_path / "runs" / model / "log.txt").read_text()
        assert "teacher targets: 4 pair(s)" in log and "epoch 1: loss" in log, model
    trainer = Trainer(dataclasses.replace(parse_options(argv), save="check"))  # the last student's run, rebuilt
    assert isinstance(trainer.noise, LearnedNoise) and trainer.noise.source == "model_latest.pt"
    patch = torch.rand(1, 1, 16, 16)
    teacher, _ = load_checkpoint(dbsn)
    with torch.no_grad():  # the synthesized pairs' noise is the teacher's sigma_n on the clean image
        assert torch.equal(trainer.noise.covariance(patch), teacher.noise_covariance(patch))
    capsys.readouterr()
    student = tmp_path / "runs/adfnet/model/model_latest.pt"
    code = test_cli.main(
        ["--weights", str(student), "--input_dir", str(val), "--test_noiseL", "25", "--cpu"]
        + ["--result_dir", str(tmp_path / "res"), "--protocol", "dbsn"]
    )
    assert code == 0


@pytest.mark.usefixtures("one_thread")
def test_a_time_budget_is_each_stages_and_resume_continues_the_recipe(tmp_path: Path) -> None:
    """--time_budget stops every stage in its first epoch (checkpoint epoch 0); --resume -1 then resumes each stage
    (nothing left to train) instead of refusing their folders, and the stop message continues the whole recipe."""
    argv = ["--config", "dbsn_gray_awgn", "--dir_data", str(TRAIN_GRAY), *TOY_FLAGS, "--test_every", "1000"]
    argv += ["--n_val", "1", "--time_budget", "0.0005", "--dir_experiment", str(tmp_path), "--save", "b"]
    assert train_cli.main(argv) == 0
    for stage in ("1_mu", "2_all"):
        log = (tmp_path / "b" / stage / "log.txt").read_text()
        assert "stopped: the time budget is spent" in log and "--save b --resume -1" in log, stage
    with open(tmp_path / "b/summary.csv", newline="") as fh:  # noisy images alone: the negated loss, named
        rows = list(csv.DictReader(fh))
    assert [(r["step"], r["metric"], r["best"] == r["last"]) for r in rows] == [
        ("1_mu", "neg_loss", True),
        ("2_all", "neg_loss", True),
    ]
    assert train_cli.main(argv) == 1  # without --resume -1 the stages start anew: a used folder is refused
    assert train_cli.main([*argv, "--resume", "-1"]) == 0
    assert "nothing to train" in (tmp_path / "b/2_all/log.txt").read_text()


def test_a_staged_recipe_refuses_what_applies_to_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for flags in (["--test_only"], ["--resume", "3"]):
        argv = ["--config", "dbsn_gray_awgn", "--dir_experiment", str(tmp_path), "--save", "s", *flags]
        assert train_cli.main(argv) == 1
        assert f"error: {' '.join(flags)} applies to one run: with a staged recipe" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.usefixtures("one_thread")
def test_the_measurement_runs_both_chains_at_toy_scale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """experiments/dbsn.py end to end on a few bundled images: its two AWGN arms side by side (each trains only),
    then the scoring, and the SIDD chain; a second call finds every step done and only prints the tables."""
    from experiments import dbsn as measure

    folders = {name: tmp_path / name for name in ("train", "clean", "sidd/NOISY", "sidd/GT")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    for path in sorted(TRAIN_GRAY.iterdir())[:3]:
        (folders["train"] / path.name).write_bytes(path.read_bytes())
    for path in sorted(SET12.iterdir())[:2]:  # clean images of the distillation and the students' validation
        (folders["clean"] / path.name).write_bytes(path.read_bytes())
    for name in ("10.png", "11.png"):
        for kind in ("NOISY", "GT"):
            (folders[f"sidd/{kind}"] / name).write_bytes((SIDD_SAMPLES / kind / name).read_bytes())
    out = tmp_path / "m"
    common = ["--budget", "0.001", "--train_dir", str(folders["train"]), "--clean_dir", str(folders["clean"])]
    common += ["--test_dirs", str(SET12), "--limit", "1", "--out", str(out)]
    assert measure.main(["awgn-dbsn", *common]) == 0 and measure.main(["awgn-supervised", *common]) == 0
    assert not (out / "dbsn_table.md").exists()  # the arms train; scoring is awgn's
    assert measure.main(["awgn", "sidd", *common, "--sidd_dir", str(tmp_path / "sidd")]) == 0
    table = (out / "dbsn_table.md").read_text()
    for row in ("| D-BSN (noisy images only) |", "| ADFNet distilled from D-BSN |", "| D-BSN (MAP output) |"):
        assert row in table
    assert "28.88 (D-BSN)" in table and "29.41 (N2C)" in table  # DBSN's published BSD68 numbers beside ours
    commands = (out / "commands.sh").read_text().splitlines()
    assert all(line.startswith((".venv/bin/adfnet-train ", ".venv/bin/adfnet-test ")) for line in commands)
    assert len(commands) == 4 + 6  # 3 training runs + the SIDD recipe; 3 networks x 2 protocols scored
    capsys.readouterr()
    assert measure.main(["awgn", "sidd", *common, "--sidd_dir", str(tmp_path / "sidd")]) == 0
    assert (out / "commands.sh").read_text().splitlines() == commands  # nothing ran again
