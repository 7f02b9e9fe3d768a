"""adfnet.data.raw: Bayer mosaics, packing, bilinear demosaicking and the CFA-aware x8 self-ensemble."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adfnet.data.datasets import dihedral
from adfnet.data.raw import (
    CFA_PATTERNS,
    TRANSFORMS,
    cfa_forward,
    cfa_inverse,
    cfa_offsets,
    cfa_self_ensemble,
    demosaic_bilinear,
    mosaic,
    pack,
    unpack,
)

# (row, col) of R, Gr, Gb, B in the 2 x 2 tile, written out by hand from the pattern names.
OFFSETS = {
    "RGGB": ((0, 0), (0, 1), (1, 0), (1, 1)),
    "GRBG": ((0, 1), (0, 0), (1, 1), (1, 0)),
    "GBRG": ((1, 0), (1, 1), (0, 0), (0, 1)),
    "BGGR": ((1, 1), (1, 0), (0, 1), (0, 0)),
}


def test_offsets_by_hand():
    assert tuple(OFFSETS) == CFA_PATTERNS
    for pattern, offsets in OFFSETS.items():
        assert cfa_offsets(pattern) == offsets
        assert cfa_offsets(pattern.lower()) == offsets
    with pytest.raises(ValueError, match="unknown Bayer pattern 'RGBG'"):
        cfa_offsets("RGBG")


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_pack_unpack_exact_inverse(pattern):
    m = torch.rand(2, 1, 6, 10)
    packed = pack(m, pattern)
    assert packed.shape == (2, 4, 3, 5)
    assert torch.equal(unpack(packed, pattern), m)
    p = torch.rand(2, 4, 3, 5)
    assert torch.equal(pack(unpack(p, pattern), pattern), p)
    for k, (r, c) in enumerate(OFFSETS[pattern]):
        assert torch.equal(packed[:, k], m[:, 0, r::2, c::2])


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_mosaic_keeps_each_sites_colour(pattern):
    h, w = 6, 8
    rgb = torch.stack([torch.full((h, w), 10.0 * (c + 1)) for c in range(3)])[None]
    rgb = rgb + torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w) / 100  # position in the decimals
    m = mosaic(rgb, pattern)[0, 0]
    colour = {"R": 0, "G": 1, "B": 2}
    for i in range(h):
        for j in range(w):
            letter = pattern[2 * (i % 2) + j % 2]
            assert m[i, j] == rgb[0, colour[letter], i, j]
    packed = pack(mosaic(rgb, pattern), pattern)
    assert (
        ((packed[:, 0] // 10) == 1).all() and ((packed[:, 1:3] // 10) == 2).all() and ((packed[:, 3] // 10) == 3).all()
    )


def test_shape_errors_are_explained():
    with pytest.raises(ValueError, match=r"even height and width \(whole 2x2 CFA tiles\), got 5x8: crop or pad it"):
        pack(torch.zeros(1, 1, 5, 8))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\) tensor, got shape \(1, 4, 4, 4\) \(packed raw\? unpack it"):
        pack(torch.zeros(1, 4, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        pack(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, 4, h, w\)"):
        unpack(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        mosaic(torch.zeros(1, 1, 4, 4))


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_bilinear_demosaic_reproduces_linear_images(pattern):
    """Bilinear interpolation is exact for images linear in the coordinates (away from the border)."""
    i, j = torch.meshgrid(torch.arange(12.0).double(), torch.arange(16.0).double(), indexing="ij")
    rgb = torch.stack([0.1 + 0.01 * i + 0.02 * j, 0.5 - 0.02 * i + 0.01 * j, 0.3 + 0.015 * (i + j)])[None]
    out = demosaic_bilinear(mosaic(rgb, pattern), pattern)
    torch.testing.assert_close(out[..., 1:-1, 1:-1], rgb[..., 1:-1, 1:-1], rtol=0, atol=1e-12)
    for channel, (r, c) in zip((0, 1, 1, 2), OFFSETS[pattern], strict=True):  # measured samples are kept
        assert torch.equal(out[:, channel, r::2, c::2], rgb[:, channel, r::2, c::2])


@pytest.mark.parametrize("code", TRANSFORMS)
def test_cfa_transform_round_trips_and_is_the_dihedral_transform(code):
    x = torch.rand(2, 4, 5, 7)
    y = cfa_forward(x, code)
    assert torch.equal(cfa_inverse(y, code), x)
    # The content is the dihedral transform of the mosaic (reference: the training augmentation), with a
    # one-pixel reflected border where the pattern had to be shifted back to RGGB.
    mosaic_t = dihedral(unpack(x)[0, 0].numpy()[..., None], code)[..., 0]
    seen = unpack(y)[0, 0].numpy()
    dy, dx = (seen.shape[0] - mosaic_t.shape[0]) // 2, (seen.shape[1] - mosaic_t.shape[1]) // 2
    assert dy in (0, 1) and dx in (0, 1)
    np.testing.assert_array_equal(seen[dy : seen.shape[0] - dy, dx : seen.shape[1] - dx], mosaic_t)
    np.testing.assert_array_equal(seen, np.pad(mosaic_t, ((dy, dy), (dx, dx)), mode="reflect"))


@pytest.mark.parametrize("code", TRANSFORMS)
def test_cfa_transform_keeps_colours_in_their_channels(code):
    """Fill each packed channel with its colour's number: after the transform (padding included) red is
    still in channel 0 and blue in channel 3; the two greens may trade places (transposes)."""
    x = torch.arange(4.0).view(1, 4, 1, 1).expand(1, 4, 6, 5)
    y = cfa_forward(x, code)
    assert (y[:, 0] == 0).all() and (y[:, 3] == 3).all()
    assert ((y[:, 1:3] == 1) | (y[:, 1:3] == 2)).all()


def naive_ensemble(fn, packed):
    """The ensemble WITHOUT pattern restoration (MWRCANet's way): transform the mosaic, repack as RGGB."""

    def on_mosaic(t: torch.Tensor, steps) -> torch.Tensor:
        m = unpack(t)[0, 0].numpy()[..., None]
        for code in steps:
            m = dihedral(m, code)
        return pack(torch.from_numpy(m[..., 0].copy())[None, None])

    total = torch.zeros_like(packed, dtype=torch.float64)
    for code in TRANSFORMS:
        out = fn(on_mosaic(packed, [code]))
        total += on_mosaic(out, [code & 4, code & 2, code & 1]).double()  # undo transpose, then the flips
    return (total / 8).to(packed.dtype)


def test_ensemble_of_identity_is_exact_and_colour_gains_commute():
    x = torch.rand(2, 4, 6, 9)
    assert torch.equal(cfa_self_ensemble(lambda t: t, x), x)
    assert torch.equal(cfa_self_ensemble(lambda t: t, x.double()), x.double())
    # A model that scales each colour (R x2, G x4, B x8: powers of two, so exact) must give the same
    # result through the ensemble: every run sees every pixel in its own colour's channel.
    gains = torch.tensor([2.0, 4.0, 4.0, 8.0]).view(1, 4, 1, 1)
    assert torch.equal(cfa_self_ensemble(lambda t: t * gains, x), x * gains)
    # ...which the pattern-unaware ensemble does not (so the check above can fail).
    single = x[:1, :, :4, :4]
    assert not torch.allclose(naive_ensemble(lambda t: t * gains, single), single * gains)
