"""ADFNet speed and memory on CPU: the reference formulation against the fast one, side by side.

reference = the original network's operations (torchvision ``deform_conv2d`` as the DCN, dynamic
filtering by unfold, MFI as full-size temporaries then ``cat``); fast = this project's default
(compiled DCN, fused dynamic-filter kernels, MFI folded into the fusion conv). Same weights, same
outputs (tests/test_fast_ops.py). Every configuration runs in its own process, so that its peak
resident memory (ru_maxrss) is its own; activation memory = peak minus the resident memory after
building the model. Times are the median of ``--repeats`` runs after one warm-up. GFLOP/s counts
the true multiply-adds (adfnet.complexity, x2), a training step as 3x the forward; the share is
against a float32 GEMM (torch.mm 2048^3) measured in this run.
"default" is glibc's allocator as is; "tuned" calls adfnet.runtime.tune_allocator().
``--precision bf16`` runs the fast formulation under bfloat16 autocast (training: bf16 autocast
training); the reference stays the original float32 network.

``--strict`` adds a stricter activation-memory measurement, each configuration in one more fresh
process: after loading (the model, the input, the formulation's own libraries: torchvision for the
reference's DCN), the heap is trimmed (``malloc_trim``) and the kernel's resident high-water mark
reset (``/proc/self/clear_refs``); the FIRST step then runs, and its activation memory is the
high-water mark (VmHWM) minus the resident memory at the reset. So memory kept from loading does
not hide in the peak, and everything a first call adds (lazy imports, library code paged in,
oneDNN caches, thread stacks) counts.

    .venv/bin/python benchmarks/adfnet_speed.py [--quick] [--threads N] [--strict] [--precision bf16] [--out results.md]

The full run takes a long time (the reference needs ~50 s per 1024x1024 inference on 2 cores);
``--quick`` uses small sizes to check that everything runs.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (model, task, batch, height, width, formulations)
FULL = [
    ("adfnet", "inference", 1, 256, 384, ("reference", "fast")),
    ("adfnet", "inference", 1, 512, 768, ("reference", "fast")),
    ("adfnet", "inference", 1, 1024, 1024, ("reference", "fast")),
    ("adfnet", "inference", 1, 2048, 2048, ("fast",)),  # the reference needs > 23 GB
    ("adfnet", "training", 4, 64, 64, ("reference", "fast")),
    ("adfnet", "training", 16, 128, 128, ("reference", "fast")),
    ("adfnet_l", "inference", 1, 512, 768, ("reference", "fast")),
    ("adfnet_l", "training", 4, 64, 64, ("reference", "fast")),
]
QUICK = [
    ("adfnet", "inference", 1, 64, 96, ("reference", "fast")),
    ("adfnet", "inference", 1, 128, 192, ("reference", "fast")),
    ("adfnet", "training", 2, 32, 32, ("reference", "fast")),
    ("adfnet_l", "inference", 1, 64, 96, ("reference", "fast")),
]
ALLOCATORS = ("default", "tuned")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _status_bytes(key: str) -> int:
    """A memory line of /proc/self/status (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _strict_start() -> int:
    """Trim the heap, reset the resident high-water mark; the resident bytes now (the strict baseline)."""
    ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident size (Linux >= 4.0)
    return _status_bytes("VmRSS")


def worker(spec: dict) -> dict:
    """Runs one configuration in this process and returns its measurements."""
    import torch

    from adfnet.runtime import tune_allocator

    allocator = tune_allocator() if spec["allocator"] == "tuned" else "default"
    torch.set_num_threads(spec["threads"])
    if spec["task"] == "gemm":
        a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
        times = []
        for _ in range(spec["repeats"] + 1):
            start = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - start)
        return {"gflops": 2 * 2048**3 / min(times[1:]) / 1e9}

    from adfnet.models import build_model
    from adfnet.models.ops import use_formulation

    torch.manual_seed(0)
    model = build_model(spec["model"], 3)
    b, h, w = spec["batch"], spec["height"], spec["width"]
    x = torch.rand(b, 3, h, w)
    target = torch.rand(b, 3, h, w)
    training = spec["task"] == "training"
    optimizer = torch.optim.Adam(model.parameters(), 1e-4) if training else None

    def step() -> None:
        if training:
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.l1_loss(model(x), target).backward()
            optimizer.step()
        else:
            with torch.inference_mode():
                model(x)

    model.train(training)
    if spec.get("strict"):
        if spec["formulation"] == "reference":
            import dcn._torchvision  # noqa: F401  (the reference's DCN library: loading, not activations)
        base = _strict_start()
        with use_formulation(spec["formulation"]):
            step()
        return {"strict_gb": (_status_bytes("VmHWM") - base) / 1e9, "allocator": allocator}
    from adfnet.complexity import count_macs  # imports torch's flop counter (and torch._dynamo): not in --strict

    with torch.device("meta"):
        macs = count_macs(build_model(spec["model"], 3), (b, 3, h, w))["total"]
    rss_model = _rss_bytes()
    times = []
    bf16 = spec.get("precision") == "bf16" and spec["formulation"] == "fast"
    with use_formulation(spec["formulation"]), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for _ in range(spec["repeats"] + 1):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times[1:])
    flops = 2 * macs * (3 if training else 1)
    return {
        "seconds": seconds,
        "gflops": flops / seconds / 1e9,
        "peak_gb": _peak_rss_bytes() / 1e9,
        "activation_gb": (_peak_rss_bytes() - rss_model) / 1e9,
        "allocator": allocator,
    }


