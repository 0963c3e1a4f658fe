"""The probability-flow ODE: deterministic sampling and exact likelihoods from a score model
(Song et al. 2021, section 4.3).

Every SDE ``dx = f dt + g dw`` has an ODE with the same marginals p_t:

    dx/dt = f~(x, t) = f(x, t) - 0.5 g(t)^2 grad log p_t(x).

It is a continuous normalizing flow (Chen et al. 2018), so the instantaneous change of
variables gives the log-density of the data,

    log p_eps(x(eps)) = log p_T(x(T)) + int_eps^T div f~(x(t), t) dt,

with the divergence computed exactly (D backward passes) or by Hutchinson's estimator
v^T (df~/dx) v with one probe v per solve (Grathwohl et al. 2019, FFJORD).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .score import _check_batch, _check_score, _flat, _rademacher
from .sde import SDE

ScoreFn = Callable[[Tensor, Tensor], Tensor]
VelocityFn = Callable[[Tensor, Tensor], Tensor]  # v(x, t), t a (batch,) tensor


def probability_flow_drift(score_fn: ScoreFn, sde: SDE, x: Tensor, t) -> Tensor:
    """f~(x, t) = f(x, t) - 0.5 g(t)^2 s(x, t); t a float or (batch,) tensor."""
    t = sde._times(t, x)
    f, g = sde.drift_diffusion(x, t)
    return f - 0.5 * g**2 * _check_score(score_fn(x, t), x)


def _rk4(fun: Callable[[Tensor, Tensor], Tensor], y: Tensor, t0: float, t1: float, n_steps: int,
         time_power: float = 1.0) -> Tensor:
    """Classical fourth-order Runge-Kutta with n_steps steps from t0 to t1, at
    ``t_i = t0 + (t1 - t0) (i / n)^time_power`` (equal steps for the default power 1)."""
    if time_power <= 0:
        raise ValueError(f"time_power must be positive, got {time_power}")
    ts = torch.linspace(t0, t1, n_steps + 1, dtype=torch.float64)
    if time_power != 1.0:
        ts = t0 + (t1 - t0) * torch.linspace(0, 1, n_steps + 1, dtype=torch.float64) ** time_power
    for i in range(n_steps):
        t, h = ts[i].item(), (ts[i + 1] - ts[i]).item()
        k1 = fun(t, y)
        k2 = fun(t + h / 2, y + h / 2 * k1)
        k3 = fun(t + h / 2, y + h / 2 * k2)
        k4 = fun(t + h, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return y


def _rk45(fun: Callable[[Tensor, Tensor], Tensor], y: Tensor, t0: float, t1: float, rtol: float, atol: float) -> Tensor:
    """Adaptive Dormand-Prince RK45 (scipy.integrate.solve_ivp) as the reference solver; the
    state crosses to NumPy float64 and back at each evaluation."""
    from scipy.integrate import solve_ivp

    shape, like = y.shape, y

    def rhs(t: float, flat: np.ndarray) -> np.ndarray:
        state = torch.as_tensor(flat, dtype=like.dtype, device=like.device).reshape(shape)
        return fun(t, state).detach().reshape(-1).cpu().double().numpy()

    sol = solve_ivp(rhs, (t0, t1), y.detach().reshape(-1).cpu().double().numpy(), method="RK45", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"RK45 failed: {sol.message}")
    return torch.as_tensor(sol.y[:, -1], dtype=like.dtype, device=like.device).reshape(shape)


class _Counter:
    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor]):
        self.fn, self.n = fn, 0

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        self.n += 1
        return self.fn(x, t)


def _check_method(method: str, allowed=("rk4", "rk45")) -> None:
    if method not in allowed:
        raise ValueError(f"method must be one of {', '.join(map(repr, allowed))}, got {method!r}")


def _euler(fun: Callable[[float, Tensor], Tensor], y: Tensor, t0: float, t1: float, n_steps: int) -> Tensor:
    """Explicit Euler with n_steps equal steps from t0 to t1 (one evaluation per step)."""
    ts = torch.linspace(t0, t1, n_steps + 1, dtype=torch.float64)
    for i in range(n_steps):
        t, h = ts[i].item(), (ts[i + 1] - ts[i]).item()
        y = y + h * fun(t, y)
    return y


def _velocity(velocity_fn: VelocityFn, x: Tensor, t: float) -> Tensor:
    """v(x, t) with t as a (batch,) tensor like x, checked to be shaped like x."""
    v = velocity_fn(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device))
    if not isinstance(v, Tensor) or v.shape != x.shape:
        shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
        raise ValueError(f"the velocity (or score) function must return a tensor shaped like its input {tuple(x.shape)}, got {shape}")
    return v


@torch.no_grad()
def velocity_sample(velocity_fn: VelocityFn, x_start: Tensor, t_start: float, t_end: float, n_steps: int = 100,
                    method: str = "rk4", rtol: float = 1e-5, atol: float = 1e-5, return_nfe: bool = False):
    """Integrate ``dx/dt = v(x, t)`` from ``t_start`` to ``t_end`` (either direction) from
    ``x_start``: fixed-step Euler or RK4 (``n_steps`` steps; 1 or 4 evaluations each) or
    adaptive RK45. Any velocity field: a learned one (flow matching) or the probability-flow
    drift of a score model (:func:`ode_sample`). Returns x(t_end), or ``(x, nfe)``."""
    _check_method(method, ("euler", "rk4", "rk45"))
    _check_batch(x_start, "x_start")
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    counted = _Counter(velocity_fn)

    def fun(t: float, y: Tensor) -> Tensor:
        return _velocity(counted, y, t)

    x = x_start.detach()
    if method == "euler":
        x = _euler(fun, x, t_start, t_end, n_steps)
    elif method == "rk4":
        x = _rk4(fun, x, t_start, t_end, n_steps)
    else:
        x = _rk45(fun, x, t_start, t_end, rtol, atol)
    return (x, counted.n) if return_nfe else x


@torch.no_grad()
def ode_sample(
    score_fn: ScoreFn,
    sde: SDE,
    shape,
    n_steps: int = 100,
    method: str = "rk4",
    eps: float = 1e-3,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    generator: torch.Generator | None = None,
    device=None,
    dtype=None,
    x_T: Tensor | None = None,
    return_nfe: bool = False,
):
    """Draw x(T) from the prior and integrate the probability-flow ODE from T down to eps:
    fixed-step RK4 (``n_steps`` steps, 4 score evaluations each) or adaptive RK45.
    Returns the samples, or ``(samples, nfe)`` with the number of score evaluations."""
    _check_method(method)
    if not 0 < eps < sde.T or n_steps < 1:
        raise ValueError(f"need 0 < eps < T and n_steps >= 1, got eps={eps}, n_steps={n_steps}")
    x = sde.prior_sample(shape, generator, device, dtype) if x_T is None else x_T.detach()
    _check_batch(x, "x_T")
    return velocity_sample(lambda y, t: probability_flow_drift(score_fn, sde, y, t), x, sde.T, eps, n_steps, method,
                           rtol, atol, return_nfe)


def velocity_log_prob(
    velocity_fn: VelocityFn,
    x: Tensor,
    t_data: float,
    t_noise: float,
    noise_log_prob: Callable[[Tensor], Tensor],
    trace: str = "exact",
    method: str = "rk4",
    n_steps: int = 100,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    generator: torch.Generator | None = None,
    time_power: float = 1.0,
    create_graph: bool = False,
) -> tuple[Tensor, int]:
    """Log-density (batch,) of x under the continuous normalizing flow ``dx/dt = v(x, t)``
    that carries the density ``noise_log_prob`` at ``t_noise`` to the data at ``t_data``, and
    the number of velocity evaluations. The instantaneous change of variables,

        log p_{t_data}(x) = log p_{t_noise}(x(t_noise)) + int_{t_data}^{t_noise} div v(x(t), t) dt,

    integrated jointly with x from t_data to t_noise; the divergence exactly (D backward
    passes per evaluation) or by Hutchinson's estimator with ONE Rademacher probe for the
    whole solve (a fresh probe per evaluation would make the integrand noise). One code path
    for every velocity: the probability-flow drift of a score model (:func:`ode_log_prob`), a
    flow-matching velocity, a CNF trained by maximum likelihood (``create_graph=True`` keeps
    the graph through the fixed-step solver so the result can be backpropagated)."""
    _check_batch(x)
    _check_method(method, ("euler", "rk4", "rk45"))
    if trace not in ("exact", "hutchinson"):
        raise ValueError(f"trace must be 'exact' or 'hutchinson', got {trace!r}")
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    if create_graph and method == "rk45":
        raise ValueError("create_graph=True needs a fixed-step solver ('euler' or 'rk4'): RK45 runs in NumPy")
    shape, batch = x.shape, x.shape[0]
    n_dims = _flat(x).shape[1]
    probe = _rademacher(shape, x, generator) if trace == "hutchinson" else None
    counted = _Counter(velocity_fn)

    def fun(t: float, state: Tensor) -> Tensor:
        y = state[:, :n_dims].reshape(shape)
        y = y if create_graph and y.requires_grad else y.detach().requires_grad_(True)
        with torch.enable_grad():
            drift = _velocity(counted, y, t)
            if probe is None:
                flat = _flat(drift)
                div = torch.zeros(batch, dtype=x.dtype, device=x.device)
                for i in range(n_dims):
                    (g,) = torch.autograd.grad(flat[:, i].sum(), y, retain_graph=create_graph or i < n_dims - 1,
                                               create_graph=create_graph)
                    div = div + _flat(g)[:, i]
            else:
                (g,) = torch.autograd.grad((drift * probe).sum(), y, create_graph=create_graph)
                div = _flat(g * probe).sum(1)
        if create_graph:
            return torch.cat([_flat(drift), div[:, None]], dim=1)
        return torch.cat([_flat(drift).detach(), div.detach()[:, None]], dim=1)

    start = _flat(x) if create_graph else _flat(x).detach()
    state = torch.cat([start, x.new_zeros(batch, 1)], dim=1)
    if method == "euler":
        state = _euler(fun, state, t_data, t_noise, n_steps)
    elif method == "rk4":
        state = _rk4(fun, state, t_data, t_noise, n_steps, time_power)
    else:
        state = _rk45(fun, state, t_data, t_noise, rtol, atol)
    z, delta = state[:, :n_dims].reshape(shape), state[:, n_dims]
    return noise_log_prob(z) + delta, counted.n


def ode_log_prob(
    score_fn: ScoreFn,
    sde: SDE,
    x: Tensor,
    trace: str = "exact",
    method: str = "rk4",
    n_steps: int = 100,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
    terminal_log_prob: Callable[[Tensor], Tensor] | None = None,
    time_power: float = 1.0,
) -> tuple[Tensor, int]:
    """Per-sample log-likelihood (batch,) of x under the probability-flow ODE, and the number
    of score evaluations (forward passes; the exact trace adds D backward passes to each).

    Integrates the state (x, delta) from eps to T with d delta/dt = div f~(x, t), then
    ``log p_eps(x) = log p_T(x(T)) + delta(T)`` (:func:`velocity_log_prob` with the drift
    f~ as the velocity). ``log p_T`` is ``sde.prior_log_prob`` unless
    ``terminal_log_prob`` is given (e.g. the exact p_T of an oracle, to isolate solver error).
    ``trace='hutchinson'`` draws ONE Rademacher probe for the whole solve: a fresh probe per
    evaluation would make the integrand noise, not an unbiased estimate of a smooth integral.
    The result is the density of p_eps, the marginal at t = eps, not exactly p_0.
    ``time_power > 1`` spaces the RK4 steps more densely near eps (see ``_rk4``): the VP
    ODE of a narrow mixture changes fastest there (bench/ode_likelihood.py measures it)."""
    _check_batch(x)
    _check_method(method)
    if trace not in ("exact", "hutchinson"):
        raise ValueError(f"trace must be 'exact' or 'hutchinson', got {trace!r}")
    if not 0 < eps < sde.T or n_steps < 1:
        raise ValueError(f"need 0 < eps < T and n_steps >= 1, got eps={eps}, n_steps={n_steps}")
    return velocity_log_prob(lambda y, t: probability_flow_drift(score_fn, sde, y, t), x, eps, sde.T,
                             sde.prior_log_prob if terminal_log_prob is None else terminal_log_prob,
                             trace, method, n_steps, rtol, atol, generator, time_power)
