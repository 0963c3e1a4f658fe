"""Dequantization: fitting continuous flows to discrete data, and reporting bits per dimension.

Pixels are integers ``x in {0, ..., n_bins - 1}^D``. A continuous density put directly on
them can grow without bound (spikes at the integers), so we model ``y = (x + u) / n_bins``
with ``u in [0, 1)^D``: y lies in the unit cube, in the cell of x. If ``p`` is a density on
``[0, 1)^D``, the discrete model ``P(x) = integral over the cell of x`` satisfies (Theis et
al. 2016; Ho et al. 2019)

    log P(x) = log integral_{[0,1)^D} p((x + u) / n_bins) n_bins^(-D) du
             >= E_{u ~ q(u|x)} [log p((x + u) / n_bins) - log q(u | x)] - D log n_bins,

uniform dequantization being ``q = U[0, 1)^D`` (``log q = 0``). The ``- D log n_bins`` is
the change of scale from ``[0, n_bins)^D`` (cells of volume 1) to ``[0, 1)^D`` (cells of
volume ``n_bins^-D``); it is counted exactly once.

Units: :func:`dequantized_log_likelihood` returns the *discrete* bound in nats per example,
offset included. Convert it with ``bits_per_dim(ll, D, n_bins=1)`` (no further offset).
``flowlib.flows.bits.bits_per_dim(logp, D, n_bins)`` expects the *continuous* log-density on the
unit cube and adds the offset itself; passing it the discrete bound with ``n_bins`` would
count the offset twice. :func:`dequantized_bits_per_dim` does the conversion.
"""
from __future__ import annotations

import math
from itertools import chain
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bits import bits_per_dim
from ..core import Bijection, sum_except_batch

__all__ = [
    "uniform_dequantize",
    "LogitTransform",
    "dequantized_log_likelihood",
    "dequantized_bits_per_dim",
    "VariationalDequantizer",
    "histogram_baseline_bpd",
    "check_discrete",
]


def check_discrete(x_int: Tensor, n_bins: int, name: str = "dequantization") -> None:
    """Raise ``ValueError`` unless ``x_int`` is an integer tensor ``(batch, *event)`` with
    values in ``{0, ..., n_bins - 1}``."""
    if not isinstance(n_bins, int) or isinstance(n_bins, bool) or n_bins < 2:
        raise ValueError(f"{name}: n_bins must be an int >= 2, got {n_bins!r}")
    if not isinstance(x_int, Tensor) or x_int.is_floating_point() or x_int.is_complex() or x_int.dtype == torch.bool:
        kind = x_int.dtype if isinstance(x_int, Tensor) else type(x_int).__name__
        raise ValueError(f"{name}: expected an integer tensor of levels 0..{n_bins - 1}, got {kind} "
                         "(pass the raw integer data, not data already rescaled to [0, 1))")
    if x_int.dim() < 2:
        raise ValueError(f"{name}: expected a batch (batch, *event), got shape {tuple(x_int.shape)}")
    if x_int.numel() and (x_int.min() < 0 or x_int.max() >= n_bins):
        raise ValueError(f"{name}: values must lie in 0..{n_bins - 1}, got range "
                         f"[{int(x_int.min())}, {int(x_int.max())}]")


def _into_cells(x_int: Tensor, u: Tensor, n_bins: int) -> Tensor:
    """``(x + u) / n_bins``, nudged by one rounding step where floating point rounding
    pushed it into a neighbouring cell (``u`` near 1 in float32), so that
    ``floor(y * n_bins) == x`` holds exactly. Differentiable in ``u``."""
    x = x_int.to(u.dtype)
    y = (x + u) / n_bins
    eps = torch.finfo(u.dtype).eps
    for _ in range(4):
        k = torch.floor(y * n_bins)
        if bool((k == x).all()):
            break
        y = torch.where(k > x, y * (1 - eps), torch.where(k < x, y * (1 + eps), y))
    return y


def uniform_dequantize(x_int: Tensor, n_bins: int, generator: torch.Generator | None = None,
                       dtype: torch.dtype | None = None) -> Tensor:
    """``y = (x + u) / n_bins`` with ``u ~ U[0, 1)^D``: a point of the unit cube in the cell
    of ``x``, i.e. ``floor(y * n_bins) == x``. ``x_int`` is an integer tensor with values in
    ``0..n_bins-1``; the result has ``dtype`` (default: torch's default) on ``x_int``'s device.
    ``generator`` draws the noise on its own device and the result is moved to x's."""
    check_discrete(x_int, n_bins, "uniform_dequantize")
    dtype = dtype or torch.get_default_dtype()
    gen_device = generator.device if generator is not None else x_int.device
    u = torch.rand(x_int.shape, generator=generator, dtype=dtype, device=gen_device).to(x_int.device)
    return _into_cells(x_int, u, n_bins)


