"""MWRCANet and MWResNet: the multi-level wavelet networks of the NTIRE 2020 raw-denoising winner.

Cao, Zhang, Zuo et al., github.com/happycaoyue/NTIRE20_raw_image_denoising_winner_MWRCANet. The release
holds the network ``Dn_RAW_MWRCANet/net/mwrcanet.py`` (``Net``) and its validation scripts, nothing else:
:class:`MWRCANet` with its defaults is that network as ``DN_valid_SIDD.py`` builds it (one Bayer plane in,
96 / 128 / 128 channels, 20 blocks per group; 27,216,061 parameters including the 96 fixed Haar values
of its six DWT/IWT modules), with the authors' attribute names so that their checkpoint
(``{'state_dict': ...}`` with ``module.`` prefixes) loads strictly through :func:`adfnet.checkpoint.load_weights`.

The README's figure draws two block groups at the bottom level; the released code has one (``middle``),
and so does this class.

Self-ensembles: :func:`authors_self_ensemble` is the x8 of ``DN_valid_SIDD.py`` (the plain geometric
ensemble on the mosaic as it is, then clamped), under which six of the eight passes see a CFA pattern
other than the input's; :func:`cfa_ensemble` is the project's CFA-aware x8
(:func:`adfnet.data.raw.cfa_self_ensemble`), under which every pass sees the input's own pattern.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from adfnet.data.raw import cfa_self_ensemble, pack, unpack

from .wavelet import DWT, IWT, WaveletNet

__all__ = ["BLOCKS", "CALayer", "MWRCANet", "NRB", "RB", "authors_self_ensemble", "cfa_ensemble"]

BLOCKS = ("rcab", "res")
REDUCTION = 16  # channel attention squeezes the width by 16 (the authors' CALayer default)


class CALayer(nn.Module):
    """Channel attention (RCAN): global average, 1x1 conv down by 16, ReLU, 1x1 conv up, sigmoid gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // REDUCTION, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // REDUCTION, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv_du(self.avg_pool(x))


class RB(nn.Module):
    """Residual block ``x + f(x)``: ``block="rcab"`` the RCAB of MWRCANet (conv, PReLU, conv, channel attention),
    ``block="res"`` MWResNet's plain block (conv, ReLU, conv, as the README's figure draws it)."""

    def __init__(self, channels: int, block: str = "rcab") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.PReLU() if block == "rcab" else nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.cuca = CALayer(channels) if block == "rcab" else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.act(self.conv1(x)))
        if self.cuca is not None:
            y = self.cuca(y)
        return y + x


class NRB(nn.Module):
    """A group of ``n`` residual blocks and a 3x3 conv, with a skip over the group (the figure's "RG")."""

    def __init__(self, n: int, channels: int, block: str = "rcab") -> None:
        super().__init__()
        self.body = nn.Sequential(*(RB(channels, block) for _ in range(n)))
        self.tail = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.tail(self.body(x))


def _widen(channels_in: int, channels_out: int) -> list[nn.Module]:
    return [nn.Conv2d(channels_in, channels_out, 3, padding=1), nn.PReLU()]


