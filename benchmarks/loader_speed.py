"""Training input speed: patches per second of one loader worker, decoding each image or reading the cache.

Makes a few DIV2K-sized (2040x1356) RGB PNGs in a temporary folder (smooth random scenes with fine
noise, so they compress like photographs: ~5 MB each, as DIV2K's), then times the training set
of ``adfnet-train`` (``SyntheticNoiseTrain``: random 128x128 crop, dihedral transform, AWGN at sigma
50, everything a sample costs) in this process with one torch thread, which is what a DataLoader
worker does. Uncached, every sample decodes a whole image; cached (``--cache``), it maps the
decoded cache and reads the patch's rows. The two are timed in alternating rounds so that a busy
machine slows both alike; the best round of each is reported, with the median. Also reported: the
time to build the cache, and to check it at the next start. Nothing is downloaded; the temporary
folders are removed.

    .venv/bin/python benchmarks/loader_speed.py [--images 4] [--patch 128] [--rounds 3] [--n_colors 3]

Target: >= 1,000 patches of 128x128 per second per worker, cached.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from adfnet.data.cache import DecodedCache  # noqa: E402
from adfnet.data.datasets import SyntheticNoiseTrain  # noqa: E402
from adfnet.data.noise import build_noise  # noqa: E402

DIV2K_SIZE = (1356, 2040)  # height, width of most DIV2K training images


def make_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` photograph-like 2040x1356 PNGs: a bicubic blow-up of random colours plus fine noise."""
    rng = np.random.default_rng(seed)
    files = []
    for i in range(count):
        coarse = rng.integers(0, 256, (DIV2K_SIZE[0] // 16, DIV2K_SIZE[1] // 16, 3), dtype=np.uint8)
        img = cv2.resize(coarse, DIV2K_SIZE[::-1], interpolation=cv2.INTER_CUBIC).astype(np.int16)
        img = np.clip(img + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
        path = folder / f"{i + 1:04d}.png"
        cv2.imwrite(str(path), img)
        files.append(path)
    return files


def rate(dataset: SyntheticNoiseTrain, samples: int, start: int) -> float:
    """Samples per second of ``dataset[start:start + samples]`` in this process."""
    t0 = time.perf_counter()
    for i in range(start, start + samples):
        dataset[i]
    return samples / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4, help="DIV2K-sized PNGs to make (default 4)")
    parser.add_argument("--patch", type=int, default=128, help="patch size (default 128)")
    parser.add_argument("--n_colors", type=int, choices=(1, 3), default=3)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds (default 3)")
    parser.add_argument("--uncached", type=int, default=12, help="samples per uncached round (default 12)")
    parser.add_argument("--cached", type=int, default=1000, help="samples per cached round (default 1000)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as in a DataLoader worker
    noise = build_noise("awgn", [50])
    with tempfile.TemporaryDirectory(prefix="adfnet-loader-") as tmp:
        data, cache_dir = Path(tmp) / "images", Path(tmp) / "cache"
        data.mkdir()
        files = make_images(data, args.images)
        size_mb = sum(f.stat().st_size for f in files) / len(files) / 1e6
        length = 10**6
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plain = SyntheticNoiseTrain(files, args.n_colors, args.patch, noise, length)
            t0 = time.perf_counter()
            cached = SyntheticNoiseTrain(files, args.n_colors, args.patch, noise, length, cache=DecodedCache(cache_dir))
            build = (time.perf_counter() - t0) / len(files)
            t0 = time.perf_counter()
            SyntheticNoiseTrain(files, args.n_colors, args.patch, noise, length, cache=DecodedCache(cache_dir))
            check = (time.perf_counter() - t0) / len(files)
        rates: dict[str, list[float]] = {"uncached": [], "cached": []}
        rate(cached, 50, 0)  # warm-up: page cache, first calls
        for r in range(args.rounds):
            rates["uncached"].append(rate(plain, args.uncached, r * args.uncached))
            rates["cached"].append(rate(cached, args.cached, r * args.cached))
        entry_mb = sum(e.stat().st_size for e in cache_dir.rglob("*.npy")) / len(files) / 1e6
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    best = {k: max(v) for k, v in rates.items()}
    print(
        f"Loader, one worker (1 torch thread), {args.images} PNGs of {DIV2K_SIZE[1]}x{DIV2K_SIZE[0]} "
        f"({size_mb:.1f} MB each), {args.patch}x{args.patch} patches, n_colors {args.n_colors}, AWGN sigma 50 "
        f"included; load average {load:.1f} on {os.cpu_count()} CPUs (best of {args.rounds} alternating rounds; median)"
    )
    print("| input | patches/s per worker | ms per patch |")
    print("|---|---|---|")
    for name, values in rates.items():
        print(f"| {name} | {best[name]:.0f} ({statistics.median(values):.0f}) | {1000 / best[name]:.2f} |")
    print(
        f"cached / uncached: {best['cached'] / best['uncached']:.0f}x; building the cache {build * 1000:.0f} ms per "
        f"image ({entry_mb:.1f} MB per entry), checking it at the next start {check * 1000:.0f} ms per image; "
        f"target >= 1,000 patches/s per worker: {'met' if best['cached'] >= 1000 else 'NOT met'} here"
    )


if __name__ == "__main__":
    main()
