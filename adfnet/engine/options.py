"""Command-line options of ``train.py``: the official flags with their meaning, plus a YAML config.

Defaults are the paper's full-scale recipes (the official command lines). Those that differ between the gray
and colour recipes default to ``None`` and are filled in from ``--n_colors``: gray 950 epochs with
x0.5 every 220, colour 1000 epochs with x0.5 every 200 (the official RGB ``--epochs`` default was
800, but every official RGB script passed 1000).

``--config`` reads a recipe (``configs/<recipe>.yml``, one per paper recipe, ``configs/sidd.yml`` for real
noise): its keys are these options' names, its values become the parser's defaults, so any flag given on
the command line overrides the recipe (this is how the toy runs shrink one).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from adfnet.cli.common import add_runtime_arguments, finite_float, join_negative_numbers
from adfnet.data.datasets import DATASETS_ROOT
from adfnet.data.noise import NOISE_NAMES, build_noise, noise_from_flags
from adfnet.data.raw import CFA_PATTERNS
from adfnet.models import ADFNet, add_model_arguments

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

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
    """The parser of ``train.py`` / ``adfnet-train`` (official flag names; the module docstring has the defaults)."""
    p = argparse.ArgumentParser(
        prog="adfnet-train", description="Train ADFNet (gray/colour AWGN, or real noise with --config)."
    )
    hw = p.add_argument_group("hardware")
    hw.add_argument(
        "--n_GPUs", type=int, default=1, help="GPUs for DataParallel (ignored under torchrun: one GPU per process)"
    )
    hw.add_argument(
        "--n_threads",
        type=int,
        default=default_workers(),
        help="DataLoader worker processes (default: 4, or fewer on a machine with fewer CPUs: %(default)s "
        "here; the official default was 4 gray, 8 colour; the samples do not depend on it)",
    )
    hw.add_argument("--seed", type=int, default=1, help="seeds the model init, crops, augmentation and noise")
    hw.add_argument(
        "--amp",
        choices=("none", "fp16", "bf16"),
        default="none",
        help="mixed precision: fp16 or bf16 on CUDA (the DCN op stays in fp32), bf16 on the CPU",
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--task",
        choices=("synthetic", "paired"),
        default="synthetic",
        help="synthetic: AWGN added to clean images; paired: hq/ + lq/ folders (real noise, SIDD)",
    )
    data.add_argument("--data_train", default="DIV2K", help="DIV2K or MIX (WED + DIV2K + Flickr2K + BSD400)")
    data.add_argument(
        "--dir_data",
        default=str(DATASETS_ROOT),
        help="a folder of clean training images, or the root holding DIV2K/ or MIX/ (default: the "
        "repository's datasets/, wherever train.py is run from; a relative path is relative to the "
        "current folder)",
    )
    data.add_argument(
        "--data_val",
        default=None,
        help="validation folder (relative to the current folder), or a set name under the repository's "
        "datasets/testsets (default Set12 for gray, McMaster for colour; the official runs validated on "
        "Kodak24, not bundled: download it and pass --data_val datasets/testsets/Kodak24 to match)",
    )
    data.add_argument("--n_val", type=int, default=0, help="validate on the first n images only (0: all)")
    data.add_argument(
        "--val_seed",
        type=int,
        default=None,
        help="noise seed of every validation image (default 1 gray, 20 RGB, as the official test scripts)",
    )
    data.add_argument(
        "--n_colors", type=int, choices=(1, 3, 4), default=3, help="1 = gray, 3 = colour, 4 = packed Bayer raw (--raw)"
    )
    data.add_argument("--noiseL", type=finite_float(0), default=50, help="AWGN sigma on the 0-255 scale")
    data.add_argument(
        "--noise",
        type=str.lower,
        choices=NOISE_NAMES,
        default=None,
        help="synthetic noise model (default: AWGN at --noiseL; with --raw: poisson_gaussian with Brooks et "
        "al.'s random shot/read levels); parameters in --noise_params (docs/TRAINING.md)",
    )
    data.add_argument(
        "--noise_params",
        nargs="+",
        type=finite_float(0),
        default=None,
        help="parameters of --noise, e.g. --noise hg --noise_params 40 10",
    )
    data.add_argument(
        "--raw",
        action="store_true",
        help="raw denoising: 4-channel model on packed Bayer (R, Gr, Gb, B); synthetic task = unprocessed "
        "clean sRGB images (Brooks et al. 2019), paired task = <dir_data>/{clean,noisy}/*.npy|.mat mosaics",
    )
    data.add_argument("--cfa_pattern", choices=CFA_PATTERNS, default="RGGB", help="Bayer pattern of the raw data")
    data.add_argument(
        "--clip_noisy",
        type=_bool,
        default=False,
        help="clip the noisy training inputs to [0, 1] (SADNet's release; ADFNet's did not)",
    )
    data.add_argument(
        "--patch_size", type=int, default=128, help=f"training crop size (a multiple of {ADFNet.size_multiple})"
    )
    model = p.add_argument_group("model")
    add_model_arguments(model)
    model.add_argument("--pre_train", default=".", help="weights to start from ('.' = none)")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--batch_size", type=int, default=16, help="global batch (split over GPUs/processes)")
    opt.add_argument("--epochs", type=int, default=None, help="default 950 gray, 1000 colour; 0 = practically endless")
    opt.add_argument(
        "--test_every",
        type=int,
        default=None,
        help="iterations per epoch, synthetic noise (default 1000; with --data_train MIX the official "
        "epoch, two passes over the N images: ceil(2N / batch_size) iterations, about 1075 for the full "
        "MIX)",
    )
    opt.add_argument("--lr", type=finite_float(0, strict=True), default=1e-4, help="initial learning rate (> 0)")
    opt.add_argument("--decay_type", default="step", help="step, step_a_b_... (milestones) or warmup_cosine")
    opt.add_argument(
        "--lr_decay", type=int, default=None, help="StepLR period in epochs (default 220 gray, 200 colour)"
    )
    opt.add_argument("--gamma", type=float, default=0.5, help="LR factor at each decay")
    opt.add_argument("--lr_min", type=float, default=1e-6, help="final LR of warmup_cosine")
    opt.add_argument("--warmup_epochs", type=int, default=3, help="linear warm-up epochs of warmup_cosine")
    opt.add_argument("--optimizer", choices=("ADAM", "SGD", "RMSprop"), default="ADAM")
    opt.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    opt.add_argument("--beta1", type=float, default=0.9)
    opt.add_argument("--beta2", type=float, default=0.999)
    opt.add_argument("--epsilon", type=float, default=1e-8)
    opt.add_argument("--weight_decay", type=float, default=0.0)
    opt.add_argument(
        "--loss", default="1*MSE", help="'+'-separated weight*name: MSE (sum of squares / 2B), L1, Charbonnier"
    )
    opt.add_argument("--max_nonfinite", type=int, default=20, help="stop after this many non-finite losses in a row")
    opt.add_argument("--val_per_epoch", type=int, default=None, help="validations per epoch (default 1; real noise 3)")
    opt.add_argument(
        "--val_after_epoch", type=int, default=None, help="validate only after this epoch (default 0; real noise 5)"
    )
    opt.add_argument(
        "--mixup_after_epoch", type=int, default=None, help="MixUp after this epoch (-1 = never; real noise 5)"
    )
    opt.add_argument(
        "--clamp_output", type=_bool, default=None, help="clamp the output to [0, 1] before the loss (real noise)"
    )
    run = p.add_argument_group("run folder, checkpoints, validation")
    run.add_argument("--save", default=".", help="run name: experiment/<save>/ ('.' = a timestamp)")
    run.add_argument("--dir_experiment", default="experiment", help="parent folder of the run folders")
    run.add_argument(
        "--resume",
        type=int,
        default=0,
        help="0: start (from --pre_train if given); -1: continue from checkpoint_latest.pt; n: from model_<n>.pt",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run in a --save folder that holds one (deletes its checkpoints; without it such a "
        "start is refused)",
    )
    run.add_argument("--save_models", action="store_true", help="also keep model/model_<epoch>.pt every epoch")
    run.add_argument("--save_results", action="store_true", help="write the denoised validation images to results/")
    run.add_argument("--print_every", type=int, default=100, help="iterations between loss lines in log.txt")
    run.add_argument("--test_only", action="store_true", help="only validate (with --pre_train or --resume weights)")
    run.add_argument(
        "--chop",
        action="store_true",
        help="validate with the memory-saving 4-quadrant forward (in the task's official order)",
    )
    run.add_argument(
        "--ensemble", "--self_ensemble", dest="ensemble", action="store_true", help="validate with the x8 self-ensemble"
    )
    run.add_argument(
        "--config",
        default=None,
        help="YAML recipe (configs/*.yml; keys are these options' names): its values become the "
        "defaults, flags given on the command line override them",
    )
    add_runtime_arguments(p)
    return p


def config_path(text: str) -> Path:
    """``--config`` as given, else a recipe name or file name in the repository's ``configs/`` (``gray_n25``)."""
    path = Path(text)
    if path.is_file():
        return path
    for candidate in (CONFIGS / text, CONFIGS / f"{text}.yml"):
        if "/" not in text and candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"--config {text} not found (recipes: {', '.join(sorted(p.stem for p in CONFIGS.glob('*.yml')))})"
    )


