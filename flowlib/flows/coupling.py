"""Coupling flows (NICE, RealNVP), the multi-scale architecture, and Glow's ActNorm and 1x1 convolution.

A coupling layer splits the input with a fixed binary mask ``b``: the entries where
``b = 1`` pass through unchanged and parameterise an elementwise map of the entries where
``b = 0``. The Jacobian is triangular (after reordering) with the untouched entries on an
identity block, so ``log|det|`` is a sum over the transformed entries, and *both*
directions are one pass of the conditioner network: the part it reads is the same on both
sides. Stacking layers with complementary masks lets every entry be transformed.

Mask convention used throughout: ``1`` = passed through (read by the conditioner),
``0`` = transformed. Masks broadcast against one sample (``x.shape[1:]``): ``(D,)`` for
vectors, ``(1, H, W)`` (checkerboard) or ``(C, 1, 1)`` (channel) for images.

Images are ``(batch, C, H, W)``. :class:`Squeeze` trades space for channels and
:class:`MultiScale` factors out half of the channels at each scale (Dinh et al. 2016);
the whole stack still is a :class:`~flowlib.core.Bijection` whose ``forward`` returns the
flattened latent, so ``Flow(StandardNormal(C*H*W), stack)`` gives the exact likelihood.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..core import Bijection, Compose, Flow, sum_except_batch
from ..distributions import StandardNormal

__all__ = [
    "checkerboard_mask",
    "channel_mask",
    "alternating_mask",
    "half_mask",
    "MLPConditioner",
    "ConvConditioner",
    "AdditiveCoupling",
    "AffineCoupling",
    "Squeeze",
    "Flatten",
    "MultiScale",
    "ActNorm",
    "InvertibleConv1x1",
    "realnvp",
    "realnvp_image",
]


# --------------------------------------------------------------------------- masks
def _check_parity(parity) -> int:
    if parity not in (0, 1):
        raise ValueError(f"parity must be 0 or 1, got {parity!r}")
    return int(parity)


def _check_positive(name: str, **values) -> None:
    for key, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}: {key} must be a positive int, got {v!r}")


def checkerboard_mask(h: int, w: int, parity: int = 0) -> Tensor:
    """``(1, h, w)`` mask with ``b[0, i, j] = 1`` where ``(i + j) % 2 == parity``; the two
    parities are complementary. ``b[0, 0, 0] = 1`` for parity 0."""
    _check_positive("checkerboard_mask", h=h, w=w)
    parity = _check_parity(parity)
    i = torch.arange(h)[:, None]
    j = torch.arange(w)[None, :]
    return ((i + j) % 2 == parity).to(torch.get_default_dtype())[None]


def channel_mask(c: int, parity: int = 0) -> Tensor:
    """``(c, 1, 1)`` mask: parity 0 passes the first ``c // 2`` channels, parity 1 the rest."""
    _check_positive("channel_mask", c=c)
    if c < 2:
        raise ValueError(f"channel_mask: need at least 2 channels, got c={c}")
    return half_mask(c, parity)[:, None, None]


def alternating_mask(d: int, parity: int = 0) -> Tensor:
    """``(d,)`` mask with ``b[k] = 1`` where ``k % 2 == parity`` (even or odd features)."""
    _check_positive("alternating_mask", d=d)
    parity = _check_parity(parity)
    return (torch.arange(d) % 2 == parity).to(torch.get_default_dtype())


def half_mask(d: int, parity: int = 0) -> Tensor:
    """``(d,)`` mask: parity 0 passes the first ``d // 2`` features, parity 1 the others."""
    _check_positive("half_mask", d=d)
    parity = _check_parity(parity)
    first = torch.arange(d) < d // 2
    return (first if parity == 0 else ~first).to(torch.get_default_dtype())


