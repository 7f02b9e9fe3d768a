"""DBSN at CPU scale: a denoiser learned from noisy images alone, distilled into ADFNet, against supervised ADFNet.

Two measurements, each a chain of the project's own commands (``adfnet-train``, ``adfnet-test``) run in-process
with the arguments written to ``<out>/commands.sh`` as a user would type them, at a fixed wall-clock budget per
training stage (``--time_budget``) and with seeds fixed in advance (``--seed``, default 1, for every run;
test noise: each protocol's own seed):

* ``awgn`` (gray, sigma 25): a fixed noisy copy of the training images (AWGN 25 from the noise module, one
  draw per image, seeds 0, 1, ..., saved as 8-bit PNG like a photo) is all D-BSN sees (``--config
  dbsn_gray_awgn``, its two stages, ``--task noisy``). D-BSN is scored on the test sets (its MAP output), then
  distilled into ADFNet for one budget (``--config distill_dbsn``: the learned noise on ``--clean_dir``, images
  disjoint from the training and test sets, mixed with the (noisy copy, D-BSN MAP) pairs). The reference is
  ADFNet trained supervised (clean training images, fresh AWGN) for the same total budget (D-BSN's stages plus
  the distillation). Every network is scored under DBSN's protocol and ours, with DBSN's published BSD68
  numbers beside them.
* ``sidd`` (real noise): D-BSN (``--config dbsn_rgb_hg``, its three stages) on the noisy images of the bundled
  SIDD pairs only, then scored against their ground truth (8-bit PSNR/SSIM, the SIDD protocol), which training
  never reads.

The networks are sized for a CPU (``CPU_DBSN``, and ADFNet at small patches and batches): the numbers show the
pipeline working, not the published quality. Outputs: ``<out>/runs/`` (the runs), ``<out>/eval/``
(``adfnet-test``'s results), ``<out>/dbsn_table.md``. Run the same command again after a kill: finished steps
are kept (a ``done`` file), an interrupted training continues from its checkpoint (``--resume -1``).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from adfnet.checkpoint import load_checkpoint
from adfnet.cli import test as test_cli
from adfnet.cli import train as train_cli
from adfnet.data.datasets import DATASETS_ROOT
from adfnet.data.io import list_images, read_image, save_image
from adfnet.data.noise import build_noise
from adfnet.evaluation.published import PUBLISHED_DBSN_KD, PUBLISHED_DBSN_N2C, PUBLISHED_DBSN_SELF
from adfnet.evaluation.real import denoise_uint8, score_pairs
from adfnet.fileio import append_text, write_text
from adfnet.imaging import image_to_tensor, quantize, tensor_to_image

# D-BSN at CPU scale: a third of the authors' width, two inception blocks per branch (about 0.2 M parameters
# instead of 6.6 M); the sigma nets as the recipes have them.
CPU_DBSN = {"mid_ch": 32, "br1_block_num": 2, "br2_block_num": 2}
PATCH, BATCH, VAL_EVERY = 48, 8, 200  # patches, batch and iterations between validations of every run
SIGMA = 25.0
DBSN_BSD68 = {  # DBSN's published gray sigma 25 BSD68 numbers: D-BSN alone, distilled, N2C
    name: table[(1, "bsd68", "awgn", (SIGMA,))].psnr
    for name, table in (("D-BSN", PUBLISHED_DBSN_SELF), ("distilled", PUBLISHED_DBSN_KD), ("N2C", PUBLISHED_DBSN_N2C))
}


class Steps:
    """Runs each step once: its commands are logged to ``commands.sh``; a finished step leaves a ``done`` file."""

    def __init__(self, out: Path, device: str) -> None:
        self.out, self.device = out, device
        out.mkdir(parents=True, exist_ok=True)

    def command(self, program: str, main: Callable[[list[str]], int], argv: list[str]) -> None:
        line = shlex.join([f".venv/bin/{program}", *argv])
        print(f"\n$ {line}", flush=True)
        append_text(self.out / "commands.sh", line + "\n")
        given, sys.argv = sys.argv, [f".venv/bin/{program}", *argv]  # what a stop message tells a user to rerun
        try:
            code = main(argv)
        finally:
            sys.argv = given
        if code != 0:
            raise SystemExit(f"the step failed (exit code {code}): {line}")

    @property
    def device_flags(self) -> list[str]:
        return ["--cpu"] if self.device == "cpu" else ["--device", self.device]

    def train(self, save: str, argv: list[str]) -> Path:
        """A training run (or staged recipe) in ``runs/<save>``; continued with --resume -1 if interrupted."""
        run = self.out / "runs" / save
        if not (run / "done").is_file():
            resume = ["--resume", "-1"] if run.is_dir() else []
            where = ["--dir_experiment", str(run.parent), "--save", save]
            self.command("adfnet-train", train_cli.main, [*argv, *self.device_flags, *where, *resume])
            write_text(run / "done", time.strftime("%Y-%m-%d %H:%M:%S\n"))
        return run

    def test(self, weights: Path, test_dirs: Sequence[str], protocol: str, limit: int | None) -> dict[str, float]:
        """``adfnet-test`` of ``weights`` (of run ``runs/<name>``) at sigma 25 under ``protocol``: each set's PSNR."""
        name = weights.relative_to(self.out / "runs").parts[0]
        folder = self.out / "eval" / f"{name}_{protocol}"
        if not (folder / "summary.csv").is_file():
            argv = ["--weights", str(weights), "--input_dir", *test_dirs, "--test_noiseL", f"{SIGMA:g}"]
            argv += ["--protocol", protocol, "--result_dir", str(folder), *self.device_flags]
            argv += ["--limit", str(limit)] if limit else []
            self.command("adfnet-test", test_cli.main, argv)
        with open(folder / "summary.csv") as f:
            return {row["set"]: float(row["psnr"]) for row in csv.DictReader(f)}


