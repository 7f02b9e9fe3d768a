"""Score a SIDD submission against the ground truth (replaces evaluate_SIDD.m).

The official script name, a shim over ``adfnet-real score-sidd`` (same flags; ``-h`` lists them).
"""

import sys

try:
    from adfnet.cli.real import main
except ImportError as err:  # run from a checkout without the package installed
    sys.exit(
        f"error: cannot import adfnet ({err}). Install it with `pip install --no-build-isolation -e .` "
        "(scripts/setup.sh does), or run `python -m adfnet.cli.real score-sidd ...` from the repository root"
    )

if __name__ == "__main__":
    sys.exit(main(["score-sidd", *sys.argv[1:]]))
