"""Score matching losses and Langevin samplers against analytic values and the mixture oracle."""
import math

import pytest
import torch

import flowlib
from flowlib import (
    GaussianMixture,
    ScoreMLP,
    annealed_langevin,
    dsm_loss,
    esm_loss,
    geometric_sigmas,
    langevin,
    ssm_loss,
)
from flowlib.diffusion.score import jacobian_trace
from flowlib.testing import check_device_dtype
from outcomes import Check, outcome

F64 = dict(dtype=torch.float64)


def small_net(dim=3, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(dim, 16), torch.nn.Tanh(), torch.nn.Linear(16, dim)).double()


def test_jacobian_trace_matches_autograd_jacobian():
    net = small_net()
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), **F64)
    _, tr = jacobian_trace(net, x)
    ref = torch.stack([torch.autograd.functional.jacobian(net, xi).trace() for xi in x])
    torch.testing.assert_close(tr, ref)


def test_esm_loss_of_linear_score_on_gaussian_is_analytic():
    # x ~ N(mu, S), s(x) = -A (x - b): J = -tr A + 0.5 (tr(A S A^T) + ||A (mu - b)||^2)
    mu, b = torch.tensor([1.0, -0.5], **F64), torch.tensor([0.3, 0.2], **F64)
    S = torch.tensor([[1.0, 0.4], [0.4, 0.5]], **F64)
    A = torch.tensor([[1.5, 0.2], [-0.3, 0.8]], **F64)
    n = 20000
    L = torch.linalg.cholesky(S)
    x = mu + torch.randn(n, 2, generator=torch.Generator().manual_seed(1), **F64) @ L.T
    analytic = -A.trace() + 0.5 * ((A @ S @ A.T).trace() + (A @ (mu - b)).pow(2).sum())
    value = esm_loss(lambda v: -(v - b) @ A.T, x)
    per_sample_sd = (0.5 * ((x - b) @ A.T).pow(2).sum(1)).std() / math.sqrt(n)
    assert abs(value.item() - analytic.item()) < 5 * per_sample_sd.item()
    # at the true score (A = S^-1, b = mu) the minimum is -0.5 tr(S^-1)
    P = torch.linalg.inv(S)
    at_true = esm_loss(lambda v: -(v - mu) @ P, x)
    assert abs(at_true.item() + 0.5 * P.trace().item()) < 0.05
    assert at_true < value


def test_esm_minus_minimum_is_fisher_divergence():
    # J(s) - J(grad log p) = 0.5 E||s - grad log p||^2 (Hyvarinen 2005), here on a mixture
    m = GaussianMixture(torch.tensor([0.4, 0.6], **F64), torch.tensor([[-1.0, 0.0], [1.0, 1.0]], **F64), stds=torch.tensor([0.7, 0.5], **F64))
    x = m.sample(20000, generator=torch.Generator().manual_seed(2))
    net = small_net(2, seed=3)
    lhs = esm_loss(net, x) - esm_loss(m.score, x)
    with torch.no_grad():
        rhs = 0.5 * (net(x) - m.score(x)).pow(2).sum(1).mean()
    # both sides are estimated on the same sample; integration by parts holds in expectation
    assert abs(lhs.item() - rhs.item()) < 0.05 * rhs.item() + 0.02


@pytest.mark.parametrize("dist", ["rademacher", "gaussian"])
@pytest.mark.parametrize("variance_reduced", [True, False])
def test_ssm_expectation_matches_esm(dist, variance_reduced):
    net = small_net()
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0), **F64)
    exact = esm_loss(net, x).item()
    sliced = ssm_loss(net, x, n_projections=1000, dist=dist, variance_reduced=variance_reduced, generator=torch.Generator().manual_seed(1))
    # Monte-Carlo sd over projections measured at ~0.003-0.008 for this setup
    assert abs(sliced.item() - exact) < 0.03


