"""``adfnet-export`` (also ``python -m adfnet.export``): ADFNet weights as ONNX and/or safetensors.

    adfnet-export --weights W --onnx adfnet.onnx --check
    adfnet-export --weights W --safetensors adfnet.safetensors

The work is :mod:`adfnet.export`'s; this module is the command line (user mistakes: a message, exit code 2;
a full disk or an unwritable output: a message, exit code 1, no partial file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from adfnet.checkpoint import load_checkpoint
from adfnet.cli.common import check_writable_dir, command_name
from adfnet.errors import UserError
from adfnet.export import DCN_MODES, OPSET, check_onnx, export_onnx, export_safetensors
from adfnet.fileio import WriteError
from adfnet.models import WIDTHS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=command_name("adfnet-export"), description="Export ADFNet weights to ONNX or safetensors."
    )
    p.add_argument("--weights", required=True, help="checkpoint (.pt, .pth or .safetensors)")
    p.add_argument("--model", choices=tuple(WIDTHS), default=None, help="default: read from the checkpoint")
    p.add_argument("--n_colors", type=int, choices=(1, 3), default=None, help="default: read from the checkpoint")
    p.add_argument("--onnx", type=Path, help="write an ONNX model here")
    p.add_argument(
        "--dcn",
        choices=DCN_MODES,
        default="auto",
        help="DCN as the DeformConv operator, or as GridSample + Conv; auto: DeformConv if the installed "
        "onnxruntime runs it",
    )
    p.add_argument("--check", action="store_true", help="run the ONNX file in onnxruntime and compare with PyTorch")
    p.add_argument("--safetensors", type=Path, help="write the weights as .safetensors here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    outputs = {flag: path for flag, path in (("--onnx", args.onnx), ("--safetensors", args.safetensors)) if path}
    try:
        if not outputs:
            raise UserError("nothing to do: give --onnx PATH and/or --safetensors PATH")
        # every output is checked before the model is loaded or traced (seconds of work)
        if args.onnx and args.safetensors and args.onnx.resolve() == args.safetensors.resolve():
            raise UserError(f"--onnx and --safetensors are the same file {args.onnx}: give each its own path")
        for flag, path in outputs.items():
            if path.resolve() == Path(args.weights).resolve():
                raise UserError(f"{flag} {path} is the --weights file itself: choose another output path")
            if path.is_dir():
                raise UserError(f"{flag} {path} is a folder: give a file path, e.g. {path / f'adfnet.{flag[2:]}'}")
            check_writable_dir(path.resolve().parent, f"the folder of {flag}")
        model, spec = load_checkpoint(args.weights, name=args.model, n_colors=args.n_colors)
        n_colors = spec.n_colors
        if args.safetensors:
            export_safetensors(model, args.safetensors, spec.name, n_colors)
            print(f"wrote {args.safetensors}")
        if args.onnx:
            mode = export_onnx(model, args.onnx, n_colors, args.dcn)
            print(f"wrote {args.onnx} (opset {OPSET}, DCN as {mode})")
            if args.check:
                err = check_onnx(model, args.onnx, torch.rand(1, n_colors, 64, 96))
                print(f"onnxruntime vs PyTorch on a 64x96 input: max abs difference {err:.2e}")
    except WriteError as err:  # a full disk or an unwritable output: not a mistake in the command
        print(f"adfnet-export: error: {err}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, ImportError) as err:  # a UserError, a checkpoint of another network
        print(f"adfnet-export: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
