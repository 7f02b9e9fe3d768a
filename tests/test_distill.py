"""Distillation: a teacher's output as the training target (adfnet.engine.distill, adfnet.engine.teacher_cache).

The teacher's targets are checked against outputs computed here directly from the networks (plain, the eight
dihedral transforms by hand, the CFA-aware transforms by hand); the cache against its manifest; the trainer
against the sets it trains on.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from adfnet.checkpoint import weights_with_architecture
from adfnet.data.io import read_image, save_image
from adfnet.data.raw import cfa_forward, cfa_inverse, pack
from adfnet.engine.config import TrainConfig
from adfnet.engine.distill import MixedSet, Teacher, TeacherTargets
from adfnet.engine.teacher_cache import CachedTargets, CacheError, input_files, read_targets, write_targets
from adfnet.engine.trainer import Trainer
from adfnet.errors import UserError
from adfnet.inference import denoise
from adfnet.models import build_model
from conftest import SET12, TRAIN_GRAY

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"depth": 3, "channels": 8}


def _teacher_file(path: Path, seed: int, n_colors: int = 1) -> Path:
    torch.manual_seed(seed)
    torch.save(weights_with_architecture(build_model("dncnn", n_colors, **TINY)), path)
    return path


def _net(path: Path) -> torch.nn.Module:
    state = torch.load(path)
    net = build_model("dncnn", state["layers.0.0.weight"].shape[1], **TINY)
    net.load_state_dict(state)
    return net.eval()


def _same_place(noisy: np.ndarray, target: np.ndarray, source: np.ndarray, whole: np.ndarray) -> bool:
    """Whether ``target`` is the window of ``whole`` that ``noisy`` is of ``source``, under one dihedral transform
    (the patch is found by exhaustive search)."""
    size = noisy.shape[0]
    for k in range(4):
        for flip in (False, True):
            s, w = (np.rot90(np.flip(x, 1) if flip else x, k) for x in (source, whole))
            for r in range(s.shape[0] - size + 1):
                for c in range(s.shape[1] - size + 1):
                    if np.array_equal(s[r : r + size, c : c + size], noisy):
                        return np.allclose(w[r : r + size, c : c + size], target, rtol=0, atol=1e-7)
    return False


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("distill")
    out = {f"t{i}": _teacher_file(root / f"t{i}.pt", i) for i in range(2)}
    out["raw_teacher"] = _teacher_file(root / "raw.pt", 5, n_colors=4)
    for name in ("01", "02", "03"):
        save_image(root / "noisy" / f"{name}.png", read_image(SET12 / f"{name}.png", 1)[:40, :48])
    save_image(root / "val" / "01.png", read_image(SET12 / "04.png", 1)[:32, :32])
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / "raw" / "noisy").mkdir(parents=True, exist_ok=True)
        np.save(root / "raw" / "noisy" / f"{name}.npy", rng.random((24, 32), dtype=np.float32))
    out["root"] = root
    return out


def _manual_mean(nets: list[torch.nn.Module], x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack([net(x).clamp(0, 1) for net in nets]).mean(0)


def test_teacher_averages_its_networks_frozen(files: dict[str, Path]) -> None:
    teacher = Teacher([files["t0"], files["t1"]], n_colors=1)
    x = torch.rand(2, 1, 24, 32, generator=torch.Generator().manual_seed(1))
    expected = _manual_mean([_net(files["t0"]), _net(files["t1"])], x)
    y = teacher(x)
    assert not y.requires_grad
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-6)
    assert all(not p.requires_grad for m in teacher.models for p in m.parameters())
    assert all(not m.training for m in teacher.models)
    digest = hashlib.sha256(files["t0"].read_bytes()).hexdigest()
    assert teacher.records[0]["sha256"] == digest and teacher.records[0]["model"]["model"] == "dncnn"


def test_teacher_x8_is_the_mean_of_the_eight_dihedral_runs(files: dict[str, Path]) -> None:
    net = _net(files["t0"])
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    runs = []
    with torch.no_grad():
        for k in range(4):
            for flip in (False, True):
                t = torch.rot90(x, k, (2, 3))
                t = t.flip(3) if flip else t
                y = net(t)
                y = y.flip(3) if flip else y
                runs.append(torch.rot90(y, -k, (2, 3)))
    expected = torch.stack(runs).mean(0).clamp(0, 1)
    torch.testing.assert_close(Teacher([files["t0"]], 1, "x8")(x), expected, rtol=0, atol=1e-6)


def test_teacher_cfa_ensemble_keeps_every_pass_on_the_pattern(files: dict[str, Path]) -> None:
    net = _net(files["raw_teacher"])
    x = torch.rand(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    # each pass as the one inference entry runs it (padded to its multiple, clamped), between the CFA transforms
    runs = [cfa_inverse(denoise(net, cfa_forward(x, code)), code) for code in range(8)]
    expected = torch.stack(runs).mean(0)
    y = Teacher([files["raw_teacher"]], 4, "cfa")(x)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(y, Teacher([files["raw_teacher"]], 4)(x), atol=1e-4)  # the ensemble does something


def test_teacher_refuses_another_layout(files: dict[str, Path]) -> None:
    with pytest.raises(UserError, match=r"raw\.pt is a dncnn for packed raw inputs \(n_colors=4\), but this run's "
                       r"inputs are gray \(n_colors=1\): use a teacher trained on the same layout"):  # fmt: skip
        Teacher([files["raw_teacher"]], n_colors=1)
    with pytest.raises(ValueError, match="cfa is the CFA-aware ensemble of packed raw"):
        Teacher([files["t0"]], 1, "cfa")


def test_online_targets_and_mixing(files: dict[str, Path]) -> None:
    class Pairs(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            g = torch.Generator().manual_seed(i)
            return torch.rand(1, 16, 16, generator=g), torch.full((1, 16, 16), -1.0)

    teacher = Teacher([files["t0"]], 1)
    online = TeacherTargets(Pairs(), teacher)
    noisy, target = online[1]
    torch.testing.assert_close(target, _manual_mean([_net(files["t0"])], noisy[None])[0], rtol=0, atol=1e-6)
    mixed = MixedSet(online, Pairs(), 0.25, 400, seed=3)
    from_teacher = [bool(mixed[i][1].min() >= 0) for i in range(400)]
    assert 0.18 < np.mean(from_teacher) < 0.32  # a quarter of the samples are teacher pairs
    mixed.set_epoch(2)
    assert [bool(mixed[i][1].min() >= 0) for i in range(400)] != from_teacher  # fresh draws every epoch


def test_cache_written_with_its_manifest_and_checked(files: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "in"
    for f in sorted((files["root"] / "noisy").glob("*.png")):
        save_image(src / f.name, read_image(f, 1))
    inputs = sorted(p.resolve() for p in src.glob("*.png"))
    teacher = Teacher([files["t0"], files["t1"]], 1)
    cache = tmp_path / "cache"
    pairs = write_targets(cache, inputs, teacher)
    manifest = json.loads((cache / "manifest.json").read_text())
    assert (manifest["version"], manifest["layout"], manifest["ensemble"]) == (1, "gray", "none")
    assert [t["sha256"] for t in manifest["teachers"]] == [
        hashlib.sha256(files[k].read_bytes()).hexdigest() for k in ("t0", "t1")
    ]
    first = manifest["inputs"][0]
    assert (first["path"], first["size"]) == (str(inputs[0]), inputs[0].stat().st_size)
    assert first["sha256"] == hashlib.sha256(inputs[0].read_bytes()).hexdigest()
    # each target is the teacher's output on the whole input
    x = torch.from_numpy(read_image(inputs[1], 1)).permute(2, 0, 1)[None]
    expected = _manual_mean([_net(files["t0"]), _net(files["t1"])], x)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(np.load(pairs[1][1]), expected, rtol=0, atol=1e-6)
    assert read_targets(cache, "gray", teacher, inputs) == pairs

    os.utime(inputs[0], ns=(1, 1))  # a copy: another mtime, the same bytes
    assert read_targets(cache, "gray", teacher, inputs) == pairs
    with pytest.raises(CacheError, match=r"made by other teacher weights than --teacher.*write new targets"):
        read_targets(cache, "gray", Teacher([files["t0"]], 1), inputs)
    with pytest.raises(CacheError, match=r"made with --teacher_ensemble none, this run asks for x8"):
        read_targets(cache, "gray", Teacher([files["t0"], files["t1"]], 1, "x8"), inputs)
    with pytest.raises(CacheError, match=r"made from other inputs \(not in --teacher_inputs: .*03\.png\)"):
        read_targets(cache, "gray", teacher, inputs[:2])
    with pytest.raises(CacheError, match=r"are for gray inputs, the run's are RGB"):
        read_targets(cache, "RGB")
    data = bytearray(inputs[2].read_bytes())
    data[-20] ^= 1
    inputs[2].write_bytes(bytes(data))
    with pytest.raises(
        CacheError,
        match=r"teacher targets were made from a different dataset version than the manifest says: \S*03\.png "
        r"changed \(its contents differ, same size\)",
    ):
        read_targets(cache, "gray")
    inputs[2].write_bytes(bytes(data) + b"x")
    with pytest.raises(CacheError, match=r"03\.png changed \(\d+ bytes then, \d+ now\)"):
        read_targets(cache, "gray")
    with pytest.raises(CacheError, match=r"no teacher targets there \(manifest\.json missing\)"):
        read_targets(tmp_path / "in", "gray")


def _config(files: dict[str, Path], tmp: Path, **extra: object) -> TrainConfig:
    common = {
        "n_colors": 1,
        "model": "dncnn",
        "model_options": TINY,
        "dir_data": str(TRAIN_GRAY),
        "data_val": str(files["root"] / "val"),
        "test_every": 2,
        "patch_size": 16,
        "batch_size": 2,
        "cpu": True,
        "n_threads": 0,
        "dir_experiment": str(tmp),
        "epochs": 1,
    }
    return TrainConfig(**{**common, **extra})


def test_trainer_on_cached_teacher_targets(files: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    config = _config(
        files, tmp_path, save="kd", teacher=[str(files["t0"])], teacher_inputs=[str(files["root"] / "noisy")],
        teacher_cache=str(cache),
    )  # fmt: skip
    trainer = Trainer(config)
    best = trainer.fit()
    assert np.isfinite(best["psnr"]) and (tmp_path / "kd/model/model_latest.pt").is_file()
    assert "teacher targets: 3 pair(s) from" in (tmp_path / "kd/log.txt").read_text()
    pairs = read_targets(cache, "gray")
    assert len(trainer.train_set) == 2 * 2  # --test_every x --batch_size samples per epoch
    for index in (0, 1):  # the target patch is the teacher's whole-image output at the noisy patch's place
        noisy, target = trainer.train_set[index]
        source, whole = read_image(pairs[index][0], 1)[..., 0], np.load(pairs[index][1])[..., 0]
        assert _same_place(noisy[0].numpy(), target[0].numpy(), source, whole)
    # a resumed run cannot change the teacher
    other = _config(files, tmp_path, save="kd", resume=-1, epochs=2, teacher_cache=str(cache), teacher_share=0.5)
    with pytest.raises(ValueError, match=r"--teacher_share: the run used 1\.0, now 0\.5 \(the training recipe\)"):
        Trainer(other)


def test_trainer_online_teacher_and_mixed(files: dict[str, Path], tmp_path: Path) -> None:
    config = _config(files, tmp_path, save="online", teacher=[str(files["t0"]), str(files["t1"])], teacher_share=0.5)
    trainer = Trainer(config)
    assert np.isfinite(trainer.fit()["psnr"])
    assert isinstance(trainer.train_set, MixedSet) and isinstance(trainer.train_set.parts[0], TeacherTargets)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"teacher_ensemble": "x8"}, r"--teacher_ensemble x8 needs --teacher"),
        (
            {"teacher": ["t.pt"], "teacher_ensemble": "cfa"},
            r"cfa is the CFA-aware ensemble of packed raw: it needs --raw",
        ),
        ({"teacher": ["t.pt"], "teacher_ensemble": "x4"}, r"--teacher_ensemble must be one of none, x8, cfa"),
        ({"teacher": ["t.pt"], "teacher_inputs": ["n"]}, r"--teacher_inputs are fixed files .*give --teacher_cache"),
        ({"teacher": ["t.pt"], "teacher_share": 0}, r"--teacher_share must be in \(0, 1\]"),
        ({"teacher_share": 0.5}, r"--teacher_share mixes teacher pairs .*needs --teacher or --teacher_cache"),
    ],
)
def test_config_refuses_meaningless_combinations(extra: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**extra)


def test_cache_folder_without_targets_needs_inputs(files: dict[str, Path], tmp_path: Path) -> None:
    config = _config(files, tmp_path, save="x", teacher=[str(files["t0"])], teacher_cache=str(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"holds no targets yet: give --teacher_inputs"):
        Trainer(config).fit()


def test_raw_cache_is_packed_in_the_run_s_pattern(files: dict[str, Path], tmp_path: Path) -> None:
    inputs = input_files([files["root"] / "raw"], raw=True)  # a paired-set root: its noisy/ folder
    assert [p.name for p in inputs] == ["a.npy", "b.npy"]
    teacher = Teacher([files["raw_teacher"]], 4, "cfa")
    pairs = write_targets(tmp_path / "c", inputs, teacher, "GRBG")
    packed = pack(torch.from_numpy(np.load(inputs[0]))[None, None], "GRBG")
    np.testing.assert_allclose(np.load(pairs[0][1]), teacher(packed)[0].numpy(), rtol=0, atol=1e-6)
    with pytest.raises(CacheError, match=r"are for packed raw GRBG inputs, the run's are packed raw RGGB"):
        read_targets(tmp_path / "c", "packed raw RGGB")
    noisy, target = CachedTargets(pairs, 4, "GRBG", 8, length=4, seed=1)[0]
    assert noisy.shape == target.shape == (4, 4, 4)
