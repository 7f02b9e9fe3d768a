"""Crash safety: kill -9 a real training process, resume with --resume -1, and get the uninterrupted run."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import train
from adfnet.engine import state as state_module
from adfnet.engine.state import atomic_save, load_training_state
from conftest import ROOT, toy_run


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Same thread count in this process and in the subprocess, so CPU results match bit for bit."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def toy(tmp: Path, save: str, *extra: str) -> list[str]:
    return toy_run(tmp, *extra, save=save)


def test_kill_9_then_resume_continues_exactly(tmp_path: Path) -> None:
    ckpt = tmp_path / "run/checkpoint_latest.pt"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *toy(tmp_path, "run", "--epochs", "100")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.time() + 240
        while not ckpt.exists():
            assert proc.poll() is None, "training process ended early"
            assert time.time() < deadline, "no checkpoint after 240 s"
            time.sleep(0.05)
        time.sleep(random.uniform(0.0, 1.0))  # somewhere in the next epoch, possibly in the middle of a save
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = load_training_state(ckpt)["epoch"]  # the last complete checkpoint is readable
    assert 1 <= killed_at < 100
    total = killed_at + 1

    train.main(toy(tmp_path, "run", "--epochs", str(total), "--resume", "-1"))
    resumed = load_training_state(ckpt)
    assert f"resumed from {ckpt} after epoch {killed_at}" in (tmp_path / "run/log.txt").read_text()
    assert resumed["epoch"] == total and resumed["iteration"] == 2 * total
    assert [h["epoch"] for h in resumed["history"]] == list(range(1, total + 1))
    steps = {int(s["step"]) for s in resumed["optimizer"]["state"].values()}
    assert steps == {2 * total}  # the Adam moments continued, not restarted

    train.main(toy(tmp_path, "ref", "--epochs", str(total)))  # the same run without the kill
    reference = load_training_state(tmp_path / "ref/checkpoint_latest.pt")
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in reference["history"]]
    for key, value in reference["model"].items():
        assert torch.equal(resumed["model"][key], value), key


def test_interrupted_save_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "checkpoint_latest.pt"
    atomic_save({"epoch": 1}, target)

    def dies_halfway(obj: object, f: object) -> None:
        f.write(b"PK\x03\x04 partial")  # type: ignore[attr-defined]
        raise KeyboardInterrupt("killed during the save")

    monkeypatch.setattr(state_module.torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"epoch": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_latest.pt"]  # no temporary file left behind


def test_missing_or_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    args = toy(tmp_path, "run", "--epochs", "1", "--resume", "-1")
    with pytest.raises(FileNotFoundError, match="does not exist.*without --resume"):
        train.main(args)
    ckpt = tmp_path / "run/checkpoint_latest.pt"
    ckpt.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(RuntimeError, match="corrupt"):
        train.main(args)
    atomic_save({"epoch": 3}, ckpt)
    with pytest.raises(RuntimeError, match="missing"):
        load_training_state(ckpt)
    done = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *toy(tmp_path, "none", "--resume", "-1")],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert done.returncode == 1 and "cannot resume" in done.stderr and "Traceback" not in done.stderr


def latest_logged_epoch(log: Path) -> int:
    """The last epoch whose 'epoch k: loss' line reached log.txt (written just before its checkpoint)."""
    return max(map(int, re.findall(r"\] epoch (\d+): loss", log.read_text() if log.is_file() else "")), default=0)


def test_random_kill_9_then_resume(tmp_path: Path) -> None:
    """kill -9 while a checkpoint is being written, then at seeded random moments (in an epoch, its validation or
    the save), each followed by --resume -1: every resume works, every checkpoint stays readable, at most one
    epoch is lost, no temporary file remains."""
    rng = random.Random(16)
    epochs, log, ckpt = 7, tmp_path / "run/log.txt", tmp_path / "run/checkpoint_latest.pt"
    command = [sys.executable, str(ROOT / "train.py"), *toy(tmp_path, "run", "--epochs", str(epochs))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    resume: list[str] = []
    for kill in range(4):
        start_epoch = load_training_state(ckpt)["epoch"] if ckpt.exists() else 0
        proc = subprocess.Popen([*command, *resume], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            deadline = time.time() + 240
            while latest_logged_epoch(log) <= max(start_epoch, 1):  # an epoch of this process ended: saving it
                assert proc.poll() is None, f"run {kill} ended early"
                assert time.time() < deadline, "no epoch in 240 s"
                time.sleep(0.01)
            if kill == 0:  # in the middle of writing a file
                while not any(".tmp" in p.name for p in tmp_path.rglob(".*")):
                    assert proc.poll() is None and time.time() < deadline
            else:
                time.sleep(rng.uniform(0.0, 2.0))  # ~1.6 s per epoch: the save, the next epoch or its validation
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        reached = latest_logged_epoch(log)
        state = load_training_state(ckpt)  # readable after every kill
        assert reached - 1 <= state["epoch"] <= reached < epochs, (kill, reached, state["epoch"])
        for name in ("model_latest.pt", "model_best.pt"):
            torch.load(tmp_path / "run/model" / name, weights_only=True)
        resume = ["--resume", "-1"]
    done = subprocess.run([*command, *resume], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    final = load_training_state(ckpt)
    assert final["epoch"] == epochs and [h["epoch"] for h in final["history"]] == list(range(1, epochs + 1))
    assert final["iteration"] == 2 * epochs
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert "temporary file(s) left by a killed run" in log.read_text()
