"""The one writer (adfnet.fileio): every file whole or not at all, and a full disk never looks like success.

Real limits, never monkeypatched errors: the writers and the commands run in a child process under a
file-size limit (RLIMIT_FSIZE: a write past it fails with EFBIG, as Python ignores SIGXFSZ), and on a
really full file system: a small tmpfs, mounted in a private mount namespace (``unshare``) so that it
vanishes with the process, filled before the command runs. Where no tmpfs can be mounted those tests
are skipped with the reason (a skip is not a pass).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch

from adfnet import build_model
from adfnet.fileio import WriteError, append_text, atomic_file, text_file, write_bytes, write_text
from conftest import ROOT, SET12, subprocess_env

# Every kind of file the package writes, each a few kB (over the 2 kB limit below), by the package's own
# functions; the child prints {file: "written" or the error message}.
WRITERS = r"""
import json, sys
from pathlib import Path
import numpy as np
import torch
from torch import nn
from adfnet.data.io import save_image
from adfnet.engine.state import atomic_save
from adfnet.evaluation.report import write_score_csv
from adfnet.export import export_onnx, export_safetensors
from adfnet.fileio import WriteError, append_text, atomic_file
from adfnet.matio import save_dnd_crop

folder = Path(sys.argv[1])
torch.manual_seed(0)
net = nn.Conv2d(16, 16, 3, padding=1)


def npy(path):
    with atomic_file(path) as f:
        np.save(f, np.zeros(4096, np.float32))


writers = {
    "checkpoint.pt": lambda p: atomic_save({"w": torch.zeros(4096)}, p),
    "image.png": lambda p: save_image(p, np.random.default_rng(0).random((48, 48, 3))),
    "scores.csv": lambda p: write_score_csv(p, [f"image{i}.png" for i in range(200)], [(30.0, 0.9, 0.9)] * 200),
    "log.txt": lambda p: append_text(p, "a line that does not fit\n" * 200),
    "crop.mat": lambda p: save_dnd_crop(p, np.zeros((32, 32, 3))),
    "array.npy": npy,
    "weights.safetensors": lambda p: export_safetensors(net, p, "conv", 16),
    "model.onnx": lambda p: export_onnx(net, p, 16, size=8),
}
results = {}
for name, write in writers.items():
    try:
        write(folder / name)
        results[name] = "written"
    except WriteError as err:
        results[name] = f"{type(err).__name__}: {err}"
print(json.dumps(results))
"""
FILES = ("checkpoint.pt", "image.png", "scores.csv", "log.txt", "crop.mat", "array.npy", "weights.safetensors")
PREVIOUS = b"the previous file\n"


def _stage_previous(folder: Path) -> None:
    """An earlier complete version of every file (the model.onnx case: none, so nothing may appear)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (folder / name).write_bytes(PREVIOUS)


def _check_writers(results: dict[str, str], folder: Path, reason: str) -> None:
    assert set(results) == {*FILES, "model.onnx"}
    for name, message in results.items():
        assert message.startswith("DiskFullError: ") and re.search(reason, message), (name, message)
        assert name in message and "it needs about" in message, message
        if name == "model.onnx":
            assert f"{name} was not written" in message and not (folder / name).exists()
        elif name == "log.txt":
            assert "what log.txt held before is intact" in message
        else:
            assert f"the previous {name} is intact" in message
    for name in FILES:
        assert (folder / name).read_bytes() == PREVIOUS, name  # whole, and the previous content
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], "a temporary file was left"


# --- the writer itself, in this process -------------------------------------------------------------------
def test_a_file_is_replaced_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.bin"
    write_bytes(target, b"first")
    assert target.read_bytes() == b"first"
    for interruption in (ValueError("an encoder failed"), KeyboardInterrupt()):
        with pytest.raises(type(interruption)), atomic_file(target) as f:
            f.write(b"half of the second")
            raise interruption  # passes unchanged: it is not about the file
        assert target.read_bytes() == b"first"
        assert [p.name for p in target.parent.iterdir()] == ["file.bin"]
    write_text(target, "second")
    assert target.read_text() == "second"
    with text_file(tmp_path / "table.csv") as fh:
        fh.write("a,b\r\n1,2\r\n")  # no newline translation, as open(newline="") gave
    assert (tmp_path / "table.csv").read_bytes() == b"a,b\r\n1,2\r\n"
    append_text(tmp_path / "log.txt", "one\n")
    append_text(tmp_path / "log.txt", "two\n")
    assert (tmp_path / "log.txt").read_text() == "one\ntwo\n"


