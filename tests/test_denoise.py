"""adfnet.denoise and the tiled inference it uses: people's own images, any size, kept as they were."""

import functools
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from adfnet import build_model
from adfnet.checkpoint import infer_model
from adfnet.cli.denoise import main
from adfnet.denoise import denoise_files, read_noisy
from adfnet.inference import _run_whole, count_tiles, forward_tiled, tile_starts
from conftest import ROOT

SIDD = ROOT / "datasets" / "real" / "SIDD_samples" / "NOISY"
sys.path.insert(0, str(ROOT / "tests" / "golden"))
from weights import golden_state_dict  # noqa: E402

# Measured for the golden-weights ADFNet on a 160x200 SIDD crop (tile 128): max 3.0e-3 (overlap 32),
# 2.3e-3 (overlap 64); mean 7e-4. MFI's whole-row/column pooling makes ADFNet not exactly tileable.
ADFNET_TILE_TOLERANCE = 1e-2


def local_net(channels: int = 3, dtype=torch.float32) -> nn.Module:
    """Receptive-field radius 3: fits overlap // 4 for every overlap >= 16 used below."""
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(channels, 8, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(8, channels, 3, padding=1),
        )
        .eval()
        .to(dtype)
    )


class Half(nn.Module):
    """Halves the image: a model whose exact output is known for every pixel."""

    def forward(self, x):
        return x * 0.5


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("shape", [(1, 3, 150, 261), (2, 3, 129, 64), (1, 1, 64, 200), (1, 3, 40, 40)])
@pytest.mark.parametrize("tile, overlap", [(64, 16), (128, 32), (48, 16)])
def test_tiled_equals_full_bit_for_bit_when_the_receptive_field_fits(shape, tile, overlap):
    # PyTorch's native convolution computes a pixel the same way whatever the image size; oneDNN picks
    # other algorithms for other sizes (last-bit differences, next test), so it is off here.
    net, x = local_net(shape[1]), torch.rand(shape)
    with torch.backends.mkldnn.flags(enabled=False), torch.no_grad():
        full = _run_whole(net, x, False)
        assert torch.equal(forward_tiled(net, x, tile, overlap), full)


def test_tiled_ensemble_equals_full_ensemble():
    net, x = local_net(), torch.rand(1, 3, 90, 130)
    with torch.backends.mkldnn.flags(enabled=False), torch.no_grad():
        full = _run_whole(net, x, True)
        assert torch.equal(forward_tiled(net, x, 48, 16, ensemble=True), full)


def test_tiled_float32_within_rounding_of_full():
    net, x = local_net(), torch.rand(1, 3, 150, 261)
    with torch.no_grad():
        full = _run_whole(net, x, False)
    assert (forward_tiled(net, x, 64, 16) - full).abs().max() < 1e-6


def test_tiling_uses_real_overlaps_and_blends():
    for size, tile, overlap in [(96, 64, 16), (4000, 512, 64), (520, 256, 64), (2048, 512, 0)]:
        starts = tile_starts(size, tile, overlap)
        assert starts[0] == 0 and starts[-1] == size - tile and all(s % 8 == 0 for s in starts)
        assert all(0 < b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))
    assert tile_starts(64, 128, 32) == [0]
    assert count_tiles(300, 517, 128, 32) == len(tile_starts(304, 128, 32)) * len(tile_starts(520, 128, 32))
    # a model that is not local: the seam is blended (no jump larger than the pixel-to-pixel steps)
    x = torch.linspace(0, 1, 256).repeat(1, 1, 64, 1)
    y = forward_tiled(lambda t: t.mean((2, 3), keepdim=True).expand_as(t).clone(), x, 64, 32)
    assert (y[..., 1:] - y[..., :-1]).abs().max() < 0.1


def test_bad_tiling_is_a_clear_error():
    with pytest.raises(ValueError, match="multiple of 8"):
        forward_tiled(Half(), torch.rand(1, 3, 64, 64), 60, 16)
    with pytest.raises(ValueError, match="more than half"):
        forward_tiled(Half(), torch.rand(1, 3, 64, 64), 64, 40)


