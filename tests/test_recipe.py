"""Multi-step recipes (adfnet-distill): MWRCANet's four-step distillation end to end at toy scale on unprocessed
bundled images, resumed; the recipe file's checks."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_scripts import record

from adfnet.cli import distill
from adfnet.data.io import list_images
from adfnet.data.raw_pairs import raw_pair_files, read_bayer
from adfnet.data.unprocess import write_raw_pairs
from adfnet.engine.recipe import RecipeError, RecipeRun, load_recipe
from adfnet.engine.state import load_training_state
from conftest import MCMASTER, TRAIN_RGB
from experiments import mwrcanet

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = ["step1_mwresnet", "step1_mwrcanet", "step2_targets", "step3_mwresnet", "step3_mwrcanet", "step4_targets",
         "step4_mwrcanet"]  # fmt: skip


def test_raw_pairs_from_srgb_images_are_fixed(tmp_path: Path) -> None:
    files = list_images(TRAIN_RGB)[:2]
    assert write_raw_pairs(files, tmp_path / "a", seed=3, crop=32, copies=2) == 4
    write_raw_pairs(files, tmp_path / "b", seed=3, crop=32, copies=2)
    pairs = raw_pair_files(tmp_path / "a")
    assert [p[0].name for p in pairs] == sorted(f"{f.stem}_{k}.npy" for f in files for k in (0, 1))
    for noisy, clean in pairs:
        assert np.array_equal(read_bayer(noisy), np.load(tmp_path / "b/noisy" / noisy.name))  # same seed, same data
        n, c = read_bayer(noisy), read_bayer(clean)
        assert n.shape == c.shape == (32, 32) and c.min() >= 0 and c.max() <= 1
        assert 0 < np.std(n - c) < 0.2  # shot and read noise on the clean mosaic


def test_mwrcanet_four_steps_end_to_end_at_toy_scale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_raw_pairs(list_images(TRAIN_RGB)[:3], tmp_path / "train", seed=1, crop=32, copies=2)
    write_raw_pairs(list_images(MCMASTER)[:2], tmp_path / "val", seed=2, crop=32)
    out = tmp_path / "recipe"
    data = ["--dir_data", str(tmp_path / "train"), "--data_val", str(tmp_path / "val")]
    # each training step stops after its first iteration
    argv = ["--scale", "toy", *data, "--out", str(out), "--cpu", "--time_budget", "1e-6", "--set", "lr=5e-4"]
    assert distill.main(argv) == 0
    printed = capsys.readouterr().out
    with open(out / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["step"] for r in rows] == ["noisy input", *STEPS]
    best = {r["step"]: float(r["best"]) for r in rows}
    assert all(math.isfinite(v) for v in best.values()), rows
    # every training step stopped by its budget after its first iteration, validated there
    assert [r["iterations"] for r in rows] == ["", "1", "1", "", "1", "1", "", "1"]
    assert all(r["best"] == r["last"] for r in rows if r["iterations"])
    stop = (out / "step3_mwresnet/log.txt").read_text()
    assert "stopped: the time budget is spent" in stop and "at iteration 1 of epoch 1; validated and saved" in stop
    assert "Continue it with a larger total budget (or none): the same command again with --time_budget 2e-06" in stop
    assert "| step4_mwrcanet | train mwrcanet from " in printed

    # step 2: the averaged outputs of the step-1 networks on the training and the validation inputs
    manifest = json.loads((out / "step2_targets/manifest.json").read_text())
    assert len(manifest["inputs"]) == 6 + 2 and manifest["layout"] == "packed raw RGGB"
    step1 = [out / name / "model/model_best.pt" for name in STEPS[:2]]
    assert [t["sha256"] for t in manifest["teachers"]] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in step1]
    assert [t["model"]["model"] for t in manifest["teachers"]] == ["mwresnet", "mwrcanet"]
    assert [t["model"]["n_rb"] for t in manifest["teachers"]] == [1, 1]  # the toy scale
    step4 = json.loads((out / "step4_targets/manifest.json").read_text())["teachers"]
    assert [Path(t["path"]).parts[-3] for t in step4] == ["step3_mwresnet", "step3_mwrcanet"]
    # steps 3 and 4 start from the previous weights and train on the cached targets
    log = (out / "step4_mwrcanet/log.txt").read_text()
    assert f"initialised from {out / 'step3_mwrcanet/model/model_best.pt'}" in log
    assert f"teacher targets: 8 pair(s) from {out / 'step4_targets'}" in log
    # the noisy input row is the validation pairs' own PSNR
    assert best["noisy input"] == pytest.approx(
        np.mean([10 * np.log10(1 / np.mean((read_bayer(n) - read_bayer(c)) ** 2.0))
                 for n, c in raw_pair_files(tmp_path / "val")]), abs=1e-4)  # fmt: skip

    names = [name for name in STEPS if "targets" not in name]
    lrs = [load_training_state(out / name / "checkpoint_latest.pt")["config"]["lr"] for name in names]
    assert lrs == pytest.approx([5e-4, 5e-4, 1e-4, 1e-4, 1e-4])  # --set lr=5e-4; fine-tuning: lr_factor 0.2

    # the same command again: every step is found done, nothing is trained or rewritten
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    assert distill.main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")} == before
    assert "has spent its time budget" in (out / "step1_mwrcanet/log.txt").read_text()
    assert load_training_state(out / "step1_mwrcanet/checkpoint_latest.pt")["iteration"] == 1
    assert distill.main(["--out", str(out), "--summary"]) == 0
    assert (
        "| step2_targets | targets: mean of step1_mwresnet, step1_mwrcanet (ensemble none) |" in capsys.readouterr().out
    )


def _recipe(tmp_path: Path, steps: list[dict[str, object]], **extra: object) -> Path:
    path = tmp_path / "r.yml"
    path.write_text(yaml.safe_dump({"train": {"raw": True}, "steps": steps, **extra}))
    return path


def test_recipe_mistakes_are_named(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"step a: unknown option name\(s\) modle"):
        load_recipe(_recipe(tmp_path, [{"name": "a", "train": {"modle": "x"}}]))
    with pytest.raises(RecipeError, match=r"each step is a name \(a folder name\) and one of train or targets"):
        load_recipe(_recipe(tmp_path, [{"name": "a/b", "train": {}}]))
    with pytest.raises(RecipeError, match=r"two steps are named a"):
        load_recipe(_recipe(tmp_path, [{"name": "a", "train": {}}, {"name": "a", "train": {}}]))
    recipe = load_recipe(_recipe(tmp_path, [{"name": "t", "targets": {"teachers": ["b"]}}, {"name": "b", "train": {}}]))
    run = RecipeRun(recipe, tmp_path / "out")
    with pytest.raises(RecipeError, match=r"step t: b is not an earlier train step"):
        run.targets(recipe.steps[0])
    with pytest.raises(RecipeError, match=r"--scale cpu: \S*r\.yml has no scales"):
        RecipeRun(recipe, tmp_path / "out", scale="cpu")
    assert distill.main(["--recipe", "nope"]) == 1


def test_a_step_name_stands_for_its_best_or_its_last_weights(tmp_path: Path) -> None:
    steps = [
        {"name": "a", "train": {}},
        {"name": "b", "train": {"pre_train": "a:latest"}},
        {"name": "c", "train": {"pre_train": "a", "teacher": ["a:best", "b:latest", "other.pt"]}},
        {"name": "d", "train": {"pre_train": "a:last"}},
    ]
    recipe = load_recipe(_recipe(tmp_path, steps))
    run = RecipeRun(recipe, tmp_path / "out")
    b, c = (run.config(step) for step in recipe.steps[1:3])
    out = tmp_path / "out"
    assert b.pre_train == str(out / "a/model/model_latest.pt") and c.pre_train == str(out / "a/model/model_best.pt")
    assert c.teacher == [str(out / "a/model/model_best.pt"), str(out / "b/model/model_latest.pt"), "other.pt"]
    with pytest.raises(RecipeError, match=r"step d: a:last: the weights of a are a:best \(or a\) or :latest"):
        run.config(recipe.steps[3])


def test_the_measurement_runs_the_recipe_on_unprocessed_bundled_images(tmp_path: Path, capsys) -> None:
    out = tmp_path / "m"
    argv = ["--out", str(out), "--scale", "toy", "--time_budget", "1e-6", "--copies", "1", "--crop", "32",
            "--val_crop", "32", "--val_images", str(tmp_path / "val"), "--cpu"]  # fmt: skip
    (tmp_path / "val").mkdir()
    for f in list_images(MCMASTER)[:2]:
        (tmp_path / "val" / f.name).write_bytes(f.read_bytes())
    assert mwrcanet.main(argv) == 0
    printed = capsys.readouterr().out
    assert "Validation PSNR after each step (1e-06 min per training step, scale toy):" in printed
    assert len(raw_pair_files(out / "data/train")) == len(list_images(TRAIN_RGB))  # one crop of each image
    assert (out / "steps/step4_mwrcanet/model/model_best.pt").is_file()
    assert mwrcanet.main([*argv, "--copies", "2"]) == 1  # the data of this --out were made another way
    assert "were made with other settings" in capsys.readouterr().err
    assert record(tmp_path, "measure_mwrcanet.sh", env={"BUDGET": "2"}) == [["-m", "experiments.mwrcanet",
                                                                                "--time_budget", "2"]]  # fmt: skip