class MWRCANet(WaveletNet):
    """MWRCANet (``block="rcab"``) or MWResNet (``block="res"``): a 3-level Haar U-Net of block groups.

    Level k: DWT, 3x3 conv + PReLU to the level's width, a group of ``n_rb`` blocks (:class:`NRB`); at the
    bottom one group; back up: conv + PReLU to 4x the finer width, IWT, plus the finer level's features; the
    last conv returns to the DWT coefficients of the input, which are added before the final IWT. There is
    no other skip: the output is the IWT of (input coefficients + correction).

    Args:
        n_colors: the input layout (:mod:`adfnet.models.wavelet`): 1 (one Bayer plane, the authors'), 4
            (packed raw, run as an RGGB mosaic with the same weights) or 3 (sRGB).
        filters_level1, filters_level2, filters_level3: widths of the three levels (96, 128, 128).
        n_rb: blocks per group (20).
        block: ``"rcab"`` (MWRCANet) or ``"res"`` (MWResNet).

    MWResNet, the authors' "original network", was never released: it is built here from the README's
    description and figure (a multi-level wavelet ResNet whose residual blocks the architecture search
    replaced by RCABs, the search space being the block type, number and width): the same network with
    plain residual blocks (conv, ReLU, conv, skip), groups of 4 (``build_model("mwresnet")``). Its widths
    are not given; MWRCANet's are used. The figure also draws ReLU after the level convs where MWRCANet
    has PReLU; they are kept as PReLU so that the two networks differ in their blocks only.

    With the published configuration the weights keep PyTorch's default initialisation (the authors'
    ``_initialize_weights`` is never called). H and W must be multiples of ``size_multiple``.
    """

    def __init__(
        self,
        n_colors: int = 1,
        filters_level1: int = 96,
        filters_level2: int = 128,
        filters_level3: int = 128,
        n_rb: int = 20,
        block: str = "rcab",
    ) -> None:
        super().__init__(n_colors)
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {', '.join(BLOCKS)}, got {block!r}")
        f0, f1, f2, f3 = 4 * self.planes, filters_level1, filters_level2, filters_level3
        if block == "rcab" and min(f1, f2, f3) < REDUCTION:
            raise ValueError(
                f"RCAB channel attention divides the width by {REDUCTION}: every filters_level must be at least "
                f"{REDUCTION}, got {f1}, {f2}, {f3}"
            )
        self.block = block
        self.head = DWT()
        self.down1 = nn.Sequential(*_widen(f0, f1), NRB(n_rb, f1, block))
        self.down2 = nn.Sequential(DWT(), *_widen(4 * f1, f2), NRB(n_rb, f2, block))
        self.down3 = nn.Sequential(DWT(), *_widen(4 * f2, f3))
        self.middle = NRB(n_rb, f3, block)
        self.up1 = nn.Sequential(*_widen(f3, 4 * f2), IWT())
        self.up2 = nn.Sequential(NRB(n_rb, f2, block), *_widen(f2, 4 * f1), IWT())
        self.up3 = nn.Sequential(NRB(n_rb, f1, block), nn.Conv2d(f1, f0, 3, padding=1))
        self.tail = IWT()

    def forward_planes(self, x: Tensor) -> Tensor:
        c1 = self.head(x)
        c2 = self.down1(c1)
        c3 = self.down2(c2)
        y = self.up1(self.middle(self.down3(c3))) + c3
        y = self.up2(y) + c2
        return self.tail(self.up3(y) + c1)


def authors_self_ensemble(model: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """The x8 self-ensemble of the authors' ``DN_valid_SIDD.py``, clamped to [0, 1].

    They run the network on ``rot90(x, k)``, k = 0..3, and on each of those flipped, undo each transform
    on its output, average and clamp: :func:`adfnet.inference.self_ensemble` (the same 8 transforms), then
    the clamp. On a Bayer mosaic a flip or an odd rotation changes the CFA pattern (RGGB becomes GRBG,
    GBRG or BGGR), so most passes show the network a pattern it was not trained on; :func:`cfa_ensemble`
    avoids that. ``x`` is any layout the model takes, as is (no padding).
    """
    from adfnet.inference import self_ensemble  # the inference layer; imported here so models stay without it

    return self_ensemble(model, x).clamp(0.0, 1.0)


def cfa_ensemble(model: WaveletNet, x: Tensor, pattern: str = "RGGB") -> Tensor:
    """The project's CFA-aware x8 self-ensemble of a raw model, clamped to [0, 1].

    ``x`` is a Bayer mosaic in ``pattern`` for a one-plane model (``n_colors=1``), or packed raw for a
    ``n_colors=4`` model (``pattern`` is then unused: packed channels are named by colour). Each of the 8
    dihedral transforms is applied to the mosaic and the pattern is shifted back by a one-pixel
    reflection (:func:`adfnet.data.raw.cfa_forward`), so every pass shows the network the input's own
    pattern; the sizes the shifts produce are reflect-padded to the model's multiple and cropped back.
    """
    from adfnet.inference import pad_to_multiple  # see authors_self_ensemble

    if model.n_colors not in (1, 4):
        raise ValueError(f"cfa_ensemble is for raw models (n_colors 1 or 4), got n_colors={model.n_colors}")
    multiple = model.size_multiple // (2 if model.n_colors == 1 else 1)  # on the packed grid

    def run(packed: Tensor) -> Tensor:
        padded, (h, w) = pad_to_multiple(packed, multiple)
        y = model(padded) if model.n_colors == 4 else pack(model(unpack(padded, pattern)), pattern)
        return y[..., :h, :w]

    packed = x if model.n_colors == 4 else pack(x, pattern)
    out = cfa_self_ensemble(run, packed).clamp(0.0, 1.0)
    return out if model.n_colors == 4 else unpack(out, pattern)
