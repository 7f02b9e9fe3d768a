"""The decoded training cache (--cache / --ext sep): same samples as decoding, checked and rebuilt entries."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import train
from adfnet.data.cache import DecodedCache
from adfnet.data.datasets import PairedTrain, SyntheticNoiseTrain, dihedral, sample_rng
from adfnet.data.noise import build_noise
from adfnet.data.raw_pairs import BAYER_DECODING, RawPairedTrain
from adfnet.data.unprocess import UnprocessedRawTrain
from adfnet.engine.config import TrainConfig
from adfnet.engine.options import parse_options
from conftest import subprocess_env, toy_run

PATCH = 16
AWGN = build_noise("awgn", [25])


def _images(folder: Path) -> dict[str, np.ndarray]:
    """Training images of every kind the reader converts, written with OpenCV (BGR order on disk); returns
    each file's expected RGB float pixels, computed here from the raw arrays (not through the package)."""
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    rgb8 = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    rgb16 = rng.integers(0, 65536, (36, 44, 3), dtype=np.uint16)
    gray8 = rng.integers(0, 256, (34, 30), dtype=np.uint8)
    gray16 = rng.integers(0, 65536, (30, 38), dtype=np.uint16)
    rgba8 = rng.integers(0, 256, (32, 33, 4), dtype=np.uint8)
    plane = rng.integers(0, 256, (33, 35), dtype=np.uint8)
    arrays = {
        "rgb8.png": rgb8,
        "rgb16.png": rgb16,
        "gray8.png": gray8,
        "gray16.png": gray16,
        "rgba8.png": rgba8,
        "grayasrgb.png": np.dstack([plane, plane, plane]),
    }
    expected = {}
    for name, raw in arrays.items():
        assert cv2.imwrite(str(folder / name), raw)
        scale = 65535.0 if raw.dtype == np.uint16 else 255.0
        img = raw.astype(np.float32) / np.float32(scale)
        img = img[..., None] if img.ndim == 2 else img[..., :3][..., ::-1]  # alpha off, BGR -> RGB
        expected[name] = img
    return expected


def _as_model_input(img: np.ndarray, n_colors: int) -> np.ndarray:
    """The documented colour rules: gray replicated for colour models; equal channels kept as one, other
    colour images as BT.601 luma, for gray models."""
    if n_colors == 3 and img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if n_colors == 1 and img.shape[2] == 3:
        if (img[..., 0] == img[..., 1]).all() and (img[..., 0] == img[..., 2]).all():
            return img[..., :1]
        return (0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2])[..., None].astype(np.float32)
    return img


@pytest.mark.parametrize("n_colors", [1, 3])
def test_cached_samples_equal_decoded_samples(tmp_path: Path, n_colors: int) -> None:
    expected = _images(tmp_path / "train")
    files = sorted((tmp_path / "train").iterdir())
    cache = DecodedCache(tmp_path / "cache")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = SyntheticNoiseTrain(files, n_colors, PATCH, AWGN, 24, seed=5)
        cached = SyntheticNoiseTrain(files, n_colors, PATCH, AWGN, 24, seed=5, cache=cache)
    assert "6 of 6 images decoded now, 0 checked" in cache.summary
    for epoch in (1, 2):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(plain)):
            (noisy_a, clean_a), (noisy_b, clean_b) = plain[i], cached[i]
            assert torch.equal(clean_a, clean_b) and torch.equal(noisy_a, noisy_b)
            # the clean patch is the crop of the image decoded by hand, same draws of the sample's generator
            path = files[i % len(files)]
            img = _as_model_input(expected[path.name], n_colors)
            rng = sample_rng(5, epoch, i)
            top, left = int(rng.integers(img.shape[0] - PATCH + 1)), int(rng.integers(img.shape[1] - PATCH + 1))
            patch = dihedral(img[top : top + PATCH, left : left + PATCH], int(rng.integers(8)))
            assert np.array_equal(clean_b.numpy(), patch.transpose(2, 0, 1)), path.name


def test_entries_are_npy_files_beside_nothing_of_the_input(tmp_path: Path) -> None:
    expected = _images(tmp_path / "train")
    source = tmp_path / "train/rgb16.png"
    cache = DecodedCache(tmp_path / "cache")
    assert cache.prepare([source]) == [None]
    entry = cache.entry_path(source)
    assert entry.is_relative_to(tmp_path / "cache") and sorted(
        p.name for p in (tmp_path / "train").iterdir()
    ) == sorted(expected)
    stored = np.load(entry, mmap_mode="r")  # an ordinary .npy: the pixels as stored, 16 bits
    assert stored.dtype == np.uint16 and np.array_equal(stored / np.float32(65535), expected["rgb16.png"])
    assert not list(entry.parent.glob(".*"))  # no temporary left


