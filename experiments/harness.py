"""Write docs/HARNESS.md from the baseline runs of scripts/validate_harness.sh (ours vs published, seed spread).

    .venv/bin/python -m experiments.harness results/harness --data_root <testsets> --output docs/HARNESS.md

Every ``seeds.csv`` under the runs folder is read (one row per set, sigma and seed), so runs made
separately or in parallel are combined. A set mean is compared with its published number; the
spread of the mean over noise seeds says whether the difference is noise. The spread is measured
on the runs with several seeds, which may be on a subset (``LIMIT``): the official per-image reseed
gives every image of a size the same noise field, so per-image fluctuations are correlated and a
subset's spread is the conservative (upper) estimate of the full set's. The verdict is mechanical
(within ``TOLERANCE`` spreads or not); what the measurements showed beyond it, and the rest of the
report's prose, is the Markdown template :data:`TEMPLATE` (``experiments/harness_report.md``), filled in here.
The report is committed, so a test-set root outside the repository is written as ``<testsets>``.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from string import Template

from adfnet.data.noise import sigma_label
from adfnet.evaluation.published import published_for, set_key
from adfnet.evaluation.seeds import SeedSpread, read_seed_rows, spreads
from adfnet.fileio import write_text

TEMPLATE = Path(__file__).with_name("harness_report.md")

TOLERANCE = 3.0  # a difference within 3 std of the seed spread is noise
# The cases the validation must have measured (n_colors, set, sigma); one without a run is named in the conclusion.
REQUIRED = [(1, "BSD68", 25.0), (3, "CBSD68", 50.0)]
METHOD = {1: "BM3D", 3: "CBM3D"}
# How the report names a test-set root outside the repository: the report is committed and read on other
# machines, where a path of the machine that ran the check names nothing.
ROOT_PLACEHOLDER = "<testsets>"
_TAG = re.compile(
    r"^(?P<set>.+)_c(?P<n>[13])_s(?P<seeds>\d+)(?:_from(?P<seed>\d+))?(?:_l(?P<limit>\d+))?(?:_p(?P<k>\d+)of(?P<parts>\d+))?$"
)


def shown_root(data_root: str) -> str:
    """The test-set root as the report writes it: a folder of the repository as given (``datasets/testsets``),
    any other (absolute, ``~``, or above the repository) as :data:`ROOT_PLACEHOLDER`."""
    path = Path(data_root)
    if path.is_absolute() or data_root.startswith("~") or ".." in path.parts:
        return ROOT_PLACEHOLDER
    return data_root


def _command(run_dir: Path, data_root: str, sigmas: list[str]) -> str:
    m = _TAG.match(run_dir.name)
    if m is None:
        return f"(run folder {run_dir.name}: not made by scripts/validate_harness.sh)"
    env = [f'CASES="{m["n"]}:{m["set"]}:{",".join(sigmas)}"', f"SEEDS={m['seeds']}"]
    env += [f"SEED={m['seed']}"] if m["seed"] else []
    env += [f"LIMIT={m['limit']}"] if m["limit"] else []
    env += [f"PARTS={m['parts']}"] if m["parts"] else []
    return " ".join(env) + f" scripts/validate_harness.sh {data_root}"


def merge_parts(files: list[Path]) -> tuple[list[dict[str, str]], list[str], list[str]]:
    """All ``seeds.csv`` rows, the parts of a ``PARTS=N`` run merged into whole-set rows.

    A part's mean is over its images, so the set mean is the image-count-weighted mean of the parts'.
    Returns the rows, the run folders they came from (parts once, as their run) and the incomplete runs.
    """
    rows: list[dict[str, str]] = []
    runs: list[str] = []
    parts: dict[tuple[str, ...], list[dict[str, str]]] = {}
    expected: dict[tuple[str, ...], int] = {}
    for f in files:
        m = _TAG.match(f.parent.name)
        base = f.parent.name if m is None or m["parts"] is None else f.parent.name.rsplit("_p", 1)[0]
        if base not in runs:
            runs.append(base)
        for row in read_seed_rows([f]):
            if m is None or m["parts"] is None:
                rows.append(row)
                continue
            key = (base, row["model"], row["n_colors"], row["set"], row["sigma"], row["seed"])
            parts.setdefault(key, []).append(row)
            expected[key] = int(m["parts"])
    incomplete = []
    for key, got in parts.items():
        if len(got) != expected[key]:
            incomplete.append(f"{key[0]} ({key[3]} sigma {key[4]} seed {key[5]}: {len(got)} of {expected[key]} parts)")
            continue
        n = [int(r["images"]) for r in got]
        total = sum(n)
        merged = dict(got[0], images=str(total), failed=str(sum(int(r["failed"]) for r in got)))
        for field in ("psnr", "ssim"):
            merged[field] = f"{sum(k * float(r[field]) for k, r in zip(n, got, strict=True)) / total:.6f}"
        rows.append(merged)
    return rows, runs, incomplete


def _case(s: SeedSpread) -> tuple[str, int, str, float]:
    return s.model, s.n_colors, s.set_name, s.sigma


def _spread_for(item: SeedSpread, items: list[SeedSpread]) -> SeedSpread | None:
    """The multi-seed measurement of the same model, task, set and sigma (itself, or a subset run)."""
    same = [s for s in items if len(s.psnrs) > 1 and _case(s) == _case(item)]
    return max(same, key=lambda s: (s.images, len(s.psnrs)), default=None)


def _fmt(x: float, spec: str) -> str:
    return "-" if math.isnan(x) else format(x, spec)


def comparison_table(items: list[SeedSpread]) -> tuple[str, list[str], list[str]]:
    """The markdown table of every full-set measurement, the rows outside the tolerance and the unchecked ones."""
    lines = [
        "| method | set | sigma | images | seeds | ours (mean over seeds) | published | ours - published "
        "| seed spread (std) | spread measured on | diff / std | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    outside, unchecked = [], []
    for s in items:
        if s.images != max(x.images for x in items if _case(x) == _case(s)):
            continue  # a subset run: its spread is shown with the full-set row
        pub = published_for(s.model, s.n_colors, s.set_name, s.sigma)
        spread = _spread_for(s, items)
        std = spread.std if spread else math.nan
        diff = s.mean - pub.psnr if pub else math.nan
        ratio = abs(diff) / std if std > 0 else math.nan
        on = "-" if spread is None else f"{spread.images} images x {len(spread.psnrs)} seeds"
        name = f"{METHOD[s.n_colors]} {s.set_name} sigma {sigma_label(s.sigma)}"
        if pub is None or math.isnan(ratio):
            verdict = "no published number" if pub is None else "no spread measured"
            unchecked.append(f"{name} ({verdict})")
        elif ratio <= TOLERANCE:
            verdict = "within the noise spread"
        else:
            verdict = "**outside** the noise spread (see below)"
            outside.append(name)
        lines.append(
            f"| {METHOD[s.n_colors]} | {s.set_name} | {sigma_label(s.sigma)} | {s.images} | {len(s.psnrs)} "
            f"| {s.mean:.3f} | {_fmt(pub.psnr if pub else math.nan, '.2f')} | {_fmt(diff, '+.3f')} "
            f"| {_fmt(std, '.4f')} | {on} | {_fmt(ratio, '.1f')} | {verdict} |"
        )
    return "\n".join(lines), outside, unchecked


def conclusion(items: list[SeedSpread], outside: list[str], unchecked: list[str]) -> str:
    """What the table shows, including what was not checked and the :data:`REQUIRED` cases not measured."""
    measured = {(s.n_colors, set_key(s.set_name, s.n_colors), s.sigma) for s in items}
    missing = [
        f"{METHOD[n]} {name} sigma {sigma_label(sigma)}"
        for n, name, sigma in REQUIRED
        if (n, name.lower(), sigma) not in measured
    ]
    checked = len([s for s in items if s.images == max(x.images for x in items if _case(x) == _case(s))])
    checked -= len(unchecked)
    parts = []
    if checked and not outside:
        parts.append(
            f"All checked differences to published numbers ({checked}) are within {TOLERANCE:g} std of the seed spread."
        )
    if outside:
        parts.append(
            f"Outside {TOLERANCE:g} std of the seed spread: {', '.join(outside)}; the reason is stated under Findings."
        )
    if unchecked:
        parts.append(f"Not checked: {', '.join(unchecked)}.")
    if missing:
        parts.append(f"Not measured: {', '.join(missing)} (see Findings).")
    return " ".join(parts)


def spread_table(items: list[SeedSpread]) -> str:
    """Every multi-seed measurement: per-seed set means, mean, std."""
    lines = [
        "| method | set | sigma | images | seed: set mean PSNR | mean | std |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for s in items:
        if len(s.psnrs) > 1:
            per_seed = ", ".join(f"{seed}: {p:.3f}" for seed, p in sorted(s.psnrs.items()))
            lines.append(
                f"| {METHOD[s.n_colors]} | {s.set_name} | {sigma_label(s.sigma)} | {s.images} | {per_seed} "
                f"| {s.mean:.3f} | {s.std:.4f} |"
            )
    return "\n".join(lines)


def write_report(runs: Path, data_root: str, output: Path) -> None:
    """``output`` from every run under ``runs``; ``data_root`` as :func:`shown_root` writes it."""
    files = sorted(runs.glob("*/seeds.csv"))
    if not files:
        raise ValueError(f"no */seeds.csv under {runs}: run scripts/validate_harness.sh first")
    data_root = shown_root(data_root)
    rows, runs_used, incomplete = merge_parts(files)
    items = spreads(rows)
    table, outside, unchecked = comparison_table(items)
    commands = []
    for run in runs_used:
        mine = [f for f in files if f.parent.name == run or f.parent.name.startswith(f"{run}_p")]
        sigmas = {row["sigma"] for row in read_seed_rows(mine)}
        commands.append(_command(mine[0].parent, data_root, sorted(sigmas, key=float)))
    if incomplete:
        commands.append("# incomplete, left out: " + "; ".join(incomplete))
    sets = sorted({(s.set_name, s.n_colors, s.images) for s in items})
    full = {(name, n): max(k for x, m, k in sets if (x, m) == (name, n)) for name, n, _ in sets}
    data = "\n".join(
        f"- `{name}` ({'gray' if n == 1 else 'colour'}), {k} images"
        + ("" if k == full[name, n] else " (a subset: the first `LIMIT` images of each part, in sorted order)")
        for name, n, k in sets
    )
    fields = {
        "table": table,
        "conclusion": conclusion(items, outside, unchecked),
        "spread_table": spread_table(items),
        "data_root": data_root,
        "data": data,
        "commands": "\n".join(commands),
    }
    text = Template(TEMPLATE.read_text()).substitute(fields)
    write_text(output, text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.harness", description=__doc__.split("\n")[0])
    p.add_argument("runs", type=Path, help="the OUT folder of scripts/validate_harness.sh (results/harness)")
    p.add_argument(
        "--data_root",
        required=True,
        help=f"the test-set root the runs used (named in the report; as {ROOT_PLACEHOLDER} if outside the repository)",
    )
    p.add_argument("--output", type=Path, default=Path("docs/HARNESS.md"))
    args = p.parse_args(argv)
    try:
        write_report(args.runs, args.data_root, args.output)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
