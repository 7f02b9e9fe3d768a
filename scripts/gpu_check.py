"""The GPU check (run by ``scripts/gpu_check.sh``): everything a first machine with a GPU must confirm.

Each check returns its measurements or raises (failed) or raises ``Skip``; all run even after a
failure. The report goes to ``gpu_check_report.md`` and ``gpu_check_report.json`` in ``--out``; the
exit status is 1 when any check failed.

``--dry-run`` runs the same checks on the CPU with small sizes, so the test suite can exercise the
script's logic without a GPU: the op checks run the CUDA kernels compiled for the CPU
(``cuda_emulated``), the whole-model checks the CPU kernels (for speed; tests/test_golden.py runs
the golden outputs on ``cuda_emulated``). The numbers it reports are not GPU numbers.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a clean checkout, not necessarily installed

import dcn  # noqa: E402
from adfnet.fileio import write_text  # noqa: E402
from dcn import _ext, reference  # noqa: E402

# Tolerances relative to max|want| for each dtype (float64 reference computed on the rounded inputs).
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 4e-2}
PARITY_GRID = {
    "basic": {},
    "anisotropic": {"kernel": (3, 2), "stride": (2, 1), "padding": (1, 0), "dilation": (2, 1), "h": 9, "w": 7},
    "groups2_dg2": {"groups": 2, "dg": 2},
    "zero_offsets": {"offset_scale": 0.0},
    "far_outside": {"offset_scale": 50.0},
}
ADFNET_DCN_SHAPES = [(1, 64, 128, 128), (4, 64, 64, 64), (1, 128, 64, 64)]  # 3x3, 8 deformable groups
PAPER_SECONDS_PER_IMAGE = 0.027  # ADFNet on a 2080 Ti (paper, Table 2; image size not stated)


class Skip(Exception):
    """The check does not apply on this machine (the reason is reported)."""


@dataclass
class Target:
    """Where the checks run: a GPU, or the CPU with the emulated CUDA kernels (dry run)."""

    device: torch.device
    dry_run: bool

    @property
    def model_backend(self) -> str:
        return "ext"

    def op(self, *args):
        fn = _ext.modulated_deform_conv_emulated if self.dry_run else _ext.modulated_deform_conv
        return fn(*args)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def make_case(
    n=2,
    c=4,
    h=7,
    w=6,
    cout=6,
    kernel=(3, 3),
    stride=(1, 1),
    padding=(1, 1),
    dilation=(1, 1),
    groups=1,
    dg=1,
    offset_scale=1.5,
    seed=0,
):
    """float64 input, offset, mask, weight, bias on the CPU, and the conv parameters."""
    gen = torch.Generator().manual_seed(seed)
    kh, kw = kernel
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    tensors = [
        torch.randn(n, c, h, w, generator=gen, dtype=torch.float64),
        torch.randn(n, 2 * dg * kh * kw, ho, wo, generator=gen, dtype=torch.float64) * offset_scale,
        torch.rand(n, dg * kh * kw, ho, wo, generator=gen, dtype=torch.float64),
        torch.randn(cout, c // groups, kh, kw, generator=gen, dtype=torch.float64),
        torch.randn(cout, generator=gen, dtype=torch.float64),
    ]
    return tensors, (stride, padding, dilation, groups, dg)


def run(fn, tensors, params, grad_out=None):
    """Output and the five gradients of ``fn`` on fresh leaves (``grad_out`` default: fixed random)."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    out = fn(*leaves, *params)
    if grad_out is None:
        grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = torch.autograd.grad(out, leaves, grad_out.to(out))
    return [out.detach(), *grads]


