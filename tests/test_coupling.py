"""Coupling layers, masks, squeeze, the multi-scale stack, ActNorm and the 1x1 convolution."""
from __future__ import annotations

import math

import pytest
import torch

from flowlib import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    Compose,
    ConvConditioner,
    Flatten,
    InvertibleConv1x1,
    MLPConditioner,
    MultiScale,
    Squeeze,
    StandardNormal,
    alternating_mask,
    channel_mask,
    checkerboard_mask,
    fit,
    half_mask,
    realnvp,
    realnvp_image,
)
from flowlib.data import two_moons
from outcomes import Check, outcome
from flowlib.testing import check_bijection, check_density_integrates, check_device_dtype


def _randomise(module: torch.nn.Module, seed: int, scale: float = 0.3) -> torch.nn.Module:
    """Perturb every parameter (the zero-initialised last layers included) so the checks run
    on a genuinely non-identity map."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --------------------------------------------------------------------------- masks
def test_masks_complementary_and_parity():
    for h, w in [(4, 4), (3, 5), (8, 8)]:
        m0, m1 = checkerboard_mask(h, w, 0), checkerboard_mask(h, w, 1)
        assert m0.shape == (1, h, w)
        assert torch.equal(m0 + m1, torch.ones(1, h, w))
        assert m0[0, 0, 0] == 1 and m1[0, 0, 0] == 0
        i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        assert torch.equal(m0[0].bool(), (i + j) % 2 == 0)
        # every neighbour of a passed pixel is transformed
        assert (m0[0, :, 1:] != m0[0, :, :-1]).all() and (m0[0, 1:, :] != m0[0, :-1, :]).all()
    c0, c1 = channel_mask(4, 0), channel_mask(4, 1)
    assert c0.shape == (4, 1, 1) and c0.flatten().tolist() == [1, 1, 0, 0]
    assert torch.equal(c0 + c1, torch.ones(4, 1, 1))
    assert alternating_mask(5, 0).tolist() == [1, 0, 1, 0, 1]
    assert torch.equal(alternating_mask(5, 0) + alternating_mask(5, 1), torch.ones(5))
    assert half_mask(5, 0).tolist() == [1, 1, 0, 0, 0]
    assert torch.equal(half_mask(5, 0) + half_mask(5, 1), torch.ones(5))
    with pytest.raises(ValueError, match="parity"):
        checkerboard_mask(4, 4, 2)
    with pytest.raises(ValueError, match="2 channels"):
        channel_mask(1)


# --------------------------------------------------------------------------- coupling layers
def _vector_affine(d=5, mask=None, seed=1):
    mask = alternating_mask(d, 0) if mask is None else mask
    return AffineCoupling(mask, MLPConditioner(d, (16, 16), 2 * d))


def test_fresh_couplings_are_identity():
    x = torch.randn(8, 4)
    for layer in [_vector_affine(4), AdditiveCoupling(half_mask(4), MLPConditioner(4, 8, 4)), realnvp(4, 3, 16).bijection]:
        z, ladj = layer(x)
        assert torch.equal(z, x) and torch.equal(ladj, torch.zeros(8))
    img = torch.rand(2, 1, 8, 8)
    flow = realnvp_image(logit_alpha=None)
    z, ladj = flow.bijection(img)
    x_back, _ = flow.bijection.inverse(z)
    assert torch.equal(ladj, torch.zeros(2)) and torch.equal(x_back, img)
    assert torch.equal(z.sort().values, img.flatten(1).sort().values)  # only reshuffled


@pytest.mark.parametrize("mask", ["alternating", "half1"])
def test_affine_coupling_vector(mask):
    m = alternating_mask(5, 0) if mask == "alternating" else half_mask(5, 1)
    layer = _randomise(_vector_affine(5, m), 2).double()
    x = _x(8, 5)
    check_bijection(layer, x, atol=1e-9)
    z, _ = layer(x)
    passed = m.bool()
    assert torch.equal(z[:, passed], x[:, passed]) and not torch.allclose(z[:, ~passed], x[:, ~passed])


def test_affine_coupling_formula():
    layer = _randomise(_vector_affine(4, half_mask(4)), 3, scale=1.0).double()
    x = _x(6, 4)
    b = layer.mask
    out = layer.conditioner(b * x)
    t, s_raw = out[:, :4], out[:, 4:]
    s = 2.0 * torch.tanh(s_raw / 2.0)
    z, ladj = layer(x)
    torch.testing.assert_close(z, b * x + (1 - b) * (x - t) * torch.exp(-s))
    torch.testing.assert_close(ladj, -((1 - b) * s).sum(1))


def test_additive_coupling_volume_preserving():
    layer = _randomise(AdditiveCoupling(alternating_mask(4, 1), MLPConditioner(4, (16,), 4)), 4).double()
    x = _x(8, 4)
    check_bijection(layer, x, atol=1e-9)
    assert torch.equal(layer(x)[1], torch.zeros(8, dtype=torch.float64))
    img = _randomise(AdditiveCoupling(checkerboard_mask(4, 4, 0), ConvConditioner(2, 8, 2)), 5).double()
    check_bijection(img, _x(2, 2, 4, 4), atol=1e-9)


@pytest.mark.parametrize("kind", ["checker0", "checker1", "channel0", "channel1"])
def test_affine_coupling_image(kind):
    C = 4
    mask = checkerboard_mask(4, 4, int(kind[-1])) if kind.startswith("checker") else channel_mask(C, int(kind[-1]))
    layer = _randomise(AffineCoupling(mask, ConvConditioner(C, 8, 2 * C)), 6).double()
    check_bijection(layer, _x(2, C, 4, 4), atol=1e-9)


def test_soft_clamp_bounds_log_scale():
    layer = AffineCoupling(half_mask(4), MLPConditioner(4, 8, 8), scale_bound=1.5)
    with torch.no_grad():
        layer.conditioner.last.bias[4:].fill_(1e4)  # huge raw log-scales (second half of the output)
    x = torch.randn(5, 4)
    _, s = layer.shift_and_log_scale(x)
    assert (s.abs() <= 1.5).all() and torch.isfinite(s).all()
    z, ladj = layer(x)
    assert torch.isfinite(z).all() and torch.allclose(ladj, torch.full((5,), -2 * 1.5))
    x_back, _ = layer.inverse(z)
    torch.testing.assert_close(x_back, x)
    with pytest.raises(ValueError, match="scale_bound"):
        AffineCoupling(half_mask(4), MLPConditioner(4, 8, 8), scale_bound=0.0)


def test_coupling_bad_input():
    layer = _vector_affine(4)
    with pytest.raises(ValueError, match="does not fit"):
        layer(torch.randn(3, 5))
    with pytest.raises(ValueError, match="does not fit"):
        AffineCoupling(checkerboard_mask(4, 4), ConvConditioner(1, 4, 2))(torch.randn(2, 1, 6, 6))
    with pytest.raises(ValueError, match="only 0 and 1"):
        AffineCoupling(torch.tensor([0.5, 1.0]), MLPConditioner(2, 4, 4))
    with pytest.raises(ValueError, match="both"):
        AffineCoupling(torch.ones(3), MLPConditioner(3, 4, 6))
    wrong = AffineCoupling(half_mask(4), MLPConditioner(4, 8, 4))  # out should be 8
    with pytest.raises(ValueError, match="conditioner returned"):
        wrong(torch.randn(2, 4))


# --------------------------------------------------------------------------- squeeze, flatten, multi-scale
def test_squeeze():
    sq = Squeeze()
    x = _x(2, 3, 4, 6)
    check_bijection(sq, x)
    z, _ = sq(x)
    assert z.shape == (2, 12, 2, 3)
    # channel 4c + 2di + dj holds pixel (2i + di, 2j + dj) of channel c
    for c, di, dj in [(0, 0, 0), (1, 0, 1), (2, 1, 0), (2, 1, 1)]:
        assert torch.equal(z[:, 4 * c + 2 * di + dj], x[:, c, di::2, dj::2])
    with pytest.raises(ValueError, match="even"):
        sq(torch.zeros(1, 1, 5, 4))
    with pytest.raises(ValueError, match="even"):
        sq(torch.zeros(1, 1, 4, 3))
    with pytest.raises(ValueError, match=r"\(batch, C, H, W\)"):
        sq(torch.zeros(4, 4))


def test_realnvp_image_bijection():
    torch.manual_seed(0)
    flow = _randomise(realnvp_image((1, 8, 8), hidden_ch=4, n_checker=2, n_channel=2, n_final=2), 7, scale=0.2).double()
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.9 + 0.05
    check_bijection(flow.bijection, x, atol=1e-8)
    z, _ = flow.bijection(x)
    assert z.shape == (2, 64)
    check_device_dtype(flow.log_prob, x)
    s = flow.sample(3)
    assert s.shape == (3, 1, 8, 8) and s.dtype == torch.float64
    with pytest.raises(ValueError, match="divisible"):
        realnvp_image((1, 6, 6), n_scales=3)


def test_multiscale_log_likelihood_is_sum_over_factored_parts():
    """log p(x) from the Flow equals the direct computation: base log-density of the part
    factored out after scale 1 + base log-density of the final latent + all log-dets."""
    torch.manual_seed(0)
    flow = _randomise(realnvp_image((1, 8, 8), hidden_ch=4, n_checker=2, n_channel=2, n_final=2, logit_alpha=None), 8).double()
    ms = flow.bijection
    assert isinstance(ms, MultiScale) and ms.shape == (4, 4, 4)
    x = _x(3, 1, 8, 8)
    h, ladj1 = ms.transform(x)  # (3, 4, 4, 4)
    factored, kept = h[:, :2], h[:, 2:]
    z_last, ladj2 = ms.inner(kept)  # (3, 32)
    normal = lambda t: (-0.5 * t**2 - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
    direct = normal(factored) + normal(z_last) + ladj1 + ladj2
    torch.testing.assert_close(flow.log_prob(x), direct, rtol=0, atol=1e-10)
    z, _ = ms(x)
    assert torch.equal(z[:, :32], factored.flatten(1)) and torch.equal(z[:, 32:], z_last)
    with pytest.raises(ValueError, match="flat latent"):
        ms.inverse(torch.zeros(3, 16, dtype=torch.float64))


def test_multiscale_hand_built():
    """A hand-built two-scale stack on (2, 4, 4) with additive + affine layers."""
    transform = Compose(
        AffineCoupling(checkerboard_mask(4, 4, 1), ConvConditioner(2, 4, 4)),
        Squeeze(),
        AdditiveCoupling(channel_mask(8, 0), ConvConditioner(8, 4, 8)),
    )
    inner = Compose(AffineCoupling(channel_mask(4, 1), ConvConditioner(4, 4, 8)), Flatten((4, 2, 2)))
    ms = _randomise(MultiScale(transform, inner, (8, 2, 2)), 9).double()
    check_bijection(ms, _x(2, 2, 4, 4), atol=1e-9)
    with pytest.raises(ValueError, match="C even"):
        MultiScale(transform, inner, (3, 2, 2))


# --------------------------------------------------------------------------- Glow layers
def test_actnorm_data_dependent_init():
    an = ActNorm(3).double()
    x = _x(64, 3, 4, 4) * torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)[:, None, None] + 3.0
    z, ladj = an(x)
    assert bool(an.initialized)
    flat = z.transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(3, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(flat.std(1), torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(ladj, torch.full((64,), -16 * an.log_scale.sum().item(), dtype=torch.float64))
    before = an.loc.clone()
    an(x + 5.0)  # second batch: no re-initialisation
    assert torch.equal(an.loc, before)
    _randomise(an, 10)
    check_bijection(an, _x(4, 3, 4, 4), atol=1e-9)
    vec = ActNorm(5).double()
    vec(_x(32, 5))
    _randomise(vec, 11)
    check_bijection(vec, _x(8, 5), atol=1e-9)
    with pytest.raises(ValueError, match="channels"):
        an(torch.zeros(2, 4, 2, 2, dtype=torch.float64))


def test_invertible_conv1x1():
    conv = _randomise(InvertibleConv1x1(4, generator=torch.Generator().manual_seed(0)), 12, scale=0.2).double()
    x = _x(2, 4, 3, 3)
    check_bijection(conv, x, atol=1e-9)
    W = conv.weight()
    _, ladj = conv(x)
    torch.testing.assert_close(ladj, torch.full((2,), 9 * torch.linalg.slogdet(W)[1].item(), dtype=torch.float64))
    torch.testing.assert_close(conv(x)[0], torch.nn.functional.conv2d(x, W[:, :, None, None]))
    fresh = InvertibleConv1x1(3, generator=torch.Generator().manual_seed(1)).double()
    Wf = fresh.weight()
    torch.testing.assert_close(Wf @ Wf.T, torch.eye(3, dtype=torch.float64), atol=1e-6, rtol=0)  # a rotation
    check_bijection(fresh, _x(4, 3), atol=1e-9)


# --------------------------------------------------------------------------- vector RealNVP
def test_realnvp_vector_bijection_and_density():
    torch.manual_seed(0)
    flow = _randomise(realnvp(2, n_layers=4, hidden=(16,)), 13, scale=0.3).double()
    check_bijection(flow.bijection, _x(16, 2), atol=1e-9)
    with torch.no_grad():
        check_density_integrates(flow.log_prob, [(-10, 10), (-10, 10)], n=241, atol=1e-2)
    assert flow.float().sample(4).dtype == torch.float32
    with pytest.raises(ValueError, match="at least 2"):
        realnvp(1)


@outcome("tests/test_coupling.py::test_realnvp_fit_two_moons_improves_nll",
         [Check("nll", "<", 1.6, "held-out NLL of two moons after 300 Adam steps (nats)")],
         weaker="a single coupling layer (n_layers=1), same budget")
def realnvp_two_moons(seed: int, weaker: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    train = two_moons(2048, generator=g)
    test = two_moons(4096, generator=g)
    torch.manual_seed(seed)
    flow = realnvp(2, n_layers=1 if weaker else 6, hidden=(32, 32))
    with torch.no_grad():
        before = -flow.log_prob(test).mean().item()
    fit(flow, train, steps=300, batch_size=256, lr=5e-3, generator=g, progress=False)
    with torch.no_grad():
        after = -flow.log_prob(test).mean().item()
    return {"nll": after, "nll_before": before}


def test_realnvp_fit_two_moons_improves_nll():
    realnvp_two_moons.check()
