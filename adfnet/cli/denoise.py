"""``adfnet-denoise`` (also ``python -m adfnet.denoise``): denoise your own noisy images.

    adfnet-denoise photos/ --weights checkpoints/adfnet_real.pth --out denoised/

The work is :mod:`adfnet.denoise`'s; this module is the command line: flags, user mistakes as one-line
messages (exit code 2), a failed file listed at the end (exit code 1, the others still processed), a
full disk or an unwritable output (exit code 1, the run stops; the outputs written are complete).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from adfnet.checkpoint import WEIGHTS_HINT, load_checkpoint
from adfnet.cli.common import (
    PRECISION_HELP,
    add_runtime_arguments,
    check_writable_dir,
    command_name,
    dcn_backend,
    select_device,
)
from adfnet.denoise import FORMATS, collect_inputs, denoise_files, existing_outputs, refuse_existing
from adfnet.errors import UserError
from adfnet.fileio import WriteError
from adfnet.inference import ADFNET_BYTES_PER_PIXEL, DEFAULT_OVERLAP, PRECISIONS
from adfnet.models import MODEL_NAMES, WIDTHS
from adfnet.outputs import check_not_input_folder
from adfnet.runtime import tune_allocator


def parse_memory(text: str) -> int:
    """``"2GB"``, ``"1.5G"``, ``"512MB"``, ``"2"`` -> bytes (binary units: 1 GB = 2**30 bytes).

    A plain number is in GB: nobody means a budget of 2 bytes, and reading it as one only ended in
    "a memory budget of 0.00 GiB is too small"."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:([KMGT])(?:i?B)?|(B))?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(
            f"cannot read {text!r} as a memory size; write e.g. 2GB, 512MB or 2 (a plain number is in GB)"
        )
    unit = "" if match.group(3) else (match.group(2) or "G").upper()
    return int(float(match.group(1)) * 1024 ** " KMGT".index(unit or " "))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=command_name("adfnet-denoise"),
        description="Denoise your own noisy images with an ADFNet checkpoint (no ground truth, no added noise).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images, or glob patterns")
    p.add_argument("--weights", required=True, help="checkpoint (.pt, .pth or .safetensors)")
    p.add_argument("--out", required=True, type=Path, help="output folder (must not be an input folder)")
    p.add_argument("--model", choices=MODEL_NAMES, default=None, help="default: read from the checkpoint")
    p.add_argument("--n_colors", type=int, choices=(1, 3), default=None, help="default: read from the checkpoint")
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile side in px (multiple of 8); default: the largest that fits --max_memory",
    )
    p.add_argument(
        "--overlap",
        type=int,
        default=DEFAULT_OVERLAP,
        help=f"px shared by neighbouring tiles (multiple of 8, default {DEFAULT_OVERLAP})",
    )
    p.add_argument(
        "--max_memory",
        type=parse_memory,
        default="2GB",
        help="memory budget used to choose the tile when --tile is not given: e.g. 2GB, 512MB, or a plain "
        "number of GB (1 GB = 2^30 bytes; default 2GB)",
    )
    p.add_argument("--chop", action="store_true", help="the official quadrant chop instead of blended tiles")
    p.add_argument("--ensemble", action="store_true", help="x8 self-ensemble (8 times slower, slightly better)")
    p.add_argument(
        "--format",
        choices=tuple(FORMATS),
        default=None,
        help="output format; default: as the input (JPEG inputs give PNG)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help=PRECISION_HELP,
    )
    existing = p.add_mutually_exclusive_group()
    existing.add_argument(
        "--overwrite", action="store_true", help="replace outputs that --out already holds (default: refuse them)"
    )
    existing.add_argument(
        "--skip_existing",
        action="store_true",
        help="keep outputs that --out already holds and denoise only the other inputs (resumes an interrupted "
        "batch: outputs are written whole or not at all)",
    )
    add_runtime_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_allocator()
    try:
        # every user mistake is refused before the model loads
        inputs = collect_inputs(args.inputs)
        check_not_input_folder(args.out, inputs)
        found = existing_outputs(inputs, args.out, args.format)
        if found and not (args.overwrite or args.skip_existing):
            refuse_existing(found, args.out)
        existing = "overwrite" if args.overwrite else "skip" if args.skip_existing else "refuse"
        device = select_device(args.cpu, args.device)
        if not Path(args.weights).exists():
            raise UserError(f"--weights {args.weights} does not exist; {WEIGHTS_HINT}")
        check_writable_dir(args.out, "--out")
        with dcn_backend(args.dcn_backend):
            model, spec = load_checkpoint(args.weights, name=args.model, n_colors=args.n_colors, device=device)
            n_colors = spec.n_colors
            # forward-pass memory scales with the first width; SADNet is budgeted like ADFNet
            bytes_per_pixel = ADFNET_BYTES_PER_PIXEL * WIDTHS.get(spec.name, WIDTHS["adfnet"])[0] / WIDTHS["adfnet"][0]
            failures = denoise_files(
                model,
                inputs,
                args.out,
                n_colors=n_colors,
                tile=args.tile,
                overlap=args.overlap,
                max_memory=args.max_memory,
                bytes_per_pixel=bytes_per_pixel,
                chop=args.chop,
                ensemble=args.ensemble,
                fmt=args.format,
                device=device,
                precision=args.precision,
                existing=existing,
            )
    except WriteError as err:  # a full disk or an unwritable output: not a mistake in the command
        print(f"adfnet-denoise: error: {err}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as err:  # a UserError, or a checkpoint of another network
        print(f"adfnet-denoise: error: {err}", file=sys.stderr)
        return 2
    skipped = len(found) if args.skip_existing else 0
    done = len(inputs) - len(failures) - skipped
    kept = f" ({skipped} skipped: their outputs were there)" if skipped else ""
    print(f"{done} of {len(inputs)} image(s) denoised into {args.out}{kept}")
    for src, message in failures.items():
        print(f"  failed: {src}: {message}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
