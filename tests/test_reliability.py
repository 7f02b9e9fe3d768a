"""Training never loses a run, never keeps non-finite weights, and says what happened."""

from __future__ import annotations

import hashlib
import math
import os
import re
import resource
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import train
from adfnet.checkpoint import load_weights
from adfnet.data.datasets import SyntheticNoiseTrain
from adfnet.data.noise import build_noise
from adfnet.engine import state as state_module
from adfnet.engine.options import parse_options
from adfnet.engine.runs import RunFolderError, resume_command
from adfnet.engine.state import atomic_save, load_training_state
from adfnet.engine.trainer import NonFiniteLossError
from adfnet.models import build_model
from conftest import ROOT, toy_run
from conftest import TRAIN_GRAY as GRAY

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
pytestmark = pytest.mark.usefixtures("one_thread")  # toy runs are latency-bound (conftest)


def toy(tmp: Path, *extra: str, save: str = "run", epochs: int = 1) -> list[str]:
    return toy_run(tmp, "--epochs", str(epochs), *extra, save=save)


def checksums(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.pt"))
    }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch toy run with model_<epoch>.pt files (copied by the tests that change it)."""
    tmp = tmp_path_factory.mktemp("runs")
    train.main(toy(tmp, "--save_models", epochs=2))
    return tmp


def copy_run(source: Path, tmp: Path) -> Path:
    import shutil

    shutil.copytree(source, tmp, dirs_exist_ok=True)
    return tmp


def test_a_used_run_folder_is_refused_unless_overwrite(finished_run: Path, tmp_path: Path) -> None:
    tmp = copy_run(finished_run, tmp_path)
    before = checksums(tmp / "run")
    with pytest.raises(RunFolderError) as err:
        train.main(toy(tmp))
    message = str(err.value)
    assert str(tmp / "run") in message and "checkpoint_latest.pt" in message
    assert "--resume -1" in message and "--save" in message and "--overwrite" in message
    assert checksums(tmp / "run") == before  # nothing touched
    done = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *toy(tmp)], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert done.returncode == 1 and "already holds a run" in done.stderr and "Traceback" not in done.stderr

    train.main(toy(tmp, "--overwrite"))
    assert not (tmp / "run/model/model_2.pt").exists()  # the old run's files are gone, not mixed in
    assert load_training_state(tmp / "run/checkpoint_latest.pt")["epoch"] == 1
    assert "--overwrite: deleted the 5 checkpoint(s)" in (tmp / "run/log.txt").read_text()


def test_resume_from_an_earlier_epoch_branches(finished_run: Path, tmp_path: Path) -> None:
    tmp = copy_run(finished_run, tmp_path)
    before = checksums(tmp / "run")
    train.main(toy(tmp, "--resume", "1", epochs=2))
    assert checksums(tmp / "run") == before  # best model, latest checkpoint, score, iteration: all kept
    branch = load_training_state(tmp / "run_from1/checkpoint_latest.pt")
    assert branch["epoch"] == 2 and [h["epoch"] for h in branch["history"]] == [2]
    log = (tmp / "run_from1/log.txt").read_text()
    assert f"{tmp / 'run'} holds later epochs and is left as it is" in log
    # the same command again makes another branch, it does not overwrite the first one
    train.main(toy(tmp, "--resume", "1", epochs=2))
    assert (tmp / "run_from1_2/checkpoint_latest.pt").is_file()
    with pytest.raises(FileNotFoundError, match=r"model_7.pt does not exist.*model_1.pt, model_2.pt"):
        train.main(toy(tmp, "--resume", "7", epochs=9))


def test_resume_refuses_other_settings_and_applies_a_new_lr(finished_run: Path, tmp_path: Path) -> None:
    tmp = copy_run(finished_run, tmp_path)
    before = checksums(tmp / "run")
    for flags, named in (
        (["--no_mfi"], "--no_mfi: the run used False, now True (the architecture)"),
        (["--optimizer", "SGD"], "--optimizer: the run used ADAM, now SGD (the saved optimiser)"),
        (["--noiseL", "25"], "--noiseL: the run used 50, now 25.0 (the training recipe)"),
    ):
        with pytest.raises(RunFolderError) as err:
            train.main(toy(tmp, "--resume", "-1", *flags, epochs=3))
        assert named in str(err.value) and "--pre_train" in str(err.value)
    assert checksums(tmp / "run") == before

    train.main(toy(tmp, "--resume", "-1", "--lr", "5e-5", epochs=3))
    state = load_training_state(tmp / "run/checkpoint_latest.pt")
    assert [h["lr"] for h in state["history"]] == [1e-4, 1e-4, pytest.approx(5e-5)]
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(5e-5)
    assert state["config"]["lr"] == 5e-5
    assert "--lr 5e-05 applied (the run used 0.0001)" in (tmp / "run/log.txt").read_text()


def test_finished_run_and_negative_epochs_say_so(finished_run: Path, tmp_path: Path, capsys) -> None:
    tmp = copy_run(finished_run, tmp_path)
    train.main(toy(tmp, "--resume", "-1", epochs=2))
    assert "nothing to train" in (tmp / "run/log.txt").read_text()
    with pytest.raises(SystemExit):
        parse_options(toy(tmp, epochs=-1))
    assert "--epochs -1: give the number of epochs" in capsys.readouterr().err


def test_checkpoints_record_the_architecture(finished_run: Path) -> None:
    """Full-model weights must not load 'strictly' into a --no_mfi model (MFI has no weights to tell them apart)."""
    for name in ("model/model_best.pt", "model/model_latest.pt", "checkpoint_latest.pt"):
        path = finished_run / "run" / name
        load_weights(build_model("adfnet", 1), path)  # our checkpoint_latest.pt is unwrapped, too
        with pytest.raises(ValueError, match="mfi: checkpoint True, model False"):
            load_weights(build_model("adfnet", 1, mfi=False), path)
    # still a plain state_dict for any other loader
    state = torch.load(finished_run / "run/model/model_best.pt", weights_only=True)
    build_model("adfnet", 1).load_state_dict(state, strict=True)


def test_diverged_run_keeps_the_last_finite_checkpoint(finished_run: Path, tmp_path: Path) -> None:
    tmp = copy_run(finished_run, tmp_path)
    before = checksums(tmp / "run")
    with pytest.raises(NonFiniteLossError) as err:
        train.main(toy(tmp, "--resume", "-1", "--lr", "1e30", epochs=4))
    message = str(err.value)
    ckpt = tmp / "run/checkpoint_latest.pt"
    assert "training diverged in epoch 3" in message and f"{ckpt} (epoch 2)" in message
    assert "--lr 1e+29 --save run --resume -1 (a lower --lr" in message
    assert checksums(tmp / "run") == before  # neither latest nor best replaced by the diverged weights
    state = load_training_state(ckpt)
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    log = (tmp / "run/log.txt").read_text()
    assert "stopped: training diverged in epoch 3" in log


def test_diverging_first_epoch_saves_nothing(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError, match="No epoch was completed"):
        train.main(toy(tmp_path, "--lr", "1e30", epochs=2))
    assert not (tmp_path / "run/checkpoint_latest.pt").exists()
    assert not list((tmp_path / "run/model").glob("*.pt"))
    train.main(toy(tmp_path))  # only logs were left: the run can simply start again


def test_full_disk_keeps_the_previous_checkpoint(finished_run: Path, tmp_path: Path) -> None:
    """A real limit (RLIMIT_FSIZE, 8 MB: the logs fit, the 33 MB weights do not), not a faked error:
    torch.save reports the failed write as a RuntimeError ("unexpected pos"), the writer knows better."""
    tmp = copy_run(finished_run, tmp_path)
    before = checksums(tmp / "run")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (8 * 2**20, 8 * 2**20))

    done = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *toy(tmp, "--resume", "-1", epochs=3)],
        capture_output=True, text=True, env=ENV, timeout=300, preexec_fn=limit,
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert re.fullmatch(
        rf"error: model_(best|latest)\.pt would exceed the file-size limit of this process \(8 MB, ulimit -f\) on "
        rf"the disk of {tmp / 'run/model'} \(mounted at .*\): it needs about 33 MB, .* are free on the disk; the "
        r"previous model_\1\.pt is intact\. Raise the limit \(ulimit -f unlimited\), then continue with "
        r"--resume -1 \(or move --dir_experiment to a larger disk\)",
        line,
    ), line
    assert checksums(tmp / "run") == before
    assert not [p for p in (tmp / "run").rglob(".*tmp*")]


def test_stale_temporary_files_are_removed(finished_run: Path, tmp_path: Path) -> None:
    tmp = copy_run(finished_run, tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp / "run/model" / f".model_latest.pt.tmp{int(dead.stdout)}"
    stale.write_bytes(b"partial")
    other = tmp / "run" / f".checkpoint_latest.pt.tmp{os.getppid()}"  # a live process: left alone
    other.write_bytes(b"partial")
    train.main(toy(tmp, "--resume", "-1", epochs=2))
    assert not stale.exists() and other.exists()
    assert f"removed 1 temporary file(s) left by a killed run: {stale.name}" in (tmp / "run/log.txt").read_text()


def test_bad_training_images_are_named_and_left_out(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for f in sorted(GRAY.iterdir())[:2]:
        (data / f.name).write_bytes(f.read_bytes())
    whole = (data / sorted(os.listdir(data))[0]).read_bytes()
    (data / "truncated.png").write_bytes(whole[: len(whole) // 3])  # a valid header, then nothing
    nan = np.full((40, 40), 0.5, np.float32)
    nan[3, 4] = np.nan
    assert cv2.imwrite(str(data / "nan.tif"), nan)
    files = sorted(data.iterdir())
    with pytest.warns(UserWarning, match="2 of 4 training images are left out") as record:
        dataset = SyntheticNoiseTrain(files, 1, 16, build_noise("awgn", [25]), length=4, seed=1)
    text = str(record[-1].message)
    assert str(data / "truncated.png") in text and str(data / "nan.tif") in text
    assert dataset.files == [f for f in files if f.name not in ("nan.tif", "truncated.png")]
    assert all(torch.isfinite(dataset[i][0]).all() for i in range(4))
    # and in a run: named in log.txt, the run trains on the others
    with pytest.warns(UserWarning, match="left out"):
        train.main([*toy(tmp_path), "--dir_data", str(data)])
    log = (tmp_path / "run/log.txt").read_text()
    assert "training image left out" in log and "nan.tif: the floating-point image holds NaN" in log
    assert "epoch 1: loss" in log


def default_sigint() -> None:
    """The child's SIGINT as in a terminal: a suite started in the background (``cmd &``, CI runners) inherits
    SIGINT ignored, and Python then never turns Ctrl-C into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_cleanly_with_the_resume_command(tmp_path: Path) -> None:
    ckpt = tmp_path / "run/checkpoint_latest.pt"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *toy(tmp_path, epochs=1000)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        preexec_fn=default_sigint,
    )
    try:
        deadline = time.time() + 240
        while not ckpt.exists():
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    epoch = load_training_state(ckpt)["epoch"]
    assert f"the last complete checkpoint is {ckpt} (epoch {epoch})" in out
    command = out.split("Continue with: ")[1].splitlines()[0]
    argv = shlex.split(command)
    assert argv[:2] == ["python", str(ROOT / "train.py")]
    args = parse_options(argv[2:])
    assert (args.resume, args.save, args.dir_experiment) == (-1, "run", str(tmp_path))
    assert "interrupted (Ctrl-C)" in (tmp_path / "run/log.txt").read_text()


