"""The one noise module: every synthetic noise of training, validation and test comes from here.

:func:`add_awgn` is the official test noise, bit for bit. :func:`build_noise` makes any model of
:data:`NOISE_MODELS` from a name and a parameter list (what ``--noise NAME --noise_params ...`` gives):

- ``awgn SIGMA``: white Gaussian, std ``SIGMA/255``.
- ``hg SIGMA_S SIGMA_C``: heteroscedastic Gaussian as DBSN's paper defines it, variance
  ``(SIGMA_S/255)^2 x + (SIGMA_C/255)^2`` (shot-like std proportional to ``sqrt(x)``); the paper's
  alpha and delta (its tables use alpha = 40, delta = 10).
- ``hg_dbsn SIGMA_S SIGMA_C``: what DBSN's *code* draws instead (``data/dn_dataset.py``,
  ``_add_noise_poisson_gaussian``): ``SIGMA_S/255 * x * z1 + SIGMA_C/255 * z2``, std proportional to ``x``.
  In training ``z1``, ``z2`` are independent; at test time (``seed``) DBSN reseeded both draws with the
  same seed, so ``z1 == z2`` and the std is ``(SIGMA_S x + SIGMA_C)/255``. Kept only to reproduce
  DBSN's numbers; ``hg`` is the definition.
- ``mg [L]``: cross-channel Gaussian of DBSN, per-pixel covariance ``(L/255)^2 U^T D U`` (the code's form;
  the paper writes ``75^2 U Lambda U^T``, ``U^T U = I``, ``lambda_c`` in (0, 1): the same family) with ``L`` = 75
  by default, ``D`` = diag of 3 uniform [0, 1) values, ``U`` the orthonormal basis of a uniform [0, 1)
  3 x 3 matrix (scipy's ``orth``, i.e. its left singular vectors, signs fixed here so that results do
  not depend on the LAPACK build). Drawn anew per image in training, fixed by the seed at test time.
  Unlike DBSN's code, no element-wise ``abs`` of the covariance (the paper has none; with it the matrix
  need not be positive semi-definite).
- ``learned``: the noise a network learned from noisy images alone (DBSN's sigma_n net; DBSN's distillation
  synthesizes its training pairs with it): :class:`LearnedNoise` draws ``N(0, Sigma(x))`` with the covariance
  the network predicts for the clean image ``x``, scaled by a uniform factor in [0.9, 1.1). The name alone is
  a placeholder; the trainer binds it to the network (``--noise learned`` with the DBSN as ``--teacher``).
- ``poisson_gaussian [SHOT [READ]]``: raw sensor noise ``SHOT * Poisson(x / SHOT) + N(0, READ)``, so
  mean ``x`` and variance ``SHOT x + READ`` (Brooks et al. 2019's variances, raw [0, 1] units). With
  only ``SHOT``, ``READ`` follows their log-linear camera fit ``log READ = 2.18 log SHOT + 1.20``; with no
  parameter both are drawn per image from their training distribution (:func:`brooks_noise_levels`).

Randomness: ``seed`` (the test protocol) reseeds a fresh CPU generator for EVERY image of the batch, so
an image's noise never depends on its batch, batch position, worker or evaluation order; ``generator``
(training) continues a caller-owned stream image after image. Noise is drawn on the CPU in float32 (like
:func:`add_awgn`), then moved to the image's device and dtype: results do not depend on the device.
Noisy images are never clipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

# Brooks et al. 2019 ("Unprocessing images for learned raw denoising"), section 3.2: log shot variance
# uniform in [log 1e-4, log 0.012]; log read variance = 2.18 log shot + 1.20 + N(0, 0.26^2).
SHOT_RANGE = (1e-4, 0.012)
READ_SLOPE, READ_INTERCEPT, READ_LOG_STD = 2.18, 1.20, 0.26
MG_DEFAULT_LEVEL = 75.0  # DBSN's L = 75/255


def add_awgn(
    clean: torch.Tensor,
    sigma: float,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return ``clean + N(0, (sigma/255)^2)``, unclipped and unquantised (the official recipe).

    The noise is always drawn on the CPU as a float32 tensor of ``clean``'s shape and then moved to
    ``clean``'s device and dtype, so results do not depend on the device. ``seed`` uses a fresh
    generator: ``seed=20`` reproduces the official ``torch.manual_seed(20);
    FloatTensor(1, C, H, W).normal_(0, sigma/255)`` exactly (1 for gray). ``generator`` continues a
    caller-owned CPU stream; with neither, the global torch RNG is used.
    """
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator to add_awgn, not both")
    if sigma < 0:
        raise ValueError(f"noise level sigma must be >= 0, got {sigma}")
    if seed is not None:
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.empty(tuple(clean.shape), dtype=torch.float32)
    noise.normal_(0.0, float(sigma) / 255.0, generator=generator)
    return clean + noise.to(device=clean.device, dtype=clean.dtype)