def test_stale_and_damaged_entries_are_rebuilt(tmp_path: Path) -> None:
    _images(tmp_path / "train")
    source = tmp_path / "train/rgb8.png"
    cache = DecodedCache(tmp_path / "cache")
    cache.prepare([source])
    entry = cache.entry_path(source)
    good = entry.read_bytes()

    def rebuilt() -> bool:
        fresh = DecodedCache(tmp_path / "cache")
        assert fresh.prepare([source]) == [None]
        return "1 of 1 images decoded now" in fresh.summary

    assert not rebuilt()  # intact: checked and reused
    damaged = {
        "truncated": good[: len(good) // 2],
        "one pixel flipped": good[:200] + bytes([good[200] ^ 1]) + good[201:],
        "trailer gone": good[:-16],
        "not an entry": b"garbage",
        "empty": b"",
    }
    for what, data in damaged.items():
        entry.write_bytes(data)
        assert rebuilt(), what
        assert entry.read_bytes() == good, what
    # the source changes: another image, same size on disk is not enough to fool it (mtime differs)
    img = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(source), 255 - img)
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert rebuilt()
    fresh = DecodedCache(tmp_path / "cache")
    fresh.prepare([source])
    assert np.array_equal(fresh.array(source), (255 - img)[..., ::-1])
    # --ext sep_reset decodes again even when the entry is current
    forced = DecodedCache(tmp_path / "cache", rebuild=True)
    forced.prepare([source])
    assert "1 of 1 images decoded now" in forced.summary


