"""The run folder: what a run may write where, and whether a resumed run is still the same run.

Nothing a run has saved may be lost through a command-line slip: a new run refuses a folder that
holds checkpoints (unless ``--overwrite``), ``--resume N`` continues in a new branch folder instead
of rolling the run back, and ``--resume -1`` refuses settings that would silently mean another run
(the saved model, optimiser and schedule state would not match them).
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adfnet.errors import UserError

if TYPE_CHECKING:
    from adfnet.engine.config import TrainConfig

CHECKPOINT = "checkpoint_latest.pt"

# Settings fixed for the life of a run, with why; resuming with another value is refused.
FIXED_ON_RESUME = {
    **dict.fromkeys(
        ("model", "n_colors", "placement", "no_dcb", "no_mdcb", "no_mfi", "model_options"), "the architecture"
    ),
    **dict.fromkeys(
        ("optimizer", "momentum", "beta1", "beta2", "epsilon", "weight_decay", "lr_sigma_mu", "lr_sigma_n"),
        "the saved optimiser",
    ),
    **dict.fromkeys(("decay_type", "lr_decay", "gamma", "warmup_epochs", "lr_min"), "the saved schedule"),
    **dict.fromkeys(
        (
            "task",
            "data_train",
            "noiseL",
            "noise",
            "noise_params",
            "raw",
            "cfa_pattern",
            "clip_noisy",
            "patch_size",
            "batch_size",
            "test_every",
            "loss",
            "seed",
            "clamp_output",
            "mixup_after_epoch",
            "dbsn_stage",
            "teacher",
            "teacher_ensemble",
            "teacher_inputs",
            "teacher_cache",
            "teacher_share",
        ),
        "the training recipe",
    ),
}


class RunFolderError(UserError):
    """The command would overwrite or misuse what a run folder holds."""


def saved_files(run_dir: Path) -> list[Path]:
    """The checkpoints a run folder holds (what a new run would overwrite)."""
    files = [run_dir / CHECKPOINT] if (run_dir / CHECKPOINT).is_file() else []
    model_dir = run_dir / "model"
    return files + (sorted(model_dir.glob("*.pt")) if model_dir.is_dir() else [])


def claim_new_run(run_dir: Path, overwrite: bool, delete: bool = True) -> list[Path]:
    """Check that a new run may use ``run_dir``; with ``overwrite`` delete (if ``delete``: the main
    process) the old checkpoints and TensorBoard events (``log.txt`` and ``config.txt`` keep growing).
    Returns the files found."""
    files = saved_files(run_dir)
    if not files:
        return []
    if not overwrite:
        raise RunFolderError(
            f"{run_dir} already holds a run ({', '.join(str(f.relative_to(run_dir)) for f in files[:4])}"
            f"{', ...' if len(files) > 4 else ''}); starting again would overwrite it. Continue it with "
            "--resume -1, choose another --save, or pass --overwrite to replace it"
        )
    if delete:
        for f in files:
            f.unlink()
        shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
    return files


def branch_folder(run_dir: Path, epoch: int) -> Path:
    """A new folder next to ``run_dir`` for a run continued from its epoch ``epoch``: ``<save>_from<epoch>``
    (``_2``, ``_3``... if that one already holds a run)."""
    base = run_dir.with_name(f"{run_dir.name}_from{epoch}")
    candidate, k = base, 1
    while saved_files(candidate):
        k += 1
        candidate = base.with_name(f"{base.name}_{k}")
    return candidate


def run_config(config: TrainConfig) -> dict[str, Any]:
    """The options of a run as plain values under their flag names (stored in every checkpoint, compared on
    resume; checkpoints written before :class:`TrainConfig` hold the same names)."""
    return {k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v) for k, v in vars(config).items()}


def resume_conflicts(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    """The settings of ``config`` that a resumed run cannot take, one description each ([] if none)."""
    current = run_config(config)
    conflicts = [
        f"--{k}: the run used {saved[k]}, now {current[k]} ({why})"
        for k, why in FIXED_ON_RESUME.items()
        if k in saved and k in current and saved[k] != current[k]
    ]
    if saved.get("decay_type") == "warmup_cosine" and saved.get("epochs") != current["epochs"]:
        conflicts.append(
            f"--epochs: the run used {saved.get('epochs')!r}, now {current['epochs']!r} "
            "(the cosine schedule's length is fixed when the run starts)"
        )
    return conflicts


def resume_command(save: str, argv: list[str] | None = None, **flags: str) -> str:
    """The command line that continues this run (folder ``save``): the one given (``sys.argv``) with
    ``--resume -1`` instead of any ``--resume``/``--overwrite``/``--pre_train``, ``--save save``, and
    ``flags`` (e.g. ``lr="1e-05"``) replacing the given values."""
    argv = list(sys.argv if argv is None else argv)
    dropped = {"--resume", "--overwrite", "--pre_train", "--save", *(f"--{k}" for k in flags)}
    kept, skip = [], False
    for item in argv[1:]:
        if skip:
            skip = False
            continue
        name = item.split("=", 1)[0]
        if name in dropped:
            skip = "=" not in item and name != "--overwrite"
            continue
        kept.append(item)
    program = argv[0] if argv else "train.py"
    extra = [x for k, v in flags.items() for x in (f"--{k}", v)]
    return shlex.join(["python", program, *kept, *extra, "--save", save, "--resume", "-1"])
