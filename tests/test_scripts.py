"""The README's main job (scripts/demo.sh) and the evaluation scripts: what they run, and their errors.

A stand-in interpreter records each command line instead of running it; the recorded arguments are
then parsed by train.py's and test.py's own parsers, so the test checks what the scripts would do
without training for minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adfnet.cli import test as test_cli
from adfnet.engine.options import parse_options
from conftest import ROOT

RECORD = """import json, os, sys
with open(os.environ["ARGV_LOG"], "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def record(tmp_path: Path, script: str, *args: str, env: dict[str, str] | None = None) -> list[list[str]]:
    """Run ``scripts/<script>`` with the recording interpreter; returns the command lines it ran."""
    recorder = tmp_path / "record.py"
    recorder.write_text(RECORD)
    shim = tmp_path / "python"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{recorder}" "$@"\n')
    shim.chmod(0o755)
    log = tmp_path / "argv.jsonl"
    run_env = {**os.environ, "PYTHON": str(shim), "ARGV_LOG": str(log), **(env or {})}
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / script), *args], capture_output=True, text=True, env=run_env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_demo_trains_then_tests_the_trained_weights_with_chop(tmp_path: Path) -> None:
    train, test = record(tmp_path, "demo.sh")
    assert train[0] == str(ROOT / "train.py") and test[0] == "test.py"
    t = parse_options(train[1:])
    assert (t.n_colors, t.noiseL, t.model, t.cpu) == (1, 25, "adfnet", True)
    assert Path(t.dir_data).resolve() == ROOT / "datasets/trainsets/Train400_sample"
    assert t.epochs * t.test_every * t.batch_size <= 2000  # a few minutes on a CPU, not the paper's recipe
    e = test_cli.parse_args(test[1:])
    # test.py evaluates exactly the weights the training run writes (run from the repository root)
    assert Path(e.weights) == Path(t.dir_experiment) / t.save / "model" / "model_best.pt"
    assert (e.chop, e.save_images, e.n_colors, e.test_noiseL, e.model) == (True, True, 1, [25.0], "adfnet")
    assert [Path(d) for d in e.input_dir] == [Path("datasets/testsets/Set12")]
    assert (ROOT / e.input_dir[0]).is_dir()


@pytest.mark.parametrize(
    ("script", "n_colors", "sets", "sigmas"),
    [
        ("test_adfnet_gray.sh", 1, ["Set12", "BSD68", "Urban100"], [15.0, 25.0, 50.0]),
        ("test_adfnet_rgb.sh", 3, ["Kodak24", "CBSD68", "McMaster"], [10.0, 30.0, 50.0, 70.0]),
    ],
)
def test_paper_evaluation_scripts(
    tmp_path: Path, script: str, n_colors: int, sets: list[str], sigmas: list[float]
) -> None:
    runs = [test_cli.parse_args(argv[1:]) for argv in record(tmp_path, script, "--cpu")]
    first = runs[0]
    assert (first.model, first.n_colors, first.test_noiseL, first.chop, first.cpu) == (
        "adfnet",
        n_colors,
        sigmas,
        True,
        True,
    )
    assert [Path(d).name for d in first.input_dir] == sets
    assert "{sigma}" in first.weights  # one checkpoint per noise level, as released
    if n_colors == 3:  # ADFNet* (= ADFNet-L) at sigma 50, the paper's Table 2
        assert (runs[1].model, runs[1].test_noiseL) == ("adfnet_l", [50.0])


def test_evaluation_scripts_fail_clearly_without_data(tmp_path: Path) -> None:
    env = {**os.environ, "TESTSETS": str(tmp_path / "none"), "REAL": str(tmp_path / "none"), "PYTHON": sys.executable}
    gray = subprocess.run(
        ["bash", str(ROOT / "scripts/test_adfnet_gray.sh"), "--cpu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert gray.returncode == 1
    assert "cannot use checkpoint" in gray.stdout or "not found" in gray.stdout + gray.stderr
    real = subprocess.run(
        ["bash", str(ROOT / "scripts/test_adfnet_real.sh")], capture_output=True, text=True, env=env, timeout=60
    )
    assert real.returncode == 1 and "nothing was evaluated" in real.stderr
