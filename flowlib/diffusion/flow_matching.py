"""Flow matching: continuous normalizing flows trained by regression on a velocity field
(Lipman et al. 2023, conditional flow matching; Liu et al. 2022, rectified flow; Albergo &
Vanden-Eijnden 2023, stochastic interpolants).

Direction, as everywhere in flowlib: **t = 0 is data, t = 1 is noise**, like the SDEs of
:mod:`flowlib.diffusion.sde` (``x_t = alpha_t x_0 + sigma_t z``). A probability path is

    x_t = alpha(t) x_0 + sigma(t) z,    x_0 ~ data, z ~ N(0, I),

with conditional velocity ``d x_t / dt = alpha'(t) x_0 + sigma'(t) z``. The marginal velocity
``u_t(x) = E[alpha' x_0 + sigma' z | x_t = x]`` carries p_0 (data) to p_1 (noise) and back:
sampling integrates ``dx/dt = u_t(x)`` from t = 1 (noise) down to t = 0 (data). Conditional
flow matching regresses a network on the conditional velocity,

    L(theta) = E_{t ~ U(0,1), x_0, z} || v_theta(x_t, t) - (alpha'(t) x_0 + sigma'(t) z) ||^2,

whose minimiser is the marginal velocity (the conditional target's mean given x_t). For a
Gaussian mixture u_t is known in closed form (:meth:`GaussianMixture.velocity_at`), and on
the variance-preserving path it equals the probability-flow drift of the VP SDE.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from .ode import VelocityFn, velocity_log_prob, velocity_sample
from .score import _check_batch, _expand, _flat
from .sde import VPSDE, batch_times

__all__ = ["ProbabilityPath", "LinearPath", "VPPath", "cfm_loss", "fm_sample", "fm_log_prob", "reflow_pairs", "straightness"]


class ProbabilityPath:
    """``x_t = alpha(t) x_0 + sigma(t) z`` on t in [0, 1], data at 0 and noise at 1; subclasses
    give ``coefficients(t)`` and ``derivatives(t)`` elementwise for a tensor t. Also usable
    wherever flowlib expects an SDE's ``marginal_coefficients`` (the mixture oracle)."""

    T: float = 1.0

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return self.coefficients(t)

    def _times(self, t, x: Tensor) -> Tensor:
        t = batch_times(t, x)
        if ((t < 0) | (t > 1)).any():
            raise ValueError("t must lie in [0, 1] (0: data, 1: noise)")
        return t

    def sample(self, x0: Tensor, t, noise: Tensor) -> Tensor:
        """x_t for data x0 (batch, *dims), times t (scalar or (batch,)) and noise like x0."""
        _check_batch(x0, "x0")
        if noise.shape != x0.shape:
            raise ValueError(f"noise must be shaped like x0 {tuple(x0.shape)}, got {tuple(noise.shape)}")
        a, s = self.coefficients(self._times(t, x0))
        return _expand(a, x0) * x0 + _expand(s, x0) * noise

    def conditional_velocity(self, x0: Tensor, t, noise: Tensor) -> Tensor:
        """``alpha'(t) x0 + sigma'(t) z``: the velocity of x_t along its own path."""
        _check_batch(x0, "x0")
        da, ds = self.derivatives(self._times(t, x0))
        return _expand(da, x0) * x0 + _expand(ds, x0) * noise


class LinearPath(ProbabilityPath):
    """The straight (optimal-transport / rectified-flow) path ``x_t = (1 - t) x_0 + t z``:
    alpha = 1 - t, sigma = t; the conditional velocity ``z - x_0`` is constant in t, and
    p_1 = N(0, I) exactly (Lipman et al. 2023 with sigma_min = 0; Liu et al. 2022)."""

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return 1 - t, t

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return -torch.ones_like(t), torch.ones_like(t)


