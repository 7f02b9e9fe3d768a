"""adfnet.data.io: formats, colour handling, bad input."""

import warnings

import cv2
import numpy as np
import pytest
import torch

from adfnet.data.io import (
    ImageReadError,
    ImageWarning,
    image_to_tensor,
    list_images,
    read_image,
    rgb_to_gray,
    save_image,
    tensor_to_image,
)
from conftest import ROOT

SET12 = ROOT / "datasets/testsets/Set12"
MCMASTER = ROOT / "datasets/testsets/McMaster"


def test_list_images_sorted_and_filtered(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.tif", "d.bmp", "e.tiff", "f.jpeg", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.tif", "d.bmp", "e.tiff", "f.jpeg"]


def test_list_images_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        list_images(tmp_path / "missing")
    (tmp_path / "readme.txt").write_text("no images")
    with pytest.raises(FileNotFoundError, match="no images"):
        list_images(tmp_path)


def test_bundled_sets():
    assert len(list_images(SET12)) == 12
    tif = list_images(MCMASTER)[0]
    img = read_image(tif, 3)
    assert img.shape == (500, 500, 3) and img.dtype == np.float32
    bgr = cv2.imread(str(tif))
    np.testing.assert_array_equal(img, bgr[..., ::-1].astype(np.float32) / 255)  # RGB, not BGR
    gray = read_image(f"{SET12}/01.png", 1)
    assert gray.shape == (256, 256, 1) and gray.min() >= 0 and gray.max() <= 1


def test_gray_for_rgb_model_warns_and_replicates():
    with pytest.warns(ImageWarning, match="gray image"):
        img = read_image(f"{SET12}/01.png", 3)
    assert img.shape == (256, 256, 3)
    assert np.array_equal(img[..., 0], img[..., 2])


def test_colour_for_gray_model_uses_bt601(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    save_image(tmp_path / "c.png", rgb)
    with pytest.warns(ImageWarning, match="colour image given to a gray model, converted to luma"):
        gray = read_image(tmp_path / "c.png", 1)
    expected = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255
    np.testing.assert_allclose(gray, expected, rtol=1e-6)
    np.testing.assert_allclose(rgb_to_gray(rgb.astype(np.float32) / 255), expected, rtol=1e-6)


def test_16bit_and_alpha(tmp_path):
    img16 = np.full((9, 10, 3), 65535, np.uint16)
    img16[0, 0] = (0, 32768, 65535)
    cv2.imwrite(str(tmp_path / "deep.png"), img16)
    with pytest.warns(ImageWarning, match="16-bit"):
        out = read_image(tmp_path / "deep.png", 3)
    np.testing.assert_allclose(out[0, 0], [1.0, 32768 / 65535, 0.0])  # BGR on disk -> RGB
    bgra = np.zeros((9, 10, 4), np.uint8)
    bgra[..., 2] = 255  # red
    bgra[..., 3] = 10
    cv2.imwrite(str(tmp_path / "alpha.png"), bgra)
    with pytest.warns(ImageWarning, match="alpha"):
        out = read_image(tmp_path / "alpha.png", 3)
    assert out.shape == (9, 10, 3) and np.all(out[..., 0] == 1) and np.all(out[..., 1:] == 0)


def test_corrupt_and_missing(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "empty.jpg").write_bytes(b"")
    for name in ["bad.png", "empty.jpg"]:
        with pytest.raises(ImageReadError, match="corrupt"):
            read_image(tmp_path / name, 3)
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png", 3)
    with pytest.raises(ValueError, match="n_colors"):
        read_image(tmp_path / "bad.png", 2)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif"])
def test_save_read_round_trip(tmp_path, ext):
    rng = np.random.default_rng(0)
    img = rng.random((12, 17, 3)).astype(np.float32)
    save_image(tmp_path / "sub" / f"x{ext}", img)
    back = read_image(tmp_path / "sub" / f"x{ext}", 3)
    np.testing.assert_array_equal(back, np.rint(img * 255) / 255)
    gray = img[..., :1]
    save_image(tmp_path / f"g{ext}", gray)
    assert cv2.imread(str(tmp_path / f"g{ext}"), cv2.IMREAD_UNCHANGED).ndim == 2


def test_tensor_conversion():
    img = np.random.default_rng(1).random((5, 7, 3)).astype(np.float32)
    t = image_to_tensor(img)
    assert t.shape == (1, 3, 5, 7) and t.dtype == torch.float32
    np.testing.assert_array_equal(tensor_to_image(t), img)
    assert image_to_tensor(np.full((2, 3), 255, np.uint8)).eq(1).all()
    with pytest.raises(ValueError):
        tensor_to_image(torch.zeros(2, 3, 4, 4))


def test_equal_channel_colour_file_for_gray_model_is_silent(tmp_path):
    """An RGB file whose three channels are equal loses nothing when read as gray: no warning."""
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    save_image(tmp_path / "g.png", np.repeat(gray[..., None], 3, axis=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img = read_image(tmp_path / "g.png", 1)
    np.testing.assert_array_equal(np.rint(img[..., 0] * 255), gray)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_tiff_is_refused_by_name(tmp_path, bad):
    img = np.full((12, 12, 3), 0.5, np.float32)
    img[3, 4, 1] = bad
    path = tmp_path / "hdr.tif"
    assert cv2.imwrite(str(path), img)
    with pytest.raises(ImageReadError, match=r"hdr\.tif.*NaN or infinite"):
        read_image(path, 3)
