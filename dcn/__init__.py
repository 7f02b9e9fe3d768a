"""Modulated deformable convolution (DCNv2) for CPU and CUDA.

``modulated_deform_conv`` is the op, ``ModulatedDeformConv``/``ModulatedDeformConvPack`` the
modules (DCNv2's parameter names). ``available_backends``, ``get_backend`` and ``use_backend``
(or the ``DCN_BACKEND`` environment variable) choose between the compiled extension, torchvision
and the pure-PyTorch reference, which all compute the same DCNv2 operator. ``cpu_capability``
reports the instruction set the extension's CPU kernels run with (``cpu_capabilities``: those
this CPU supports; ``use_cpu_capability`` or ``DCN_CPU_CAPABILITY`` choose another).
"""

from ._backend import available_backends, get_backend, use_backend
from ._ext import cpu_capabilities, cpu_capability, use_cpu_capability
from .functional import modulated_deform_conv
from .modules import ModulatedDeformConv, ModulatedDeformConvPack

__all__ = [
    "ModulatedDeformConv",
    "ModulatedDeformConvPack",
    "available_backends",
    "cpu_capabilities",
    "cpu_capability",
    "get_backend",
    "modulated_deform_conv",
    "use_backend",
    "use_cpu_capability",
]
