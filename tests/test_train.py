"""End-to-end toy training (gray, RGB, real) with the real ADFNet on CPU, the scripts, and the training step."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train
from adfnet.checkpoint import load_weights
from adfnet.data.io import read_image, save_image
from adfnet.data.sidd import generate_patches
from adfnet.engine.options import parse_options
from adfnet.engine.trainer import NonFiniteLossError, Trainer, mixup, validation_points
from adfnet.models import build_model
from conftest import ROOT, toy_flags, toy_run
from conftest import TRAIN_GRAY as GRAY
from conftest import TRAIN_RGB as RGB

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# A stand-in interpreter for the scripts: prints the command line it was given as JSON, which the test then
# parses with train.py's own parser (so a script test runs no training and imports nothing heavy).
ECHO_ARGV = "import json, sys; print(json.dumps(sys.argv[1:]))"


pytestmark = pytest.mark.usefixtures("one_thread")  # toy runs are latency-bound (conftest)


@pytest.fixture(scope="module")
def val_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny validation sets (40x32 crops of Set12 / McMaster) so that validation takes milliseconds."""
    root = tmp_path_factory.mktemp("val")
    save_image(root / "gray/01.png", read_image(ROOT / "datasets/testsets/Set12/01.png", 1)[:32, :40])
    save_image(root / "rgb/1.png", read_image(ROOT / "datasets/testsets/McMaster/1.tif", 3)[:32, :40])
    return {"gray": root / "gray", "rgb": root / "rgb"}


def toy(tmp: Path, val: Path, *extra: str) -> list[str]:
    return toy_run(tmp, "--epochs", "1", *extra, val=val, test_every=3)