def max_relative_error(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    """Largest |got - want| / max|want| over the output and gradients."""
    worst = 0.0
    for a, b in zip(got, want, strict=True):
        scale = max(b.abs().max().item(), 1e-30)
        worst = max(worst, (a.detach().double().cpu() - b.double().cpu()).abs().max().item() / scale)
    return worst


def compare(target: Target, tensors, params, dtype) -> float:
    """Error of the target's kernels in ``dtype`` against the float64 reference on the rounded inputs."""
    rounded = [t.to(dtype) for t in tensors]
    exact = [t.double() for t in rounded]
    shape = reference.modulated_deform_conv(*exact, *params).shape
    grad_out = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
    want = run(reference.modulated_deform_conv, exact, params, grad_out.double())
    got = run(target.op, [t.to(target.device) for t in rounded], params, grad_out.to(target.device))
    return max_relative_error(got, want)


# ---------------------------------------------------------------------------------------------
# The checks

CHECKS: list[tuple[str, Callable[[Target], dict]]] = []


def check(name: str):
    def register(fn):
        CHECKS.append((name, fn))
        return fn

    return register


@check("parity: forward and all gradients vs float64, every dtype, parity grid")
def parity(target: Target) -> dict:
    errors = {}
    for dtype, tol in TOLERANCE.items():
        for case, options in PARITY_GRID.items():
            err = compare(target, *make_case(**options), dtype)
            errors[f"{case}/{str(dtype).removeprefix('torch.')}"] = err
            assert err <= tol, f"{case} in {dtype}: relative error {err:.2e} > {tol:.0e}"
    return {"max relative error": max(errors.values()), "cases": len(errors)}


@check("layouts: channels_last and non-contiguous inputs")
def layouts(target: Target) -> dict:
    tensors, params = make_case(n=2, c=8, dg=2)
    want = run(reference.modulated_deform_conv, tensors, params)
    on = [t.to(target.device) for t in tensors]
    channels_last = [t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in on]
    strided = [t.transpose(-1, -2).contiguous().transpose(-1, -2) if t.dim() == 4 else t for t in on]
    errors = {}
    for name, variant in (("channels_last", channels_last), ("non_contiguous", strided)):
        errors[name] = max_relative_error(run(target.op, variant, params), want)
        assert errors[name] <= TOLERANCE[torch.float64], f"{name}: relative error {errors[name]:.2e}"
    return errors


@check("deterministic mode: inference stays on the kernels, grad_input goes to the reference")
def deterministic(target: Target) -> dict:
    tensors, params = make_case(n=2, c=8, dg=2)
    on = [t.to(target.device) for t in tensors]
    backend = "cuda_emulated" if target.dry_run else "ext"
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with dcn.use_backend(backend):
            first = run(dcn.modulated_deform_conv, on, params)
            second = run(dcn.modulated_deform_conv, on, params)
            no_grad_backend = dcn._backend.resolve(on[0]).name
            grad_backend = dcn._backend.resolve(on[0], dcn._backend.Grads(input=True)).name
    finally:
        torch.use_deterministic_algorithms(previous)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True)), "two runs differ"
    assert no_grad_backend == backend, f"inference routed to {no_grad_backend}"
    assert grad_backend == "reference", f"grad_input routed to {grad_backend}"
    return {"inference backend": no_grad_backend, "training backend": grad_backend}


