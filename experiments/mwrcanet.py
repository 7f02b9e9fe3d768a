"""MWRCANet's four-step distillation measured at CPU scale on unprocessed bundled images (docs/RAW.md).

1. Data, made once in ``<out>/data`` with seeds fixed in advance: fixed raw pairs (Brooks et al.'s unprocessing
   with random shot/read noise, :func:`adfnet.data.unprocess.write_raw_pairs`) from the bundled CBSD432 sample
   (training: ``--copies`` random ``--crop`` crops of each image, each with its own camera and noise) and McMaster
   (validation: one ``--val_crop`` crop of each), RGGB mosaics with clean truth, as SIDD's raw pairs are.
2. The recipe ``configs/distill/mwrcanet.yml`` at ``--scale cpu`` (reduced widths and blocks), every training step
   under the same ``--time_budget`` (minutes of wall-clock training), through :mod:`adfnet.engine.recipe`.
3. The validation PSNR after each step: ``<out>/summary.md`` and ``summary.csv``, printed at the end.

The same command continues a killed measurement (the data are kept, each step resumes or is found done). A
budget of a few minutes per step only checks the pipeline: the numbers mean something at the default.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from adfnet.cli.common import add_runtime_arguments, dcn_backend, finite_float, training_on_cpu
from adfnet.data.datasets import DATASETS_ROOT
from adfnet.data.io import list_images
from adfnet.data.unprocess import write_raw_pairs
from adfnet.engine.config import TEACHER_ENSEMBLES
from adfnet.engine.recipe import RecipeRun, format_summary, load_recipe
from adfnet.fileio import write_text

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "distill" / "mwrcanet.yml"
DATA_SEEDS = {"train": 1, "val": 2}  # fixed in advance; the recipe's own seed drives the training


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.mwrcanet", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="experiment/mwrcanet_cpu", help="the measurement's folder")
    p.add_argument(
        "--time_budget", type=finite_float(0, strict=True), default=15.0, help="minutes per training step (5 steps)"
    )
    p.add_argument("--scale", default="cpu", help="the recipe's scale (cpu: widths 32, 2 blocks per group)")
    p.add_argument("--teacher_ensemble", choices=TEACHER_ENSEMBLES, default=None, help="the targets steps' x8")
    p.add_argument("--train_images", default=str(DATASETS_ROOT / "trainsets/CBSD432_sample"), help="clean sRGB")
    p.add_argument("--val_images", default=str(DATASETS_ROOT / "testsets/McMaster"), help="clean sRGB")
    p.add_argument("--copies", type=int, default=8, help="training crops per image")
    p.add_argument("--crop", type=int, default=128, help="training crop (mosaic pixels, even)")
    p.add_argument("--val_crop", type=int, default=256, help="validation crop (mosaic pixels, even)")
    add_runtime_arguments(p)
    return p


def make_data(args: argparse.Namespace, data: Path) -> dict[str, Path]:
    """The fixed raw pairs, written once; ``data/plan.json`` records how, and data made another way are refused
    (a measurement is never continued on other data)."""
    plan = {
        "train": {"images": str(Path(args.train_images).resolve()), "crop": args.crop, "copies": args.copies},
        "val": {"images": str(Path(args.val_images).resolve()), "crop": args.val_crop, "copies": 1},
        "seeds": DATA_SEEDS,
    }
    recorded = data / "plan.json"
    if recorded.is_file() and json.loads(recorded.read_text()) != plan:
        raise ValueError(
            f"the data in {data} were made with other settings ({recorded}): give another --out, or delete {data}"
        )
    folders = {}
    for name in ("train", "val"):
        folder = folders[name] = data / name
        if not recorded.is_file():
            part = plan[name]
            count = write_raw_pairs(list_images(part["images"]), folder, DATA_SEEDS[name], part["crop"], part["copies"])
            print(f"{name}: {count} raw pairs from {part['images']} in {folder}")
    write_text(recorded, json.dumps(plan, indent=1) + "\n")  # last: a killed write is made again
    return folders


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    try:
        folders = make_data(args, out / "data")
        overrides = {"dir_data": str(folders["train"]), "data_val": str(folders["val"])}
        if training_on_cpu(args.cpu, args.device):
            overrides["cpu"] = True
        run = RecipeRun(
            load_recipe(RECIPE), out / "steps", args.scale, overrides, args.time_budget, args.teacher_ensemble
        )
        with dcn_backend(args.dcn_backend):
            rows = run.run()
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"\nValidation PSNR after each step ({args.time_budget:g} min per training step, scale {args.scale}):")
    print(format_summary(rows))
    print(f"(also in {out / 'steps/summary.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
