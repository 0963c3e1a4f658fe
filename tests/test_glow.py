"""Glow (flowlib/flows/glow.py): a step and the multi-scale stack against ground truth (round trip,
log-dets against slogdet of the autograd Jacobian in float64, forward + inverse cancel), and
ActNorm's data-dependent initialisation."""
from __future__ import annotations

import pytest
import torch

from flowlib.flows.glow import glow, glow_step
from flowlib.testing import check_bijection


def _perturb(module, scale, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def test_glow_step_passes_the_bijection_checks():
    torch.manual_seed(0)
    step = glow_step(4, hidden_ch=8, generator=torch.Generator().manual_seed(1))
    x = 1.5 * torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(2)) + 0.7
    z, _ = step(x)  # ActNorm initialises on its first batch
    _perturb(step, 0.2, seed=3)
    check_bijection(step.double(), x.double(), atol=1e-8)


def test_actnorm_standardises_its_first_batch_then_is_an_ordinary_layer():
    torch.manual_seed(0)
    step = glow_step(2, hidden_ch=4)
    x = 3 * torch.randn(64, 2, 4, 4) - 2
    actnorm = step.bijections[0] if hasattr(step, "bijections") else list(step.children())[0][0]
    h, _ = actnorm(x)
    per_channel = h.transpose(0, 1).reshape(2, -1)
    assert per_channel.mean(1).abs().max() < 1e-5 and (per_channel.std(1) - 1).abs().max() < 1e-3
    h2, _ = actnorm(x + 5)  # no re-initialisation on later batches
    assert torch.allclose(h2 - h, (5 * torch.exp(-actnorm.log_scale))[None, :, None, None].expand_as(h), atol=1e-5)


def test_multiscale_glow_is_a_bijection_with_exact_log_det():
    torch.manual_seed(0)
    flow = glow((1, 4, 4), n_scales=2, steps_per_scale=2, hidden_ch=8, logit_alpha=None,
                generator=torch.Generator().manual_seed(4))
    x = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    flow.bijection(x)  # ActNorm initialisation
    _perturb(flow, 0.1, seed=6)
    stack = flow.bijection.double()
    check_bijection(stack, x.double(), atol=1e-8)
    z, _ = stack(x.double())
    assert z.shape == (5, 16)


def test_glow_on_digits_shape_samples_and_scores():
    torch.manual_seed(0)
    flow = glow((1, 8, 8), n_scales=2, steps_per_scale=2, hidden_ch=8)
    x = torch.rand(16, 1, 8, 8) * 0.9 + 0.05
    lp = flow.log_prob(x)
    assert lp.shape == (16,) and torch.isfinite(lp).all()
    flow.eval()
    with torch.no_grad():
        s = flow.sample(3)
    # the logit transform's inverse maps onto (-a, 1 + a)/(1 - 2a)-ish, a = 0.05: not clipped to [0, 1]
    assert s.shape == (3, 1, 8, 8) and ((s > -0.06) & (s < 1.06)).all()


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="even"):
        glow_step(3)
    with pytest.raises(ValueError, match="divisible"):
        glow((1, 6, 6), n_scales=2)


@pytest.mark.parametrize("channels", [1, 3, 6])
def test_lu_conv_log_det_is_slogdet_of_its_matrix_and_each_piece_is_a_bijection(channels):
    """The 1x1 convolution's O(C) log-det (H W sum log|s|) against slogdet of W = P L U at
    random LU parameters; ActNorm and the convolution alone pass the shared bijection checks
    on images and on (batch, C) vectors."""
    from flowlib.flows.coupling import ActNorm, InvertibleConv1x1

    conv = _perturb(InvertibleConv1x1(channels, generator=torch.Generator().manual_seed(4)).double(), 0.3, seed=5)
    W = conv.weight().detach()
    x = torch.randn(5, channels, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    _, ladj = conv(x)
    want = 6 * torch.linalg.slogdet(W)[1]
    assert (ladj - want).abs().max() < 1e-10, f"LU log-det off by {(ladj - want).abs().max():.2e}"
    norm = ActNorm(channels).double()
    norm(x)  # data-dependent initialisation
    _perturb(norm, 0.2, seed=7)
    for piece in (conv, norm):
        check_bijection(piece, x, atol=1e-9)
        check_bijection(piece, x[:, :, 0, 0].contiguous(), atol=1e-9)
