"""Build the DCNv2 extension `dcn._C` (the package metadata is in pyproject.toml).

Install with ``pip install --no-build-isolation -e .`` (an isolated build would lack torch or
download another one) or build in place with ``sh make.sh``.

Environment:
  FORCE_CUDA=1       compile the CUDA kernels even without a visible GPU (needs CUDA_HOME; without a
                     GPU, TORCH_CUDA_ARCH_LIST defaults to 8.0+PTX: sm_80 code plus PTX that newer
                     GPUs compile at first use).
  DCN_WITH_CUDA=0    CPU-only build, whatever else is set.

The CUDA kernels are always also compiled by the host compiler, through an emulation of the CUDA
runtime (dcn/csrc/cuda/gpu_runtime.h), as the `cuda_emulated` backend: no CUDA toolkit is needed
for that, and CI runs the CUDA code paths on the CPU with it.

The CPU kernels are compiled three times on x86-64 (dcn/csrc/cpu/kernels_<isa>.cpp, each with its
own flags: baseline, AVX2 + FMA, AVX-512); the library picks one at run time from the CPU's
features (dcn/csrc/cpu/capability.cpp), so one build runs on any x86-64 CPU.
"""

from __future__ import annotations

import glob
import os
import platform
import sys

from setuptools import setup

# torch guesses CUDA_HOME from the nvcc on PATH when it is unset; /usr/local/bin/nvcc wrappers
# make it guess /usr/local, which has no CUDA headers. Prefer the standard toolkit location.
if not os.environ.get("CUDA_HOME") and not os.environ.get("CUDA_PATH") and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

try:
    import torch
except ImportError:
    sys.exit(
        "error: torch is not importable in this build environment. The DCN extension is compiled against the "
        "torch you run, so pip must not build in an isolated environment. Install torch and torchvision first "
        "(pip install -r requirements.txt), then: pip install --no-build-isolation -e .   "
        "(or build in place: sh make.sh)"
    )
from torch.utils.cpp_extension import CUDA_HOME, CppExtension, CUDAExtension  # noqa: E402
from torch.utils.cpp_extension import BuildExtension as TorchBuildExtension  # noqa: E402

CSRC = os.path.join("dcn", "csrc")
# PTX as well as sm_80 code: without it, GPUs newer than the list (sm_90, sm_100, sm_120) fail with
# "no kernel image is available"; with it their driver compiles the PTX at first use.
DEFAULT_ARCH_LIST = "8.0+PTX"


# at::parallel_for is a header template: with torch built on OpenMP (as on Linux) it runs the CPU
# kernels on all intra-op threads only if the extension itself is compiled with -fopenmp, and
# silently on one thread otherwise.
OPENMP = ["-fopenmp"] if torch.backends.openmp.is_available() and sys.platform.startswith("linux") else []


# Compiler flags of the per-instruction-set CPU kernel files (by file name ending), x86-64 only: the
# code they generate runs only where capability.cpp found the instruction set.
# (-Wno-maybe-uninitialized: GCC 12 warns inside its own AVX-512 intrinsic headers.)
ISA_FLAGS = {
    "_avx2.cpp": ["-mavx2", "-mfma", "-mf16c"],
    "_avx512.cpp": [
        *("-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq"),
        "-Wno-maybe-uninitialized",
    ],
}
X86_64 = platform.machine().lower() in ("x86_64", "amd64")


def _isa_flags(source: str) -> list[str]:
    return next((flags for end, flags in ISA_FLAGS.items() if source.endswith(end)), []) if X86_64 else []


class BuildExtension(TorchBuildExtension):
    """torch's BuildExtension, compiling each group of sources that share ISA flags with those flags."""

    def build_extension(self, ext) -> None:
        compile_all = self.compiler.compile

        def compile_grouped(sources, *args, extra_postargs=None, **kwargs):
            objects = []
            for flags in dict.fromkeys(tuple(_isa_flags(s)) for s in sources):
                group = [s for s in sources if tuple(_isa_flags(s)) == flags]
                post = extra_postargs
                if flags:
                    if isinstance(post, dict):
                        post = {**post, "cxx": [*post.get("cxx", []), *flags]}
                    else:
                        post = [*(post or []), *flags]
                objects += compile_all(group, *args, extra_postargs=post, **kwargs)
            return objects

        self.compiler.compile = compile_grouped
        try:
            super().build_extension(ext)
        finally:
            self.compiler.compile = compile_all


def _with_cuda() -> bool:
    """Whether to compile the CUDA kernels (FORCE_CUDA=1 or a visible GPU; DCN_WITH_CUDA=0 vetoes)."""
    if os.environ.get("DCN_WITH_CUDA", "") == "0":
        return False
    forced = os.environ.get("FORCE_CUDA", "") == "1"
    gpu = torch.cuda.is_available()
    if not (forced or gpu):
        return False
    if CUDA_HOME is None:
        if forced:
            raise RuntimeError("FORCE_CUDA=1 but no CUDA toolkit was found: set CUDA_HOME (e.g. /usr/local/cuda)")
        return False
    # Without a visible GPU torch cannot pick the architectures itself (it raises IndexError).
    if not gpu and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        print(f"dcn: FORCE_CUDA=1 without a GPU: compiling for TORCH_CUDA_ARCH_LIST={DEFAULT_ARCH_LIST}")
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST
    return True


def _extension():
    """The `dcn._C` extension: CUDAExtension with the .cu sources, or a CPU-only CppExtension.

    Both include emulation/*.cpp: the .cu kernels compiled by the host compiler (`cuda_emulated`).
    """
    sources = sorted(path for sub in ("", "cpu", "emulation") for path in glob.glob(os.path.join(CSRC, sub, "*.cpp")))
    # -g0 overrides the -g in Python's default CFLAGS: debug info for the torch headers makes the
    # build slower and the library ~30x larger.
    extra_compile_args = {"cxx": ["-O3", "-g0", *OPENMP]}
    options = {"extra_compile_args": extra_compile_args, "extra_link_args": OPENMP}
    if _with_cuda():
        sources += sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))
        extra_compile_args["nvcc"] = ["-O3"]
        return CUDAExtension("dcn._C", sources, **options)
    return CppExtension("dcn._C", sources, **options)


setup(ext_modules=[_extension()], cmdclass={"build_ext": BuildExtension})
