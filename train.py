"""The official ``python train.py ...`` command line: a shim over :mod:`adfnet.cli.train` (``adfnet-train``).

``main(argv)`` is :func:`adfnet.cli.train.run` (returns the validation PSNR) for callers that train from Python.
"""

import sys

from adfnet.cli.train import main as _command_line
from adfnet.cli.train import run as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(_command_line())
