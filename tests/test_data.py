"""2-D toy datasets: determinism, exact densities, samples agree with their densities."""
from __future__ import annotations

import math

import pytest
import torch

from flowlib.data import (
    checkerboard,
    checkerboard_log_prob,
    glyph,
    glyph_log_prob,
    glyph_mask,
    ring_of_gaussians,
    ring_of_gaussians_log_prob,
    two_moons,
)
from flowlib.testing import check_density_integrates, check_device_dtype


SAMPLERS = {
    "ring": lambda n, g, **kw: ring_of_gaussians(n, generator=g, **kw),
    "checkerboard": lambda n, g, **kw: checkerboard(n, generator=g, **kw),
    "moons": lambda n, g, **kw: two_moons(n, generator=g, **kw),
    "glyph_F": lambda n, g, **kw: glyph(n, "F", generator=g, **kw),
    "smiley": lambda n, g, **kw: glyph(n, "smiley", generator=g, **kw),
}
DENSITIES = {
    "ring": (lambda n, g: ring_of_gaussians(n, generator=g), ring_of_gaussians_log_prob),
    "ring_k5": (lambda n, g: ring_of_gaussians(n, k=5, radius=3.0, std=0.4, generator=g),
                lambda x: ring_of_gaussians_log_prob(x, k=5, radius=3.0, std=0.4)),
    "checkerboard": (lambda n, g: checkerboard(n, generator=g), checkerboard_log_prob),
    "glyph_F": (lambda n, g: glyph(n, "F", generator=g), lambda x: glyph_log_prob(x, "F")),
    "smiley": (lambda n, g: glyph(n, "smiley", generator=g), lambda x: glyph_log_prob(x, "smiley")),
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_deterministic_given_generator(name):
    sample = SAMPLERS[name]
    a = sample(500, torch.Generator().manual_seed(3))
    b = sample(500, torch.Generator().manual_seed(3))
    c = sample(500, torch.Generator().manual_seed(4))
    assert a.shape == (500, 2) and torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sampler_dtype_and_device(name, dtype):
    x = SAMPLERS[name](10, torch.Generator().manual_seed(0), dtype=dtype, device="cpu")
    assert x.dtype == dtype and x.device.type == "cpu"
    assert SAMPLERS[name](10, torch.Generator().manual_seed(0)).dtype == torch.get_default_dtype()


@pytest.mark.parametrize("name", DENSITIES)
def test_log_prob_keeps_dtype_and_shape(name):
    _, log_prob = DENSITIES[name]
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(7, 2, dtype=dtype)
        assert log_prob(x).shape == (7,)
        check_device_dtype(log_prob, x)
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        log_prob(torch.zeros(4, 3))


@pytest.mark.parametrize(
    "name, box, n",
    [("ring", 3.5, 701), ("ring_k5", 5.0, 701), ("checkerboard", 2.5, 1001), ("glyph_F", 2.1, 1001), ("smiley", 2.1, 1001)],
)
def test_density_integrates_to_one(name, box, n):
    _, log_prob = DENSITIES[name]
    check_density_integrates(log_prob, [(-box, box), (-box, box)], n=n, atol=1e-2)


def test_ring_samples_match_density():
    """Mean log p of samples (a Monte-Carlo -H) against -H from a grid integral of p log p;
    and each of the k modes gets 1/k of the points."""
    n = 20000
    x = ring_of_gaussians(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lp = ring_of_gaussians_log_prob(x)
    axis = torch.linspace(-3.5, 3.5, 701, dtype=torch.float64)
    g0, g1 = torch.meshgrid(axis, axis, indexing="ij")
    grid_lp = ring_of_gaussians_log_prob(torch.stack([g0.reshape(-1), g1.reshape(-1)], 1)).reshape(701, 701)
    neg_entropy = torch.trapezoid(torch.trapezoid(grid_lp.exp() * grid_lp, axis, dim=1), axis).item()
    se = (lp.std() / math.sqrt(n)).item()
    assert abs(lp.mean().item() - neg_entropy) < 4 * se, f"{lp.mean().item():.4f} vs {neg_entropy:.4f} (se {se:.4f})"
    angle = torch.atan2(x[:, 1], x[:, 0])
    mode = torch.round(angle / (2 * math.pi / 8)).remainder(8).long()
    frac = torch.bincount(mode, minlength=8).double() / n
    assert (frac - 1 / 8).abs().max().item() < 4 * math.sqrt((1 / 8) * (7 / 8) / n)


@pytest.mark.parametrize("name", ["checkerboard", "glyph_F", "smiley"])
def test_uniform_samples_cover_support_evenly(name):
    """Every sample lies where the density is positive, and the counts per cell/pixel are
    uniform (chi-square within 6 sigma of its mean)."""
    sample, log_prob = DENSITIES[name]
    n = 20000
    x = sample(n, torch.Generator().manual_seed(2)).double()
    lp = log_prob(x)
    assert torch.isfinite(lp).all(), "a sample landed where the density is zero"
    assert torch.allclose(lp, lp[:1].expand_as(lp)), "uniform densities take one value on their support"
    if name == "checkerboard":
        cell = torch.floor((x + 2.0) / 1.0).long()
        idx = cell[:, 0] * 4 + cell[:, 1]
        counts = torch.bincount(idx, minlength=16)
        counts = counts[counts > 0]
        assert len(counts) == 8
    else:
        res, h = 64, 4.0 / 64
        col = torch.floor((x[:, 0] + 2.0) / h).long()
        row = torch.floor((2.0 - x[:, 1]) / h).long()
        counts = torch.bincount(row * res + col, minlength=res * res)
        mask = torch.from_numpy(glyph_mask(name if name == "smiley" else "F")).reshape(-1)
        assert counts[~mask].sum() == 0
        counts = counts[mask]
    expected = n / len(counts)
    chi2 = ((counts.double() - expected) ** 2 / expected).sum().item()
    dof = len(counts) - 1
    assert chi2 < dof + 6 * math.sqrt(2 * dof), f"chi-square {chi2:.1f} for {dof} degrees of freedom"


def test_checkerboard_log_prob_values():
    x = torch.tensor([[-1.5, -1.5], [-0.5, -1.5], [0.5, 0.5], [3.0, 0.0]], dtype=torch.float64)
    lp = checkerboard_log_prob(x)
    assert lp[0].item() == pytest.approx(-math.log(8.0)) and lp[2].item() == pytest.approx(-math.log(8.0))
    assert lp[1].item() == -math.inf and lp[3].item() == -math.inf


def test_two_moons_shape_and_moments():
    x = two_moons(4000, noise=0.05, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # Outer arc (cos t, sin t), inner arc (1 - cos t, 1/2 - sin t), t in [0, pi]: mean (1/2, 1/4).
    torch.testing.assert_close(x.mean(0), torch.tensor([0.5, 0.25], dtype=torch.float64), atol=0.03, rtol=0)
    assert x[:, 0].min() > -1.3 and x[:, 0].max() < 2.3


def test_glyph_masks():
    f = glyph_mask("F")
    s = glyph_mask("smiley")
    assert f.shape == s.shape == (64, 64)
    assert 200 < f.sum() < 2000 and 500 < s.sum() < 3000
    # An F: its top bar is wider than its bottom (the stem only).
    rows = f.any(axis=1).nonzero()[0]
    assert f[rows[0]].sum() > 2 * f[rows[-1]].sum()
    # The smiley is left-right symmetric up to a few anti-aliased pixels.
    assert (s != s[:, ::-1]).sum() < 0.05 * s.sum()
    assert glyph_mask("F", resolution=32).shape == (32, 32)


def test_bad_arguments():
    with pytest.raises(ValueError, match="positive int"):
        ring_of_gaussians(0)
    with pytest.raises(ValueError, match="std > 0"):
        ring_of_gaussians(10, std=0.0)
    with pytest.raises(ValueError, match="even int cells"):
        checkerboard(10, cells=3)
    with pytest.raises(ValueError, match="noise"):
        two_moons(10, noise=-1.0)
    with pytest.raises(ValueError, match="one visible character or 'smiley'"):
        glyph(10, "FF")