def test_undecodable_images_are_left_out_and_named(tmp_path: Path) -> None:
    _images(tmp_path / "train")
    data = (tmp_path / "train/rgb8.png").read_bytes()
    (tmp_path / "train/cut.png").write_bytes(data[: len(data) // 2])  # valid header, truncated pixels
    files = sorted((tmp_path / "train").iterdir())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = SyntheticNoiseTrain(files, 3, PATCH, AWGN, 4, cache=DecodedCache(tmp_path / "cache"))
    assert any("1 of 7 training images are left out" in str(w.message) for w in caught)
    assert len(ds.files) == 6 and "cut.png" in ds.left_out[0]


def test_cache_never_lands_in_the_training_data(tmp_path: Path) -> None:
    _images(tmp_path / "train")
    with pytest.raises(ValueError, match="--cache_dir would write the decoded cache .* inside the input set"):
        DecodedCache(tmp_path / "train/bin").prepare(sorted((tmp_path / "train").iterdir()))
    assert not (tmp_path / "train/bin").exists()


def test_a_full_disk_is_one_clear_error_and_leaves_no_partial_entry(tmp_path: Path) -> None:
    """A real limit: the process may not write files over 100 kB (RLIMIT_FSIZE); an entry needs 141 kB. Entries
    go through the package's one writer (adfnet.fileio): no partial entry, no temporary file, and an entry
    that was there before (of an older, smaller version of the image) stays whole."""
    (tmp_path / "train").mkdir()
    source, cache_dir = tmp_path / "train/big.png", tmp_path / "cache"
    code = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from adfnet.data.cache import DecodedCache\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    DecodedCache(sys.argv[2]).prepare([Path(sys.argv[1])])\n"
        "except ValueError as err:\n"
        "    print(type(err).__name__, err)\n"
    )
    rng = np.random.default_rng(0)
    for previous, left in ((None, "big.png.npy was not written"), ((50, 60), "the previous big.png.npy is intact")):
        entry = None
        if previous is not None:  # an entry of a smaller image, then the image grows: its entry is rebuilt
            cv2.imwrite(str(source), rng.integers(0, 256, (*previous, 3), dtype=np.uint8))
            cache = DecodedCache(cache_dir)
            cache.prepare([source])
            entry = cache.entry_path(source)
            before = entry.read_bytes()
            os.utime(source, ns=(0, 0))  # and a new modification time, whatever the file system's resolution
        cv2.imwrite(str(source), rng.integers(0, 256, (200, 240, 3), dtype=np.uint8))
        out = subprocess.run(
            [sys.executable, "-c", code, str(source), str(cache_dir)],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            check=True,
        ).stdout
        assert re.search(
            r"^DiskFullError big\.png\.npy would exceed the file-size limit of this process \(98 kB, ulimit -f\) on "
            rf"the disk of .*: it needs about 141 kB, .* free on the disk; {re.escape(left)}\. Raise the limit "
            r"\(ulimit -f unlimited\), or put the decoded cache elsewhere with --cache_dir$",
            out.strip(),
        ), out
        files = [p for p in cache_dir.rglob("*") if p.is_file()]  # no partial entry, no temporary
        if entry is None:
            assert not files
        else:
            assert files == [entry] and entry.read_bytes() == before


def test_temporaries_of_killed_runs_are_removed(tmp_path: Path) -> None:
    _images(tmp_path / "train")
    source = tmp_path / "train/gray8.png"
    cache = DecodedCache(tmp_path / "cache")
    folder = cache.entry_path(source).parent
    folder.mkdir(parents=True)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # adfnet.fileio's temporary names: .<name>.tmp<pid of the writer>
        dead, alive = folder / f".gray8.png.npy.tmp{int(ended.stdout)}", folder / f".gray8.png.npy.tmp{running.pid}"
        for tmp in (dead, alive):
            tmp.write_bytes(b"partial")
        cache.prepare([source])
        assert not dead.exists() and alive.exists()  # the live one belongs to a process still writing
    finally:
        running.kill()
        running.wait()


def test_paired_and_raw_sets_give_the_same_samples_cached(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for sub in ("hq", "lq"):
        (tmp_path / "pairs" / sub).mkdir(parents=True)
        for name in ("a.png", "b.png"):
            cv2.imwrite(str(tmp_path / "pairs" / sub / name), rng.integers(0, 256, (24, 28, 3), dtype=np.uint8))
    for sub in ("clean", "noisy"):
        (tmp_path / "raw" / sub).mkdir(parents=True)
        for name in ("a.npy", "b.npy"):
            np.save(tmp_path / "raw" / sub / name, rng.random((22, 27), dtype=np.float32))  # odd width: cropped
    images = _images(tmp_path / "srgb")
    srgb = [tmp_path / "srgb" / name for name in sorted(images)]
    cache_dir = tmp_path / "cache"
    sets = [
        (
            PairedTrain(tmp_path / "pairs", PATCH, seed=2),
            PairedTrain(tmp_path / "pairs", PATCH, seed=2, cache=DecodedCache(cache_dir)),
        ),
        (
            RawPairedTrain(tmp_path / "raw", PATCH, seed=2),
            RawPairedTrain(tmp_path / "raw", PATCH, seed=2, cache=DecodedCache(cache_dir, BAYER_DECODING)),
        ),
        (
            UnprocessedRawTrain(srgb, PATCH, 8, seed=2),
            UnprocessedRawTrain(srgb, PATCH, 8, seed=2, cache=DecodedCache(cache_dir)),
        ),
    ]
    for plain, cached in sets:
        for i in range(len(plain)):
            for a, b in zip(plain[i], cached[i], strict=True):
                assert torch.equal(a, b), type(plain).__name__
    with pytest.raises(ValueError, match="BAYER_DECODING"):
        RawPairedTrain(tmp_path / "raw", PATCH, cache=DecodedCache(cache_dir))


def test_ext_flag_is_the_official_spelling_of_cache() -> None:
    assert parse_options(["--ext", "sep"]).cache and parse_options(["--cache"]).cache
    reset = parse_options(["--ext", "sep_reset"])
    assert reset.cache and reset.ext == "sep_reset"
    assert not parse_options(["--ext", "img"]).cache and not parse_options([]).cache
    with pytest.raises(SystemExit) as exit_info:
        parse_options(["--ext", "img", "--cache"])
    assert exit_info.value.code == 2
    # the same rules for a config made without the flags (an experiment, a recipe)
    assert TrainConfig(ext="sep").cache and not TrainConfig().cache
    for bad, message in (
        ({"ext": "npy"}, "--ext must be one of img, sep, sep_reset"),
        ({"cache_dir": "elsewhere"}, "--cache_dir names the folder of the decoded cache: it needs --cache"),
    ):
        with pytest.raises(ValueError, match=message):
            TrainConfig(**bad)


def test_training_with_the_cache_sees_the_same_batches(tmp_path: Path, one_thread: None) -> None:
    losses = {}
    for name, extra in {"plain": (), "cached": ("--ext", "sep", "--cache_dir", str(tmp_path / "cache"))}.items():
        train.main(toy_run(tmp_path, "--epochs", "1", *extra, save=name))
        state = torch.load(tmp_path / name / "checkpoint_latest.pt", map_location="cpu", weights_only=True)
        losses[name] = state["history"][0]["loss"]
    assert losses["plain"] == losses["cached"]
    assert "40 of 40 images decoded now" in (tmp_path / "cached/log.txt").read_text()
