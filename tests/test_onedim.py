"""Topic 1: elementwise affine and CDF flows, checked against autograd and grid integration."""
import math

import pytest
import torch

from flowlib import Beta, BoxUniform, Compose, Flow, StandardNormal, fit, seed_everything
from flowlib.flows.onedim import Affine, Logit, MixtureCDF, Probit, bisection_inverse, mixture_cdf
from flowlib.testing import check_bijection, check_density_integrates
from outcomes import Check, outcome


def _random_mixture(dim=2, k=4, kind="gaussian", seed=0):
    g = torch.Generator().manual_seed(seed)
    m = MixtureCDF(dim, k, kind=kind)
    with torch.no_grad():
        m.logits.copy_(torch.randn(dim, k, generator=g))
        m.means.copy_(2 * torch.randn(dim, k, generator=g))
        m.log_scales.copy_(0.5 * torch.randn(dim, k, generator=g))
    return m


# (bijection, input) pairs: every topic-1 bijection goes through the same battery.
BIJECTIONS = {
    "affine": (lambda: Affine([0.5, -1.0, 2.0], [2.0, -0.3, 1.5], shape=(3,)), lambda: torch.randn(6, 3)),
    "affine-2d-event": (lambda: Affine(0.1, 3.0, shape=(2, 2)), lambda: torch.randn(4, 2, 2)),
    "mixture-gaussian": (lambda: _random_mixture(kind="gaussian"), lambda: 2 * torch.randn(6, 2)),
    "mixture-logistic": (lambda: _random_mixture(kind="logistic"), lambda: 2 * torch.randn(6, 2)),
    "probit": (Probit, lambda: torch.rand(6, 3) * 0.98 + 0.01),
    "logit": (Logit, lambda: torch.rand(6, 3) * 0.98 + 0.01),
    "cdf-then-probit": (lambda: Compose(_random_mixture(), Probit()), lambda: torch.randn(6, 2)),
}


@pytest.mark.parametrize("name", sorted(BIJECTIONS))
def test_bijection_battery(name):
    torch.manual_seed(0)
    make, data = BIJECTIONS[name]
    check_bijection(make().double(), data().double(), atol=1e-7)


@pytest.mark.parametrize("name", sorted(BIJECTIONS))
def test_bijection_keeps_device_and_float32(name, device):
    torch.manual_seed(0)
    make, data = BIJECTIONS[name]
    bij, x = make().to(device), data().to(device)
    z, ladj = bij(x)
    assert z.device.type == device.type and z.dtype == torch.float32 and ladj.shape == (x.shape[0],)


def test_affine_rejects_non_invertible_scale():
    with pytest.raises(ValueError, match="non-zero"):
        Affine(0.0, [1.0, 0.0], shape=(2,))
    with pytest.raises(ValueError, match="finite"):
        Affine(0.0, float("inf"))


def test_negative_scale_uses_absolute_value():
    """x = -2 z: p(x) = N(x; 0, 4); log|a| not log a."""
    flow = Flow(StandardNormal(1), Affine(0.0, -2.0, shape=(1,))).double()
    x = torch.tensor([[0.7]], dtype=torch.float64)
    expected = -0.5 * (0.7 / 2) ** 2 - math.log(2) - 0.5 * math.log(2 * math.pi)
    # float32 parameters cast to float64: log 2 is exact to ~1e-8; a sign bug would be off by NaN or more.
    assert abs(flow.log_prob(x).item() - expected) < 1e-6


def test_affine_keeps_float64_parameters_exact():
    """A float64 scale keeps log|a| in float64 (issue 19: the float32 log|a| used most of a
    float64 hidden test's 1e-5 tolerance); dtype= does the same for Python numbers."""
    a, b = torch.tensor([-1.7, 0.3, 2.9], dtype=torch.float64), torch.tensor([0.25, -2.0, 1.0], dtype=torch.float64)
    x = torch.linspace(-5, 5, 12, dtype=torch.float64).reshape(4, 3)
    exact = torch.distributions.Normal(b, a.abs()).log_prob(x).sum(-1)
    for affine in (Affine(b, a, shape=(3,)), Affine(b.tolist(), a.tolist(), shape=(3,), dtype=torch.float64)):
        assert affine.log_abs_scale.dtype == affine.shift.dtype == torch.float64
        got = Flow(StandardNormal(3).double(), affine).log_prob(x)
        assert (got - exact).abs().max() < 1e-12, f"max error {(got - exact).abs().max():.2e} (float64 expected 1e-12)"
    assert Affine(0.5, 2.0).log_abs_scale.dtype == torch.get_default_dtype()


@pytest.mark.parametrize("kind", ["gaussian", "logistic"])
def test_mixture_cdf_matches_torch_distributions(kind):
    g = torch.Generator().manual_seed(1)
    logits, means = torch.randn(5, generator=g).double(), torch.randn(5, generator=g).double()
    log_scales = 0.3 * torch.randn(5, generator=g).double()
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    F, log_dens = mixture_cdf(x, logits, means, log_scales, kind)
    w = torch.softmax(logits, 0)
    if kind == "gaussian":
        comp = torch.distributions.Normal(means, log_scales.exp())
        cdf_ref = (w * comp.cdf(x[:, None])).sum(1)
    else:
        s = (x[:, None] - means) / log_scales.exp()
        cdf_ref = (w * torch.sigmoid(s)).sum(1)
    assert torch.allclose(F, cdf_ref, atol=1e-12)
    # The log-derivative is the derivative of F, by autograd.
    xg = x.clone().requires_grad_(True)
    (dF,) = torch.autograd.grad(mixture_cdf(xg, logits, means, log_scales, kind)[0].sum(), xg)
    assert torch.allclose(log_dens.exp(), dF, rtol=1e-9, atol=1e-12)


