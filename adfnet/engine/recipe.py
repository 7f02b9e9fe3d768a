"""The one runner of multi-run recipes: training runs and teacher-target steps chained by name, each resumable.

A recipe comes from a YAML file (:func:`load_recipe`; ``adfnet-distill``, ``configs/distill/mwrcanet.yml`` is
MWRCANet's four-step distillation) or from a staged :class:`~adfnet.engine.config.TrainConfig`
(:func:`staged_run`; ``adfnet-train --config dbsn_gray_awgn``: DBSN's stages). A recipe file holds

* ``train``: the :class:`~adfnet.engine.config.TrainConfig` fields every training step shares (train.py's
  option names, as in ``configs/*.yml``);
* ``steps``, run in order, each a ``name`` and either ``train`` (this run's own fields: ``model``,
  ``pre_train``, ``teacher_cache``, ...; and ``lr_factor``, a fine-tuning step's share of the learning rate, so
  that a scale's ``lr`` carries over) or ``targets`` (``teachers``, ``inputs``, ``ensemble``: teacher targets
  written once, :mod:`adfnet.engine.teacher_cache`);
* ``scales``: named overrides of every training step (``--scale cpu``: reduced widths and blocks, the schedule
  of a time budget); the published configuration is the recipe without one. A training step's fields are the
  shared ones, then its own, then the scale's, then ``--set``'s.

A value that names an earlier step stands for what it made: in ``pre_train``, ``teacher`` and ``teachers``
``<step>`` (or ``<step>:best``) is its best weights (``<root>/<step>/model/model_best.pt``) and ``<step>:latest``
its last ones (``model_latest.pt``: what a chain of stages continues from, as the authors' scripts did, and all
there is to trust when validation has no clean image); in ``teacher_cache`` its targets folder; ``inputs``
``train`` and ``val`` are the noisy files of the shared ``dir_data`` and ``data_val`` (paired sets).

Every step has its own folder ``<root>/<name>`` and runs through the trainer of its model
(:func:`~adfnet.engine.trainer.trainer_for`). Resumption (``adfnet-distill`` always, ``adfnet-train`` with
``--resume -1``): a step whose checkpoint reached its ``epochs`` is kept as it is, an unfinished one continues
from its checkpoint (or finds its ``--time_budget`` spent: a stopped step counts as trained, and the next starts
from its weights), a targets step is read back, checked against its manifest (targets of teachers that trained
on since are an error, never reused). Without resumption (``adfnet-train`` without ``--resume -1``) every step
starts anew, and a folder that holds a run is refused as for any run. The stop messages of a step tell how to
continue the whole recipe (the driver's ``continue_hint``), not the step alone.

After each step the summary is printed and written to ``<root>/summary.md`` and ``summary.csv``: the noisy
input (paired validation sets), each training step's best and last validation, and each targets step's
averaged teacher output on the validation inputs among its inputs, each with the metric it is in (``PSNR`` in
dB; ``neg_loss``, minus the self-supervised loss, for DBSN without clean images).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from adfnet.data.datasets import paired_files
from adfnet.data.raw_pairs import raw_pair_files
from adfnet.engine.config import TrainConfig
from adfnet.engine.distill import Teacher
from adfnet.engine.runs import CHECKPOINT, resume_command
from adfnet.engine.state import load_training_state
from adfnet.engine.teacher_cache import input_files, layout_name, read_input, read_targets, write_targets
from adfnet.engine.trainer import trainer_for
from adfnet.errors import UserError
from adfnet.fileio import text_file, write_text
from adfnet.metrics import psnr, psnr_raw

RECIPE_KEYS = ("train", "scales", "steps")
TARGET_KEYS = ("teachers", "inputs", "ensemble")
WEIGHT_FIELDS = ("pre_train", "teacher")  # a step name there: its weights
WEIGHTS = {"best": Path("model/model_best.pt"), "latest": Path("model/model_latest.pt")}  # <step>:<which>
SUMMARY_COLUMNS = ("metric", "best", "last", "iterations", "minutes")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class RecipeError(UserError):
    """A recipe file that cannot be run as written."""


@dataclass(frozen=True)
class Step:
    name: str
    kind: str  # "train" or "targets"
    fields: Mapping[str, Any]
    lr_factor: float = 1.0  # a training step's learning rate: the merged lr times this


@dataclass(frozen=True)
class Recipe:
    source: str  # where it comes from, for messages: its file
    train: Mapping[str, Any]
    scales: Mapping[str, Mapping[str, Any]]
    steps: tuple[Step, ...]


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe (:class:`RecipeError` naming the file and what is wrong)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise RecipeError(f"cannot read the recipe {path}: {err}") from None
    if not isinstance(data, dict) or set(data) - set(RECIPE_KEYS) or "steps" not in data:
        raise RecipeError(f"{path}: a recipe is a mapping of {', '.join(RECIPE_KEYS)} (steps required)")
    known = set(TrainConfig.field_names())

    def fields(where: str, value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise RecipeError(f"{path}: {where} must be a mapping of train.py option names to values")
        unknown = sorted(set(value) - known)
        if unknown:
            raise RecipeError(f"{path}: {where}: unknown option name(s) {', '.join(unknown)} (train.py's options)")
        return value

    steps: list[Step] = []
    for item in data["steps"] or []:
        name = item.get("name") if isinstance(item, dict) else None
        kinds = [k for k in ("train", "targets") if isinstance(item, dict) and k in item]
        extra = set(item) - {"name", *kinds, *(["lr_factor"] if kinds == ["train"] else [])} if kinds else set()
        if not isinstance(name, str) or not _NAME.match(name) or len(kinds) != 1 or extra:
            raise RecipeError(f"{path}: each step is a name (a folder name) and one of train or targets, got {item!r}")
        if name in {s.name for s in steps}:
            raise RecipeError(f"{path}: two steps are named {name}")
        if kinds[0] == "train":
            factor = item.get("lr_factor", 1.0)
            if not isinstance(factor, float | int) or not 0 < factor <= 1:
                raise RecipeError(f"{path}: step {name}: lr_factor must be in (0, 1], got {factor!r}")
            steps.append(Step(name, "train", fields(f"step {name}", item["train"]), float(factor)))
            continue
        targets = item["targets"]
        if not isinstance(targets, dict) or set(targets) - set(TARGET_KEYS) or not targets.get("teachers"):
            raise RecipeError(f"{path}: step {name}: targets takes {', '.join(TARGET_KEYS)} (teachers required)")
        steps.append(Step(name, "targets", targets))
    scales = data.get("scales") or {}
    return Recipe(
        str(path),
        fields("train", data.get("train") or {}),
        {k: fields(f"scale {k}", v) for k, v in scales.items()},
        tuple(steps),
    )


def same_command(**flags: str) -> str:
    """How a user continues a step of ``adfnet-distill`` (the default ``continue_hint``): the same command, which
    resumes it, with ``flags`` changed."""
    changed = " ".join(f"--{k} {v}" if k == "time_budget" else f"--set {k}={v}" for k, v in flags.items())
    return f"the same command again{f' with {changed}' if changed else ''} (the recipe resumes this step)"


def completed_epochs(run_dir: Path) -> int | None:
    """The last complete epoch of the checkpoint ``run_dir`` holds (0: stopped in epoch 1 by ``--time_budget``),
    or None without one."""
    path = run_dir / CHECKPOINT
    return int(load_training_state(path)["epoch"]) if path.is_file() else None


class RecipeRun:
    """A recipe run in ``root``: the shared fields, a step's own, ``scale``'s and ``overrides`` (``--set``), in
    this order; every training step under ``time_budget`` minutes (else its own), every targets step with
    ``teacher_ensemble`` when given (else its own ``ensemble``). ``resume``: continue what the folders hold (see
    the module); ``continue_hint``: how the stop messages of a step say to continue (the driver's command)."""

    def __init__(
        self,
        recipe: Recipe,
        root: str | Path,
        scale: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        time_budget: float | None = None,
        teacher_ensemble: str | None = None,
        log: Callable[[str], object] = print,
        resume: bool = True,
        continue_hint: Callable[..., str] = same_command,
    ) -> None:
        if scale is not None and scale not in recipe.scales:
            raise RecipeError(f"--scale {scale}: {recipe.source} has {', '.join(recipe.scales) or 'no scales'}")
        self.recipe, self.root, self.log = recipe, Path(root), log
        self.late = {**(recipe.scales[scale] if scale else {}), **(overrides or {})}  # over every step's own
        self.time_budget, self.teacher_ensemble = time_budget, teacher_ensemble
        self.resume, self.continue_hint = resume, continue_hint
        self.base = TrainConfig(**{**recipe.train, **self.late, "dir_experiment": str(self.root), "save": "recipe"})

    # ----------------------------------------------------------------------------------------- names
    def _step(self, name: str, before: Step, kind: str) -> Step | None:
        names = [s.name for s in self.recipe.steps]
        step = next((s for s in self.recipe.steps if s.name == name), None)
        if step is None:
            return None
        if names.index(name) >= names.index(before.name) or step.kind != kind:
            raise RecipeError(f"step {before.name}: {name} is not an earlier {kind} step of {self.recipe.source}")
        return step

    def _weights(self, value: str, before: Step) -> str:
        name, sep, which = value.partition(":")
        if self._step(name, before, "train") is None:
            return value  # a file
        if sep and which not in WEIGHTS:
            raise RecipeError(
                f"step {before.name}: {value}: the weights of {name} are {name}:best (or {name}) or :latest"
            )
        return str(self.root / name / WEIGHTS[which or "best"])

    def _inputs(self, value: str) -> str:
        return {"train": self.base.dir_data, "val": self.base.data_val}.get(value, value)

    # ----------------------------------------------------------------------------------------- steps
    def config(self, step: Step) -> TrainConfig:
        """The training run of ``step``: shared fields, its own, the names resolved, its folder, the budget."""
        fields = self._fields(step)
        for key in WEIGHT_FIELDS:
            value = fields.get(key)
            if isinstance(value, list):
                fields[key] = [self._weights(v, step) for v in value]
            elif isinstance(value, str):
                fields[key] = self._weights(value, step)
        cache = fields.get("teacher_cache")
        if isinstance(cache, str) and self._step(cache, step, "targets"):
            fields["teacher_cache"] = str(self.root / cache)
        fields["lr"] = fields.get("lr", TrainConfig.lr) * step.lr_factor
        fields.update(
            dir_experiment=str(self.root),
            save=step.name,
            time_budget=self.time_budget if self.time_budget is not None else fields.get("time_budget"),
            resume=0,
        )
        if self.resume:  # without a checkpoint nothing is resumable: weights written before a first one are replaced
            saved = (self.root / step.name / CHECKPOINT).is_file()
            fields.update(resume=-1 if saved else 0, overwrite=not saved)
        return TrainConfig(**fields)

    def train(self, step: Step, title: str) -> None:
        """Train ``step`` with the trainer of its model (or keep it, complete, when resuming)."""
        config, folder = self.config(step), self.root / step.name
        done = completed_epochs(folder) if self.resume else None
        if done is not None and done >= config.epochs:
            self.log(f"{title}: complete ({done} epochs), kept as it is")
            return
        budget = f" or {config.time_budget:g} min" if config.time_budget else ""
        start = ", continued from its checkpoint" if config.resume == -1 else ""
        start = start or (f", from {config.pre_train}" if config.pre_train != "." else "")
        self.log(f"{title}: {config.epochs} epoch(s){budget}{start}")
        trainer = trainer_for(config)
        trainer.continue_hint = self.continue_hint
        trainer.fit()

    def run(self, only: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Run the steps (``only``: those named), each then the summary; returns the summary's rows."""
        unknown = sorted(set(only or ()) - {s.name for s in self.recipe.steps})
        if unknown:
            raise RecipeError(f"--steps {', '.join(unknown)}: {self.recipe.source} has {self._names()}")
        rows = self.summary()
        steps = self.recipe.steps
        for k, step in enumerate(steps, 1):
            if only and step.name not in only:
                continue
            title = f"step {k}/{len(steps)} {step.name} ({self.root / step.name})"
            if step.kind == "train":
                self.train(step, title)
            else:
                self.log(f"{title}: the targets of {', '.join(step.fields['teachers'])}")
                self.targets(step)
            rows = self.summary()
            self.log(format_summary(rows))
        trained = [s.name for s in steps if s.kind == "train" and (not only or s.name in only)]
        if trained:
            self.log(f"the last training step's weights are in {self.root / trained[-1] / 'model'}")
        return rows

    def _fields(self, step: Step) -> dict[str, Any]:
        return {**self.recipe.train, **step.fields, **self.late}

    def _names(self) -> str:
        return ", ".join(s.name for s in self.recipe.steps)

    def _teacher(self, step: Step) -> Teacher:
        a = self.base
        teachers = [self._weights(t, step) for t in step.fields["teachers"]]
        missing = [t for t in teachers if not Path(t).is_file()]
        if missing:
            raise RecipeError(f"step {step.name}: {missing[0]} does not exist: run the steps before it first")
        ensemble = self.teacher_ensemble or step.fields.get("ensemble", "none")
        device = torch.device(a.device or ("cuda" if torch.cuda.is_available() and not a.cpu else "cpu"))
        return Teacher(teachers, a.n_colors, ensemble, device, a.chop)

    def targets(self, step: Step) -> list[tuple[Path, Path]]:
        """Write (or read back, checked) the targets of a targets step."""
        teacher = self._teacher(step)
        inputs = input_files([self._inputs(i) for i in step.fields.get("inputs", ["train"])], self.base.raw)
        return write_targets(self.root / step.name, inputs, teacher, self.base.cfa_pattern)

    # ----------------------------------------------------------------------------------------- summary
    def summary(self) -> list[dict[str, Any]]:
        """The rows so far (also written to ``summary.md`` and ``summary.csv``); the noisy input's when paired
        validation sets score it."""
        noisy = self._val_psnr(None)
        rows = [{"step": "noisy input", "what": f"validation set {self.base.data_val}", **noisy}] if noisy else []
        for step in self.recipe.steps:
            folder = self.root / step.name
            if step.kind == "train" and (folder / CHECKPOINT).is_file():
                rows.append(self._train_row(step, load_training_state(folder / CHECKPOINT)))
            elif step.kind == "targets" and (folder / "manifest.json").is_file():
                teachers = ", ".join(step.fields["teachers"])
                ensemble = self.teacher_ensemble or step.fields.get("ensemble", "none")
                what = f"targets: mean of {teachers} (ensemble {ensemble})"
                rows.append({"step": step.name, "what": what, **self._val_psnr(folder)})
        self.root.mkdir(parents=True, exist_ok=True)
        write_text(self.root / "summary.md", format_summary(rows) + "\n")
        with text_file(self.root / "summary.csv") as fh:
            writer = csv.writer(fh)
            writer.writerow(["step", "what", *SUMMARY_COLUMNS])
            writer.writerows([r["step"], r["what"], *("" if r.get(k) is None else r[k] for k in SUMMARY_COLUMNS)]
                             for r in rows)  # fmt: skip
        return rows

    def _train_row(self, step: Step, state: dict[str, Any]) -> dict[str, Any]:
        config = self._fields(step)
        what = f"train {config.get('model', 'adfnet')}"
        for key, word in (("pre_train", "from"), ("teacher_cache", "on"), ("teacher", "against")):
            if config.get(key) not in (None, ".", []):  # given (a staged recipe's shared fields hold them all)
                what += f" {word} {config[key]}"
        last = (state.get("last_val") or {}).get("psnr")
        best = state["best"]["psnr"]
        return {
            "step": step.name,
            "what": what,
            "metric": state.get("val_metric", "PSNR"),
            "best": best if math.isfinite(best) else None,
            "last": last,
            "iterations": state["iteration"],
            "minutes": state.get("elapsed", 0.0) / 60,
        }

    def _val_psnr(self, cache: Path | None) -> dict[str, Any]:
        """Mean PSNR on the validation pairs (the trainer's metric) of their noisy inputs, or of the cached targets
        of the validation inputs among a targets step's inputs; empty when there is nothing to score."""
        a = self.base
        try:
            found = (raw_pair_files if a.raw else paired_files)(a.data_val)
        except (OSError, ValueError):  # not a paired set (clean images with synthetic noise): nothing to score
            return {}
        pairs = {noisy.resolve(): clean for noisy, clean in found}
        if cache is not None:
            targets = dict(read_targets(cache, layout_name(a.n_colors, a.cfa_pattern)))
            pairs = {targets[p]: clean for p, clean in pairs.items() if p in targets}
        if not pairs:
            return {}
        scores = []
        for source, clean in pairs.items():
            x = np.load(source) if cache is not None else read_input(source, a.n_colors, a.cfa_pattern)
            y = read_input(clean, a.n_colors, a.cfa_pattern)
            scores.append(psnr_raw(x, y) if a.raw else psnr(x, y))
        return {"metric": "PSNR", "best": float(np.mean(scores))}


def staged_run(config: TrainConfig) -> RecipeRun:
    """``adfnet-train``'s run of a staged config (DBSN's ``stages``): the config's fields shared, each stage a
    training step ``<k>_<name>`` (its ``name``, else its ``dbsn_stage``) in ``<dir_experiment>/<save>``, from the
    previous stage's last weights with a fresh optimiser and schedule, as the authors' separate scripts. Flags
    given already won over every stage (:mod:`adfnet.engine.options`); ``--time_budget`` is each stage's (each is a
    run); ``--resume -1`` continues the whole recipe, and so do the commands its stop messages give."""
    if config.test_only or config.resume > 0:
        flag = "--test_only" if config.test_only else f"--resume {config.resume}"
        raise RecipeError(
            f"{flag} applies to one run: with a staged recipe, pass it with the stage's own recipe and --save "
            "(each stage is a run in <save>/<k>_<stage>), or continue the whole recipe with --resume -1"
        )
    shared = {k: getattr(config, k) for k in TrainConfig.field_names() if k != "stages"}
    steps: list[Step] = []
    for k, stage in enumerate(config.stages, 1):
        own = {key: value for key, value in stage.items() if key != "name"}
        if steps:
            own["pre_train"] = f"{steps[-1].name}:latest"
        steps.append(Step(f"{k}_{stage.get('name') or stage.get('dbsn_stage') or 'stage'}", "train", own))
    recipe = Recipe(f"the stages of --save {config.save}", shared, {}, tuple(steps))
    root = Path(config.dir_experiment) / config.save
    return RecipeRun(recipe, root, resume=config.resume == -1, continue_hint=partial(resume_command, config.save))


def format_summary(rows: Sequence[Mapping[str, Any]]) -> str:
    """The summary as a Markdown table."""

    def cell(value: object, spec: str = ".3f") -> str:
        return "-" if value is None else f"{value:{spec}}" if isinstance(value, float) else str(value)

    lines = [
        "| step | what | val metric | best val | last val | iterations | minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        spec = ".3f" if r.get("metric", "PSNR") == "PSNR" else ".6g"  # dB, or a loss (small)
        lines.append(
            f"| {r['step']} | {r['what']} | {cell(r.get('metric'))} | {cell(r.get('best'), spec)} | "
            f"{cell(r.get('last'), spec)} | {cell(r.get('iterations'))} | {cell(r.get('minutes'), '.1f')} |"
        )
    return "\n".join(lines)