def noisy_copy(train_dir: Path, folder: Path) -> Path:
    """The training images with AWGN 25 (seed k for the k-th image), 8-bit PNG: a folder of noisy photos."""
    if not (folder / "done").is_file():
        noise = build_noise("awgn", (SIGMA,))
        for k, path in enumerate(list_images(train_dir)):
            clean = image_to_tensor(read_image(path, 1))
            save_image(folder / f"{path.stem}.png", tensor_to_image(noise(clean, seed=k).clamp(0, 1)))
        write_text(folder / "done", "AWGN sigma 25, seed k for the k-th image (sorted names), clipped, 8-bit\n")
    return folder


def train_self_supervised(steps: Steps, args: argparse.Namespace) -> tuple[Path, Path]:
    """D-BSN on the noisy copy (its two stages), then distilled into ADFNet: (teacher weights, student run)."""
    budget, common = [f"{args.budget:g}"], awgn_flags(args)
    noisy = noisy_copy(Path(args.train_dir), steps.out / "noisy_train")
    dbsn = steps.train(
        "dbsn_awgn",
        ["--config", "dbsn_gray_awgn", "--dir_data", str(noisy), "--model_options", json.dumps(CPU_DBSN), *common]
        + ["--epochs", "0", "--time_budget", *budget],
    )
    teacher = dbsn / "2_all" / "model" / "model_latest.pt"  # the last weights: no clean image may pick a "best"
    distilled = steps.train(
        "adfnet_distilled",
        ["--config", "distill_dbsn", "--model", "adfnet", "--n_colors", "1", "--teacher", str(teacher)]
        + ["--teacher_inputs", str(noisy), "--teacher_cache", str(steps.out / "runs" / "dbsn_awgn_targets")]
        + ["--dir_data", args.clean_dir, "--data_val", args.clean_dir, "--n_val", "2", *common]
        + ["--epochs", "0", "--time_budget", *budget],
    )
    return teacher, distilled


def train_supervised(steps: Steps, args: argparse.Namespace) -> Path:
    """The reference: ADFNet on clean images with fresh AWGN, for D-BSN's two stages plus the distillation."""
    return steps.train(
        "adfnet_supervised",
        ["--config", "gray_n25", "--dir_data", args.train_dir, "--data_val", args.clean_dir, "--n_val", "2"]
        + [*awgn_flags(args), "--epochs", "0", "--time_budget", f"{3 * args.budget:g}"],
    )


def awgn_flags(args: argparse.Namespace) -> list[str]:
    sizes = ["--patch_size", str(PATCH), "--batch_size", str(BATCH), "--test_every", str(VAL_EVERY)]
    return [*sizes, "--seed", str(args.seed)]


def measure_awgn(steps: Steps, args: argparse.Namespace) -> list[str]:
    teacher, distilled = train_self_supervised(steps, args)
    supervised = train_supervised(steps, args)
    rows = {
        "D-BSN (noisy images only)": (teacher, "D-BSN"),
        "ADFNet distilled from D-BSN": (distilled / "model" / "model_latest.pt", "distilled"),
        "ADFNet supervised (same total budget)": (supervised / "model" / "model_latest.pt", "N2C"),
    }
    sets = [Path(d).name for d in args.test_dirs]
    lines = [
        f"Gray AWGN sigma 25, {args.budget:g} min per training stage (D-BSN 2 stages, distillation 1; supervised "
        f"ADFNet {3 * args.budget:g} min), seed {args.seed}; PSNR (dB) under DBSN's protocol / ours.",
        "",
        "| network | " + " | ".join(sets) + " | DBSN published (BSD68) |",
        "|---|" + "---|" * len(sets) + "---|",
    ]
    for title, (weights, published) in rows.items():
        scores = {p: steps.test(weights, args.test_dirs, p, args.limit) for p in ("dbsn", "adfnet")}
        cells = [
            f"{scores['dbsn'].get(s, float('nan')):.2f} / {scores['adfnet'].get(s, float('nan')):.2f}" for s in sets
        ]
        lines.append(f"| {title} | " + " | ".join(cells) + f" | {DBSN_BSD68[published]:.2f} ({published}) |")
    return lines