def test_tiled_adfnet_close_to_full():
    g = torch.load(ROOT / "tests" / "golden" / "adfnet_rgb_seed0.pt")
    model = build_model("adfnet", 3).eval()
    model.load_state_dict(golden_state_dict(model.state_dict(), g["seed"]))
    with torch.no_grad():
        full = model(g["input"])
    tiled = forward_tiled(model, g["input"], 64, 16)  # 64x96: two tiles side by side
    assert (tiled - full).abs().max() < ADFNET_TILE_TOLERANCE


def test_command_on_bundled_sidd_samples(tmp_path, capsys):
    ckpt = tmp_path / "adfnet_rgb.pt"
    model = build_model("adfnet", 3).eval()
    torch.save(golden_state_dict(model.state_dict(), 0), ckpt)
    inputs = [SIDD / "11.png"]  # the smallest sample (241x241): one ADFNet pass on 2 CPU cores
    before = [sha(p) for p in inputs]
    assert main([str(p) for p in inputs] + ["--weights", str(ckpt), "--out", str(tmp_path / "out")]) == 0
    assert [sha(p) for p in inputs] == before
    model.load_state_dict(golden_state_dict(model.state_dict(), 0))
    for src in inputs:
        noisy = cv2.imread(str(src))[..., ::-1]
        got = cv2.imread(str(tmp_path / "out" / src.name), cv2.IMREAD_UNCHANGED)[..., ::-1]
        x = torch.from_numpy(noisy.transpose(2, 0, 1).astype(np.float32) / 255)[None]
        with torch.no_grad():  # these images fit one tile of the default 2GB budget: the plain forward pass
            ref = _run_whole(model, x, False).clamp(0, 1)[0].permute(1, 2, 0).numpy()
        assert got.dtype == np.uint8 and got.shape == noisy.shape
        assert np.array_equal(got, np.rint(ref * 255).astype(np.uint8))
    assert "1 of 1 image(s)" in capsys.readouterr().out


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16_bit_stays_16_bit(tmp_path, ext):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 65536, (37, 50, 3), dtype=np.uint16)
    src = tmp_path / "in" / f"deep{ext}"
    src.parent.mkdir()
    cv2.imwrite(str(src), img)
    assert denoise_files(Half(), [src], tmp_path / "out", n_colors=3, tile=32, overlap=8) == {}
    out = cv2.imread(str(tmp_path / "out" / f"deep{ext}"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == img.shape
    expect = np.rint(img.astype(np.float32) / 65535 * 0.5 * 65535)
    assert np.abs(out.astype(np.float64) - expect).max() <= 1  # 16-bit precision kept (not 8-bit steps of 257)


def test_alpha_is_copied_untouched(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (40, 48, 4), dtype=np.uint8)
    src = tmp_path / "in" / "rgba.png"
    src.parent.mkdir()
    cv2.imwrite(str(src), img)
    assert denoise_files(Half(), [src], tmp_path / "out", n_colors=3, tile=32, overlap=8) == {}
    out = cv2.imread(str(tmp_path / "out" / "rgba.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == (40, 48, 4)
    assert np.array_equal(out[..., 3], img[..., 3])
    assert np.abs(out[..., :3].astype(int) - np.rint(img[..., :3] / 2.0)).max() <= 1


def test_exif_orientation_jpeg_to_png_and_gray_model_on_colour(tmp_path):
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    im = Image.fromarray(pixels)
    exif = im.getexif()
    exif[0x0112] = 6  # stored sideways: viewers rotate 90 degrees clockwise
    src = tmp_path / "in" / "photo.jpg"
    src.parent.mkdir()
    im.save(src, quality=95, exif=exif)
    upright = np.asarray(Image.open(src).transpose(Image.Transpose.ROTATE_270))
    colour, alpha, dtype = read_noisy(src)
    assert colour.shape == (40, 24, 3) and alpha is None and dtype == np.uint8
    assert np.array_equal(np.rint(colour * 255).astype(np.uint8), upright)
    assert denoise_files(Half(), [src], tmp_path / "out", n_colors=1, tile=32, overlap=8) == {}
    out = cv2.imread(str(tmp_path / "out" / "photo.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert out.shape == (40, 24, 3)
    assert np.abs(out.astype(int) - np.rint(upright / 2.0)).max() <= 1


def test_output_folder_equal_to_an_input_folder_is_refused(tmp_path, capsys):
    src = tmp_path / "a.png"
    cv2.imwrite(str(src), np.zeros((16, 16, 3), np.uint8))
    ckpt = tmp_path / "w.pt"
    torch.save(build_model("adfnet", 3).state_dict(), ckpt)
    before = sha(src)
    assert main([str(src), "--weights", str(ckpt), "--out", str(tmp_path)]) == 2
    assert "is the folder of input" in capsys.readouterr().err
    assert sha(src) == before


def test_a_bad_file_is_reported_and_the_others_are_processed(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "good1.png"), np.full((16, 24, 3), 200, np.uint8))
    (folder / "broken.png").write_bytes(b"not an image")
    cv2.imwrite(str(folder / "tiny.png"), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(folder / "good2.bmp"), np.full((16, 24), 90, np.uint8))
    from adfnet.denoise import collect_inputs

    inputs = collect_inputs([str(folder)])
    failures = denoise_files(Half(), inputs, tmp_path / "out", n_colors=3, tile=16, overlap=0)
    assert set(failures) == {folder / "broken.png", folder / "tiny.png"}
    assert "cannot decode" in failures[folder / "broken.png"] and "too small" in failures[folder / "tiny.png"]
    assert cv2.imread(str(tmp_path / "out" / "good1.png"))[0, 0, 0] == 100
    gray = cv2.imread(str(tmp_path / "out" / "good2.bmp"), cv2.IMREAD_UNCHANGED)
    assert gray.shape == (16, 24) and gray[0, 0] == 45  # gray in, gray out, through the RGB model


def test_main_exit_code_is_1_when_a_file_fails(tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "ok.png"), np.full((16, 16, 3), 10, np.uint8))
    (folder / "bad.png").write_bytes(b"junk")
    ckpt = tmp_path / "w.pt"
    torch.save(build_model("adfnet", 3).state_dict(), ckpt)
    monkeypatch.setattr("adfnet.models.spec.build_model", lambda name, n_colors, **options: _Wrapped(name, n_colors))
    assert main([str(folder / "*.png"), "--weights", str(ckpt), "--out", str(tmp_path / "out")]) == 1
    assert (tmp_path / "out" / "ok.png").is_file() and not (tmp_path / "out" / "bad.png").exists()


class _Wrapped(nn.Module):
    """The real network's parameters (so strict loading runs) with a cheap forward."""

    def __init__(self, name, n):
        super().__init__()
        self.net = build_model(name, n)
        self.spec = self.net.spec

    def load_state_dict(self, state, strict=True, assign=False):
        return self.net.load_state_dict(state, strict, assign)

    def state_dict(self, *args, **kwargs):
        return self.net.state_dict(*args, **kwargs)

    def forward(self, x):
        return x * 0.5


def test_memory_sizes_and_tile_choice():
    from adfnet.cli.denoise import parse_memory
    from adfnet.denoise import choose_tile
    from adfnet.inference import ADFNET_BYTES_PER_PIXEL

    assert parse_memory("2GB") == parse_memory("2 GiB") == 2 * 2**30 and parse_memory("512mb") == 512 * 2**20
    assert parse_memory("2") == parse_memory("2G") == 2 * 2**30 and parse_memory("0.5") == 2**29  # plain: GB
    assert parse_memory("4096B") == 4096  # bytes only when written so
    with pytest.raises(Exception, match="memory size"):
        parse_memory("lots")
    tile = choose_tile(3000, 4000, 3, 2 * 2**30, ADFNET_BYTES_PER_PIXEL)  # 12 MP photo, the default budget
    assert tile % 8 == 0 and tile**2 * ADFNET_BYTES_PER_PIXEL + 5 * 4 * 3 * 12e6 <= 2 * 2**30
    assert (tile + 8) ** 2 * ADFNET_BYTES_PER_PIXEL + 5 * 4 * 3 * 12e6 > 2 * 2**30
    with pytest.raises(ValueError, match="raise --max_memory"):
        choose_tile(3000, 4000, 3, 2**29, ADFNET_BYTES_PER_PIXEL)


def test_model_and_colours_are_read_from_the_checkpoint():
    for name, n in [("adfnet", 1), ("adfnet", 3), ("adfnet_l", 3)]:
        spec = infer_model(build_model(name, n).state_dict(), None, None)
        assert (spec.name, spec.n_colors) == (name, n)
    from adfnet.errors import UserError

    with pytest.raises(UserError, match="--model and --n_colors"):
        infer_model({"x": torch.zeros(1)}, None, None)


def test_the_architecture_record_decides_and_flags_must_agree_with_it(tmp_path):
    """Our checkpoints say what they are (SADNet has no head conv to read; ``--no_mfi`` changes no
    parameter): the record wins, and every tool that loads through ``load_checkpoint`` (adfnet-denoise,
    adfnet-export, torch.hub) builds the recorded architecture."""
    from adfnet.checkpoint import load_checkpoint, read_state_dict, weights_with_architecture
    from adfnet.errors import UserError

    sadnet = tmp_path / "sadnet_gray.pt"
    torch.save(weights_with_architecture(build_model("sadnet", 1)), sadnet)
    spec = infer_model(read_state_dict(sadnet), None, None)
    assert (spec.name, spec.n_colors) == ("sadnet", 1)
    spec = infer_model(read_state_dict(sadnet), "sadnet", 1)
    assert (spec.name, spec.n_colors) == ("sadnet", 1)
    with pytest.raises(
        UserError, match=r"--n_colors 3 contradicts the checkpoint's architecture record \(n_colors=1\)"
    ):
        infer_model(read_state_dict(sadnet), None, 3)
    no_mfi = tmp_path / "no_mfi.pt"
    torch.save(weights_with_architecture(build_model("adfnet", 3, mfi=False)), no_mfi)
    model, spec = load_checkpoint(str(no_mfi))
    assert (spec.name, spec.n_colors, spec.options["mfi"]) == ("adfnet", 3, False)


def test_duplicate_output_names_are_refused_not_overwritten(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / "same.png"), np.full((16, 16, 3), 60 if sub == "a" else 120, np.uint8))
    failures = denoise_files(
        Half(),
        [tmp_path / "a" / "same.png", tmp_path / "b" / "same.png"],
        tmp_path / "out",
        n_colors=3,
        tile=16,
        overlap=0,
    )
    assert list(failures) == [tmp_path / "b" / "same.png"]
    assert cv2.imread(str(tmp_path / "out" / "same.png"))[0, 0, 0] == 30


LARGE_IMAGE_SCRIPT = r"""
import resource, sys
cap = 8 * 2**30
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
from pathlib import Path
import cv2, numpy as np, torch
from torch import nn
from adfnet.denoise import denoise_files
from adfnet.inference import ADFNET_BYTES_PER_PIXEL
torch.set_num_threads(2)
src, out = Path(sys.argv[1]), Path(sys.argv[2])
h, w = 3000, 4000
ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
img = np.clip(ramp + np.random.default_rng(0).normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
cv2.imwrite(str(src), img)
del img
torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(8, 3, 3, padding=1)).eval()
failures = denoise_files(net, [src], out, n_colors=3, max_memory=2 * 2**30, bytes_per_pixel=ADFNET_BYTES_PER_PIXEL)
assert failures == {}, failures
print("PEAK_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def test_12_megapixel_image_under_an_8gb_address_space_cap(tmp_path):
    """The whole pipeline on a 4000x3000 image with RLIMIT_AS = 8 GiB (stricter than 8 GB of RAM: the
    CUDA build of torch alone reserves ~4 GB of address space). The model is a small conv net so the
    test stays fast; the tile is the one --max_memory 2GB picks for ADFNet (ADFNET_BYTES_PER_PIXEL)."""
    import subprocess

    src, out = tmp_path / "in" / "big.png", tmp_path / "out"
    src.parent.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", LARGE_IMAGE_SCRIPT, str(src), str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak = float(proc.stdout.split("PEAK_MB")[1])
    assert peak < 8 * 1024
    result = cv2.imread(str(out / "big.png"))
    assert result.shape == (3000, 4000, 3)


# --- the command as installed, and as the README shows it -------------------------------------------
def _readme_denoise_line() -> list[str]:
    """The denoise command of the README's first section (the code block right after the two fresh-machine
    commands)."""
    readme = (ROOT / "README.md").read_text()
    first_section = readme.split("\n## ", 1)[0]
    blocks = [part.split("```", 1)[0] for part in first_section.split("```bash\n")[1:]]
    lines = [line.split("#")[0].split() for block in blocks for line in block.splitlines() if not line.startswith("#")]
    (line,) = [words for words in lines if "adfnet.denoise" in words or "adfnet-denoise" in words[:1]]
    return line


def test_readme_denoise_command_runs_on_the_demo_weights(tmp_path):
    """The README's command, through the installed adfnet-denoise, on its bundled noisy image with the
    weights demo.sh writes (replaced by an untrained network of the same kind: the test runs no demo)."""
    from conftest import console_script, subprocess_env

    line = _readme_denoise_line()
    argv = line[line.index("adfnet.denoise") + 1 :] if "adfnet.denoise" in line else line[1:]
    weights = argv[argv.index("--weights") + 1]
    demo = (ROOT / "scripts/demo.sh").read_text()
    run = re.search(r"^RUN=\$\{RUN:-(\w+)\}", demo, re.M).group(1)
    assert weights == f"experiment/{run}/model/model_best.pt" and '"experiment/$RUN/model/model_best.pt"' in demo
    assert "--n_colors 1" in demo and "train_adfnet_gray_n25.sh" in demo  # so the stand-in is a gray ADFNet
    inputs = [a for a in argv if not a.startswith("--") and a not in (weights, argv[argv.index("--out") + 1])]
    assert inputs and all((ROOT / a).is_file() for a in inputs)
    torch.manual_seed(0)
    torch.save(build_model("adfnet", 1).state_dict(), tmp_path / "model_best.pt")
    argv[argv.index("--weights") + 1] = str(tmp_path / "model_best.pt")
    argv[argv.index("--out") + 1] = str(tmp_path / "denoised")
    done = subprocess.run(
        [str(console_script("adfnet-denoise")), *argv], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for name in inputs:
        noisy = cv2.imread(str(ROOT / name), cv2.IMREAD_UNCHANGED)
        out = cv2.imread(str(tmp_path / "denoised" / Path(name).name), cv2.IMREAD_UNCHANGED)
        assert out.shape == noisy.shape and out.dtype == noisy.dtype and not np.array_equal(out, noisy)


def test_missing_weights_say_where_weights_come_from(tmp_path):
    """``python -m adfnet.denoise`` (the module form) without weights: a message, no traceback."""
    from conftest import subprocess_env

    done = subprocess.run(
        [sys.executable, "-m", "adfnet.denoise", str(SIDD / "11.png"), "--weights", str(tmp_path / "none.pth"),
         "--out", str(tmp_path / "out")],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"--weights {tmp_path / 'none.pth'} does not exist" in done.stderr
    assert "checkpoints/README.md" in done.stderr and "scripts/demo.sh" in done.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was created


def test_export_console_script_writes_safetensors(tmp_path):
    from conftest import console_script, subprocess_env

    model = build_model("adfnet", 3)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    out = tmp_path / "sub" / "w.safetensors"
    done = subprocess.run(
        [str(console_script("adfnet-export")), "--weights", str(tmp_path / "w.pt"), "--safetensors", str(out)],
        env=subprocess_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    from adfnet.checkpoint import read_state_dict

    again = read_state_dict(out)
    assert again.keys() == model.state_dict().keys()
    assert all(torch.equal(again[k], v) for k, v in model.state_dict().items())


# --- what the photo carries: ICC profile, EXIF, resolution -------------------------------------------
@functools.cache
def _icc_profile() -> bytes:
    """A real sRGB profile (Little CMS; it holds its creation time, so it is made once)."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif"])
