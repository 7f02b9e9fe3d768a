"""The GPU check's report (run by ``scripts/gpu_check.sh``): the CUDA tests' results and the GPU timings in Markdown.

Reads pytest's JUnit XML of ``pytest -m cuda`` and the timings table of ``benchmarks/gpu_speed.py``, writes
``--out`` (every check with its status; a failure with its message and traceback; a skip with its reason;
the machine), prints the summary and exits 1 when a check failed or did not run, else 0.
"""

from __future__ import annotations

import argparse
import platform
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a clean checkout, not necessarily installed

from adfnet.fileio import write_text  # noqa: E402
from dcn import _ext  # noqa: E402


def read_results(junit: Path) -> list[dict[str, str]]:
    """One record per test case: ``name``, ``status`` (passed, failed, skipped), ``message``, ``details``."""
    results = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        record = {"name": f"{module}::{case.get('name')}", "status": "passed", "message": "", "details": ""}
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                record["status"] = "skipped" if tag == "skipped" else "failed"
                record["message"] = (found.get("message") or "").strip()
                record["details"] = (found.text or "").strip()
        results.append(record)
    return results


def environment(dry_run: bool) -> list[str]:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "dry run (CPU, no GPU check runs)": dry_run,
        "extension built with CUDA kernels": _ext.has_cuda_kernels(),
    }
    if torch.cuda.is_available():
        info["GPUs"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        info["compute capability"] = "{}.{}".format(*torch.cuda.get_device_capability(0))
        info["CUDA"] = torch.version.cuda
    return [f"- {key}: {value}" for key, value in info.items()]


def markdown(results: list[dict[str, str]], problems: list[str], timings: str, dry_run: bool) -> str:
    counts = {s: sum(r["status"] == s for r in results) for s in ("passed", "failed", "skipped")}
    lines = [
        "# GPU check",
        "",
        *environment(dry_run),
        "",
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped "
        "(`pytest -m cuda`: the tests marked as GPU checks)",
        *(f"\n**{problem}**" for problem in problems),
        "",
        "| check | status |",
        "|---|---|",
        *(f"| {r['name']} | {r['status']}{': ' + r['message'] if r['status'] == 'skipped' else ''} |" for r in results),
    ]
    for r in (r for r in results if r["status"] == "failed"):
        lines += ["", f"## {r['name']}: failed", "", r["message"], "", "```", r["details"], "```"]
    lines += ["", timings.strip() or "No timings (benchmarks/gpu_speed.py did not run)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=Path, required=True, help="pytest's --junitxml file")
    parser.add_argument("--pytest-status", type=int, default=0, help="pytest's exit status")
    parser.add_argument("--timings", type=Path, help="benchmarks/gpu_speed.py's --out file")
    parser.add_argument("--timings-status", type=int, default=0, help="its exit status")
    parser.add_argument("--out", type=Path, required=True, help="the report (Markdown)")
    parser.add_argument("--dry-run", action="store_true", help="the run was on the CPU")
    args = parser.parse_args(argv)
    problems = []
    results = read_results(args.tests) if args.tests.is_file() else []
    if args.pytest_status not in (0, 1) or not results:
        problems.append(f"pytest did not run the checks (exit status {args.pytest_status}, {len(results)} results)")
    if args.timings_status:
        problems.append(f"benchmarks/gpu_speed.py failed (exit status {args.timings_status})")
    timings = args.timings.read_text() if args.timings and args.timings.is_file() else ""
    write_text(args.out, markdown(results, problems, timings, args.dry_run))
    failed = [r["name"] for r in results if r["status"] == "failed"]
    print(f"gpu_check: {len(results) - len(failed)} of {len(results)} checks passed or skipped; report: {args.out}")
    for line in [*problems, *(f"FAILED: {name}" for name in failed)]:
        print(line, file=sys.stderr)
    return 1 if failed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
