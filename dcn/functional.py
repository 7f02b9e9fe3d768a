"""TEMPORARY stub (to be replaced by the dcn-py work): torchvision only, no checks."""

from __future__ import annotations

import torch
from torch.nn.modules.utils import _pair
from torchvision.ops import deform_conv2d


def modulated_deform_conv(input, offset, mask, weight, bias, stride, padding, dilation, groups, deformable_groups) -> torch.Tensor:
    return deform_conv2d(input, offset, weight, bias, _pair(stride), _pair(padding), _pair(dilation), mask)
