"""Evaluate ADFNet on synthetic AWGN test sets (the official test.py flags, plus a few).

    python test.py --model adfnet --n_colors 3 --weights checkpoints/adfnet_rgb_n50.pt \\
        --input_dir datasets/testsets/McMaster --test_noiseL 50 --chop --save_images

Several ``--input_dir`` and ``--test_noiseL`` values run in one go; ``--weights`` may contain
``{sigma}`` to pick the per-noise-level checkpoint. Exit code 0 when every image was evaluated,
1 when anything failed (the failures are listed; the other images are still processed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adfnet.evaluation import DEFAULT_SEEDS, dcn_backend, run_evaluation, select_device
from adfnet.models import add_model_arguments, model_options

ROOT = Path(__file__).resolve().parent
BUNDLED_SETS = {1: ROOT / "datasets/testsets/Set12", 3: ROOT / "datasets/testsets/McMaster"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--n_colors", type=int, default=3, choices=[1, 3], help="1 for gray models, 3 for colour")
    p.add_argument("--weights", required=True,
                   help="checkpoint (.pt/.pth); '{sigma}' is replaced by each noise level, e.g. adfnet_n{sigma}.pt")
    p.add_argument("--input_dir", nargs="+", default=None,
                   help="one or more test-set folders, each with its own folder name (default: bundled Set12 for "
                        "gray, McMaster for colour)")
    p.add_argument("--result_dir", default="results/test", help="outputs go to <result_dir>/<set>/sigma<N>/")
    p.add_argument("--test_noiseL", nargs="+", type=float, default=[50.0], help="noise level(s) sigma on 0-255")
    p.add_argument("--save_images", action="store_true", help="write denoised images under their input names")
    p.add_argument("--chop", action="store_true",
                   help="official 4-quadrant chop (less memory, ~same result) in each task's official order: "
                        "gray chops the unpadded image, colour pads to a multiple of 8 first")
    p.add_argument("--ensemble", action="store_true", help="x8 self-ensemble (flips and rotations)")
    p.add_argument("--seed", type=int, default=None,
                   help=f"noise seed, reset before every image (default: official {DEFAULT_SEEDS[1]} gray, "
                        f"{DEFAULT_SEEDS[3]} colour)")
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N images of each set (a quick check; published numbers are full-set means)")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even if CUDA is available")
    p.add_argument("--device", default=None, help="explicit device, e.g. cuda:1 (overrides --cpu)")
    p.add_argument("--dcn_backend", default=None, help="DCN backend: ext, torchvision or reference")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = select_device(args.cpu, args.device)
        with dcn_backend(args.dcn_backend):
            failures = run_evaluation(
                args.model, args.n_colors, args.weights, args.input_dir or [BUNDLED_SETS[args.n_colors]],
                args.test_noiseL, args.result_dir, device, seed=args.seed, chop=args.chop,
                ensemble=args.ensemble, save_images=args.save_images, limit=args.limit,
                options=model_options(args),
            )
    except ValueError as err:  # bad --device / --dcn_backend, two --input_dir of the same name
        print(f"error: {err}", file=sys.stderr)
        return 1
    if failures:
        print(f"{failures} failure(s): see the errors above", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
