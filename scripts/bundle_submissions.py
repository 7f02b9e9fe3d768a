"""Bundle per-crop DND results (``%04d_%d.mat`` with ``Idenoised_crop``) into the ``%04d.mat`` files
the DND server takes (``Idenoised`` cell, ``israw`` False, ``eval_version`` "1.0").

    python scripts/bundle_submissions.py --mat_dir results/dnd/mat --out_dir results/dnd/mat/bundled

Per-crop files are kept unless ``--delete_crops``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adfnet.matio import bundle_dnd_submission  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mat_dir", required=True, help="folder with the per-crop .mat files")
    parser.add_argument("--out_dir", default=None, help="default: <mat_dir>/bundled")
    parser.add_argument("--n_images", type=int, default=50)
    parser.add_argument("--n_crops", type=int, default=20)
    parser.add_argument("--delete_crops", action="store_true", help="remove the per-crop files afterwards")
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir) if args.out_dir else Path(args.mat_dir) / "bundled"
    try:
        written = bundle_dnd_submission(args.mat_dir, out_dir, args.n_images, args.n_crops, args.delete_crops)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} file(s) to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
