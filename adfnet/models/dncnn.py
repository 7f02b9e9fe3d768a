"""DnCNN (Zhang et al., TIP 2017) with the ADFNet paper's plug-in: one DConv in place of the middle conv.

The ADFNet paper's "Extension: DConv and MDCB Used in Backbones" (Fig. 7) replaces one static 3x3
convolution in the middle of DnCNN by one DConv (:class:`~adfnet.models.blocks.DConv`, the ADFNet
class itself) and compares depths 5 / 10 / 15 at 32 and 64 channels (docs/PLUGIN.md).
"""

from __future__ import annotations

from torch import Tensor, nn

from .blocks import DConv


class DnCNN(nn.Module):
    """``depth`` layers: conv + ReLU, ``depth - 2`` x (conv + BN + ReLU), conv; the output is x - noise.

    ``layers[i]`` is layer ``i + 1`` of the paper's count, a ``Sequential`` whose item 0 is its 3x3
    convolution. With ``dconv=True`` the convolution of the middle layer, ``layers[depth // 2]``, is a
    :class:`DConv` (per-pixel depthwise 3x3 kernels, ``channels`` in and out); its BN and ReLU stay.
    Residual learning as in DnCNN: the network predicts the noise and subtracts it from its input.
    """

    def __init__(self, n_colors: int = 3, depth: int = 17, channels: int = 64, dconv: bool = False) -> None:
        super().__init__()
        if depth < 3:
            raise ValueError(f"DnCNN depth must be >= 3 (first, middle and last layer), got {depth}")
        if channels < 1:
            raise ValueError(f"DnCNN channels must be >= 1, got {channels}")
        layers = [nn.Sequential(nn.Conv2d(n_colors, channels, 3, padding=1), nn.ReLU(inplace=True))]
        for i in range(1, depth - 1):
            middle = dconv and i == depth // 2
            conv = DConv(channels) if middle else nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            layers.append(nn.Sequential(conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)))
        layers.append(nn.Sequential(nn.Conv2d(channels, n_colors, 3, padding=1)))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x - self.layers(x)
