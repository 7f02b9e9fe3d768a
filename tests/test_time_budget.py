"""--time_budget: a run stops at the end of the iteration in which its budget is spent, validated and saved, and
--resume -1 continues it exactly where it stopped (mid-epoch included) with what is left of the budget then given."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from adfnet.cli import train
from adfnet.engine.config import TrainConfig
from adfnet.engine.state import load_training_state
from conftest import toy_run

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_BUDGET = "1e-06"  # minutes: spent by the first iteration


def test_budget_stops_mid_epoch_and_resume_continues_exactly(tmp_path: Path) -> None:
    assert train.main(toy_run(tmp_path, "--epochs", "2", save="ref")) == 0
    reference = load_training_state(tmp_path / "ref/checkpoint_latest.pt")

    assert train.main(toy_run(tmp_path, "--epochs", "2", "--time_budget", TINY_BUDGET, save="cut")) == 0
    log = (tmp_path / "cut/log.txt").read_text()
    assert re.search(
        r"stopped: the time budget is spent \([\d.]+ min trained of --time_budget 1e-06\) at iteration 1 of epoch 1; "
        r"validated and saved \(\S*cut/checkpoint_latest\.pt\)\. Continue it with a larger total budget \(or "
        r"none\): python \S* .*--time_budget 2e-06 --save cut --resume -1",
        log,
    ), log
    cut = load_training_state(tmp_path / "cut/checkpoint_latest.pt")
    assert (cut["epoch"], cut["iteration"], cut["history"]) == (0, 1, [])
    assert cut["position"]["epoch"] == 1 and cut["position"]["batches"] == 1 and cut["elapsed"] > 0
    assert (tmp_path / "cut/model/model_best.pt").is_file()  # validated at the stop
    assert cut["best"]["iteration"] == 1

    # the same budget again: spent already
    resume = ("--resume", "-1")
    assert train.main(toy_run(tmp_path, "--epochs", "2", "--time_budget", TINY_BUDGET, *resume, save="cut")) == 0
    assert "nothing to train: " in (tmp_path / "cut/log.txt").read_text()
    assert load_training_state(tmp_path / "cut/checkpoint_latest.pt")["iteration"] == 1

    # no budget: the rest of epoch 1 (its second batch), then epoch 2, as the uninterrupted run
    assert train.main(toy_run(tmp_path, "--epochs", "2", *resume, save="cut")) == 0
    done = load_training_state(tmp_path / "cut/checkpoint_latest.pt")
    assert (done["epoch"], done["iteration"], done["position"]) == (2, 4, None)
    assert [h["loss"] for h in done["history"]] == [h["loss"] for h in reference["history"]]
    for key, value in reference["model"].items():
        assert torch.equal(done["model"][key], value), key
    assert done["elapsed"] > cut["elapsed"]


def test_budget_values() -> None:
    assert TrainConfig(time_budget=15).time_budget == 15
    for bad in (0, -1, float("inf")):
        with pytest.raises(ValueError, match=r"--time_budget must be a positive number of minutes"):
            TrainConfig(time_budget=bad)
