"""MWCNN, the multi-level wavelet CNN (Liu et al., CVPRW 2018) as DBSN uses it: its distillation student.

The configuration is the one of DBSN's ``dbsn_gray/net/mwcnn_gray.py`` (github.com/XHWXD/DBSN), which
``gray_kd_train.py`` builds without arguments: gray in and out, three Haar levels of 160 / 256 / 256
channels, four 3x3 conv + ReLU per block, residual sums in the wavelet domain, no output activation or
clamp; 16,145,924 parameters including the 32 fixed Haar values. Attribute names are the authors', so
their state_dicts load strictly.
"""

from __future__ import annotations

from torch import Tensor, nn

from .wavelet import DWT, IWT, WaveletNet

__all__ = ["MWCNN", "ConvBlock"]


class ConvBlock(nn.Module):
    """Four 3x3 convs with ReLU between ``widths[0]`` ... ``widths[4]``; ``relu_last=False`` leaves the last bare."""

    def __init__(self, widths: tuple[int, int, int, int, int], relu_last: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers.append(nn.Conv2d(cin, cout, 3, padding=1))
            if relu_last or i < 3:
                layers.append(nn.ReLU(inplace=True))
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class MWCNN(WaveletNet):
    """MWCNN; each level's decoder output is added to that level's DWT coefficients before the IWT.

    Args:
        n_colors: the input layout (:mod:`adfnet.models.wavelet`): 1 (gray, the authors'), 3 (sRGB) or
            4 (packed raw, run as an RGGB mosaic).
        filters_level1, filters_level2, filters_level3: widths of the three levels (160, 256, 256).

    Encoder ``level{k}_prev`` widens the DWT coefficients to the level's width; decoder ``level{k}_next``
    narrows back to as many channels as the DWT gave, the last conv of level 1 without ReLU. The convs are
    initialised orthogonally with zero biases, as the authors' constructor does. H and W must be
    multiples of ``size_multiple``.
    """

    def __init__(
        self, n_colors: int = 1, filters_level1: int = 160, filters_level2: int = 256, filters_level3: int = 256
    ) -> None:
        super().__init__(n_colors)
        c0, c1, c2, c3 = 4 * self.planes, filters_level1, filters_level2, filters_level3
        self.level1_prev = ConvBlock((c0, c1, c1, c1, c1))
        self.level1_next = ConvBlock((c1, c1, c1, c1, c0), relu_last=False)
        self.level2_prev = ConvBlock((4 * c1, c2, c2, c2, c2))
        self.level2_next = ConvBlock((c2, c2, c2, c2, 4 * c1))
        self.level3_prev = ConvBlock((4 * c2, c3, c3, c3, c3))
        self.level3_next = ConvBlock((c3, c3, c3, c3, 4 * c2))
        self.reset_parameters()
        self.DWT = DWT()  # one module for the three levels, one for the inverse (the authors' keys)
        self.IWT = IWT()

    def reset_parameters(self) -> None:
        """Orthogonal conv weights and zero biases (the authors' ``_initialize_weights``)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.orthogonal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_planes(self, x: Tensor) -> Tensor:
        dwt1 = self.DWT(x)
        dwt2 = self.DWT(self.level1_prev(dwt1))
        dwt3 = self.DWT(self.level2_prev(dwt2))
        y = self.IWT(self.level3_next(self.level3_prev(dwt3)) + dwt3)
        y = self.IWT(self.level2_next(y) + dwt2)
        return self.IWT(self.level1_next(y) + dwt1)
