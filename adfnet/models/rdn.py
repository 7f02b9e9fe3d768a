"""RDN (Zhang et al., CVPR 2018 / TPAMI 2020) with the ADFNet paper's plug-in: three MDCBs in place of
the middle residual dense block.

Structure of the RDN paper, for denoising (no upsampling): shallow feature extraction (two 3x3 convs,
F_-1 and F_0), ``blocks`` residual dense blocks (RDB: ``layers`` conv 3x3 + ReLU of growth ``growth``,
each fed the concatenation of the block input and all previous outputs; local feature fusion, a 1x1
conv back to ``channels``; local residual), global feature fusion (1x1 over the concatenated block
outputs, then 3x3), global residual (+ F_-1), a 3x3 reconstruction conv and, as in RDN's image
restoration networks, the noisy input added to the output.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .blocks import MDCB


class RDB(nn.Module):
    """Residual dense block: dense 3x3 conv + ReLU layers, local feature fusion (1x1), local residual."""

    def __init__(self, channels: int, growth: int, layers: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels + i * growth, growth, 3, padding=1), nn.ReLU(inplace=True))
            for i in range(layers)
        )
        self.lff = nn.Conv2d(channels + layers * growth, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for conv in self.convs:
            features.append(conv(torch.cat(features, 1)))
        return self.lff(torch.cat(features, 1)) + x


class RDN(nn.Module):
    """Residual dense network for denoising; ``mdcb=True`` puts three MDCBs in place of ``rdbs[blocks // 2]``.

    Each MDCB is the ADFNet class with its defaults (``mid_channels = channels``, 8 deformable groups,
    so ``channels`` must be a multiple of 8; offsets predicted by its own OffsetBlock, a 3x3 conv to 32
    channels + LReLU, from its own input). The three run in sequence and their last output stands for
    the replaced block in the global feature fusion, so the fusion width stays ``blocks * channels``.
    """

    def __init__(
        self,
        n_colors: int = 3,
        blocks: int = 6,
        channels: int = 16,
        growth: int | None = None,
        layers: int = 4,
        mdcb: bool = False,
    ) -> None:
        super().__init__()
        growth = channels if growth is None else growth
        if min(blocks, channels, growth, layers) < 1:
            raise ValueError(f"RDN blocks/channels/growth/layers must be >= 1, got {blocks, channels, growth, layers}")
        if mdcb and channels % 8:
            raise ValueError(f"RDN mdcb=True needs channels divisible by 8 (MDCB's deformable groups), got {channels}")
        self.sfe1 = nn.Conv2d(n_colors, channels, 3, padding=1)
        self.sfe2 = nn.Conv2d(channels, channels, 3, padding=1)
        rdbs: list[nn.Module] = [RDB(channels, growth, layers) for _ in range(blocks)]
        if mdcb:
            rdbs[blocks // 2] = nn.Sequential(*(MDCB(channels) for _ in range(3)))
        self.rdbs = nn.ModuleList(rdbs)
        self.gff = nn.Sequential(nn.Conv2d(blocks * channels, channels, 1), nn.Conv2d(channels, channels, 3, padding=1))
        self.tail = nn.Conv2d(channels, n_colors, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        shallow = self.sfe1(x)
        h = self.sfe2(shallow)
        outputs = []
        for block in self.rdbs:
            h = block(h)
            outputs.append(h)
        return self.tail(self.gff(torch.cat(outputs, 1)) + shallow) + x
