"""Training/validation datasets: folder layouts, crops, the 8 dihedral transforms, noise, pairing."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adfnet.data.datasets import (
    DATASETS_ROOT,
    PairedTrain,
    PairedVal,
    SyntheticNoiseTrain,
    SyntheticNoiseVal,
    dihedral,
    probe_image,
    training_files,
    validation_files,
)
from adfnet.data.io import ImageReadError, image_to_tensor, list_images, read_image, save_image
from adfnet.data.noise import add_awgn, build_noise
from adfnet.engine.options import parse_options
from conftest import ROOT

GRAY = ROOT / "datasets/trainsets/Train400_sample"
RGB = ROOT / "datasets/trainsets/CBSD432_sample"


def write(path: Path, h: int, w: int, c: int = 3, seed: int = 0) -> Path:
    save_image(path, np.random.default_rng(seed).random((h, w, c), dtype=np.float32))
    return path


def test_dihedral_gives_eight_distinct_transforms() -> None:
    img = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
    outs = {dihedral(img, code).tobytes() + bytes(dihedral(img, code).shape) for code in range(8)}
    assert len(outs) == 8


def test_training_files_layouts(tmp_path: Path) -> None:
    # a folder of images with arbitrary names and extensions
    assert len(training_files("DIV2K", GRAY)) == 40
    # <dir_data>/DIV2K/DIV2K_train_HR
    write(tmp_path / "DIV2K/DIV2K_train_HR/a.png", 20, 20)
    write(tmp_path / "DIV2K/DIV2K_train_HR/b.jpg", 20, 20)
    assert [p.name for p in training_files("DIV2K", tmp_path)] == ["a.png", "b.jpg"]
    # MIX: several folders, missing ones are warned about
    write(tmp_path / "MIX/WED/x.bmp", 20, 20)
    write(tmp_path / "MIX/BSD400/y.png", 20, 20, c=1)
    with pytest.warns(UserWarning, match="DIV2K, Flickr2K"):
        files = training_files("MIX", tmp_path)
    assert sorted(p.name for p in files) == ["x.bmp", "y.png"]


def test_missing_data_says_what_to_download(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="DIV2K_train_HR.zip"):
        training_files("DIV2K", tmp_path)
    with pytest.raises(FileNotFoundError, match="WED"):
        training_files("MIX", tmp_path)
    with pytest.raises(FileNotFoundError, match="data_val"):
        validation_files("NoSuchSet")
    assert len(validation_files("Set12", n_val=3, root=ROOT / "datasets")) == 3


def test_set_names_and_default_data_root_do_not_depend_on_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert DATASETS_ROOT == ROOT / "datasets"
    assert validation_files("Set12") == list_images(ROOT / "datasets/testsets/Set12")
    assert Path(parse_options([]).dir_data) == ROOT / "datasets"
    # explicit paths stay relative to the current folder, and a folder there wins over a set name
    write(tmp_path / "mine/a.png", 8, 8)
    write(tmp_path / "Set12/b.png", 8, 8)
    assert validation_files("mine") == [Path("mine/a.png")]
    assert validation_files("Set12") == [Path("Set12/b.png")]
    assert training_files("DIV2K", "mine") == [Path("mine/a.png")]


def test_small_images_skipped_or_error(tmp_path: Path) -> None:
    big, small = write(tmp_path / "big.png", 40, 48), write(tmp_path / "small.png", 40, 20)
    with pytest.warns(UserWarning, match="1 of 2 training images"):
        ds = SyntheticNoiseTrain([big, small], 3, 32, build_noise("awgn", [25]), length=4)
    assert ds.files == [big]
    with pytest.raises(ValueError, match="smaller than --patch_size 64"):
        SyntheticNoiseTrain([big, small], 3, 64, build_noise("awgn", [25]), length=4)
    gray = write(tmp_path / "gray.png", 40, 40, c=1)
    with pytest.warns(UserWarning, match="1 of 2 training images are gray"):
        ds = SyntheticNoiseTrain([big, gray], 3, 32, build_noise("awgn", [25]), length=4)
    assert ds[1][1].shape == (3, 32, 32)


def test_header_probe_agrees_with_read_image(tmp_path: Path) -> None:
    """The cheap probe and the decoder give the same size and the same gray/colour answer for every kind
    of file (the old check missed big-endian 16-bit gray, as microscopy/scanner TIFFs often are)."""
    rng = np.random.default_rng(0)
    gray8 = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    colour = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90": both must report the stored 20 x 30, not the displayed 30 x 20
    images = {
        "l.png": Image.fromarray(gray8),
        "la.png": Image.fromarray(gray8).convert("LA"),
        "bits.png": Image.fromarray(gray8).convert("1"),
        "be16.tif": Image.frombytes("I;16B", (30, 20), (gray8.astype(">u2") * 257).tobytes()),
        "rgb.png": Image.fromarray(colour),
        "rgba.png": Image.fromarray(colour).convert("RGBA"),
        "palette.png": Image.fromarray(colour).convert("P"),
        "cmyk.jpg": Image.fromarray(colour).convert("CMYK"),
    }
    for name, im in images.items():
        im.save(tmp_path / name)
    Image.fromarray(colour).save(tmp_path / "rotated.jpg", exif=exif)
    for path in sorted(tmp_path.iterdir()):
        header = probe_image(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gray replicated, alpha dropped, 16 bits scaled: all expected here
            img = read_image(path, 3)
        assert (header.height, header.width) == img.shape[:2] == (20, 30), path.name
        same = np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])
        assert header.gray == same, path.name
    with pytest.warns(UserWarning, match="4 of 9 training images are gray"):
        SyntheticNoiseTrain(sorted(tmp_path.iterdir()), 3, 16, build_noise("awgn", [25]), length=4)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="broken.png"):
        probe_image(tmp_path / "broken.png")


def test_synthetic_train_samples() -> None:
    files = list_images(RGB)[:4]
    awgn50 = build_noise("awgn", [50])
    ds = SyntheticNoiseTrain(files, n_colors=1, patch_size=32, noise=awgn50, length=16, seed=3)  # RGB -> gray
    noisy, clean = ds[5]
    assert noisy.shape == clean.shape == (1, 32, 32) and noisy.dtype == torch.float32
    assert clean.min() >= 0 and clean.max() <= 1
    assert noisy.min() < 0 or noisy.max() > 1  # unclipped noise
    assert float((noisy - clean).std()) == pytest.approx(50 / 255, rel=0.2)
    again = ds[5]
    assert torch.equal(again[0], noisy) and torch.equal(again[1], clean)  # reproducible per (seed, epoch, index)
    ds.set_epoch(2)
    assert not torch.equal(ds[5][0], noisy)  # fresh crop and noise every epoch
    # the crop is a dihedral transform of a window of the (gray-converted) image
    ds.set_epoch(1)
    full = read_image(files[5 % 4], 1)[..., 0]
    patch = clean[0].numpy()
    candidates = [patch, patch.T]
    candidates += [c[::-1] for c in candidates] + [c[:, ::-1] for c in candidates] + [c[::-1, ::-1] for c in candidates]
    h, w = full.shape
    found = any(
        np.array_equal(full[i : i + 32, j : j + 32], c)
        for c in candidates
        for i in range(h - 31)
        for j in range(w - 31)
        if full[i, j] == c[0, 0]
    )
    assert found


def test_synthetic_val_uses_fixed_seed() -> None:
    files = validation_files(str(ROOT / "datasets/testsets/Set12"), n_val=2)
    ds = SyntheticNoiseVal(files, 1, noise=build_noise("awgn", [25]), seed=1)
    noisy, clean, name = ds[1]
    assert name == "02"
    expected = add_awgn(image_to_tensor(read_image(files[1], 1)), 25, seed=1)[0]
    assert torch.equal(noisy, expected) and torch.equal(ds[1][0], noisy)


def test_paired_datasets_stay_aligned(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(3):
        clean = rng.integers(0, 200, (40, 56, 3)).astype(np.uint8)
        save_image(tmp_path / "hq" / f"{i}.png", clean)
        save_image(tmp_path / "lq" / f"{i}.png", clean + 50)  # noisy = clean + 50/255 exactly
    train = PairedTrain(tmp_path, patch_size=16, seed=0)
    for k in range(6):
        train.set_epoch(k)
        noisy, clean = train[k % 3]
        assert noisy.shape == clean.shape == (3, 16, 16)
        assert torch.allclose(noisy - clean, torch.full_like(clean, 50 / 255), atol=1e-6)
    noisy, clean, name = PairedVal(tmp_path)[2]
    assert noisy.shape == (3, 40, 56) and name == "2"
    (tmp_path / "lq" / "2.png").rename(tmp_path / "lq" / "9.png")
    with pytest.raises(ValueError, match="different file names"):
        PairedVal(tmp_path)
    with pytest.raises(FileNotFoundError, match="hq/"):
        PairedVal(tmp_path / "nothing")