@contextmanager
def _env(**values: str):
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _one_hot_case(target: Target, channels: int, size: int, kernel: int, dtype: torch.dtype):
    """Random offsets; a weight that selects the last input channel, so the output equals the DCN of
    that channel alone (computed by the reference on the CPU) although every flat index is large."""
    gen = torch.Generator().manual_seed(2)
    taps = kernel * kernel
    dev = target.device
    x = torch.empty(1, channels, size, size, dtype=dtype, device=dev).uniform_(-1, 1)
    offset = (torch.randn(1, 2 * taps, size, size, generator=gen) * 1.5).to(dtype).to(dev)
    mask = torch.rand(1, taps, size, size, generator=gen).to(dtype).to(dev)
    weight = torch.zeros(1, channels, kernel, kernel, dtype=dtype, device=dev)
    weight[0, -1] = torch.randn(kernel, kernel, generator=gen).to(dtype)
    params = ((1, 1), (kernel // 2,) * 2, (1, 1), 1, 1)
    x.requires_grad_()
    out = target.op(x, offset, mask, weight, None, *params)
    (grad_last,) = torch.autograd.grad(out, x, torch.ones_like(out))
    grad_last = grad_last[:, -1:]
    last = x.detach()[:, -1:].double().cpu().requires_grad_()
    want = reference.modulated_deform_conv(
        last, offset.double().cpu(), mask.double().cpu(), weight[:, -1:].double().cpu(), None, *params
    )
    (want_grad,) = torch.autograd.grad(want, last, torch.ones_like(want))
    return max_relative_error([out, grad_last], [want, want_grad]), x.numel(), channels * taps * size * size


@check("64-bit indexing: a >2^31-element input and a >2^31-element column buffer")
def index64(target: Target) -> dict:
    if target.dry_run:  # small shapes through the 64-bit path
        with _env(DCN_CUDA_INDEX64="1"):
            input_err, n_input, _ = _one_hot_case(target, 6, 9, 1, torch.float32)
            column_err, _, n_columns = _one_hot_case(target, 6, 9, 3, torch.float32)
    else:  # float16: 4 GiB for the input, the columns of one 3x3 image ~4.5 GiB
        input_err, n_input, _ = _one_hot_case(target, 32769, 256, 1, torch.float16)
        torch.cuda.empty_cache()
        column_err, _, n_columns = _one_hot_case(target, 4096, 256, 3, torch.float16)
    for name, err in (("input", input_err), ("columns", column_err)):
        assert err <= TOLERANCE[torch.float16], f"{name} case: relative error {err:.2e}"
    return {
        "input elements": n_input,
        "column elements": n_columns,
        "input error": input_err,
        "column error": column_err,
    }


@check("second GPU: tensors on cuda:1 while cuda:0 is current")
def second_gpu(target: Target) -> dict:
    if target.dry_run or torch.cuda.device_count() < 2:
        raise Skip("needs 2 GPUs")
    tensors, params = make_case(n=2, c=8, dg=2)
    want = run(reference.modulated_deform_conv, tensors, params)
    torch.cuda.set_device(0)
    got = run(target.op, [t.to("cuda:1") for t in tensors], params)
    assert all(g.device == torch.device("cuda:1") for g in got), "results left cuda:1"
    err = max_relative_error(got, want)
    assert err <= TOLERANCE[torch.float64], f"relative error {err:.2e}"
    return {"max relative error": err}


def _golden_models(target: Target):
    from adfnet.models import build_model

    sys.path.insert(0, str(ROOT / "tests" / "golden"))
    from weights import golden_state_dict

    for path in sorted((ROOT / "tests" / "golden").glob("*.pt")):
        golden = torch.load(path)
        model = build_model(path.stem.split("_")[0], n_colors=golden["n_colors"]).eval()  # adfnet_*, sadnet_*
        model.load_state_dict(golden_state_dict(model.state_dict(), golden["seed"]), strict=True)
        yield path.stem, golden, model.to(target.device)


@check("ADFNet and SADNet golden outputs on the device")
def golden_outputs(target: Target) -> dict:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    errors = {}
    with dcn.use_backend(target.model_backend), torch.no_grad():
        for name, golden, model in _golden_models(target):
            out = model(golden["input"].to(target.device))
            errors[name] = (out.cpu() - golden["output"]).abs().max().item()
            assert errors[name] <= 1e-4, f"{name}: max error {errors[name]:.2e}"
    return errors


@check("AMP: one ADFNet training step in float16 and bfloat16")
def amp_step(target: Target) -> dict:
    from adfnet.models import build_model

    losses = {}
    size, batch = (16, 1) if target.dry_run else (128, 2)
    dtypes = [torch.bfloat16] if target.dry_run else [torch.float16, torch.bfloat16]  # CPU autocast: bf16
    for dtype in dtypes:
        torch.manual_seed(0)
        model = build_model("adfnet", n_colors=3).to(target.device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler(target.device.type, enabled=dtype == torch.float16)
        clean = torch.rand(batch, 3, size, size, device=target.device)
        noisy = clean + 0.1 * torch.randn_like(clean)
        before = [p.detach().clone() for p in model.parameters()]
        with torch.autocast(target.device.type, dtype=dtype), dcn.use_backend(target.model_backend):
            loss = torch.nn.functional.l1_loss(model(noisy), clean)
        scaler.scale(loss).backward()
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters()), "non-finite grad"
        scaler.step(optimizer)
        scaler.update()
        changed = sum(not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters(), strict=True))
        assert torch.isfinite(loss) and changed > 0, f"{dtype}: loss {loss.item()}, {changed} parameters changed"
        losses[str(dtype).removeprefix("torch.")] = loss.item()
    return losses


def _best_time(fn: Callable[[], object], target: Target, repeats: int) -> float:
    fn()
    target.sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        target.sync()
        best = min(best, time.perf_counter() - start)
    return best


@check("speed of the op vs torchvision deform_conv2d (ADFNet shapes)")
def op_speed(target: Target) -> dict:
    from torchvision.ops import deform_conv2d

    shapes = [(1, 16, 16, 16)] if target.dry_run else ADFNET_DCN_SHAPES
    dtypes = [torch.float32] if target.dry_run else [torch.float32, torch.float16]
    repeats = 1 if target.dry_run else 20
    rows = {}
    for n, c, h, w in shapes:
        for dtype in dtypes:
            tensors, params = make_case(n=n, c=c, h=h, w=w, cout=c, dg=8, offset_scale=2.0)
            on = [t.to(target.device, dtype).requires_grad_() for t in tensors]
            x, offset, mask, weight, bias = on
            ours = functools.partial(target.op, *on, *params)
            theirs = functools.partial(deform_conv2d, x, offset, weight, bias, 1, 1, 1, mask)
            row = {}
            for name, fn in (("dcn", ours), ("torchvision", theirs)):
                row[f"{name} fwd ms"] = 1e3 * _best_time(lambda fn=fn: fn().detach(), target, repeats)
                row[f"{name} fwd+bwd ms"] = 1e3 * _best_time(lambda fn=fn: fn().sum().backward(), target, repeats)
            rows[f"{(n, c, h, w)} {str(dtype).removeprefix('torch.')}"] = row
    return rows


@check("ADFNet inference time per image (paper: 0.027 s on a 2080 Ti)")
def inference_time(target: Target) -> dict:
    from adfnet.models import build_model

    sizes = [(16, 16)] if target.dry_run else [(256, 256), (512, 768)]
    model = build_model("adfnet", n_colors=3).to(target.device).eval()
    times = {}
    with torch.no_grad(), dcn.use_backend(target.model_backend):
        for h, w in sizes:
            x = torch.rand(1, 3, h, w, device=target.device)
            times[f"{h}x{w} s"] = _best_time(lambda x=x: model(x), target, 1 if target.dry_run else 10)
    times["paper s (2080 Ti, Table 2)"] = PAPER_SECONDS_PER_IMAGE
    return times


# ---------------------------------------------------------------------------------------------
# Running and reporting


def run_checks(target: Target, only: list[str] | None = None) -> list[dict]:
    results = []
    for name, fn in CHECKS:
        if only and fn.__name__ not in only:
            continue
        start = time.perf_counter()
        try:
            details, status = fn(target), "passed"
        except Skip as reason:
            details, status = {"reason": str(reason)}, "skipped"
        except Exception as exc:  # noqa: BLE001 -- every check runs and is reported
            details, status = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}, "failed"
        results.append(
            {
                "check": fn.__name__,
                "title": name,
                "status": status,
                "seconds": time.perf_counter() - start,
                "details": details,
            }
        )
        print(f"[{status:>7}] {name} ({results[-1]['seconds']:.1f} s)", flush=True)
    return results


