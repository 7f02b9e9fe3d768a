"""Denoise the SIDD benchmark blocks and write the submission ``SubmitSrgb.mat``.

    python scripts/test_sidd_benchmark_mat.py --input_dir datasets/SIDD/benchmark \\
        --weights checkpoints/adfnet_real.pth --result_dir results/sidd_benchmark --ensemble

Reads ``<input_dir>/BenchmarkNoisyBlocksSrgb.mat`` (40 x 32 x 256 x 256 x 3 uint8) and always writes
``<result_dir>/mat/SubmitSrgb.mat`` (``DenoisedBlocksSrgb``, a 40 x 32 cell of uint8 blocks: upload
it to the SIDD benchmark). ``--save_images`` also writes ``png/%04d-%04d.png`` (0-based block index).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adfnet.data.io import save_image  # noqa: E402
from adfnet.evaluation import add_model_args, dcn_backend, denoise_blocks, load_real_model, select_device  # noqa: E402
from adfnet.matio import load_sidd_blocks, save_sidd_submission  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input_dir", default="datasets/SIDD/benchmark",
                        help="folder holding BenchmarkNoisyBlocksSrgb.mat")
    parser.add_argument("--result_dir", default="results/sidd_benchmark")
    parser.add_argument("--save_images", action="store_true", help="also write every block as PNG")
    add_model_args(parser, "checkpoints/adfnet_real.pth")
    args = parser.parse_args(argv)
    try:
        device = select_device(args.cpu, args.device)
        noisy = load_sidd_blocks(Path(args.input_dir) / "BenchmarkNoisyBlocksSrgb.mat", "BenchmarkNoisyBlocksSrgb")
        with dcn_backend(args.dcn_backend):
            model = load_real_model(args, device)
            denoised = denoise_blocks(model, noisy, device, args.chop, args.ensemble)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    result_dir = Path(args.result_dir)
    save_sidd_submission(result_dir / "mat" / "SubmitSrgb.mat", denoised)
    if args.save_images:
        for i in range(denoised.shape[0]):
            for k in range(denoised.shape[1]):
                save_image(result_dir / "png" / f"{i:04d}-{k:04d}.png", denoised[i, k])
    print(f"wrote {result_dir / 'mat' / 'SubmitSrgb.mat'} ({denoised.shape[0]} x {denoised.shape[1]} blocks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
