"""Probability-flow ODE sampling and likelihoods against the exact mixture density."""
import math

import pytest
import torch

import flowlib
from flowlib import VESDE, VPSDE, GaussianMixture, bits_per_dim, ode_log_prob, ode_sample, probability_flow_drift
from flowlib.testing import check_device_dtype
from outcomes import Check, outcome

F64 = dict(dtype=torch.float64)


SDES = [VESDE(0.01, 10.0), VPSDE(0.1, 20.0)]
IDS = ["VE", "VP"]


def mixture():
    return GaussianMixture(
        torch.tensor([0.3, 0.7], **F64), torch.tensor([[-2.0, 0.5], [1.5, -1.0]], **F64), stds=torch.tensor([0.5, 0.8], **F64)
    )


def points(n=8, seed=0):
    return mixture().sample(n, generator=torch.Generator().manual_seed(seed))


def test_probability_flow_drift_formula():
    sde, m = VPSDE(), mixture()
    x, t = points(), torch.full((8,), 0.4, **F64)
    f, g = sde.drift_diffusion(x, t)
    torch.testing.assert_close(probability_flow_drift(lambda v, s: m.score_at(v, s, sde), sde, x, t), f - 0.5 * g**2 * m.score_at(x, t, sde))


def _rk4_experiment(sde, solver_threshold: float, prior_threshold: float, bad_prior_var: float):
    @outcome(f"tests/test_ode.py::test_rk4_log_prob_matches_exact_density[{sde.__class__.__name__[:2]}]",
             [Check("solver_err", "<", solver_threshold, "max |log p - exact| over 8 mixture samples, 25 RK4 steps, exact p_T (nats)"),
              Check("prior_err", "<", prior_threshold, "mean |log p - exact| over 64 samples with the SDE's prior as p_T (nats)",
                    weaker=f"the prior N(0, {bad_prior_var:g} I) instead of the SDE's", variant="bad_prior")],
             weaker="10 RK4 steps", name=f"rk4_log_prob_{sde.__class__.__name__}")
    def run(seed: int, weaker: bool | str = False) -> dict:
        m, eps, steps = mixture(), 1e-5, 10 if weaker is True else 25
        x = points(64, seed=seed)
        score = lambda v, t: m.score_at(v, t, sde)  # noqa: E731
        ref = m.log_prob_at(x, eps, sde)
        # with the exact p_T only the solver error is left (~2e-4 nats at 25 steps)
        logp, nfe = ode_log_prob(score, sde, x[:8], method="rk4", n_steps=steps, eps=eps,
                                 terminal_log_prob=m.marginal_at(1.0, sde).log_prob)
        stats = {"solver_err": (logp - ref[:8]).abs().max().item(), "nfe": nfe}
        # with the SDE's prior the prior mismatch is added (~0.1 nats VE sigma_max=10, ~0.01 VP)
        bad = lambda z: -0.5 * (z**2).sum(1) / bad_prior_var - math.log(2 * math.pi * bad_prior_var)  # noqa: E731
        logp, _ = ode_log_prob(score, sde, x, method="rk4", n_steps=steps, eps=eps,
                               terminal_log_prob=bad if weaker == "bad_prior" else None)
        stats["prior_err"] = (logp - ref).abs().mean().item()
        return stats
    return run


# weaker priors: VE N(0, sigma_max^2 / 2), VP N(0, 2 I), each about 0.3-0.5 nats off
RK4_EXPERIMENTS = [_rk4_experiment(SDES[0], 5e-3, 0.25, 50.0), _rk4_experiment(SDES[1], 1.5e-4, 0.15, 2.0)]


@pytest.mark.parametrize("experiment", RK4_EXPERIMENTS, ids=IDS)
def test_rk4_log_prob_matches_exact_density(experiment):
    assert experiment.check()["nfe"] == 100


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_rk45_log_prob_is_tighter(sde):
    m, x, eps = mixture(), points(), 1e-5
    pT = m.marginal_at(1.0, sde)
    logp, nfe = ode_log_prob(lambda v, t: m.score_at(v, t, sde), sde, x, method="rk45", rtol=1e-7, atol=1e-7, eps=eps, terminal_log_prob=pT.log_prob)
    err = (logp - m.log_prob_at(x, eps, sde)).abs().max().item()
    assert err < 1e-5, (err, nfe)  # measured ~1e-7 at ~130-200 evaluations


@outcome("tests/test_ode.py::test_hutchinson_is_unbiased_with_one_probe_per_solve",
         [Check("z", "<", 4.0, "|mean of 400 Hutchinson estimates - exact| in standard errors (a 4-sigma test)", kind="z")],
         weaker="one probe shared by all 400 rows (standard error 0: the bug the test guards against)")
