"""SADNet: spatial-adaptive denoising network (Chang, Li, Feng, Wang, Lu; ECCV 2020).

A 4-level encoder-decoder: residual blocks (``ResBlock``) and stride-2 convs down, a multi-dilation
``ContextBlock`` at the bottom, then one residual spatial-adaptive block (``RSABlock``, a modulated
deformable conv) per decoder level. Each level's ``OffsetBlock`` turns the features into the
features the DCN predicts its offsets and masks from, and is also given the coarser level's offset
features (upsampled x2 and doubled, since a displacement of one coarse pixel spans two fine ones):
the "offset transfer" of the paper.

Attribute names are the authors' (``model/sadnet.py`` of github.com/JimmyChame/SADNet), so their
raw state_dicts (``model_%04d_dict.pth``) load strictly. The deformable conv is the project's
``dcn`` operator (``ModulatedDeformConvPack`` has the authors' ``weight``/``bias``/``conv_offset_mask``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import dcn

from . import blocks
from .blocks import _conv, _dcn, _lrelu

__all__ = ["ContextBlock", "OffsetBlock", "RSABlock", "ResBlock", "SADNet"]

DEFORMABLE_GROUPS = 8  # fixed in the release (216 = 8 groups x 3 x 9 offset/mask channels)


class ResBlock(nn.Module):
    """Encoder block: [1x1 conv to ``out_channels`` if the widths differ], then x + conv(LReLU(conv(x)))."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if in_channels != out_channels:
            self.conv0 = nn.Conv2d(in_channels, out_channels, 1)
        self.conv1 = _conv(out_channels, out_channels)
        self.conv2 = _conv(out_channels, out_channels)
        self.lrelu = _lrelu()

    def forward(self, x: Tensor) -> Tensor:
        if hasattr(self, "conv0"):
            x = self.conv0(x)
        return x + self.conv2(self.lrelu(self.conv1(x)))


class RSABlock(nn.Module):
    """Residual spatial-adaptive block: x + conv(LReLU(DCN(x, offsets from ``offset_features``)))."""

    def __init__(self, channels: int, offset_channels: int = 32) -> None:
        super().__init__()
        self.dcnpack = _dcn(channels, offset_channels, DEFORMABLE_GROUPS)
        self.conv1 = _conv(channels, channels)
        self.lrelu = _lrelu()

    def forward(self, x: Tensor, offset_features: Tensor) -> Tensor:
        return self.conv1(self.lrelu(self.dcnpack([x, offset_features]))) + x


class OffsetBlock(blocks.OffsetBlock):
    """ADFNet's offset features (3x3 conv + LReLU), refined with the coarser level's ones.

    ``coarser=True`` (every decoder level but the lowest) adds ``offset_conv2``, which fuses the
    concatenation with the coarser offset features upsampled x2 (bilinear) and multiplied by 2;
    ``offset_conv3`` + LReLU always follows.
    """

    def __init__(self, in_channels: int, offset_channels: int = 32, coarser: bool = False) -> None:
        super().__init__(in_channels, offset_channels)
        if coarser:
            self.offset_conv2 = _conv(2 * offset_channels, offset_channels)
        self.offset_conv3 = _conv(offset_channels, offset_channels)

    def forward(self, x: Tensor, coarser: Tensor | None = None) -> Tensor:  # type: ignore[override]
        offset = super().forward(x)
        if coarser is not None:
            coarser = F.interpolate(coarser, scale_factor=2, mode="bilinear", align_corners=False)
            offset = self.lrelu(self.offset_conv2(torch.cat([offset, 2 * coarser], 1)))
        return self.lrelu(self.offset_conv3(offset))


class ContextBlock(nn.Module):
    """Bottleneck context: 1x1 reduction, four 3x3 convs at dilations 1-4 (+ LReLU), 1x1 fusion, plus x."""

    def __init__(self, channels: int, mid_channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, mid_channels, 1)
        self.conv1 = _conv(mid_channels, mid_channels, dilation=1)
        self.conv2 = _conv(mid_channels, mid_channels, dilation=2)
        self.conv3 = _conv(mid_channels, mid_channels, dilation=3)
        self.conv4 = _conv(mid_channels, mid_channels, dilation=4)
        self.fusion = nn.Conv2d(4 * mid_channels, channels, 1)
        self.lrelu = _lrelu()

    def forward(self, x: Tensor) -> Tensor:
        reduced = self.conv0(x)
        branches = [self.lrelu(conv(reduced)) for conv in (self.conv1, self.conv2, self.conv3, self.conv4)]
        return self.fusion(torch.cat(branches, 1)) + x


