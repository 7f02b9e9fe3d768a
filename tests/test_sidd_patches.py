"""SIDD patch generation: pairing, seeding, hq/ + lq/ output, never deleting without --overwrite."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from adfnet.data.datasets import PairedTrain, PairedVal
from adfnet.data.io import list_images, read_image
from adfnet.data.sidd import export_validation_blocks, find_pairs, generate_patches
from conftest import SIDD_SAMPLES as SAMPLES


def sidd_medium_like(samples: list[str], dst: Path) -> Path:
    """Lay bundled GT/N.png + NOISY/N.png out as SIDD-Medium scene folders (<scene>/<scene>_GT_SRGB_010.PNG)."""
    for n in samples:
        scene = f"{int(n):04d}_001_S6_00100_00060_3200_L"
        (dst / scene).mkdir(parents=True)
        shutil.copy(SAMPLES / "GT" / f"{n}.png", dst / scene / f"{scene}_GT_SRGB_010.PNG")
        shutil.copy(SAMPLES / "NOISY" / f"{n}.png", dst / scene / f"{scene}_NOISY_SRGB_010.PNG")
    return dst


def test_pairs_in_both_layouts(tmp_path: Path) -> None:
    pairs = find_pairs(SAMPLES)
    assert len(pairs) == 12 and all(c.name == n.name and c.parent.name == "GT" for c, n in pairs)
    assert [c.name for c, _ in pairs[:3]] == ["0.png", "1.png", "2.png"]  # natural order
    src = sidd_medium_like(["6", "7", "11"], tmp_path / "Data")
    pairs = find_pairs(src)
    assert len(pairs) == 3 and all("GT" in c.name and "NOISY" in n.name and c.parent == n.parent for c, n in pairs)


def test_generate_seeded_and_safe(tmp_path: Path) -> None:
    src = sidd_medium_like(["6", "7", "11"], tmp_path / "Data")
    with pytest.warns(UserWarning, match="smaller than the 250-px patch"):
        count = generate_patches(src, tmp_path / "a", ps=250, num_patches=2, seed=5)
    assert count == 4  # sample 11 is 241 px: skipped
    count = generate_patches(src, tmp_path / "b", ps=64, num_patches=3, seed=5)
    assert count == 9
    hq, lq = list_images(tmp_path / "b/hq"), list_images(tmp_path / "b/lq")
    assert [p.name for p in hq] == [p.name for p in lq] and len(hq) == 9
    # a patch is an aligned crop: the clean patch occurs in the clean image at the noisy patch's position
    clean_img = read_image(next(src.glob("0006*/*GT*")), 3)
    noisy_img = read_image(next(src.glob("0006*/*NOISY*")), 3)
    patch_c, patch_n = read_image(hq[0], 3), read_image(lq[0], 3)
    hits = [
        (i, j)
        for i in range(256 - 63)
        for j in range(256 - 63)
        if np.array_equal(clean_img[i : i + 64, j : j + 64], patch_c)
    ]
    assert hits and any(np.array_equal(noisy_img[i : i + 64, j : j + 64], patch_n) for i, j in hits)
    # same seed -> same patches, whatever the number of processes; another seed -> other patches
    generate_patches(src, tmp_path / "c", ps=64, num_patches=3, num_cores=2, seed=5)
    generate_patches(src, tmp_path / "d", ps=64, num_patches=3, seed=6)
    for name in [p.name for p in hq]:
        assert (tmp_path / "c/lq" / name).read_bytes() == (tmp_path / "b/lq" / name).read_bytes()
    assert any((tmp_path / "d/hq" / p.name).read_bytes() != p.read_bytes() for p in hq)
    # the loader reads the result directly
    assert len(PairedTrain(tmp_path / "b", patch_size=32)) == 9
    # an existing target is kept unless --overwrite
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate_patches(src, tmp_path / "b", ps=64, num_patches=1)
    (tmp_path / "b/keep.txt").write_text("mine")
    assert generate_patches(src, tmp_path / "b", ps=64, num_patches=1, overwrite=True) == 3
    assert len(list_images(tmp_path / "b/hq")) == 3 and (tmp_path / "b/keep.txt").exists()


def test_validation_blocks_to_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)
    noisy = rng.integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)
    scipy.io.savemat(tmp_path / "ValidationGtBlocksSrgb.mat", {"ValidationGtBlocksSrgb": clean})
    scipy.io.savemat(tmp_path / "ValidationNoisyBlocksSrgb.mat", {"ValidationNoisyBlocksSrgb": noisy})
    assert export_validation_blocks(tmp_path, tmp_path / "val") == 6
    val = PairedVal(tmp_path / "val")
    lq, hq, name = val[4]  # sorted: 0001_01 .. 0002_03 -> image 2, block 2
    assert name == "0002_02"
    assert np.array_equal(np.rint(hq.permute(1, 2, 0).numpy() * 255).astype(np.uint8), clean[1, 1])
    assert np.array_equal(np.rint(lq.permute(1, 2, 0).numpy() * 255).astype(np.uint8), noisy[1, 1])
    with pytest.raises(FileExistsError):
        export_validation_blocks(tmp_path, tmp_path / "val")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from adfnet.cli import patches as cli

    argv = [
        "--src_dir",
        str(SAMPLES),
        "--tar_dir",
        str(tmp_path / "p"),
        "--ps",
        "128",
        "--num_patches",
        "1",
        "--num_cores",
        "1",
        "--seed",
        "0",
    ]
    cli.main(argv)
    assert "wrote 12 patch pairs" in capsys.readouterr().out  # one per sample (all are >= 128 px)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2 and "--overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--src_dir", str(tmp_path / "none"), "--tar_dir", str(tmp_path / "q")])
    assert "SIDD_Medium_Srgb" in capsys.readouterr().err
