"""Score a SIDD submission against the ground truth (the Python replacement of ``evaluate_SIDD.m``).

    python scripts/evaluate_sidd.py --submission results/sidd_val_mat/mat/SubmitSrgb.mat \\
        --gt datasets/SIDD/val_mat/ValidationGtBlocksSrgb.mat --csv results/sidd_val_mat/blocks.csv

Reads the submission in the cell form the scripts and the benchmark use, or as a numeric 5-D
array (uint8 or float in [0, 1]), which ``evaluate_SIDD.m`` itself could not do. Prints PSNR and
both SSIM flavours: per-channel (the official Python code) and MATLAB's 3-D ``ssim`` on each
``H x W x 3`` block (what ``evaluate_SIDD.m`` and the benchmark report).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adfnet.evaluation import PUBLISHED_REAL, format_real_scores, score_pairs, write_score_csv  # noqa: E402
from adfnet.matio import SIDD_SUBMISSION_KEY, load_sidd_blocks  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submission", required=True, help="SubmitSrgb.mat")
    parser.add_argument("--gt", required=True, help="ValidationGtBlocksSrgb.mat")
    parser.add_argument("--submission_key", default=SIDD_SUBMISSION_KEY)
    parser.add_argument("--gt_key", default=None, help="default: the file's only variable")
    parser.add_argument("--csv", default=None, help="optional per-block CSV")
    args = parser.parse_args(argv)
    try:
        denoised = load_sidd_blocks(args.submission, args.submission_key)
        gt = load_sidd_blocks(args.gt, args.gt_key)
        if denoised.shape != gt.shape:
            raise ValueError(f"submission {denoised.shape} and ground truth {gt.shape} differ in shape")
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    n, k = gt.shape[:2]
    scores = score_pairs(denoised.reshape(n * k, *gt.shape[2:]), gt.reshape(n * k, *gt.shape[2:]))
    if args.csv:
        write_score_csv(Path(args.csv), [f"{i}-{j}" for i in range(n) for j in range(k)], scores)
    print(format_real_scores(scores, PUBLISHED_REAL["sidd_val"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
