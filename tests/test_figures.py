"""adfnet.figures: the comparison panel (paper Fig. 5 layout) and the PSNR-per-sigma plot."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adfnet.figures import comparison_panel, pick_crop, psnr_sigma_plot, save_panel

GAP = 6


def images():
    rng = np.random.default_rng(0)
    clean = np.zeros((64, 80, 3), np.uint8)
    clean[20:36, 40:56] = rng.integers(0, 256, (16, 16, 3))  # the only detailed region
    noisy = np.clip(clean.astype(int) + rng.integers(-30, 31, clean.shape), 0, 255).astype(np.uint8)
    ours = np.clip(clean.astype(int) + rng.integers(-5, 6, clean.shape), 0, 255).astype(np.uint8)
    return noisy, ours, clean


def test_panel_layout_pixels_and_zoom(tmp_path):
    noisy, ours, clean = images()
    panel = comparison_panel(noisy, torch.from_numpy(ours).permute(2, 0, 1).float() / 255, clean, crop=(20, 40, 16))
    zoom = 80 // 16
    assert panel.dtype == np.uint8 and panel.shape[1] == 3 * 80 + 2 * GAP
    assert panel.shape[0] > 64 + GAP + 16 * zoom  # images, close-ups, caption
    for i, im in enumerate((noisy, ours, clean)):
        x0 = i * (80 + GAP)
        top = panel[:64, x0 : x0 + 80].copy()
        assert np.array_equal(top[:18], im[:18])  # the image itself, above the red box
        assert tuple(top[19, 45]) == (230, 30, 30)  # the box around the crop
        close = panel[64 + GAP : 64 + GAP + 16 * zoom, x0 : x0 + 80]
        assert np.array_equal(close, np.repeat(np.repeat(im[20:36, 40:56], zoom, 0), zoom, 1))
        caption = panel[64 + GAP + 16 * zoom :, x0 : x0 + 80]
        assert (caption < 128).any()  # text is drawn
    save_panel(tmp_path / "sub" / "p.png", panel)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "sub" / "p.png")), panel)


def test_panel_caption_is_the_psnr_and_crop_finds_detail():
    noisy, ours, clean = images()
    y, x = pick_crop(clean, 16)
    assert max(0, 16 - abs(y - 20)) * max(0, 16 - abs(x - 40)) >= 128  # at least half of the detailed block
    with_psnr = comparison_panel(noisy, ours, clean, crop=(20, 40, 16))
    label_only = comparison_panel(noisy, ours, crop=(20, 40, 16))
    assert with_psnr.shape[0] == label_only.shape[0]
    ink = [(panel[64 + GAP + 80 :, :80] < 128).any(axis=(0, 2)).sum() for panel in (with_psnr, label_only)]
    assert ink[0] > 1.5 * ink[1]  # "Noisy  xx.xx dB" is wider than "Noisy"
    gray = comparison_panel(noisy[..., 0], ours[..., 0])  # gray, no clean image: two columns, no PSNR
    assert gray.shape[1] == 2 * 80 + GAP and gray.shape[2] == 3
    with pytest.raises(ValueError, match="same size"):
        comparison_panel(noisy, ours[:32])
    with pytest.raises(ValueError, match="not inside"):
        comparison_panel(noisy, ours, clean, crop=(60, 0, 16))


def test_psnr_plot_is_written(tmp_path):
    path = psnr_sigma_plot(tmp_path / "plots" / "kodak.png", {10: 36.1, 30: 30.5}, {10: 36.25, 30: 30.65}, "Kodak24")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (600, 432)
        pixels = np.asarray(im.convert("RGB"))
    assert (pixels != 255).any(axis=2).mean() > 0.02  # axes, lines and labels were drawn
    with pytest.raises(ValueError, match="no results"):
        psnr_sigma_plot(Path(tmp_path / "x.png"), {})
