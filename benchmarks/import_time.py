"""What `import dcn, adfnet` costs on top of `import torch`, measured with `python -X importtime`.

Each measurement is a fresh interpreter; the figure is the minimum over repeats (the machine may be
shared). torchvision must not be imported (it costs seconds and is only needed by its backend).

    .venv/bin/python benchmarks/import_time.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 0.3
LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)")


def cumulative_import_times(statement: str) -> dict[str, float]:
    """Cumulative seconds of every top-level module imported by ``statement`` in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement], cwd=ROOT, capture_output=True, text=True, check=True
    )
    times = {}
    for match in LINE.finditer(result.stderr):
        if not match.group(2):  # top level (not imported by another module in this list)
            times[match.group(3)] = int(match.group(1)) / 1e6
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    best: dict[str, float] = {}
    for _ in range(args.repeats):
        times = cumulative_import_times("import torch, dcn, adfnet")
        if "torchvision" in times:
            print("FAIL: `import dcn, adfnet` imported torchvision")
            return 1
        for name in ("torch", "dcn", "adfnet"):
            best[name] = min(best.get(name, float("inf")), times.get(name, 0.0))
    extra = best["dcn"] + best["adfnet"]
    print(f"import torch:                {best['torch']:.3f} s")
    print(
        f"import dcn, adfnet on top:   {extra:.3f} s (dcn {best['dcn']:.3f}, adfnet {best['adfnet']:.3f}; "
        f"budget {BUDGET_S} s; torchvision not imported)"
    )
    return 0 if extra <= BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
