"""ADFNet building blocks under their paper names: CB, MCB, SEKG, DConv, DCB, MDCB, MFI.

Each block maps (B, C, H, W) to the same shape and can be used in other backbones. Attribute names
follow the official release (state_dict compatibility), which is why some read oddly (``afg``,
``generate_kernel``, ``branch_1/3/5``, the MFI held in ``attention``). Constructor arguments:

* ``CB(channels)``, ``DCB(channels)``, ``DConv(channels)``, ``SEKG(channels)``, ``MFI()``;
* ``MCB(channels, mid_channels=None, offset_channels=32, deformable_groups=8, mfi=True)`` and the same
  for ``MDCB``: ``mid_channels`` (default ``channels``) is the width of the multi-scale branches,
  ``offset_channels`` the width of the features the DCN predicts its offsets from,
  ``deformable_groups`` must divide ``channels``; ``mfi=False`` fuses the concatenation without MFI.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from dcn import ModulatedDeformConvPack

from .ops import conv_add, conv_lrelu, dynamic_filter, generated_filter, get_formulation, mfi_fusion

__all__ = ["CB", "DCB", "MCB", "MDCB", "MFI", "SEKG", "AFG", "DConv", "DynamicBranch", "OffsetBlock", "dynamic_filter"]


def _conv(in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation)


def _lrelu() -> nn.LeakyReLU:
    # In place is safe: every activation follows a conv, DCN or dynamic filter, none of which
    # needs its output for the backward pass.
    return nn.LeakyReLU(0.2, inplace=True)


def _dcn(channels: int, offset_channels: int, deformable_groups: int) -> ModulatedDeformConvPack:
    """3x3 DCNv2 called with ``[x, offset_features]`` (its offsets come from the features)."""
    return ModulatedDeformConvPack(
        channels,
        channels,
        3,
        1,
        1,
        deformable_groups=deformable_groups,
        extra_offset_mask=True,
        offset_in_channel=offset_channels,
    )


class OffsetBlock(nn.Module):
    """3x3 conv + LReLU: the features from which a DCN predicts its offsets and masks."""

    def __init__(self, in_channels: int, offset_channels: int = 32) -> None:
        super().__init__()
        self.offset_conv1 = _conv(in_channels, offset_channels)
        self.lrelu = _lrelu()

    def forward(self, x: Tensor) -> Tensor:
        return conv_lrelu(self.offset_conv1, self.lrelu, x)


class CB(nn.Module):
    """Convolution block: conv, conv, LReLU, conv, plus the input (one activation only, as released)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv(channels, channels)
        self.conv2 = _conv(channels, channels)
        self.conv3 = _conv(channels, channels)
        self.lrelu = _lrelu()

    def forward(self, x: Tensor) -> Tensor:
        return conv_add(self.conv3, conv_lrelu(self.conv2, self.lrelu, self.conv1(x)), x)


class MFI(nn.Module):
    """Multi-dimension feature integration (parameter-free): channel, then row and column gates.

    X = a_c * F with a_c = 2 sigmoid(mean over H, W); then X + a_h * X + a_w * X with a_h, a_w the
    same gate over (channels, W) and (channels, H) of X. The factor 2 is in the released code.
    """

    def forward(self, x: Tensor) -> Tensor:
        x = 2 * torch.sigmoid(x.mean((2, 3), keepdim=True)) * x
        rows = 2 * torch.sigmoid(x.mean((1, 3), keepdim=True))
        cols = 2 * torch.sigmoid(x.mean((1, 2), keepdim=True))
        return x + rows * x + cols * x


class SEKG(nn.Module):
    """Spatial-enhanced kernel generation: depthwise 3x3 conv plus an ECA-style channel term.

    The channel term (global average, Conv1d over the channel axis) is added, not used as a
    sigmoid gate: the released code has no sigmoid.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_sa = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.conv_ca = nn.Conv1d(1, 1, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        channel = self.conv_ca(x.mean((2, 3)).unsqueeze(1)).view(b, c, 1, 1)
        return self.conv_sa(x).add_(channel)


class AFG(nn.Module):
    """Adaptive filter generation: SEKG, then a 1x1 conv to 9 kernel taps per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.sekg = SEKG(channels)
        self.conv = nn.Conv2d(channels, 9 * channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.sekg(x))


