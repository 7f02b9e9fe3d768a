"""MWRCANet in the project's tools: one checkpoint in both raw layouts, SIDD's raw blocks under the authors'
protocol (one Bayer plane, their geometric x8) and ours (packed, CFA-aware x8) with the published numbers beside,
adfnet-test on sRGB sets."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from test_raw_pipeline import read_scores, write_sidd_raw

from adfnet.checkpoint import load_checkpoint, weights_with_architecture
from adfnet.cli import real
from adfnet.cli import test as test_cli
from adfnet.data.raw import pack, unpack
from adfnet.engine.distill import Teacher
from adfnet.inference import denoise
from adfnet.matio import SIDD_RAW_SUBMISSION_KEY, load_sidd_raw_blocks
from adfnet.models import build_model
from adfnet.models.mwrcanet import authors_self_ensemble

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"filters_level1": 16, "filters_level2": 16, "filters_level3": 16, "n_rb": 1}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mwrcanet_weights")
    torch.manual_seed(0)
    packed = build_model("mwrcanet", 4, **TINY)  # as the raw trainer writes it (--raw: packed)
    torch.save(weights_with_architecture(packed), root / "packed.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in packed.state_dict().items()}}, root / "authors.pt")
    torch.save(weights_with_architecture(build_model("mwrcanet", 3, **TINY)), root / "rgb.pt")
    torch.save(weights_with_architecture(build_model("mwcnn", 1, filters_level1=16)), root / "gray_mwcnn.pt")
    return {p.stem: p for p in root.iterdir()}


def test_one_checkpoint_in_both_raw_layouts(weights: dict[str, Path]) -> None:
    plane, spec = load_checkpoint(weights["packed"], n_colors=1)  # recorded packed, built as one plane
    packed, _ = load_checkpoint(weights["packed"])
    assert (spec.name, spec.n_colors, spec.options["n_rb"]) == ("mwrcanet", 1, 1)
    x = torch.rand(1, 1, 32, 48, generator=torch.Generator().manual_seed(1))  # an RGGB mosaic
    with torch.no_grad():
        torch.testing.assert_close(plane(x), unpack(packed(pack(x))), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"contradicts the checkpoint's architecture record \(n_colors=3\)"):
        load_checkpoint(weights["rgb"], n_colors=1)  # sRGB weights are another network
    with pytest.raises(ValueError, match=r"contradicts the checkpoint's architecture record \(n_colors=1\)"):
        load_checkpoint(weights["gray_mwcnn"], n_colors=4)  # MWCNN's one plane is gray, not a mosaic


def test_the_plane_protocol_ensemble_is_the_authors(weights: dict[str, Path]) -> None:
    model, _ = load_checkpoint(weights["packed"], n_colors=1)
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(denoise(model, x, ensemble=True), authors_self_ensemble(model, x))


def _val(tmp: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[np.ndarray, np.ndarray, str]:
    out = tmp / "_".join(extra).replace("-", "") or "plain"
    argv = ["sidd-raw-val", "--input_dir", str(tmp / "sidd"), "--cpu", "--result_dir", str(out), *extra]
    assert real.main(argv) == 0, capsys.readouterr()
    blocks = load_sidd_raw_blocks(out / "mat/SubmitRaw.mat", SIDD_RAW_SUBMISSION_KEY)
    return read_scores(out / "results.csv"), blocks, capsys.readouterr().out


def test_sidd_raw_val_authors_protocol_and_ours(weights: dict[str, Path], tmp_path: Path, capsys) -> None:
    noisy, _ = write_sidd_raw(tmp_path / "sidd")
    authors = ("--model", "mwrcanet", "--weights", str(weights["authors"]))  # their {'state_dict': module.} layout
    scores, blocks, printed = _val(tmp_path, capsys, *authors)
    assert re.search(r"6 raw blocks, mwrcanet, one Bayer plane as stored, plain: PSNR [\d.]+ dB", printed), printed
    assert "52.35 dB without, 52.38 dB with its x8 ensemble; ours - published (without): " in printed
    assert "(the same protocol)" in printed

    model, _ = load_checkpoint(weights["packed"], n_colors=1)
    with torch.no_grad():
        x8 = authors_self_ensemble(model, torch.from_numpy(noisy[1, 2])[None, None])[0, 0].numpy()
    scores_x8, blocks_x8, printed = _val(tmp_path, capsys, *authors, "--ensemble")
    np.testing.assert_allclose(blocks_x8[1, 2], x8, rtol=0, atol=1e-6)  # each block: the authors' x8
    assert "one Bayer plane as stored, the authors' geometric x8" in printed and "ours - published (x8)" in printed

    ours = ("--model", "mwrcanet", "--weights", str(weights["packed"]), "--raw_layout", "packed")
    packed_scores, packed_blocks, printed = _val(tmp_path, capsys, *ours)
    np.testing.assert_allclose(packed_blocks, blocks, rtol=0, atol=1e-6)  # RGGB: the same network either way
    _, _, printed = _val(tmp_path, capsys, *ours, "--ensemble")
    assert "packed in RGGB, CFA-aware x8" in printed
    assert "not like-for-like: theirs is the geometric x8 on one plane (--raw_layout plane)" in printed
    assert all(math.isfinite(s) for s in (*scores, *scores_x8, *packed_scores))

    bench = tmp_path / "bench"
    write_sidd_raw(bench, ("Benchmark",))
    argv = ["sidd-raw-benchmark", "--input_dir", str(bench), "--cpu", "--result_dir", str(bench / "out"), *authors]
    assert real.main(argv) == 0
    assert "mwrcanet, one Bayer plane as stored, plain" in capsys.readouterr().out


def test_adfnet_test_runs_mwrcanet_on_srgb(weights: dict[str, Path], tmp_path: Path, capsys) -> None:
    argv = ["--model", "mwrcanet", "--weights", str(weights["rgb"]), "--cpu", "--limit", "1", "--test_noiseL", "25"]
    assert test_cli.main([*argv, "--result_dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"Summary \(mwrcanet, options \{'filters_level1': 16, .*'n_rb': 1\}, n_colors 3", printed)
    assert (tmp_path / "McMaster/sigma25/results.csv").is_file()


def test_a_one_plane_teacher_serves_a_packed_raw_run(weights: dict[str, Path]) -> None:
    teacher = Teacher([weights["authors"]], n_colors=4)  # the authors' one-plane layout, unrecorded
    packed, _ = load_checkpoint(weights["packed"])
    x = torch.rand(1, 4, 8, 12, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(teacher(x), denoise(packed, x), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"is a mwrcanet for packed raw inputs \(n_colors=4\), but this run's inputs "
                       r"are gray"):  # fmt: skip
        Teacher([weights["packed"]], n_colors=1)  # a gray run's images are not mosaics