class LogitTransform(Bijection):
    """RealNVP's pre-processing from the unit cube to R^D (Dinh et al. 2016):

        z = logit(alpha + (1 - 2 alpha) x),
        log|det dz/dx| = sum [log(1 - 2 alpha) - log p - log(1 - p)],  p = alpha + (1 - 2 alpha) x.

    ``alpha`` keeps the logit away from the infinite ends at x = 0 and x = 1. inverse:
    ``x = (sigmoid(z) - alpha) / (1 - 2 alpha)`` with
    ``log|det dx/dz| = sum [log sigmoid(z) + log sigmoid(-z) - log(1 - 2 alpha)]``. Both
    directions are one cheap pass. ``forward`` rejects inputs outside [0, 1] (a common
    mistake is to pass the raw integer pixels).
    """

    def __init__(self, alpha: float = 0.05):
        super().__init__()
        if not 0 <= alpha < 0.5:
            raise ValueError(f"LogitTransform: alpha must lie in [0, 0.5), got {alpha!r}")
        self.alpha = float(alpha)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"LogitTransform: inputs must lie in [0, 1] (dequantized data / n_bins), got range "
                             f"[{x.min().item():.4g}, {x.max().item():.4g}]")
        a = self.alpha
        p = a + (1 - 2 * a) * x
        z = torch.log(p) - torch.log1p(-p)
        ladj = math.log(1 - 2 * a) - torch.log(p) - torch.log1p(-p)
        return z, sum_except_batch(ladj)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        a = self.alpha
        x = (torch.sigmoid(z) - a) / (1 - 2 * a)
        ladj = F.logsigmoid(z) + F.logsigmoid(-z) - math.log(1 - 2 * a)
        return x, sum_except_batch(ladj)


def _float_dtype(module: nn.Module) -> torch.dtype:
    for t in chain(module.parameters(), module.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


def dequantized_log_likelihood(
    flow: nn.Module,
    x_int: Tensor,
    n_bins: int,
    n_samples: int = 1,
    generator: torch.Generator | None = None,
    dequantizer: "VariationalDequantizer | None" = None,
) -> Tensor:
    """Lower bound on the discrete log-likelihood ``log P(x)``, in nats per example, shape (batch,):

        E_q [log p_flow((x + u) / n_bins) - log q(u | x)] - D log n_bins,

    ``flow.log_prob`` being a density on the unit cube ``[0, 1)^D`` (e.g. a flow whose first
    bijection is :class:`LogitTransform`). ``q`` is uniform (``log q = 0``) unless a
    :class:`VariationalDequantizer` is given. The expectation is a Monte Carlo average over
    ``n_samples`` draws (reparameterised, so it can be maximised by gradient ascent). The
    ``- D log n_bins`` is included here: convert with ``bits_per_dim(ll, D, n_bins=1)`` or
    use :func:`dequantized_bits_per_dim`."""
    check_discrete(x_int, n_bins, "dequantized_log_likelihood")
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"dequantized_log_likelihood: n_samples must be a positive int, got {n_samples!r}")
    D = x_int[0].numel()
    dtype = _float_dtype(flow)
    total = None
    for _ in range(n_samples):
        if dequantizer is None:
            y = uniform_dequantize(x_int, n_bins, generator=generator, dtype=dtype)
            value = flow.log_prob(y)
        else:
            u, log_q = dequantizer.sample(x_int, generator=generator)
            value = flow.log_prob(_into_cells(x_int, u.to(dtype), n_bins)) - log_q.to(dtype)
        total = value if total is None else total + value
    return total / n_samples - D * math.log(n_bins)


def dequantized_bits_per_dim(flow: nn.Module, x_int: Tensor, n_bins: int, **kwargs) -> Tensor:
    """Upper bound on the discrete bits per dimension, per example (batch,):
    ``-dequantized_log_likelihood / (D log 2)``. The offset is already in the bound, so
    this calls ``bits_per_dim(ll, D, n_bins=1)``: equal to ``bits_per_dim(log p_flow(y), D,
    n_bins)`` on the continuous log-density (for uniform dequantization)."""
    ll = dequantized_log_likelihood(flow, x_int, n_bins, **kwargs)
    return bits_per_dim(ll, x_int[0].numel(), n_bins=1)