class DConv(nn.Module):
    """Dynamic convolution: per-pixel depthwise 3x3 kernels predicted from the input itself."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.afg = AFG(channels)

    def forward(self, x: Tensor) -> Tensor:
        # afg(x) = afg.conv(afg.sekg(x)), the pixel-wise last step left to generated_filter
        return generated_filter(x, self.afg.sekg(x), self.afg.conv, (1,))[0]


class DCB(nn.Module):
    """Dynamic convolution block: conv, DConv, LReLU, conv, plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv(channels, channels)
        self.dyconv = DConv(channels)
        self.lrelu = _lrelu()
        self.conv2 = _conv(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return conv_add(self.conv2, self.lrelu(self.dyconv(self.conv1(x))), x)


def _integrate(block: MCB | MDCB, parts: Iterator[Tensor], x: Tensor) -> Tensor:
    """fusion(attention(cat(parts))) + x; with MFI in the fast formulation, folded into the fusion
    part by part, each part made (``parts`` is a generator) only once the previous one is folded."""
    if isinstance(block.attention, MFI) and get_formulation() == "fast":
        return mfi_fusion(parts, block.fusion, x)
    return block.fusion(block.attention(torch.cat(list(parts), 1))) + x


class MCB(nn.Module):
    """Multi-scale convolution block: DCN path, then static 3x3 convs at dilations 1, 3, 5.

    x0 = [1x1 to mid](conv(LReLU(DCN(x)))); out = fusion(MFI(cat[x0, b1, b3, b5])) + x with
    b_d = LReLU(conv_d(x0)).
    """

    def __init__(
        self,
        channels: int,
        mid_channels: int | None = None,
        offset_channels: int = 32,
        deformable_groups: int = 8,
        mfi: bool = True,
    ) -> None:
        super().__init__()
        mid = mid_channels or channels
        self.dcn = nn.Sequential(
            _dcn(channels, offset_channels, deformable_groups), _lrelu(), _conv(channels, channels)
        )
        self.offset = OffsetBlock(channels, offset_channels)
        self.conv = nn.Conv2d(channels, mid, 1) if mid != channels else nn.Identity()
        self.conv1 = _conv(mid, mid, dilation=1)
        self.conv2 = _conv(mid, mid, dilation=3)
        self.conv3 = _conv(mid, mid, dilation=5)
        self.fusion = nn.Conv2d(4 * mid, channels, 1)
        self.lrelu = _lrelu()
        self.attention = MFI() if mfi else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x0 = self.conv(self.dcn([x, self.offset(x)]))
        branches = (conv_lrelu(conv, self.lrelu, x0) for conv in (self.conv1, self.conv2, self.conv3))
        return _integrate(self, itertools.chain([x0], branches), x)


class DynamicBranch(nn.Module):
    """One MDCB scale: the input dynamically filtered at ``dilation`` (by the MDCB, which shares
    one kernel tensor among its scales), then 3x3 conv + LReLU."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.fuse = _conv(channels, channels)
        self.lrelu = _lrelu()

    def forward(self, filtered: Tensor) -> Tensor:
        return conv_lrelu(self.fuse, self.lrelu, filtered)

    def extra_repr(self) -> str:
        return f"dilation={self.dilation}"


class MDCB(nn.Module):
    """Multi-scale dynamic convolution block.

    One set of per-pixel kernels, generated from the full-width input by DCN, LReLU, SEKG and a 1x1
    conv, filters the reduced input xr (1x1 to mid, only if the widths differ) at dilations 1, 3 and
    5; out = fusion(MFI(cat[xr, b1, b3, b5])) + x.
    """

    def __init__(
        self,
        channels: int,
        mid_channels: int | None = None,
        offset_channels: int = 32,
        deformable_groups: int = 8,
        mfi: bool = True,
    ) -> None:
        super().__init__()
        mid = mid_channels or channels
        self.conv = nn.Conv2d(channels, mid, 1) if mid != channels else nn.Identity()
        self.offset = OffsetBlock(channels, offset_channels)
        self.generate_kernel = nn.Sequential(
            _dcn(channels, offset_channels, deformable_groups),
            _lrelu(),
            SEKG(channels),
            nn.Conv2d(channels, 9 * mid, 1),
        )
        self.branch_1 = DynamicBranch(mid, 1)
        self.branch_3 = DynamicBranch(mid, 3)
        self.branch_5 = DynamicBranch(mid, 5)
        self.fusion = nn.Conv2d(4 * mid, channels, 1)
        self.attention = MFI() if mfi else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        *generate, to_kernels = self.generate_kernel  # the last step, a 1x1 conv, is left to generated_filter
        features = x, self.offset(x)
        for layer in generate:
            features = layer(features)
        xr = self.conv(x)
        branches = (self.branch_1, self.branch_3, self.branch_5)
        filtered = generated_filter(xr, features, to_kernels, [branch.dilation for branch in branches])
        del features
        # each filtered map is freed once its branch has used it
        return _integrate(self, itertools.chain([xr], (branch(filtered.pop(0)) for branch in branches)), x)