def test_mixture_cdf_rejects_mismatched_components():
    with pytest.raises(ValueError, match="same number of components"):
        mixture_cdf(torch.zeros(3), torch.zeros(3), torch.zeros(4), torch.zeros(3))
    with pytest.raises(ValueError, match="kind must be one of"):
        mixture_cdf(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3), kind="cauchy")


def test_bisection_error_bound():
    y = torch.rand(1000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for n in (5, 10, 20):
        x = bisection_inverse(lambda t: t**3, y, 0.0, 1.0, iters=n)
        assert (x - y ** (1 / 3)).abs().max().item() <= 1.0 / 2 ** (n + 1) + 1e-15


def test_bisection_rejects_unbracketed_target():
    with pytest.raises(ValueError, match="widen the bracket"):
        bisection_inverse(torch.sigmoid, torch.tensor([0.5, 0.999999]), -3.0, 3.0)


def test_mixture_inverse_rejects_values_outside_unit_interval():
    with pytest.raises(ValueError, match=r"strictly inside \(0, 1\)"):
        MixtureCDF(1, 2).inverse(torch.tensor([[1.0]]))


@pytest.mark.parametrize("base", ["uniform", "gaussian", "beta"])
def test_cdf_flow_density_integrates_to_one(base):
    mix = _random_mixture(dim=1, seed=3)
    if base == "uniform":
        flow = Flow(BoxUniform(1), mix)
    elif base == "gaussian":
        flow = Flow(StandardNormal(1), Compose(mix, Probit()))
    else:
        flow = Flow(Beta(1, 5.0, 5.0), mix)
    value = check_density_integrates(flow.double().log_prob, [(-40.0, 40.0)], n=40001, atol=1e-4)
    assert abs(value - 1.0) < 1e-4


def test_2d_elementwise_flow_integrates_to_one():
    flow = Flow(BoxUniform(2), _random_mixture(dim=2, seed=5)).double()
    assert abs(check_density_integrates(flow.log_prob, [(-25, 25), (-25, 25)], n=1201, atol=2e-3) - 1) < 2e-3


@outcome("tests/test_onedim.py::test_maximum_likelihood_fit_approaches_true_density",
         [Check("excess", "<", 0.15, "held-out NLL minus the true density's NLL after 600 Adam steps (nats)"),
          Check("ks", "<", 0.12, "Kolmogorov-Smirnov distance of the held-out latents u = F(x) from U(0, 1)")],
         weaker="a single-component CDF flow (MixtureCDF(1, 1)): one Gaussian for a bimodal density")
def cdf_flow_fit(seed: int, weaker: bool = False) -> dict:
    """Fit a 3-component CDF flow to samples of a known 2-component mixture: the held-out NLL
    approaches the true density's, and held-out latents are close to uniform."""
    seed_everything(seed)
    true_logits, true_means, true_log_scales = torch.tensor([0.0, -0.7]), torch.tensor([-2.0, 1.5]), torch.tensor([-0.5, -0.2])
    comp = torch.distributions.Normal(true_means, true_log_scales.exp())
    mixd = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(logits=true_logits), comp)
    train, test = mixd.sample((4000, 1)), mixd.sample((4000, 1))
    true_nll = -mixd.log_prob(test[:, 0]).mean().item()
    flow = Flow(BoxUniform(1), MixtureCDF(1, 1 if weaker else 3))
    fit(flow, train, steps=600, lr=5e-2, batch_size=512, progress=False)
    with torch.no_grad():
        learned_nll = -flow.log_prob(test).mean().item()
        u, _ = flow.bijection(test)
    # KS distance of the latents from U(0, 1): a whole-distribution statistic with less variance
    # than the mean alone (under an exact fit it is ~0.9/sqrt(n) = 0.014 at the 90th percentile)
    u = u[:, 0].double().sort().values
    n = u.numel()
    grid = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = torch.maximum((grid - u).abs(), (u - (grid - 1 / n)).abs()).max().item()
    return {"excess": learned_nll - true_nll, "ks": ks}


def test_maximum_likelihood_fit_approaches_true_density():
    cdf_flow_fit.check()


def test_mixture_cdf_stays_in_unit_interval_in_float32():
    """Rounding in logsumexp(...).exp() gave F(x) = 1.00000024 far to the right (seen in the
    ring benchmark), and a BoxUniform base then returned -inf. F must stay in [0, 1]."""
    g = torch.Generator().manual_seed(103)  # a draw whose weights' float32 sum rounds above 1
    x = torch.linspace(-60.0, 60.0, 200_001)
    logits, means, log_scales = 2 * torch.randn(3, 8, generator=g)
    for kind in ("gaussian", "logistic"):
        cdf, log_density = mixture_cdf(x, logits, means, log_scales, kind=kind)
        assert cdf.dtype == torch.float32
        assert float(cdf.max()) <= 1.0 and float(cdf.min()) >= 0.0, (kind, float(cdf.max()), float(cdf.min()))
        assert torch.isfinite(log_density[x.abs() < 20]).all()
