"""Planar flows (Rezende & Mohamed 2015, "Variational Inference with Normalizing Flows").

A planar layer bends space along one hyperplane:

    f(z) = z + u_hat h(w^T z + b),    h = tanh,

and by the matrix determinant lemma its Jacobian ``I + h'(w^T z + b) u_hat w^T`` has

    log|det df/dz| = log|1 + h'(w^T z + b) u_hat^T w|,

an O(D) computation. ``f`` has no closed-form inverse, so planar flows are used in the
sampling direction (noise -> data), as in variational inference where the loss only needs
samples and their density (reverse KL, see :func:`flowlib.flows.energies.reverse_kl_loss`).

How this maps onto flowlib's convention (``forward`` is data -> noise):

* ``Planar.inverse(z) -> (x, ladj)`` *is* the planar map ``x = f(z)`` (noise -> data, one
  cheap pass) with ``ladj = log|det df/dz|``;
* ``Planar.forward(x)`` would need ``f^{-1}``, which has no closed form, so it raises
  :class:`NotImplementedError`. Consequently ``Flow.log_prob(x)`` of an arbitrary ``x`` is not
  available; ``Flow.sample`` and ``Flow.sample_and_log_prob`` are.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import Bijection, Compose, Flow
from ..distributions import StandardNormal

__all__ = ["Planar", "planar_flow"]


class Planar(Bijection):
    """Planar layer ``x = f(z) = z + u_hat tanh(w^T z + b)`` (Rezende & Mohamed 2015).

    Invertibility: with ``h = tanh`` (so ``0 < h' <= 1``) the map is invertible iff
    ``w^T u >= -1``. With ``constrain=True`` (the default) the free vector ``u`` is replaced by
    the paper's appendix reparameterisation

        u_hat = u + (m(w^T u) - w^T u) w / ||w||^2,    m(a) = -1 + softplus(a),

    which projects ``u`` along ``w`` so that ``w^T u_hat = m(w^T u) > -1`` for *every* ``u``.
    ``constrain=False`` uses ``u`` as is: only for teaching, to show that the layer then folds
    space (``w^T u < -1`` gives a non-monotone map along ``w``).

    Directions (flowlib: ``forward`` is data -> noise):
    ``inverse(z)`` is the planar map itself, noise -> data, one cheap O(D) pass, returning
    ``ladj = log|1 + h'(w^T z + b) u_hat^T w|``. ``forward`` has no closed form and raises
    :class:`NotImplementedError`.
    """

    def __init__(self, dim: int, constrain: bool = True, init_scale: float = 0.1, generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"Planar: dim must be a positive int, got {dim!r}")
        self.dim = dim
        self.constrain = bool(constrain)
        std = init_scale / math.sqrt(dim)
        self.w = nn.Parameter(torch.randn(dim, generator=generator) * std)
        self.u = nn.Parameter(torch.randn(dim, generator=generator) * std)
        self.b = nn.Parameter(torch.zeros(()))

    def u_hat(self) -> Tensor:
        """The vector actually used by the layer: constrained so that ``w^T u_hat > -1``."""
        if not self.constrain:
            return self.u
        wu = self.w @ self.u
        m = -1.0 + F.softplus(wu)
        # ||w||^2 floored: if w = 0 the correction term vanishes (u_hat = u) instead of 0/0.
        w_sq = (self.w @ self.w).clamp_min(torch.finfo(self.w.dtype).tiny)
        return self.u + (m - wu) * self.w / w_sq

    def _check(self, t: Tensor) -> None:
        if t.dim() != 2 or t.shape[1] != self.dim:
            raise ValueError(f"Planar: expected a batch of shape (batch, {self.dim}), got {tuple(t.shape)}")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError(
            "Planar.forward (data -> noise) would need the inverse of the planar map "
            "f(z) = z + u_hat tanh(w^T z + b), which has no closed form. The planar map is "
            "Planar.inverse (noise -> data, with log|det df/dz|); use Flow.sample or "
            "Flow.sample_and_log_prob (e.g. with flowlib.flows.energies.reverse_kl_loss), not Flow.log_prob."
        )

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z)
        u_hat = self.u_hat()
        a = z @ self.w + self.b  # (batch,)
        h = torch.tanh(a)
        x = z + h[:, None] * u_hat
        h_prime = 1.0 - h**2
        ladj = torch.log(torch.abs(1.0 + h_prime * (u_hat @ self.w)))
        return x, ladj


def planar_flow(dim: int, K: int, constrain: bool = True, init_scale: float = 0.1, generator: torch.Generator | None = None) -> Flow:
    """A stack of ``K`` planar layers on a standard-normal base, ``x = f_K o ... o f_1(z)``.

    Use it in the sampling direction: ``flow.sample(n)`` or ``flow.sample_and_log_prob(n)``
    (``log q(x) = log N(z) - sum_k log|det df_k/dz_k|``); ``flow.log_prob(x)`` raises because
    the planar map has no closed-form inverse.
    """
    if not isinstance(K, int) or K < 1:
        raise ValueError(f"planar_flow: K must be a positive int, got {K!r}")
    layers = [Planar(dim, constrain=constrain, init_scale=init_scale, generator=generator) for _ in range(K)]
    # Compose.inverse runs its bijections in reverse order, so sampling applies layers[0] last.
    return Flow(StandardNormal(dim), Compose(*layers))
