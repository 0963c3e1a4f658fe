"""GaussianMixture, the oracle of the score-based topics, against independent ground truth."""
import math

import pytest
import torch

from flowlib import VESDE, VPSDE, GaussianMixture
from flowlib.testing import check_density_integrates, check_device_dtype


def mixtures():
    """The same weights and means with isotropic, diagonal and full covariances (float64)."""
    f64 = dict(dtype=torch.float64)
    w, mu = torch.tensor([0.3, 0.5, 0.2], **f64), torch.tensor([[-2.0, 0.5], [1.5, -1.0], [0.0, 2.5]], **f64)
    iso = GaussianMixture(w, mu, stds=torch.tensor([0.5, 0.8, 0.6], **f64))
    diag = GaussianMixture(w, mu, stds=torch.tensor([[0.5, 1.0], [0.8, 0.4], [0.6, 0.7]], **f64))
    covs = torch.tensor([[[0.25, 0.1], [0.1, 0.5]], [[0.64, -0.2], [-0.2, 0.3]], [[0.4, 0.0], [0.0, 0.2]]], **f64)
    full = GaussianMixture(w, mu, covs=covs)
    return {"iso": iso, "diag": diag, "full": full}


@pytest.mark.parametrize("kind", ["iso", "diag", "full"])
def test_log_prob_integrates_to_one(kind):
    check_density_integrates(mixtures()[kind].log_prob, [(-7.0, 7.0), (-6.0, 8.0)], n=401, atol=1e-4)