def run_isolated(spec: dict) -> dict:
    """``worker(spec)`` in a fresh interpreter; an error dict if it fails (e.g. out of memory)."""
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, cwd=ROOT
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1][:120]}
    return json.loads(lines[-1])


def _label(model: str, task: str, batch: int, h: int, w: int) -> str:
    name = {"adfnet": "ADFNet", "adfnet_l": "ADFNet-L"}[model]
    if task == "inference":
        return f"{name} inference {h}x{w}"
    return f"{name} training step, batch {batch} patch {h}"


def _fmt(result: dict | None, key: str, unit: str = "", digits: int = 2) -> str:
    if result is None:
        return "-"
    if "error" in result:
        return "failed"
    return f"{result[key]:.{digits}f}{unit}"


def _ratio(a: dict | None, b: dict | None, key: str) -> str:
    if not a or not b or "error" in a or "error" in b or b[key] == 0:
        return "-"
    return f"{a[key] / b[key]:.2f}x"


def table(rows: list[tuple], results: dict, gemm: float, allocators: list[str]) -> str:
    lines = []
    for allocator in allocators:
        lines += [
            f"\n**Allocator: {allocator}** ({results.get(('alloc', allocator), '')})\n",
            "| configuration | reference time | fast time | speed-up | reference activations | fast activations "
            "| activation ratio | fast peak RSS | fast GFLOP/s (share of GEMM peak) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for model, task, batch, h, w, _ in rows:
            ref = results.get((model, task, batch, h, w, "reference", allocator))
            fast = results.get((model, task, batch, h, w, "fast", allocator))
            share = "-" if not fast or "error" in fast else f"{fast['gflops']:.1f} ({100 * fast['gflops'] / gemm:.0f}%)"
            lines.append(
                f"| {_label(model, task, batch, h, w)} | {_fmt(ref, 'seconds', ' s')} | {_fmt(fast, 'seconds', ' s')} "
                f"| {_ratio(ref, fast, 'seconds')} | {_fmt(ref, 'activation_gb', ' GB')} "
                f"| {_fmt(fast, 'activation_gb', ' GB')} | {_ratio(fast, ref, 'activation_gb')} "
                f"| {_fmt(fast, 'peak_gb', ' GB')} | {share} |"
            )
    return "\n".join(lines)


def strict_table(rows: list[tuple], results: dict, allocators: list[str]) -> str:
    lines = [
        "\n**Strict activation memory** (the first step in a fresh process, heap trimmed and high-water mark "
        "reset after loading)\n",
        "| configuration | allocator | reference | fast | ratio |",
        "|---|---|---|---|---|",
    ]
    for allocator in allocators:
        for model, task, batch, h, w, _ in rows:
            ref = results.get((model, task, batch, h, w, "reference", allocator, "strict"))
            fast = results.get((model, task, batch, h, w, "fast", allocator, "strict"))
            lines.append(
                f"| {_label(model, task, batch, h, w)} | {allocator} | {_fmt(ref, 'strict_gb', ' GB', 3)} "
                f"| {_fmt(fast, 'strict_gb', ' GB', 3)} | {_ratio(fast, ref, 'strict_gb')} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one timed run: checks that it all runs")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per configuration (default 3, quick 1)")
    parser.add_argument("--out", type=Path, help="also write the markdown table to this file")
    parser.add_argument(
        "--only", nargs="+", metavar="TEXT", help="only the configurations whose label contains one of these texts"
    )
    parser.add_argument("--allocators", nargs="+", choices=ALLOCATORS, default=list(ALLOCATORS))
    parser.add_argument(
        "--strict", action="store_true", help="also measure activation memory strictly (module docstring)"
    )
    parser.add_argument("--strict_only", action="store_true", help="only the strict memory measurement (no timings)")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32", help="of the fast formulation (bf16: autocast)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    rows = QUICK if args.quick else FULL
    if args.only:
        rows = [r for r in rows if any(text in _label(*r[:5]) for text in args.only)]
    repeats = args.repeats or (1 if args.quick else 3)
    base = {"threads": args.threads, "repeats": repeats, "precision": args.precision}

    gemm = run_isolated({**base, "task": "gemm", "allocator": "default", "repeats": 5})
    if "error" in gemm:
        sys.exit(f"GEMM reference measurement failed: {gemm['error']}")
    results: dict = {}
    modes = (["timed"] if not args.strict_only else []) + (["strict"] if args.strict or args.strict_only else [])
    total = sum(len(r[-1]) for r in rows) * len(args.allocators) * len(modes)
    done = 0
    for allocator in args.allocators:
        for model, task, batch, h, w, formulations in rows:
            for formulation, mode in ((f, m) for f in formulations for m in modes):
                spec = {
                    **base,
                    "model": model,
                    "task": task,
                    "batch": batch,
                    "height": h,
                    "width": w,
                    "formulation": formulation,
                    "allocator": allocator,
                    "strict": mode == "strict",
                }
                result = run_isolated(spec)
                key = (model, task, batch, h, w, formulation, allocator)
                results[key + (("strict",) if mode == "strict" else ())] = result
                results.setdefault(("alloc", allocator), result.get("allocator", ""))
                done += 1
                if "error" in result:
                    text = result["error"]
                elif mode == "strict":
                    text = f"strict activations {result['strict_gb']:.3f} GB"
                else:
                    text = (
                        f"{result['seconds']:.2f} s, activations {result['activation_gb']:.2f} GB, "
                        f"peak {result['peak_gb']:.2f} GB"
                    )
                print(
                    f"[{done}/{total}] {allocator:7s} {formulation:9s} {_label(model, task, batch, h, w)}: {text}",
                    flush=True,
                )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (
        f"ADFNet (RGB, reference float32, fast {args.precision}) on CPU, {args.threads} threads, "
        f"torch {_torch_version()}; "
        f"float32 GEMM peak {gemm['gflops']:.0f} GFLOP/s; load average at the end {load:.1f}"
        + (" (--quick: sizes too small to judge)" if args.quick else "")
    )
    text = header
    if "timed" in modes:
        text += "\n" + table(rows, results, gemm["gflops"], args.allocators)
    if "strict" in modes:
        text += "\n" + strict_table(rows, results, args.allocators)
    print("\n" + text)
    if args.out:
        from adfnet.fileio import write_text  # the one writer (a full disk is an error, not a short file)

        write_text(args.out, text + "\n")


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    main()
