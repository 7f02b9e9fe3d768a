"""ADFNet (Adaptive Dynamic Filtering Network for Image Denoising, AAAI 2023) in PyTorch."""

from .checkpoint import load_model, load_weights
from .models import build_model

__all__ = ["build_model", "load_model", "load_weights"]
