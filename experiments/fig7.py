"""The ADFNet paper's Fig. 7 at CPU scale: DnCNN with / without one DConv, RDN with / without three MDCBs.

Every baseline / enhanced pair is trained by the project's trainer (:class:`adfnet.engine.trainer.Trainer`,
so each run is resumable and checked for divergence) with the same data, seed, iterations, optimiser and
schedule, on colour AWGN patches of the clean training images (fresh noise every iteration), then
evaluated with the test protocol (:func:`adfnet.evaluation.synthetic.evaluate_set`: official per-image
noise seed, whole images, 8-bit PSNR / SSIM). Seeds are fixed in advance on the command line; the
enhanced variant gets no extra budget.

Outputs in ``--out`` (default ``experiment/fig7``): ``runs/<config>_seed<k>/`` (the trainer's run folder,
``eval/<set>/sigma<N>/results.csv`` and ``score.json``), ``fig7_runs.csv`` (one row per run and set),
``fig7_table.md`` (mean +- std over seeds of each variant and of the PSNR gain) and ``fig7.png``.
A killed experiment continues where it stopped when the same command is run again: finished runs
(``score.json``) are read back, an interrupted one resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

from adfnet.cli.common import add_runtime_arguments, dcn_backend
from adfnet.data.datasets import DATASETS_ROOT
from adfnet.data.io import list_images
from adfnet.data.noise import build_noise
from adfnet.engine.config import TrainConfig
from adfnet.engine.runs import CHECKPOINT
from adfnet.engine.trainer import Trainer
from adfnet.evaluation.synthetic import EvalOptions, evaluate_set
from adfnet.fileio import atomic_file, text_file, write_text

TABLE = Path(__file__).with_name("fig7_table.md")  # the table's caption and header
# The trainer's schedule: EPOCHS epochs of iterations / EPOCHS each, the learning rate halved after epochs 2 and 3.
EPOCHS = 4
SCHEDULE = "step_2_3"
SETS = ("Kodak24", "CBSD68")
# Sized for an idle 2-core CPU, about an hour for the DnCNN grid (the arithmetic is in docs/PLUGIN.md).
DEFAULTS = {
    "backbones": ["dncnn"],
    "depths": [5, 10, 15],
    "channels": [32],
    "blocks": [3, 6, 9],
    "rdn_channels": [16],
    "seeds": [1, 2, 3],
    "iterations": 720,
    "patch_size": 40,
    "batch_size": 16,
    "lr": 1e-3,
    "sets": list(SETS),
    "data_root": str(DATASETS_ROOT / "testsets"),
}
# --quick: the whole pipeline in seconds on the bundled data (a test, not an experiment).
QUICK = {
    "depths": [3, 4],
    "channels": [8],
    "blocks": [2, 3],
    "rdn_channels": [8],
    "seeds": [1, 2],
    "iterations": EPOCHS,
    "patch_size": 16,
    "batch_size": 2,
    "sets": ["McMaster"],
    "limit": 1,
    "backbones": ["dncnn", "rdn"],
}
PLUGIN = {"dncnn": "dconv", "rdn": "mdcb"}
AXIS = {"dncnn": "depth", "rdn": "blocks"}


@dataclass(frozen=True)
class Config:
    """One network of the grid: backbone, depth (DnCNN layers / RDN blocks), width, with or without the plug-in."""

    backbone: str
    size: int
    channels: int
    enhanced: bool

    @property
    def options(self) -> dict[str, object]:
        return {AXIS[self.backbone]: self.size, "channels": self.channels, PLUGIN[self.backbone]: self.enhanced}

    @property
    def variant(self) -> str:
        return PLUGIN[self.backbone] if self.enhanced else "baseline"

    @property
    def name(self) -> str:
        return f"{self.backbone}_{AXIS[self.backbone]}{self.size}_c{self.channels}_{self.variant}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.fig7", description=__doc__.split("\n")[0])
    p.add_argument("--backbones", nargs="+", choices=("dncnn", "rdn"), help="default: dncnn (--quick: both)")
    p.add_argument("--depths", type=int, nargs="+", help=f"DnCNN depths (default {DEFAULTS['depths']})")
    p.add_argument("--channels", type=int, nargs="+", help=f"DnCNN widths (default {DEFAULTS['channels']})")
    p.add_argument("--blocks", type=int, nargs="+", help=f"RDN block counts (default {DEFAULTS['blocks']})")
    p.add_argument("--rdn_channels", type=int, nargs="+", help=f"RDN widths (default {DEFAULTS['rdn_channels']})")
    p.add_argument(
        "--seeds", type=int, nargs="+", help=f"training seeds, fixed in advance (default {DEFAULTS['seeds']})"
    )
    p.add_argument("--iterations", type=int, help=f"training iterations per run (default {DEFAULTS['iterations']})")
    p.add_argument("--patch_size", type=int, help=f"training crop (default {DEFAULTS['patch_size']})")
    p.add_argument("--batch_size", type=int, help=f"default {DEFAULTS['batch_size']}")
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default {DEFAULTS['lr']:g})")
    p.add_argument("--sigma", type=float, default=50, help="AWGN sigma on the 0-255 scale (default 50, as Fig. 7)")
    p.add_argument(
        "--train_data",
        default=str(DATASETS_ROOT / "trainsets/CBSD432_sample"),
        help="folder of clean training images (default: the bundled CBSD432 crops)",
    )
    p.add_argument(
        "--data_root", help="folder holding the test sets named by --sets (default: the repository's datasets/testsets)"
    )
    p.add_argument("--sets", nargs="+", help=f"test set folders under --data_root (default {' '.join(SETS)})")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of each test set")
    p.add_argument("--out", default="experiment/fig7", help="output folder (default experiment/fig7)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0: in process)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a seconds-long run of the whole pipeline on bundled data (flags still win)",
    )
    add_runtime_arguments(p)
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, value in {**DEFAULTS, **(QUICK if args.quick else {})}.items():
        if getattr(args, key) is None:  # a flag given on the command line wins over the preset
            setattr(args, key, value)
    if args.iterations < EPOCHS or args.iterations % EPOCHS:
        parser.error(f"--iterations must be a positive multiple of {EPOCHS} (the schedule has {EPOCHS} epochs)")
    if args.device:
        parser.error("--device: the trainer runs on CUDA when it is available, else on the CPU (--cpu forces it)")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit {args.limit}: give the number of images per test set to use (>= 1)")
    if args.patch_size % 8:
        parser.error(f"--patch_size {args.patch_size} must be a multiple of 8")
    if "rdn" in args.backbones and any(c % 8 for c in args.rdn_channels):
        parser.error("--rdn_channels must be multiples of 8 (MDCB's 8 deformable groups)")
    if len(args.seeds) < 2:
        parser.error("give at least 2 --seeds (the table reports a standard deviation over seeds)")
    return args


def grid(args: argparse.Namespace) -> list[Config]:
    """Every network of the experiment, each baseline next to its enhanced twin."""
    out = []
    for backbone in args.backbones:
        sizes, widths = (args.depths, args.channels) if backbone == "dncnn" else (args.blocks, args.rdn_channels)
        out += [Config(backbone, s, c, e) for c in widths for s in sizes for e in (False, True)]
    return out


def find_test_sets(args: argparse.Namespace) -> dict[str, list[Path]]:
    """Images of each test set; a missing set is an error naming where it was looked for."""
    root = Path(args.data_root)
    found = {}
    for name in args.sets:
        folder = root / name
        if not folder.is_dir():
            raise FileNotFoundError(
                f"test set {name} not found: {folder} is not a folder. Put the set there (datasets/README.md says "
                "where to download Kodak24 and CBSD68) or pass --data_root <folder holding it>"
            )
        files = list_images(folder)
        found[name] = files[: args.limit] if args.limit else files
    return found


def train_config(args: argparse.Namespace, config: Config, seed: int, run_dir: Path) -> TrainConfig:
    """The trainer's recipe for one run: the experiment's data, schedule and seed, the backbone's options."""
    return TrainConfig(
        model=config.backbone, model_options=config.options, n_colors=3, noiseL=args.sigma,
        dir_data=args.train_data, patch_size=args.patch_size, batch_size=args.batch_size, seed=seed, epochs=EPOCHS,
        test_every=args.iterations // EPOCHS, lr=args.lr, decay_type=SCHEDULE, gamma=0.5, val_after_epoch=EPOCHS,
        n_threads=args.workers, print_every=10**9, dir_experiment=str(run_dir.parent), save=run_dir.name,
        resume=-1 if (run_dir / CHECKPOINT).is_file() else 0, cpu=args.cpu,
    )  # fmt: skip