class SADNet(nn.Module):
    """SADNet; the output is the denoised image (the network predicts a residual added to the input).

    Args:
        n_colors: input/output channels (1 gray, 3 colour or real noise).
        n_channel: width of the first level (levels are n, 2n, 4n, 8n); 32 in the paper.
        offset_channel: width of the offset features; 32 in the paper.

    H and W must be multiples of ``size_multiple`` (three stride-2 levels).
    """

    size_multiple = 8

    def __init__(self, n_colors: int = 3, n_channel: int = 32, offset_channel: int = 32) -> None:
        super().__init__()
        n1, n2, n3, n4 = n_channel, 2 * n_channel, 4 * n_channel, 8 * n_channel
        if n1 % DEFORMABLE_GROUPS:
            raise ValueError(f"n_channel must be a multiple of {DEFORMABLE_GROUPS} (the DCN groups), got {n1}")
        self.res1 = ResBlock(n_colors, n1)
        self.down1 = nn.Conv2d(n1, n2, 2, 2)
        self.res2 = ResBlock(n2, n2)
        self.down2 = nn.Conv2d(n2, n3, 2, 2)
        self.res3 = ResBlock(n3, n3)
        self.down3 = nn.Conv2d(n3, n4, 2, 2)
        self.res4 = ResBlock(n4, n4)

        self.context = ContextBlock(n4, n2)
        self.offset4 = OffsetBlock(n4, offset_channel)
        self.dres4 = RSABlock(n4, offset_channel)

        self.up3 = nn.ConvTranspose2d(n4, n3, 2, 2)
        self.dconv3_1 = nn.Conv2d(2 * n3, n3, 1)
        self.offset3 = OffsetBlock(n3, offset_channel, coarser=True)
        self.dres3 = RSABlock(n3, offset_channel)

        self.up2 = nn.ConvTranspose2d(n3, n2, 2, 2)
        self.dconv2_1 = nn.Conv2d(2 * n2, n2, 1)
        self.offset2 = OffsetBlock(n2, offset_channel, coarser=True)
        self.dres2 = RSABlock(n2, offset_channel)

        self.up1 = nn.ConvTranspose2d(n2, n1, 2, 2)
        self.dconv1_1 = nn.Conv2d(2 * n1, n1, 1)
        self.offset1 = OffsetBlock(n1, offset_channel, coarser=True)
        self.dres1 = RSABlock(n1, offset_channel)

        self.out = _conv(n1, n_colors)
        self.lrelu = _lrelu()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The release's initialisation (its train.py calls ``initialize_weights`` on the network).

        Every Conv2d/ConvTranspose2d, the DCN offset/mask predictors included (so training starts
        from non-zero offsets, unlike ADFNet), gets Xavier-uniform weights and zero biases; the DCN
        main weights keep U(+-1/sqrt(fan_in)) with zero biases.
        """
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, dcn.ModulatedDeformConv):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % self.size_multiple or w % self.size_multiple:
            raise ValueError(
                f"SADNet needs H and W divisible by {self.size_multiple}, got {h}x{w}: pad the input first, e.g. "
                "`x, size = adfnet.inference.pad_to_multiple(x)`, then crop the output to `size` "
                "(adfnet.inference.denoise and test.py do this for you)"
            )
        conv1 = self.res1(x)
        conv2 = self.res2(self.lrelu(self.down1(conv1)))
        conv3 = self.res3(self.lrelu(self.down2(conv2)))
        conv4 = self.context(self.res4(self.lrelu(self.down3(conv3))))

        offset4 = self.offset4(conv4)
        y = self.dres4(conv4, offset4)
        y = self.dconv3_1(torch.cat([self.up3(y), conv3], 1))
        offset3 = self.offset3(y, offset4)
        y = self.dres3(y, offset3)
        y = self.dconv2_1(torch.cat([self.up2(y), conv2], 1))
        offset2 = self.offset2(y, offset3)
        y = self.dres2(y, offset2)
        y = self.dconv1_1(torch.cat([self.up1(y), conv1], 1))
        y = self.dres1(y, self.offset1(y, offset2))
        return self.out(y) + x
