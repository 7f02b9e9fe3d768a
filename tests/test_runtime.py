"""adfnet.runtime.tune_allocator: configures glibc in a fresh process and reports what it did."""

import subprocess
import sys


def test_tune_allocator_configures_glibc_or_keeps_a_preloaded_allocator():
    code = (
        "from adfnet.runtime import preloaded_allocator, tune_allocator; "
        "print(preloaded_allocator()); print(tune_allocator(256))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    if out[0] != "None":
        assert out[1] == f"{out[0]} (preloaded)"
    elif sys.platform.startswith("linux"):
        assert out[1] == "glibc mallopt (no mmap, trim above 256 MB)"
    else:  # mallopt is glibc's: elsewhere the system allocator is left as it is, and says so
        assert out[1] == "system default"