def recipe(args: argparse.Namespace, sets: dict[str, list[Path]]) -> dict[str, object]:
    """What a score depends on besides the network and seed; a cached score made otherwise is refused."""
    return {
        "iterations": args.iterations, "patch_size": args.patch_size, "batch_size": args.batch_size, "lr": args.lr,
        "sigma": args.sigma, "train_data": str(Path(args.train_data).resolve()),
        "test_images": {name: [f.name for f in files] for name, files in sets.items()},
    }  # fmt: skip


def run_one(args: argparse.Namespace, config: Config, seed: int, sets: dict[str, list[Path]]) -> dict:
    """Train (or finish training) one network and score it on every test set; cached in ``score.json``."""
    run_dir = Path(args.out) / "runs" / f"{config.name}_seed{seed}"
    score_file = run_dir / "score.json"
    if score_file.is_file():
        score = json.loads(score_file.read_text())
        if score.get("recipe") != recipe(args, sets):
            raise ValueError(
                f"{run_dir} holds a run made with other settings ({score_file} has them under 'recipe'): "
                "choose another --out for these settings, or repeat the earlier command"
            )
        return score
    start = time.perf_counter()
    trainer = Trainer(train_config(args, config, seed, run_dir))
    trainer.fit()
    trained = time.perf_counter()
    model = trainer.net.eval()
    opts = EvalOptions(n_colors=3, device=trainer.device)
    noise = build_noise("awgn", (args.sigma,))
    psnr, ssim = {}, {}
    for name, files in sets.items():
        result = evaluate_set(model, files, name, noise, run_dir / "eval" / name / noise.folder_name(), opts)
        if result.errors:
            raise RuntimeError(f"{config.name} seed {seed}: {result.errors[0]}")
        psnr[name], ssim[name] = result.mean_psnr, result.mean_ssim
    score = {
        "config": config.name, "backbone": config.backbone, "size": config.size, "channels": config.channels,
        "variant": config.variant, "seed": seed, "psnr": psnr, "ssim": ssim,
        "parameters": sum(p.numel() for p in model.parameters()), "iterations": trainer.iteration,
        "train_seconds": trained - start, "eval_seconds": time.perf_counter() - trained,
        "recipe": recipe(args, sets),
    }  # fmt: skip
    write_text(score_file, json.dumps(score, indent=1))  # atomic: a run counts as done once its score is written
    return score


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def summarise(scores: list[dict], sets: Sequence[str]) -> list[dict]:
    """Per (backbone, size, channels) and set: mean +- std over seeds of both variants and of the paired gain."""
    rows = []
    keys = sorted({(s["backbone"], s["channels"], s["size"]) for s in scores})
    for backbone, channels, size in keys:
        same = [s for s in scores if (s["backbone"], s["channels"], s["size"]) == (backbone, channels, size)]
        base = {s["seed"]: s for s in same if s["variant"] == "baseline"}
        plus = {s["seed"]: s for s in same if s["variant"] != "baseline"}
        seeds = sorted(base.keys() & plus.keys())
        for name in sets:
            b = [base[k]["psnr"][name] for k in seeds]
            e = [plus[k]["psnr"][name] for k in seeds]
            rows.append({
                "backbone": backbone, "axis": AXIS[backbone], "size": size, "channels": channels, "set": name,
                "seeds": len(seeds), "baseline": _mean_std(b), "enhanced": _mean_std(e),
                "gain": _mean_std([y - x for x, y in zip(b, e, strict=True)]),
            })  # fmt: skip
    return rows


