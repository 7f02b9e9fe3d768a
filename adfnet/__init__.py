"""ADFNet (Adaptive Dynamic Filtering Network for Image Denoising, AAAI 2023) in PyTorch."""

from .checkpoint import load_checkpoint, load_weights
from .models import ModelSpec, build_model

__all__ = ["ModelSpec", "build_model", "load_checkpoint", "load_weights"]
