"""Base distributions for flows. Parameters live in buffers so ``.to(device)`` moves them.

Each has ``log_prob(z) -> (batch,)``, summing over the event dimensions, and
``sample(n) -> (n, *event_shape)``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .core import sum_except_batch


class _Base(nn.Module):
    def __init__(self, event_shape):
        super().__init__()
        if isinstance(event_shape, int):
            event_shape = (event_shape,)
        self.event_shape = torch.Size(event_shape)
        self.register_buffer("_anchor", torch.zeros(()))  # carries device and dtype

    def _check(self, z: Tensor) -> None:
        if tuple(z.shape[1:]) != tuple(self.event_shape):
            raise ValueError(
                f"{type(self).__name__}: expected a batch of shape (batch, {', '.join(map(str, self.event_shape))}), "
                f"got {tuple(z.shape)}"
            )


class StandardNormal(_Base):
    """N(0, I) on ``event_shape``: log p(z) = -||z||^2/2 - (D/2) log(2 pi)."""

    def log_prob(self, z: Tensor) -> Tensor:
        self._check(z)
        return sum_except_batch(-0.5 * z**2 - 0.5 * math.log(2 * math.pi))

    def sample(self, n: int) -> Tensor:
        a = self._anchor
        return torch.randn((n, *self.event_shape), device=a.device, dtype=a.dtype)


class BoxUniform(_Base):
    """Uniform on the box [low, high]^D (default the unit cube): log p = -sum log(high - low)
    inside, -inf outside."""

    def __init__(self, event_shape, low: float = 0.0, high: float = 1.0):
        super().__init__(event_shape)
        if not high > low:
            raise ValueError(f"BoxUniform needs high > low, got low={low}, high={high}")
        self.low, self.high = float(low), float(high)

    def log_prob(self, z: Tensor) -> Tensor:
        self._check(z)
        inside = ((z >= self.low) & (z <= self.high)).reshape(z.shape[0], -1).all(dim=1)
        value = -self.event_shape.numel() * math.log(self.high - self.low)
        return torch.where(inside, torch.full_like(inside, value, dtype=z.dtype), torch.full_like(inside, -math.inf, dtype=z.dtype))

    def sample(self, n: int) -> Tensor:
        a = self._anchor
        u = torch.rand((n, *self.event_shape), device=a.device, dtype=a.dtype)
        return self.low + (self.high - self.low) * u


class Beta(_Base):
    """Independent Beta(a, b) on (0, 1)^D, e.g. Beta(5, 5) as a bell-shaped base on the unit
    interval: log p(z) = (a-1) log z + (b-1) log(1-z) - log B(a, b)."""

    def __init__(self, event_shape, a: float = 5.0, b: float = 5.0):
        super().__init__(event_shape)
        if a <= 0 or b <= 0:
            raise ValueError(f"Beta needs a > 0 and b > 0, got a={a}, b={b}")
        self.a, self.b = float(a), float(b)
        self.log_beta_fn = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)

    def log_prob(self, z: Tensor) -> Tensor:
        self._check(z)
        inside = (z > 0) & (z < 1)
        zc = z.clamp(torch.finfo(z.dtype).tiny, 1 - torch.finfo(z.dtype).eps)
        lp = (self.a - 1) * torch.log(zc) + (self.b - 1) * torch.log1p(-zc) - self.log_beta_fn
        lp = torch.where(inside, lp, torch.full_like(lp, -math.inf))
        return sum_except_batch(lp)

    def sample(self, n: int) -> Tensor:
        a = self._anchor
        dist = torch.distributions.Beta(
            torch.tensor(self.a, device=a.device, dtype=a.dtype), torch.tensor(self.b, device=a.device, dtype=a.dtype)
        )
        return dist.sample((n, *self.event_shape))