def load_config(parser: argparse.ArgumentParser, text: str) -> dict[str, Any]:
    """Read a recipe: a mapping of option names (argparse destinations) to values; unknown names are an error."""
    path = config_path(text)
    with open(path) as f:
        cfg = yaml.safe_load(f) or {}
    if not isinstance(cfg, dict):
        raise ValueError(f"--config {path}: expected a mapping of option names to values, got {type(cfg).__name__}")
    known = vars(parser.parse_args([]))
    unknown = sorted(set(cfg) - set(known) | ({"config"} & set(cfg)))
    if unknown:
        raise ValueError(
            f"--config {path}: unknown option name(s) {', '.join(unknown)}; keys are train.py option "
            "names without the dashes, e.g. lr, batch_size, n_colors"
        )
    # strings go through each option's type as if typed on the command line (argparse converts string defaults);
    # lists (noise_params: [40, 10]) stay lists, their numbers checked where they are used (build_noise)
    return {k: v if isinstance(v, bool | list) or v is None else str(v) for k, v in cfg.items()}


def parse_options(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` over the ``--config`` defaults, apply the gray/colour defaults, and check the values."""
    parser = build_parser()
    argv = join_negative_numbers(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    config = pre.parse_known_args(argv)[0].config
    if config:
        try:
            parser.set_defaults(**load_config(parser, config))
        except (OSError, ValueError, yaml.YAMLError) as err:
            parser.error(str(err))
    args = parser.parse_args(argv)
    _fill_defaults(args)
    _check(parser, args)
    return args


def _fill_defaults(args: argparse.Namespace) -> None:
    if args.raw or args.n_colors == 4:
        args.raw, args.n_colors = True, 4
    for key, value in (GRAY_DEFAULTS if args.n_colors == 1 else COLOR_DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key, value in TASK_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.epochs == 0:
        args.epochs = 10**8
    if args.save == ".":
        args.save = time.strftime("%Y-%m-%d-%H:%M:%S")
    if args.test_every is None and args.data_train.upper() != "MIX":  # MIX: None = 2N samples (trainer)
        args.test_every = 1000


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.epochs < 0:
        parser.error(f"--epochs {args.epochs}: give the number of epochs to train (0 = practically endless)")
    for name in ("batch_size", "patch_size", "test_every", "val_per_epoch"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.n_colors not in (1, 3, 4):
        parser.error(f"n_colors must be 1, 3 or 4 (raw), got {args.n_colors}")
    multiple = ADFNet.size_multiple * (2 if args.raw else 1)  # raw: the mosaic crop is packed to half its size
    if args.patch_size % multiple:
        parser.error(
            f"--patch_size {args.patch_size} must be a multiple of {multiple} (ADFNet downsamples three times"
            + (", after packing the mosaic to half its size)" if args.raw else ")")
        )
    _check_noise(parser, args)
    if not (isinstance(args.lr, float) and math.isfinite(args.lr) and args.lr > 0):
        parser.error(f"--lr must be a positive number, got {args.lr!r}")


def _check_noise(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Build ``args.noise_model`` (the training and validation noise) from ``--noise``/``--noise_params``."""
    if args.noise_params is not None and args.noise is None:
        parser.error("--noise_params needs --noise NAME")
    try:
        if args.raw and args.noise is None:
            args.noise_model = build_noise("poisson_gaussian")
        else:
            args.noise_model = noise_from_flags(args.noise, args.noise_params, args.noiseL)
    except ValueError as err:
        parser.error(str(err))
    if args.noise_model.name == "mg" and args.n_colors != 3:
        parser.error("--noise mg correlates the 3 colour channels: it needs --n_colors 3")
