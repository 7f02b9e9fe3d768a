"""Run a multi-step training recipe (``adfnet-distill``); by default MWRCANet's four-step distillation.

    adfnet-distill --dir_data <raw pairs> --data_val <raw pairs> --out experiment/mwrcanet
    adfnet-distill --dir_data <raw pairs> --data_val <raw pairs> --out experiment/mwrcanet_cpu --scale cpu \\
        --time_budget 15        # reduced widths and blocks, 15 minutes per training step
    adfnet-distill --out experiment/mwrcanet --summary                   # the table so far

The recipe (``--recipe``: a name under ``configs/distill/`` or a file) lists the steps; each runs in its own
folder under ``--out`` and the same command continues an interrupted recipe (a training step from its
checkpoint, a targets step read back and checked). After each step the validation PSNR table is printed and
written to ``<out>/summary.md`` and ``summary.csv``. ``--dir_data`` / ``--data_val`` are paired sets
(raw: ``clean/`` and ``noisy/`` mosaics; ``adfnet.data.unprocess.write_raw_pairs`` makes them from sRGB
images); ``--set KEY=VALUE`` changes any shared train.py option (YAML values: ``--set lr=2e-4``). Exit code 0,
1 with a one-line message for a mistake, 130 after a Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from adfnet.cli.common import (
    add_runtime_arguments,
    check_writable_dir,
    command_name,
    dcn_backend,
    finite_float,
    training_on_cpu,
)
from adfnet.engine.config import TEACHER_ENSEMBLES
from adfnet.engine.recipe import RecipeRun, format_summary, load_recipe
from adfnet.engine.state import CheckpointError
from adfnet.engine.trainer import NonFiniteLossError

RECIPES = Path(__file__).resolve().parents[2] / "configs" / "distill"


def recipe_path(text: str) -> Path:
    """``--recipe`` as given, else a name in the repository's ``configs/distill/`` (``mwrcanet``)."""
    path = Path(text)
    if path.is_file():
        return path
    candidate = RECIPES / f"{text}.yml"
    if "/" not in text and candidate.is_file():
        return candidate
    names = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yml")))
    raise FileNotFoundError(f"--recipe {text} not found (recipes in configs/distill: {names})")


def _assignment(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not YAML ({err})") from None
    if isinstance(parsed, str):  # YAML reads 5e-4 (no dot) as text: a number as train.py would take it
        for number in (int, float):
            try:
                return key, number(parsed)
            except ValueError:
                pass
    return key, parsed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=command_name("adfnet-distill"), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--recipe", default="mwrcanet", help="a recipe name in configs/distill/, or a YAML file")
    p.add_argument(
        "--out", default=None, help="the recipe's folder, one subfolder per step (default experiment/<recipe>)"
    )
    p.add_argument("--dir_data", default=None, help="the training pairs (the recipe's dir_data)")
    p.add_argument("--data_val", default=None, help="the validation pairs (the recipe's data_val)")
    p.add_argument("--scale", default=None, help="a scale of the recipe (e.g. cpu: reduced widths and blocks)")
    p.add_argument(
        "--time_budget",
        type=finite_float(0, strict=True),
        default=None,
        metavar="MINUTES",
        help="wall-clock budget of every training step (each step its own; train.py's --time_budget)",
    )
    p.add_argument(
        "--teacher_ensemble",
        choices=TEACHER_ENSEMBLES,
        default=None,
        help="the x8 ensemble of every targets step's teachers (default: the recipe's)",
    )
    p.add_argument("--steps", nargs="+", default=None, metavar="NAME", help="run only these steps")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        type=_assignment,
        default=[],
        metavar="KEY=VALUE",
        help="change a shared train.py option of the recipe (a step's own value wins)",
    )
    p.add_argument("--summary", action="store_true", help="print the summary table of --out and stop")
    add_runtime_arguments(p)
    return p


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    path = recipe_path(args.recipe)
    out = Path(args.out or Path("experiment") / path.stem)
    if args.summary:
        summary = out / "summary.md"
        if not summary.is_file():
            raise FileNotFoundError(f"{summary} does not exist: no step of a recipe in --out {out} has run")
        print(summary.read_text(), end="")
        return 0
    overrides = dict(args.overrides)
    for key in ("dir_data", "data_val"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if training_on_cpu(args.cpu, args.device):
        overrides["cpu"] = True
    check_writable_dir(out, "--out")
    recipe = RecipeRun(load_recipe(path), out, args.scale, overrides, args.time_budget, args.teacher_ensemble)
    with dcn_backend(args.dcn_backend):
        rows = recipe.run(args.steps)
    print(f"\nsummary ({out / 'summary.md'}):\n{format_summary(rows)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except (FileNotFoundError, ValueError, CheckpointError, NonFiniteLossError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C): run the same command to continue the recipe", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
