"""What a CPU inference costs in memory: no lazy import of torch's compiler stack, heap given back between
the decoder's stages, large blocks reused within a forward pass instead of mapped afresh (measured:
benchmarks/adfnet_speed.py --strict)."""

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


def _thp_always() -> bool:
    """Transparent huge pages for every mapping: then a fresh 64 MiB block faults ~32 huge pages, not 16,384."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[always]" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page faults are counted through Linux's rusage")
def test_large_block_cache_reuses_freed_blocks_without_page_faults() -> None:
    """Inside the scope a freed 64 MiB block is handed to the next request of its size: same address, its pages
    already there (glibc maps a fresh one and faults all 16,384 pages in again). Small blocks are not kept; a
    request of another size first releases the kept blocks it would otherwise pile on; leaving releases the rest."""
    code = (
        "import resource, torch\n"
        "from dcn._ext import large_block_cache, large_block_cache_kept_bytes as kept\n"
        "MB = 1 << 20\n"
        "def faults():\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "def filled(n):\n"
        "    t = torch.empty(n, dtype=torch.uint8)\n"
        "    t.fill_(1)\n"
        "    return t\n"
        "filled(64 * MB)\n"
        "f = faults()\n"
        "filled(64 * MB)\n"
        "outside = faults() - f\n"
        "with large_block_cache() as on:\n"
        "    a = filled(64 * MB)\n"
        "    address = a.data_ptr()\n"
        "    del a\n"
        "    k1 = kept()\n"
        "    f = faults()\n"
        "    b = filled(64 * MB)\n"
        "    inside = faults() - f\n"
        "    same = b.data_ptr() == address\n"
        "    del b\n"
        "    filled(MB)\n"
        "    k2 = kept()\n"
        "    c = filled(40 * MB)\n"
        "    k3 = kept()\n"
        "    del c\n"
        "    k4 = kept()\n"
        "print(on, outside, inside, same, k1 // MB, k2 // MB, k3 // MB, k4 // MB, kept())\n"
    )
    on, outside, inside, same, *kept = _run(code)
    assert on == "True" and same == "True"
    assert [int(k) for k in kept] == [64, 64, 0, 40, 0]
    assert int(inside) < 200, inside
    if preloaded_allocator() is None and not _thp_always():
        assert int(outside) > 15_000, outside  # what the cache saves: 16,384 pages


def test_adfnet_cpu_inference_runs_inside_the_large_block_cache() -> None:
    """A block of 33 MiB freed during ADFNet's CPU inference is kept (the cache is on), not in training, and
    nothing is kept once the forward returns."""
    code = (
        "import torch\n"
        "from adfnet.models import ADFNet\n"
        "from dcn._ext import large_block_cache_kept_bytes as kept\n"
        "seen = []\n"
        "def hook(module, args):\n"
        "    torch.empty(33 << 20, dtype=torch.uint8)\n"
        "    seen.append(kept() >> 20)\n"
        "model = ADFNet(3, (8, 8, 16, 16)).eval()\n"
        "model.head.register_forward_pre_hook(hook)\n"
        "x = torch.rand(1, 3, 16, 24)\n"
        "with torch.inference_mode():\n"
        "    model(x)\n"
        "after = kept()\n"
        "model.train()\n"
        "model(x).sum().backward()\n"
        "print(*seen, after, kept())\n"
    )
    assert _run(code) == ["33", "0", "0", "0"]