def test_ctrl_c_while_checking_the_training_images_exits_130(tmp_path: Path) -> None:
    """The training set is decoded once before fit()'s epochs (minutes on DIV2K): a real SIGINT there."""
    data = tmp_path / "many"
    data.mkdir()
    source = sorted(GRAY.iterdir())[0]
    for i in range(3000):  # links to one bundled image: seconds of decoding, no disk
        (data / f"{i:04d}{source.suffix}").symlink_to(source)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *toy(tmp_path, "--dir_data", str(data))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
        preexec_fn=default_sigint,
    )
    seen = bytearray()
    try:
        deadline = time.time() + 240
        while b"checking training images" not in seen:  # the progress bar (stderr) is up
            assert proc.poll() is None and time.time() < deadline, seen.decode(errors="replace")[-2000:]
            seen += os.read(proc.stderr.fileno(), 4096)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = (bytes(seen) + err).decode(errors="replace")
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "interrupted (Ctrl-C) while checking the training images. No epoch was completed" in out.decode()
    assert not (tmp_path / "run/checkpoint_latest.pt").exists()


def test_resume_command_replaces_resume_and_save() -> None:
    argv = ["train.py", "--save", "a", "--resume", "3", "--overwrite", "--lr=1e-3", "--pre_train", "w.pt"]
    assert resume_command("a_from3", argv) == "python train.py --lr=1e-3 --save a_from3 --resume -1"
    assert resume_command("a", argv, lr="1e-05") == "python train.py --lr 1e-05 --save a --resume -1"