# --------------------------------------------------------------------------- conditioners
class MLPConditioner(nn.Module):
    """MLP ``R^features -> R^out`` with ReLU hidden layers; the last layer (``self.last``)
    starts at zero, so a coupling layer built on it starts as the identity."""

    def __init__(self, features: int, hidden: int | Sequence[int] = (64, 64), out: int | None = None):
        super().__init__()
        out = 2 * features if out is None else out
        hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
        _check_positive("MLPConditioner", features=features, out=out)
        if not hidden or any((not isinstance(h, int)) or h < 1 for h in hidden):
            raise ValueError(f"MLPConditioner: hidden must be a positive int or a non-empty sequence of them, got {hidden!r}")
        layers: list[nn.Module] = []
        prev = features
        for width in hidden:
            layers += [nn.Linear(prev, width), nn.ReLU()]
            prev = width
        self.last = nn.Linear(prev, out)
        nn.init.zeros_(self.last.weight)
        nn.init.zeros_(self.last.bias)
        self.net = nn.Sequential(*layers, self.last)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvConditioner(nn.Module):
    """Small conv net for images, size preserving: 3x3 conv -> ReLU -> 1x1 conv -> ReLU ->
    3x3 conv (``self.last``, zero-initialised), ``(B, in_ch, H, W) -> (B, out_ch, H, W)``."""

    def __init__(self, in_ch: int, hidden_ch: int = 32, out_ch: int | None = None):
        super().__init__()
        out_ch = 2 * in_ch if out_ch is None else out_ch
        _check_positive("ConvConditioner", in_ch=in_ch, hidden_ch=hidden_ch, out_ch=out_ch)
        self.last = nn.Conv2d(hidden_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.last.weight)
        nn.init.zeros_(self.last.bias)
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, hidden_ch, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden_ch, hidden_ch, 1),
            nn.ReLU(),
            self.last,
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


# --------------------------------------------------------------------------- coupling layers
def _soft_clamp(a: Tensor, bound: float | None) -> Tensor:
    """``bound * tanh(a / bound)``: identity near 0, smooth, never beyond +-bound."""
    return a if bound is None else bound * torch.tanh(a / bound)


class _Coupling(Bijection):
    def __init__(self, mask: Tensor, conditioner: nn.Module):
        super().__init__()
        mask = torch.as_tensor(mask)
        if not ((mask == 0) | (mask == 1)).all():
            raise ValueError("coupling mask must contain only 0 and 1")
        if mask.all() or not mask.any():
            raise ValueError("coupling mask must contain both 0 (transformed) and 1 (passed through) entries")
        self.register_buffer("mask", mask.to(torch.get_default_dtype()))
        self.conditioner = conditioner

    def _check(self, x: Tensor, name: str) -> None:
        ok = x.dim() == self.mask.dim() + 1
        if ok:
            try:
                ok = torch.broadcast_shapes(self.mask.shape, x.shape[1:]) == x.shape[1:]
            except RuntimeError:
                ok = False
        if not ok:
            raise ValueError(
                f"{type(self).__name__}.{name}: mask of shape {tuple(self.mask.shape)} does not fit a batch of shape "
                f"{tuple(x.shape)} (expected (batch, *event) with the mask broadcasting to the event)"
            )

    def _params(self, x: Tensor) -> Tensor:
        out = self.conditioner(self.mask * x)
        return out


class AdditiveCoupling(_Coupling):
    """Additive coupling (NICE, Dinh, Krueger & Bengio 2014), volume preserving:

        z = b * x + (1 - b) * (x - t(b * x)),        log|det dz/dx| = 0.

    ``conditioner`` maps a masked batch to ``t`` of the same shape (``(B, D)`` or
    ``(B, C, H, W)``). Both directions are one conditioner pass; inverse
    ``x = b * z + (1 - b) * (z + t(b * z))``.
    """

    def _shift(self, x: Tensor) -> Tensor:
        t = self._params(x)
        if t.shape != x.shape:
            raise ValueError(f"AdditiveCoupling: conditioner returned {tuple(t.shape)}, expected {tuple(x.shape)}")
        return t

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, "forward")
        b = self.mask
        return b * x + (1 - b) * (x - self._shift(x)), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, "inverse")
        b = self.mask
        return b * z + (1 - b) * (z + self._shift(z)), z.new_zeros(z.shape[0])


