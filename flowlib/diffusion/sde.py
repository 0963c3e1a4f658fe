"""Diffusion SDEs, their denoising loss and reverse-time samplers (Song et al. 2021,
"Score-Based Generative Modeling through Stochastic Differential Equations").

A forward SDE ``dx = f(x, t) dt + g(t) dw`` on t in [0, T = 1] turns data into noise. Its
time reversal (Anderson 1982) is

    dx = [f(x, t) - g(t)^2 grad log p_t(x)] dt + g(t) dw_bar,

so a score model ``score_fn(x, t)`` (t a (batch,) tensor) turns noise back into data.

Shapes: x is (batch, *dims); t is a float or a (batch,) tensor. ``diffusion`` and ``std`` come
back as (batch, 1, ..., 1) so that ``g * z`` and ``std * z`` broadcast against x.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from .gmm import _randn
from .score import _check_batch, _check_score, _expand, _flat

ScoreFn = Callable[[Tensor, Tensor], Tensor]


def batch_times(t, x: Tensor) -> Tensor:
    """t (a scalar or (batch,)) as a (batch,) tensor on x's device and dtype."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.dim() == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must be a scalar or have shape (batch,) = ({x.shape[0]},), got {tuple(t.shape)}")
    return t


class SDE:
    """A linear diffusion with Gaussian marginals ``x_t = alpha_t x_0 + sigma_t z``.

    Subclasses give ``drift_diffusion``, ``marginal_coefficients`` and the prior."""

    T: float = 1.0

    def _times(self, t, x: Tensor) -> Tensor:
        return batch_times(t, x)

    def drift_diffusion(self, x: Tensor, t) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        """(alpha_t, sigma_t) elementwise for a tensor of times t."""
        raise NotImplementedError

    def marginal(self, x0: Tensor, t) -> tuple[Tensor, Tensor]:
        """Mean and std of p(x_t | x_0) = N(alpha_t x_0, sigma_t^2 I); std is (batch, 1, ..., 1)."""
        _check_batch(x0, "x0")
        alpha, std = self.marginal_coefficients(self._times(t, x0))
        return _expand(alpha, x0) * x0, _expand(std, x0)

    def prior_std(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def prior_sample(self, shape, generator: torch.Generator | None = None, device=None, dtype=None) -> Tensor:
        """Draws from the prior N(0, prior_std^2 I) of the given shape (batch, *dims)."""
        like = torch.empty((), device=device, dtype=dtype or torch.get_default_dtype())
        return self.prior_std() * _randn(tuple(shape), like, generator)

    def prior_log_prob(self, z: Tensor) -> Tensor:
        """log N(z; 0, prior_std^2 I), summed over the non-batch dims: shape (batch,)."""
        _check_batch(z, "z")
        s = self.prior_std()
        n = _flat(z).shape[1]
        return -0.5 * _flat(z).pow(2).sum(1) / s**2 - n * (math.log(s) + 0.5 * math.log(2 * math.pi))


class VESDE(SDE):
    """Variance exploding SDE (Song et al. 2021, eq. 9), the continuum of Song & Ermon 2019:

        dx = sqrt(d[sigma^2(t)]/dt) dw,   sigma(t) = sigma_min (sigma_max / sigma_min)^t,

    so g(t) = sigma(t) sqrt(2 log(sigma_max / sigma_min)), f = 0. Exact marginal: alpha_t = 1,
    sigma_t^2 = sigma(t)^2 - sigma_min^2 (score_sde uses sigma(t), i.e. treats the data as
    already carrying sigma_min noise; we keep the exact law of the SDE started at the data).
    Prior N(0, sigma_max^2 I)."""

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        if not (0 < sigma_min < sigma_max) or not math.isfinite(sigma_max):
            raise ValueError(f"VESDE needs 0 < sigma_min < sigma_max < inf, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def drift_diffusion(self, x: Tensor, t) -> tuple[Tensor, Tensor]:
        _check_batch(x)
        t = self._times(t, x)
        g = self.sigma(t) * math.sqrt(2 * self._log_ratio)
        return torch.zeros_like(x), _expand(g, x)

    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        # sigma_min^2 (e^{2 t log r} - 1) without cancellation at small t
        std = self.sigma_min * torch.expm1(2 * t * self._log_ratio).clamp_min(0).sqrt()
        return torch.ones_like(t), std

    def prior_std(self) -> float:
        return self.sigma_max

    def __repr__(self) -> str:
        return f"VESDE(sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"


class VPSDE(SDE):
    """Variance preserving SDE (Song et al. 2021, eq. 11), the continuum of DDPM (Ho et al. 2020):

        dx = -0.5 beta(t) x dt + sqrt(beta(t)) dw,   beta(t) = beta_min + t (beta_max - beta_min).

    Marginal: alpha_t = exp(-0.5 int_0^t beta), sigma_t^2 = 1 - alpha_t^2. Prior N(0, I)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not (0 <= beta_min <= beta_max) or not beta_max > 0 or not math.isfinite(beta_max):
            raise ValueError(f"VPSDE needs 0 <= beta_min <= beta_max, beta_max > 0, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def drift_diffusion(self, x: Tensor, t) -> tuple[Tensor, Tensor]:
        _check_batch(x)
        b = _expand(self.beta(self._times(t, x)), x)
        return -0.5 * b * x, b.sqrt()

    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        log_alpha = -0.5 * (self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2)
        return log_alpha.exp(), (-torch.expm1(2 * log_alpha)).clamp_min(0).sqrt()

    def prior_std(self) -> float:
        return 1.0

    def __repr__(self) -> str:
        return f"VPSDE(beta_min={self.beta_min}, beta_max={self.beta_max})"


def sde_dsm_loss(score_fn: ScoreFn, sde: SDE, x: Tensor, eps: float = 1e-5, generator: torch.Generator | None = None) -> Tensor:
    """Continuous-time denoising score matching (Song et al. 2021, eq. 7) with
    lambda(t) = sigma_t^2 and t ~ U[eps, T]:

        0.5 E_t E||sigma_t s(x_t, t) + z||^2,   x_t = alpha_t x_0 + sigma_t z.

    eps > 0 keeps sigma_t away from 0, where the target -z/sigma_t blows up."""
    _check_batch(x)
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must be in (0, T), got {eps}")
    dev = generator.device if generator is not None else x.device
    u = torch.rand(x.shape[0], generator=generator, device=dev, dtype=x.dtype).to(x.device)
    t = eps + (sde.T - eps) * u
    mean, std = sde.marginal(x, t)
    z = _randn(x.shape, x, generator)
    s = _check_score(score_fn(mean + std * z, t), x)
    return 0.5 * _flat(std * s + z).pow(2).sum(1).mean()


def _sampler_setup(sde: SDE, shape, n_steps: int, eps: float, generator, device, dtype, x_T):
    if n_steps < 1 or not 0 < eps < sde.T:
        raise ValueError(f"need n_steps >= 1 and 0 < eps < T, got n_steps={n_steps}, eps={eps}")
    x = sde.prior_sample(shape, generator, device, dtype) if x_T is None else x_T.detach()
    _check_batch(x, "the sampler state")
    ts = torch.linspace(sde.T, eps, n_steps + 1, dtype=x.dtype, device=x.device)
    return x, ts


@torch.no_grad()
def euler_maruyama(
    score_fn: ScoreFn,
    sde: SDE,
    shape,
    n_steps: int = 500,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
    device=None,
    dtype=None,
    x_T: Tensor | None = None,
    denoise: bool = True,
) -> Tensor:
    """Sample by Euler-Maruyama on the reverse SDE from T down to eps (Song et al. 2021):

        x <- x - [f(x, t) - g(t)^2 s(x, t)] h + g(t) sqrt(h) z,   h = (T - eps) / n_steps.

    ``denoise`` returns the last step's mean (no noise added at the end). ``x_T`` replaces the
    prior draw (then ``shape`` is ignored)."""
    x, ts = _sampler_setup(sde, shape, n_steps, eps, generator, device, dtype, x_T)
    x_mean = x
    for i in range(n_steps):
        t, h = ts[i], ts[i] - ts[i + 1]
        f, g = sde.drift_diffusion(x, t)
        x_mean = x - (f - g**2 * _check_score(score_fn(x, t.expand(x.shape[0])), x)) * h
        x = x_mean + g * h.sqrt() * _randn(x.shape, x, generator)
    return x_mean if denoise else x


@torch.no_grad()
def pc_sample(
    score_fn: ScoreFn,
    sde: SDE,
    shape,
    n_steps: int = 500,
    snr: float = 0.16,
    n_corrector: int = 1,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
    device=None,
    dtype=None,
    x_T: Tensor | None = None,
    denoise: bool = True,
) -> Tensor:
    """Predictor-corrector sampling (Song et al. 2021, Algorithms 4-5): at each time, first
    ``n_corrector`` Langevin steps targeting p_t with the signal-to-noise step size

        eps_t = 2 (snr ||z|| / ||s(x, t)||)^2   (norms averaged over the batch),

    then one reverse-SDE Euler-Maruyama predictor step to the next time."""
    if snr <= 0 or n_corrector < 0:
        raise ValueError(f"need snr > 0 and n_corrector >= 0, got snr={snr}, n_corrector={n_corrector}")
    x, ts = _sampler_setup(sde, shape, n_steps, eps, generator, device, dtype, x_T)
    x_mean = x
    for i in range(n_steps):
        t, h = ts[i], ts[i] - ts[i + 1]
        tb = t.expand(x.shape[0])
        for _ in range(n_corrector):
            s = _check_score(score_fn(x, tb), x)
            z = _randn(x.shape, x, generator)
            ratio = _flat(z).norm(dim=1).mean() / _flat(s).norm(dim=1).mean().clamp_min(torch.finfo(x.dtype).tiny)
            step = 2 * (snr * ratio) ** 2
            x = x + step * s + (2 * step).sqrt() * z
        f, g = sde.drift_diffusion(x, t)
        x_mean = x - (f - g**2 * _check_score(score_fn(x, tb), x)) * h
        x = x_mean + g * h.sqrt() * _randn(x.shape, x, generator)
    return x_mean if denoise else x
