"""Monotone rational-quadratic splines and the neural spline flows built on them.

Durkan, Bekasov, Murray & Papamakarios (2019), *Neural Spline Flows*. On ``[-B, B]`` the map
is a monotone spline with ``K`` bins: knots ``(x_k, y_k)``, ``k = 0..K``, from ``-B`` to ``B``
in both coordinates, and positive derivatives ``d_k`` at the knots. In bin ``k``, with
``w = x_{k+1} - x_k``, ``h = y_{k+1} - y_k``, ``s = h / w`` and ``xi = (x - x_k) / w``,

    y = y_k + h [s xi^2 + d_k xi (1 - xi)] / [s + (d_{k+1} + d_k - 2 s) xi (1 - xi)],
    dy/dx = s^2 [d_{k+1} xi^2 + 2 s xi (1 - xi) + d_k (1 - xi)^2] / [s + (d_{k+1} + d_k - 2 s) xi (1 - xi)]^2.

Outside ``[-B, B]`` the map is the identity (linear tails), and ``d_0 = d_K = 1`` makes the
derivative continuous there. Both directions are closed-form and cheap: the inverse solves a
quadratic in ``xi`` per entry, taking the root ``xi = 2c / (-b - sqrt(b^2 - 4ac))``, which
does not cancel catastrophically (the textbook ``(-b + sqrt(.)) / 2a`` does when ``a`` is
small).

Unconstrained parameters, ``3K - 1`` per entry (``K`` widths, ``K`` heights, ``K - 1``
interior derivatives), are mapped by :func:`spline_knots`: widths and heights by a softmax
with a floor (``min_width + (1 - K min_width) softmax``, then scaled to ``2B``), derivatives
by ``min_derivative + softplus(. + c)`` with ``c`` chosen so that a raw 0 gives derivative 1.
All-zero parameters are therefore the identity map, so a layer whose network's last layer
starts at zero starts as the identity.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .autoregressive import MADE, Reverse
from ..core import Bijection, Compose, Flow, sum_except_batch
from .coupling import MLPConditioner, _Coupling, alternating_mask
from ..distributions import StandardNormal

__all__ = [
    "spline_knots",
    "rational_quadratic_spline",
    "RationalQuadraticSpline",
    "SplineCoupling",
    "SplineAutoregressive",
    "nsf_coupling",
    "nsf_autoregressive",
]

MIN_WIDTH = 1e-3
MIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3


def n_spline_params(n_bins: int) -> int:
    """Unconstrained parameters per entry: ``K`` widths, ``K`` heights, ``K - 1`` derivatives."""
    return 3 * n_bins - 1


def spline_knots(raw: Tensor, bound: float, min_width: float = MIN_WIDTH, min_height: float = MIN_HEIGHT,
                 min_derivative: float = MIN_DERIVATIVE) -> tuple[Tensor, Tensor, Tensor]:
    """Unconstrained ``raw`` of shape ``(..., 3K - 1)`` -> knots ``x``, ``y`` and derivatives
    ``d``, each ``(..., K + 1)``: ``x`` and ``y`` increase from ``-bound`` to ``bound`` with
    every bin at least ``2 bound min_width`` wide (``min_height`` high), ``d_k >= min_derivative``
    with ``d_0 = d_K = 1``. ``raw = 0`` gives the identity."""
    if raw.dim() < 1 or raw.shape[-1] < 2 or (raw.shape[-1] + 1) % 3:
        raise ValueError(f"spline_knots: the last dimension must be 3K - 1 (K >= 1 bins), got shape {tuple(raw.shape)}")
    if not bound > 0:
        raise ValueError(f"spline_knots: bound must be positive, got {bound!r}")
    K = (raw.shape[-1] + 1) // 3
    if not (0 <= min_width and min_width * K < 1 and 0 <= min_height and min_height * K < 1 and min_derivative > 0):
        raise ValueError(f"spline_knots: need min_width * K < 1, min_height * K < 1 (K = {K}) and min_derivative > 0, "
                         f"got {min_width}, {min_height}, {min_derivative}")
    w, h, d = raw[..., :K], raw[..., K:2 * K], raw[..., 2 * K:]

    def knots(u: Tensor, floor: float) -> Tensor:
        sizes = floor + (1 - floor * K) * torch.softmax(u, dim=-1)
        cum = F.pad(torch.cumsum(sizes, dim=-1), (1, 0))
        cum = 2 * bound * cum - bound
        # the ends exactly at -bound and bound (the cumulative sum may miss by rounding)
        return torch.cat([torch.full_like(cum[..., :1], -bound), cum[..., 1:-1], torch.full_like(cum[..., :1], bound)], -1)

    shift = math.log(math.expm1(1 - min_derivative))  # softplus(0 + shift) + min_derivative = 1
    inner = min_derivative + F.softplus(d + shift)
    one = torch.ones_like(raw[..., :1])
    return knots(w, min_width), knots(h, min_height), torch.cat([one, inner, one], dim=-1)


def rational_quadratic_spline(x: Tensor, knot_x: Tensor, knot_y: Tensor, derivatives: Tensor,
                              inverse: bool = False) -> tuple[Tensor, Tensor]:
    """The spline elementwise: ``x`` of any shape, knots and derivatives of shape
    ``x.shape + (K + 1,)`` (or broadcastable to it). Returns ``(y, log|dy/dx|)`` elementwise,
    or with ``inverse=True`` the inverse map and ``log|dx/dy|``. Identity outside the knots."""
    shape = x.shape + knot_x.shape[-1:]
    knot_x, knot_y, derivatives = (t.expand(shape).contiguous() for t in (knot_x, knot_y, derivatives))
    lo, hi = knot_x[..., 0], knot_x[..., -1]
    inside = (x >= lo) & (x <= hi)
    xc = torch.where(inside, x, lo)  # the tails get a harmless in-range value (masked out below), gradient intact at the ends
    edges = knot_y if inverse else knot_x
    K = shape[-1] - 1
    idx = (torch.searchsorted(edges, xc.unsqueeze(-1).contiguous(), right=True) - 1).clamp(0, K - 1)

    def at(t: Tensor, i: Tensor) -> Tensor:
        return t.gather(-1, i).squeeze(-1)

    xk, xk1, yk, yk1 = at(knot_x, idx), at(knot_x, idx + 1), at(knot_y, idx), at(knot_y, idx + 1)
    dk, dk1 = at(derivatives, idx), at(derivatives, idx + 1)
    w, h = xk1 - xk, yk1 - yk
    s = h / w
    c2 = dk1 + dk - 2 * s
    if inverse:
        dy = xc - yk
        a = h * (s - dk) + dy * c2
        b = h * dk - dy * c2
        c = -s * dy
        disc = (b * b - 4 * a * c).clamp_min(0)
        xi = (2 * c / (-b - disc.sqrt())).clamp(0, 1)
        out = xk + xi * w
    else:
        xi = (xc - xk) / w
        out = yk + h * (s * xi ** 2 + dk * xi * (1 - xi)) / (s + c2 * xi * (1 - xi))
    den = s + c2 * xi * (1 - xi)
    log_deriv = 2 * torch.log(s) + torch.log(dk1 * xi ** 2 + 2 * s * xi * (1 - xi) + dk * (1 - xi) ** 2) - 2 * torch.log(den)
    if inverse:
        log_deriv = -log_deriv
    return torch.where(inside, out, x), torch.where(inside, log_deriv, torch.zeros_like(log_deriv))


class RationalQuadraticSpline(Bijection):
    """An elementwise monotone rational-quadratic spline with its own parameters, the same
    map in both directions' cost (one closed-form pass each), on ``(batch, *event_shape)``.

    ``raw`` has shape ``(*event_shape, 3K - 1)`` (see :func:`spline_knots`); it starts at zero
    (the identity) unless given. forward is ``x -> y`` on ``[-bound, bound]``, identity outside.
    """

    def __init__(self, event_shape: Sequence[int] = (1,), n_bins: int = 8, bound: float = 3.0, raw: Tensor | None = None):
        super().__init__()
        if not isinstance(n_bins, int) or n_bins < 1:
            raise ValueError(f"RationalQuadraticSpline: n_bins must be a positive int, got {n_bins!r}")
        self.event_shape, self.n_bins, self.bound = tuple(event_shape), n_bins, float(bound)
        want = (*self.event_shape, n_spline_params(n_bins))
        raw = torch.zeros(want) if raw is None else torch.as_tensor(raw)
        if tuple(raw.shape) != want:
            raise ValueError(f"RationalQuadraticSpline: raw must have shape {want}, got {tuple(raw.shape)}")
        self.raw = nn.Parameter(raw.clone())

    def _map(self, x: Tensor, inverse: bool, name: str) -> tuple[Tensor, Tensor]:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"RationalQuadraticSpline.{name}: expected shape (batch, {', '.join(map(str, self.event_shape))}), "
                             f"got {tuple(x.shape)}")
        knots = spline_knots(self.raw.to(x.dtype), self.bound)
        y, log_d = rational_quadratic_spline(x, *knots, inverse=inverse)
        return y, sum_except_batch(log_d)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._map(x, False, "forward")

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._map(z, True, "inverse")


class SplineCoupling(_Coupling):
    """A coupling layer whose elementwise map is a rational-quadratic spline (NSF coupling):

        z = b * x + (1 - b) * RQS(x; theta(b * x)),    log|det dz/dx| = sum (1 - b) log RQS'(x).

    ``conditioner`` maps the masked input to ``C (3K - 1)`` channels along dim 1 (``(B, D (3K - 1))``
    for vectors, ``(B, C (3K - 1), H, W)`` for images), read per entry as ``(3K - 1)`` consecutive
    values. Both directions are one conditioner pass (the part it reads is passed through).
    """

    def __init__(self, mask: Tensor, conditioner: nn.Module, n_bins: int = 8, bound: float = 3.0):
        super().__init__(mask, conditioner)
        if not isinstance(n_bins, int) or n_bins < 1:
            raise ValueError(f"SplineCoupling: n_bins must be a positive int, got {n_bins!r}")
        self.n_bins, self.bound = n_bins, float(bound)

    def _spline(self, x: Tensor, inverse: bool, name: str) -> tuple[Tensor, Tensor]:
        self._check(x, name)
        p = n_spline_params(self.n_bins)
        out = self._params(x)
        want = (x.shape[0], x.shape[1] * p, *x.shape[2:])
        if tuple(out.shape) != want:
            raise ValueError(f"SplineCoupling: conditioner returned {tuple(out.shape)}, expected {want} "
                             f"({p} spline parameters per entry along dim 1)")
        raw = out.reshape(x.shape[0], x.shape[1], p, *x.shape[2:]).movedim(2, -1)
        y, log_d = rational_quadratic_spline(x, *spline_knots(raw, self.bound), inverse=inverse)
        b = self.mask
        return b * x + (1 - b) * y, sum_except_batch((1 - b) * log_d)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._spline(x, False, "forward")

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._spline(z, True, "inverse")


class SplineAutoregressive(Bijection):
    """A masked autoregressive layer whose map of each dimension is a rational-quadratic
    spline (NSF autoregressive): ``z_k = RQS(x_k; theta_k(x_<k))`` with ``theta`` from one
    :class:`~flowlib.flows.autoregressive.MADE` pass. forward (data -> noise, density) is one pass;
    inverse (sampling) is D sequential passes, as for a MAF layer. The MADE's last layer
    starts at zero, so a fresh layer is the identity."""

    def __init__(self, features: int, hidden: int | Sequence[int] = (64, 64), n_bins: int = 8, bound: float = 3.0,
                 order=None, generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(n_bins, int) or n_bins < 1:
            raise ValueError(f"SplineAutoregressive: n_bins must be a positive int, got {n_bins!r}")
        self.features, self.n_bins, self.bound = features, n_bins, float(bound)
        self.made = MADE(features, hidden, order=order, n_params=n_spline_params(n_bins), generator=generator)
        nn.init.zeros_(self.made.output.weight)
        nn.init.zeros_(self.made.output.bias)

    def _check(self, t: Tensor, name: str) -> None:
        if t.dim() != 2 or t.shape[1] != self.features:
            raise ValueError(f"SplineAutoregressive.{name}: expected shape (batch, {self.features}), got {tuple(t.shape)}")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, "forward")
        z, log_d = rational_quadratic_spline(x, *spline_knots(self.made(x), self.bound))
        return z, log_d.sum(dim=1)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, "inverse")
        x = torch.zeros_like(z)
        log_d = torch.zeros_like(z)
        for _ in range(self.features):  # after pass t the first t dimensions in the order are exact
            x, log_d = rational_quadratic_spline(z, *spline_knots(self.made(x), self.bound), inverse=True)
        return x, log_d.sum(dim=1)


def nsf_coupling(features: int, n_layers: int = 6, n_bins: int = 8, bound: float = 3.0,
                 hidden: int | Sequence[int] = (64, 64)) -> Flow:
    """A neural spline flow of :class:`SplineCoupling` layers with alternating masks and
    :class:`~flowlib.flows.coupling.MLPConditioner`, on a standard-normal base; density and
    sampling are one pass per layer."""
    if not isinstance(n_layers, int) or n_layers < 1 or not isinstance(features, int) or features < 2:
        raise ValueError(f"nsf_coupling: need features >= 2 and n_layers >= 1, got {features!r}, {n_layers!r}")
    p = n_spline_params(n_bins)
    layers = [SplineCoupling(alternating_mask(features, i % 2), MLPConditioner(features, hidden, features * p), n_bins, bound)
              for i in range(n_layers)]
    return Flow(StandardNormal(features), Compose(*layers))


def nsf_autoregressive(features: int, n_layers: int = 5, n_bins: int = 8, bound: float = 3.0,
                       hidden: int | Sequence[int] = (64, 64), generator: torch.Generator | None = None) -> Flow:
    """A neural spline flow of :class:`SplineAutoregressive` layers with :class:`Reverse`
    between them, on a standard-normal base: density is one pass per layer, sampling D."""
    if not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"nsf_autoregressive: n_layers must be a positive int, got {n_layers!r}")
    parts: list[Bijection] = []
    for i in range(n_layers):
        if i > 0 and features > 1:
            parts.append(Reverse(features))
        parts.append(SplineAutoregressive(features, hidden, n_bins, bound, generator=generator))
    return Flow(StandardNormal(features), Compose(*parts))