def hutchinson_unbiased(seed: int, weaker: bool = False) -> dict:
    sde, m = VPSDE(0.1, 20.0), mixture()
    score = lambda v, t: m.score_at(v, t, sde)  # noqa: E731
    # 400 copies of one point in one solve: every row has its own probe, so 400 estimates
    x = points(1, seed=3 + seed).expand(400, 2).clone()
    exact, _ = ode_log_prob(score, sde, x[:1], trace="exact", n_steps=20)
    gen = torch.Generator().manual_seed(seed)
    if weaker:
        est = ode_log_prob(score, sde, x[:1], trace="hutchinson", n_steps=20, generator=gen)[0].expand(400)
    else:
        est, _ = ode_log_prob(score, sde, x, trace="hutchinson", n_steps=20, generator=gen)
    se = est.std().item() / math.sqrt(400)
    return {"z": abs(est.mean().item() - exact.item()) / max(se, 1e-12), "std": est.std().item()}


def test_hutchinson_is_unbiased_with_one_probe_per_solve():
    sde, m = VPSDE(0.1, 20.0), mixture()
    score = lambda v, t: m.score_at(v, t, sde)  # noqa: E731
    x = points(1, seed=3).expand(400, 2).clone()
    assert hutchinson_unbiased.check()["std"] > 0  # the probes really differ
    # a probe held fixed for the solve keeps the integrand smooth: the adaptive solver takes
    # about as many steps as with the exact trace (fresh probes per call would not)
    _, nfe_exact = ode_log_prob(score, sde, x[:4], trace="exact", method="rk45", rtol=1e-5, atol=1e-5)
    _, nfe_hutch = ode_log_prob(score, sde, x[:4], trace="hutchinson", method="rk45", rtol=1e-5, atol=1e-5, generator=torch.Generator().manual_seed(1))
    assert nfe_hutch <= 2 * nfe_exact


def test_hutchinson_is_reproducible_with_a_generator():
    sde, m = VESDE(0.01, 10.0), mixture()
    run = lambda: ode_log_prob(lambda v, t: m.score_at(v, t, sde), sde, points(4), trace="hutchinson", n_steps=5, generator=torch.Generator().manual_seed(7))[0]  # noqa: E731
    torch.testing.assert_close(run(), run())


@outcome("tests/test_ode.py::test_ode_sample_with_oracle_score_samples_the_target",
         # (the VP mode weight is kept even by one RK4 step, so it does not tell solvers apart: not checked)
         [Check("vp_mean_err", "<", 0.08, "VP, 30 RK4 steps, 4000 samples: max |sample mean - mixture mean|"),
          Check("ve_weight_err", "<", 0.04, "VE from the exact p_T, 30 RK4 steps: |fraction in the 0.8 mode - 0.8|",
                weaker="the same ODE with 4 RK4 steps", variant="coarse"),
          Check("ve_cov_err", "<", 0.35, "VE: max |sample covariance - mixture covariance|",
                weaker="the same ODE with 4 RK4 steps", variant="coarse")],
         weaker="the same ODE with 1 RK4 step")
def ode_sample_mixture(seed: int, weaker: bool | str = False) -> dict:
    m = GaussianMixture([0.8, 0.2], [[-2.0, -1.0], [2.0, 1.5]], stds=[0.5, 0.4])
    gen, steps = torch.Generator().manual_seed(seed), {True: 1, "coarse": 4}.get(weaker, 30)
    vp = VPSDE(0.1, 20.0)
    x, nfe = ode_sample(lambda v, t: m.score_at(v, t, vp), vp, (4000, 2), n_steps=steps, generator=gen, return_nfe=True)
    stats = {"nfe": nfe, "vp_mean_err": (x.mean(0) - m.mean()).abs().max().item()}
    # VE: start from the exact p_T, so the deterministic map is tested without prior mismatch
    ve = VESDE(0.01, 20.0)
    xT = m.marginal_at(1.0, ve).sample(4000, generator=gen)
    x = ode_sample(lambda v, t: m.score_at(v, t, ve), ve, None, n_steps=steps, x_T=xT)
    stats["ve_weight_err"] = abs((x[:, 0] < 0).float().mean().item() - 0.8)
    stats["ve_cov_err"] = (torch.cov(x.T) - m.covariance()).abs().max().item()
    return stats


def test_ode_sample_with_oracle_score_samples_the_target():
    assert ode_sample_mixture.check()["nfe"] == 120