def test_ssm_is_trainable():
    net = small_net()
    x = torch.randn(8, 3, **F64)
    ssm_loss(net, x, generator=torch.Generator().manual_seed(0)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_dsm_loss_analytic_for_gaussian_data(sigma):
    # x ~ N(0, I_D): p_sigma = N(0, (1 + sigma^2) I). At its score the loss is 0.5 D / (1 + sigma^2);
    # the unperturbed score -x gives 0.5 D (sigma^2 + (1 - sigma^2)^2).
    D, n = 3, 40000
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, D, generator=gen, **F64)
    exact = dsm_loss(lambda v, s: -v / (1 + s[:, None] ** 2), x, sigma, generator=gen)
    wrong = dsm_loss(lambda v, s: -v, x, sigma, generator=gen)
    assert abs(exact.item() - 0.5 * D / (1 + sigma**2)) < 0.02 * D
    assert abs(wrong.item() - 0.5 * D * (sigma**2 + (1 - sigma**2) ** 2)) < 0.04 * D * (1 + sigma**2)
    assert exact < wrong


def test_dsm_minimum_at_perturbed_mixture_score_with_per_sample_sigma():
    # min value 0.5 (D - sigma^2 E_{p_sigma}||s_sigma||^2) (Tweedie: E[z | x_noisy] = -sigma s_sigma)
    m = GaussianMixture(torch.tensor([0.8, 0.2], **F64), torch.tensor([[-2.0, 0.0], [2.0, 1.0]], **F64), stds=torch.tensor([0.5, 0.3], **F64))
    gen = torch.Generator().manual_seed(1)
    n = 30000
    x = m.sample(n, generator=gen)
    sig = torch.tensor([0.3, 1.0], **F64).repeat(n // 2)
    oracle = lambda v, s: m.affine_score(v, 1.0, s)  # noqa: E731
    value = dsm_loss(oracle, x, sig, generator=gen)
    expected = 0.0
    for s in (0.3, 1.0):
        ps = m.perturbed(s)
        xs = ps.sample(n, generator=gen)
        expected += 0.5 * 0.5 * (2 - s**2 * ps.score(xs).pow(2).sum(1).mean().item())
    assert abs(value.item() - expected) < 0.03
    # the clean-data score and a score at the wrong noise level are both worse
    assert value < dsm_loss(lambda v, s: m.score(v), x, sig, generator=gen)
    assert value < dsm_loss(lambda v, s: m.affine_score(v, 1.0, 2 * s), x, sig, generator=gen)


@outcome("tests/test_score.py::test_langevin_reaches_the_ula_stationary_law_of_a_gaussian",
         [Check("mean_err", "<", 0.09, "max |sample mean - mu| after 300 steps of eps = 0.1, 20000 chains"),
          Check("ula_var_rel", "<", 0.08, "max relative error of the sample variance against the ULA variance",
                weaker="exact samples of N(mu, s^2), without the ULA bias that eps = 0.1 causes", variant="exact"),
          Check("small_step_var_rel", "<", 0.08, "then 400 steps of eps = 0.005: relative error against s^2",
                weaker="the eps = 0.005 phase skipped (the ULA bias of eps = 0.1 stays)", variant="no_small_step")],
         weaker="the same chains run 20 steps: not yet mixed")
def langevin_gaussian(seed: int, weaker: bool | str = False) -> dict:
    # For N(mu, s^2) the unadjusted chain is Gaussian AR(1) with variance s^2 / (1 - eps / (2 s^2)).
    mu, s, eps = torch.tensor([1.0, -2.0], **F64), torch.tensor([0.5, 1.0], **F64), 0.1
    score = lambda v: -(v - mu) / s**2  # noqa: E731
    gen = torch.Generator().manual_seed(seed)
    if weaker == "exact":  # what an exact sampler would give: variance s^2, not the ULA's
        x, traj = mu + s * torch.randn(20000, 2, generator=gen, **F64), torch.zeros(301, 1)
    else:
        x, traj = langevin(score, torch.zeros(20000, 2, **F64), eps, 20 if weaker is True else 300, generator=gen,
                           return_trajectory=True)
    ula_var = s**2 / (1 - eps / (2 * s**2))
    stats = {"mean_err": (x.mean(0) - mu).abs().max().item(),
             "ula_var_rel": ((x.var(0) - ula_var) / ula_var).abs().max().item(),
             "traj_ok": float(traj.shape[0] == (21 if weaker is True else 301))}
    # and a small step is close to the exact variance
    if weaker != "no_small_step":
        x = langevin(score, x, 0.005, 20 if weaker is True else 400, generator=gen)
    stats["small_step_var_rel"] = ((x.var(0) - s**2) / s**2).abs().max().item()
    return stats


def test_langevin_reaches_the_ula_stationary_law_of_a_gaussian():
    assert langevin_gaussian.check()["traj_ok"] == 1.0, "the trajectory has 301 states"
    mu, s = torch.tensor([1.0, -2.0], **F64), torch.tensor([0.5, 1.0], **F64)
    x, traj = langevin(lambda v: -(v - mu) / s**2, torch.zeros(5, 2, **F64), 0.1, 3, generator=torch.Generator().manual_seed(0),
                       return_trajectory=True)
    torch.testing.assert_close(traj[-1], x)


def _separated_modes(seed: int, n: int = 4000):
    # Song & Ermon 2019, section 3.2: separated modes with weights 0.8 / 0.2, uniform starts.
    m = GaussianMixture([0.8, 0.2], [[-4.0, -4.0], [4.0, 4.0]], stds=1.0)
    gen = torch.Generator().manual_seed(seed)
    return m, 16 * torch.rand(n, 2, generator=gen) - 8, gen


@outcome("tests/test_score.py::test_annealed_langevin_recovers_mode_weights_plain_langevin_does_not",
         [Check("weight_err", "<", 0.1, "|fraction in the 0.8 mode - 0.8| after annealed Langevin, 10 levels x 100 steps, 4000 chains")],
         weaker="plain Langevin at the data score, 300 steps (stuck with the initial split)")
def annealed_mode_weights(seed: int, weaker: bool = False) -> dict:
    m, x0, gen = _separated_modes(seed)
    if weaker:
        x = langevin(m.score, x0, 0.1, 300, generator=gen)
    else:
        x = annealed_langevin(lambda v, s: m.affine_score(v, 1.0, s), x0, geometric_sigmas(20.0, 1.0, 10), 0.1, 100, generator=gen)
    return {"weight_err": abs((x.sum(1) < 0).float().mean().item() - 0.8)}


@outcome("tests/test_score.py::test_annealed_langevin_recovers_mode_weights_plain_langevin_does_not",
         [Check("split_err", "<", 0.12, "|fraction in the lower mode - 0.5| after plain Langevin, 300 steps: stuck with the initial split")],
         weaker="(the opposite claim) annealed Langevin, which does move mass between the modes")
def plain_langevin_stuck(seed: int, weaker: bool = False) -> dict:
    m, x0, gen = _separated_modes(seed)
    if weaker:
        x = annealed_langevin(lambda v, s: m.affine_score(v, 1.0, s), x0, geometric_sigmas(20.0, 1.0, 10), 0.1, 100, generator=gen)
    else:
        x = langevin(m.score, x0, 0.1, 300, generator=gen)
    return {"split_err": abs((x.sum(1) < 0).float().mean().item() - 0.5)}


def test_annealed_langevin_recovers_mode_weights_plain_langevin_does_not():
    annealed_mode_weights.check()
    plain_langevin_stuck.check()
    m, x0, gen = _separated_modes(0, 10)
    x, traj = annealed_langevin(lambda v, s: m.affine_score(v, 1.0, s), x0, geometric_sigmas(20.0, 1.0, 10), 0.1, 2,
                                generator=gen, return_trajectory=True, denoise=True)
    assert traj.shape == (11, 10, 2) and x.shape == (10, 2)


def test_geometric_sigmas():
    s = geometric_sigmas(10.0, 0.01, 7, dtype=torch.float64)
    assert s.shape == (7,)
    torch.testing.assert_close(s[[0, -1]], torch.tensor([10.0, 0.01], **F64))
    ratio = s[1:] / s[:-1]
    torch.testing.assert_close(ratio, ratio[0].expand(6))


def test_score_mlp_shapes_and_conditioning():
    for cond, c in (("sigma", torch.tensor([0.1, 1.0, 10.0, 2.0])), ("time", 0.5)):
        net = ScoreMLP(6, hidden=32, n_layers=2, conditioning=cond)
        x = torch.randn(4, 2, 3)
        out = net(x, c)
        assert out.shape == x.shape
    # noise-conditional output is scaled by 1/sigma, so it is trainable with dsm_loss
    net = ScoreMLP(2, hidden=16, n_layers=2)
    dsm_loss(net, torch.randn(16, 2), torch.rand(16) + 0.1, generator=torch.Generator().manual_seed(0)).backward()
    assert all(p.grad is not None for p in net.parameters())


def test_losses_broadcast_over_image_shapes():
    x = torch.randn(4, 1, 2, 2, **F64)
    lin = lambda v: -v  # noqa: E731  score of N(0, I): ESM value is -D + 0.5 E||x||^2
    assert esm_loss(lin, x).item() == pytest.approx(-4 + 0.5 * x.pow(2).sum((1, 2, 3)).mean().item())
    assert ssm_loss(lin, x, n_projections=3).item() == pytest.approx(esm_loss(lin, x).item())  # -v: v^T J v = -||v||^2 = -D
    assert dsm_loss(lambda v, s: -v, x, torch.ones(4, **F64)).dim() == 0
    assert langevin(lin, x, 0.1, 2).shape == x.shape


def test_bad_inputs_raise_value_error():
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="sigma"):
        dsm_loss(lambda v, s: -v, x, 0.0)
    with pytest.raises(ValueError, match="sigma"):
        dsm_loss(lambda v, s: -v, x, torch.ones(3))
    with pytest.raises(ValueError, match="dist"):
        ssm_loss(lambda v: -v, x, dist="uniform")
    with pytest.raises(ValueError, match="shaped like"):
        esm_loss(lambda v: v.sum(1), x)
    with pytest.raises(ValueError, match="batch"):
        esm_loss(lambda v: -v, torch.randn(3))
    with pytest.raises(ValueError, match="step_size"):
        langevin(lambda v: -v, x, -0.1, 3)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        geometric_sigmas(0.1, 1.0, 5)
    with pytest.raises(ValueError, match="sigmas"):
        annealed_langevin(lambda v, s: -v, x, [1.0, -0.1], 0.1, 2)
    with pytest.raises(ValueError, match="features"):
        ScoreMLP(3)(x, 1.0)


def _check_score_device_dtype(dev, dtype):
    x = torch.randn(8, 2, device=dev, dtype=dtype)
    m = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]]).to(dev)
    gen = torch.Generator().manual_seed(0)
    check_device_dtype(lambda v: (esm_loss(m.score, v), ssm_loss(m.score, v, generator=gen), dsm_loss(lambda a, s: m.affine_score(a, 1.0, s), v, 0.5, generator=gen)), x)
    check_device_dtype(lambda v: langevin(m.score, v, 0.1, 3, generator=gen), x)
    check_device_dtype(lambda v: annealed_langevin(lambda a, s: m.affine_score(a, 1.0, s), v, [2.0, 1.0], 0.1, 2, generator=gen), x)
    net = ScoreMLP(2, hidden=8, n_layers=1).to(device=dev, dtype=dtype)
    check_device_dtype(lambda v: net(v, 0.5), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_and_dtype_kept(device, dtype):  # device: every available one (conftest)
    _check_score_device_dtype(device, dtype)
