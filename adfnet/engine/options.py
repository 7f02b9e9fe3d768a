"""Command-line options of ``train.py``: the official flags with their meaning, plus a YAML config.

Defaults are the paper's full-scale recipes (spec section 4). Those that differ between the gray
and colour recipes default to ``None`` and are filled in from ``--n_colors``: gray 950 epochs with
x0.5 every 220, colour 1000 epochs with x0.5 every 200 (the official RGB ``--epochs`` default was
800, but every official RGB script passed 1000).

``--config configs/sidd.yml`` selects the real-noise recipe; its keys are the official
``training.yml`` ones (plus a few that the official code hard-coded), and any flag given explicitly on
the command line overrides the config (this is how the toy runs shrink a recipe).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import yaml

from adfnet.data.datasets import DATASETS_ROOT
from adfnet.models import add_model_arguments

GRAY_DEFAULTS = {"epochs": 950, "lr_decay": 220, "val_seed": 1, "data_val": "Set12"}
COLOR_DEFAULTS = {"epochs": 1000, "lr_decay": 200, "val_seed": 20, "data_val": "McMaster"}
TASK_DEFAULTS = {"val_per_epoch": 1, "val_after_epoch": 0, "mixup_after_epoch": -1, "clamp_output": False}


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def default_workers() -> int:
    """The official 4 DataLoader workers, but no more than the CPUs this process may use (beyond that
    the DataLoader warns and the workers only compete). Samples do not depend on the worker count."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(4, cpus)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``train.py`` (official flag names; see the module docstring for the defaults)."""
    p = argparse.ArgumentParser(description="Train ADFNet (gray/colour AWGN, or real noise with --config).")
    a = p.add_argument
    # hardware
    a("--cpu", action="store_true", help="train on the CPU even if CUDA is available")
    a("--n_GPUs", type=int, default=1, help="GPUs for DataParallel (ignored under torchrun: one GPU per process)")
    a("--n_threads", type=int, default=default_workers(),
      help="DataLoader worker processes (default: 4, or fewer on a machine with fewer CPUs: %(default)s here; "
      "the official default was 4 gray, 8 colour; the samples do not depend on it)")
    a("--seed", type=int, default=1, help="seeds the model init, crops, augmentation and noise")
    a("--amp", choices=("none", "fp16", "bf16"), default="none",
      help="mixed precision: fp16 or bf16 on CUDA, bf16 on the CPU (the DCN op stays in fp32)")
    # data
    a("--data_train", default="DIV2K", help="DIV2K or MIX (WED + DIV2K + Flickr2K + BSD400)")
    a("--dir_data", default=str(DATASETS_ROOT),
      help="a folder of clean training images, or the root holding DIV2K/ or MIX/ (default: the repository's "
      "datasets/, wherever train.py is run from; a relative path is relative to the current folder)")
    a("--data_val", default=None, help="validation folder (relative to the current folder), or a set name under "
      "the repository's datasets/testsets (default Set12 for gray, McMaster for colour; the official runs "
      "validated on Kodak24, not bundled: download it and pass --data_val datasets/testsets/Kodak24 to match)")
    a("--n_val", type=int, default=0, help="validate on the first n images only (0: all)")
    a("--val_seed", type=int, default=None, help="noise seed of every validation image (default 1 gray, 20 RGB, "
      "as the official test scripts)")
    a("--n_colors", type=int, choices=(1, 3), default=3, help="1 = gray, 3 = colour")
    a("--noiseL", type=float, default=50, help="AWGN sigma on the 0-255 scale")
    a("--patch_size", type=int, default=128, help="training crop size")
    # model
    add_model_arguments(p)
    a("--pre_train", default=".", help="weights to start from ('.' = none)")
    # optimisation
    a("--batch_size", type=int, default=16, help="global batch (split over GPUs/processes)")
    a("--epochs", type=int, default=None, help="default 950 gray, 1000 colour; 0 = practically endless")
    a("--test_every", type=int, default=None,
      help="iterations per epoch, synthetic noise (default 1000; with --data_train MIX the official epoch, two "
      "passes over the N images: ceil(2N / batch_size) iterations, about 1075 for the full MIX)")
    a("--lr", type=float, default=1e-4)
    a("--decay_type", default="step", help="step, step_a_b_... (milestones) or warmup_cosine")
    a("--lr_decay", type=int, default=None, help="StepLR period in epochs (default 220 gray, 200 colour)")
    a("--gamma", type=float, default=0.5, help="LR factor at each decay")
    a("--lr_min", type=float, default=1e-6, help="final LR of warmup_cosine")
    a("--warmup_epochs", type=int, default=3, help="linear warm-up epochs of warmup_cosine")
    a("--optimizer", choices=("ADAM", "SGD", "RMSprop"), default="ADAM")
    a("--momentum", type=float, default=0.9, help="SGD momentum")
    a("--beta1", type=float, default=0.9)
    a("--beta2", type=float, default=0.999)
    a("--epsilon", type=float, default=1e-8)
    a("--weight_decay", type=float, default=0.0)
    a("--loss", default="1*MSE", help="'+'-separated weight*name: MSE (sum of squares / 2B), L1, Charbonnier")
    a("--max_nonfinite", type=int, default=20, help="stop after this many non-finite losses in a row")
    a("--val_per_epoch", type=int, default=None, help="validations per epoch (default 1; real noise 3)")
    a("--val_after_epoch", type=int, default=None, help="validate only after this epoch (default 0; real noise 5)")
    a("--mixup_after_epoch", type=int, default=None, help="MixUp after this epoch (-1 = never; real noise 5)")
    a("--clamp_output", type=_bool, default=None, help="clamp the output to [0, 1] before the loss (real noise)")
    # run folder, checkpoints, testing
    a("--save", default=".", help="run name: experiment/<save>/ ('.' = a timestamp)")
    a("--dir_experiment", default="experiment", help="parent folder of the run folders")
    a("--resume", type=int, default=0,
      help="0: start (from --pre_train if given); -1: continue from checkpoint_latest.pt; n: from model_<n>.pt")
    a("--overwrite", action="store_true", help="start a new run in a --save folder that holds one (deletes its "
      "checkpoints; without it such a start is refused)")
    a("--save_models", action="store_true", help="also keep model/model_<epoch>.pt every epoch")
    a("--save_results", action="store_true", help="write the denoised validation images to results/")
    a("--print_every", type=int, default=100, help="iterations between loss lines in log.txt")
    a("--test_only", action="store_true", help="only validate (with --pre_train or --resume weights)")
    a("--chop", action="store_true", help="validate with the memory-saving 4-quadrant forward")
    a("--self_ensemble", action="store_true", help="validate with the x8 self-ensemble")
    a("--config", default=None, help="YAML recipe (configs/sidd.yml = real noise); explicit flags override it")
    return p


