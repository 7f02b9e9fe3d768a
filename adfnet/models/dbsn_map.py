"""DBSN's noise model and Bayes (MAP) combination: from the sigma nets' raw outputs to variances, and from
``mu``, the noisy image and those variances to the denoised image.

The formation is the authors' (XHWXD/DBSN ``dbsn_gray/gray_train.py``, ``gray_test.py``,
``dbsn_color/rgb_train.py``, ``rgb_test.py``); one implementation serves the MAP estimate and the training
losses (``adfnet.losses``), which take the variances formed here:

* gray: ``sigma_mu = s_mu^2``, ``sigma_n = (softplus(s_n - 4) + 1e-3)^2`` per pixel, or of the spatial mean of
  ``s_n`` (AWGN: one level per image) in training and in the 'trainval' form; the authors' gray test script
  computes that mean and then overwrites it with the per-pixel map (the 'test' form).
* colour: each variance is a 3x3 covariance ``L L^T`` with ``L`` upper triangular, filled row by row from the
  net's channels. 'multivariate_gaussian': 6 channels (L00, L01, L02, L11, L12, L22), for ``s_n`` without
  softplus, and both covariances are averaged over the image (one matrix per image). 'gaussian' and
  'poisson_gaussian': 3 channels on the diagonal, with the gray transforms (gaussian: spatial mean of ``s_n``).

Variances keep size-1 spatial dimensions where they are one per image (the authors repeat them over H, W):
gray ``(B, 1, H|1, W|1)``, colour ``(B, H|1, W|1, 3, 3)``; they broadcast against the images.

The authors' colour 'gaussian' test script repeats 1-channel sigma-net outputs to 3, which their training
script (3 channels, asserted) never produces; the training script's form is the one here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

NOISE_TYPES = ("gaussian", "poisson_gaussian", "multivariate_gaussian")
EPS = 1e-6  # the ridge the colour combination adds to each matrix it inverts
_UPPER = ([0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2])  # rows, columns of the 6 channels in L


def check_gamma(gamma: float) -> None:
    """``gamma`` weights the MAP combination; <= 0 would drop a term or flip its sign."""
    if not gamma > 0:
        raise ValueError(f"gamma (the MAP weight) must be > 0, got {gamma!r}; the authors use 1 (0.9 for colour HG)")


def sigma_out_channels(n_colors: int, noise_type: str) -> int:
    """Output channels of both sigma nets: 1 (gray), 3 (colour, diagonal) or 6 (colour, full covariance)."""
    if noise_type == "multivariate_gaussian":
        if n_colors != 3:
            raise ValueError("noise_type 'multivariate_gaussian' correlates 3 colour channels: use n_colors=3")
        return 6
    return n_colors


def noise_level(s_n: Tensor) -> Tensor:
    """The authors' positive standard deviation from SigmaNNet's output: ``softplus(s_n - 4) + 1e-3``."""
    return F.softplus(s_n - 4) + 1e-3


def _lower_product(factor: Tensor) -> Tensor:
    """``L L^T`` of ``(B, H, W, 3, 3)`` factors."""
    return factor @ factor.transpose(-1, -2)


def _triangular(channels: Tensor) -> Tensor:
    """``(B, 6, H, W)`` -> upper-triangular ``(B, H, W, 3, 3)`` factors, filled row by row."""
    b, _, h, w = channels.shape
    factor = channels.new_zeros(b, h, w, 3, 3)
    factor[..., _UPPER[0], _UPPER[1]] = channels.permute(0, 2, 3, 1)
    return factor


def noise_covariances(
    sigma_mu_out: Tensor, sigma_n_out: Tensor, noise_type: str, n_colors: int, map_form: str = "trainval"
) -> tuple[Tensor, Tensor]:
    """``(sigma_mu, sigma_n)`` from the raw sigma-net outputs (layouts in the module docstring).

    ``map_form`` 'test' keeps gray gaussian's per-pixel noise map (the authors' gray test script); 'trainval'
    (their training, validation and distillation scripts) averages ``s_n`` over the image. The other
    noise types form the same in both.
    """
    spatial_mean = noise_type == "gaussian" and (n_colors == 3 or map_form == "trainval")
    if spatial_mean:
        sigma_n_out = sigma_n_out.mean(dim=(2, 3), keepdim=True)
    if n_colors == 1:
        return sigma_mu_out**2, noise_level(sigma_n_out) ** 2
    if noise_type == "multivariate_gaussian":
        sigma_mu = _lower_product(_triangular(sigma_mu_out)).mean(dim=(1, 2), keepdim=True)
        sigma_n = _lower_product(_triangular(sigma_n_out)).mean(dim=(1, 2), keepdim=True)
        return sigma_mu, sigma_n
    # diagonal factors: L L^T = diag(L_ii^2), exactly as the product
    sigma_mu = torch.diag_embed(sigma_mu_out.permute(0, 2, 3, 1) ** 2)
    sigma_n = torch.diag_embed(noise_level(sigma_n_out).permute(0, 2, 3, 1) ** 2)
    return sigma_mu, sigma_n


def map_estimate(noisy: Tensor, mu: Tensor, sigma_mu: Tensor, sigma_n: Tensor, gamma: float = 1.0) -> Tensor:
    """The MAP estimate of the clean image (the authors' test scripts; unclamped).

    Gray: ``(y sigma_mu + gamma mu sigma_n) / (sigma_mu + gamma sigma_n)``. Colour, per pixel with ``eps = 1e-6``:
    ``A = inv(sigma_mu + eps I)``, ``B = inv(sigma_n + eps I)``, ``x = inv(A + gamma B + eps I) (A mu + gamma B y)``.
    In colour ``gamma`` weights the noisy input, in gray ``mu`` (the two scripts differ; with gamma 1 the
    rules agree).
    """
    check_gamma(gamma)
    if noisy.shape[1] == 1:
        return (noisy * sigma_mu + gamma * mu * sigma_n) / (sigma_mu + gamma * sigma_n)
    ridge = EPS * torch.eye(3, dtype=noisy.dtype, device=noisy.device)
    a = torch.linalg.inv(sigma_mu + ridge)
    b = torch.linalg.inv(sigma_n + ridge)
    y, m = noisy.permute(0, 2, 3, 1).unsqueeze(-1), mu.permute(0, 2, 3, 1).unsqueeze(-1)
    x = torch.linalg.inv(a + gamma * b + ridge) @ (a @ m + gamma * b @ y)
    return x.squeeze(-1).permute(0, 3, 1, 2)
