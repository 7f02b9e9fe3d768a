"""Cut SIDD-Medium image pairs into random training patches (clean -> hq/, noisy -> lq/): ``adfnet-patches``.

    adfnet-patches --src_dir datasets/SIDD_Medium_Srgb/Data --tar_dir datasets/SIDD/train --ps 256 \\
        --num_patches 300 --num_cores 10

SIDD validation blocks (.mat) to the hq/ + lq/ PNG folder that training validates on:

    adfnet-patches --val_mat_dir datasets/SIDD/val_mat --tar_dir datasets/SIDD/val

Also reads the bundled layout (``GT/N.png`` + ``NOISY/N.png``), e.g. for a toy run:

    adfnet-patches --src_dir datasets/real/SIDD_samples --tar_dir experiment/sidd_toy_patches --ps 64 --num_patches 4

(``python scripts/generate_patches_SIDD.py`` takes the same flags.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adfnet.data.sidd import export_validation_blocks, generate_patches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="adfnet-patches", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--src_dir", default="datasets/SIDD_Medium_Srgb/Data", help="SIDD-Medium Data/ folder")
    parser.add_argument("--tar_dir", default="datasets/SIDD/train", help="output folder (gets hq/ and lq/)")
    parser.add_argument("--ps", type=int, default=256, help="patch size")
    parser.add_argument("--num_patches", type=int, default=300, help="patches per image pair")
    parser.add_argument("--num_cores", type=int, default=10, help="worker processes")
    parser.add_argument("--seed", type=int, default=0, help="crop positions depend only on the seed and the pair")
    parser.add_argument(
        "--val_mat_dir",
        default=None,
        help="instead: export ValidationNoisyBlocksSrgb.mat / ValidationGtBlocksSrgb.mat to PNGs",
    )
    parser.add_argument("--overwrite", action="store_true", help="delete an existing tar_dir/hq and tar_dir/lq first")
    args = parser.parse_args(argv)
    try:
        if args.val_mat_dir:
            count = export_validation_blocks(args.val_mat_dir, args.tar_dir, args.overwrite)
        else:
            count = generate_patches(
                args.src_dir, args.tar_dir, args.ps, args.num_patches, args.num_cores, args.seed, args.overwrite
            )
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {count} patch pairs to {Path(args.tar_dir) / 'hq'} and {Path(args.tar_dir) / 'lq'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