class AffineCoupling(_Coupling):
    """Affine coupling (RealNVP, Dinh, Sohl-Dickstein & Bengio 2016), data -> noise:

        z = b * x + (1 - b) * (x - t(b * x)) * exp(-s(b * x)),
        log|det dz/dx| = -sum (1 - b) * s(b * x).

    ``conditioner`` maps the masked input to ``2C`` channels (``(B, 2D)`` for vectors,
    ``(B, 2C, H, W)`` for images), read as ``(t, s_raw)`` along dim 1. The log-scale is
    soft-clamped, ``s = scale_bound * tanh(s_raw / scale_bound)``, so one layer can change a
    volume by at most ``exp(scale_bound)`` per entry (``scale_bound=None`` disables it). With
    the conditioner's last layer at zero a fresh layer is the identity. Both directions are
    one conditioner pass: inverse ``x = b * z + (1 - b) * (z * exp(s(b * z)) + t(b * z))``.
    """

    def __init__(self, mask: Tensor, conditioner: nn.Module, scale_bound: float | None = 2.0):
        super().__init__(mask, conditioner)
        if scale_bound is not None and not scale_bound > 0:
            raise ValueError(f"AffineCoupling: scale_bound must be positive or None, got {scale_bound!r}")
        self.scale_bound = scale_bound

    def shift_and_log_scale(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(t, s)`` for the batch ``x`` (only ``b * x`` is read), ``s`` already clamped."""
        out = self._params(x)
        if out.shape[0] != x.shape[0] or out.shape[1] != 2 * x.shape[1] or out.shape[2:] != x.shape[2:]:
            raise ValueError(
                f"AffineCoupling: conditioner returned {tuple(out.shape)}, expected "
                f"{(x.shape[0], 2 * x.shape[1], *x.shape[2:])} (shift and log-scale along dim 1)"
            )
        t, s = out.chunk(2, dim=1)
        return t, _soft_clamp(s, self.scale_bound)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, "forward")
        b = self.mask
        t, s = self.shift_and_log_scale(x)
        s = (1 - b) * s
        z = b * x + (1 - b) * (x - t) * torch.exp(-s)
        return z, -sum_except_batch(s)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, "inverse")
        b = self.mask
        t, s = self.shift_and_log_scale(z)
        s = (1 - b) * s
        x = b * z + (1 - b) * (z * torch.exp(s) + t)
        return x, sum_except_batch(s)


# --------------------------------------------------------------------------- reshaping
def _check_image(x: Tensor, name: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name}: expected an image batch of shape (batch, C, H, W), got {tuple(x.shape)}")


class Squeeze(Bijection):
    """Space to channels (RealNVP): ``(B, C, H, W) -> (B, 4C, H/2, W/2)``, each 2x2 block of
    a channel becoming 4 channels (output channel ``4c + 2di + dj`` holds pixel
    ``(2i + di, 2j + dj)`` of channel c). A permutation: ``log|det| = 0``, both directions
    cheap. H and W must be even."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _check_image(x, "Squeeze.forward")
        B, C, H, W = x.shape
        if H % 2 or W % 2:
            raise ValueError(f"Squeeze: height and width must be even, got H={H}, W={W}")
        z = x.reshape(B, C, H // 2, 2, W // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(B, 4 * C, H // 2, W // 2)
        return z, x.new_zeros(B)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        _check_image(z, "Squeeze.inverse")
        B, C4, h, w = z.shape
        if C4 % 4:
            raise ValueError(f"Squeeze.inverse: channels must be a multiple of 4, got {C4}")
        C = C4 // 4
        x = z.reshape(B, C, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(B, C, 2 * h, 2 * w)
        return x, z.new_zeros(B)


class Flatten(Bijection):
    """``(B, *shape) -> (B, prod(shape))`` and back; ``log|det| = 0``. Ends a multi-scale stack."""

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.size = int(torch.Size(self.shape).numel())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"Flatten: expected shape (batch, {', '.join(map(str, self.shape))}), got {tuple(x.shape)}")
        return x.reshape(x.shape[0], -1), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if z.dim() != 2 or z.shape[1] != self.size:
            raise ValueError(f"Flatten.inverse: expected shape (batch, {self.size}), got {tuple(z.shape)}")
        return z.reshape(z.shape[0], *self.shape), z.new_zeros(z.shape[0])


class MultiScale(Bijection):
    """One scale of the multi-scale architecture (RealNVP, Dinh et al. 2016), as a bijection
    from images to *flat* latents:

        h = transform(x)                         (B, C, H, W), e.g. couplings + squeeze
        h_out, h_keep = h[:, :C/2], h[:, C/2:]   split along channels
        z = concat(flatten(h_out), inner(h_keep))

    ``transform`` maps ``x`` to an image of shape ``shape = (C, H, W)`` (C even); ``inner``
    maps ``(B, C/2, H, W)`` to a flat ``(B, n)`` latent: either another ``MultiScale`` or,
    at the last scale, a bijection ending in :class:`Flatten`. The factored-out half goes
    straight to the base distribution: with a factorised base (``StandardNormal``) its
    log-density is the sum over the parts, so

        log p(x) = sum_scales log N(h_out) + log N(z_last) + sum of all log-dets,

    which is exactly ``Flow(StandardNormal(n), stack).log_prob(x)``: ``ladj`` here is
    ``ladj(transform) + ladj(inner)`` (splitting and flattening are free). The latent's first
    ``C/2 * H * W`` entries are this scale's factored-out part. Both directions cost what
    ``transform`` and ``inner`` cost; inverse rebuilds ``h`` from the two blocks.
    """

    def __init__(self, transform: Bijection, inner: Bijection, shape: Sequence[int]):
        super().__init__()
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or shape[0] % 2 or min(shape) < 1:
            raise ValueError(f"MultiScale: shape must be (C, H, W) with C even, got {shape}")
        self.transform, self.inner, self.shape = transform, inner, shape
        self.out_shape = (shape[0] // 2, shape[1], shape[2])
        self.n_out = int(torch.Size(self.out_shape).numel())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h, ladj = self.transform(x)
        if tuple(h.shape[1:]) != self.shape:
            raise ValueError(f"MultiScale: transform returned {tuple(h.shape)}, expected (batch, {self.shape})")
        h_out, h_keep = h.chunk(2, dim=1)
        z_inner, ladj_inner = self.inner(h_keep)
        return torch.cat([h_out.reshape(h.shape[0], -1), z_inner], dim=1), ladj + ladj_inner

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if z.dim() != 2 or z.shape[1] <= self.n_out:
            raise ValueError(f"MultiScale.inverse: expected a flat latent (batch, n) with n > {self.n_out}, got {tuple(z.shape)}")
        h_out = z[:, : self.n_out].reshape(z.shape[0], *self.out_shape)
        h_keep, ladj_inner = self.inner.inverse(z[:, self.n_out :])
        x, ladj = self.transform.inverse(torch.cat([h_out, h_keep], dim=1))
        return x, ladj + ladj_inner


# --------------------------------------------------------------------------- Glow layers
def _as_image(x: Tensor, name: str) -> Tensor:
    if x.dim() == 2:
        return x[:, :, None, None]
    if x.dim() == 4:
        return x
    raise ValueError(f"{name}: expected (batch, C) or (batch, C, H, W), got {tuple(x.shape)}")


class ActNorm(Bijection):
    """Activation normalisation (Glow, Kingma & Dhariwal 2018): a per-channel affine map

        z = (x - loc) * exp(-log_scale),     log|det dz/dx| = -H * W * sum_c log_scale_c,

    for ``(B, C)`` (H = W = 1) or ``(B, C, H, W)`` batches. Data-dependent initialisation: the
    first ``forward`` call in training mode sets ``loc`` and ``log_scale`` to the per-channel
    mean and log-std of that batch, so the output starts standardised; afterwards they are
    ordinary parameters. Both directions are one cheap pass.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        _check_positive("ActNorm", channels=channels)
        self.channels, self.eps = channels, float(eps)
        self.loc = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))

    def _check(self, x: Tensor, name: str) -> Tensor:
        x4 = _as_image(x, f"ActNorm.{name}")
        if x4.shape[1] != self.channels:
            raise ValueError(f"ActNorm.{name}: expected {self.channels} channels, got {tuple(x.shape)}")
        return x4

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set ``loc``/``log_scale`` from the batch ``x`` (per-channel mean and std)."""
        x4 = self._check(x, "initialize")
        flat = x4.transpose(0, 1).reshape(self.channels, -1)
        if flat.shape[1] < 2:
            raise ValueError("ActNorm.initialize: need at least 2 values per channel to estimate a scale")
        self.loc.copy_(flat.mean(dim=1))
        self.log_scale.copy_((flat.std(dim=1) + self.eps).log())
        self.initialized.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x4 = self._check(x, "forward")
        if self.training and not bool(self.initialized):
            self.initialize(x)
        loc, ls = self.loc[:, None, None], self.log_scale[:, None, None]
        z = ((x4 - loc) * torch.exp(-ls)).reshape(x.shape)
        hw = x4.shape[2] * x4.shape[3]
        return z, (-hw * self.log_scale.sum()).expand(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        z4 = self._check(z, "inverse")
        loc, ls = self.loc[:, None, None], self.log_scale[:, None, None]
        x = (z4 * torch.exp(ls) + loc).reshape(z.shape)
        hw = z4.shape[2] * z4.shape[3]
        return x, (hw * self.log_scale.sum()).expand(z.shape[0])


class InvertibleConv1x1(Bijection):
    """Invertible 1x1 convolution (Glow, Kingma & Dhariwal 2018), LU-parameterised: a
    learned channel mixing ``z[:, :, i, j] = W x[:, :, i, j]`` at every pixel with

        W = P L (U + diag(sign * exp(log_s))),    log|det dz/dx| = H * W * sum log|s|,

    P a fixed permutation, L unit lower triangular, U strictly upper triangular. Initialised
    from the LU factors of a random rotation (``generator``). forward is one cheap pass
    (O(C) log-det instead of O(C^3)); inverse needs ``W^{-1}`` (one C x C inversion, cheap
    for small C). Accepts ``(B, C)`` or ``(B, C, H, W)``.
    """

    def __init__(self, channels: int, generator: torch.Generator | None = None):
        super().__init__()
        _check_positive("InvertibleConv1x1", channels=channels)
        q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator, dtype=torch.float64))
        P, L, U = torch.linalg.lu(q)
        s = torch.diagonal(U)
        dtype = torch.get_default_dtype()
        self.register_buffer("P", P.to(dtype))
        self.register_buffer("sign_s", s.sign().to(dtype))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels, dtype=dtype), -1))
        self.lower = nn.Parameter(torch.tril(L, -1).to(dtype))
        self.upper = nn.Parameter(torch.triu(U, 1).to(dtype))
        self.log_s = nn.Parameter(s.abs().log().to(dtype))
        self.channels = channels

    def weight(self) -> Tensor:
        """The C x C matrix ``W = P L (U + diag(s))``."""
        eye = torch.eye(self.channels, dtype=self.lower.dtype, device=self.lower.device)
        L = self.lower * self.lower_mask + eye
        U = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.P @ L @ U

    def _mix(self, x: Tensor, W: Tensor, name: str, sign: float) -> tuple[Tensor, Tensor]:
        x4 = _as_image(x, f"InvertibleConv1x1.{name}")
        if x4.shape[1] != self.channels:
            raise ValueError(f"InvertibleConv1x1.{name}: expected {self.channels} channels, got {tuple(x.shape)}")
        z = torch.einsum("ij,bjhw->bihw", W, x4).reshape(x.shape)
        hw = x4.shape[2] * x4.shape[3]
        return z, (sign * hw * self.log_s.sum()).expand(x.shape[0])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._mix(x, self.weight(), "forward", 1.0)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._mix(z, torch.linalg.inv(self.weight()), "inverse", -1.0)


