"""VE/VP SDEs, the continuous DSM loss and the reverse-time samplers against the mixture oracle."""
import math

import pytest
import torch

from flowlib import VESDE, VPSDE, GaussianMixture, euler_maruyama, pc_sample, sde_dsm_loss
from flowlib.testing import check_device_dtype
from outcomes import Check, outcome

F64 = dict(dtype=torch.float64)


SDES = [VESDE(0.01, 20.0), VPSDE(0.1, 20.0)]
IDS = ["VE", "VP"]


def target():
    """Two separated modes with weights 0.8 / 0.2: a mode split the samplers must get right."""
    return GaussianMixture([0.8, 0.2], [[-2.0, -1.0], [2.0, 1.5]], stds=[0.5, 0.4])


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_marginal_solves_the_moment_odes(sde):
    # For dx = -0.5 b(t) x dt + g(t) dw: d alpha/dt = -0.5 b alpha, d sigma^2/dt = -b sigma^2 + g^2.
    t = torch.linspace(0.05, 0.95, 7, **F64)
    h = 1e-6
    x = torch.ones(7, 1, **F64)
    (a_p, s_p), (a_m, s_m) = sde.marginal_coefficients(t + h), sde.marginal_coefficients(t - h)
    a, s = sde.marginal_coefficients(t)
    f, g = sde.drift_diffusion(x, t)
    b = -2 * f[:, 0]  # drift coefficient: f = -0.5 b x at x = 1
    g2 = g[:, 0] ** 2
    torch.testing.assert_close((a_p - a_m) / (2 * h), -0.5 * b * a, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close((s_p**2 - s_m**2) / (2 * h), -b * s**2 + g2, rtol=1e-6, atol=1e-6)
    # starts at the data: alpha_0 = 1, sigma_0 = 0
    a0, s0 = sde.marginal_coefficients(torch.zeros(1, **F64))
    assert a0.item() == pytest.approx(1.0) and s0.item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_marginal_matches_forward_sde_simulation(sde):
    gen = torch.Generator().manual_seed(0)
    n, steps, t_end = 20000, 400, 0.6
    x0 = torch.tensor([[1.5, -0.5]], **F64).expand(n, 2)
    x = x0.clone()
    ts = torch.linspace(0, t_end, steps + 1, **F64)
    for i in range(steps):
        f, g = sde.drift_diffusion(x, ts[i])
        dt = ts[i + 1] - ts[i]
        x = x + f * dt + g * dt.sqrt() * torch.randn(x.shape, generator=gen, **F64)
    mean, std = sde.marginal(x0, t_end)
    assert std.shape == (n, 1)
    sd = std[0, 0].item()
    torch.testing.assert_close(x.mean(0), mean[0], atol=5 * sd / math.sqrt(n) + 2e-3, rtol=0)
    torch.testing.assert_close(x.std(0), std[0].expand(2), rtol=0.03, atol=0)


def test_ve_exact_marginal_and_prior():
    sde = VESDE(0.01, 20.0)
    t = torch.tensor([0.3, 1.0], **F64)
    _, std = sde.marginal_coefficients(t)
    sig = 0.01 * (20.0 / 0.01) ** t
    torch.testing.assert_close(std, (sig**2 - 0.01**2).sqrt())
    assert sde.prior_std() == 20.0  # the VE prior is N(0, sigma_max^2 I), not N(0, I)
    z = sde.prior_sample((50000, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(z.std().item() - 20.0) < 0.3


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_prior_log_prob_is_isotropic_normal(sde):
    z = torch.randn(5, 1, 2, 3, generator=torch.Generator().manual_seed(1), **F64) * 3
    ref = torch.distributions.Normal(0.0, sde.prior_std()).log_prob(z).sum((1, 2, 3))
    lp = sde.prior_log_prob(z)
    assert lp.shape == (5,)
    torch.testing.assert_close(lp, ref)


def test_shapes_broadcast_over_images():
    sde = VPSDE()
    x = torch.randn(4, 1, 3, 3)
    t = torch.rand(4)
    mean, std = sde.marginal(x, t)
    assert mean.shape == x.shape and std.shape == (4, 1, 1, 1)
    f, g = sde.drift_diffusion(x, 0.5)
    assert f.shape == x.shape and g.shape == (4, 1, 1, 1)
    out = euler_maruyama(lambda v, s: -v, sde, (4, 1, 3, 3), n_steps=3)
    assert out.shape == (4, 1, 3, 3)


def test_sde_dsm_loss_analytic_for_gaussian_data():
    # x0 ~ N(0, I): under VP p_t = N(0, I), score -x, loss 0.5 D E_t[alpha_t^2]; a score with
    # the wrong variance is worse.
    sde, D, eps = VPSDE(0.1, 20.0), 2, 1e-5
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40000, D, generator=gen, **F64)
    value = sde_dsm_loss(lambda v, t: -v, sde, x, eps=eps, generator=gen)
    ts = torch.linspace(eps, 1.0, 2001, **F64)
    expected = 0.5 * D * torch.trapezoid(sde.marginal_coefficients(ts)[0] ** 2, ts) / (1 - eps)
    assert abs(value.item() - expected.item()) < 0.02
    assert value < sde_dsm_loss(lambda v, t: -0.5 * v, sde, x, eps=eps, generator=gen)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_sde_dsm_loss_prefers_the_exact_marginal_score(sde):
    m = target().double()
    gen = torch.Generator().manual_seed(1)
    x = m.sample(8000, generator=gen)
    exact = sde_dsm_loss(lambda v, t: m.score_at(v, t, sde), sde, x, generator=torch.Generator().manual_seed(2))
    clean = sde_dsm_loss(lambda v, t: m.score(v), sde, x, generator=torch.Generator().manual_seed(2))
    assert exact < clean


def _mode_weight_and_moments(x, m):
    w = (x[:, 0] < 0).float().mean().item()
    return w, (x.mean(0) - m.mean()).abs().max().item(), (torch.cov(x.T) - m.covariance()).abs().max().item()


def _sampler_experiment(kind: str, sde, n_steps: int, weak_steps: int, thresholds: tuple[float, float, float]):
    w, mean, cov = thresholds
    checks = [Check("weight_err", "<", w, f"|fraction in the 0.8 mode - 0.8|, 4000 samples, {n_steps} steps (standard error 0.006)"),
              Check("mean_err", "<", mean, "max |sample mean - mixture mean|"),
              Check("cov_err", "<", cov, "max |sample covariance - mixture covariance|")]

    @outcome(f"tests/test_sde.py::test_{kind}_with_oracle_score_samples_the_target[{sde.__class__.__name__[:2]}]",
             checks, weaker=f"the same sampler with {weak_steps} steps", name=f"{kind}_{sde.__class__.__name__}")
    def run(seed: int, weaker: bool = False) -> dict:
        m, steps, gen = target(), weak_steps if weaker else n_steps, torch.Generator().manual_seed(seed)
        score = lambda v, t: m.score_at(v, t, sde)  # noqa: E731
        if kind == "euler_maruyama":
            x = euler_maruyama(score, sde, (4000, 2), n_steps=steps, generator=gen)
        else:
            x = pc_sample(score, sde, (4000, 2), n_steps=steps, snr=0.16, n_corrector=1, generator=gen)
        w, mean_err, cov_err = _mode_weight_and_moments(x, m)
        return {"weight_err": abs(w - 0.8), "mean_err": mean_err, "cov_err": cov_err}
    return run


# weaker models: a coarse grid of the same sampler; thresholds from bench/outcome-margins.md
EM_EXPERIMENTS = [_sampler_experiment("euler_maruyama", SDES[0], 200, 15, (0.025, 0.1, 0.2)),
                  _sampler_experiment("euler_maruyama", SDES[1], 200, 5, (0.04, 0.1, 0.5))]
PC_EXPERIMENTS = [_sampler_experiment("pc_sample", SDES[0], 100, 10, (0.05, 0.2, 0.35)),
                  _sampler_experiment("pc_sample", SDES[1], 100, 5, (0.04, 0.065, 0.4))]


@pytest.mark.parametrize("experiment", EM_EXPERIMENTS, ids=IDS)
def test_euler_maruyama_with_oracle_score_samples_the_target(experiment):
    experiment.check()


@pytest.mark.parametrize("experiment", PC_EXPERIMENTS, ids=IDS)
def test_pc_sample_with_oracle_score_samples_the_target(experiment):
    experiment.check()


def test_samplers_are_reproducible_with_a_generator():
    sde, m = VPSDE(), target()
    run = lambda: pc_sample(lambda v, t: m.score_at(v, t, sde), sde, (10, 2), n_steps=5, generator=torch.Generator().manual_seed(3))  # noqa: E731
    torch.testing.assert_close(run(), run())


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        VESDE(1.0, 0.5)
    with pytest.raises(ValueError, match="sigma_min"):
        VESDE(0.0, 10.0)
    with pytest.raises(ValueError, match="beta_min <= beta_max"):
        VPSDE(5.0, 1.0)
    with pytest.raises(ValueError, match="beta"):
        VPSDE(-0.1, 1.0)
    sde = VPSDE()
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match=r"\(batch,\)"):
        sde.marginal(x, torch.rand(3))
    with pytest.raises(ValueError, match="batch"):
        sde.drift_diffusion(torch.randn(4), 0.5)
    with pytest.raises(ValueError, match="eps"):
        sde_dsm_loss(lambda v, t: -v, sde, x, eps=0.0)
    with pytest.raises(ValueError, match="n_steps"):
        euler_maruyama(lambda v, t: -v, sde, (4, 2), n_steps=0)
    with pytest.raises(ValueError, match="snr"):
        pc_sample(lambda v, t: -v, sde, (4, 2), snr=-1.0)
    with pytest.raises(ValueError, match="shaped like"):
        euler_maruyama(lambda v, t: v[:, :1], sde, (4, 2), n_steps=2)


def _check_sde_device_dtype(dev, dtype):
    x = torch.randn(6, 2, device=dev, dtype=dtype)
    t = torch.rand(6, device=dev, dtype=dtype)
    for sde in (VESDE(), VPSDE()):
        check_device_dtype(lambda v: (*sde.drift_diffusion(v, t), *sde.marginal(v, 0.3), sde.prior_log_prob(v)), x)
        check_device_dtype(lambda v: sde_dsm_loss(lambda a, s: -a, sde, v, generator=torch.Generator().manual_seed(0)), x)
        gen = torch.Generator().manual_seed(0)
        for sampler in (euler_maruyama, pc_sample):
            out = sampler(lambda a, s: -a, sde, (6, 2), n_steps=3, generator=gen, device=dev, dtype=dtype)
            assert out.device.type == torch.device(dev).type and out.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_and_dtype_kept(device, dtype):  # device: every available one (conftest)
    _check_sde_device_dtype(device, dtype)