def _normal(shape: Sequence[int], g: torch.Generator) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=torch.float32).normal_(generator=g)


def brooks_noise_levels(g: torch.Generator) -> tuple[float, float]:
    """One random ``(shot, read)`` variance pair from Brooks et al.'s log-linear camera-noise model."""
    lo, hi = math.log(SHOT_RANGE[0]), math.log(SHOT_RANGE[1])
    u, z = torch.rand(1, generator=g, dtype=torch.float64), torch.randn(1, generator=g, dtype=torch.float64)
    log_shot = lo + (hi - lo) * float(u)
    return math.exp(log_shot), math.exp(READ_SLOPE * log_shot + READ_INTERCEPT + READ_LOG_STD * float(z))


def mg_factors(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """DBSN's random ``(U, d)`` (float64) of the covariance ``L^2 U^T diag(d) U``; ``d`` is drawn first, as DBSN did.

    ``U`` holds the left singular vectors of a uniform [0, 1) matrix (what ``scipy.linalg.orth`` returns
    for a full-rank matrix), each column signed so that its largest-magnitude entry is positive.
    """
    d = torch.rand(3, generator=g, dtype=torch.float64)
    u = torch.linalg.svd(torch.rand(3, 3, generator=g, dtype=torch.float64)).U
    pivot = u.gather(0, u.abs().argmax(dim=0, keepdim=True))
    return u * torch.sign(pivot), d


# One image's noise: (clean (1, C, H, W) float32 CPU, params, generator, seeded) -> noise of clean's shape.
Sampler = Callable[[torch.Tensor, tuple[float, ...], torch.Generator, bool], torch.Tensor]


def _awgn(x: torch.Tensor, p: tuple[float, ...], g: torch.Generator, seeded: bool) -> torch.Tensor:
    return add_awgn(torch.zeros_like(x), p[0], generator=g)


def _hg(x: torch.Tensor, p: tuple[float, ...], g: torch.Generator, seeded: bool) -> torch.Tensor:
    s, c = p[0] / 255.0, p[1] / 255.0
    return _normal(x.shape, g) * torch.sqrt(s * s * x.clamp(min=0) + c * c)


def _hg_dbsn(x: torch.Tensor, p: tuple[float, ...], g: torch.Generator, seeded: bool) -> torch.Tensor:
    s, c = p[0] / 255.0, p[1] / 255.0
    z1 = _normal(x.shape, g)
    z2 = z1 if seeded else _normal(x.shape, g)  # DBSN's validation reseeded both draws identically
    return s * x * z1 + c * z2


def _mg(x: torch.Tensor, p: tuple[float, ...], g: torch.Generator, seeded: bool) -> torch.Tensor:
    if x.shape[1] != 3:
        raise ValueError(f"mg noise correlates the 3 colour channels; the images have {x.shape[1]} channel(s)")
    u, d = mg_factors(g)
    mix = (p[0] / 255.0) * u.T * d.sqrt()  # mix @ mix^T = (L/255)^2 U^T diag(d) U
    z = _normal((3, x.shape[2] * x.shape[3]), g)
    return (mix.float() @ z).reshape(x.shape)


def _poisson_gaussian(x: torch.Tensor, p: tuple[float, ...], g: torch.Generator, seeded: bool) -> torch.Tensor:
    if not p:
        shot, read = brooks_noise_levels(g)
    elif len(p) == 1:
        shot, read = p[0], math.exp(READ_SLOPE * math.log(p[0]) + READ_INTERCEPT) if p[0] > 0 else 0.0
    else:
        shot, read = p
    x = x.clamp(min=0)
    shot_part = shot * torch.poisson(x / shot, generator=g) - x if shot > 0 else torch.zeros_like(x)
    return shot_part + math.sqrt(read) * _normal(x.shape, g)


def _learned(x: torch.Tensor, p: tuple[float, ...], g: torch.Generator, seeded: bool) -> torch.Tensor:
    raise ValueError(
        "the learned noise model draws the noise a trained network predicts: it needs that network (LearnedNoise; "
        "on the command line --noise learned with the DBSN checkpoint as --teacher)"
    )


@dataclass(frozen=True)
class _Spec:
    params: tuple[str, ...]  # parameter names, in --noise_params order
    counts: tuple[int, ...]  # accepted numbers of parameters
    sampler: Sampler
    summary: str


NOISE_MODELS: dict[str, _Spec] = {
    "awgn": _Spec(("sigma",), (1,), _awgn, "white Gaussian, std sigma/255"),
    "hg": _Spec(("sigma_s", "sigma_c"), (2,), _hg, "heteroscedastic Gaussian, var (sigma_s^2 x + sigma_c^2)/255^2"),
    "hg_dbsn": _Spec(("sigma_s", "sigma_c"), (2,), _hg_dbsn, "DBSN's code variant of hg: std (sigma_s x, sigma_c)/255"),
    "mg": _Spec(("L",), (0, 1), _mg, "DBSN's cross-channel Gaussian, covariance (L/255)^2 U^T D U (L = 75)"),
    "poisson_gaussian": _Spec(
        ("shot", "read"), (0, 1, 2), _poisson_gaussian, "raw shot + read noise, variance shot x + read (Brooks 2019)"
    ),
    "learned": _Spec((), (0,), _learned, "the noise a network learned (DBSN's sigma_n net), given as --teacher"),
}
NOISE_NAMES = tuple(NOISE_MODELS)


def _check_call(clean: torch.Tensor, seed: int | None, generator: torch.Generator | None) -> None:
    """What every noise model's call refuses: both a seed and a generator, images that are not 3-D or 4-D."""
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator to a noise model, not both")
    if clean.dim() not in (3, 4):
        raise ValueError(f"noise models expect (C, H, W) or (B, C, H, W) images, got shape {tuple(clean.shape)}")


def _from_global_rng() -> torch.Generator:
    """A generator seeded from torch's global RNG: a call given neither seed nor generator follows torch.manual_seed."""
    return torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))


