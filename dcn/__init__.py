"""Modulated deformable convolution (DCNv2) for CPU and CUDA.

``modulated_deform_conv`` is the op, ``ModulatedDeformConv``/``ModulatedDeformConvPack`` the
modules (DCNv2's parameter names). ``available_backends``, ``get_backend`` and ``use_backend``
(or the ``DCN_BACKEND`` environment variable) choose between the compiled extension, torchvision
and the pure-PyTorch reference, which all compute the same DCNv2 operator.
"""

from ._backend import available_backends, get_backend, use_backend
from .functional import modulated_deform_conv
from .modules import ModulatedDeformConv, ModulatedDeformConvPack

__all__ = [
    "ModulatedDeformConv",
    "ModulatedDeformConvPack",
    "available_backends",
    "get_backend",
    "modulated_deform_conv",
    "use_backend",
]