def test_nonfinite_loss_is_logged(tmp_path: Path) -> None:
    from adfnet.engine.trainer import Trainer

    trainer = Trainer(parse_options(toy(tmp_path, "--max_nonfinite", "2")))
    bad = torch.full((2, 1, 16, 16), math.nan)
    with pytest.warns(RuntimeWarning), pytest.raises(NonFiniteLossError, match="2 non-finite losses in a row"):
        for _ in range(2):
            trainer.train_step(bad, bad)
    assert "warning: non-finite loss at iteration 1: batch skipped" in (tmp_path / "run/log.txt").read_text()


def test_pre_train_without_record_is_noted_and_checked(tmp_path: Path) -> None:
    official = tmp_path / "official.pt"
    torch.save(build_model("adfnet", 1).state_dict(), official)  # no architecture record, like the downloads
    with pytest.raises(ValueError, match="no architecture record.*mfi: checkpoint True, model False"):
        train.main(toy(tmp_path, "--pre_train", str(official), "--no_mfi", "--test_only"))
    train.main(toy(tmp_path, "--pre_train", str(official), "--test_only"))
    assert f"note: {official} carries no architecture record" in (tmp_path / "run/log.txt").read_text()


def test_ctrl_c_during_a_checkpoint_write_finishes_the_file_first(tmp_path: Path, monkeypatch) -> None:
    """A Ctrl-C inside torch.save would surface as a zip-writer RuntimeError (a traceback, a lost save):
    it is held until the file is complete and renamed, then raised as KeyboardInterrupt."""
    real_save = torch.save
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whoever started pytest

    def save_interrupted(obj, f):
        os.kill(os.getpid(), signal.SIGINT)  # arrives while the zip is being written
        real_save(obj, f)

    monkeypatch.setattr(state_module.torch, "save", save_interrupted)
    target = tmp_path / "checkpoint_latest.pt"
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"epoch": 3, "w": torch.arange(4.0)}, target)
    monkeypatch.setattr(state_module.torch, "save", real_save)
    assert torch.equal(torch.load(target)["w"], torch.arange(4.0))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler before the save, back
    signal.signal(signal.SIGINT, handler)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_latest.pt"]
