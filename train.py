"""Train ADFNet.

Synthetic AWGN (the official command lines run unchanged), e.g. gray sigma 25:
    python train.py --n_colors 1 --model adfnet --save adfnet_n25 --noiseL 25 --patch_size 128 \
        --loss 1*MSE --lr 1e-4 --save_results
Real noise (SIDD): python train.py --config configs/sidd.yml
Several GPUs: torchrun --nproc_per_node 2 train.py ...   (or --n_GPUs 2 for DataParallel)
Continue a run where it stopped: add --resume -1. Per-task scripts: scripts/train_adfnet_*.sh.
"""

from __future__ import annotations

import sys

from adfnet.engine.options import parse_options
from adfnet.engine.state import CheckpointError
from adfnet.engine.trainer import NonFiniteLossError, Trainer


def main(argv: list[str] | None = None) -> float:
    """Run training (or ``--test_only`` validation); returns the best (or measured) validation PSNR."""
    args = parse_options(argv)
    trainer = Trainer(args)
    if args.test_only:
        value = trainer.validate(trainer.run_dir / "results" if args.save_results else None)
        trainer.log(f"{args.data_val}: PSNR {value:.3f} dB")
        return value
    return float(trainer.fit()["psnr"])


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError, CheckpointError, NonFiniteLossError) as err:
        sys.exit(f"error: {err}")
