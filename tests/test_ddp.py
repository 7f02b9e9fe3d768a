"""DistributedDataParallel: a toy run launched with torchrun, 2 CPU processes on the gloo backend."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

from adfnet.data.io import read_image, save_image
from adfnet.engine.state import load_training_state
from conftest import ROOT


def test_torchrun_two_processes_gloo(tmp_path: Path) -> None:
    save_image(tmp_path / "val/01.png", read_image(ROOT / "datasets/testsets/Set12/01.png", 1)[:32, :32])
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(ROOT / "train.py"),
        "--n_colors",
        "1",
        "--dir_data",
        str(ROOT / "datasets/trainsets/Train400_sample"),
        "--data_val",
        str(tmp_path / "val"),
        "--epochs",
        "2",
        "--test_every",
        "2",
        "--patch_size",
        "16",
        "--batch_size",
        "4",
        "--cpu",
        "--n_threads",
        "0",
        "--dir_experiment",
        str(tmp_path),
        "--save",
        "ddp",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    run = tmp_path / "ddp"
    log = (run / "log.txt").read_text()
    assert "2 process(es)" in log and log.count("epoch 2: loss") == 1  # only rank 0 writes
    state = load_training_state(run / "checkpoint_latest.pt")
    assert state["epoch"] == 2 and state["iteration"] == 4  # 2 iterations per epoch, global batch 4 = 2 x 2
    assert not any(k.startswith("module.") for k in state["model"])  # bare weights, official format
    assert all(math.isfinite(h["loss"]) for h in state["history"])
    assert (run / "model/model_best.pt").is_file()