def run_script(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / name), *args], capture_output=True, text=True, env=env or ENV, timeout=300
    )


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every TensorBoard scalar of a run: tag -> [(step, value)]."""
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def check_run(run: Path, n_colors: int, model: str = "adfnet", lr: float = 1e-4) -> None:
    """Weights in the official format, the log, and TensorBoard scalars equal to the checkpoint's history
    (one epoch at learning rate ``lr``)."""
    for name in ("model_best.pt", "model_latest.pt"):
        state = torch.load(run / "model" / name, map_location="cpu", weights_only=True)
        assert "head.weight" in state  # raw state_dict, official key names
        load_weights(build_model(model, n_colors), state)
    assert "epoch 1: loss" in (run / "log.txt").read_text()
    state = torch.load(run / "checkpoint_latest.pt", map_location="cpu", weights_only=True)
    (epoch,) = state["history"]
    tb = scalars(run)
    losses = [value for _, value in tb["train/loss"]]
    assert [step for step, _ in tb["train/loss"]] == list(range(1, state["iteration"] + 1))
    assert tb["train/epoch_loss"] == [(1, pytest.approx(epoch["loss"], rel=1e-6))]
    assert np.mean(losses) == pytest.approx(epoch["loss"], rel=1e-5)
    assert tb["train/lr"] == [(1, pytest.approx(lr, rel=1e-6))] and epoch["lr"] == pytest.approx(lr)
    assert tb["val/psnr"][-1] == (state["iteration"], pytest.approx(epoch["psnr"], rel=1e-6))
    assert max(value for _, value in tb["val/psnr"]) == pytest.approx(state["best"]["psnr"], rel=1e-6)


def test_gray_and_rgb_scripts_train_end_to_end(tmp_path: Path, val_dirs: dict[str, Path]) -> None:
    common = [
        "--epochs",
        "1",
        "--test_every",
        "2",
        *toy_flags(tmp_path),
    ]
    done = run_script("train_adfnet_gray_n50.sh", "--dir_data", str(GRAY), "--data_val", str(val_dirs["gray"]), *common)
    assert done.returncode == 0, done.stderr[-3000:]
    check_run(tmp_path / "adfnet_gray_n50", 1)
    assert (tmp_path / "adfnet_gray_n50/results/01_adfnet_N50_DN.png").is_file()  # --save_results in the script
    done = run_script("train_adfnet_rgb_n30.sh", "--dir_data", str(RGB), "--data_val", str(val_dirs["rgb"]), *common)
    assert done.returncode == 0, done.stderr[-3000:]
    check_run(tmp_path / "adfnet_rgb_n30", 3)


def test_adfnet_l_on_mix_end_to_end(tmp_path: Path, val_dirs: dict[str, Path]) -> None:
    """ADFNet* = ADFNet-L on the MIX folders (here: a few bundled images; BSD400 is gray, as the real one)."""
    for folder, source in (("WED", RGB), ("BSD400", GRAY)):
        (tmp_path / "MIX" / folder).mkdir(parents=True)
        for f in sorted(source.iterdir())[:2]:
            shutil.copy(f, tmp_path / "MIX" / folder / f.name)
    done = run_script(
        "train_adfnet-L_n50.sh",
        "--data_val",
        str(val_dirs["rgb"]),
        "--epochs",
        "1",
        "--test_every",
        "1",
        *toy_flags(tmp_path),
        env={**ENV, "DATA_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DIV2K, Flickr2K" in done.stderr and "2 of 4 training images are gray" in done.stderr
    check_run(tmp_path / "adfnet-L_n50", 3, "adfnet_l")


def test_real_noise_end_to_end_from_bundled_samples(tmp_path: Path) -> None:
    patches = tmp_path / "patches"
    generate_patches(ROOT / "datasets/real/SIDD_samples", patches, ps=32, num_patches=1, seed=0)
    done = run_script(
        "train_adfnet_real.sh",
        "--dir_data",
        str(patches),
        "--data_val",
        str(patches),
        "--n_val",
        "2",
        "--epochs",
        "1",
        "--patch_size",
        "16",
        "--batch_size",
        "4",
        "--n_threads",
        "0",
        "--cpu",
        "--val_after_epoch",
        "0",
        "--mixup_after_epoch",
        "0",
        "--dir_experiment",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "ADFNet"
    check_run(run, 3, lr=1e-4 / 3)  # warm-up epoch 1 of 3
    state = torch.load(run / "checkpoint_latest.pt", map_location="cpu", weights_only=True)
    assert state["iteration"] == 3  # 12 patches / batch 4
    assert len(scalars(run)["val/psnr"]) == 3  # validation 3x per epoch
    assert len(list((run / "results").glob("*.png"))) == 2
    assert state["optimizer"]["param_groups"][0]["weight_decay"] == 1e-8


SCRIPTS = {
    "train_adfnet_gray_n15.sh": {"n_colors": 1, "noiseL": 15, "epochs": 950, "lr_decay": 220, "model": "adfnet"},
    "train_adfnet_gray_n25.sh": {"n_colors": 1, "noiseL": 25, "epochs": 950, "lr_decay": 220, "model": "adfnet"},
    "train_adfnet_gray_n50.sh": {"n_colors": 1, "noiseL": 50, "epochs": 950, "lr_decay": 220, "model": "adfnet"},
    "train_adfnet_rgb_n10.sh": {"n_colors": 3, "noiseL": 10, "epochs": 1000, "lr_decay": 200, "model": "adfnet"},
    "train_adfnet_rgb_n30.sh": {"n_colors": 3, "noiseL": 30, "epochs": 1000, "lr_decay": 200, "model": "adfnet"},
    "train_adfnet_rgb_n50.sh": {"n_colors": 3, "noiseL": 50, "epochs": 1000, "lr_decay": 200, "model": "adfnet"},
    "train_adfnet_rgb_n70.sh": {"n_colors": 3, "noiseL": 70, "epochs": 1000, "lr_decay": 200, "model": "adfnet"},
    "train_adfnet-L_n50.sh": {
        "n_colors": 3,
        "noiseL": 50,
        "epochs": 1000,
        "lr_decay": 200,
        "model": "adfnet_l",
        "data_train": "MIX",
        "test_every": None,
    },  # None: the official 2N-sample epoch
    "train_adfnet_real.sh": {
        "n_colors": 3,
        "epochs": 160,
        "decay_type": "warmup_cosine",
        "warmup_epochs": 3,
        "lr_min": 1e-6,
        "weight_decay": 1e-8,
        "loss": "1*Charbonnier",
        "clamp_output": True,
        "mixup_after_epoch": 5,
        "val_per_epoch": 3,
        "val_after_epoch": 5,
        "task": "paired",
    },
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_command_lines_give_the_paper_recipe(script: str, tmp_path: Path) -> None:
    shim = tmp_path / "python"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "{ECHO_ARGV}" "$@"\n')
    shim.chmod(0o755)
    for sub in ("DIV2K", "MIX", "SIDD/train/lq", "SIDD/val/lq"):
        (tmp_path / sub).mkdir(parents=True)
    env = {
        **ENV,
        "PYTHON": str(shim),
        "DATA_DIR": str(tmp_path),
        "TRAIN_DIR": str(tmp_path / "SIDD/train"),
        "VAL_DIR": str(tmp_path / "SIDD/val"),
    }
    done = run_script(script, env=env)
    assert done.returncode == 0, done.stderr
    argv = json.loads(done.stdout)
    assert argv[0] == str(ROOT / "train.py")
    args = vars(parse_options(argv[1:]))
    expected = {
        "patch_size": 128,
        "batch_size": 16,
        "lr": 1e-4,
        "gamma": 0.5,
        "optimizer": "ADAM",
        "beta1": 0.9,
        "beta2": 0.999,
        "epsilon": 1e-8,
        "loss": "1*MSE",
        "decay_type": "step",
        "weight_decay": 0.0,
        "save_results": True,
        "test_every": 1000,
    }
    expected.update(SCRIPTS[script])
    assert {k: args[k] for k in expected} == expected
    # extra arguments are passed through and win
    done = run_script(script, "--epochs", "2", "--batch_size", "4", env=env)
    args = parse_options(json.loads(done.stdout)[1:])
    assert (args.epochs, args.batch_size) == (2, 4)
    # without the data, the script says what to download and where
    done = run_script(script, env={**env, "DATA_DIR": str(tmp_path / "no"), "TRAIN_DIR": str(tmp_path / "no")})
    assert done.returncode == 1 and (
        "DIV2K_train_HR" in done.stderr or "WED" in done.stderr or "SIDD_Medium_Srgb" in done.stderr
    )


def test_loss_decreases_on_a_fixed_batch(tmp_path: Path, val_dirs: dict[str, Path]) -> None:
    trainer = Trainer(parse_options(toy(tmp_path, val_dirs["gray"], "--lr", "1e-3")))
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 1, 16, 16, generator=gen)
    noisy = clean + torch.randn(2, 1, 16, 16, generator=gen) * 50 / 255
    losses = [trainer.train_step(noisy, clean) for _ in range(30)]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses


def test_equal_seeds_give_equal_losses(tmp_path: Path, val_dirs: dict[str, Path]) -> None:
    """Same seed: same losses and weights, whatever the number of DataLoader workers; other seed: other losses."""
    histories, weights = [], []
    for i, extra in enumerate([(), ("--n_threads", "2"), ("--seed", "2")]):
        args = toy(tmp_path, val_dirs["gray"], "--save", f"r{i}", *extra)
        psnr = train.main(args)
        assert np.isfinite(psnr)
        state = torch.load(tmp_path / f"r{i}/checkpoint_latest.pt", map_location="cpu", weights_only=True)
        histories.append([h["loss"] for h in state["history"]])
        weights.append(state["model"]["tail.weight"])
    assert histories[0] == histories[1] and torch.equal(weights[0], weights[1])
    assert histories[0] != histories[2]
    # --test_only on the best weights reproduces the validation PSNR (the validation noise is seeded)
    best = tmp_path / "r0/model/model_best.pt"
    again = train.main(toy(tmp_path, val_dirs["gray"], "--save", "t", "--test_only", "--pre_train", str(best)))
    state = torch.load(tmp_path / "r0/checkpoint_latest.pt", map_location="cpu", weights_only=True)
    assert again == pytest.approx(state["best"]["psnr"], abs=1e-9)


def test_non_finite_losses_are_skipped_then_stop(tmp_path: Path, val_dirs: dict[str, Path]) -> None:
    trainer = Trainer(parse_options(toy(tmp_path, val_dirs["gray"], "--max_nonfinite", "3")))
    before = trainer.net.tail.weight.detach().clone()
    bad = torch.full((2, 1, 16, 16), float("nan"))
    with pytest.warns(RuntimeWarning, match="non-finite loss"):
        assert trainer.train_step(bad, bad) is None
        assert trainer.train_step(bad, bad) is None
    assert torch.equal(trainer.net.tail.weight, before)  # skipped: no update
    good = torch.rand(2, 1, 16, 16)
    assert trainer.train_step(good, good) is not None and trainer.nonfinite == 0
    with pytest.warns(RuntimeWarning), pytest.raises(NonFiniteLossError, match="3 non-finite losses in a row"):
        for _ in range(3):
            trainer.train_step(bad, bad)


@pytest.mark.parametrize(
    "line",
    [
        "--n_GPUs 1 --model adfnet --save adfnet_n15 --noiseL 15 --patch_size 128 --loss 1*MSE --lr 1e-4 "
        "--save_results",
        "--n_GPUs 2 --model adfnet --save adfnet_n30 --noiseL 30 --patch_size 128 --loss 1*MSE --lr 1e-4 "
        "--save_results --epochs 1000",
        "--n_GPUs 2 --model adfnet --data_train MIX --save adfnet-L_n50 --noiseL 50 --patch_size 128 --loss 1*MSE "
        "--lr 1e-4 --save_results --epochs 1000",
    ],
)
def test_official_command_lines_parse_unchanged(line: str) -> None:
    args = parse_options(line.split())
    assert (args.model, args.patch_size, args.loss, args.lr, args.save_results) == ("adfnet", 128, "1*MSE", 1e-4, True)
    assert args.decay_type == "step" and args.gamma == 0.5 and args.batch_size == 16
    assert args.test_every == (None if "MIX" in line else 1000)  # MIX: the official epoch, 2 passes over the images


def test_mix_epoch_is_two_passes_over_the_images(tmp_path: Path, val_dirs: dict[str, Path]) -> None:
    """The official MIX epoch: 2N samples, ceil(2N / batch) iterations (about 1075 on the full MIX)."""
    for folder, files in (("WED", sorted(RGB.iterdir())[:2]), ("DIV2K", sorted(RGB.iterdir())[2:3])):
        (tmp_path / "MIX" / folder).mkdir(parents=True)
        for f in files:
            shutil.copy(f, tmp_path / "MIX" / folder / f.name)
    argv = [
        "--data_train",
        "MIX",
        "--dir_data",
        str(tmp_path),
        "--data_val",
        str(val_dirs["rgb"]),
        "--epochs",
        "1",
        *toy_flags(tmp_path),
        "--save",
        "mix",
    ]
    with pytest.warns(UserWarning, match="Flickr2K"):
        train.main(argv)
    state = torch.load(tmp_path / "mix/checkpoint_latest.pt", map_location="cpu", weights_only=True)
    assert state["iteration"] == 3  # 2 x 3 images / batch 2
    assert parse_options([*argv, "--test_every", "5"]).test_every == 5  # an explicit epoch length wins
    assert parse_options(["--data_train", "DIV2K"]).test_every == 1000


def test_default_workers_fit_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most the official 4, and no more than the usable CPUs (the DataLoader warns beyond them)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert parse_options([]).n_threads == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)), raising=False)
    assert parse_options([]).n_threads == 4
    assert parse_options(["--n_threads", "8"]).n_threads == 8


def test_training_from_another_folder_finds_the_bundled_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    trainer = Trainer(parse_options(["--n_colors", "1", "--n_val", "1", "--cpu", "--save", "run"]))  # default Set12
    assert trainer.val_set.files == [ROOT / "datasets/testsets/Set12/01.png"]  # type: ignore[attr-defined]
    assert Path(trainer.config.dir_data) == ROOT / "datasets" and (tmp_path / "experiment/run/model").is_dir()


def test_validation_points_and_mixup() -> None:
    assert validation_points(6000, 3) == {2000, 4000, 6000}  # the official 3 validations per epoch
    assert validation_points(1000, 1) == {1000} and validation_points(2, 3) == {1, 2}
    clean = torch.rand(4, 3, 8, 8)
    noisy = clean + 0.25
    mixed_noisy, mixed_clean = mixup(noisy, clean, np.random.default_rng(0))
    assert torch.allclose(mixed_noisy - mixed_clean, torch.full_like(clean, 0.25), atol=1e-6)  # same lambda on both
    assert not torch.allclose(mixed_clean, clean)
    again = mixup(noisy, clean, np.random.default_rng(0))
    assert torch.equal(again[0], mixed_noisy)  # drawn from the given generator: reproducible


def test_amp_bf16_step_runs_the_dcn_in_bfloat16_on_the_cpu(tmp_path: Path, val_dirs: dict[str, Path]) -> None:
    """--amp bf16 on the CPU: convs and the compiled DCN kernels run in bf16 (the DCN forms its sampling
    positions in float32; other backends, and CUDA, keep the DCN in fp32: tests/test_dcn.py), the
    weights stay fp32 and are updated."""
    import dcn

    trainer = Trainer(parse_options(toy(tmp_path, val_dirs["gray"], "--amp", "bf16")))
    dtypes: dict[str, torch.dtype] = {}

    def record(name: str):
        def hook(module: torch.nn.Module, inputs: object, output: torch.Tensor) -> None:
            dtypes.setdefault(name, output.dtype)

        return hook

    net = trainer.net
    net.head.register_forward_hook(record("conv"))
    next(m for m in net.modules() if isinstance(m, dcn.ModulatedDeformConvPack)).register_forward_hook(record("dcn"))
    before = net.tail.weight.detach().clone()
    clean = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    loss = trainer.train_step(clean + 0.1, clean)
    assert loss is not None and np.isfinite(loss)
    assert dtypes == {"conv": torch.bfloat16, "dcn": torch.bfloat16}
    assert net.tail.weight.dtype == torch.float32 and not torch.equal(net.tail.weight, before)


@pytest.mark.cuda
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_amp_step_on_cuda(tmp_path: Path, val_dirs: dict[str, Path], amp: str) -> None:
    """--amp on a CUDA device: one ADFNet training step of 128-px colour patches gives a finite loss, finite
    gradients and new weights (fp16 through the gradient scaler)."""
    argv = [a for a in toy(tmp_path, val_dirs["rgb"], "--amp", amp, "--n_colors", "3") if a != "--cpu"]
    trainer = Trainer(parse_options(argv))
    assert trainer.device.type == "cuda" and trainer.scaler.is_enabled() == (amp == "fp16")
    net = trainer.net
    before = [p.detach().clone() for p in net.parameters()]
    clean = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    loss = trainer.train_step(clean + 0.1 * torch.randn_like(clean), clean)
    assert loss is not None and np.isfinite(loss)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in net.parameters())
    assert sum(not torch.equal(a, p.detach()) for a, p in zip(before, net.parameters(), strict=True)) > 0
