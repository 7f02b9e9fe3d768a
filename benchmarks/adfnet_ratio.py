"""ADFNet's speed-up over the original formulation, timed interleaved in one process.

benchmarks/adfnet_speed.py runs every configuration in a process of its own (for its memory), one
after another; on a shared machine the load then changes between the reference and the fast run
and their ratio with it. Here the two formulations alternate step by step on one model and input
(inference, or a training step with one Adam optimizer per formulation), so that both see the same
load; the speed-up is the median of the per-pair ratios. ``--precision bf16`` runs the fast
formulation under bfloat16 autocast (the reference stays the original float32 network).

    python benchmarks/adfnet_ratio.py [--threads 2] [--pairs 3] [--precision bf16] [--only TEXT ...]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adfnet.models import build_model  # noqa: E402
from adfnet.models.ops import use_formulation  # noqa: E402

# (task, batch, height, width): the configurations the speed goals are stated for
CONFIGS = [
    ("inference", 1, 256, 384),
    ("inference", 1, 512, 768),
    ("training", 4, 64, 64),
    ("training", 16, 128, 128),
]


def label(task: str, batch: int, h: int, w: int) -> str:
    return f"inference {h}x{w}" if task == "inference" else f"training step, batch {batch} patch {h}"


def timed_steps(task: str, batch: int, h: int, w: int, pairs: int, bf16: bool) -> dict[str, list[float]]:
    """Seconds of `pairs` steps per formulation, alternating, after one warm-up step each."""
    torch.manual_seed(0)
    models = {"reference": build_model("adfnet", 3), "fast": None}
    models["fast"] = copy.deepcopy(models["reference"])
    training = task == "training"
    optimizers = {k: torch.optim.Adam(m.parameters(), 1e-4) for k, m in models.items()} if training else {}
    x, target = torch.rand(batch, 3, h, w), torch.rand(batch, 3, h, w)
    times: dict[str, list[float]] = {"reference": [], "fast": []}
    for i in range(pairs + 1):
        for name, model in models.items():
            model.train(training)
            autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16 and name == "fast")
            start = time.perf_counter()
            with use_formulation(name), autocast:
                if training:
                    optimizers[name].zero_grad(set_to_none=True)
                    torch.nn.functional.l1_loss(model(x).float(), target).backward()
                    optimizers[name].step()
                else:
                    with torch.inference_mode():
                        model(x)
            if i > 0:
                times[name].append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=3, help="timed (reference, fast) pairs per configuration")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="of the fast formulation")
    parser.add_argument("--only", nargs="+", metavar="TEXT", help="only the configurations whose label has one")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    configs = [c for c in CONFIGS if not args.only or any(t in label(*c) for t in args.only)]
    print(f"ADFNet (RGB) on CPU, {args.threads} threads, reference float32 against fast {args.precision}, "
          f"{args.pairs} interleaved pairs\n")  # fmt: skip
    print("| configuration | reference (median) | fast (median) | speed-up (median of pairs) |\n|---|---|---|---|")
    for config in configs:
        times = timed_steps(*config, args.pairs, args.precision == "bf16")
        ratios = [r / f for r, f in zip(times["reference"], times["fast"], strict=True)]
        print(
            f"| {label(*config)} | {statistics.median(times['reference']):.2f} s "
            f"| {statistics.median(times['fast']):.2f} s | {statistics.median(ratios):.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
