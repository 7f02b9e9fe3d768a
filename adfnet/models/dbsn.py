"""DBSN: unpaired learning of image denoising with a dilated blind-spot network (Wu, Liu, Zhang, Zuo; ECCV 2020).

Three networks trained from noisy images alone:

* **D-BSN** (:class:`DilatedBSN`): a 1x1 head, two branches that each start with a centre-masked kxk conv
  (:class:`MaskConv2d`, k = 3 and 5) followed by dilated inception blocks whose dilation, (k + 1) // 2, is
  coprime with every tap offset of that conv, a 1x1 fusion and a 1x1 tail. Its output ``mu`` at a pixel never
  sees that pixel of the input (the blind spot), so it can learn from noisy targets.
* the noise-level nets :class:`SigmaMuNet` (1x1 convs on D-BSN's fused features: how uncertain ``mu`` is) and
  :class:`SigmaNNet` (on the noisy image, or on ``mu`` for signal-dependent noise: the noise level).
* :class:`DBSN` holds the three and returns the Bayes (MAP) combination of ``mu`` with the noisy image
  (:mod:`adfnet.models.dbsn_map`), as the authors' test scripts do.

Attribute names are the authors' (``dbsn_gray/net/backbone_net.py`` ``DBSN_Model``, ``net/sigma_net.py``
``Sigma_mu_Net`` / ``Sigma_n_Net`` of github.com/XHWXD/DBSN), so each net's state_dict has their keys; their
``.pth`` files (``state_dict_dbsn``, ``state_dict_sigma_mu``, ``state_dict_sigma_n``) are the three parts of
:class:`DBSN`'s state_dict under the prefixes of :data:`CHECKPOINT_PARTS` (``adfnet.checkpoint`` merges them).
Their alternative blind-spot conv, ``TrimmedConv2d`` (``--blindspot_conv_type Trimmed``), is used by no script
or README command and is not implemented.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .dbsn_map import NOISE_TYPES, check_gamma, map_estimate, noise_covariances, sigma_out_channels

__all__ = [
    "CHECKPOINT_PARTS",
    "DBSN",
    "DBSNBranch",
    "DBSNEstimate",
    "DilatedBSN",
    "InceptionBlock",
    "MaskConv2d",
    "SigmaMuNet",
    "SigmaNNet",
    "dbsn_options_from_state_dict",
]

# The authors' checkpoint dict keys -> the DBSN submodule each holds.
CHECKPOINT_PARTS = {"state_dict_dbsn": "dbsn", "state_dict_sigma_mu": "sigma_mu", "state_dict_sigma_n": "sigma_n"}
ACTIVATIONS = ("Relu", "LeakyRelu")
MAP_FORMS = ("test", "trainval")


def _activation(name: str) -> nn.Module:
    if name == "Relu":
        return nn.ReLU(inplace=True)
    if name == "LeakyRelu":
        return nn.LeakyReLU(0.1)
    raise ValueError(f"activate_fun must be one of {', '.join(ACTIVATIONS)}, got {name!r}")


class MaskConv2d(nn.Conv2d):
    """A conv whose centre tap is zeroed at every forward (the authors' ``MaskConv2d``, blind-spot type 'Mask').

    The weight keeps a centre value (it is in the state_dict like any conv weight) that is never used and gets
    no gradient. Padding keeps the size: ``dilation * (k - 1) // 2``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, bias: bool = True):
        pad = dilation * (kernel_size - 1) // 2
        super().__init__(in_channels, out_channels, kernel_size, padding=pad, dilation=dilation, bias=bias)
        mask = torch.ones(1, 1, kernel_size, kernel_size)
        mask[..., kernel_size // 2, kernel_size // 2] = 0
        self.register_buffer("weight_mask", mask, persistent=False)  # not a parameter: keeps the authors' keys

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.weight_mask, self.bias)


def _conv(cin: int, cout: int, k: int = 1, dilation: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=dilation * (k - 1) // 2, dilation=dilation, bias=bias)


class InceptionBlock(nn.Module):
    """Dilated inception block: three branches [1x1, 5x5 dilated], [1x1, 3x3 dilated], [1x1] (each conv + act),
    concatenated, fused by a 1x1 conv + ReLU, added to the input, then two 1x1 conv + act.

    The fusion's ReLU is a ReLU even with ``activate_fun='LeakyRelu'`` (as in the authors' code).
    """

    def __init__(self, channels: int, dilation: int, bias: bool = True, activate_fun: str = "Relu") -> None:
        super().__init__()
        c = channels
        self.inception_br1 = nn.Sequential(
            _conv(c, c, bias=bias), _activation(activate_fun), _conv(c, c, 5, dilation, bias), _activation(activate_fun)
        )
        self.inception_br2 = nn.Sequential(
            _conv(c, c, bias=bias), _activation(activate_fun), _conv(c, c, 3, dilation, bias), _activation(activate_fun)
        )
        self.inception_br3 = nn.Sequential(_conv(c, c, bias=bias), _activation(activate_fun))
        self.concat = _conv(3 * c, c, bias=bias)
        self.middle_1x1_convs = nn.Sequential(
            _conv(c, c, bias=bias), _activation(activate_fun), _conv(c, c, bias=bias), _activation(activate_fun)
        )

    def forward(self, x: Tensor) -> Tensor:
        branches = torch.cat((self.inception_br1(x), self.inception_br2(x), self.inception_br3(x)), dim=1)
        return self.middle_1x1_convs(torch.relu(self.concat(branches)) + x)


class DBSNBranch(nn.Module):
    """One D-BSN branch: kxk :class:`MaskConv2d` + act, 2x (1x1 + act), ``block_num`` inception blocks with
    dilation (k + 1) // 2, 1x1 conv. The dilation is what keeps the blind spot: every later tap offset is a
    multiple of it, and no non-zero tap of the masked conv (components in [-(k-1)/2, (k-1)/2]) is one."""

    def __init__(self, channels: int, kernel_size: int, block_num: int, bias: bool = True, activate_fun: str = "Relu"):
        super().__init__()
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"the blind-spot conv kernel size must be odd and >= 3, got {kernel_size}")
        c, dilation = channels, (kernel_size + 1) // 2
        layers: list[nn.Module] = [MaskConv2d(c, c, kernel_size, bias=bias), _activation(activate_fun)]
        layers += [_conv(c, c, bias=bias), _activation(activate_fun), _conv(c, c, bias=bias), _activation(activate_fun)]
        layers += [InceptionBlock(c, dilation, bias, activate_fun) for _ in range(block_num)]
        layers.append(_conv(c, c, bias=bias))
        self.branch = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.branch(x)


class DilatedBSN(nn.Module):
    """D-BSN (the authors' ``DBSN_Model``); ``forward`` returns ``(mu, features)`` like theirs: ``features`` are
    the ``mid_ch``-channel fused branch outputs (no activation) that :class:`SigmaMuNet` reads."""

    def __init__(
        self,
        in_ch: int = 1,
        out_ch: int = 1,
        mid_ch: int = 96,
        br1_blindspot_conv_ks: int = 3,
        br1_block_num: int = 8,
        br2_blindspot_conv_ks: int = 5,
        br2_block_num: int = 8,
        blindspot_conv_bias: bool = True,
        activate_fun: str = "Relu",
    ) -> None:
        super().__init__()
        bias = blindspot_conv_bias
        self.dbsn_head = nn.Sequential(_conv(in_ch, mid_ch, bias=bias), _activation(activate_fun))
        self.br1 = DBSNBranch(mid_ch, br1_blindspot_conv_ks, br1_block_num, bias, activate_fun)
        self.br2 = DBSNBranch(mid_ch, br2_blindspot_conv_ks, br2_block_num, bias, activate_fun)
        self.concat = _conv(2 * mid_ch, mid_ch, bias=bias)
        self.dbsn_tail = nn.Sequential(
            _conv(mid_ch, mid_ch, bias=bias),
            _activation(activate_fun),
            _conv(mid_ch, mid_ch, bias=bias),
            _activation(activate_fun),
            _conv(mid_ch, out_ch, bias=bias),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' initialisation: He-normal (fan_in) weights everywhere; zero biases, except the top-level
        ``concat`` whose bias keeps PyTorch's default (their ``weights_init_kaiming`` leaves it)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
                if m.bias is not None and m is not self.concat:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.dbsn_head(x)
        features = self.concat(torch.cat((self.br1(x), self.br2(x)), dim=1))
        return self.dbsn_tail(features), features


class SigmaMuNet(nn.Module):
    """sigma_mu-net (the authors' ``Sigma_mu_Net``): ``layers`` 1x1 convs with ReLU between, on D-BSN's features.

    Its output, squared (gray) or as the factor ``L`` of ``L L^T`` (colour), is the variance of ``mu``.
    """

    def __init__(self, in_ch: int = 96, out_ch: int = 1, mid_ch: int = 16, layers: int = 3) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError(f"sigma_mu_layers must be >= 2 (the authors' 1 builds the same net as 2), got {layers}")
        convs: list[nn.Module] = [nn.Conv2d(in_ch, mid_ch, 1), nn.ReLU(inplace=True)]
        for _ in range(layers - 2):
            convs += [nn.Conv2d(mid_ch, mid_ch, 1), nn.ReLU(inplace=True)]
        convs.append(nn.Conv2d(mid_ch, out_ch, 1))
        self.conv = nn.Sequential(*convs)
        for m in self.conv:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class SigmaNNet(nn.Module):
    """sigma_n-net (the authors' ``Sigma_n_Net``): ``layers - 1`` kxk conv + ReLU, then ``conv_final``.

    The two copies of the authors' code differ, and both are kept (``colour``):

    * gray (``dbsn_gray``): the output plus 3e-4; ``conv_final`` starts at zero, so training starts from a
      constant noise level; ``layers=1`` is ``conv_final`` alone.
    * colour (``dbsn_color``): output values that are exactly 0 become 1e-4 (so a factor ``P`` of ``P P^T`` has
      no zero diagonal by accident); ``conv_final`` keeps PyTorch's initialisation; ``layers`` must be >= 2
      (their ``layers=1`` builds the same net as 2). The authors replace the zeros in place; here it is
      out of place, with the same values and gradients (0 where replaced).
    """

    def __init__(
        self,
        in_ch: int = 1,
        out_ch: int = 1,
        mid_ch: int = 16,
        layers: int = 5,
        kernel_size: int = 1,
        colour: bool = False,
    ) -> None:
        super().__init__()
        if layers < (2 if colour else 1):
            raise ValueError(
                f"sigma_n_layers must be >= {2 if colour else 1} for {'colour' if colour else 'gray'}, got {layers}"
            )
        if kernel_size % 2 == 0:
            raise ValueError(f"sigma_n_kernel_size must be odd (same-size output), got {kernel_size}")
        self.colour = colour
        if layers > 1:
            convs: list[nn.Module] = []
            for i in range(layers - 1):
                convs += [_conv(in_ch if i == 0 else mid_ch, mid_ch, kernel_size), nn.ReLU(inplace=True)]
            self.conv = nn.Sequential(*convs)
            for m in self.conv:
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
                    nn.init.zeros_(m.bias)
        self.conv_final = _conv(mid_ch if layers > 1 else in_ch, out_ch, kernel_size)
        if not colour:
            nn.init.zeros_(self.conv_final.weight)
            nn.init.zeros_(self.conv_final.bias)

    def forward(self, x: Tensor) -> Tensor:
        if hasattr(self, "conv"):
            x = self.conv(x)
        x = self.conv_final(x)
        if self.colour:
            return torch.where(x == 0, torch.full_like(x, 1e-4), x)
        return x + 3e-4


class DBSNEstimate(NamedTuple):
    """What the three nets say about one noisy batch (see :meth:`DBSN.estimate`)."""

    mu: Tensor  #: D-BSN's blind-spot estimate, (B, C, H, W)
    features: Tensor  #: D-BSN's fused features, (B, mid_ch, H, W)
    sigma_mu_out: Tensor  #: raw SigmaMuNet output
    sigma_n_out: Tensor  #: raw SigmaNNet output
    sigma_mu: Tensor  #: variance of mu: gray (B, 1, H|1, W|1); colour covariance (B, H|1, W|1, 3, 3)
    sigma_n: Tensor  #: noise variance / covariance, same layout

    @property
    def sigma_y(self) -> Tensor:
        """Variance of the noisy observation, ``sigma_mu + sigma_n`` (what the losses take)."""
        return self.sigma_mu + self.sigma_n


def _default_sigma_width(n_colors: int, noise_type: str) -> int:
    """The sigma nets' width of the authors' scripts: 16 in gray_train_g.sh, 32 in gray_train_pg.sh and colour."""
    return 16 if n_colors == 1 and noise_type == "gaussian" else 32


class DBSN(nn.Module):
    """D-BSN with its two noise-level nets; ``forward(noisy)`` is the MAP estimate of the authors' test scripts.

    Defaults are the authors' configurations: gray AWGN (``gray_train_g.sh``) for ``n_colors=1``, colour MG (the
    README's MG commands, ``rgb_*.sh``) for ``n_colors=3``.

    Args:
        n_colors: 1 (gray) or 3 (colour).
        mid_ch, br1_blindspot_conv_ks, br1_block_num, br2_blindspot_conv_ks, br2_block_num, blindspot_conv_bias,
            activate_fun ('Relu' or 'LeakyRelu'): D-BSN's options, named as the authors' ``DBSN_Model`` arguments.
        noise_type: 'gaussian' (AWGN: SigmaNNet reads the noisy image), 'poisson_gaussian' (heteroscedastic: it
            reads ``mu``, per-pixel levels) or, colour only, 'multivariate_gaussian' (cross-channel: full 3x3
            covariances). Default: 'gaussian' for gray, 'multivariate_gaussian' for colour.
        sigma_mu_mid_ch, sigma_mu_layers, sigma_n_mid_ch, sigma_n_layers, sigma_n_kernel_size: the noise-level
            nets (the widths default to the authors': 16 for gray gaussian, 32 otherwise).
        gamma: weight of the MAP combination (> 0); 1 in every authors' command except ``rgb_test.sh`` (0.9 for
            its colour HG model). Gray weights ``mu`` by it, colour the noisy input (their two scripts differ).
        map_form: 'test' (the authors' test scripts) or 'trainval' (their training-validation and distillation
            scripts). They differ only for gray gaussian: 'test' uses SigmaNNet's per-pixel map, 'trainval' its
            spatial mean (and the training losses always use the 'trainval' formation).

    The authors' released weights were trained with their scripts' configurations, so (by those scripts; the
    files are not bundled here) ``gray_gaussian_nL25.pth`` is ``build_model("dbsn", 1)``,
    ``gray_poisson_gaussian_s40_c10.pth`` ``build_model("dbsn", 1, noise_type="poisson_gaussian")`` and
    ``rgb_multivariate_gaussian.pth`` ``build_model("dbsn", 3)``; ``load_weights`` reads them as they are.
    """

    size_multiple = 1  # fully convolutional at full resolution

    def __init__(
        self,
        n_colors: int = 1,
        mid_ch: int = 96,
        br1_blindspot_conv_ks: int = 3,
        br1_block_num: int = 8,
        br2_blindspot_conv_ks: int = 5,
        br2_block_num: int = 8,
        blindspot_conv_bias: bool = True,
        activate_fun: str = "Relu",
        noise_type: str | None = None,
        sigma_mu_mid_ch: int | None = None,
        sigma_mu_layers: int = 3,
        sigma_n_mid_ch: int | None = None,
        sigma_n_layers: int = 5,
        sigma_n_kernel_size: int = 1,
        gamma: float = 1.0,
        map_form: str = "test",
    ) -> None:
        super().__init__()
        if n_colors not in (1, 3):
            raise ValueError(f"DBSN is for gray (n_colors=1) or colour (n_colors=3) images, got n_colors={n_colors}")
        noise_type = noise_type or ("gaussian" if n_colors == 1 else "multivariate_gaussian")
        if noise_type not in NOISE_TYPES:
            raise ValueError(f"noise_type must be one of {', '.join(NOISE_TYPES)}, got {noise_type!r}")
        if map_form not in MAP_FORMS:
            raise ValueError(f"map_form must be one of {', '.join(MAP_FORMS)}, got {map_form!r}")
        check_gamma(gamma)
        width = _default_sigma_width(n_colors, noise_type)
        sigma_mu_mid_ch = sigma_mu_mid_ch or width
        sigma_n_mid_ch = sigma_n_mid_ch or width
        sigma_out = sigma_out_channels(n_colors, noise_type)  # also refuses gray multivariate_gaussian
        self.n_colors, self.noise_type, self.gamma, self.map_form = n_colors, noise_type, float(gamma), map_form
        self.dbsn = DilatedBSN(
            n_colors,
            n_colors,
            mid_ch,
            br1_blindspot_conv_ks,
            br1_block_num,
            br2_blindspot_conv_ks,
            br2_block_num,
            blindspot_conv_bias,
            activate_fun,
        )
        self.sigma_mu = SigmaMuNet(mid_ch, sigma_out, sigma_mu_mid_ch, sigma_mu_layers)
        self.sigma_n = SigmaNNet(
            n_colors, sigma_out, sigma_n_mid_ch, sigma_n_layers, sigma_n_kernel_size, colour=n_colors == 3
        )
        # What build_model records and load_weights checks: every option that shapes the nets, defaults
        # resolved; gamma and map_form are settings of the MAP combination, free to change after training.
        self.architecture_options = {
            "mid_ch": mid_ch,
            "br1_blindspot_conv_ks": br1_blindspot_conv_ks,
            "br1_block_num": br1_block_num,
            "br2_blindspot_conv_ks": br2_blindspot_conv_ks,
            "br2_block_num": br2_block_num,
            "blindspot_conv_bias": blindspot_conv_bias,
            "activate_fun": activate_fun,
            "noise_type": noise_type,
            "sigma_mu_mid_ch": sigma_mu_mid_ch,
            "sigma_mu_layers": sigma_mu_layers,
            "sigma_n_mid_ch": sigma_n_mid_ch,
            "sigma_n_layers": sigma_n_layers,
            "sigma_n_kernel_size": sigma_n_kernel_size,
        }

    def estimate(self, noisy: Tensor, map_form: str | None = None) -> DBSNEstimate:
        """Run the three nets and form the variances (``map_form`` as in the class, default the model's).

        Training uses ``map_form='trainval'``: the formation of the authors' training scripts.
        """
        mu, features = self.dbsn(noisy)
        sigma_mu_out = self.sigma_mu(features)
        sigma_n_out = self.sigma_n(mu if self.noise_type == "poisson_gaussian" else noisy)
        sigma_mu, sigma_n = noise_covariances(
            sigma_mu_out, sigma_n_out, self.noise_type, self.n_colors, map_form or self.map_form
        )
        return DBSNEstimate(mu, features, sigma_mu_out, sigma_n_out, sigma_mu, sigma_n)

    def noise_covariance(self, image: Tensor) -> Tensor:
        """The noise variance (gray, ``(B, 1, H|1, W|1)``) or covariance (colour, ``(B, H|1, W|1, 3, 3)``) that
        SigmaNNet predicts for ``image``, in the training form (AWGN: one level per image): the learned noise
        model. DBSN's distillation (``gray_kd_train.py``) asks it of clean images, to synthesize noisy ones."""
        s_n = self.sigma_n(image)
        return noise_covariances(torch.zeros_like(s_n), s_n, self.noise_type, self.n_colors, "trainval")[1]

    def forward(self, noisy: Tensor) -> Tensor:
        """The MAP estimate of the clean image (unclamped, like the authors')."""
        e = self.estimate(noisy)
        return map_estimate(noisy, e.mu, e.sigma_mu, e.sigma_n, self.gamma)


def _count(state: Mapping[str, object], prefix: str, suffix: str) -> int:
    return sum(k.startswith(prefix) and k.endswith(suffix) for k in state)


def dbsn_options_from_state_dict(state: Mapping[str, Tensor | tuple[int, ...]]) -> dict[str, object]:
    """The :class:`DBSN` options (and ``n_colors``) that a flat DBSN state_dict's shapes show, for errors that
    name what differs; values may be tensors or shapes.

    ``noise_type`` is only told apart as 'multivariate_gaussian' (6 sigma outputs) or not: gaussian and
    poisson_gaussian nets have the same shapes.
    """
    state = {k: tuple(getattr(v, "shape", v)) for k, v in state.items()}
    head, sigma_mu_w, sigma_n_final = (
        state.get(k) for k in ("dbsn.dbsn_head.0.weight", "sigma_mu.conv.0.weight", "sigma_n.conv_final.weight")
    )
    options: dict[str, object] = {}
    if head is not None:
        options.update(n_colors=head[1], mid_ch=head[0])
        options["blindspot_conv_bias"] = "dbsn.dbsn_head.0.bias" in state
    for br in ("br1", "br2"):
        mask = state.get(f"dbsn.{br}.branch.0.weight")
        if mask is not None:
            options[f"{br}_blindspot_conv_ks"] = mask[-1]
            options[f"{br}_block_num"] = _count(state, f"dbsn.{br}.branch.", ".concat.weight")
    if sigma_mu_w is not None:
        options["sigma_mu_mid_ch"] = sigma_mu_w[0]
        options["sigma_mu_layers"] = _count(state, "sigma_mu.conv.", ".weight")
    if sigma_n_final is not None:
        hidden = [k for k in state if k.startswith("sigma_n.conv.") and k.endswith(".weight")]
        options["sigma_n_layers"] = len(hidden) + 1
        options["sigma_n_mid_ch"] = state[hidden[0]][0] if hidden else None
        options["sigma_n_kernel_size"] = sigma_n_final[-1]
        mg = sigma_n_final[0] == 6
        options["noise_type"] = "multivariate_gaussian" if mg else "gaussian or poisson_gaussian"
    return options
