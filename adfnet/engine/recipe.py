"""Multi-step training recipes as data: training runs and teacher-target steps chained by name (``adfnet-distill``).

A recipe (YAML; ``configs/distill/mwrcanet.yml`` is MWRCANet's four-step distillation) holds

* ``train``: the :class:`~adfnet.engine.config.TrainConfig` fields every training step shares (train.py's
  option names, as in ``configs/*.yml``);
* ``steps``, run in order, each a ``name`` and either ``train`` (this run's own fields: ``model``,
  ``pre_train``, ``teacher_cache``, ...; and ``lr_factor``, a fine-tuning step's share of the learning rate, so
  that a scale's ``lr`` carries over) or ``targets`` (``teachers``, ``inputs``, ``ensemble``: teacher targets
  written once, :mod:`adfnet.engine.teacher_cache`);
* ``scales``: named overrides of every training step (``--scale cpu``: reduced widths and blocks, the schedule
  of a time budget); the published configuration is the recipe without one. A training step's fields are the
  shared ones, then its own, then the scale's, then ``--set``'s.

A value that names an earlier step stands for what it made: in ``pre_train``, ``teacher`` and ``teachers`` its
best weights (``<root>/<step>/model/model_best.pt``), in ``teacher_cache`` its targets folder; ``inputs``
``train`` and ``val`` are the noisy files of the shared ``dir_data`` and ``data_val`` (paired sets).

Every step has its own folder ``<root>/<name>`` and is resumable: the same command continues a training step
from its checkpoint (or finds it done: its epochs or its ``--time_budget`` spent) and reads a targets step back,
checked against its manifest (targets of teachers that trained on since are an error, never reused). After
each step the table of validation PSNR after each step is printed and written to ``<root>/summary.md`` and
``summary.csv``: the noisy input, each training step's best and last validation, and each targets step's
averaged teacher output on the validation inputs among its inputs.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from adfnet.data.datasets import paired_files
from adfnet.data.raw_pairs import raw_pair_files
from adfnet.engine.config import TrainConfig
from adfnet.engine.distill import Teacher
from adfnet.engine.runs import CHECKPOINT
from adfnet.engine.state import load_training_state
from adfnet.engine.teacher_cache import input_files, layout_name, read_input, read_targets, write_targets
from adfnet.engine.trainer import Trainer
from adfnet.errors import UserError
from adfnet.fileio import text_file, write_text
from adfnet.metrics import psnr, psnr_raw

RECIPE_KEYS = ("train", "scales", "steps")
TARGET_KEYS = ("teachers", "inputs", "ensemble")
WEIGHT_FIELDS = ("pre_train", "teacher")  # a step name there: its best weights
BEST = Path("model/model_best.pt")
SUMMARY_COLUMNS = ("best", "last", "iterations", "minutes")
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
    path: Path
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
        path,
        fields("train", data.get("train") or {}),
        {k: fields(f"scale {k}", v) for k, v in scales.items()},
        tuple(steps),
    )


class StepTrainer(Trainer):
    """The trainer of a recipe step: the recipe's own command continues it, not train.py's."""

    def continue_command(self, **flags: str) -> str:
        changed = " ".join(f"--{k} {v}" if k == "time_budget" else f"--set {k}={v}" for k, v in flags.items())
        return f"the same command again{f' with {changed}' if changed else ''} (the recipe resumes this step)"


class RecipeRun:
    """A recipe run in ``root``: the shared fields, a step's own, ``scale``'s and ``overrides`` (``--set``), in
    this order; every training step under ``time_budget`` minutes, every targets step with ``teacher_ensemble``
    when given (else its own ``ensemble``)."""

    def __init__(
        self,
        recipe: Recipe,
        root: str | Path,
        scale: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        time_budget: float | None = None,
        teacher_ensemble: str | None = None,
        log: Callable[[str], object] = print,
    ) -> None:
        if scale is not None and scale not in recipe.scales:
            raise RecipeError(f"--scale {scale}: {recipe.path} has {', '.join(recipe.scales) or 'no scales'}")
        self.recipe, self.root, self.log = recipe, Path(root), log
        self.late = {**(recipe.scales[scale] if scale else {}), **(overrides or {})}  # over every step's own
        self.time_budget, self.teacher_ensemble = time_budget, teacher_ensemble
        self.base = TrainConfig(**{**recipe.train, **self.late, "dir_experiment": str(self.root), "save": "recipe"})

    # ----------------------------------------------------------------------------------------- names
    def _step(self, name: str, before: Step, kind: str) -> Step | None:
        names = [s.name for s in self.recipe.steps]
        step = next((s for s in self.recipe.steps if s.name == name), None)
        if step is None:
            return None
        if names.index(name) >= names.index(before.name) or step.kind != kind:
            raise RecipeError(f"step {before.name}: {name} is not an earlier {kind} step of {self.recipe.path}")
        return step

    def _weights(self, value: str, before: Step) -> str:
        step = self._step(value, before, "train")
        return str(self.root / step.name / BEST) if step else value

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
        resume = (self.root / step.name / CHECKPOINT).is_file()
        fields["lr"] = fields.get("lr", TrainConfig.lr) * step.lr_factor
        fields.update(
            dir_experiment=str(self.root),
            save=step.name,
            time_budget=self.time_budget if self.time_budget is not None else fields.get("time_budget"),
            resume=-1 if resume else 0,
            overwrite=not resume,  # no checkpoint: nothing resumable; weights written before a first one are replaced
        )
        return TrainConfig(**fields)

    def run(self, only: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Run the steps (``only``: those named), each then the summary; returns the summary's rows."""
        unknown = sorted(set(only or ()) - {s.name for s in self.recipe.steps})
        if unknown:
            raise RecipeError(f"--steps {', '.join(unknown)}: {self.recipe.path} has {self._names()}")
        rows = self.summary()
        for step in self.recipe.steps:
            if only and step.name not in only:
                continue
            self.log(f"--- step {step.name} ({step.kind})")
            if step.kind == "train":
                StepTrainer(self.config(step)).fit()
            else:
                self.targets(step)
            rows = self.summary()
            self.log(format_summary(rows))
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
        """The rows so far (also written to ``summary.md`` and ``summary.csv``)."""
        rows = [{"step": "noisy input", "what": f"validation set {self.base.data_val}", **self._val_psnr(None)}]
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
            if key in config:
                what += f" {word} {config[key]}"
        last = (state.get("last_val") or {}).get("psnr")
        best = state["best"]["psnr"]
        return {
            "step": step.name,
            "what": what,
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
        return {"best": float(np.mean(scores))}


def format_summary(rows: Sequence[Mapping[str, Any]]) -> str:
    """The summary as a Markdown table."""

    def cell(value: object, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = [
        "| step | what | val PSNR (dB) | last val PSNR (dB) | iterations | minutes |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['step']} | {r['what']} | {cell(r.get('best'))} | {cell(r.get('last'))} | "
            f"{cell(r.get('iterations'))} | {cell(r.get('minutes'), 1)} |"
        )
    return "\n".join(lines)