def table(rows: list[dict], args: argparse.Namespace) -> str:
    """The Markdown table (PSNR dB, mean +- sample std over seeds) under its caption (:data:`TABLE`)."""
    lines = []
    for r in rows:
        cells = [f"{m:.3f} +- {s:.3f}" for m, s in (r["baseline"], r["enhanced"], r["gain"])]
        plugin = "+ DConv" if r["backbone"] == "dncnn" else "+ 3 MDCB"
        lines.append(
            f"| {r['backbone']} ({plugin}) | {r['size']} | {r['channels']} | {r['set']} | " + " | ".join(cells) + " |"
        )
    return Template(TABLE.read_text()).substitute(
        sigma=f"{args.sigma:g}", iterations=args.iterations, batch_size=args.batch_size, patch=args.patch_size,
        lr=f"{args.lr:g}", seeds=args.seeds, train_data=args.train_data, rows="\n".join(lines),
        limit=f" Only the first {args.limit} image(s) of each set (--limit)." if args.limit else "",
    )  # fmt: skip


def plot(rows: list[dict], sigma: float, path: Path) -> None:
    """``fig7.png``: PSNR against depth (DnCNN) / blocks (RDN), both variants, one panel per backbone and set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["backbone"], r["set"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (backbone, set_name) in zip(axes[0], panels, strict=True):
        for channels in sorted({r["channels"] for r in rows if r["backbone"] == backbone}):
            sel = sorted(
                (r for r in rows if (r["backbone"], r["set"], r["channels"]) == (backbone, set_name, channels)),
                key=lambda r: r["size"],
            )
            x = [r["size"] for r in sel]
            for key, style, label in (
                ("baseline", "o-", backbone),
                ("enhanced", "s--", f"{backbone}+{PLUGIN[backbone]}"),
            ):
                mean = [r[key][0] for r in sel]
                std = [0.0 if math.isnan(r[key][1]) else r[key][1] for r in sel]
                ax.errorbar(x, mean, yerr=std, fmt=style, capsize=3, label=f"{label} c{channels}")
        ax.set_xticks(sorted({r["size"] for r in rows if r["backbone"] == backbone}))
        ax.set_xlabel(AXIS[backbone])
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"{backbone} on {set_name}, colour sigma {sigma:g}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def write_runs_csv(scores: list[dict], sets: Sequence[str], path: Path) -> None:
    with text_file(path) as fh:
        writer = csv.writer(fh)
        writer.writerow(["config", "backbone", "size", "channels", "variant", "seed", "set", "psnr", "ssim", "params"])
        for s in scores:
            for name in sets:
                writer.writerow([
                    s["config"], s["backbone"], s["size"], s["channels"], s["variant"], s["seed"], name,
                    f"{s['psnr'][name]:.4f}", f"{s['ssim'][name]:.4f}", s["parameters"],
                ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sets = find_test_sets(args)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        runs = [(config, seed) for seed in args.seeds for config in grid(args)]
        scores = []
        with dcn_backend(args.dcn_backend):
            for i, (config, seed) in enumerate(runs, start=1):
                print(f"[{i}/{len(runs)}] {config.name} seed {seed}", flush=True)
                scores.append(run_one(args, config, seed, sets))
        rows = summarise(scores, list(sets))
        write_runs_csv(scores, list(sets), out / "fig7_runs.csv")
        text = table(rows, args)
        write_text(out / "fig7_table.md", text)
        plot(rows, args.sigma, out / "fig7.png")
    except (OSError, ValueError, RuntimeError) as err:  # a full disk included (adfnet.fileio.WriteError)
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(text)
    print(f"wrote {out / 'fig7_table.md'}, {out / 'fig7_runs.csv'} and {out / 'fig7.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
