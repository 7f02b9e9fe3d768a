"""Training losses, built from the official ``--loss`` syntax (``"1*MSE"``, ``"1*MSE+0.5*L1"``), and DBSN's
self-supervised losses (:func:`build_dbsn_loss`).

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


# --- DBSN (Wu et al., ECCV 2020) -------------------------------------------------------------------------
# The authors' classes (XHWXD/DBSN dbsn_gray/net/losses.py, dbsn_color/net/losses.py), called as
# loss(target, mu, sigma_mu, sigma_n, sigma_y) with the noisy image as target and the variances formed by
# adfnet.models.dbsn_map.noise_covariances (gray: per-pixel maps; colour: 3x3 covariances). Their training
# scripts divide the result by 2 x batch size; the values here are the classes' outputs.
DBSN_EPS = 1e-6  # the clamp of the variances / determinants inside the logarithms and the ratio


class _ReportZero(torch.autograd.Function):
    """Value 0, gradient passed through: what the authors' ``loss.data.zero_()`` does to a scalar loss."""

    @staticmethod
    def forward(ctx, loss: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(loss)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class _Guarded(nn.Module):
    """A DBSN loss with the authors' blow-up guard: above their threshold the loss reads 0 and its gradient is
    left as it was, exactly as their ``loss.data.zero_()`` (so their step still happened). ``exploded`` says
    whether the last call fired it, for a trainer that skips such a step instead (``adfnet.engine.dbsn``)."""

    exploded = False

    def _guard(self, loss: torch.Tensor, exploded: bool) -> torch.Tensor:
        self.exploded = exploded
        return _ReportZero.apply(loss) if exploded else loss


def _mahalanobis(diff: torch.Tensor, covariance: torch.Tensor) -> torch.Tensor:
    """``0.5 d^T inv(covariance) d`` per pixel: ``(B, 3, H, W)`` differences, ``(B, H|1, W|1, 3, 3)`` matrices."""
    d = diff.permute(0, 2, 3, 1).unsqueeze(-1)
    return 0.5 * (d.transpose(-1, -2) @ torch.linalg.inv(covariance) @ d).squeeze(-1).squeeze(-1)


class DBSNL2Loss(nn.Module):
    """The authors' ``L2Loss`` (pre-training ``mu`` on the noisy image): the mean of squares in gray, the **sum**
    in colour (their two copies differ)."""

    def __init__(self, n_colors: int = 1) -> None:
        super().__init__()
        self.reduction = "mean" if n_colors == 1 else "sum"

    def forward(self, target: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(mu, target.detach(), reduction=self.reduction)


class DBSNMAPLoss(_Guarded):
    """Negative log-likelihood of the noisy image under N(mu, sigma_y): the authors' ``MAPLoss`` (joint
    fine-tuning) and, with ``pretrain``, ``MAPLoss_Pretrain`` (``mu`` detached: only the sigma nets learn).

    Gray: ``mean(d^2 / sigma_y + log sigma_y)``; reads 0 when ``max(d^2 / sigma_y) > 1e8`` (not when pre-training).
    Colour: ``mean(0.5 d^T inv(sigma_y) d + 0.5 log det sigma_y)``, the determinant clamped at 1e-6 when
    fine-tuning (not when pre-training); reads 0 when the first term's max exceeds 1e7 (pre-training: 1e8).
    """

    def __init__(self, n_colors: int = 1, pretrain: bool = False) -> None:
        super().__init__()
        self.colour, self.pretrain = n_colors == 3, pretrain

    def forward(self, target, mu, sigma_mu, sigma_n, sigma_y) -> torch.Tensor:
        diff = target.detach() - (mu.detach() if self.pretrain else mu)
        if not self.colour:
            t1 = diff**2 / sigma_y
            loss = (t1 + sigma_y.log()).mean()
            return self._guard(loss, not self.pretrain and bool(t1.max() > 1e8))
        t1 = _mahalanobis(diff, sigma_y)
        det = torch.linalg.det(sigma_y)
        loss = (t1 + 0.5 * (det if self.pretrain else det.clamp(DBSN_EPS)).log()).mean()
        return self._guard(loss, bool(t1.max() > (1e8 if self.pretrain else 1e7)))


class DBSNLoss(_Guarded):
    """DBSN's loss: the likelihood term plus the noise prior, the authors' ``DBSNLoss`` and, with ``pretrain``
    (``mu`` detached), ``DBSNLoss_Pretrain``.

    Gray: ``mean(d^2 / sigma_y + log max(sigma_n, 1e-6) + sigma_mu / max(sigma_n, 1e-6))``; reads 0 when the
    max of the first or the last term exceeds 1e8.
    Colour: ``mean(0.5 d^T inv(sigma_y) d + 0.5 log max(det sigma_n, 1e-6) + 0.5 tr(inv(sigma_n + 1e-6 I)
    sigma_mu))``; reads 0 when the first term's max exceeds 1e7. The authors sum the closed-form eigenvalues of
    the 3x3 matrix, which is its trace.
    """

    def __init__(self, n_colors: int = 1, pretrain: bool = False) -> None:
        super().__init__()
        self.colour, self.pretrain = n_colors == 3, pretrain

    def forward(self, target, mu, sigma_mu, sigma_n, sigma_y) -> torch.Tensor:
        diff = target.detach() - (mu.detach() if self.pretrain else mu)
        if not self.colour:
            t1 = diff**2 / sigma_y
            floor = sigma_n.clamp(DBSN_EPS)
            t3 = sigma_mu / floor
            loss = (t1 + floor.log() + t3).mean()
            return self._guard(loss, bool(t1.max() > 1e8 or t3.max() > 1e8))
        t1 = _mahalanobis(diff, sigma_y)
        t2 = 0.5 * torch.linalg.det(sigma_n).clamp(DBSN_EPS).log()
        ridge = DBSN_EPS * torch.eye(3, dtype=sigma_n.dtype, device=sigma_n.device)
        t3 = 0.5 * torch.linalg.solve(sigma_n + ridge, sigma_mu).diagonal(dim1=-2, dim2=-1).sum(-1)
        loss = (t1 + t2 + t3).mean()
        return self._guard(loss, bool(t1.max() > 1e7))


DBSN_LOSSES = {  # the authors' class names
    "L2Loss": lambda n_colors: DBSNL2Loss(n_colors),
    "MAPLoss_Pretrain": lambda n_colors: DBSNMAPLoss(n_colors, pretrain=True),
    "MAPLoss": lambda n_colors: DBSNMAPLoss(n_colors),
    "DBSNLoss_Pretrain": lambda n_colors: DBSNLoss(n_colors, pretrain=True),
    "DBSNLoss": lambda n_colors: DBSNLoss(n_colors),
}


def build_dbsn_loss(name: str, n_colors: int) -> nn.Module:
    """One of DBSN's losses by the authors' class name (:data:`DBSN_LOSSES`), gray (1) or colour (3)."""
    if name not in DBSN_LOSSES:
        raise ValueError(f"unknown DBSN loss {name!r}; choose one of {', '.join(DBSN_LOSSES)}")
    if n_colors not in (1, 3):
        raise ValueError(f"DBSN's losses are for gray (n_colors=1) or colour (n_colors=3), got {n_colors}")
    return DBSN_LOSSES[name](n_colors)
