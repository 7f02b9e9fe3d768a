"""CPU training in bfloat16 autocast against float32, and channels_last against NCHW: loss curve and step time.

Three copies of one ADFNet (same initial weights) train side by side on the same batches (random
crops of the bundled CBSD432 sample, Gaussian noise sigma 25/255, the official loss
``sum((out - clean)^2) / (2B)``, Adam 1e-4): float32 in channels_last (the default on the CPU),
float32 in NCHW (the layout training used before it ran channels_last) and bfloat16 autocast in
channels_last. Their steps are interleaved, so a busy machine slows all three alike; times are
medians over the steps after the first two. The loss table shows whether bfloat16 follows the
float32 curve.

    python benchmarks/bf16_training.py [--steps 40] [--batch 4] [--patch 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adfnet.data.io import list_images, read_image  # noqa: E402
from adfnet.imaging import image_to_tensor  # noqa: E402
from adfnet.losses import build_loss  # noqa: E402
from adfnet.models import adfnet as adfnet_module  # noqa: E402
from adfnet.models import build_model  # noqa: E402

TRAIN = ROOT / "datasets" / "trainsets" / "CBSD432_sample"
VARIANTS = ("fp32 channels_last", "fp32 NCHW", "bf16 channels_last")


def batches(steps: int, batch: int, patch: int, seed: int = 0):
    """``steps`` (noisy, clean) batches of random crops with fixed seeds."""
    images = [image_to_tensor(read_image(p, 3))[0] for p in list_images(TRAIN)]
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        crops = []
        for _ in range(batch):
            img = images[int(torch.randint(len(images), (1,), generator=g))]
            y = int(torch.randint(img.shape[1] - patch + 1, (1,), generator=g))
            x = int(torch.randint(img.shape[2] - patch + 1, (1,), generator=g))
            crops.append(img[:, y : y + patch, x : x + patch])
        clean = torch.stack(crops)
        yield clean + torch.randn(clean.shape, generator=g) * 25 / 255, clean


def step(model, optimizer, loss_fn, noisy, clean, variant: str) -> tuple[float, float]:
    """One training step of ``variant``: (loss, seconds)."""
    nchw = variant.endswith("NCHW")
    layout = adfnet_module.channels_last_cpu
    if nchw:
        adfnet_module.channels_last_cpu = lambda x: False
    start = time.perf_counter()
    try:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant.startswith("bf16")):
            loss = loss_fn(model(noisy).float(), clean)
        loss.backward()
        optimizer.step()
    finally:
        adfnet_module.channels_last_cpu = layout
    return loss.item(), time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--every", type=int, default=5, help="loss table row every N steps")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = build_model("adfnet", 3).train()
    models = {v: copy.deepcopy(base) for v in VARIANTS}
    optimizers = {v: torch.optim.Adam(m.parameters(), 1e-4) for v, m in models.items()}
    loss_fn = build_loss("1*MSE")
    losses: dict[str, list[float]] = {v: [] for v in VARIANTS}
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for noisy, clean in batches(args.steps, args.batch, args.patch):
        for v in VARIANTS:
            loss, seconds = step(models[v], optimizers[v], loss_fn, noisy, clean, v)
            losses[v].append(loss)
            times[v].append(seconds)
    print(
        f"ADFNet training on the CPU, batch {args.batch}, patch {args.patch}, {args.threads} threads, "
        f"{args.steps} steps (the same batches and initial weights)\n"
    )
    print("| step | " + " | ".join(f"loss {v}" for v in VARIANTS) + " |")
    print("|---|" + "---|" * len(VARIANTS))
    for i in range(0, args.steps, args.every):
        print(f"| {i + 1} | " + " | ".join(f"{losses[v][i]:.2f}" for v in VARIANTS) + " |")
    print()
    median = {v: statistics.median(times[v][2:] or times[v]) for v in VARIANTS}
    ref = median[VARIANTS[0]]
    for v in VARIANTS:
        tail = statistics.mean(losses[v][-args.every :])
        print(f"{v}: step {median[v]:.3f} s ({ref / median[v]:.2f}x fp32 channels_last), mean loss of the last "
              f"{args.every} steps {tail:.2f}")  # fmt: skip
    first = statistics.mean(losses[VARIANTS[0]][-args.every :])
    last = statistics.mean(losses[VARIANTS[2]][-args.every :])
    print(f"bf16 against fp32, final loss: {100 * (last - first) / first:+.1f} %")


if __name__ == "__main__":
    main()