@dataclass(frozen=True)
class NoiseModel:
    """A validated noise model; call it like :func:`add_awgn`. Made by :func:`build_noise`."""

    name: str
    params: tuple[float, ...]

    def __call__(
        self, clean: torch.Tensor, seed: int | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``clean`` (``(C, H, W)`` or ``(B, C, H, W)``) plus noise; ``seed`` reseeds per image, see the module."""
        _check_call(clean, seed, generator)
        if self.name == "awgn" and (seed is None or clean.dim() == 3 or clean.shape[0] == 1):
            return add_awgn(clean, self.params[0], seed=seed, generator=generator)  # the official draw, bit for bit
        if generator is None and seed is None:
            generator = _from_global_rng()
        images = clean.detach().to("cpu", torch.float32).reshape(-1, *clean.shape[-3:])
        sampler = NOISE_MODELS[self.name].sampler
        noise = torch.cat(
            [
                sampler(
                    img[None],
                    self.params,
                    torch.Generator().manual_seed(int(seed)) if seed is not None else generator,
                    seed is not None,
                )
                for img in images
            ]
        )
        return clean + noise.reshape(clean.shape).to(device=clean.device, dtype=clean.dtype)

    def describe(self) -> str:
        """A short label for results tables, e.g. ``hg(sigma_s=40, sigma_c=10)``."""
        names = NOISE_MODELS[self.name].params
        given = [f"{n}={v:g}" for n, v in zip(names, self.params, strict=False)]
        if self.name == "poisson_gaussian" and len(self.params) < 2:
            given.append("read=log-linear" if self.params else "shot, read=random log-linear")
        return f"{self.name}({', '.join(given)})"

    @property
    def is_awgn(self) -> bool:
        return self.name == "awgn"

    @property
    def sigma(self) -> float:
        """AWGN's sigma (0-255 scale), by which the official layout, the tables and the published numbers are
        keyed; other models have none (``ValueError``: ask :attr:`is_awgn` first)."""
        if not self.is_awgn:
            raise ValueError(f"{self.describe()} has no single sigma")
        return self.params[0]

    def label(self) -> str:
        """How a run names its noise: ``sigma 25`` for AWGN, else :meth:`describe`."""
        return f"sigma {sigma_label(self.sigma)}" if self.is_awgn else self.describe()

    def folder_name(self) -> str:
        """The per-noise output folder: ``sigma25`` for AWGN (the official layout), else e.g. ``hg_40_10``."""
        if self.is_awgn:
            return f"sigma{sigma_label(self.sigma)}"
        return "_".join([self.name, *(f"{v:g}" for v in self.params)])


def dbsn_test_noise(clean: torch.Tensor, noise: NoiseModel, seed: int = 0) -> torch.Tensor:
    """``clean`` plus the noise DBSN's test scripts drew for it (``data/dn_dataset.py``, split 'val'): NumPy's
    legacy generator reseeded with ``seed`` (theirs: 0) before every draw of every image, float64 draws cast to
    float32, the image ``(1, C, H, W)`` as they held it (C x H x W). ``awgn``: ``normal(0, sigma/255)``;
    ``hg_dbsn``: ``randn * sigma_s/255 * x + randn * sigma_c/255`` with both draws from the same seed; ``mg``: their
    covariance, WITH the element-wise ``abs`` :data:`NOISE_MODELS`' ``mg`` leaves out (``D`` and ``U`` each drawn
    right after the reseed, so ``U``'s matrix starts with ``D``'s values), sampled by ``multivariate_normal`` per
    pixel. Other noise models raise ``ValueError``: DBSN's test code has no draw of them (its paper-form HG,
    ``poisson_gaussian_blind``, cannot run).
    """
    if clean.dim() != 4 or clean.shape[0] != 1:
        raise ValueError(f"DBSN's test noise is drawn per image: expected (1, C, H, W), got {tuple(clean.shape)}")
    x = clean[0].detach().to("cpu", torch.float32).numpy()
    draw = lambda: np.random.RandomState(seed)  # noqa: E731 (np.random.seed(seed), then the draw)
    if noise.name == "awgn":
        n = draw().normal(0, noise.params[0] / 255.0, x.shape).astype(np.float32)
    elif noise.name == "hg_dbsn":
        s, c = noise.params[0] / 255.0, noise.params[1] / 255.0
        n = (draw().randn(*x.shape) * s * x + draw().randn(*x.shape) * c).astype(np.float32)
    elif noise.name == "mg" and x.shape[0] == 3:
        d = np.diag(draw().rand(3))
        u = np.linalg.svd(draw().rand(3, 3))[0]  # scipy's orth of a full-rank matrix; abs() below drops the signs
        covariance = np.abs((noise.params[0] / 255.0) ** 2 * (u.T @ d @ u))
        n = draw().multivariate_normal(np.zeros(3), covariance, x.shape[1:]).astype(np.float32).transpose(2, 0, 1)
    else:
        raise ValueError(
            f"DBSN's test code draws awgn, hg_dbsn (its HG) and colour mg, not {noise.describe()} on {x.shape[0]} "
            "channel(s): use another --protocol, or one of these noises"
        )
    return clean + torch.from_numpy(np.ascontiguousarray(n))[None].to(device=clean.device, dtype=clean.dtype)


# The spread of the learned noise's level: DBSN's distillation scales it by a uniform factor in [0.9, 1.1).
LEARNED_SPREAD = (0.9, 1.1)


@dataclass(frozen=True, eq=False)
class LearnedNoise(NoiseModel):
    """The ``learned`` noise model bound to a network: ``covariance`` maps a clean ``(1, C, H, W)`` image to the
    noise covariance predicted for it, gray ``(1, 1, H|1, W|1)`` variances or colour ``(1, H|1, W|1, 3, 3)``
    matrices (DBSN: :meth:`adfnet.models.DBSN.noise_covariance`); ``source`` names the network in tables.

    Each image gets ``d * L z``: ``z`` standard normal per pixel and channel, ``L`` the Cholesky factor of the
    covariance (the standard deviation in gray) and ``d`` uniform in :data:`LEARNED_SPREAD`, drawn per image
    (DBSN's ``gray_kd_train.py`` draws one ``d`` per batch of 32). Randomness as every model here.
    """

    covariance: Callable[[torch.Tensor], torch.Tensor] | None = None
    source: str = ""

    def __call__(
        self, clean: torch.Tensor, seed: int | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        _check_call(clean, seed, generator)
        if generator is None and seed is None:
            generator = _from_global_rng()
        images = clean.detach().to("cpu", torch.float32).reshape(-1, *clean.shape[-3:])
        noises = []
        for img in images:
            g = torch.Generator().manual_seed(int(seed)) if seed is not None else generator
            noises.append(self._sample(img[None], g))
        return clean + torch.cat(noises).reshape(clean.shape).to(device=clean.device, dtype=clean.dtype)

    def _sample(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            covariance = self.covariance(x).to("cpu", torch.float64)  # type: ignore[misc]
        z = _normal(x.shape, g).double()
        low, high = LEARNED_SPREAD
        d = low + (high - low) * float(torch.rand(1, generator=g, dtype=torch.float64))
        if x.shape[1] == 1:
            return (d * covariance.sqrt() * z).float()
        factor = torch.linalg.cholesky(covariance + 1e-12 * torch.eye(3, dtype=torch.float64))
        noise = (factor @ z.permute(0, 2, 3, 1).unsqueeze(-1)).squeeze(-1).permute(0, 3, 1, 2)
        return (d * noise).float()

    def describe(self) -> str:
        return f"learned({self.source})" if self.source else "learned"


def sigma_label(sigma: float) -> str:
    """``50.0`` -> ``"50"``, ``12.5`` -> ``"12.5"`` (folder names, tables and the ``{sigma}`` placeholder)."""
    return str(int(sigma)) if float(sigma).is_integer() else str(sigma)


def noise_from_flags(
    name: str | None, params: Sequence[float] | None, sigmas: Sequence[float], raw: bool = False
) -> list[NoiseModel]:
    """The noise models of ``--noise NAME --noise_params ...`` (train.py and test.py; the one place that decides).

    Without ``--noise``: AWGN at each of ``sigmas`` (``--noiseL`` / ``--test_noiseL``), exactly the official
    noise, or for ``raw`` data Brooks et al.'s ``poisson_gaussian``. ``awgn`` takes its sigmas from ``params``
    when given, else from ``sigmas``; any other model is one model with ``params``. ``params`` without a
    name, an unknown name or wrong parameters raise ``ValueError`` naming the flag.
    """
    if params is not None and name is None:
        raise ValueError("--noise_params needs --noise NAME")
    if name is None:
        return [build_noise("poisson_gaussian")] if raw else [build_noise("awgn", (s,)) for s in sigmas]
    if str(name).strip().lower() == "awgn":
        return [build_noise("awgn", (s,)) for s in (params or sigmas)]
    return [build_noise(name, params or ())]


def build_noise(name: str, params: Sequence[float] = ()) -> NoiseModel:
    """The noise model ``name`` (one of :data:`NOISE_NAMES`, any case) with ``params`` (``--noise_params``).

    Raises ``ValueError`` naming the problem for an unknown name, a wrong number of parameters, or a
    parameter that is negative or not finite.
    """
    key = str(name).strip().lower()
    if key not in NOISE_MODELS:
        raise ValueError(f"unknown noise model {name!r}; choose one of {', '.join(NOISE_NAMES)}")
    spec = NOISE_MODELS[key]
    values = tuple(float(v) for v in params)
    if len(values) not in spec.counts:
        counts = " or ".join(str(c) for c in spec.counts)
        usage = " ".join(spec.params)
        raise ValueError(f"noise model {key} takes {counts} parameter(s) ({usage}), got {len(values)}: {spec.summary}")
    for pname, value in zip(spec.params, values, strict=False):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"noise parameter {pname} of {key} must be a finite number >= 0, got {value}")
    if key == "mg" and not values:
        values = (MG_DEFAULT_LEVEL,)
    return NoiseModel(key, values)