def _explicit(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """Names of the options actually written on the command line."""
    shadow = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            kwargs: dict[str, Any] = {"dest": action.dest, "default": argparse.SUPPRESS}
            if action.nargs == 0:
                kwargs["action"] = "store_const"
                kwargs["const"] = True
            shadow.add_argument(*action.option_strings, **kwargs)
    return set(vars(shadow.parse_known_args(argv)[0]))


def _from_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Map the official ``training.yml`` keys (+ our additions) to option names."""
    optim, training, model = cfg.get("OPTIM", {}), cfg.get("TRAINING", {}), cfg.get("MODEL", {})
    out: dict[str, Any] = {"n_colors": 3, "noiseL": 0, "decay_type": "warmup_cosine", "optimizer": "ADAM"}
    table = [
        (optim, "BATCH_SIZE", "batch_size"), (optim, "LR_INITIAL", "lr"), (optim, "LR_MIN", "lr_min"),
        (optim, "WEIGHT_DECAY", "weight_decay"), (optim, "WARMUP_EPOCHS", "warmup_epochs"),
        (optim, "LOSS", "loss"), (training, "TRAIN_PS", "patch_size"), (training, "TRAIN_DIR", "dir_data"),
        (training, "VAL_DIR", "data_val"), (training, "SAVE_IMAGES", "save_results"), (training, "SEED", "seed"),
        (training, "NUM_WORKERS", "n_threads"), (training, "VAL_PER_EPOCH", "val_per_epoch"),
        (training, "VAL_AFTER_EPOCH", "val_after_epoch"), (training, "MIXUP_AFTER_EPOCH", "mixup_after_epoch"),
        (training, "CLAMP_OUTPUT", "clamp_output"), (model, "ARCH", "model"), (model, "SESSION", "save"),
    ]
    for section, key, dest in table:
        if key in section:
            out[dest] = section[key]
    if "NUM_EPOCHS" in optim:  # the official loop ran NUM_EPOCHS + 40 epochs
        out["epochs"] = int(optim["NUM_EPOCHS"]) + int(optim.get("EXTRA_EPOCHS", 0))
    if "GPU" in cfg:
        out["n_GPUs"] = max(1, len(cfg["GPU"]))
    if training.get("RESUME"):
        out["resume"] = -1
    return out


def parse_options(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``, apply ``--config`` and the gray/colour defaults, and check the values."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.task = "synthetic"
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            parser.error(f"--config {path} not found")
        with open(path) as f:
            cfg = yaml.safe_load(f) or {}
        explicit = _explicit(parser, argv)
        for key, value in _from_config(cfg).items():
            if key not in explicit:
                setattr(args, key, value)
        args.task = "paired"
    for key, value in (GRAY_DEFAULTS if args.n_colors == 1 else COLOR_DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key, value in TASK_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.epochs < 0:
        parser.error(f"--epochs {args.epochs}: give the number of epochs to train (0 = practically endless)")
    if args.epochs == 0:
        args.epochs = 10**8
    if args.save == ".":
        args.save = time.strftime("%Y-%m-%d-%H:%M:%S")
    if args.test_every is None and args.data_train.upper() != "MIX":  # MIX: None = 2N samples (trainer)
        args.test_every = 1000
    for name in ("batch_size", "patch_size", "test_every", "val_per_epoch"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.patch_size % 8:
        parser.error(f"--patch_size {args.patch_size} must be a multiple of 8 (ADFNet downsamples three times)")
    return args