# --------------------------------------------------------------------------- builders
def realnvp(features: int, n_layers: int = 6, hidden: int | Sequence[int] = (64, 64), scale_bound: float | None = 2.0) -> Flow:
    """RealNVP for vectors: ``n_layers`` :class:`AffineCoupling` layers with alternating
    masks (parities 0, 1, 0, ...) and :class:`MLPConditioner`, on a ``StandardNormal``
    base. Density and sampling are both one pass per layer."""
    _check_positive("realnvp", features=features, n_layers=n_layers)
    if features < 2:
        raise ValueError(f"realnvp: coupling needs at least 2 features, got {features}")
    layers = [
        AffineCoupling(alternating_mask(features, i % 2), MLPConditioner(features, hidden, 2 * features), scale_bound)
        for i in range(n_layers)
    ]
    return Flow(StandardNormal(features), Compose(*layers))


def _checker_couplings(c: int, h: int, w: int, n: int, hidden_ch: int, scale_bound, start: int = 0) -> list[Bijection]:
    return [
        AffineCoupling(checkerboard_mask(h, w, (start + i) % 2), ConvConditioner(c, hidden_ch, 2 * c), scale_bound)
        for i in range(n)
    ]


def _channel_couplings(c: int, n: int, hidden_ch: int, scale_bound) -> list[Bijection]:
    return [AffineCoupling(channel_mask(c, i % 2), ConvConditioner(c, hidden_ch, 2 * c), scale_bound) for i in range(n)]


