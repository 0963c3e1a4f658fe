"""Glow (Kingma & Dhariwal 2018): a flow step of ActNorm -> invertible 1x1 convolution ->
affine coupling, and a multi-scale Glow for images.

One step, data -> noise, on ``(B, C, H, W)``:

    h1 = (x - loc) exp(-log_scale)                 ActNorm: per-channel, data-dependent init
    h2 = W h1 at every pixel                       InvertibleConv1x1: learned channel mixing, LU
    z  = affine coupling of h2 over channels       half the channels condition the other half

    log|det dz/dx| = -H W sum log_scale + H W sum log|s| + coupling's log-det.

The 1x1 convolution replaces RealNVP's fixed channel permutations by a learned one, so a
coupling's conditioning half is a learned mixture of channels; ActNorm replaces batch norm
(it behaves the same at any batch size after its first batch). Every piece is cheap in both
directions (the 1x1 convolution's inverse is one C x C inversion), so density and sampling
are one pass each. The layers themselves live in :mod:`flowlib.flows.coupling`.
"""
from __future__ import annotations

from typing import Sequence

from ..core import Bijection, Compose, Flow
from .coupling import (
    ActNorm,
    AffineCoupling,
    ConvConditioner,
    Flatten,
    InvertibleConv1x1,
    MultiScale,
    Squeeze,
    _check_positive,
    channel_mask,
)
from ..distributions import StandardNormal

__all__ = ["glow_step", "glow"]


def glow_step(channels: int, hidden_ch: int = 32, scale_bound: float | None = 2.0, generator=None) -> Compose:
    """One Glow step on ``channels`` (even, >= 2) channels: ActNorm -> LU 1x1 convolution ->
    affine coupling whose conditioner (:class:`~flowlib.flows.coupling.ConvConditioner`) reads the
    first half of the channels and transforms the second."""
    _check_positive("glow_step", channels=channels, hidden_ch=hidden_ch)
    if channels < 2 or channels % 2:
        raise ValueError(f"glow_step: the coupling splits channels in halves, so channels must be even, got {channels}")
    return Compose(
        ActNorm(channels),
        InvertibleConv1x1(channels, generator=generator),
        AffineCoupling(channel_mask(channels, 0), ConvConditioner(channels, hidden_ch, 2 * channels), scale_bound),
    )


def glow(shape: Sequence[int] = (1, 8, 8), n_scales: int = 2, steps_per_scale: int = 4, hidden_ch: int = 32,
         scale_bound: float | None = 2.0, logit_alpha: float | None = 0.05, generator=None) -> Flow:
    """A multi-scale Glow for images in ``[0, 1]^(C, H, W)`` with a ``StandardNormal(C H W)``
    base on the flat latent. Each scale: :class:`~flowlib.flows.coupling.Squeeze` (4x the channels,
    half the side), ``steps_per_scale`` :func:`glow_step`, then (except at the last scale) a
    :class:`~flowlib.flows.coupling.MultiScale` split that factors out half of the channels; the
    last scale ends in :class:`~flowlib.flows.coupling.Flatten`. Optional
    :class:`~flowlib.flows.dequantization.LogitTransform` first (``logit_alpha``), its log-det included.
    H and W must be divisible by ``2^n_scales``."""
    C, H, W = (int(s) for s in shape)
    _check_positive("glow", C=C, H=H, W=W, n_scales=n_scales, steps_per_scale=steps_per_scale)
    f = 2 ** n_scales
    if H % f or W % f:
        raise ValueError(f"glow: H and W must be divisible by 2^n_scales = {f}, got {(H, W)}")

    def build(c: int, h: int, w: int, scales_left: int) -> Bijection:
        c, h, w = 4 * c, h // 2, w // 2
        steps = [glow_step(c, hidden_ch, scale_bound, generator) for _ in range(steps_per_scale)]
        if scales_left == 1:
            return Compose(Squeeze(), *steps, Flatten((c, h, w)))
        return MultiScale(Compose(Squeeze(), *steps), build(c // 2, h, w, scales_left - 1), (c, h, w))

    stack = build(C, H, W, n_scales)
    if logit_alpha is not None:
        from .dequantization import LogitTransform

        stack = Compose(LogitTransform(logit_alpha), stack)
    return Flow(StandardNormal(C * H * W), stack)
