"""Every user mistake gets a clear message, never a traceback, and never costs an input.

One table of bad inputs across test.py, train.py, the real-noise tools (``adfnet-real <tool>``) and the
Python API. Each row is run as a user would (command lines in-process through their ``main(argv)``, a few
as real processes) and checked for:
- the exit code (or, for the API, the exception type);
- no traceback;
- a message naming the problem and what to do (a regex per row);
- the good inputs of the same run still processed (``produced``: files the run must have written);
- the input tree unchanged: a SHA-256 of every file (contents are rehashed whenever a file's size,
  mtime or inode changed, so 300 MB of weights are read once) and the list of files, before and after.
  Rows that resume a run may append to its ``log.txt``/``config.txt`` and TensorBoard folder
  (``run_logs``); its checkpoints and weights are still compared.

The world (weights, sets, a finished toy run, real-noise folders) is written once per module under
``inputs/``; every row writes its outputs under its own ``out/`` folder.
"""

from __future__ import annotations

import hashlib
import re
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io as sio
import torch
from torch import nn

import dcn
from adfnet import build_model, load_weights
from adfnet.checkpoint import weights_with_architecture
from adfnet.cli import denoise as denoise_cli
from adfnet.cli import export as export_cli
from adfnet.cli import real as real_cli
from adfnet.cli import test as test_cli
from adfnet.cli import train as train_cli
from adfnet.data import datasets
from adfnet.engine.distill import Teacher
from adfnet.engine.teacher_cache import input_files, write_targets
from adfnet.engine.trainer import Trainer
from adfnet.evaluation import synthetic
from adfnet.inference import denoise
from adfnet.matio import save_sidd_submission
from conftest import MCMASTER, ROOT, SET12, TRAIN_GRAY, subprocess_env

# ------------------------------------------------------------------------------------------------ the world


@dataclass
class World:
    inputs: Path
    net: nn.Module  # an untrained gray ADFNet for the API rows


def _gray(rows: slice, cols: slice) -> np.ndarray:
    return cv2.imread(str(SET12 / "01.png"), cv2.IMREAD_UNCHANGED)[rows, cols]


def _put(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img), path


