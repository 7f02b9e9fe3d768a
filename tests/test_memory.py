"""What a first CPU inference costs in memory: no lazy import of torch's compiler stack, heap given back
between the decoder's stages (measured: benchmarks/adfnet_speed.py --strict)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from adfnet.runtime import preloaded_allocator
from conftest import subprocess_env


def _run(code: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), timeout=300, check=True
    )
    return proc.stdout.split()


def test_first_inference_imports_nothing_more() -> None:
    """torch.library.custom_op imports torch._dynamo (and sympy, triton: ~190 MiB resident) on an op's
    first call; an eager inference and its backward call the compiled kernels directly."""
    code = (
        "import sys, torch\n"
        "from adfnet.models import ADFNet\n"
        "model = ADFNet(3, (8, 8, 16, 16)).eval()\n"
        "x = torch.rand(1, 3, 16, 24)\n"
        "with torch.inference_mode():\n"
        "    model(x)\n"
        "inference = 'torch._dynamo' in sys.modules\n"
        "model.train()\n"
        "model(x).sum().backward()\n"
        "print(inference, 'torch._dynamo' in sys.modules)\n"
    )
    assert _run(code) == ["False", "False"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim and /proc are glibc/Linux's")
def test_release_free_memory_gives_back_freed_heap_unless_tuned() -> None:
    """Half of 2,000 heap blocks of 60 KB freed: the holes stay resident until trimmed; after
    tune_allocator (which keeps freed memory on purpose) nothing is trimmed. Before blocks that the heap
    can serve (up to glibc's 32 MiB mmap threshold) nothing is trimmed either: they reuse the holes."""
    code = (
        "import sys\n"
        "from adfnet import runtime\n"
        "def rss():\n"
        "    return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
        "if sys.argv[1] == 'tuned':\n"
        "    runtime.tune_allocator()\n"
        "blocks = [bytearray(60_000) for _ in range(2000)]\n"
        "del blocks[::2]\n"
        "before = rss()\n"
        "if sys.argv[1] == 'heap-sized':\n"
        "    runtime.release_free_memory_before(32 << 20)\n"
        "elif sys.argv[1] == 'mapped':\n"
        "    runtime.release_free_memory_before((32 << 20) + 1)\n"
        "else:\n"
        "    runtime.release_free_memory()\n"
        "print(before - rss())\n"
    )
    preloaded = preloaded_allocator() is not None  # the children inherit LD_PRELOAD
    cases = (("default", not preloaded), ("tuned", False), ("heap-sized", False), ("mapped", not preloaded))
    for mode, released in cases:
        proc = subprocess.run(
            [sys.executable, "-c", code, mode], capture_output=True, text=True, env=subprocess_env(), check=True
        )
        freed = int(proc.stdout)
        assert freed > 40e6 if released else freed < 5e6, (mode, freed)  # ~60 MB of holes
