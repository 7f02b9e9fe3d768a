"""ADFNet: a 4-level encoder-decoder with dynamic filtering blocks in the decoder (AAAI 2023)."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from adfnet.runtime import release_free_memory_before
from dcn._ext import large_block_cache

from .blocks import CB, DCB, MCB, MDCB
from .ops import channels_last_cpu, conv_lrelu

PLACEMENTS = ("decoder", "encoder", "everywhere")


class Stage(nn.Module):
    """One level's feature extraction: ``fe`` = [single-scale block, multi-scale block]."""

    def __init__(self, single: nn.Module, multi: nn.Module) -> None:
        super().__init__()
        self.fe = nn.Sequential(single, multi)

    def forward(self, x: Tensor) -> Tensor:
        return self.fe(x)


def _bytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


class ADFNet(nn.Module):
    """ADFNet; the output is the denoised image (the network predicts a residual added to the input).

    Args:
        n_colors: input/output channels (1 gray, 3 colour).
        widths: channels at the four resolutions; (32, 64, 128, 256) is ADFNet, (64, 128, 256, 512)
            ADFNet-L (the paper's ADFNet*). The multi-scale blocks work at mid widths
            (w1, w2, w2, w3) in the encoder and (w2, w2, w1) in the decoder, as released.

    Ablations of the paper's Table 4 (defaults give ADFNet; the state_dict changes otherwise):
        placement: where the dynamic pair DCB + MDCB goes; the other levels get CB + MCB.
            ``"decoder"`` (ADFNet, "only in the decoder"), ``"encoder"`` ("only in the encoder":
            fe1-fe3 and the bottleneck cfe) or ``"everywhere"`` ("DCB and MDCB everywhere").
        dcb: False puts a CB where a DCB would be ("without DCB").
        mdcb: False puts an MCB where an MDCB would be ("without MDCB"); with ``dcb=False`` as well
            this is "without DCB and MDCB" (CB + MCB at every level).
        mfi: False fuses the concatenated branches with the 1x1 conv directly, in every MCB and
            MDCB ("without MFI").

    H and W must be multiples of 8 (three stride-2 levels); pad first, e.g. with
    ``adfnet.inference.pad_to_multiple``.
    """

    size_multiple = 8  # 2**3: inference pads to it, training patches and complexity sizes must be multiples of it

    def __init__(
        self,
        n_colors: int = 3,
        widths: tuple[int, int, int, int] = (32, 64, 128, 256),
        *,
        placement: str = "decoder",
        dcb: bool = True,
        mdcb: bool = True,
        mfi: bool = True,
    ) -> None:
        super().__init__()
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        dyn_enc = placement in ("encoder", "everywhere")
        dyn_dec = placement in ("decoder", "everywhere")

        def stage(channels: int, mid: int, dynamic: bool) -> Stage:
            single = DCB(channels) if dynamic and dcb else CB(channels)
            multi = (MDCB if dynamic and mdcb else MCB)(channels, mid, mfi=mfi)
            return Stage(single, multi)

        n1, n2, n3, n4 = widths
        self.head = nn.Conv2d(n_colors, n1, 3, padding=1)
        self.fe1 = stage(n1, n1, dyn_enc)
        self.down1 = nn.Conv2d(n1, n2, 3, 2, 1)
        self.fe2 = stage(n2, n2, dyn_enc)
        self.down2 = nn.Conv2d(n2, n3, 3, 2, 1)
        self.fe3 = stage(n3, n2, dyn_enc)
        self.down3 = nn.Conv2d(n3, n4, 3, 2, 1)
        self.cfe = stage(n4, n3, dyn_enc)
        self.up3 = nn.ConvTranspose2d(n4, n3, 6, 2, 2)
        self.dfe3 = stage(n3, n2, dyn_dec)
        self.up2 = nn.ConvTranspose2d(n3, n2, 6, 2, 2)
        self.dfe2 = stage(n2, n2, dyn_dec)
        self.up1 = nn.ConvTranspose2d(n2, n1, 6, 2, 2)
        self.dfe1 = stage(n1, n1, dyn_dec)
        self.tail = nn.Conv2d(n1, n_colors, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % 8 or w % 8:
            raise ValueError(
                f"ADFNet needs H and W divisible by 8, got {h}x{w}: pad the input first, e.g. "
                "`x, size = adfnet.inference.pad_to_multiple(x)`, then crop the output to `size` "
                "(adfnet.inference.denoise and test.py do this for you)"
            )
        channels_last = channels_last_cpu(x)  # then run in oneDNN's fast layout, return NCHW
        # CPU inference: large maps reuse the freed ones' pages instead of faulting fresh ones (dcn's
        # large_block_cache), and the heap is trimmed before the larger decoder stages (adfnet.runtime)
        inference = channels_last and not torch.is_grad_enabled()
        with large_block_cache() if inference else contextlib.nullcontext():
            return self._forward(x, channels_last, inference)

    def _forward(self, x: Tensor, channels_last: bool, trim: bool) -> Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        c1 = self.fe1(self.head(x))
        c2 = self.fe2(conv_lrelu(self.down1, self.lrelu, c1))
        c3 = self.fe3(conv_lrelu(self.down2, self.lrelu, c2))
        y = self.cfe(conv_lrelu(self.down3, self.lrelu, c3))
        # Each skip is released once added, so that it is not held through the finer decoder levels
        # (without autograd): the full-resolution skip would otherwise sit beside the peak of the last level.
        y = self.up3(y).add_(c3)
        del c3
        y = self.up2(self.dfe3(y)).add_(c2)
        del c2
        # larger stages next: the freed heap memory back, unless their maps reuse it
        if trim:
            release_free_memory_before(_bytes(y))
        y = self.up1(self.dfe2(y)).add_(c1)
        del c1
        if trim:
            release_free_memory_before(_bytes(y))
        out = self.tail(self.dfe1(y))
        out = out.add_(x) if out.dtype == x.dtype else x + out  # reduced precision: the residual added in x's
        return out.contiguous() if channels_last else out
