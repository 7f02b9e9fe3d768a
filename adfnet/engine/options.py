"""Command-line options of ``train.py``: the official flags with their meaning, plus a YAML config; they make a
:class:`~adfnet.engine.config.TrainConfig`.

Defaults are the paper's full-scale recipes (the official command lines). Those that differ between the gray and
colour recipes are filled in from ``--n_colors`` (:mod:`adfnet.engine.config`): gray 950 epochs with x0.5 every 220,
colour 1000 epochs with x0.5 every 200 (the official RGB ``--epochs`` default was 800, but every official RGB
script passed 1000).

``--config`` reads a recipe (``configs/<recipe>.yml``, one per paper recipe, ``configs/sidd.yml`` for real
noise): its keys are these options' names (and ``model_options``, the ``build_model`` options without a flag),
its values become the parser's defaults, so any flag given on the command line overrides the recipe (this is
how the toy runs shrink one).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from adfnet.cli.common import add_runtime_arguments, command_name, finite_float, int_at_least, join_negative_numbers
from adfnet.cli.flags import add_model_arguments, add_noise_arguments
from adfnet.data.datasets import DATASETS_ROOT
from adfnet.data.raw import CFA_PATTERNS
from adfnet.engine.config import DBSN_STAGES, EXT_CHOICES, TASKS, TEACHER_ENSEMBLES, TrainConfig, default_workers
from adfnet.models import ADFNet

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _mapping(text: str) -> dict[str, Any]:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f'expected a YAML mapping such as "{{mid_ch: 32}}", got {text!r}')
    return value


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``train.py`` / ``adfnet-train`` (official flag names; the module docstring has the defaults)."""
    p = argparse.ArgumentParser(
        prog=command_name("adfnet-train"), description="Train ADFNet (gray/colour AWGN, or real noise with --config)."
    )
    hw = p.add_argument_group("hardware")
    hw.add_argument(
        "--n_GPUs", type=int, default=1, help="GPUs for DataParallel (ignored under torchrun: one GPU per process)"
    )
    hw.add_argument(
        "--n_threads",
        type=int_at_least(0),
        default=default_workers(),
        help="DataLoader worker processes (default: 4, or fewer on a machine with fewer CPUs: %(default)s "
        "here; the official default was 4 gray, 8 colour; the samples do not depend on it)",
    )
    hw.add_argument(
        "--seed",
        type=int_at_least(0, 2**32 - 1),
        default=1,
        help="seeds the model init, crops, augmentation and noise (0 to 2**32 - 1)",
    )
    hw.add_argument(
        "--amp",
        choices=("none", "fp16", "bf16"),
        default="none",
        help="mixed precision: fp16 or bf16 on CUDA (the DCN op stays in fp32), bf16 on the CPU",
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--task",
        choices=TASKS,
        default="synthetic",
        help="synthetic: AWGN added to clean images; paired: hq/ + lq/ folders (real noise, SIDD); noisy: a "
        "folder of noisy images alone, no clean image (--model dbsn; docs/SELF_SUPERVISED.md)",
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
    add_noise_arguments(
        data, "--noiseL", "AWGN at --noiseL; with --raw: poisson_gaussian with Brooks et al.'s random shot/read levels"
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
    data.add_argument(
        "--cache",
        action="store_true",
        help="decode each training image once into --cache_dir (memory-mapped .npy files, checked against "
        "the image's size and modification time and rebuilt when it changes) and cut every patch from there: "
        "the same patches, without decoding a whole image per patch",
    )
    data.add_argument(
        "--cache_dir",
        default=None,
        help="folder of the decoded cache, shared by all runs (default: $ADFNET_CACHE_DIR, else "
        "~/.cache/adfnet/decoded); never inside --dir_data",
    )
    data.add_argument(
        "--ext",
        choices=EXT_CHOICES,
        default=None,
        help="the official spelling: sep = --cache, sep_reset = --cache decoding every image again, "
        "img = no cache (the default)",
    )
    model = p.add_argument_group("model")
    add_model_arguments(model)
    model.add_argument(
        "--model_options",
        type=_mapping,
        default={},
        help='build_model options without a flag, as a YAML mapping, e.g. "{mid_ch: 32, br1_block_num: 2}" '
        "(DBSN's configuration, a backbone's depth); merged over the recipe's model_options",
    )
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
    opt.add_argument(
        "--lr_sigma_mu",
        type=finite_float(0),
        default=None,
        help="DBSN: learning rate of the sigma_mu net (default --lr)",
    )
    opt.add_argument(
        "--lr_sigma_n", type=finite_float(0), default=None, help="DBSN: learning rate of the sigma_n net (default --lr)"
    )
    opt.add_argument(
        "--dbsn_stage",
        choices=DBSN_STAGES,
        default="all",
        help="DBSN: which nets learn: mu (D-BSN alone, L2 to the noisy image), sigma (the noise-level nets, D-BSN "
        "frozen), all (every net, the likelihood loss); the dbsn_* recipes run the authors' stages in turn",
    )
    opt.add_argument("--decay_type", default="step", help="step, step_a_b_... (milestones) or warmup_cosine")
    opt.add_argument(
        "--lr_decay",
        type=int_at_least(1),
        default=None,
        help="StepLR period in epochs, >= 1 (default 220 gray, 200 colour)",
    )
    opt.add_argument("--gamma", type=float, default=0.5, help="LR factor at each decay")
    opt.add_argument("--lr_min", type=float, default=1e-6, help="final LR of warmup_cosine")
    opt.add_argument("--warmup_epochs", type=int, default=3, help="linear warm-up epochs of warmup_cosine")
    opt.add_argument("--optimizer", choices=("ADAM", "SGD", "RMSprop"), default="ADAM", help="optimiser (default ADAM)")
    opt.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    opt.add_argument("--beta1", type=float, default=0.9, help="Adam beta1")
    opt.add_argument("--beta2", type=float, default=0.999, help="Adam beta2")
    opt.add_argument("--epsilon", type=float, default=1e-8, help="Adam / RMSprop epsilon")
    opt.add_argument("--weight_decay", type=float, default=0.0, help="L2 weight decay of the optimiser")
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
    teach = p.add_argument_group(
        "distillation", "a teacher's output as the training target (docs/TRAINING.md, adfnet/engine/distill.py)"
    )
    teach.add_argument(
        "--teacher",
        nargs="+",
        default=None,
        metavar="CHECKPOINT",
        help="trained network(s) whose averaged output on the noisy inputs is the target; alone: online, on the "
        "--task training set",
    )
    teach.add_argument(
        "--teacher_ensemble",
        choices=TEACHER_ENSEMBLES,
        default="none",
        help="the teacher's x8 self-ensemble: x8 geometric, cfa CFA-aware (packed raw)",
    )
    teach.add_argument(
        "--teacher_inputs",
        nargs="+",
        default=None,
        metavar="PATH",
        help="fixed noisy inputs whose teacher outputs are cached (files, folders, or paired-set roots: their "
        "noisy/ for --raw, lq/ otherwise); needs --teacher_cache",
    )
    teach.add_argument(
        "--teacher_cache",
        default=None,
        metavar="FOLDER",
        help="where the teacher targets are written with a manifest (when --teacher is given and the folder holds "
        "none) and read from (checked against the manifest)",
    )
    teach.add_argument(
        "--teacher_share",
        type=finite_float(0, strict=True, maximum=1),
        default=1.0,
        help="fraction of the samples that are teacher pairs; the rest come from the --task training set "
        "(default 1: teacher pairs only)",
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
        "--time_budget",
        type=finite_float(0, strict=True),
        default=None,
        metavar="MINUTES",
        help="stop after this many minutes of training, over all of the run's invocations (the iteration in which "
        "it is spent is the last; the run validates and saves; --resume -1 continues with what is left of the "
        "--time_budget then given)",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run in a --save folder that holds one (deletes its checkpoints; without it such a "
        "start is refused)",
    )
    run.add_argument("--save_models", action="store_true", help="also keep model/model_<epoch>.pt every epoch")
    run.add_argument("--save_results", action="store_true", help="write the denoised validation images to results/")
    run.add_argument(
        "--print_every", type=int_at_least(1), default=100, help="iterations between loss lines in log.txt (>= 1)"
    )
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
    known = set(TrainConfig.field_names())
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(
            f"--config {path}: unknown option name(s) {', '.join(unknown)}; keys are train.py option "
            "names without the dashes, e.g. lr, batch_size, n_colors"
        )
    stages = cfg.get("stages") or []
    if not isinstance(stages, list) or not all(isinstance(stage, dict) for stage in stages):
        raise ValueError(f"--config {path}: stages must be a list of mappings of option names to values")
    # strings go through each option's type as if typed on the command line (argparse converts string defaults);
    # lists (noise_params: [40, 10]) and mappings (model_options) stay as they are, checked where they are used
    values = {k: v if isinstance(v, bool | list | dict) or v is None else str(v) for k, v in cfg.items()}
    if stages:  # no parser sees the stages' values: their types are applied here
        values["stages"] = [{k: _typed(parser, path, k, v) for k, v in stage.items()} for stage in stages]
    return values


def _typed(parser: argparse.ArgumentParser, path: Path, key: str, value: Any) -> Any:
    """A stage's ``value`` of option ``key`` through the option's type, as if typed on the command line."""
    kind = next((action.type for action in parser._actions if action.dest == key), None)  # noqa: SLF001
    if kind is None or not isinstance(value, int | float | str):
        return value
    try:
        return kind(str(value))
    except (argparse.ArgumentTypeError, ValueError) as err:
        raise ValueError(f"--config {path}: a stage's {key}: {err}") from None


def given_options(argv: list[str]) -> set[str]:
    """The options given on the command line ``argv`` (their names), as opposed to defaults and recipe values."""
    parser = build_parser()
    for action in parser._actions:  # noqa: SLF001 (argparse has no public way to ask what was given)
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_known_args(argv)[0])) - {"config"}


def parse_options(argv: list[str] | None = None) -> TrainConfig:
    """Parse ``argv`` over the ``--config`` defaults into a checked :class:`TrainConfig` (argparse's exit code 2
    and one-line message for a value it refuses)."""
    parser = build_parser()
    argv = join_negative_numbers(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    config = pre.parse_known_args(argv)[0].config
    recipe: dict[str, Any] = {}
    if config:
        try:
            recipe = load_config(parser, config)
        except (OSError, ValueError, yaml.YAMLError) as err:
            parser.error(str(err))
        parser.set_defaults(**recipe)
    args = vars(parser.parse_args(argv))
    if isinstance(recipe.get("model_options"), dict):  # --model_options adds to the recipe's, key by key
        args["model_options"] = {**recipe["model_options"], **args["model_options"]}
    if args.get("stages"):  # a flag given on the command line wins over the recipe's stages too
        given = given_options(argv)
        args["stages"] = [{**stage, **{k: args[k] for k in given if k in stage}} for stage in args["stages"]]
    try:
        return TrainConfig(**{k: args[k] for k in TrainConfig.field_names() if k in args})
    except ValueError as err:
        parser.error(str(err))
