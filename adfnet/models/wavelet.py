"""The Haar wavelet transform as fixed convolutions, and the input layouts of the wavelet networks.

MWCNN (Liu et al. 2018) replaces pooling by a 2-D Haar DWT and upsampling by its inverse (IWT). Both
MWCNN-style networks of the project (:class:`~adfnet.models.mwcnn.MWCNN`,
:class:`~adfnet.models.mwrcanet.MWRCANet`) use the transform as their authors wrote it: a stride-2
convolution with four fixed 2 x 2 filters, grouped per input channel, and the transposed convolution with
the same filters. The filters are ``nn.Parameter(requires_grad=False)`` in the authors' code, so they sit
in the state_dict (``DWT.weight``, ``head.weight``, ...) and are kept as such: their checkpoints then load
strictly. Their values never change, and they count in ``parameters()`` (16 values per module).

For a 2 x 2 tile ``[[a, b], [c, d]]`` the four outputs, in the authors' order, are

    LL = (a + b + c + d) / 2,  LH = (a + b - c - d) / 2,  HL = (a - b + c - d) / 2,  HH = (a - b - c + d) / 2

(the authors list the filters flipped and flip them back before use; the table above is what the
convolution computes). The output channels are interleaved per input channel (c0: LL, LH, HL, HH; c1: ...).
The 4 x 4 matrix is orthogonal and symmetric, so the IWT is the exact inverse.

Input layouts (``n_colors``), shared by both networks through :class:`WaveletNet`:

* ``1``: one plane, ``(B, 1, H, W)``: a gray image or, MWRCANet's layout, a Bayer mosaic as stored.
  The first DWT then does the packing: each CFA tile becomes four coefficients, an orthogonal mix of its
  four colour sites. H and W must be multiples of 8 (three levels); a mosaic must be even-sized.
* ``4``: the project's packed raw, ``(B, 4, H/2, W/2)`` with channels R, Gr, Gb, B
  (:func:`adfnet.data.raw.pack`). The network unpacks it to an RGGB mosaic, runs the one-plane network
  and packs the result: the same weights serve both raw layouts, and an RGGB mosaic gives the same output
  either way. h and w must be multiples of 4.
* ``3``: sRGB, ``(B, 3, H, W)``: the DWT applies to each colour (12 sub-bands at half resolution); the
  first and last convolutions are three times wider, so the weights differ from the one-plane network's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adfnet.data.raw import pack, unpack

__all__ = ["DWT", "IWT", "LAYOUTS", "WaveletNet", "haar_filters"]

LAYOUTS = {1: "one plane (gray, or a Bayer mosaic)", 3: "sRGB", 4: "packed raw (R, Gr, Gb, B)"}


def haar_filters(dtype: torch.dtype | None = None) -> Tensor:
    """The four ``(4, 1, 2, 2)`` Haar filters LL, LH, HL, HH as the convolution uses them (module docstring)."""
    written = torch.tensor(  # the authors' listing, each flipped in both axes before use
        [[[1, 1], [1, 1]], [[-1, -1], [1, 1]], [[-1, 1], [-1, 1]], [[1, -1], [-1, 1]]],
        dtype=dtype or torch.get_default_dtype(),
    )
    return (0.5 * written.flip(-2, -1)).unsqueeze(1)


class DWT(nn.Module):
    """Haar DWT: ``(B, C, H, W)`` -> ``(B, 4C, H/2, W/2)``, sub-bands interleaved per channel."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(haar_filters(), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % 2 or w % 2:  # a stride-2 conv would drop the last row/column without a word
            raise ValueError(f"the Haar DWT needs an even height and width, got {h}x{w}")
        c = x.shape[1]
        return F.conv2d(x, self.weight.repeat(c, 1, 1, 1), stride=2, groups=c)


class IWT(nn.Module):
    """Inverse Haar DWT: ``(B, 4C, h, w)`` -> ``(B, C, 2h, 2w)``, the exact inverse of :class:`DWT`."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(haar_filters(), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] % 4:
            raise ValueError(f"the inverse Haar DWT needs a multiple of 4 channels, got {x.shape[1]}")
        c = x.shape[1] // 4
        return F.conv_transpose2d(x, self.weight.repeat(c, 1, 1, 1), stride=2, groups=c)


class WaveletNet(nn.Module):
    """Base of the 3-level wavelet networks: checks the input against the layout, unpacks packed raw.

    Subclasses build their layers for ``self.planes`` channels (what the one-plane or sRGB network sees)
    and implement :meth:`forward_planes`; ``forward`` takes the ``n_colors`` layout (module docstring).
    """

    levels = 3

    def __init__(self, n_colors: int) -> None:
        super().__init__()
        if n_colors not in LAYOUTS:
            raise ValueError(
                f"n_colors must be one of {', '.join(f'{k} ({v})' for k, v in LAYOUTS.items())}, got {n_colors!r}"
            )
        self.n_colors = n_colors
        self.planes = 1 if n_colors == 4 else n_colors
        # What inference pads to (adfnet.inference.size_multiple): packed raw is at half the mosaic's size.
        self.size_multiple = 2**self.levels // (2 if n_colors == 4 else 1)

    def forward_planes(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        if self.n_colors == 4:
            return pack(self.forward_planes(unpack(x)))
        return self.forward_planes(x)

    def check_input(self, x: Tensor) -> None:
        """``ValueError`` naming the fix for a tensor of the wrong layout or size."""
        name = type(self).__name__
        if x.dim() != 4:
            raise ValueError(f"{name} takes a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
        c, (h, w) = x.shape[1], x.shape[-2:]
        if c == 4 and self.n_colors == 1:
            raise ValueError(
                f"{name} (n_colors=1) takes one plane (B, 1, H, W), the Bayer mosaic as stored (or a gray image), "
                "but got 4 channels: packed raw? Unpack it (adfnet.data.raw.unpack) or build the model with "
                "n_colors=4"
            )
        if c == 1 and self.n_colors == 4:
            raise ValueError(
                f"{name} (n_colors=4) takes packed raw (B, 4, H/2, W/2) in the order R, Gr, Gb, B, but got one "
                "plane: a Bayer mosaic? Pack it (adfnet.data.raw.pack) or build the model with n_colors=1"
            )
        if c != self.n_colors:
            raise ValueError(f"{name} was built for n_colors={self.n_colors} ({LAYOUTS[self.n_colors]}), got {c}")
        if self.n_colors == 1 and (h % 2 or w % 2):
            raise ValueError(
                f"{name}: a Bayer mosaic needs an even height and width (whole 2x2 CFA tiles), got {h}x{w}: crop "
                "or pad it to an even size, then to a multiple of 8"
            )
        m = self.size_multiple
        if h % m or w % m:
            raise ValueError(
                f"{name} needs H and W divisible by {m} ({self.levels} Haar levels), got {h}x{w}: pad the input "
                "first, e.g. `x, size = adfnet.inference.pad_to_multiple(x, model.size_multiple)`, then crop the "
                "output to `size` (adfnet.inference.denoise does this; its reflection keeps a Bayer pattern)"
            )
