"""Training losses, built from the official ``--loss`` syntax (``"1*MSE"``, ``"1*MSE+0.5*L1"``).

``MSE`` is the official definition, ``sum((out - target)^2) / (2 B)`` (DnCNN's "half squared error
per image"), not PyTorch's mean: with Adam the two differ only through ``eps``, and the logged
values keep the official scale. ``L2`` is PyTorch's mean squared error (``nn.MSELoss``), SADNet's
``--t_loss L2``: the mean over all elements, so its gradients are ``C x H x W / 2`` times smaller than ``MSE``'s.
"""

from __future__ import annotations

import torch
from torch import nn


class HalfSumSquaredError(nn.Module):
    """``sum((out - target)^2) / (2 B)`` with ``B`` the batch size of the tensor actually passed."""

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (output - target).pow(2).sum() / (2 * output.shape[0])


class L1(nn.Module):
    """Mean absolute error over all elements."""

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (output - target).abs().mean()


class Charbonnier(nn.Module):
    """``mean(sqrt((out - target)^2 + eps^2))``, the official real-noise loss (eps 1e-3)."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = output - target
        return torch.sqrt(diff * diff + self.eps * self.eps).mean()


LOSSES: dict[str, type[nn.Module]] = {
    "MSE": HalfSumSquaredError,
    "L2": nn.MSELoss,
    "L1": L1,
    "CHARBONNIER": Charbonnier,
}


class WeightedSum(nn.Module):
    """``sum_i w_i * loss_i``; the terms are kept so that each can be logged on its own."""

    def __init__(self, terms: list[tuple[float, str, nn.Module]]) -> None:
        super().__init__()
        self.weights = [w for w, _, _ in terms]
        self.names = [n for _, n, _ in terms]
        self.terms = nn.ModuleList(m for _, _, m in terms)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        output, target = output.float(), target.float()  # losses in fp32 even under AMP
        total = output.new_zeros(())
        for weight, term in zip(self.weights, self.terms, strict=True):
            total = total + weight * term(output, target)
        return total


def build_loss(spec: str) -> WeightedSum:
    """Parse ``"w1*NAME1+w2*NAME2"`` (names: MSE, L2, L1, Charbonnier; case-insensitive) into a loss module."""
    terms: list[tuple[float, str, nn.Module]] = []
    for part in spec.replace(" ", "").split("+"):
        weight_str, sep, name = part.partition("*")
        if not sep:
            weight_str, name = "1", part
        try:
            weight = float(weight_str)
        except ValueError:
            raise ValueError(f"--loss {spec!r}: {weight_str!r} is not a number (expected e.g. 1*MSE)") from None
        key = name.upper()
        if key not in LOSSES:
            raise ValueError(f"--loss {spec!r}: unknown loss {name!r}; choose from MSE, L2, L1, Charbonnier")
        terms.append((weight, name, LOSSES[key]()))
    return WeightedSum(terms)