def realnvp_image(
    shape: Sequence[int] = (1, 8, 8),
    n_scales: int = 2,
    hidden_ch: int = 32,
    n_checker: int = 3,
    n_channel: int = 3,
    n_final: int = 4,
    scale_bound: float | None = 2.0,
    logit_alpha: float | None = 0.05,
) -> Flow:
    """A small multi-scale RealNVP (Dinh et al. 2016) for images in ``[0, 1]^(C, H, W)``
    (default: the 8x8 single-channel digits), returning a :class:`Flow` with a
    ``StandardNormal(C*H*W)`` base on the flat latent.

    Layout: optional :class:`~flowlib.flows.dequantization.LogitTransform` (``logit_alpha``; its
    log-det is included, so ``log_prob`` is a density on the unit cube); then for each of the
    first ``n_scales - 1`` scales: ``n_checker`` checkerboard couplings, :class:`Squeeze`,
    ``n_channel`` channel couplings, and a :class:`MultiScale` split that factors out half of
    the channels; at the last scale ``n_final`` checkerboard couplings and :class:`Flatten`.
    H and W must be divisible by ``2^(n_scales - 1)``.
    """
    C, H, W = (int(s) for s in shape)
    _check_positive("realnvp_image", C=C, H=H, W=W, n_scales=n_scales, hidden_ch=hidden_ch)
    f = 2 ** (n_scales - 1)
    if H % f or W % f:
        raise ValueError(f"realnvp_image: H and W must be divisible by 2^(n_scales-1) = {f}, got {(H, W)}")

    def build(c: int, h: int, w: int, scales_left: int) -> Bijection:
        if scales_left == 1:
            return Compose(*_checker_couplings(c, h, w, n_final, hidden_ch, scale_bound), Flatten((c, h, w)))
        parts = _checker_couplings(c, h, w, n_checker, hidden_ch, scale_bound)
        parts.append(Squeeze())
        parts += _channel_couplings(4 * c, n_channel, hidden_ch, scale_bound)
        inner = build(2 * c, h // 2, w // 2, scales_left - 1)
        return MultiScale(Compose(*parts), inner, (4 * c, h // 2, w // 2))

    stack = build(C, H, W, n_scales)
    if logit_alpha is not None:
        from .dequantization import LogitTransform

        stack = Compose(LogitTransform(logit_alpha), stack)
    return Flow(StandardNormal(C * H * W), stack)
