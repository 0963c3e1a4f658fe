"""Topic 1: change of variables in one dimension and CDF flows.

A monotone map ``z = f(x)`` moves density by ``p_X(x) = p_Z(f(x)) |f'(x)|``. The transforms
here act elementwise, so a batch ``(batch, D)`` is D independent 1-D flows and the
log-determinant is a sum over dimensions.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import Bijection, sum_except_batch

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class Affine(Bijection):
    """Elementwise affine flow, written in the sampling direction ``x = b + a * z``.

    forward (data -> noise): ``z = (x - b) / a``, ``log|det| = -sum log|a|``; both directions
    are one cheap pass. ``a`` is parameterised by ``log|a|`` (learnable) and a fixed sign, so it
    can never reach 0; a zero or non-finite scale is rejected at construction. The parameters'
    dtype is ``dtype`` if given, else that of floating-point ``shift``/``scale`` tensors (so a
    float64 scale keeps ``log|a|`` in float64), else torch's default; ``log|a|`` is computed in
    float64 before it is stored.
    """

    def __init__(self, shift=0.0, scale=1.0, shape=(), learnable: bool = True, dtype: torch.dtype | None = None):
        super().__init__()
        if dtype is None:
            given = [v.dtype for v in (shift, scale) if isinstance(v, Tensor) and v.is_floating_point()]
            dtype = given[0] if len(given) == 1 else torch.promote_types(*given) if given else torch.get_default_dtype()
        # Python numbers are read in float64 (as_tensor of a list would round them to float32 first)
        shift = torch.as_tensor(shift, dtype=None if isinstance(shift, Tensor) else torch.float64)
        shift = shift.to(dtype).expand(shape).clone()
        scale64 = torch.as_tensor(scale, dtype=None if isinstance(scale, Tensor) else torch.float64)
        scale64 = scale64.to(torch.float64).expand(shape).clone()
        if not torch.isfinite(scale64).all() or (scale64 == 0).any():
            raise ValueError(f"Affine: scale must be finite and non-zero to be invertible, got {scale64.tolist()}")
        scale = scale64.to(dtype)
        log_abs = scale64.abs().log().to(dtype)
        if learnable:
            self.shift = nn.Parameter(shift)
            self.log_abs_scale = nn.Parameter(log_abs)
        else:
            self.register_buffer("shift", shift)
            self.register_buffer("log_abs_scale", log_abs)
        self.register_buffer("sign", scale.sign())

    @property
    def scale(self) -> Tensor:
        return self.sign * self.log_abs_scale.exp()

    def _ladj(self, x: Tensor) -> Tensor:
        return sum_except_batch(self.log_abs_scale.expand_as(x))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return (x - self.shift) / self.scale, -self._ladj(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.shift + self.scale * z, self._ladj(z)


def _normal_log_cdf_pair(s: Tensor) -> tuple[Tensor, Tensor]:
    """(log Phi(s), log phi(s)) for the standard normal."""
    return torch.special.log_ndtr(s), -0.5 * s**2 - _LOG_SQRT_2PI


def _logistic_log_cdf_pair(s: Tensor) -> tuple[Tensor, Tensor]:
    """(log sigmoid(s), log sigmoid'(s)) for the standard logistic."""
    return F.logsigmoid(s), F.logsigmoid(s) + F.logsigmoid(-s)


_KINDS = {"gaussian": _normal_log_cdf_pair, "logistic": _logistic_log_cdf_pair}


def mixture_cdf(x: Tensor, logits: Tensor, means: Tensor, log_scales: Tensor, kind: str = "gaussian") -> tuple[Tensor, Tensor]:
    """CDF of a K-component mixture and the log of its derivative (the mixture density).

    ``F(x) = sum_k w_k G((x - mu_k) / s_k)`` with ``w = softmax(logits)`` and G the standard
    normal or logistic CDF; ``log F'(x) = logsumexp_k [log w_k + log g((x - mu_k)/s_k) - log s_k]``.
    ``x`` has any shape ``(...)``; the parameters have shape ``(..., K)`` broadcastable
    against ``x[..., None]``. Returns ``(F(x), log F'(x))``, both shaped like ``x``.
    """
    if kind not in _KINDS:
        raise ValueError(f"mixture_cdf: kind must be one of {sorted(_KINDS)}, got {kind!r}")
    if not (logits.shape[-1] == means.shape[-1] == log_scales.shape[-1]):
        raise ValueError(
            f"mixture_cdf: logits, means and log_scales need the same number of components in their last "
            f"dimension, got {logits.shape[-1]}, {means.shape[-1]}, {log_scales.shape[-1]}"
        )
    log_w = torch.log_softmax(logits, dim=-1)
    s = (x.unsqueeze(-1) - means) * torch.exp(-log_scales)
    log_cdf, log_pdf = _KINDS[kind](s)
    # clamp: in float32 the weights can sum to 1 + 1 ulp, and F = 1.0000001 is outside [0, 1]
    cdf = torch.logsumexp(log_w + log_cdf, dim=-1).exp().clamp(max=1.0)
    log_density = torch.logsumexp(log_w + log_pdf - log_scales, dim=-1)
    return cdf, log_density


def bisection_inverse(
    f: Callable[[Tensor], Tensor], y: Tensor, lo: float | Tensor, hi: float | Tensor, iters: int = 100
) -> Tensor:
    """Solve ``f(x) = y`` elementwise for an increasing ``f`` by bisection on ``[lo, hi]``.

    Each iteration halves the bracket and the midpoint of the last one is returned, so after
    n iterations the error in x is at most ``(hi - lo) / 2^(n+1)`` (in exact arithmetic;
    where F is nearly flat, rounding of ``y`` limits it sooner). Raises if ``y`` is not bracketed by ``f(lo)`` and ``f(hi)``.
    """
    lo = torch.as_tensor(lo, dtype=y.dtype, device=y.device).expand_as(y).clone()
    hi = torch.as_tensor(hi, dtype=y.dtype, device=y.device).expand_as(y).clone()
    f_lo, f_hi = f(lo), f(hi)
    if not ((f_lo <= y) & (y <= f_hi)).all():
        raise ValueError(
            f"bisection_inverse: target outside [f(lo), f(hi)] (targets in [{y.min().item():.4g}, {y.max().item():.4g}], "
            f"f(lo) up to {f_lo.max().item():.4g}, f(hi) down to {f_hi.min().item():.4g}); widen the bracket"
        )
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        below = f(mid) < y
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


class MixtureCDF(Bijection):
    """Elementwise CDF flow onto the unit interval: ``u = F(x)`` with F a K-component
    Gaussian or logistic mixture CDF per dimension (one of the earliest flows: a CDF maps
    any continuous density to Uniform[0, 1]).

    forward (data -> noise) is one cheap pass with ``log|det| = sum log F'(x)``; inverse has
    no closed form and runs bisection (``iters`` passes), accurate to ``(hi - lo) / 2^(iters+1)``.
    In float32, F(x) rounds to exactly 0 or 1 a few scales beyond the outermost component;
    ``u`` is clamped to the open interval so bases such as Beta(5, 5) stay finite there.
    """

    def __init__(self, dim: int = 1, n_components: int = 5, kind: str = "gaussian", bracket: float = 50.0, iters: int = 60):
        super().__init__()
        if kind not in _KINDS:
            raise ValueError(f"MixtureCDF: kind must be one of {sorted(_KINDS)}, got {kind!r}")
        self.kind, self.bracket, self.iters = kind, float(bracket), int(iters)
        self.logits = nn.Parameter(torch.zeros(dim, n_components))
        self.means = nn.Parameter(torch.linspace(-2.0, 2.0, n_components).repeat(dim, 1))
        self.log_scales = nn.Parameter(torch.zeros(dim, n_components))

    def cdf(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() != 2 or x.shape[1] != self.logits.shape[0]:
            raise ValueError(f"MixtureCDF: expected x of shape (batch, {self.logits.shape[0]}), got {tuple(x.shape)}")
        return mixture_cdf(x, self.logits, self.means, self.log_scales, self.kind)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u, log_density = self.cdf(x)
        tiny, below_one = torch.finfo(u.dtype).tiny, 1 - torch.finfo(u.dtype).eps / 2
        return u.clamp(tiny, below_one), sum_except_batch(log_density)

    def inverse(self, u: Tensor) -> tuple[Tensor, Tensor]:
        if ((u <= 0) | (u >= 1)).any():
            raise ValueError("MixtureCDF.inverse: u must lie strictly inside (0, 1)")
        with torch.no_grad():
            x = bisection_inverse(lambda t: self.cdf(t)[0], u, -self.bracket, self.bracket, self.iters)
        _, log_density = self.cdf(x)
        return x, -sum_except_batch(log_density)


class Probit(Bijection):
    """Map the unit interval to the real line with the inverse normal CDF:
    ``z = Phi^{-1}(u)``. Composing a CDF flow with it gives a standard-normal latent.

    forward: ``log|det| = -sum log phi(z)``; inverse ``u = Phi(z)`` with
    ``log|det| = sum log phi(z)``. Both directions are one pass. In float32 a CDF flow's
    ``u`` rounds to exactly 1 beyond about 5.4 standard deviations; ``u`` is clamped to the
    open interval there so the tails stay finite (use float64 for accurate far tails).
    """

    def forward(self, u: Tensor) -> tuple[Tensor, Tensor]:
        eps = torch.finfo(u.dtype).eps
        z = torch.special.ndtri(u.clamp(eps, 1 - eps))
        return z, -sum_except_batch(-0.5 * z**2 - _LOG_SQRT_2PI)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return torch.special.ndtr(z), sum_except_batch(-0.5 * z**2 - _LOG_SQRT_2PI)


class Logit(Bijection):
    """Unit interval to the real line with the logistic quantile: ``z = log u - log(1-u)``.

    forward: ``log|det| = -sum [log u + log(1-u)]``; inverse is the sigmoid. Both one pass.
    """

    def forward(self, u: Tensor) -> tuple[Tensor, Tensor]:
        z = torch.logit(u)
        return z, sum_except_batch(F.logsigmoid(z) + F.logsigmoid(-z)).neg()

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return torch.sigmoid(z), sum_except_batch(F.logsigmoid(z) + F.logsigmoid(-z))
