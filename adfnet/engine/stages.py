"""Which trainer trains a config, and staged recipes: runs one after another, each from the previous one's weights.

A staged recipe (``stages`` in a :class:`~adfnet.engine.config.TrainConfig`; DBSN's: pre-train ``mu``, then the
sigma nets, then fine-tune all) is one command: each stage is an ordinary run of the one trainer in its own
folder, ``<dir_experiment>/<save>/<k>_<stage>`` (:func:`~adfnet.engine.config.stage_configs`), so each has its
checkpoints, log, TensorBoard and resumption; stage ``k`` starts from stage ``k - 1``'s last weights
(``model/model_latest.pt``) with a fresh optimiser and schedule, as the authors' separate scripts did.

``--resume -1`` continues the whole recipe: stages whose checkpoint reached their ``--epochs`` are kept as they
are, the first unfinished one continues from its checkpoint (or starts, if it has none), the rest follow.
``--time_budget`` is each stage's (each is a run): a stage it stopped counts as trained, and the next one starts
from its last weights; ``--resume -1`` with a larger budget extends every stage in turn.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from adfnet.engine.config import TrainConfig, stage_configs
from adfnet.engine.runs import CHECKPOINT
from adfnet.engine.state import load_training_state
from adfnet.engine.trainer import Trainer
from adfnet.errors import UserError


def trainer_for(config: TrainConfig) -> Trainer:
    """The trainer of ``config``'s model: DBSN's self-supervised one (:mod:`adfnet.engine.dbsn`) or the general."""
    if config.model == "dbsn":
        from adfnet.engine.dbsn import DBSNTrainer

        return DBSNTrainer(config)
    return Trainer(config)


def completed_epochs(run_dir: Path) -> int | None:
    """The last complete epoch of the checkpoint ``run_dir`` holds (0: stopped in epoch 1 by ``--time_budget``),
    or None without one."""
    path = run_dir / CHECKPOINT
    return int(load_training_state(path)["epoch"]) if path.is_file() else None


def run_stages(config: TrainConfig) -> list[float]:
    """Train every stage of a staged ``config`` in turn; returns each stage's best validation value."""
    if config.test_only or config.resume > 0:
        flag = "--test_only" if config.test_only else f"--resume {config.resume}"
        raise UserError(
            f"{flag} applies to one run: with a staged recipe, pass it with the stage's own recipe and --save "
            "(each stage is a run in <save>/<k>_<stage>), or continue the whole recipe with --resume -1"
        )
    stages = stage_configs(config)
    results, previous = [], None
    for k, stage in enumerate(stages, 1):
        run_dir = Path(stage.dir_experiment) / stage.save
        title = f"stage {k}/{len(stages)} ({stage.save}, {run_dir})"
        if previous is not None:
            stage = replace(stage, pre_train=str(previous))
        if config.resume == -1:
            done = completed_epochs(run_dir)
            if done is not None and done >= stage.epochs:
                tqdm.write(f"{title}: complete ({done} epochs), kept as it is")
                results.append(float("nan"))
                previous = run_dir / "model" / "model_latest.pt"
                continue
            if done is None:  # never saved: it starts (from the previous stage's weights)
                stage = replace(stage, resume=0)
        budget = f" or {stage.time_budget:g} min" if stage.time_budget else ""
        tqdm.write(f"{title}: {stage.epochs} epoch(s){budget}" + (f", from {previous}" if previous else ""))
        trainer = trainer_for(stage)
        trainer.command_save = config.save  # its messages continue the whole recipe
        results.append(float(trainer.fit()["psnr"]))
        previous = run_dir / "model" / "model_latest.pt"
    tqdm.write(f"the recipe's {len(stages)} stages are trained: the final weights are {previous}")
    return results
