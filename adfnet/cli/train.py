"""Train ADFNet (``adfnet-train``, or ``python train.py`` with the same flags).

Synthetic AWGN (the official command lines run unchanged), e.g. gray sigma 25:
    adfnet-train --n_colors 1 --model adfnet --save adfnet_n25 --noiseL 25 --patch_size 128 \\
        --loss 1*MSE --lr 1e-4 --save_results
A paper recipe: adfnet-train --config configs/gray_n25.yml (or --config gray_n25); real noise: --config sidd.
DBSN from noisy images alone (its stages in turn): adfnet-train --config dbsn_rgb_hg --dir_data <noisy photos>.
Other noise: --noise hg --noise_params 40 10 (hg_dbsn, mg, poisson_gaussian); raw (packed Bayer): --raw or --config raw.
Several GPUs: torchrun --nproc_per_node 2 train.py ...   (or --n_GPUs 2 for DataParallel)
Continue a run where it stopped: add --resume -1. Per-task scripts: scripts/train_adfnet_*.sh.
"""

from __future__ import annotations

import dataclasses
import math
import sys

import torch

from adfnet.cli.common import check_writable_dir, dcn_backend, select_device
from adfnet.engine.config import TrainConfig
from adfnet.engine.options import parse_options
from adfnet.engine.recipe import staged_run
from adfnet.engine.state import CheckpointError
from adfnet.engine.trainer import NonFiniteLossError, trainer_for
from adfnet.runtime import tune_allocator


def _apply_device(config: TrainConfig) -> TrainConfig:
    """``--device`` in the trainer's terms: ``cpu`` means ``--cpu``; ``cuda:N`` makes N the current GPU."""
    if not config.device:
        return config
    device = select_device(config.cpu, config.device)
    if device.type == "cpu":
        return dataclasses.replace(config, cpu=True)
    if device.index is not None:
        torch.cuda.set_device(device.index)
    return config


def run(argv: list[str] | None = None) -> float:
    """Train (or ``--test_only`` validate); returns the best (or measured) validation PSNR. Errors raise."""
    config = _apply_device(parse_options(argv))
    check_writable_dir(config.dir_experiment, "--dir_experiment")  # before a model is built or a folder made
    with dcn_backend(config.dcn_backend):
        if config.stages:  # a staged recipe (DBSN's): one run per stage, each from the previous one's weights
            rows = staged_run(config).run()
            best = rows[-1].get("best") if rows else None  # the last stage's
            return math.nan if best is None else float(best)
        trainer = trainer_for(config)
        if config.test_only:
            value = trainer.validate(trainer.run_dir / "results" if config.save_results else None)
            trainer.log(f"{config.data_val}: PSNR {value:.3f} dB")
            return value
        return float(trainer.fit()["psnr"])


def main(argv: list[str] | None = None) -> int:
    """The console entry point: exit code 0, 1 with a one-line message for a user mistake (a full disk
    included), 130 after a Ctrl-C."""
    tune_allocator()
    try:
        run(argv)
    except (FileNotFoundError, ValueError, CheckpointError, NonFiniteLossError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # before training started (fit() handles its own, with the resume command)
        print("interrupted (Ctrl-C) before training started: nothing was trained or saved", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
