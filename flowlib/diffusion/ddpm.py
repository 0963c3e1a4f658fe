"""Discrete-time diffusion: DDPM (Ho, Jain & Abbeel 2020), DDIM (Song, Meng & Ermon 2021),
Tweedie's denoiser and classifier-free guidance (Ho & Salimans 2022).

A schedule ``beta_1..beta_N`` defines the forward chain ``q(x_n | x_{n-1}) = N(sqrt(1 - beta_n)
x_{n-1}, beta_n I)`` and its closed-form marginal

    q(x_n | x_0) = N(sqrt(abar_n) x_0, (1 - abar_n) I),    abar_n = prod_{m <= n} (1 - beta_m),

the discretisation of the VP SDE of chapter 8 with ``beta(t) ~ N beta_n`` at ``t = n / N``
(:meth:`NoiseSchedule.vp_sde`). Models here take ``(x, t)`` with ``t = n / N`` in (0, 1] as a
(batch,) tensor (and a class label ``y`` for conditional models) and predict the noise
epsilon; :func:`convert` maps between the epsilon, x_0, v and score parameterisations.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from .score import _check_batch, _expand, _flat
from .sde import VPSDE

__all__ = ["NoiseSchedule", "convert", "tweedie_denoise", "ddpm_loss", "ddpm_sample", "ddim_sample",
           "guided_eps", "drop_labels", "EpsMLP"]

EpsFn = Callable[..., Tensor]  # eps_fn(x, t) or eps_fn(x, t, y)


class NoiseSchedule:
    """The betas of a DDPM chain, ``n = 1..N`` (stored at index ``n - 1``), with
    ``alphas = 1 - betas`` and ``alpha_bar = cumprod(alphas)`` in float64."""

    def __init__(self, betas):
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.dim() != 1 or betas.numel() < 1 or not ((betas > 0) & (betas < 1)).all():
            raise ValueError("NoiseSchedule: betas must be a non-empty 1-D sequence in (0, 1)")
        self.betas = betas
        self.alphas = 1 - betas
        self.alpha_bar = torch.cumprod(self.alphas, 0)
        self.N = betas.numel()

    @classmethod
    def linear(cls, N: int = 1000, beta_1: float = 1e-4, beta_N: float = 0.02) -> "NoiseSchedule":
        """Ho et al. (2020): betas linear from beta_1 to beta_N."""
        return cls(torch.linspace(beta_1, beta_N, N, dtype=torch.float64))

    @classmethod
    def cosine(cls, N: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> "NoiseSchedule":
        """Nichol & Dhariwal (2021): ``abar(t) = cos^2((t + s) / (1 + s) pi / 2) / cos^2(s / (1 + s) pi / 2)``,
        betas from consecutive ratios, clipped at ``max_beta``."""
        t = torch.arange(N + 1, dtype=torch.float64) / N
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        return cls((1 - abar[1:] / abar[:-1]).clamp(max=max_beta))

    def vp_sde(self) -> VPSDE:
        """The VP SDE this (linear) schedule discretises: ``beta(t) = N beta_{tN}``, so
        ``beta_min = N beta_1`` and ``beta_max = N beta_N``; then abar_n ~ alpha(n / N)^2."""
        return VPSDE(self.N * self.betas[0].item(), self.N * self.betas[-1].item())

    def _index(self, n, like: Tensor) -> Tensor:
        n = torch.as_tensor(n, device=like.device)
        n = n.expand(like.shape[0]) if n.dim() == 0 else n
        if n.shape != (like.shape[0],) or n.is_floating_point() or ((n < 1) | (n > self.N)).any():
            raise ValueError(f"timesteps must be integers in 1..{self.N}, a scalar or (batch,) = ({like.shape[0]},)")
        return n.long()

    def abar(self, n, like: Tensor) -> Tensor:
        """alpha_bar at timesteps n (scalar or (batch,)), as (batch,) in like's dtype and device."""
        return self.alpha_bar.to(like.device)[self._index(n, like) - 1].to(like.dtype)

    def times(self, n, like: Tensor) -> Tensor:
        """The models' time input ``t = n / N`` as (batch,)."""
        return self._index(n, like).to(like.dtype) / self.N

    def sample_xt(self, x0: Tensor, n, noise: Tensor) -> Tensor:
        """``x_n = sqrt(abar_n) x_0 + sqrt(1 - abar_n) eps``."""
        _check_batch(x0, "x0")
        ab = _expand(self.abar(n, x0), x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def convert(pred: Tensor, x_t: Tensor, alpha_bar: Tensor, source: str, target: str) -> Tensor:
    """Convert a model output between parameterisations at noise level ``alpha_bar`` ((batch,)
    or scalar), given ``x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps``: ``"eps"``, ``"x0"``, ``"v"``
    (Salimans & Ho 2022: ``v = sqrt(ab) eps - sqrt(1 - ab) x_0``) and ``"score"`` (``-eps / sqrt(1 - ab)``)."""
    kinds = ("eps", "x0", "v", "score")
    if source not in kinds or target not in kinds:
        raise ValueError(f"parameterisations are {kinds}, got {source!r} -> {target!r}")
    ab = torch.as_tensor(alpha_bar, dtype=x_t.dtype, device=x_t.device)
    ab = _expand(ab.expand(x_t.shape[0]) if ab.dim() == 0 else ab, x_t)
    a, s = ab.sqrt(), (1 - ab).sqrt()
    if source == "eps":
        eps = pred
    elif source == "x0":
        eps = (x_t - a * pred) / s
    elif source == "v":
        eps = s * x_t + a * pred
    else:
        eps = -s * pred
    if target == "eps":
        return eps
    if target == "x0":
        return (x_t - s * eps) / a
    if target == "v":
        return a * eps - s * (x_t - s * eps) / a
    return -eps / s


def tweedie_denoise(score: Tensor, x_t: Tensor, alpha_bar) -> Tensor:
    """Tweedie's formula: ``E[x_0 | x_t] = (x_t + (1 - abar) grad log p(x_t)) / sqrt(abar)``."""
    return convert(score, x_t, alpha_bar, "score", "x0")


def _call(eps_fn: EpsFn, x: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
    out = eps_fn(x, t) if y is None else eps_fn(x, t, y)
    if not isinstance(out, Tensor) or out.shape != x.shape:
        raise ValueError(f"the noise model must return a tensor shaped like x {tuple(x.shape)}, got "
                         f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}")
    return out


def ddpm_loss(eps_fn: EpsFn, x0: Tensor, schedule: NoiseSchedule, weighting: str = "simple", y: Tensor | None = None,
              generator: torch.Generator | None = None) -> Tensor:
    """The DDPM objective (scalar): ``n ~ U{1..N}``, ``eps ~ N(0, I)``, mean over the batch of
    ``w_n || eps - eps_theta(x_n, n / N) ||^2``. ``weighting="simple"``: w = 1 (Ho et al.'s
    L_simple); ``"elbo"``: ``w_n = beta_n / (2 alpha_n (1 - abar_n))``, the ELBO's weight with
    the reverse variance sigma_n^2 = beta_n, of which L_simple is a reweighting."""
    _check_batch(x0, "x0")
    if weighting not in ("simple", "elbo"):
        raise ValueError(f"weighting must be 'simple' or 'elbo', got {weighting!r}")
    dev = generator.device if generator is not None else x0.device
    n = torch.randint(1, schedule.N + 1, (x0.shape[0],), generator=generator, device=dev).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=dev, dtype=x0.dtype).to(x0.device)
    err = _flat(_call(eps_fn, schedule.sample_xt(x0, n, eps), schedule.times(n, x0), y) - eps).pow(2).sum(1)
    if weighting == "elbo":
        i = n - 1
        w = schedule.betas.to(x0.device)[i] / (2 * schedule.alphas.to(x0.device)[i] * (1 - schedule.alpha_bar.to(x0.device)[i]))
        err = w.to(x0.dtype) * err
    return err.mean()


@torch.no_grad()
def ddpm_sample(eps_fn: EpsFn, schedule: NoiseSchedule, shape, variance: str = "beta", y: Tensor | None = None,
                generator: torch.Generator | None = None, dtype=None, x_N: Tensor | None = None) -> Tensor:
    """Ancestral sampling (Ho et al. 2020, Algorithm 2), N steps from x_N ~ N(0, I):
    ``x_{n-1} = (x_n - beta_n / sqrt(1 - abar_n) eps_theta) / sqrt(alpha_n) + sigma_n z`` (no
    noise at the last step), with ``sigma_n^2 = beta_n`` or the posterior variance
    ``beta~_n = beta_n (1 - abar_{n-1}) / (1 - abar_n)`` (``variance="posterior"``)."""
    if variance not in ("beta", "posterior"):
        raise ValueError(f"variance must be 'beta' or 'posterior', got {variance!r}")
    dtype = dtype or torch.get_default_dtype()
    x = torch.randn(tuple(shape), generator=generator, dtype=dtype) if x_N is None else x_N.detach().clone()
    _check_batch(x, "x_N")
    for n in range(schedule.N, 0, -1):
        beta, alpha, ab = (v[n - 1].item() for v in (schedule.betas, schedule.alphas, schedule.alpha_bar))
        eps = _call(eps_fn, x, torch.full((x.shape[0],), n / schedule.N, dtype=x.dtype, device=x.device), y)
        x = (x - beta / math.sqrt(1 - ab) * eps) / math.sqrt(alpha)
        if n > 1:
            var = beta if variance == "beta" else beta * (1 - schedule.alpha_bar[n - 2].item()) / (1 - ab)
            x = x + math.sqrt(var) * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return x


@torch.no_grad()
def ddim_sample(eps_fn: EpsFn, schedule: NoiseSchedule, shape, n_steps: int = 50, eta: float = 0.0,
                y: Tensor | None = None, generator: torch.Generator | None = None, dtype=None,
                x_N: Tensor | None = None) -> Tensor:
    """DDIM (Song, Meng & Ermon 2021) on ``n_steps`` evenly spaced timesteps from N down to 1:

        x0_hat = (x - sqrt(1 - abar) eps) / sqrt(abar),
        x' = sqrt(abar') x0_hat + sqrt(1 - abar' - s^2) eps + s z,
        s = eta sqrt((1 - abar') / (1 - abar)) sqrt(1 - abar / abar'),

    ``eta = 0`` is deterministic (an Euler step of the probability-flow ODE in the variables
    ``x / sqrt(abar)`` and ``sqrt((1 - abar) / abar)``); ``eta = 1`` matches DDPM's variance.
    The last step returns x0_hat (abar' = 1)."""
    if not 1 <= n_steps <= schedule.N or eta < 0:
        raise ValueError(f"need 1 <= n_steps <= N = {schedule.N} and eta >= 0, got {n_steps}, {eta}")
    dtype = dtype or torch.get_default_dtype()
    x = torch.randn(tuple(shape), generator=generator, dtype=dtype) if x_N is None else x_N.detach().clone()
    _check_batch(x, "x_N")
    steps = torch.linspace(schedule.N, 1, n_steps).round().long().tolist()
    for i, n in enumerate(steps):
        ab = schedule.alpha_bar[n - 1].item()
        ab_prev = schedule.alpha_bar[steps[i + 1] - 1].item() if i + 1 < len(steps) else 1.0
        eps = _call(eps_fn, x, torch.full((x.shape[0],), n / schedule.N, dtype=x.dtype, device=x.device), y)
        x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
        s = eta * math.sqrt((1 - ab_prev) / (1 - ab)) * math.sqrt(max(0.0, 1 - ab / ab_prev))
        x = math.sqrt(ab_prev) * x0 + math.sqrt(max(0.0, 1 - ab_prev - s * s)) * eps
        if s > 0:
            x = x + s * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return x


def guided_eps(eps_fn: EpsFn, null_label: int, w: float) -> EpsFn:
    """Classifier-free guidance (Ho & Salimans 2022) as a new noise model:
    ``eps_w(x, t, y) = (1 + w) eps(x, t, y) - w eps(x, t, null)``; in scores,
    ``s_w = (1 + w) s(x | y) - w s(x)``, the score of ``p(x | y)^(1 + w) / p(x)^w`` (unnormalised).
    w = 0 is the conditional model, w > 0 trades diversity for fidelity to the label."""
    def guided(x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        null = torch.full_like(y, null_label)
        return (1 + w) * _call(eps_fn, x, t, y) - w * _call(eps_fn, x, t, null)
    return guided


def drop_labels(y: Tensor, p: float, null_label: int, generator: torch.Generator | None = None) -> Tensor:
    """Label dropout for classifier-free guidance: each label becomes ``null_label`` with
    probability p, so one network learns both the conditional and the unconditional model."""
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p}")
    dev = generator.device if generator is not None else y.device
    drop = (torch.rand(y.shape, generator=generator, device=dev) < p).to(y.device)
    return torch.where(drop, torch.full_like(y, null_label), y)


class EpsMLP(nn.Module):
    """A small noise-prediction network ``eps_theta(x, t[, y])`` for vectors: sinusoidal
    features of t in (0, 1] and, with ``n_classes > 0``, a learned embedding of the label
    (``n_classes`` labels plus a null label ``n_classes`` for guidance) are concatenated to x."""

    def __init__(self, dim: int, n_classes: int = 0, hidden: int = 128, n_layers: int = 3, n_freqs: int = 8,
                 label_dim: int = 16):
        super().__init__()
        if dim < 1 or hidden < 1 or n_layers < 1 or n_classes < 0:
            raise ValueError("EpsMLP: dim, hidden, n_layers >= 1 and n_classes >= 0")
        self.dim, self.n_classes, self.null_label = dim, n_classes, n_classes
        self.register_buffer("freqs", (2.0 ** torch.arange(n_freqs, dtype=torch.get_default_dtype())) * math.pi)
        self.embed = nn.Embedding(n_classes + 1, label_dim) if n_classes else None
        width = dim + 1 + 2 * n_freqs + (label_dim if n_classes else 0)
        layers: list[nn.Module] = []
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        _check_batch(x)
        flat = _flat(x)
        if flat.shape[1] != self.dim:
            raise ValueError(f"EpsMLP: expected {self.dim} features per sample, got {flat.shape[1]}")
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        t = t.expand(x.shape[0]) if t.dim() == 0 else t
        ang = t[:, None] * self.freqs.to(x)
        parts = [flat, t[:, None], ang.sin(), ang.cos()]
        if self.embed is not None:
            if y is None:
                y = torch.full((x.shape[0],), self.null_label, dtype=torch.long, device=x.device)
            parts.append(self.embed(y).to(x.dtype))
        return self.net(torch.cat(parts, dim=1)).reshape(x.shape)