class VariationalDequantizer(nn.Module):
    """Variational dequantization (Flow++, Ho, Chen, Srinivas, Duan & Abbeel 2019): a learned
    conditional noise distribution ``q(u | x)`` on ``(0, 1)^D`` in place of the uniform one,

        u = sigmoid(mu(x) + sigma(x) * eps),  eps ~ N(0, I),
        log q(u | x) = sum [log N(eps) - log sigma(x) - log sigmoid'(v)],  v = mu + sigma * eps,

    i.e. a conditional diagonal Gaussian pushed through a sigmoid (a one-layer conditional
    flow). ``(mu, log sigma)`` come from a conditioner reading ``x / (n_bins - 1) - 0.5``
    (:class:`~flowlib.flows.coupling.ConvConditioner` for image shapes ``(C, H, W)``,
    :class:`~flowlib.flows.coupling.MLPConditioner` for ``(D,)``), last layer zero-initialised;
    ``log sigma`` is soft-clamped to ``(-bound, bound)``. Use it through
    ``dequantized_log_likelihood(flow, x, n_bins, dequantizer=...)`` and maximise the bound
    over the flow and the dequantizer together; the bound is tight when q(u|x) equals the
    flow's density restricted to the cell of x.
    """

    def __init__(self, shape: Sequence[int], n_bins: int, hidden: int = 32, log_sigma_bound: float = 4.0):
        super().__init__()
        from .coupling import ConvConditioner, MLPConditioner

        shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
        if len(shape) not in (1, 3) or min(shape) < 1:
            raise ValueError(f"VariationalDequantizer: shape must be (D,) or (C, H, W), got {shape}")
        if not isinstance(n_bins, int) or n_bins < 2:
            raise ValueError(f"VariationalDequantizer: n_bins must be an int >= 2, got {n_bins!r}")
        self.shape, self.n_bins, self.bound = shape, n_bins, float(log_sigma_bound)
        if len(shape) == 1:
            self.conditioner = MLPConditioner(shape[0], (hidden, hidden), 2 * shape[0])
        else:
            self.conditioner = ConvConditioner(shape[0], hidden, 2 * shape[0])

    def _params(self, x_int: Tensor) -> tuple[Tensor, Tensor]:
        check_discrete(x_int, self.n_bins, "VariationalDequantizer")
        if tuple(x_int.shape[1:]) != self.shape:
            raise ValueError(f"VariationalDequantizer: expected shape (batch, {self.shape}), got {tuple(x_int.shape)}")
        dtype = _float_dtype(self)
        h = x_int.to(dtype) / (self.n_bins - 1) - 0.5
        mu, raw = self.conditioner(h).chunk(2, dim=1)
        return mu, self.bound * torch.tanh(raw / self.bound)

    def sample(self, x_int: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Reparameterised ``u ~ q(u | x)`` in ``(0, 1)^D`` and ``log q(u | x)`` (batch,)."""
        mu, log_sigma = self._params(x_int)
        gen_device = generator.device if generator is not None else mu.device
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=gen_device).to(mu.device)
        v = mu + torch.exp(log_sigma) * eps
        log_q = -0.5 * eps**2 - 0.5 * math.log(2 * math.pi) - log_sigma - F.logsigmoid(v) - F.logsigmoid(-v)
        u = torch.sigmoid(v).clamp(0, 1 - torch.finfo(v.dtype).eps)
        return u, sum_except_batch(log_q)

    def log_prob(self, u: Tensor, x_int: Tensor) -> Tensor:
        """``log q(u | x)`` for ``u`` in ``(0, 1)^D``, shape (batch,)."""
        mu, log_sigma = self._params(x_int)
        v = torch.logit(u.to(mu.dtype))
        eps = (v - mu) * torch.exp(-log_sigma)
        log_q = -0.5 * eps**2 - 0.5 * math.log(2 * math.pi) - log_sigma - F.logsigmoid(v) - F.logsigmoid(-v)
        return sum_except_batch(log_q)


def histogram_baseline_bpd(train: Tensor, test: Tensor, n_bins: int, pseudocount: float = 1.0) -> float:
    """Bits per dimension on ``test`` of the simplest discrete model: every pixel an
    independent categorical over ``n_bins`` levels, fitted on ``train`` with Laplace
    (add-``pseudocount``) smoothing, ``P_d(k) = (count_d(k) + 1) / (N + n_bins)``. A flow
    worth its parameters should beat it; ``log2(n_bins)`` is the uniform model's value."""
    check_discrete(train, n_bins, "histogram_baseline_bpd")
    check_discrete(test, n_bins, "histogram_baseline_bpd")
    if train.shape[1:] != test.shape[1:]:
        raise ValueError(f"histogram_baseline_bpd: train {tuple(train.shape)} and test {tuple(test.shape)} differ in event shape")
    if not pseudocount > 0:
        raise ValueError(f"histogram_baseline_bpd: pseudocount must be positive, got {pseudocount!r}")
    tr = train.reshape(train.shape[0], -1).long().cpu()
    te = test.reshape(test.shape[0], -1).long().cpu()
    D = tr.shape[1]
    counts = torch.zeros(n_bins, D, dtype=torch.float64)
    counts.scatter_add_(0, tr, torch.ones_like(tr, dtype=torch.float64))
    log_p = torch.log(counts + pseudocount) - math.log(tr.shape[0] + n_bins * pseudocount)
    ll = log_p.gather(0, te).sum(dim=1)  # (N_test,) nats
    return bits_per_dim(ll, D, n_bins=1).mean().item()