def environment(target: Target) -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "dry_run": target.dry_run,
        "device": str(target.device),
        "cuda_kernels": _ext.has_cuda_kernels(),
    }
    if target.device.type == "cuda":
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["capability"] = "{}.{}".format(*torch.cuda.get_device_capability(target.device))
        info["cuda"] = torch.version.cuda
    return info


def write_report(results: list[dict], env: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "gpu_check_report.json", out / "gpu_check_report.md"
    write_text(json_path, json.dumps({"environment": env, "results": results}, indent=2, default=str))
    lines = [
        "# GPU check",
        "",
        *(f"- {key}: {value}" for key, value in env.items()),
        "",
        "| check | status | seconds |",
        "|---|---|---|",
    ]
    lines += [f"| {r['title']} | {r['status']} | {r['seconds']:.1f} |" for r in results]
    for r in results:
        lines += ["", f"## {r['title']}: {r['status']}", ""]
        for key, value in r["details"].items():
            if key == "traceback":
                lines += ["```", value.rstrip(), "```"]
            else:
                lines.append(f"- {key}: {value:.3g}" if isinstance(value, float) else f"- {key}: {value}")
    write_text(md_path, "\n".join(lines) + "\n")
    return md_path, json_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="run on the CPU with the emulated CUDA kernels")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for gpu_check_report.md/.json")
    parser.add_argument("--only", nargs="*", help="run only these checks (function names)")
    args = parser.parse_args(argv)
    if not _ext.is_available():
        print(f"gpu_check: the dcn extension is not built ({_ext.load_error()}); run `sh make.sh`", file=sys.stderr)
        return 2
    if args.dry_run:
        target = Target(torch.device("cpu"), dry_run=True)
        if not _ext.has_emulation():
            print("gpu_check: the emulated CUDA kernels are not built; run `sh make.sh`", file=sys.stderr)
            return 2
    else:
        if not torch.cuda.is_available() or not _ext.has_cuda_kernels():
            print(
                "gpu_check: needs a visible GPU and an extension built with its CUDA kernels "
                "(use --dry-run to test this script on the CPU)",
                file=sys.stderr,
            )
            return 2
        target = Target(torch.device("cuda", 0), dry_run=False)
    start = time.perf_counter()
    results = run_checks(target, args.only)
    md_path, json_path = write_report(results, environment(target), args.out)
    failed = [r["check"] for r in results if r["status"] == "failed"]
    seconds = time.perf_counter() - start
    print(
        f"{len(results) - len(failed)}/{len(results)} checks passed or skipped in {seconds:.0f} s; "
        f"report: {md_path} and {json_path}"
    )
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
