"""MADE, MAF, IAF, permutations, the 2-D autoregressive CDF flow and check_autoregressive."""
from __future__ import annotations

import pytest
import torch

from flowlib import (
    IAF,
    MADE,
    AutoregressiveMixtureCDF2D,
    Flow,
    MAFLayer,
    Permutation,
    Reverse,
    StandardNormal,
    fit,
    iaf,
    maf,
    mixture_cdf_flow_2d,
)
from flowlib.data import ring_of_gaussians, ring_of_gaussians_log_prob
from outcomes import Check, outcome
from flowlib.testing import (
    check_autoregressive,
    check_bijection,
    check_density_integrates,
    check_device_dtype,
)


def _randomise(module: torch.nn.Module, seed: int, scale: float = 0.5) -> torch.nn.Module:
    """Perturb every parameter (the zero-initialised last layers included) away from the
    identity, so round trips and log-dets are tested on a genuinely non-trivial map."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _x(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


ORDERS = [None, "reversed", "random", [2, 0, 4, 1, 3]]


# --------------------------------------------------------------------------- MADE
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("hidden", [3, (8, 8), (40,)])
@pytest.mark.parametrize("n_params", [1, 2, 3])
def test_made_is_autoregressive(order, hidden, n_params):
    made = _randomise(MADE(5, hidden, order=order, n_params=n_params, generator=torch.Generator().manual_seed(5)), 1).double()
    x = _x(4, 5)
    out = made(x)
    assert out.shape == (4, 5, n_params)
    assert check_autoregressive(made, x, made.order) == 0.0
    # Each parameter slice on its own (the interleaving bug mixes slices, not dimensions).
    for p in range(n_params):
        check_autoregressive(lambda v: made(v)[:, :, p], x, made.order)


@pytest.mark.parametrize("order", ORDERS)
def test_made_uses_every_allowed_connection(order):
    """Wide enough (>= D - 1 units), output k depends on *all* inputs before it (tanh: no
    dead ReLU units hiding a connection at the test point)."""
    made = MADE(5, (16, 16), order=order, n_params=2, activation=torch.nn.Tanh, generator=torch.Generator().manual_seed(2))
    made = _randomise(made, 3).double()
    x = _x(1, 5)
    jac = torch.autograd.functional.jacobian(made, x)[0, :, :, 0, :]  # (k, p, j)
    pos = torch.empty(5, dtype=torch.long)
    pos[made.order] = torch.arange(5)
    allowed = pos[None, :] < pos[:, None]
    nonzero = jac.abs().amax(dim=1) > 0
    assert torch.equal(nonzero, allowed)


@pytest.mark.parametrize("n_params", [2, 3])
def test_made_interleaving_regression(n_params):
    """Regression: reading the output unit k * n_params + p as parameter p of dimension k
    must match the masks. Reading the same output with the other layout (unit p * D + k)
    must be caught by check_autoregressive, naming the offending pair."""
    made = _randomise(MADE(5, (16, 16), order=[3, 1, 4, 0, 2], n_params=n_params), 4).double()
    x = _x(3, 5)
    check_autoregressive(made, x, made.order)

    def buggy(v: torch.Tensor) -> torch.Tensor:
        out = made.output(made.hidden_net(v))
        return out.reshape(v.shape[0], n_params, 5).transpose(1, 2)

    with pytest.raises(AssertionError, match=r"output \d .* depends on input \d .*\|d out_\d / d in_\d\| = "):
        check_autoregressive(buggy, x, made.order)


def test_made_context_reaches_every_output():
    made = _randomise(MADE(4, (12, 12), context=3, n_params=2, activation=torch.nn.Tanh), 5).double()
    x, c = _x(2, 4), _x(2, 3, seed=1)
    check_autoregressive(lambda v: made(v, c[:1].expand(v.shape[0], -1)), x)
    jac_c = torch.autograd.functional.jacobian(lambda cc: made(x[:1], cc), c[:1])[0, :, :, 0, :]
    assert (jac_c.abs().amax(dim=(1, 2)) > 0).all(), "every output should depend on the context"
    with pytest.raises(ValueError, match=r"context of shape \(2, 3\)"):
        made(x)


def test_made_bad_input():
    with pytest.raises(ValueError, match="permutation of range\\(3\\)"):
        MADE(3, 8, order=[0, 0, 1])
    with pytest.raises(ValueError, match="permutation of range\\(3\\)"):
        MADE(3, 8, order=[0, 1])
    with pytest.raises(ValueError, match="order must be"):
        MADE(3, 8, order="sideways")
    with pytest.raises(ValueError, match=r"\(batch, 3\)"):
        MADE(3, 8)(torch.randn(2, 4))
    with pytest.raises(ValueError, match="hidden"):
        MADE(3, ())


# --------------------------------------------------------------------------- MAF / IAF layers
def test_maf_layer_starts_as_identity():
    layer = MAFLayer(4, (16, 16))
    x = torch.randn(8, 4)
    z, ladj = layer(x)
    assert torch.equal(z, x) and torch.equal(ladj, torch.zeros(8))


@pytest.mark.parametrize("order", ORDERS)
def test_maf_layer_bijection(order):
    layer = _randomise(MAFLayer(5, (16, 16), order=order, generator=torch.Generator().manual_seed(0)), 6).double()
    x = _x(16, 5)
    check_bijection(layer, x, atol=1e-9)
    check_autoregressive(lambda v: layer(v)[0], x, layer.made.order, strict=False)
    check_autoregressive(lambda v: layer.inverse(v)[0], x, layer.made.order, strict=False)


def test_maf_layer_formula_and_passes():
    layer = _randomise(MAFLayer(6, (16,)), 7).double()
    x = _x(5, 6)
    calls = []
    handle = layer.made.register_forward_hook(lambda *a: calls.append(1))
    z, ladj = layer(x)
    assert len(calls) == 1, "MAF density should be one MADE pass"
    p = layer.made(x)
    alpha = 3.0 * torch.tanh(p[..., 1] / 3.0)
    torch.testing.assert_close(z, (x - p[..., 0]) * torch.exp(-alpha))
    torch.testing.assert_close(ladj, -alpha.sum(1))
    calls.clear()
    layer.inverse(z)
    assert len(calls) == 6, "MAF sampling should be D sequential MADE passes"
    handle.remove()


def test_maf_scale_is_soft_clamped():
    layer = MAFLayer(3, 8, scale_bound=2.0)
    with torch.no_grad():
        layer.made.output.bias.fill_(1e4)  # huge raw log-scales
    _, ladj = layer(torch.randn(4, 3))
    assert torch.isfinite(ladj).all() and (ladj.abs() <= 3 * 2.0 + 1e-5).all()
    with pytest.raises(ValueError, match="scale_bound"):
        MAFLayer(3, 8, scale_bound=0.0)


def test_iaf_layer_is_inverted_maf():
    layer = _randomise(IAF(5, (16, 16), order="random", generator=torch.Generator().manual_seed(1)), 8).double()
    check_bijection(layer, _x(16, 5), atol=1e-9)
    maf_layer = layer.bijection
    assert isinstance(maf_layer, MAFLayer)
    calls = []
    handle = maf_layer.made.register_forward_hook(lambda *a: calls.append(1))
    flow = Flow(StandardNormal(5), layer).double()
    torch.manual_seed(0)
    x, log_q = flow.sample_and_log_prob(64)
    assert len(calls) == 1, "IAF sampling (with its log-density) should be one MADE pass"
    calls.clear()
    # Density of the same points evaluated from scratch: D passes through the MAF inverse.
    log_q_again = flow.log_prob(x)
    assert len(calls) == 5
    handle.remove()
    torch.testing.assert_close(log_q_again, log_q, rtol=0, atol=1e-9)


# --------------------------------------------------------------------------- permutations, stacks
def test_permutations():
    perm = Permutation([2, 0, 3, 1]).double()
    x = _x(8, 4)
    check_bijection(perm, x)
    z, _ = perm(x)
    assert torch.equal(z, x[:, [2, 0, 3, 1]])
    rev = Reverse(4)
    assert torch.equal(rev(x)[0], x.flip(1))
    with pytest.raises(ValueError, match="permutation"):
        Permutation([0, 2])
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        perm(torch.randn(3, 5))


@pytest.mark.parametrize("builder", [maf, iaf])
def test_stacked_flows(builder):
    flow = _randomise(builder(4, n_layers=3, hidden=(16,)), 9, scale=0.3).double()
    x = _x(16, 4)
    check_bijection(flow.bijection, x, atol=1e-9)
    check_device_dtype(flow.log_prob, x)
    check_device_dtype(lambda v: flow.bijection.inverse(v), x)
    flow32 = flow.float()
    assert flow32.sample(5).dtype == torch.float32


@pytest.mark.parametrize("builder", [maf, iaf])
def test_2d_flow_density_integrates(builder):
    flow = _randomise(builder(2, n_layers=2, hidden=(16,)), 10, scale=0.2).double()
    with torch.no_grad():
        check_density_integrates(flow.log_prob, [(-9, 9), (-9, 9)], n=241, atol=1e-2)


@outcome("tests/test_autoregressive.py::test_maf_fit_on_ring_improves_nll",
         [Check("excess", "<", 1.1, "held-out NLL minus the true entropy after 300 Adam steps (nats)")],
         weaker="a single MAF layer (n_layers=1), same budget")
def maf_ring(seed: int, weaker: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    train = ring_of_gaussians(4096, generator=g)
    test = ring_of_gaussians(4096, generator=g)
    torch.manual_seed(seed)
    flow = maf(2, n_layers=1 if weaker else 4, hidden=(32, 32))
    fit(flow, train, steps=300, batch_size=256, lr=1e-2, generator=g, progress=False)
    with torch.no_grad():
        after = -flow.log_prob(test).mean().item()
    entropy = -ring_of_gaussians_log_prob(test.double()).mean().item()  # H(p) ~ 1.74 nats
    return {"excess": after - entropy, "nll": after}


def test_maf_fit_on_ring_improves_nll():
    stats = maf_ring.check()
    # the excess is a Monte Carlo estimate of KL(p || q) >= 0 (Gibbs): a bound, not a tuned threshold
    assert stats["excess"] > -0.05, f"NLL {stats['nll']:.3f} below the true entropy: the log-density is too high"


# --------------------------------------------------------------------------- 2-D autoregressive CDF flow
def test_autoregressive_cdf_2d():
    layer = _randomise(AutoregressiveMixtureCDF2D(n_components=4, hidden=(16,)), 11, scale=0.4).double()
    x = _x(16, 2) * 1.5
    check_bijection(layer, x, atol=1e-8)
    check_autoregressive(lambda v: layer(v)[0], x, strict=False)
    u, _ = layer(x)
    assert ((u > 0) & (u < 1)).all()
    with pytest.raises(ValueError, match="unit square"):
        layer.inverse(torch.tensor([[0.5, 1.5]], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        layer(torch.zeros(3, 3, dtype=torch.float64))


def test_autoregressive_cdf_2d_flow_density():
    flow = _randomise(mixture_cdf_flow_2d(n_components=3, hidden=(8,)), 12, scale=0.3).double()
    with torch.no_grad():
        check_density_integrates(flow.log_prob, [(-10, 10), (-10, 10)], n=301, atol=1e-2)
        s = flow.sample(8)
    assert s.shape == (8, 2) and torch.isfinite(s).all()


# --------------------------------------------------------------------------- check_autoregressive itself
def test_check_autoregressive_reports_pair():
    W = torch.tril(torch.randn(3, 3, dtype=torch.float64), diagonal=-1)
    check_autoregressive(lambda v: v @ W.T, _x(2, 3))
    W[0, 2] = 0.25  # output 0 now reads input 2
    with pytest.raises(AssertionError, match=r"output 0 .* input 2 .* = 2\.500e-01"):
        check_autoregressive(lambda v: v @ W.T, _x(2, 3))
    # Diagonal allowed only for transforms (strict=False).
    W2 = torch.tril(torch.randn(3, 3, dtype=torch.float64))
    check_autoregressive(lambda v: v @ W2.T, _x(2, 3), strict=False)
    with pytest.raises(AssertionError, match="strictly before"):
        check_autoregressive(lambda v: v @ W2.T, _x(2, 3))
    with pytest.raises(ValueError, match="permutation"):
        check_autoregressive(lambda v: v, _x(2, 3), order=[0, 1, 1])
