"""Denoise DND crops into a DND submission.

The official script name, a shim over ``adfnet-real dnd`` (same flags; ``-h`` lists them).
"""

import sys

try:
    from adfnet.cli.real import main
except ImportError as err:  # run from a checkout without the package installed
    sys.exit(
        f"error: cannot import adfnet ({err}). Install it with `pip install --no-build-isolation -e .` "
        "(scripts/setup.sh does), or run `python -m adfnet.cli.real dnd ...` from the repository root"
    )

if __name__ == "__main__":
    sys.exit(main(["dnd", *sys.argv[1:]]))