@pytest.mark.parametrize("kind", ["iso", "diag", "full"])
def test_log_prob_matches_torch_distributions(kind):
    m = mixtures()[kind]
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    ref = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=m.weights),
        torch.distributions.MultivariateNormal(m.means, covariance_matrix=m.covariances),
    ).log_prob(x)
    torch.testing.assert_close(m.log_prob(x), ref, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("kind", ["iso", "diag", "full"])
def test_score_is_autograd_gradient_of_log_prob(kind):
    m = mixtures()[kind]
    gen = torch.Generator().manual_seed(1)
    x = (3 * torch.randn(50, 2, generator=gen, dtype=torch.float64)).requires_grad_(True)
    (grad,) = torch.autograd.grad(m.log_prob(x).sum(), x)
    torch.testing.assert_close(m.score(x.detach()), grad, atol=1e-10, rtol=1e-10)
    # per-sample noise: scale and sigma as (batch,) tensors
    a = torch.rand(50, generator=gen, dtype=torch.float64) + 0.2
    s = torch.rand(50, generator=gen, dtype=torch.float64) + 0.1
    (grad,) = torch.autograd.grad(m.affine_log_prob(x, a, s).sum(), x)
    torch.testing.assert_close(m.affine_score(x.detach(), a, s), grad, atol=1e-10, rtol=1e-10)


def test_score_in_higher_dimension():
    gen = torch.Generator().manual_seed(2)
    m = GaussianMixture(torch.tensor([1.0, 2.0, 3.0]), torch.randn(3, 5, generator=gen), stds=[0.5, 1.0, 2.0]).double()
    x = torch.randn(20, 5, generator=gen, dtype=torch.float64).requires_grad_(True)
    (grad,) = torch.autograd.grad(m.log_prob(x).sum(), x)
    torch.testing.assert_close(m.score(x.detach()), grad)
    torch.testing.assert_close(m.weights.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_perturbed_equals_numerical_convolution_1d():
    m = GaussianMixture([0.7, 0.3], [[-1.0], [2.0]], stds=[0.3, 0.6]).double()
    sigma = 0.7
    grid = torch.linspace(-10, 10, 4001, dtype=torch.float64)
    p = m.log_prob(grid[:, None]).exp()
    x = torch.linspace(-4, 5, 37, dtype=torch.float64)
    kernel = torch.exp(-0.5 * ((x[:, None] - grid[None]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    conv = torch.trapezoid(kernel * p[None], grid, dim=1)
    torch.testing.assert_close(m.perturbed(sigma).log_prob(x[:, None]).exp(), conv, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("kind", ["diag", "full"])
def test_affine_perturbed_matches_sample_moments(kind):
    m = mixtures()[kind]
    gen = torch.Generator().manual_seed(3)
    n, a, s = 40000, 0.6, 0.8
    y = a * m.sample(n, generator=gen) + s * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    target = m.affine_perturbed(a, s)
    torch.testing.assert_close(y.mean(0), target.mean(), atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(y.T), target.covariance(), atol=0.04, rtol=0)
    # the closed-form moments are those of the model's own samples
    x = m.sample(n, generator=gen)
    torch.testing.assert_close(x.mean(0), m.mean(), atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), m.covariance(), atol=0.06, rtol=0)


def test_sample_recovers_weights():
    m = GaussianMixture([0.8, 0.2], [[-5.0, 0.0], [5.0, 0.0]], stds=0.5)
    x = m.sample(20000, generator=torch.Generator().manual_seed(4))
    assert x.shape == (20000, 2)
    assert abs((x[:, 0] < 0).float().mean().item() - 0.8) < 0.015


@pytest.mark.parametrize("sde", [VESDE(0.01, 10.0), VPSDE(0.1, 20.0)], ids=["VE", "VP"])
def test_time_marginal_per_sample_matches_scalar(sde):
    m = mixtures()["full"]
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(6, 2, generator=gen, dtype=torch.float64)
    ts = torch.tensor([1e-4, 0.1, 0.3, 0.5, 0.8, 1.0], dtype=torch.float64)
    lp = m.log_prob_at(x, ts, sde)
    sc = m.score_at(x, ts, sde)
    for i, t in enumerate(ts.tolist()):
        mt = m.marginal_at(t, sde)
        torch.testing.assert_close(lp[i], mt.log_prob(x[i : i + 1])[0])
        torch.testing.assert_close(sc[i], mt.score(x[i : i + 1])[0])
    # t -> 0 recovers the data distribution
    torch.testing.assert_close(m.log_prob_at(x, 0.0, sde), m.log_prob(x))


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([0.5, -0.5], [[0.0], [1.0]])
    with pytest.raises(ValueError, match="means"):
        GaussianMixture([1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="stds"):
        GaussianMixture([0.5, 0.5], [[0.0], [1.0]], stds=[1.0, 0.0])
    with pytest.raises(ValueError, match="positive definite"):
        GaussianMixture([1.0], [[0.0, 0.0]], covs=[[[1.0, 0.0], [0.0, -1.0]]])
    m = GaussianMixture([1.0], [[0.0, 0.0]])
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        m.log_prob(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="sigma"):
        m.perturbed(0.0)
    with pytest.raises(ValueError, match="sigma"):
        m.affine_score(torch.zeros(3, 2), 1.0, torch.ones(4))


def _check_oracle_device_dtype(dev, dtype):
    m = mixtures()["full"].to(dev)
    x = torch.randn(8, 2, device=dev, dtype=dtype)
    sde = VPSDE()
    check_device_dtype(lambda v: (m.log_prob(v), m.score(v), m.score_at(v, torch.full((8,), 0.3, device=dev, dtype=dtype), sde)), x)
    s = m.to(dtype).sample(5, generator=torch.Generator().manual_seed(0))
    assert s.device.type == torch.device(dev).type and s.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_and_dtype_kept(device, dtype):  # device: every available one (conftest)
    _check_oracle_device_dtype(device, dtype)


def test_python_float_parameters_keep_float64_precision():
    gm = GaussianMixture([0.3, 0.7], torch.zeros(2, 3, dtype=torch.float64), stds=0.7)
    assert gm.weights.dtype == torch.float64
    assert abs(gm.weights[0].item() - 0.3) < 1e-15
    assert abs(gm.variances[0, 0].item() - 0.49) < 1e-15
