"""scripts/gpu_check.sh --dry-run: the GPU check's logic on the CPU (emulated CUDA kernels, small sizes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

CHECKS = [
    "parity",
    "layouts",
    "deterministic",
    "index64",
    "second_gpu",
    "golden_outputs",
    "amp_step",
    "op_speed",
    "inference_time",
]


def _run(out: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--out", str(out), *args],
        env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "2", **env},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def test_dry_run_passes_and_writes_the_report(tmp_path):
    result = _run(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "gpu_check_report.json").read_text())
    statuses = {r["check"]: r["status"] for r in report["results"]}
    assert list(statuses) == CHECKS
    assert statuses.pop("second_gpu") == "skipped"  # needs 2 GPUs
    assert set(statuses.values()) == {"passed"}
    assert report["environment"]["dry_run"] is True
    parity = next(r for r in report["results"] if r["check"] == "parity")["details"]
    assert parity["cases"] == 20 and parity["max relative error"] < 4e-2
    markdown = (tmp_path / "gpu_check_report.md").read_text()
    assert all(r["title"] in markdown for r in report["results"])


def test_a_failing_check_fails_the_run(tmp_path):
    """An op that raises (here: an invalid column budget) is reported and makes the exit status 1."""
    result = _run(tmp_path, "--only", "layouts", "index64", DCN_COLUMN_BUDGET_MB="lots")
    assert result.returncode == 1
    assert "FAILED: layouts, index64" in result.stderr
    report = json.loads((tmp_path / "gpu_check_report.json").read_text())
    assert [r["status"] for r in report["results"]] == ["failed", "failed"]
    assert "DCN_COLUMN_BUDGET_MB" in report["results"][0]["details"]["error"]
    assert "failed" in (tmp_path / "gpu_check_report.md").read_text()
