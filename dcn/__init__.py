"""Modulated deformable convolution (DCNv2) for CPU and CUDA."""

from .functional import modulated_deform_conv
from .modules import ModulatedDeformConv, ModulatedDeformConvPack

__all__ = ["modulated_deform_conv", "ModulatedDeformConv", "ModulatedDeformConvPack"]