def measure_sidd(steps: Steps, args: argparse.Namespace) -> list[str]:
    sidd = Path(args.sidd_dir)
    common = ["--patch_size", str(PATCH), "--batch_size", str(BATCH), "--test_every", str(VAL_EVERY)]
    run = steps.train(
        "dbsn_sidd",
        ["--config", "dbsn_rgb_hg", "--dir_data", str(sidd / "NOISY"), "--model_options", json.dumps(CPU_DBSN)]
        + [*common, "--seed", str(args.seed), "--epochs", "0", "--time_budget", f"{args.budget:g}"],
    )
    weights = run / "3_all" / "model" / "model_latest.pt"
    device = torch.device(steps.device)
    model, _ = load_checkpoint(weights, device=device)
    noisy_files = list_images(sidd / "NOISY")
    outputs, noisy, targets = [], [], []
    for path in noisy_files:  # the ground truth is read only here, after training
        image = quantize(read_image(path, 3))
        outputs.append(quantize(denoise_uint8(model, image, device)))
        noisy.append(image)
        targets.append(quantize(read_image(sidd / "GT" / path.name, 3)))
    mean = lambda scores, i: sum(s[i] for s in scores) / len(scores)  # noqa: E731
    ours, before = score_pairs(outputs, targets), score_pairs(noisy, targets)
    return [
        f"Real noise: D-BSN (dbsn_rgb_hg, 3 stages of {args.budget:g} min, seed {args.seed}) on the {len(noisy_files)} "
        "noisy SIDD images alone, scored against their ground truth (8-bit PSNR / SSIM).",
        "",
        "| | PSNR (dB) | SSIM |",
        "|---|---|---|",
        f"| noisy input | {mean(before, 0):.2f} | {mean(before, 1):.4f} |",
        f"| D-BSN (MAP output) | {mean(ours, 0):.2f} | {mean(ours, 1):.4f} |",
    ]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.dbsn", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "what",
        nargs="*",
        metavar="{awgn,sidd}",
        help="which measurements (default both); awgn-dbsn and awgn-supervised train only that arm of awgn, so "
        "that the two can run side by side (then awgn scores them)",
    )
    p.add_argument("--budget", type=float, default=30.0, help="minutes of training per stage (default 30)")
    p.add_argument("--seed", type=int, default=1, help="the seed of every training run (default 1)")
    p.add_argument(
        "--train_dir", default=str(DATASETS_ROOT / "trainsets/Train400_sample"), help="gray training images (Train400)"
    )
    p.add_argument(
        "--clean_dir",
        default=str(DATASETS_ROOT / "testsets/McMaster"),
        help="clean images for the distillation's synthesized pairs and the students' validation, disjoint from the "
        "training and test sets (read as gray; default the bundled McMaster)",
    )
    p.add_argument(
        "--test_dirs", nargs="+", default=[str(DATASETS_ROOT / "testsets/Set12")], help="gray test sets (Set12 BSD68)"
    )
    p.add_argument("--sidd_dir", default=str(DATASETS_ROOT / "real/SIDD_samples"), help="SIDD pairs: NOISY/ and GT/")
    p.add_argument("--limit", type=int, default=None, help="score only the first N images of each test set (a check)")
    p.add_argument("--out", default="experiment/dbsn_measure", help="outputs (default %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu (the measurement's scale), or cuda")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.what = args.what or ["awgn", "sidd"]
    if set(args.what) - {"awgn", "sidd", "awgn-dbsn", "awgn-supervised"}:
        parser.error(f"the measurements are awgn and sidd (or awgn-dbsn, awgn-supervised), got {' '.join(args.what)}")
    steps = Steps(Path(args.out), args.device)
    torch.manual_seed(args.seed)
    tables = []
    if "awgn-dbsn" in args.what:
        train_self_supervised(steps, args)
    if "awgn-supervised" in args.what:
        train_supervised(steps, args)
    if "awgn" in args.what:
        tables += measure_awgn(steps, args) + [""]
    if "sidd" in args.what:
        tables += measure_sidd(steps, args)
    if not tables:
        return 0
    write_text(steps.out / "dbsn_table.md", "\n".join(tables) + "\n")
    print("\n" + "\n".join(tables))
    print(f"\nthe table: {steps.out / 'dbsn_table.md'}; the commands: {steps.out / 'commands.sh'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
