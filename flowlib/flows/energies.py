"""The four 2-D test energies of Rezende & Mohamed 2015 (Table 1) and the reverse-KL loss.

Each target is an unnormalised density ``p~(z) = exp(-U(z))`` on R^2. The functions here
return the *log*-density ``-U(z)`` for ``z`` of shape ``(batch, 2)``, in ``z``'s dtype and on
its device, computed with ``logsumexp`` so the two-mode terms never underflow. With

    w1(z) = sin(2 pi z1 / 4),   w2(z) = 3 exp(-((z1 - 1) / 0.6)^2 / 2),
    w3(z) = 3 sigma((z1 - 1) / 0.3),

the energies are

    U1(z) = ((||z|| - 2) / 0.4)^2 / 2 - log(exp(-((z1 - 2) / 0.6)^2 / 2) + exp(-((z1 + 2) / 0.6)^2 / 2))
    U2(z) = ((z2 - w1) / 0.4)^2 / 2
    U3(z) = -log(exp(-((z2 - w1) / 0.35)^2 / 2) + exp(-((z2 - w1 + w2) / 0.35)^2 / 2))
    U4(z) = -log(exp(-((z2 - w1) / 0.4)^2 / 2) + exp(-((z2 - w1 + w3) / 0.35)^2 / 2))

U2..U4 are not integrable in z1 on all of R^2 (they do not decay in z1); as in the paper they
are meant on the box [-4, 4]^2 that the figures show.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

__all__ = ["u1", "u2", "u3", "u4", "TEST_ENERGIES", "reverse_kl_loss"]


def _split(z: Tensor, name: str) -> tuple[Tensor, Tensor]:
    if z.dim() != 2 or z.shape[1] != 2:
        raise ValueError(f"{name}: expected z of shape (batch, 2), got {tuple(z.shape)}")
    return z[:, 0], z[:, 1]


def _w1(z1: Tensor) -> Tensor:
    return torch.sin(2 * math.pi * z1 / 4)


def _w2(z1: Tensor) -> Tensor:
    return 3 * torch.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)


def _w3(z1: Tensor) -> Tensor:
    return 3 * torch.sigmoid((z1 - 1) / 0.3)


def _log_two_bumps(a: Tensor, b: Tensor) -> Tensor:
    """log(exp(-a^2/2) + exp(-b^2/2)), stable for large |a|, |b|."""
    return torch.logaddexp(-0.5 * a**2, -0.5 * b**2)


def u1(z: Tensor) -> Tensor:
    """``-U1(z)``: a ring of radius 2 cut into two arcs (modes at z1 = +-2)."""
    z1, _ = _split(z, "u1")
    ring = 0.5 * ((torch.linalg.vector_norm(z, dim=1) - 2) / 0.4) ** 2
    return -ring + _log_two_bumps((z1 - 2) / 0.6, (z1 + 2) / 0.6)


def u2(z: Tensor) -> Tensor:
    """``-U2(z)``: a sine-shaped ridge ``z2 = w1(z1)``."""
    z1, z2 = _split(z, "u2")
    return -0.5 * ((z2 - _w1(z1)) / 0.4) ** 2


def u3(z: Tensor) -> Tensor:
    """``-U3(z)``: the sine ridge plus a second ridge pulled down by a bump near z1 = 1."""
    z1, z2 = _split(z, "u3")
    w1 = _w1(z1)
    return _log_two_bumps((z2 - w1) / 0.35, (z2 - w1 + _w2(z1)) / 0.35)


def u4(z: Tensor) -> Tensor:
    """``-U4(z)``: the sine ridge plus a second ridge shifted by a sigmoid step in z1."""
    z1, z2 = _split(z, "u4")
    w1 = _w1(z1)
    return _log_two_bumps((z2 - w1) / 0.4, (z2 - w1 + _w3(z1)) / 0.35)


TEST_ENERGIES: dict[str, Callable[[Tensor], Tensor]] = {"U1": u1, "U2": u2, "U3": u3, "U4": u4}
"""Name -> log-density ``-U(z)`` of the four targets, in the paper's order."""


def reverse_kl_loss(flow, log_target: Callable[[Tensor], Tensor], n: int) -> Tensor:
    """Monte-Carlo reverse KL up to the target's unknown normaliser:

        E_{x ~ q}[log q(x) - log p~(x)] = KL(q || p) - log Z,

    estimated from ``n`` reparameterised samples of ``flow.sample_and_log_prob(n)`` (so the
    gradient flows through the samples). When ``p~`` is integrable it is bounded below by
    ``-log Z``; U2-U4 do not decay along the first axis, so for them Z (and the bound) exist
    only on a bounded box. It needs only the flow's sampling direction, which is why planar flows can be trained with it. With
    :func:`flowlib.fit`: ``fit(flow, None, loss=lambda m, _: reverse_kl_loss(m, u1, 256))``.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"reverse_kl_loss: n must be a positive int, got {n!r}")
    x, log_q = flow.sample_and_log_prob(n)
    log_p = log_target(x)
    if log_p.shape != log_q.shape:
        raise ValueError(f"reverse_kl_loss: log_target must return shape {tuple(log_q.shape)}, got {tuple(log_p.shape)}")
    return (log_q - log_p).mean()