def test_icc_profile_exif_and_resolution_are_kept_upright(tmp_path, ext):
    """A sideways photo (EXIF orientation 6) with an ICC profile, a camera name and 300 x 150 dpi: the output
    is upright, its EXIF orientation 1, the camera name and the profile unchanged, x and y dpi swapped."""
    y, x = np.mgrid[0:24, 0:40]
    pixels = np.stack([x * 6, y * 10, 120 + 0 * x], axis=2).astype(np.uint8)  # smooth: JPEG stays close
    im = Image.fromarray(pixels)
    exif = im.getexif()
    exif[0x0112], exif[0x010F] = 6, "TestCam"
    src = tmp_path / "in" / f"photo{ext}"
    src.parent.mkdir()
    im.save(src, icc_profile=_icc_profile(), exif=exif, dpi=(300, 150), **({"quality": 95} if ext == ".jpg" else {}))
    upright = np.rot90(pixels, -1)  # orientation 6: shown turned 90 degrees clockwise
    out_ext = ".png" if ext == ".jpg" else ext
    for fmt, suffix in ((None, out_ext), ("jpg", ".jpg")):
        out = tmp_path / f"out_{fmt}"
        assert denoise_files(Half(), [src], out, n_colors=3, tile=32, overlap=8, fmt=fmt) == {}
        with Image.open(out / f"photo{suffix}") as got:
            assert got.info.get("icc_profile") == _icc_profile()
            assert got.getexif().get(0x010F) == "TestCam" and got.getexif().get(0x0112, 1) == 1
            assert got.info["dpi"] == pytest.approx((150, 300), abs=0.05)  # PNG: integer pixels per metre
            assert got.size == (24, 40)  # upright: 24 wide, 40 high
            tolerance = 8 if suffix == ".jpg" or ext == ".jpg" else 1  # JPEG is lossy
            assert np.abs(np.asarray(got).astype(int) - np.rint(upright / 2.0)).max() <= tolerance


