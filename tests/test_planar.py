"""Planar flows and the Rezende & Mohamed 2015 test energies."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flowlib import Planar, StandardNormal, fit, planar_flow
from flowlib.flows.energies import TEST_ENERGIES, reverse_kl_loss, u1, u2, u3, u4
from flowlib.testing import check_density_integrates, check_device_dtype, check_log_det
from outcomes import Check, outcome


def _randomise(module: torch.nn.Module, seed: int, scale: float = 1.0) -> torch.nn.Module:
    """Set every parameter to random values so no check is trivially passed at the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


# --------------------------------------------------------------------------- the layer
@pytest.mark.parametrize("dim", [1, 2, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_inverse_ladj_matches_autograd_slogdet(dim, seed):
    layer = _randomise(Planar(dim), seed).double()
    z = 1.5 * torch.randn(16, dim, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64)
    err = check_log_det(layer, z, "inverse", atol=1e-10)
    assert err < 1e-10
    check_device_dtype(layer.inverse, z)


def test_stack_ladj_and_dtype():
    flow = planar_flow(3, K=6)
    _randomise(flow, 3, scale=0.8)
    comp = flow.bijection.double()
    z = torch.randn(12, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    check_log_det(comp, z, "inverse", atol=1e-10)
    check_device_dtype(comp.inverse, z)
    comp32 = comp.float()
    check_device_dtype(comp32.inverse, z.float())


def test_planar_formula_by_hand():
    layer = _randomise(Planar(3), 7).double()
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    w, u, b = layer.w.detach(), layer.u.detach(), layer.b.detach()
    wu = w @ u
    u_hat = u + ((-1 + math.log1p(math.exp(wu.item()))) - wu) * w / (w @ w)
    expected = z + torch.tanh(z @ w + b)[:, None] * u_hat
    x, _ = layer.inverse(z)
    torch.testing.assert_close(x, expected.detach(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_constraint_holds_for_adversarial_u(seed):
    g = torch.Generator().manual_seed(seed)
    for scale in (1.0, 10.0, 100.0):
        layer = Planar(4).double()
        with torch.no_grad():
            layer.w.copy_(torch.randn(4, generator=g, dtype=torch.float64))
            layer.u.copy_(-scale * layer.w)  # w^T u = -scale ||w||^2, far below -1
        wu_hat = (layer.w @ layer.u_hat()).item()
        # m(a) = -1 + softplus(a) > -1 exactly; softplus underflows to 0 for a << 0, so allow rounding.
        assert wu_hat >= -1.0 - 1e-9, f"w^T u_hat = {wu_hat} < -1 for u = -{scale} w"
        # det df/dz = 1 + h' w^T u_hat stays positive everywhere (h' in (0, 1])
        z = 3 * torch.randn(256, 4, generator=g, dtype=torch.float64)
        _, ladj = layer.inverse(z)
        assert torch.isfinite(ladj).all()


def test_constraint_with_tiny_w_is_finite():
    layer = Planar(3).double()
    with torch.no_grad():
        layer.w.zero_()
        layer.u.copy_(torch.tensor([1.0, -2.0, 0.5]))
    x, ladj = layer.inverse(torch.randn(4, 3, dtype=torch.float64))
    assert torch.isfinite(x).all() and torch.isfinite(ladj).all()


def test_forward_raises_helpful_error():
    layer = Planar(2)
    with pytest.raises(NotImplementedError) as info:
        layer(torch.randn(3, 2))
    msg = str(info.value)
    assert "no closed form" in msg and "inverse" in msg and "sample_and_log_prob" in msg
    flow = planar_flow(2, K=3)
    with pytest.raises(NotImplementedError, match="sample_and_log_prob"):
        flow.log_prob(torch.randn(3, 2))


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match=r"\(batch, 3\)"):
        Planar(3).inverse(torch.randn(4, 2))
    with pytest.raises(ValueError, match="positive int"):
        Planar(0)
    with pytest.raises(ValueError, match="K must be"):
        planar_flow(2, K=0)


def test_unconstrained_layer_can_fold_space():
    """With w^T u < -1 the 1-D map z + u tanh(w z) decreases near 0: two z, one x."""
    layer = Planar(1, constrain=False).double()
    with torch.no_grad():
        layer.w.fill_(1.0)
        layer.u.fill_(-2.0)
        layer.b.zero_()
    grid = torch.linspace(-4, 4, 2001, dtype=torch.float64)[:, None]
    x, _ = layer.inverse(grid)
    assert (x.diff(dim=0) < 0).any(), "expected a non-monotone map"
    # f(z) = z - 2 tanh z vanishes at 0 and at +-z* with z* = 2 tanh z*: not injective.
    lo, hi = torch.tensor([1.0], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64)
    for _ in range(80):
        mid = (lo + hi) / 2
        if (mid - 2 * torch.tanh(mid)).item() < 0:
            lo = mid
        else:
            hi = mid
    z_star = lo.item()
    pts = torch.tensor([[-z_star], [0.0], [z_star]], dtype=torch.float64)
    xs, _ = layer.inverse(pts)
    assert xs.abs().max().item() < 1e-10
    # The same (w, u) with the constraint gives a strictly increasing map.
    constrained = Planar(1).double()
    constrained.load_state_dict(layer.state_dict())
    xc, _ = constrained.inverse(grid)
    assert (xc.diff(dim=0) > 0).all()


def test_sample_and_log_prob_is_a_normalised_density():
    """E_q[p(x) / q(x)] = 1 for a normalised p: checks log q of the samples, not just ladj."""
    torch.manual_seed(0)
    flow = _randomise(planar_flow(2, K=4), 11, scale=0.5).double()
    with torch.no_grad():
        x, log_q = flow.sample_and_log_prob(40000)
        log_p = StandardNormal(2).double().log_prob(x / 1.5) - 2 * math.log(1.5)  # N(0, 1.5^2 I): wider than q
    w = (log_p - log_q).exp()
    est, se = w.mean().item(), (w.std() / math.sqrt(len(w))).item()
    assert abs(est - 1) < max(5 * se, 0.02), f"importance weights average {est:.4f} (se {se:.4f})"


# --------------------------------------------------------------------------- energies
def _reference_energy(name: str, z: np.ndarray) -> np.ndarray:
    """U(z) written directly from Table 1 of the paper, in NumPy."""
    z1, z2 = z[:, 0], z[:, 1]
    w1 = np.sin(2 * np.pi * z1 / 4)
    w2 = 3 * np.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)
    w3 = 3 / (1 + np.exp(-(z1 - 1) / 0.3))
    if name == "U1":
        r = np.sqrt(z1**2 + z2**2)
        return 0.5 * ((r - 2) / 0.4) ** 2 - np.log(np.exp(-0.5 * ((z1 - 2) / 0.6) ** 2) + np.exp(-0.5 * ((z1 + 2) / 0.6) ** 2))
    if name == "U2":
        return 0.5 * ((z2 - w1) / 0.4) ** 2
    if name == "U3":
        return -np.log(np.exp(-0.5 * ((z2 - w1) / 0.35) ** 2) + np.exp(-0.5 * ((z2 - w1 + w2) / 0.35) ** 2))
    return -np.log(np.exp(-0.5 * ((z2 - w1) / 0.4) ** 2) + np.exp(-0.5 * ((z2 - w1 + w3) / 0.35) ** 2))


@pytest.mark.parametrize("name", ["U1", "U2", "U3", "U4"])
def test_energies_match_published_formulas(name):
    z = torch.empty(500, 2, dtype=torch.float64).uniform_(-3, 3, generator=torch.Generator().manual_seed(1))
    got = TEST_ENERGIES[name](z)
    assert got.shape == (500,)
    np.testing.assert_allclose(-got.numpy(), _reference_energy(name, z.numpy()), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fn", [u1, u2, u3, u4])
def test_energies_finite_shape_dtype(fn):
    far = torch.tensor([[0.0, 0.0], [50.0, -50.0], [-30.0, 8.0], [4.0, 4.0]])
    for z in (far, far.double()):
        out = fn(z)
        assert out.shape == (4,) and torch.isfinite(out).all()
        check_device_dtype(fn, z)
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        fn(torch.zeros(3, 3))


def test_u1_is_normalisable():
    z_u1 = check_density_integrates(lambda z: u1(z), [(-4, 4), (-4, 4)], n=401, atol=math.inf)
    assert 0 < z_u1 < math.inf


def test_reverse_kl_loss_values():
    flow = planar_flow(2, K=2, constrain=False).double()
    with torch.no_grad():
        for layer in flow.bijection.bijections:
            layer.u.zero_()  # unconstrained u = 0: the identity map, q = N(0, I)
    std_normal = lambda x: -0.5 * (x**2).sum(1) - math.log(2 * math.pi)
    assert abs(reverse_kl_loss(flow, std_normal, 64).item()) < 1e-12
    assert abs(reverse_kl_loss(flow, lambda x: std_normal(x) - 3.0, 64).item() - 3.0) < 1e-12
    with pytest.raises(ValueError, match="positive int"):
        reverse_kl_loss(flow, std_normal, 0)


@outcome("tests/test_planar.py::test_planar_flow_learns_u1_by_reverse_kl",
         [Check("kl", "<", 1.1, "KL(q || p) to U1 after 200 reverse-KL Adam steps, 8 planar layers (nats)")],
         weaker="a single planar layer (K=1), same budget")
def planar_u1(seed: int, weaker: bool = False) -> dict:
    """A short reverse-KL fit lowers the loss toward its floor -log Z (gap = KL(q || p))."""
    torch.manual_seed(seed)
    flow = planar_flow(2, K=1 if weaker else 8, generator=torch.Generator().manual_seed(seed))
    log_z = math.log(check_density_integrates(lambda z: u1(z), [(-5, 5), (-5, 5)], n=501, atol=math.inf))
    with torch.no_grad():
        before = reverse_kl_loss(flow, u1, 4096).item()
    fit(flow, None, loss=lambda m, _: reverse_kl_loss(m, u1, 256), steps=200, lr=2e-2, progress=False)
    with torch.no_grad():
        after = reverse_kl_loss(flow, u1, 8192).item()
    return {"kl": after + log_z, "kl_before": before + log_z}


def test_planar_flow_learns_u1_by_reverse_kl():
    stats = planar_u1.check()
    # KL >= 0 (Gibbs): below it by more than Monte Carlo error means the loss or log q is wrong
    assert stats["kl"] > -0.05, f"KL(q||p) estimate {stats['kl']:.3f} below 0: the loss or log q is wrong"
    assert stats["kl"] < stats["kl_before"], "training must lower KL(q || p)"
