"""Shared test fixtures: the repository paths, the bundled sample folders, thread pinning, subprocess setup.

Constants are imported by the test modules (``from conftest import ROOT``); pytest puts this folder on
``sys.path`` for them.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

# torch.compile's on-disk cache outlives a checkout: a graph compiled against another build of the `dcn`
# ops (another schema) would be replayed. Each test run compiles into its own folder.
os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="adfnet-inductor-")
atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / "datasets"
SET12 = DATASETS / "testsets/Set12"
MCMASTER = DATASETS / "testsets/McMaster"
SIDD_SAMPLES = DATASETS / "real/SIDD_samples"
TRAIN_GRAY = DATASETS / "trainsets/Train400_sample"
TRAIN_RGB = DATASETS / "trainsets/CBSD432_sample"


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python: this checkout's packages first (not another installed copy), one thread."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def console_script(name: str) -> Path:
    """The installed console script ``name`` of this interpreter's environment (scripts/setup.sh installs them).

    Looked up beside ``sys.executable``, not on PATH, so a missing install fails the test instead of finding
    another environment's script.
    """
    script = Path(sys.executable).parent / name
    if not script.is_file():
        found = shutil.which(name)
        raise AssertionError(
            f"console script {name} is not installed beside {sys.executable} (PATH has: {found}); install the "
            "project with `pip install --no-build-isolation -e .` (scripts/setup.sh)"
        )
    return script


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The GPU checks (marked ``cuda``) are skipped, with the reason, where no CUDA device is visible."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (a GPU check: scripts/gpu_check.sh)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def _cpu_levels() -> list[str]:
    from dcn import _ext

    return _ext.cpu_capabilities() if _ext.is_available() else []


@pytest.fixture(params=_cpu_levels())
def cpu_level(request) -> Iterator[str]:
    """The compiled CPU kernels at each instruction-set level this CPU supports (baseline, avx2,
    avx512: dcn.use_cpu_capability), so that parity tests cover every level's code."""
    import dcn

    with dcn.use_cpu_capability(request.param):
        yield request.param


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread: toy runs are latency-bound, and 2 threads on a busy 2-core machine crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def toy_flags(tmp: Path) -> list[str]:
    """The train.py flags every toy run shares: 16-px patches, batch 2, CPU, no loader workers,
    experiments under ``tmp``."""
    return ["--patch_size", "16", "--batch_size", "2", "--cpu", "--n_threads", "0", "--dir_experiment", str(tmp)]


def toy_run(tmp: Path, *extra: str, save: str = "run", val: Path | None = None, test_every: int = 2) -> list[str]:
    """train.py arguments of a gray toy run: bundled Train400 crops, 16-px patches, batch 2, CPU,
    experiments under ``tmp``; validated on ``val`` or on a 32x32 crop of Set12/01 made in ``tmp/val``.
    ``extra`` comes last, so it can override any of these."""
    from adfnet.data.io import read_image, save_image

    if val is None:
        val = tmp / "val"
        if not val.is_dir():
            save_image(val / "01.png", read_image(SET12 / "01.png", 1)[:32, :32])
    return [
        *("--n_colors", "1", "--dir_data", str(TRAIN_GRAY), "--data_val", str(val), "--test_every", str(test_every)),
        *toy_flags(tmp),
        *("--save", save),
        *extra,
    ]