def test_16_bit_colour_tiff_keeps_its_icc_profile_and_resolution(tmp_path):
    import tifffile

    img = np.random.default_rng(4).integers(0, 65536, (20, 32, 3), dtype=np.uint16)
    src = tmp_path / "in" / "deep.tif"
    src.parent.mkdir()
    tifffile.imwrite(src, img, photometric="rgb", iccprofile=_icc_profile(), resolution=(240, 240), resolutionunit=2)
    assert denoise_files(Half(), [src], tmp_path / "out", n_colors=3, tile=32, overlap=8) == {}
    out = tmp_path / "out" / "deep.tif"
    with tifffile.TiffFile(out) as tif:  # the tags (OpenCV's LZW pixels need another codec in tifffile)
        tags = tif.pages[0].tags
        assert tags["InterColorProfile"].value == _icc_profile()
        assert tags["XResolution"].value == (240, 1) and tags["ResolutionUnit"].value == 2
    got = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert got.dtype == np.uint16 and np.abs(got.astype(int) - np.rint(img / 2.0)).max() <= 1


def test_outputs_of_an_earlier_run_are_refused_overwritten_or_skipped(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, value in (("a.png", 200), ("b.png", 100)):
        cv2.imwrite(str(folder / name), np.full((16, 16, 3), value, np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    cv2.imwrite(str(out / "a.png"), np.full((16, 16, 3), 7, np.uint8))  # an earlier run's output
    before = sha(out / "a.png")
    ckpt = tmp_path / "w.pt"
    torch.save(build_model("adfnet", 3).state_dict(), ckpt)
    monkeypatch.setattr("adfnet.models.spec.build_model", lambda name, n_colors, **options: _Wrapped(name, n_colors))
    command = [str(folder), "--weights", str(ckpt), "--out", str(out), "--tile", "16", "--overlap", "0"]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "already holds 1 of the outputs (a.png): pass --overwrite" in err and "--skip_existing" in err
    assert sha(out / "a.png") == before and not (out / "b.png").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    partial = out / f".b.png.tmp{int(dead.stdout)}"  # what a killed run leaves
    partial.write_bytes(b"half a PNG")
    assert main([*command, "--skip_existing"]) == 0
    assert "1 of 2 image(s) denoised" in capsys.readouterr().out and not partial.exists()
    assert sha(out / "a.png") == before and cv2.imread(str(out / "b.png"))[0, 0, 0] == 50
    assert main([*command, "--overwrite"]) == 0
    assert cv2.imread(str(out / "a.png"))[0, 0, 0] == 100
    with pytest.raises(SystemExit):  # both at once: argparse refuses
        main([*command, "--overwrite", "--skip_existing"])
    with pytest.raises(ValueError, match="--overwrite"):  # the API refuses too
        denoise_files(Half(), [folder / "a.png"], out, n_colors=3, tile=16, overlap=0)
