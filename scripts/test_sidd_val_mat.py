"""Denoise the SIDD validation ``.mat`` pair, score it and write a submission-format ``SubmitSrgb.mat``.

    python scripts/test_sidd_val_mat.py --input_dir datasets/SIDD/val_mat \\
        --weights checkpoints/adfnet_real.pth --result_dir results/sidd_val_mat --ensemble

Reads ``ValidationNoisyBlocksSrgb.mat`` and ``ValidationGtBlocksSrgb.mat`` from ``--input_dir``;
prints PSNR, per-channel SSIM and MATLAB-style 3-D SSIM over all blocks (8-bit output), writes
``results.csv`` (one row per block ``i-k``) and ``mat/SubmitSrgb.mat`` (re-score it with
``scripts/evaluate_sidd.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adfnet.evaluation import (  # noqa: E402
    PUBLISHED_REAL,
    add_model_args,
    dcn_backend,
    denoise_blocks,
    format_real_scores,
    load_real_model,
    score_pairs,
    select_device,
    write_score_csv,
)
from adfnet.matio import load_sidd_blocks, save_sidd_submission  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input_dir", default="datasets/SIDD/val_mat",
                        help="folder with ValidationNoisyBlocksSrgb.mat and ValidationGtBlocksSrgb.mat")
    parser.add_argument("--result_dir", default="results/sidd_val_mat")
    add_model_args(parser, "checkpoints/adfnet_real.pth")
    args = parser.parse_args(argv)
    folder = Path(args.input_dir)
    try:
        device = select_device(args.cpu, args.device)
        noisy = load_sidd_blocks(folder / "ValidationNoisyBlocksSrgb.mat", "ValidationNoisyBlocksSrgb")
        gt = load_sidd_blocks(folder / "ValidationGtBlocksSrgb.mat", "ValidationGtBlocksSrgb")
        if noisy.shape != gt.shape:
            raise ValueError(f"noisy blocks {noisy.shape} and ground truth {gt.shape} differ in shape")
        with dcn_backend(args.dcn_backend):
            model = load_real_model(args, device)
            denoised = denoise_blocks(model, noisy, device, args.chop, args.ensemble)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    result_dir = Path(args.result_dir)
    save_sidd_submission(result_dir / "mat" / "SubmitSrgb.mat", denoised)
    n, k = denoised.shape[:2]
    scores = score_pairs(denoised.reshape(n * k, *denoised.shape[2:]), gt.reshape(n * k, *gt.shape[2:]))
    write_score_csv(result_dir / "results.csv", [f"{i}-{j}" for i in range(n) for j in range(k)], scores)
    print(format_real_scores(scores, PUBLISHED_REAL["sidd_val"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