def test_an_unwritable_target_is_a_one_line_write_error(tmp_path: Path) -> None:
    with pytest.raises(WriteError, match=r"cannot write .*: it is a folder; give a file name"):
        write_bytes(tmp_path, b"x")
    with pytest.raises(WriteError, match=r"cannot write /proc/adfnet/x\.csv: .*x\.csv was not written"):
        write_text("/proc/adfnet/x.csv", "a,b\n")
    assert isinstance(WriteError("x"), ValueError)  # every command line prints it as one line


# --- under a real file-size limit ---------------------------------------------------------------------
def _limited(limit: int):
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return set_limit


def test_every_writer_under_a_file_size_limit(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    _stage_previous(folder)
    done = subprocess.run(
        [sys.executable, "-c", WRITERS, str(folder)],
        capture_output=True, text=True, env=subprocess_env(), timeout=300, preexec_fn=_limited(2048),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    _check_writers(results, folder, r"would exceed the file-size limit of this process \(2 kB, ulimit -f\)")


# --- on a really full disk ----------------------------------------------------------------------------
FULL_DISK = r"""
set -u
disk=$1 stage=$2 out=$3 keep=$4
shift 4
mount -t tmpfs -o size=1m tmpfs "$disk" || exit 97
cp -a "$stage/." "$disk/"
free=$(stat -f -c %a "$disk")
dd if=/dev/zero of="$disk/.filler" bs=$(stat -f -c %S "$disk") count=$((free - keep)) 2>/dev/null
"$@" > "$out/stdout" 2> "$out/stderr"
echo $? > "$out/rc"
rm -f "$disk/.filler"
mkdir -p "$out/disk" && cp -a "$disk/." "$out/disk/"
"""


@pytest.fixture(scope="module")
def unshare(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """How to run a command in a private mount namespace where a tmpfs can be mounted; skip if nowhere."""
    if shutil.which("unshare") is None:
        pytest.skip("no full disk can be made here: the unshare command is missing (util-linux)")
    probe = tmp_path_factory.mktemp("probe")
    reasons = []
    for command in (["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"]):
        done = subprocess.run(
            [*command, "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$0"', str(probe)], capture_output=True, text=True
        )
        if done.returncode == 0:
            return command
        reasons.append(f"{' '.join(command)}: {done.stderr.strip()}")
    pytest.skip(f"no full disk can be made here: a tmpfs cannot be mounted ({'; '.join(reasons)})")


def run_on_full_disk(unshare: list[str], tmp_path: Path, command: list[str], keep_blocks: int = 0):
    """Run ``command`` with a 1 MB tmpfs at ``tmp_path/disk`` (``{disk}`` in the command), holding what
    ``tmp_path/stage`` holds and filled but ``keep_blocks`` blocks; returns (exit code, output, the disk's
    files afterwards, copied to ``tmp_path/result/disk``)."""
    disk, stage, result = tmp_path / "disk", tmp_path / "stage", tmp_path / "result"
    for folder in (disk, stage, result):
        folder.mkdir(exist_ok=True)
    command = [part.replace("{disk}", str(disk)) for part in command]
    done = subprocess.run(
        [*unshare, "sh", "-c", FULL_DISK, "sh", str(disk), str(stage), str(result), str(keep_blocks), *command],
        capture_output=True, text=True, env=subprocess_env(), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    code = int((result / "rc").read_text())
    assert code != 97, "the tmpfs could not be mounted"
    return code, (result / "stdout").read_text() + (result / "stderr").read_text(), result / "disk"


def test_every_writer_on_a_full_disk(unshare: list[str], tmp_path: Path) -> None:
    _stage_previous(tmp_path / "stage" / "out")
    code, text, disk = run_on_full_disk(unshare, tmp_path, [sys.executable, "-c", WRITERS, "{disk}/out"])
    assert code == 0, text[-3000:]
    results = json.loads(text.strip().splitlines()[0])
    _check_writers(results, disk / "out", rf"no space left on the disk of \S+ \(mounted at {tmp_path / 'disk'}\)")


def _two_photos(folder: Path) -> list[str]:
    folder.mkdir(parents=True)
    gray = cv2.imread(str(SET12 / "01.png"), cv2.IMREAD_UNCHANGED)
    for name, (top, left) in (("a.png", (0, 0)), ("b.png", (100, 60))):
        assert cv2.imwrite(str(folder / name), gray[top : top + 40, left : left + 48])
    return [str(folder / "a.png"), str(folder / "b.png")]


@pytest.mark.parametrize("previous", [False, True], ids=["new-outputs", "overwrite-an-earlier-run"])
def test_denoise_on_a_full_disk_stops_and_leaves_no_partial_file(
    unshare: list[str], tmp_path: Path, previous: bool
) -> None:
    photos = _two_photos(tmp_path / "photos")
    torch.manual_seed(0)
    torch.save(build_model("adfnet", 1).state_dict(), tmp_path / "gray.pt")
    if previous:  # an earlier run's output, which --overwrite would replace: it must stay whole
        (tmp_path / "stage" / "den").mkdir(parents=True)
        shutil.copy(photos[0], tmp_path / "stage" / "den" / "a.png")
    command = [sys.executable, "-m", "adfnet.denoise", *photos, "--weights", str(tmp_path / "gray.pt")]
    command += ["--out", "{disk}/den", "--cpu", *(["--overwrite"] if previous else [])]
    code, text, disk = run_on_full_disk(unshare, tmp_path, command)
    assert code == 1 and "Traceback" not in text and "denoised into" not in text, text[-3000:]
    (line,) = [line for line in text.splitlines() if "error" in line]
    assert re.fullmatch(
        rf"adfnet-denoise: error: no space left on the disk of \S+/den \(mounted at {tmp_path / 'disk'}\) while "
        r"writing a\.png: it needs about \d+ (bytes|kB), 0 bytes are free; "
        + ("the previous a\\.png is intact" if previous else "a\\.png was not written")
        + r"\. Free some space or write to another disk",
        line,
    ), line
    files = sorted(p.name for p in (disk / "den").iterdir())
    assert files == (["a.png"] if previous else []), files  # no partial a.png, no b.png, no temporary file
    if previous:
        assert (disk / "den" / "a.png").read_bytes() == Path(photos[0]).read_bytes()


def test_test_py_save_images_on_a_nearly_full_disk(unshare: list[str], tmp_path: Path) -> None:
    """One free block: results.csv fits, the first denoised image does not."""
    photos = _two_photos(tmp_path / "Set")
    torch.manual_seed(0)
    torch.save(build_model("adfnet", 1).state_dict(), tmp_path / "gray.pt")
    command = [sys.executable, str(ROOT / "test.py"), "--cpu", "--n_colors", "1", "--test_noiseL", "25"]
    command += ["--weights", str(tmp_path / "gray.pt"), "--input_dir", str(Path(photos[0]).parent)]
    command += ["--result_dir", "{disk}/res", "--save_images"]
    code, text, disk = run_on_full_disk(unshare, tmp_path, command, keep_blocks=1)
    assert code == 1 and "Traceback" not in text, text[-3000:]
    assert re.search(r"error: no space left on the disk of \S+ .* while writing a\.png: .*a\.png was not written", text)
    out = disk / "res" / "Set" / "sigma25"
    assert sorted(p.name for p in out.iterdir()) == ["results.csv"]  # no partial image, no temporary file
    rows = (out / "results.csv").read_bytes().decode()
    assert re.fullmatch(r"image,sigma,psnr.*\r\na\.png,25,[\d.]+,.*\r\n", rows, re.S), rows
    assert os.listdir(disk / "res") == ["Set"]