def test_ode_sample_rk45_agrees_with_rk4():
    # the sampling map x_T -> x_eps is deterministic: two solvers land on the same points
    sde, m = VPSDE(), mixture()
    score = lambda v, t: m.score_at(v, t, sde)  # noqa: E731
    xT = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), **F64)
    a = ode_sample(score, sde, None, method="rk45", x_T=xT)
    b = ode_sample(score, sde, None, method="rk4", n_steps=100, x_T=xT)
    torch.testing.assert_close(a, b, atol=1e-3, rtol=0)


def test_bits_per_dim_offset():
    # uniform density on [0, 1)^D has log p = 0: 8-bit data then costs exactly 8 bits/dim
    assert bits_per_dim(torch.zeros(3), n_dims=64).tolist() == pytest.approx([8.0] * 3)
    logp = torch.tensor([-10.0, 25.0], **F64)
    expected = (-logp / 64 + math.log(256)) / math.log(2)
    torch.testing.assert_close(bits_per_dim(logp, 64, 256), expected)
    assert bits_per_dim(torch.tensor(0.0), 10, n_bins=2).item() == pytest.approx(1.0)


def test_bad_inputs_raise_value_error():
    sde, x = VPSDE(), torch.randn(3, 2)
    score = lambda v, t: -v  # noqa: E731
    with pytest.raises(ValueError, match="trace"):
        ode_log_prob(score, sde, x, trace="stochastic")
    with pytest.raises(ValueError, match="method"):
        ode_log_prob(score, sde, x, method="euler")
    with pytest.raises(ValueError, match="eps"):
        ode_log_prob(score, sde, x, eps=1.5)
    with pytest.raises(ValueError, match="method"):
        ode_sample(score, sde, (3, 2), method="dopri")
    with pytest.raises(ValueError, match="n_dims"):
        bits_per_dim(torch.zeros(2), 0)


def _check_ode_device_dtype(dev, dtype):
    x = torch.randn(4, 2, device=dev, dtype=dtype)
    sde = VESDE(0.01, 5.0)
    score = lambda v, t: -v / (1 + sde.marginal_coefficients(t)[1][:, None] ** 2)  # noqa: E731  N(0, I) data
    for trace in ("exact", "hutchinson"):
        check_device_dtype(lambda v: ode_log_prob(score, sde, v, trace=trace, n_steps=3, generator=torch.Generator().manual_seed(0))[0], x)
    check_device_dtype(lambda v: ode_log_prob(score, sde, v, method="rk45", rtol=1e-3, atol=1e-3)[0], x)
    out = ode_sample(score, sde, (4, 2), n_steps=3, device=dev, dtype=dtype)
    assert out.device.type == torch.device(dev).type and out.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_and_dtype_kept(device, dtype):  # device: every available one (conftest)
    _check_ode_device_dtype(device, dtype)


def _narrow_mixture():
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]], dtype=torch.float64)
    return GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), means,
                           stds=torch.tensor([0.5, 0.7, 0.4], dtype=torch.float64))


@outcome("tests/test_ode.py::test_rk4_time_power_concentrates_steps_where_the_vp_ode_is_stiff",
         [Check("max_err", "<", 1.6e-3, "max |log p - exact log p_eps| over 256 samples, VP, 25 RK4 steps spaced t ~ (i/n)^2 (nats)")],
         weaker="25 evenly spaced RK4 steps (time_power = 1)", seed=1)
def rk4_time_power(seed: int, weaker: bool = False) -> dict:
    """A narrow 2-D mixture under VP (bench/ode_likelihood.py's): steps concentrated near
    t = 0, where the ODE is stiff, beat evenly spaced ones at the same cost."""
    gm, sde, eps = _narrow_mixture(), VPSDE(), 1e-5
    x = gm.sample(256, generator=torch.Generator().manual_seed(seed))
    logp, nfe = ode_log_prob(lambda v, t: gm.score_at(v, t, sde), sde, x, n_steps=25, eps=eps,
                             terminal_log_prob=lambda z: gm.log_prob_at(z, sde.T, sde), time_power=1.0 if weaker else 2.0)
    return {"max_err": (logp - gm.log_prob_at(x, eps, sde)).abs().max().item(), "nfe": nfe}


def test_rk4_time_power_concentrates_steps_where_the_vp_ode_is_stiff():
    assert rk4_time_power.check()["nfe"] == 100
    with pytest.raises(ValueError, match="time_power"):
        ode_log_prob(lambda v, t: _narrow_mixture().score_at(v, t, VPSDE()), VPSDE(), torch.zeros(2, 2, dtype=torch.float64),
                     n_steps=2, time_power=0.0)
