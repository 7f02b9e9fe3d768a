"""scripts/gpu_check.sh: runs the GPU checks (the tests marked cuda) and the GPU timings, writes the report.

Without a GPU (--dry-run) every check is reported as skipped with its reason, never as passed; a failing
check fails the run and is reported with its message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def _run(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--out", str(out), *args],
        env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def test_dry_run_reports_every_gpu_check_as_skipped_and_the_timings(tmp_path):
    result = _run(tmp_path, "tests/test_dcn_ext.py", "tests/test_golden.py", "tests/test_train.py")
    assert result.returncode == 0, result.stdout + result.stderr
    report = (tmp_path / "gpu_check_report.md").read_text()
    assert "0 passed, 0 failed, " in report and "dry run (CPU, no GPU check runs): True" in report
    for check in ("test_cuda_layouts", "test_cuda_64bit_indexing", "test_output_matches_official_on_cuda"):
        assert f"{check}" in report
    rows = [line for line in report.splitlines() if line.startswith("| test_")]
    assert len(rows) >= 30 and all("| skipped: " in row and "needs " in row for row in rows)
    assert "## Timings on CPU" in report and "| 1x16x16x16 | float32 |" in report and "| 16x16 |" in report


def test_a_failing_check_fails_the_run(tmp_path):
    """A GPU check that fails (here one outside tests/, so that no CUDA device is needed to run it) makes the
    exit status 1 and is reported with its message; the passing one beside it is reported as passed."""
    checks = tmp_path / "test_fake_gpu.py"
    checks.write_text(
        "import pytest\n\n"
        "@pytest.mark.cuda\ndef test_kernel_matches():\n    assert 1 + 1 == 3, 'the kernel differs'\n\n"
        "@pytest.mark.cuda\ndef test_other():\n    pass\n"
    )
    result = _run(tmp_path / "out", str(checks))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED: test_fake_gpu::test_kernel_matches" in result.stderr
    report = (tmp_path / "out" / "gpu_check_report.md").read_text()
    assert "1 passed, 1 failed, 0 skipped" in report and "| test_fake_gpu::test_other | passed |" in report
    assert "## test_fake_gpu::test_kernel_matches: failed" in report and "the kernel differs" in report
