"""The official ``python test.py ...`` command line: a shim over :mod:`adfnet.cli.test` (``adfnet-test``)."""

import sys

from adfnet.cli.test import main

if __name__ == "__main__":
    sys.exit(main())