class VPPath(ProbabilityPath):
    """The variance-preserving path of :class:`~flowlib.diffusion.sde.VPSDE` (same alpha_t,
    sigma_t = sqrt(1 - alpha_t^2)): alpha' = -beta(t) alpha / 2, sigma' = beta(t) alpha^2 / (2 sigma).
    Its marginal velocity is the VP probability-flow drift ``-beta (x + score) / 2``."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        self.sde = VPSDE(beta_min, beta_max)

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return self.sde.marginal_coefficients(t)

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        a, s = self.coefficients(t)
        beta = self.sde.beta_min + t * (self.sde.beta_max - self.sde.beta_min)
        return -0.5 * beta * a, 0.5 * beta * a**2 / s


def cfm_loss(velocity_fn: VelocityFn, x0: Tensor, path: ProbabilityPath | None = None, t: Tensor | None = None,
             noise: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Conditional flow matching loss (scalar): mean over the batch of
    ``|| v(x_t, t) - (alpha'(t) x0 + sigma'(t) z) ||^2`` (summed over dimensions), with
    ``t ~ U(0, 1)`` and ``z ~ N(0, I)`` drawn from ``generator`` unless given. Giving ``noise``
    paired with ``x0`` (e.g. from :func:`reflow_pairs`) trains on that coupling instead of the
    independent one."""
    _check_batch(x0, "x0")
    path = LinearPath() if path is None else path
    dev = generator.device if generator is not None else x0.device
    if t is None:
        t = torch.rand(x0.shape[0], generator=generator, device=dev, dtype=x0.dtype).to(x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=dev, dtype=x0.dtype).to(x0.device)
    xt = path.sample(x0, t, noise)
    target = path.conditional_velocity(x0, t, noise)
    v = velocity_fn(xt, path._times(t, x0))
    if not isinstance(v, Tensor) or v.shape != x0.shape:
        raise ValueError(f"velocity_fn must return a tensor shaped like x {tuple(x0.shape)}, got "
                         f"{tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__}")
    return _flat(v - target).pow(2).sum(1).mean()


def fm_sample(velocity_fn: VelocityFn, shape, n_steps: int = 50, method: str = "rk4", t_end: float = 0.0,
              generator: torch.Generator | None = None, device=None, dtype=None, z: Tensor | None = None,
              return_nfe: bool = False):
    """Samples of a flow-matching model: ``z ~ N(0, I)`` at t = 1, integrated down to ``t_end``
    (0: data) with Euler, RK4 or RK45 (:func:`flowlib.diffusion.ode.velocity_sample`)."""
    if z is None:
        dev = generator.device if generator is not None else device
        z = torch.randn(tuple(shape), generator=generator, device=dev, dtype=dtype or torch.get_default_dtype())
        z = z.to(device) if device is not None else z
    return velocity_sample(velocity_fn, z, 1.0, t_end, n_steps, method, return_nfe=return_nfe)


def _std_normal_log_prob(z: Tensor) -> Tensor:
    return -0.5 * (_flat(z) ** 2).sum(1) - 0.5 * _flat(z).shape[1] * math.log(2 * math.pi)


def fm_log_prob(velocity_fn: VelocityFn, x: Tensor, t_data: float = 0.0, trace: str = "exact", method: str = "rk4",
                n_steps: int = 50, generator: torch.Generator | None = None,
                noise_log_prob: Callable[[Tensor], Tensor] | None = None, create_graph: bool = False) -> tuple[Tensor, int]:
    """Log-density of x under a flow-matching model, ``(logp, nfe)``: the instantaneous change
    of variables from ``t_data`` to 1 with N(0, I) at t = 1 (exact for the linear path), by the
    same code as the probability-flow likelihood (:func:`flowlib.diffusion.ode.velocity_log_prob`)."""
    return velocity_log_prob(velocity_fn, x, t_data, 1.0, noise_log_prob or _std_normal_log_prob, trace, method, n_steps,
                             generator=generator, create_graph=create_graph)


@torch.no_grad()
def reflow_pairs(velocity_fn: VelocityFn, n: int, shape=(), n_steps: int = 50, method: str = "rk4",
                 generator: torch.Generator | None = None, dtype=None) -> tuple[Tensor, Tensor]:
    """Rectified flow's reflow step (Liu et al. 2022): noise ``z`` and the samples
    ``x = ODE(z)`` the current model makes of them, ``(x, z)``. Training :func:`cfm_loss` on
    these pairs (``noise=z``) straightens the paths: the new model can take far fewer steps."""
    z = torch.randn((n, *shape), generator=generator, dtype=dtype or torch.get_default_dtype())
    x = velocity_sample(velocity_fn, z, 1.0, 0.0, n_steps, method)
    return x, z


@torch.no_grad()
def straightness(velocity_fn: VelocityFn, z: Tensor, n_steps: int = 50) -> float:
    """How far the ODE paths from ``z`` (t = 1) to the data (t = 0) are from straight lines
    (Liu et al. 2022): the mean over the path and the batch of ``|| (x_1 - x_0) - v(x_t, t) ||^2``
    along an Euler discretisation, where ``x_1 - x_0`` is the path's own end-to-end
    displacement per unit time. 0 exactly when every path is a straight line at constant speed."""
    _check_batch(z, "z")
    ts = torch.linspace(1.0, 0.0, n_steps + 1, dtype=torch.float64)
    x, vs = z, []
    for i in range(n_steps):
        t, h = ts[i].item(), (ts[i + 1] - ts[i]).item()
        v = velocity_fn(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device))
        vs.append(v)
        x = x + h * v
    displacement = z - x  # x(1) - x(0) per unit time
    return torch.stack([_flat(displacement - v).pow(2).sum(1).mean() for v in vs]).mean().item()
