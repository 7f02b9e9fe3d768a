"""Cut SIDD pairs into training patches: the official script name, a shim over ``adfnet-patches`` (same flags)."""

import sys

try:
    from adfnet.cli.patches import main
except ImportError as err:  # run from a checkout without the package installed
    sys.exit(
        f"error: cannot import adfnet ({err}). Install it with `pip install --no-build-isolation -e .` "
        "(scripts/setup.sh does), or run `python -m adfnet.cli.patches ...` from the repository root"
    )

if __name__ == "__main__":
    sys.exit(main())
