"""Flow matching (flowlib/diffusion/flow_matching.py) and the mixture's exact velocity against ground
truth: the continuity equation by autograd, the VP path against the probability-flow drift,
the limits t = 0 and t = 1, likelihoods against the exact density, a linear field whose flow
is a matrix exponential (value and gradient), and straightness."""
from __future__ import annotations

import math

import pytest
import torch

from flowlib import VPSDE, GaussianMixture, probability_flow_drift
from flowlib.diffusion.flow_matching import LinearPath, VPPath, cfm_loss, fm_log_prob, fm_sample, reflow_pairs, straightness
from flowlib.diffusion.ode import velocity_sample

F64 = torch.float64


def _mixture() -> GaussianMixture:
    covs = torch.tensor([[[0.30, 0.12], [0.12, 0.20]], [[0.15, -0.05], [-0.05, 0.40]], [[0.25, 0.0], [0.0, 0.25]]], dtype=F64)
    return GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=F64),
                           torch.tensor([[-1.5, 0.5], [1.0, 1.2], [0.5, -1.5]], dtype=F64), covs=covs)


PATHS = {"linear": LinearPath(), "vp": VPPath()}


@pytest.mark.parametrize("name", PATHS)
@pytest.mark.parametrize("t", [0.05, 0.3, 0.7, 0.95])
def test_exact_velocity_solves_the_continuity_equation(name, t):
    """d/dt log p_t + div u_t + u_t . grad log p_t = 0, with d/dt and div by autograd."""
    gmm, path = _mixture(), PATHS[name]
    x = torch.randn(12, 2, generator=torch.Generator().manual_seed(3), dtype=F64) * 1.5
    tt = torch.full((12,), t, dtype=F64, requires_grad=True)
    a, s = path.coefficients(tt)
    (dlogp_dt,) = torch.autograd.grad(gmm.affine_log_prob(x, a, s).sum(), tt)
    xg = x.clone().requires_grad_(True)
    u = gmm.velocity_at(xg, t, path)
    div = sum(torch.autograd.grad(u[:, i].sum(), xg, retain_graph=True)[0][:, i] for i in range(2))
    score = gmm.affine_score(x, a.detach(), s.detach())
    residual = dlogp_dt + div + (u * score).sum(1)
    assert residual.abs().max() < 1e-10, f"{name} path, t={t}: continuity residual {residual.abs().max():.2e}"


def test_vp_path_velocity_is_the_probability_flow_drift():
    gmm, path = _mixture(), VPPath()
    sde = VPSDE()
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    for t in (0.01, 0.2, 0.6, 1.0):
        drift = probability_flow_drift(lambda y, tt: gmm.score_at(y, tt, sde), sde, x, t)
        err = (gmm.velocity_at(x, t, path) - drift).abs().max()
        assert err < 1e-10, f"t={t}: VP velocity differs from the probability-flow drift by {err:.2e}"


def test_linear_path_velocity_limits():
    """t = 0: x_t = x_0, so u = E[z] - x = -x. t = 1: x_t = z, so u = x - E[x_0]."""
    gmm, path = _mixture(), LinearPath()
    x = torch.randn(30, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    assert (gmm.velocity_at(x, 0.0, path) + x).abs().max() < 1e-12
    assert (gmm.velocity_at(x, 1.0, path) - (x - gmm.mean())).abs().max() < 1e-12


def test_likelihood_of_the_exact_velocity_is_the_mixture_density():
    gmm, path = _mixture(), LinearPath()
    x = gmm.sample(20, torch.Generator().manual_seed(6))
    logp, nfe = fm_log_prob(lambda y, t: gmm.velocity_at(y, t, path), x, n_steps=100)
    err = (logp - gmm.log_prob(x)).abs().max()
    # measured 2.9e-7 with 100 RK4 steps (1.7e-8 with 200: fourth order)
    assert err < 1e-5 and nfe == 400, f"max |log p error| {err:.2e}, nfe {nfe}"


def test_the_exact_flow_is_reversible_and_carries_noise_to_data_support():
    gmm, path = _mixture(), LinearPath()
    v = lambda y, t: gmm.velocity_at(y, t, path)  # noqa: E731
    z = torch.randn(40, 2, generator=torch.Generator().manual_seed(7), dtype=F64)
    x = fm_sample(v, None, n_steps=200, z=z)
    back = velocity_sample(v, x, 0.0, 1.0, n_steps=200)
    assert (back - z).abs().max() < 1e-3, f"noise -> data -> noise round trip off by {(back - z).abs().max():.2e}"
    assert torch.isfinite(gmm.log_prob(x)).all() and gmm.log_prob(x).mean() > -4.0


def test_linear_field_likelihood_and_its_gradient_are_exact():
    """v(x, t) = A x: x(1) = exp(A) x(0), log p_0(x) = log N(exp(A) x) + tr A, for the value
    and (create_graph) the gradient with respect to A."""
    A = torch.tensor([[0.3, -0.4], [0.2, -0.1]], dtype=F64, requires_grad=True)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(8), dtype=F64)
    logp, _ = fm_log_prob(lambda y, t: y @ A.T, x, method="rk4", n_steps=40, create_graph=True)
    exact = (-0.5 * (x @ torch.linalg.matrix_exp(A).T).pow(2).sum(1) - math.log(2 * math.pi)) + torch.trace(A)
    assert (logp - exact).abs().max() < 1e-8
    (g,) = torch.autograd.grad(logp.sum(), A)
    (g_exact,) = torch.autograd.grad(exact.sum(), A)
    assert (g - g_exact).abs().max() < 1e-7, f"gradient off by {(g - g_exact).abs().max():.2e}"


def test_cfm_loss_is_minimised_by_the_exact_velocity_up_to_its_variance():
    """L(v) - L(u) = E||v - u||^2 for the same draws when v - u is a constant c, up to the
    cross term 2 c . mean(u - target), whose size is checked against its own standard error."""
    gmm, path = _mixture(), LinearPath()
    g = torch.Generator().manual_seed(9)
    x0 = gmm.sample(4000, g)
    t = torch.rand(4000, generator=g, dtype=F64)
    z = torch.randn(4000, 2, generator=g, dtype=F64)
    u = lambda y, tt: gmm.velocity_at(y, tt, path)  # noqa: E731
    c = torch.tensor([0.3, -0.2], dtype=F64)
    base = cfm_loss(u, x0, path, t=t, noise=z)
    shifted = cfm_loss(lambda y, tt: u(y, tt) + c, x0, path, t=t, noise=z)
    assert shifted > base and abs((shifted - base).item() - (c @ c).item()) < 0.05
    with pytest.raises(ValueError, match="shaped like"):
        cfm_loss(lambda y, tt: y[:, :1], x0[:5], path)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cfm_loss(u, x0[:5], path, t=torch.full((5,), 1.5, dtype=F64))


def test_straightness_and_reflow():
    const = lambda y, t: torch.ones_like(y)  # noqa: E731  (straight paths at constant speed)
    z = torch.randn(10, 2, dtype=F64)
    assert straightness(const, z) < 1e-20
    gmm, path = _mixture(), LinearPath()
    assert straightness(lambda y, t: gmm.velocity_at(y, t, path), z, n_steps=100) > 1e-3
    x, zz = reflow_pairs(lambda y, t: gmm.velocity_at(y, t, path), 16, (2,), n_steps=20,
                         generator=torch.Generator().manual_seed(1), dtype=F64)
    assert x.shape == zz.shape == (16, 2) and torch.isfinite(x).all()