def _truncated(path: Path) -> None:
    """A PNG with a valid header and a third of its data: passes a header check, fails to decode."""
    whole = cv2.imencode(".png", _gray(slice(0, 32), slice(0, 40)))[1].tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(whole[: len(whole) // 3])


def _nan_tiff(path: Path) -> None:
    bad = np.full((32, 40), 0.5, np.float32)
    bad[5, 5] = np.nan
    _put(path, bad)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("bad_inputs") / "inputs"
    w = root / "weights"
    w.mkdir(parents=True)
    torch.manual_seed(0)
    gray, rgb = build_model("adfnet", n_colors=1), build_model("adfnet", n_colors=3)
    torch.save(weights_with_architecture(gray), w / "gray.pt")
    torch.save(weights_with_architecture(rgb), w / "rgb.pt")
    torch.save(dict(gray.state_dict()), w / "gray_official.pt")  # a plain dict: no record, like the downloads
    torch.save(dict(rgb.state_dict()), w / "rgb_official.pt")
    broken = weights_with_architecture(gray)
    broken["tail.weight"] = torch.full_like(broken["tail.weight"], float("nan"))
    torch.save(broken, w / "gray_nan.pt")
    (w / "truncated.pt").write_bytes((w / "gray.pt").read_bytes()[:100_000])
    (w / "folder").mkdir()
    (w / "folder/inside.pt").write_bytes(b"")

    good = _gray(slice(0, 32), slice(0, 40))
    sets = root / "sets"
    _put(sets / "Set/a.png", good)
    _put(sets / "Set/b.png", _gray(slice(40, 72), slice(0, 40)))
    _put(sets / "other/Set/a.png", good)
    for name in ("nan", "trunc", "tiny", "big", "colour"):
        _put(sets / name / "good.png", good)
    _nan_tiff(sets / "nan/bad.tif")
    _truncated(sets / "trunc/bad.png")
    _put(sets / "tiny/bad.png", good[:4, :4])
    _put(sets / "big/bad.png", _gray(slice(0, 64), slice(0, 64)))
    _put(sets / "colour/bad.png", cv2.imread(str(MCMASTER / "1.tif"))[:32, :40])
    (sets / "empty").mkdir()
    for name, sizes in {"few": [(32, 32)] * 2, "small": [(8, 12)] * 2, "mixed": [(32, 40), (48, 32), (24, 24)]}.items():
        for k, (h, wd) in enumerate(sizes):  # folders of noisy photos (DBSN's --task noisy)
            _put(root / "noisy" / name / f"{k}.png", _gray(slice(8 * k, 8 * k + h), slice(0, wd)))
    torch.manual_seed(0)
    other = build_model("dbsn", 1, mid_ch=8, br1_block_num=1, br2_block_num=1, sigma_mu_mid_ch=4, sigma_n_mid_ch=4)
    parts = {"state_dict_dbsn": other.dbsn, "state_dict_sigma_mu": other.sigma_mu, "state_dict_sigma_n": other.sigma_n}
    torch.save(  # the authors' layout (nn.DataParallel's prefix), no architecture record
        {key: {f"module.{k}": v for k, v in net.state_dict().items()} for key, net in parts.items()},
        w / "dbsn_other.pth",
    )
    (sets / "empty/readme.txt").write_text("no images here")
    _put(root / "photos/a.png", _gray(slice(0, 40), slice(0, 48)))  # people's own photos (adfnet-denoise)
    _put(root / "photos/b.png", _gray(slice(100, 140), slice(60, 108)))
    _put(root / "den_done/a.png", good)  # the output of an earlier adfnet-denoise run
    _put(root / "val_tiny/01.png", good[:1, :1])
    for sub in ("clean", "noisy"):  # pickled Python objects where a Bayer mosaic belongs
        (root / "raw_obj" / sub).mkdir(parents=True)
        np.save(root / "raw_obj" / sub / "x.npy", np.array([{"not": "a mosaic"}], dtype=object), allow_pickle=True)
    _put(root / "R/sigma25/sigma25/a.png", good)  # the reported overwrite: results went into this set
    (root / "a_file").write_text("not a folder")

    for f in sorted(TRAIN_GRAY.iterdir())[:3]:
        (root / "train").mkdir(exist_ok=True)
        (root / "train" / f.name).write_bytes(f.read_bytes())
    _truncated(root / "train/truncated.png")
    _nan_tiff(root / "train/nan.tif")
    _put(root / "val/01.png", good[:, :32])
    with pytest.warns(UserWarning, match="left out"):
        # the finished run that the train rows must not harm
        assert train_cli.main([*(a.replace("{in}", str(root)) for a in TRAIN), "--save", "run"]) == 0
    (root / "runs/corrupt").mkdir()
    (root / "runs/corrupt/checkpoint_latest.pt").write_bytes(b"PK\x03\x04 not a checkpoint")

    colour = cv2.imread(str(MCMASTER / "1.tif"))
    _put(root / "dnd/lq/0001_1.png", colour[:32, :32])
    _truncated(root / "dnd/lq/0001_2.png")
    _put(root / "dnd_flat/png/0001_1.png", colour[:32, :32])
    for name in ("a", "b"):
        _put(root / f"sidd/lq/{name}.png", colour[:32, :32])
    _put(root / "sidd/hq/a.png", colour[:32, :32])  # b has no clean pair
    for name in ("a", "b"):
        _put(root / f"sidd_sizes/hq/{name}.png", colour[:32, :32])
    _put(root / "sidd_sizes/lq/a.png", colour[:32, :32])
    _put(root / "sidd_sizes/lq/b.png", colour[:24, :32])  # a pair of different sizes
    blocks = np.zeros((1, 1, 8, 8, 3), np.uint8)
    save_sidd_submission(root / "sidd_mat/SubmitSrgb.mat", blocks)
    save_sidd_submission(root / "sidd_mat/gt.mat", blocks)
    (root / "sidd_empty").mkdir()
    _raw_world(root)
    return World(root, build_model("adfnet", n_colors=1).eval())


MW_TINY = {"filters_level1": 16, "filters_level2": 16, "filters_level3": 16, "n_rb": 1}


def _raw_world(root: Path) -> None:
    """MWRCANet weights (packed raw, sRGB), ADFNet raw weights, SIDD raw blocks of an odd size, packed arrays
    where mosaics belong, and a teacher-target cache whose input changed after the targets were written."""
    w = root / "weights"
    torch.save(weights_with_architecture(build_model("mwrcanet", 4, **MW_TINY)), w / "mwrcanet_raw.pt")
    torch.save(weights_with_architecture(build_model("mwrcanet", 3, **MW_TINY)), w / "mwrcanet_rgb.pt")
    torch.save(weights_with_architecture(build_model("adfnet", 4)), w / "adfnet_raw.pt")
    for name, size in (("raw_odd", (15, 16)), ("raw_even", (16, 16))):
        blocks = np.random.default_rng(0).random((1, 1, *size), dtype=np.float32)
        (root / name).mkdir()
        sio.savemat(root / name / "ValidationNoisyBlocksRaw.mat", {"ValidationNoisyBlocksRaw": blocks})
        sio.savemat(root / name / "ValidationGtBlocksRaw.mat", {"ValidationGtBlocksRaw": blocks})
    for sub in ("clean", "noisy"):  # packed (4, h, w) arrays where 2-D mosaics belong
        (root / "raw_packed" / sub).mkdir(parents=True)
        np.save(root / "raw_packed" / sub / "x.npy", np.zeros((4, 16, 16), np.float32))
    torch.manual_seed(1)
    torch.save(weights_with_architecture(build_model("dncnn", 1, depth=3, channels=4)), w / "teacher.pt")
    _put(root / "kd_inputs/a.png", _gray(slice(0, 32), slice(0, 32)))
    _put(root / "kd_inputs/b.png", _gray(slice(40, 72), slice(0, 32)))
    teacher = Teacher([w / "teacher.pt"], n_colors=1)
    write_targets(root / "kd_cache", input_files([root / "kd_inputs"], raw=False), teacher)
    _put(root / "kd_inputs/b.png", _gray(slice(40, 72), slice(8, 40)))  # another version of an input


_HASHES: dict[str, tuple[tuple[int, int, int], str]] = {}


def tree_checksums(folder: Path, run_logs: bool) -> dict[str, str]:
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if run_logs and rel.startswith("runs/") and (path.name in ("log.txt", "config.txt") or "/tensorboard/" in rel):
            continue
        st = path.stat()
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        cached = _HASHES.get(str(path))
        if cached is None or cached[0] != key:
            cached = (key, hashlib.sha256(path.read_bytes()).hexdigest())
            _HASHES[str(path)] = cached
        out[rel] = cached[1]
    return out


# ------------------------------------------------------------------------------------------------ the table

TEST = (
    *("--cpu", "--n_colors", "1", "--test_noiseL", "25"),
    *("--weights", "{in}/weights/gray.pt", "--result_dir", "{out}/res"),
)
TRAIN = (
    *("--n_colors", "1", "--dir_data", "{in}/train", "--data_val", "{in}/val", "--dir_experiment", "{in}/runs"),
    *("--test_every", "2", "--patch_size", "16", "--batch_size", "2", "--cpu", "--n_threads", "0", "--epochs", "1"),
)
NEW_RUN = ("--dir_experiment", "{out}/runs", "--save", "new")
DBSN_TOY = "{mid_ch: 8, br1_block_num: 1, br2_block_num: 1, sigma_mu_mid_ch: 4, sigma_n_mid_ch: 4}"
DBSN_TRAIN = (
    "--config",
    "dbsn_gray_awgn",
    "--model_options",
    DBSN_TOY,
    "--patch_size",
    "16",
    "--batch_size",
    "2",
    "--test_every",
    "1",
    "--epochs",
    "1",
    "--cpu",
    "--n_threads",
    "0",
    *NEW_RUN,
)
REAL = ("--cpu", "--weights", "{in}/weights/rgb.pt", "--result_dir", "{out}/res")
RAW_MW = ("--cpu", "--result_dir", "{out}/res", "--model", "mwrcanet", "--weights", "{in}/weights/mwrcanet_raw.pt")
DENOISE = ("{in}/photos/a.png", "{in}/photos/b.png", "--weights", "{in}/weights/gray.pt", "--cpu")
COMMANDS = {
    "test": test_cli.main,
    "train": train_cli.main,
    "real": real_cli.main,
    "denoise": denoise_cli.main,
    "export": export_cli.main,
}
PROCESSES = {
    "test": [str(ROOT / "test.py")],
    "train": [str(ROOT / "train.py")],
    "real": ["-m", "adfnet.cli.real"],
    "denoise": ["-m", "adfnet.denoise"],
    "export": ["-m", "adfnet.export"],
}


@dataclass(frozen=True)
class Case:
    name: str
    tool: str  # "test", "train", "real" (in-process main), "process:<tool>" (a real process), "api"
    args: tuple[str, ...] | Callable[[World], object]  # argv ({in}, {out} filled in), or the API call
    expect: int | type[BaseException]  # exit code, or the exception the API raises
    message: str  # regex (re.S) the output or exception must match: the problem and what to do
    produced: tuple[tuple[str, str], ...] = ()  # (file under out/, regex its text matches): good inputs processed
    patch: Callable[[pytest.MonkeyPatch], None] | None = None
    run_logs: bool = False  # resumes the finished run: its logs may grow
    fsize: int | None = None  # a real process's file-size limit in bytes (RLIMIT_FSIZE, ``ulimit -f``)
    absent: tuple[str, ...] = ()  # globs under out/ that must match nothing (no partial output)


class _OutOfMemoryOnLargeImages(nn.Module):
    """The loaded model, but a large image fails as the CPU allocator does when RAM runs out."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.size_multiple = inner, inner.size_multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] * x.shape[-1] > 40 * 40:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 96000000000 bytes")
        return self.inner(x)


def _memory_runs_out(monkeypatch: pytest.MonkeyPatch) -> None:
    load = synthetic.load_checkpoint
    monkeypatch.setattr(
        synthetic, "load_checkpoint", lambda *a, **k: (_OutOfMemoryOnLargeImages(load(*a, **k)[0]), None)
    )


def _ctrl_c_while_checking_images(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(path: Path, n_colors: int) -> str | None:
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets, "_decode_problem", interrupted)


def _ctrl_c_in_epoch_2(monkeypatch: pytest.MonkeyPatch) -> None:
    epoch_run = Trainer.train_epoch

    def interrupted(self: Trainer, epoch: int) -> float:
        if epoch == 2:
            raise KeyboardInterrupt
        return epoch_run(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted)


def _image(h: int = 32, w: int = 32) -> torch.Tensor:
    return torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(0))


def _with_nan() -> torch.Tensor:
    x = _image()
    x[0, 0, 3, 3] = float("nan")
    return x


def _dcn(offset_channels: int = 18, input_shape: tuple[int, ...] = (1, 4, 8, 8), out_channels: int = 4) -> torch.Tensor:
    return dcn.modulated_deform_conv(
        torch.rand(input_shape), torch.rand(1, offset_channels, 8, 8), torch.rand(1, 9, 8, 8),
        torch.rand(out_channels, 4, 3, 3), None, 1, 1, 1, 1, 1,
    )  # fmt: skip


def _dcn_on(backend: str) -> Callable[[World], object]:
    def call(w: World) -> object:
        with dcn.use_backend(backend):
            return _dcn(out_channels=0)

    return call


def _dcn_op(name: str) -> Callable[[World], object]:
    """The compiled op itself (``torch.ops.dcn.<name>``), past the Python checks."""

    def call(w: World) -> object:
        x, offset, mask = torch.rand(1, 4, 8, 8), torch.rand(1, 18, 8, 8), torch.rand(1, 9, 8, 8)
        return getattr(torch.ops.dcn, name)(x, offset, mask, torch.rand(0, 4, 3, 3), None, 1, 1, 1, 1, 1, 1, 1, 1)

    return call


def _hub_missing_weights(w: World) -> object:
    return torch.hub.load(str(ROOT), "adfnet", source="local", weights=str(w.inputs / "no.pt"))


SET_OK = (("res/Set/sigma25/results.csv", r"^a\.png,25,.*\nb\.png,25,"),)


def _good(set_name: str) -> tuple[tuple[str, str], ...]:
    return ((f"res/{set_name}/sigma25/results.csv", r"\ngood\.png,25,[\d.]+,"),)


# fmt: off
CASES = [
    # ---- test.py: flags, folders, checkpoints, images
    Case("test-noise-inf", "test", (*TEST, "--input_dir", "{in}/sets/Set", "--test_noiseL", "inf"), 2,
        r"argument --test_noiseL: must be a finite number"),
    Case("test-noise-negative", "test", (*TEST, "--input_dir", "{in}/sets/Set", "--test_noiseL", "-5"), 2,
        r"argument --test_noiseL: must be >= 0"),
    Case("test-limit-0", "test", (*TEST, "--limit", "0"), 2, r"--limit must be at least 1"),
    Case("test-result-dir-is-a-file", "test", (*TEST, "--input_dir", "{in}/sets/Set", "--result_dir", "{in}/a_file"),
        1, r"--result_dir .*a_file is a file, not a folder: choose a folder"),
    Case("test-result-dir-unwritable", "test", (*TEST, "--input_dir", "{in}/sets/Set", "--result_dir", "/proc/x"), 1,
        r"--result_dir /proc/x cannot be written .*choose a folder you can write to"),
    Case("test-outputs-on-inputs", "test", (*TEST, "--input_dir", "{in}/R/sigma25/sigma25", "--result_dir", "{in}/R",
        "--test_noiseL", "25", "50", "--save_images"), 1,
        r"inside the input set .*Choose a --result_dir outside every --input_dir"),
    Case("test-same-set-names", "test", (*TEST, "--input_dir", "{in}/sets/Set", "{in}/sets/other/Set"), 1,
        r"same name 'Set'.*give each set its own folder name"),
    Case("test-bad-device", "test", (*TEST, "--input_dir", "{in}/sets/Set", "--device", "gpu0"), 1,
        r"--device 'gpu0' is not a device name \(e\.g\. cpu, cuda"),
    Case("test-bad-dcn-backend", "test", (*TEST, "--input_dir", "{in}/sets/Set", "--dcn_backend", "fast"), 1,
        r"unknown backend 'fast' \(known: ext, torchvision, reference, cuda_emulated\)"),
    Case("test-missing-weights", "test", (*TEST, "--input_dir", "{in}/sets/Set", "--weights", "{in}/no.pt"), 1,
        r"checkpoint '.*no\.pt' does not exist \(download it or check the path\)"),
    Case("test-truncated-weights", "test", (*TEST, "--input_dir", "{in}/sets/Set", "--weights",
        "{in}/weights/truncated.pt"), 1,
        r"truncated, damaged or not a PyTorch checkpoint.*Download or copy it again"),
    Case("test-weights-folder", "test", (*TEST, "--input_dir", "{in}/sets/Set", "--weights", "{in}/weights/folder"),
        1, r"is a folder, not a checkpoint file: pass the \.pt file itself \(it holds inside"),
    Case("test-rgb-weights-gray-model", "test", (*TEST, "--input_dir", "{in}/sets/Set", "--weights",
        "{in}/weights/rgb.pt"), 1,
        r"--n_colors 1 contradicts the checkpoint's architecture record \(n_colors=3\): leave --n_colors out"),
    Case("test-full-weights-no-mfi", "test", (*TEST, "--input_dir", "{in}/sets/Set", "--no_mfi"), 1,
        r"mfi: checkpoint True, model False.*--no_mfi flags\), or use weights"),
    Case("test-official-weights-no-mfi", "test", (*TEST, "--input_dir", "{in}/sets/Set", "--no_mfi", "--weights",
        "{in}/weights/gray_official.pt"), 1,
        r"carries no architecture record .*taken to be the full model.*Build the "
        r"model without these ablation options"),
    Case("test-official-weights-note", "test", (*TEST, "--input_dir", "{in}/sets/Set", "--weights",
        "{in}/weights/gray_official.pt"), 0,
        r"note: .*gray_official\.pt carries no architecture record \(an official "
        r"checkpoint\?\): taken to be the full model \(mfi=True\)", SET_OK),
    Case("test-broken-weights", "test", (*TEST, "--input_dir", "{in}/sets/Set", "--weights",
        "{in}/weights/gray_nan.pt"), 1,
        r"a\.png: the model returned NaN/inf .*weights are broken.*use other weights.*"
        r"b\.png: the model returned NaN/inf"),
    Case("test-missing-and-good-set", "test", (*TEST, "--input_dir", "{in}/sets/Set", "{in}/sets/gone"), 1,
        r"image folder not found: .*gone \(check --input_dir\)", SET_OK),
    Case("test-empty-set", "test", (*TEST, "--input_dir", "{in}/sets/empty", "{in}/sets/Set"), 1,
        r"no images in .*empty: expected files ending in \.png", SET_OK),
    Case("test-nan-tiff", "test", (*TEST, "--input_dir", "{in}/sets/nan"), 1,
        r"bad\.tif: the floating-point image holds NaN or infinite values; re-export it",
        _good("nan")),
    Case("test-truncated-image", "test", (*TEST, "--input_dir", "{in}/sets/trunc"), 1,
        r"cannot decode .*bad\.png: the file is corrupt or not a supported image",
        _good("trunc")),
    Case("test-tiny-image", "test", (*TEST, "--input_dir", "{in}/sets/tiny"), 1,
        r"bad\.png is 4x4 px: too small \(ADFNet needs 8 px", _good("tiny")),
    Case("test-out-of-memory", "test", (*TEST, "--input_dir", "{in}/sets/big"), 1,
        r"bad\.png: not enough memory to denoise a 64x64 image in one piece.*--chop",
        _good("big"), patch=_memory_runs_out),
    Case("test-training-checkpoint-as-weights", "test", (*TEST, "--input_dir", "{in}/sets/Set", "--weights",
        "{in}/runs/run/checkpoint_latest.pt"), 0,
        r"\nSet\s+25\s+2\s", SET_OK),
    Case("test-noise-beyond-bound", "test", (*TEST, "--input_dir", "{in}/sets/Set", "--test_noiseL", "1e6"), 2,
        r"argument --test_noiseL: must be <= 1000 \(noise sigma on the 0-255 scale\), got '1e6'"),
    Case("test-noise-400", "test", (*TEST, "--input_dir", "{in}/sets/Set", "--test_noiseL", "400"), 0,
        r"\nSet\s+400\s+2\s", (("res/Set/sigma400/results.csv", r"^a\.png,400,.*\nb\.png,400,"),)),
    Case("test-save-images-over-file-size-limit", "process:test", (*TEST, "--input_dir", "{in}/sets/Set",
        "--save_images"), 1,
        r"error: a\.png would exceed the file-size limit of this process \(512 bytes, ulimit -f\).*a\.png was not "
        r"written\. Raise the limit", (("res/Set/sigma25/results.csv", r"^image,sigma.*\na\.png,25,"),),
        fsize=512, absent=("res/Set/sigma25/*.png",)),
    Case("test-colour-image-gray-model", "test", (*TEST, "--input_dir", "{in}/sets/colour"), 0,
        r"warning: bad\.png: colour image given to a gray model, converted to luma",
        (("res/colour/sigma25/results.csv", r"\nbad\.png,.*\ngood\.png,"),)),
    # ---- train.py: the run folder, resuming, flags, data, divergence, disk, Ctrl-C
    Case("train-used-run-folder", "train", (*TRAIN, "--save", "run"), 1,
        r"runs/run already holds a run \(checkpoint_latest\.pt.*Continue it with --resume -1, "
        r"choose another --save, or pass --overwrite"),
    Case("train-resume-other-optimizer", "train", (*TRAIN, "--save", "run", "--resume", "-1", "--epochs", "2",
        "--optimizer", "SGD"), 1,
        r"cannot resume .* with other settings.*--optimizer: the run used ADAM, now SGD"
        r".*Resume with the run's settings"),
    Case("train-resume-no-mfi", "train", (*TRAIN, "--save", "run", "--resume", "-1", "--no_mfi"), 1,
        r"--no_mfi: the run used False, now True \(the architecture\)"),
    Case("train-resume-missing-epoch", "train", (*TRAIN, "--save", "run", "--resume", "5"), 1,
        r"cannot continue from epoch 5: .*model_5\.pt does not exist .*Use --resume -1"),
    Case("train-resume-nothing", "train", (*TRAIN, *NEW_RUN, "--resume", "-1"), 1,
        r"cannot resume: .*checkpoint_latest\.pt does not exist .*start the run anew"),
    Case("train-resume-corrupt", "train", (*TRAIN, "--save", "corrupt", "--resume", "-1"), 1,
        r"corrupt or not a training checkpoint.*Restore it from a backup.*--pre_train"),
    Case("train-resume-finished", "train", (*TRAIN, "--save", "run", "--resume", "-1"), 0,
        r"nothing to train: .*already completed epoch 1 of --epochs 1; pass a larger "
        r"--epochs", run_logs=True),
    Case("train-negative-lr", "train", (*TRAIN, *NEW_RUN, "--lr", "-1e-3"), 2, r"argument --lr: must be > 0"),
    Case("train-negative-epochs", "train", (*TRAIN, *NEW_RUN, "--epochs", "-1"), 2,
        r"--epochs -1: give the number of epochs"),
    Case("train-cache-in-data", "train", (*TRAIN, *NEW_RUN, "--cache", "--cache_dir", "{in}/train/bin"), 1,
        r"--cache_dir would write the decoded cache to .*bin, inside the input set .*Choose a --cache_dir outside "
        r"every --dir_data"),
    Case("train-ext-img-and-cache", "train", (*TRAIN, *NEW_RUN, "--ext", "img", "--cache"), 2,
        r"--ext img \(no cache\) contradicts --cache"),
    Case("train-cache-dir-without-cache", "train", (*TRAIN, *NEW_RUN, "--cache_dir", "{out}/cache"), 2,
        r"--cache_dir names the folder of the decoded cache: it needs --cache \(or --ext sep\)"),
    Case("train-no-data", "train", (*TRAIN, *NEW_RUN, "--dir_data", "{in}/nowhere"), 1,
        r"no training images in .*nowhere.*or pass --dir_data <a folder of clean images>"),
    Case("train-no-val", "train", (*TRAIN, *NEW_RUN, "--data_val", "{in}/nowhere"), 1,
        r"validation set '.*nowhere' not found.*pass --data_val"),
    Case("train-missing-pre-train", "train", (*TRAIN, *NEW_RUN, "--pre_train", "{in}/no.pt"), 1,
        r"checkpoint '.*no\.pt' does not exist"),
    Case("train-bad-images-left-out", "train", (*TRAIN, *NEW_RUN), 0,
        r"(?=.*left out: \S*nan\.tif: the floating-point image holds NaN.*re-export)"
        r"(?=.*left out: cannot decode \S*truncated\.png: the file is corrupt)",
        (("runs/new/log.txt", r"epoch 1: loss"), ("runs/new/model/model_latest.pt", ""))),
    Case("train-diverges", "train", (*TRAIN, *NEW_RUN, "--lr", "1e6"), 1,
        r"training diverged in epoch 1: .*nothing was saved: start the run again",
        (("runs/new/log.txt", r"stopped: training diverged"),)),
    Case("train-checkpoint-over-file-size-limit", "process:train", (*TRAIN, *NEW_RUN), 1,
        r"checkpoint_latest\.pt would exceed the file-size limit of this process \(64 MB, ulimit -f\) on the disk "
        r"of \S*runs/new \(mounted at .*it needs about 99 MB.*checkpoint_latest\.pt was not written\. Raise the "
        r"limit .*then continue with --resume -1", (("runs/new/model/model_latest.pt", ""),),
        fsize=64 * 2**20, absent=("runs/new/checkpoint_latest.pt",)),
    Case("train-dir-experiment-is-a-file", "train", (*TRAIN, "--dir_experiment", "{in}/a_file", "--save", "new"), 1,
        r"--dir_experiment \S*a_file is a file, not a folder: choose a folder"),
    Case("train-dir-experiment-unwritable", "train", (*TRAIN, "--dir_experiment", "/proc/x", "--save", "new"), 1,
        r"--dir_experiment /proc/x cannot be written .*choose a folder you can write to"),
    Case("train-print-every-0", "train", (*TRAIN, *NEW_RUN, "--print_every", "0"), 2,
        r"argument --print_every: must be >= 1, got '0'", absent=("runs/new",)),
    Case("train-lr-decay-0", "train", (*TRAIN, *NEW_RUN, "--lr_decay", "0"), 2,
        r"argument --lr_decay: must be >= 1, got '0'", absent=("runs/new",)),
    Case("train-n-threads-negative", "train", (*TRAIN, *NEW_RUN, "--n_threads", "-1"), 2,
        r"argument --n_threads: must be >= 0, got '-1'"),
    Case("train-seed-negative", "train", (*TRAIN, *NEW_RUN, "--seed", "-1"), 2,
        r"argument --seed: must be >= 0, got '-1'"),
    Case("train-tiny-validation-image", "train", (*TRAIN, *NEW_RUN, "--data_val", "{in}/val_tiny"), 1,
        r"validation image \S*val_tiny/01\.png is 1x1 px: too small \(ADFNet needs at least 8x8\); remove it",
        absent=("runs/new",)),
    Case("train-object-npy", "train", (*TRAIN, *NEW_RUN, "--raw", "--task", "paired", "--dir_data",
        "{in}/raw_obj", "--data_val", "{in}/raw_obj"), 1,
        r"raw_obj/(noisy|clean)/x\.npy: cannot read it as a Bayer mosaic \(.*\); save the mosaic as a plain "
        r"float array", absent=("runs/new",)),
    Case("train-ctrl-c-checking-images", "train", (*TRAIN, *NEW_RUN), 130,
        r"interrupted \(Ctrl-C\) while checking the training images\. No epoch was completed, so nothing was "
        r"saved", patch=_ctrl_c_while_checking_images, absent=("runs/new/checkpoint_latest.pt",)),
    Case("train-ctrl-c", "train", (*TRAIN, *NEW_RUN, "--epochs", "2"), 130,
        r"interrupted \(Ctrl-C\) in epoch 2\. Nothing after epoch 1 was saved.*"
        r"Continue with: python .* --save new --resume -1",
        (("runs/new/checkpoint_latest.pt", ""),), patch=_ctrl_c_in_epoch_2),
    # ---- DBSN: noisy-image folders, its configurations, its MAP weight
    Case("train-dbsn-few-noisy-images", "train", (*DBSN_TRAIN, "--dir_data", "{in}/noisy/few"), 0,
        r"note: only 2 usable image\(s\) in \S*few: D-BSN learns what images look like from these alone",
        (("runs/new/2_all/log.txt", r"only 2 usable image"), ("runs/new/2_all/model/model_latest.pt", ""))),
    Case("train-dbsn-small-noisy-images", "train", (*DBSN_TRAIN, "--dir_data", "{in}/noisy/small"), 1,
        r"error: none of the 2 images in \S*small is at least 16x16 px \(the largest is 8x12\): pass a smaller "
        r"--patch_size \(a multiple of 8, at most 8\) or larger images"),
    Case("train-dbsn-mixed-sizes", "train", (*DBSN_TRAIN, "--dir_data", "{in}/noisy/mixed"), 0,
        r"note: the images have 3 different sizes \(24x24 to 48x32 px\): fine, training takes random 16x16 crops",
        (("runs/new/2_all/model/model_latest.pt", ""),)),
    Case("train-dbsn-other-configuration", "train", (*DBSN_TRAIN, "--dir_data", "{in}/noisy/few", "--model_options",
        DBSN_TOY.replace("mid_ch: 8", "mid_ch: 16"), "--pre_train", "{in}/weights/dbsn_other.pth"), 1,
        r"error: The checkpoint does not match the model \(DBSN\)\. The checkpoint is a DBSN of another "
        r"configuration \(mid_ch: checkpoint 8, model 16\): build the model with these options[^\n]*--model_options"
        r"[^\n]*\n(?!.*keys)", absent=("runs/new/*/model/*",)),
    Case("test-dbsn-other-colours", "test", ("--weights", "{in}/weights/dbsn_other.pth", "--n_colors", "3", "--cpu",
        "--input_dir", "{in}/sets/Set", "--result_dir", "{out}/res"), 1,
        r"cannot use checkpoint \S*dbsn_other\.pth for sigma 50: The checkpoint does not match the model \(DBSN\)\. "
        r"The checkpoint is a DBSN of another configuration \(n_colors: checkpoint 1, model 3"),
    Case("test-dbsn-map-gamma-0", "test", ("--weights", "{in}/weights/dbsn_other.pth", "--map_gamma", "0", "--cpu",
        "--input_dir", "{in}/sets/Set"), 2,
        r"argument --map_gamma: must be > 0, got '0'"),
    Case("test-dbsn-map-gamma-other-model", "test", (*TEST, "--input_dir", "{in}/sets/Set", "--map_gamma", "0.9"), 1,
        r"--map_gamma weights DBSN's MAP combination; --model adfnet has none"),
    # ---- the real-noise tools
    Case("real-dnd-outputs-on-inputs", "real", ("dnd", *REAL, "--input_dir", "{in}/dnd_flat/png", "--result_dir",
        "{in}/dnd_flat", "--save_images"), 1,
        r"would write the PNGs to .*dnd_flat/png, inside the input set.*Choose a "
        r"--result_dir outside every --input_dir"),
    Case("real-sidd-results-in-inputs", "real", ("sidd-val-png", *REAL, "--input_dir", "{in}/sidd", "--result_dir",
        "{in}/sidd/lq"), 1,
        r"would write results\.csv to .*inside the input set"),
    Case("real-score-csv-onto-gt", "real", ("score-sidd", "--submission", "{in}/sidd_mat/SubmitSrgb.mat", "--gt",
        "{in}/sidd_mat/gt.mat", "--csv", "{in}/sidd_mat/gt.mat"), 1,
        r"--csv would write the scores to .*gt\.mat, onto the input file .*Choose a --csv "
        r"outside every --submission / --gt"),
    Case("real-dnd-bad-crop", "real", ("dnd", *REAL, "--input_dir", "{in}/dnd"), 1,
        r"0001_2\.png: cannot decode", (("res/mat/0001_1.mat", ""),)),
    Case("real-sidd-missing-pair", "real", ("sidd-val-png", *REAL, "--input_dir", "{in}/sidd"), 1,
        r"image not found: .*hq/b\.png", (("res/results.csv", r"\na\.png,"),)),
    Case("real-sidd-mat-missing", "real", ("sidd-val-mat", *REAL, "--input_dir", "{in}/sidd_empty"), 1,
        r"\.mat file not found: .*ValidationNoisyBlocksSrgb\.mat"),
    Case("real-result-dir-is-a-file", "real", ("dnd", *REAL, "--input_dir", "{in}/dnd", "--result_dir",
        "{in}/a_file"), 1, r"a_file is a file, not a folder"),
    Case("real-gray-weights", "real", ("dnd", *REAL, "--input_dir", "{in}/dnd", "--weights", "{in}/weights/gray.pt"),
        1, r"n_colors: checkpoint 1, model 3"),
    Case("real-official-weights-note", "real", ("dnd", *REAL, "--input_dir", "{in}/dnd_flat/png", "--weights",
        "{in}/weights/rgb_official.pt"), 0,
        r"note: .*rgb_official\.pt carries no architecture record \(an official "
        r"checkpoint\?\): taken to be the full model", (("res/mat/0001_1.mat", ""),)),
    Case("real-sidd-pair-sizes-differ", "real", ("sidd-val-png", *REAL, "--input_dir", "{in}/sidd_sizes"), 1,
        r"error: \S*sidd_sizes/lq/b\.png: the pair differs in size \(hq 32x32, lq 24x32 px\): skipped",
        (("res/results.csv", r"^image,.*\na\.png,[\d.]+,"),)),
    # ---- raw layouts (MWRCANet: one Bayer plane or packed), odd mosaics, teacher targets, the time budget
    Case("real-raw-odd-mosaic-plane", "real", ("sidd-raw-val", *RAW_MW, "--input_dir", "{in}/raw_odd"), 1,
        r"error: \S*ValidationNoisyBlocksRaw\.mat: a Bayer mosaic needs an even height and width \(whole 2x2 CFA "
        r"tiles\), got 15x16 blocks: crop or pad them to an even size"),
    Case("real-raw-odd-mosaic-packed", "real", ("sidd-raw-val", *RAW_MW, "--input_dir", "{in}/raw_odd",
        "--raw_layout", "packed"), 1, r"error: \S*\.mat: a Bayer mosaic needs an even height and width .*got 15x16 "
        r"blocks: crop or pad them"),
    Case("real-raw-plane-for-adfnet", "real", ("sidd-raw-val", "--cpu", "--weights", "{in}/weights/adfnet_raw.pt",
        "--input_dir", "{in}/raw_even", "--result_dir", "{out}/res", "--raw_layout", "plane"), 1,
        r"--raw_layout plane is MWRCANet's one-Bayer-plane layout \(--model mwrcanet or mwresnet\); --model adfnet "
        r"takes packed raw: leave --raw_layout out or give packed"),
    Case("real-raw-srgb-mwrcanet", "real", ("sidd-raw-val", *RAW_MW[:-1], "{in}/weights/mwrcanet_rgb.pt",
        "--input_dir", "{in}/raw_even"), 1,
        r"mwrcanet_rgb\.pt holds a mwrcanet for n_colors=3 \(not raw\): the raw tools run raw models"),
    Case("real-raw-mwrcanet-plane-runs", "real", ("sidd-raw-val", *RAW_MW, "--input_dir", "{in}/raw_even"), 0,
        r"1 raw blocks, mwrcanet, one Bayer plane as stored, plain: PSNR", (("res/results.csv", r"^block,psnr"),)),
    Case("test-raw-mwrcanet-weights", "test", ("--cpu", "--weights", "{in}/weights/mwrcanet_raw.pt", "--result_dir",
        "{out}/res"), 1,
        r"mwrcanet_raw\.pt is a raw mwrcanet \(packed raw, n_colors=4\): adfnet-test evaluates gray and colour "
        r"models \(raw models: adfnet-real sidd-raw-val\)"),
    Case("train-packed-arrays-as-mosaics", "train", (*TRAIN, *NEW_RUN, "--raw", "--task", "paired", "--dir_data",
        "{in}/raw_packed", "--data_val", "{in}/raw_packed"), 1,
        r"raw_packed/(noisy|clean)/x\.npy: a Bayer mosaic is a 2-D array, got shape \(4, 16, 16\) \(packed raw\? "
        r"store the mosaic: adfnet\.data\.raw\.unpack\)", absent=("runs/new",)),
    Case("train-teacher-targets-of-another-dataset-version", "train", (*TRAIN, *NEW_RUN, "--teacher_cache",
        "{in}/kd_cache"), 1,
        r"error: teacher targets were made from a different dataset version than the manifest says: \S*kd_inputs/"
        r"b\.png changed \((its contents differ, same size|\d+ bytes then, \d+ now)\); restore it, or write new "
        r"targets into another --teacher_cache folder", absent=("runs/new/checkpoint_latest.pt",)),
    Case("train-teacher-other-weights", "train", (*TRAIN, *NEW_RUN, "--teacher_cache", "{in}/kd_cache",
        "--teacher", "{in}/weights/gray.pt"), 1,
        r"kd_cache were made by other teacher weights than --teacher: the manifest has \S*teacher\.pt \(SHA-256 "),
    Case("train-teacher-raw-for-gray", "train", (*TRAIN, *NEW_RUN, "--teacher", "{in}/weights/mwrcanet_raw.pt"), 1,
        r"--teacher \S*mwrcanet_raw\.pt is a mwrcanet for packed raw inputs \(n_colors=4\), but this run's inputs "
        r"are gray \(n_colors=1\): use a teacher trained on the same layout"),
    Case("train-teacher-inputs-without-cache", "train", (*TRAIN, *NEW_RUN, "--teacher", "{in}/weights/gray.pt",
        "--teacher_inputs", "{in}/kd_inputs"), 2,
        r"--teacher_inputs are fixed files whose teacher outputs are written once: give --teacher_cache FOLDER"),
    Case("train-time-budget-0", "train", (*TRAIN, *NEW_RUN, "--time_budget", "0"), 2,
        r"argument --time_budget: must be > 0, got '0'"),
    Case("api-mwrcanet-plane-given-packed", "api", lambda w: build_model("mwrcanet", 1, **MW_TINY)(torch.rand(1, 4, 8,
        8)), ValueError, r"takes one plane \(B, 1, H, W\).*got 4 channels: packed raw\? Unpack it"),
    Case("api-mwrcanet-packed-given-plane", "api", lambda w: build_model("mwrcanet", 4, **MW_TINY)(torch.rand(1, 1,
        16, 16)), ValueError, r"takes packed raw \(B, 4, H/2, W/2\).*got one plane: a Bayer mosaic\? Pack it"),
    # ---- adfnet-denoise and adfnet-export
    Case("denoise-over-file-size-limit", "process:denoise", (*DENOISE, "--out", "{out}/den"), 1,
        r"adfnet-denoise: error: a\.png would exceed the file-size limit of this process \(512 bytes, ulimit -f\) "
        r"on the disk of \S*den \(mounted at .*it needs about .*a\.png was not written", fsize=512,
        absent=("den/*",)),
    Case("denoise-earlier-outputs", "denoise", (*DENOISE, "--out", "{in}/den_done"), 2,
        r"--out \S*den_done already holds 1 of the outputs \(a\.png\): pass --overwrite to replace them, or "
        r"--skip_existing to keep them"),
    Case("export-onnx-onto-a-folder", "export", ("--weights", "{in}/weights/gray.pt", "--onnx", "{out}"), 2,
        r"--onnx \S* is a folder: give a file path, e\.g\. \S*adfnet\.onnx"),
    Case("export-safetensors-over-file-size-limit", "process:export", ("--weights", "{in}/weights/gray.pt",
        "--safetensors", "{out}/w.safetensors"), 1,
        r"adfnet-export: error: w\.safetensors would exceed the file-size limit of this process \(1 MB, ulimit "
        r"-f\).*it needs about 33 MB.*w\.safetensors was not written", fsize=2**20, absent=("w.safetensors",)),
    # ---- real processes: no traceback at process level either
    Case("process-test-result-dir", "process:test", (*TEST, "--input_dir", "{in}/sets/Set", "--result_dir",
        "{in}/a_file"), 1, r"is a file, not a folder"),
    Case("process-train-used-folder", "process:train", (*TRAIN, "--save", "run"), 1, r"already holds a run"),
    Case("process-real-missing-input", "process:real", ("dnd", *REAL, "--input_dir", "{in}/nowhere"), 1,
        r"image folder not found: .*nowhere \(check --input_dir\)"),
    # ---- the Python API
    Case("api-denoise-nan", "api", lambda w: denoise(w.net, _with_nan()), ValueError,
        r"1 NaN/inf value\(s\): denoise needs finite pixel values"),
    Case("api-denoise-0-255", "api", lambda w: denoise(w.net, _image() * 255), ValueError,
        r"expects an image in \[0, 1\].*divide a 0-255 float image by 255"),
    Case("api-denoise-list", "api", lambda w: denoise(w.net, [[0.5] * 16] * 16), TypeError,
        r"got a list \(convert it with numpy\.asarray first\)"),
    Case("api-denoise-3d", "api", lambda w: denoise(w.net, _image()[0]), ValueError,
        r"expects a \(B, C, H, W\) tensor, got shape \(1, 32, 32\) \(add the batch dimension"),
    Case("api-denoise-tiny", "api", lambda w: denoise(w.net, _image(4, 4)), ValueError,
        r"4x4 px is too small: ADFNet needs at least 8x8"),
    Case("api-denoise-int-tensor", "api", lambda w: denoise(w.net, torch.zeros(1, 1, 8, 8, dtype=torch.int32)),
        ValueError, r"float tensor in \[0, 1\] or uint8 in 0-255, got dtype torch\.int32"),
    Case("api-load-weights-colours", "api", lambda w: load_weights(build_model("adfnet", 3), w.inputs /
        "weights/gray.pt"), ValueError,
        r"n_colors: checkpoint 1, model 3\)\. Build the model with n_colors=1"),
    Case("api-load-weights-missing", "api", lambda w: load_weights(w.net, w.inputs / "no.pt"), FileNotFoundError,
        r"does not exist \(download it or check the path\)"),
    Case("api-load-weights-not-a-state-dict", "api", lambda w: load_weights(w.net, {"epoch": 3}), ValueError,
        r"entry 'epoch' is a int, not a tensor: this is not a state_dict"),
    Case("api-build-model-name", "api", lambda w: build_model("adfnet_xl"), ValueError,
        r"unknown model 'adfnet_xl'; choose one of adfnet, adfnet_l"),
    Case("api-build-model-colours", "api", lambda w: build_model("adfnet", n_colors=2), ValueError,
        r"n_colors must be 1 \(gray\), 3 \(colour\) or 4 \(packed raw\), an int; got 2"),
    Case("api-build-model-option", "api", lambda w: build_model("adfnet", mfl=False), ValueError,
        r"unknown model option\(s\) mfl for adfnet; valid options: .*mfi"),
    Case("api-dcn-offset-channels", "api", lambda w: _dcn(offset_channels=17), ValueError,
        r"offset has 17 channels, expected 2 \* deformable_groups \* kh \* kw"),
    Case("api-dcn-3d-input", "api", lambda w: _dcn(input_shape=(4, 8, 8)), ValueError,
        r"input must be 4-D, got shape \(4, 8, 8\)"),
    *(Case(f"api-dcn-zero-out-channels-{backend}", "api", _dcn_on(backend), ValueError,
        r"weight has 0 output channels \(shape \(0, 4, 3, 3\)\); a convolution needs at least one")
      for backend in ("ext", "torchvision", "reference", "cuda_emulated")),
    *(Case(f"api-dcn-op-zero-out-channels-{op}", "api", _dcn_op(op), ValueError,
        r"dcn: weight has 0 output channels")
      for op in ("modulated_deform_conv", "modulated_deform_conv_emulated")),
    Case("api-denoise-empty-batch", "api", lambda w: denoise(w.net, torch.rand(0, 1, 16, 16)), ValueError,
        r"denoise got an empty batch of shape \(0, 1, 16, 16\): give at least one image"),
    Case("api-build-model-float-colours", "api", lambda w: build_model("adfnet", n_colors=3.0), ValueError,
        r"n_colors must be 1 \(gray\), 3 \(colour\) or 4 \(packed raw\), an int; got 3\.0 \(float\)"),
    Case("api-build-model-bool-colours", "api", lambda w: build_model("adfnet", n_colors=True), ValueError,
        r"n_colors must be .* an int; got True \(bool\)"),
    Case("api-dbsn-map-gamma", "api", lambda w: build_model("dbsn", 1, gamma=-1.0), ValueError,
        r"gamma \(the MAP weight\) must be > 0, got -1\.0; the authors use 1 \(0\.9 for colour HG\)"),
    Case("api-hub-missing-weights", "api", _hub_missing_weights, FileNotFoundError,
        r"weights='\S*no\.pt' does not exist .*download them \(checkpoints/README\.md\) or train your own \(bash "
        r"scripts/demo\.sh writes experiment/demo_gray_n25/model/model_best\.pt\)"),
]
# fmt: on


def _fill(args: tuple[str, ...], world: World, out: Path) -> list[str]:
    return [a.replace("{in}", str(world.inputs)).replace("{out}", str(out)) for a in args]


def _run_command(case: Case, argv: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    if case.tool.startswith("process:"):
        tool = case.tool.split(":", 1)[1]
        limit = case.fsize

        def set_limit() -> None:  # a real limit: writes past it fail with EFBIG (Python ignores SIGXFSZ)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        done = subprocess.run(
            [sys.executable, *PROCESSES[tool], *argv],
            capture_output=True,
            text=True,
            cwd=out,
            env=subprocess_env(),
            timeout=300,
            preexec_fn=set_limit if limit is not None else None,
        )
        return done.returncode, done.stdout + done.stderr
    try:
        code = COMMANDS[case.tool](argv)
    except SystemExit as done:  # argparse errors, Ctrl-C; any other exception fails the test with its traceback
        code = done.code if isinstance(done.code, int) else 0 if done.code is None else 1
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("case", [pytest.param(case, id=case.name) for case in CASES])
def test_bad_input(
    case: Case, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    before = tree_checksums(world.inputs, case.run_logs)
    if case.patch is not None:
        case.patch(monkeypatch)
    if case.tool == "api":
        assert isinstance(case.expect, type) and callable(case.args)
        with pytest.raises(case.expect) as raised:
            case.args(world)
        assert re.search(case.message, str(raised.value), re.S), str(raised.value)
    else:
        assert isinstance(case.args, tuple)
        capsys.readouterr()
        code, text = _run_command(case, _fill(case.args, world, out), out, capsys)
        assert code == case.expect, text[-3000:]
        assert "Traceback" not in text, text[-3000:]
        assert re.search(case.message, text, re.S), text[-3000:]
    monkeypatch.undo()
    for name, pattern in case.produced:
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, f"{name} was not written: the good inputs were not processed"
        if pattern:
            assert re.search(pattern, path.read_text(), re.S | re.M), path.read_text()[:2000]
    assert tree_checksums(world.inputs, case.run_logs) == before, "an input file or an earlier run changed"
    for pattern in case.absent:
        assert not list(out.glob(pattern)), f"{pattern}: a partial or unwanted output was left"
    assert not [p for p in out.rglob(".*.tmp*")], "a temporary file was left"


def test_the_table_covers_every_tool() -> None:
    tools = {case.tool.split(":")[-1] for case in CASES}
    assert {"test", "train", "real", "api"} <= tools and len(CASES) >= 30
    assert len({case.name for case in CASES}) == len(CASES)
