"""Score matching and Langevin sampling: learn s(x) ~ grad log p(x), then sample with it.

Conventions used by every function here:

* tensors have shape ``(batch, *dims)``; losses average over the batch and sum over dims;
* an *unconditional* score is called ``score_fn(x)``;
* a *noise-conditional* score (``dsm_loss``, ``annealed_langevin``, :class:`ScoreMLP`) is
  called ``score_fn(x, sigma)`` with ``sigma`` a tensor of shape ``(batch,)``, one noise level
  per sample. Wrap an unconditional score as ``lambda x, sigma: f(x)``.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from .gmm import _randn


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)


def _check_batch(x: Tensor, name: str = "x") -> None:
    if not isinstance(x, Tensor) or x.dim() < 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a tensor of shape (batch, *dims), got {shape}")


def _check_score(s: Tensor, x: Tensor) -> Tensor:
    if not isinstance(s, Tensor) or s.shape != x.shape:
        shape = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
        raise ValueError(f"score_fn must return a tensor shaped like its input {tuple(x.shape)}, got {shape}")
    return s


def _noise_levels(sigma, x: Tensor) -> Tensor:
    """A positive scalar or (batch,) noise level as a (batch,) tensor like x."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.dim() == 0:
        s = s.expand(x.shape[0])
    if s.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or have shape (batch,) = ({x.shape[0]},), got {tuple(s.shape)}")
    if not bool((s > 0).all()):
        raise ValueError("sigma must be > 0")
    return s


def _rademacher(shape, like: Tensor, generator: torch.Generator | None) -> Tensor:
    dev = generator.device if generator is not None else like.device
    v = torch.randint(0, 2, shape, generator=generator, device=dev).to(device=like.device, dtype=like.dtype)
    return 2 * v - 1


def _expand(v: Tensor, x: Tensor) -> Tensor:
    """(batch,) -> (batch, 1, ..., 1) to broadcast against x."""
    return v.reshape(-1, *([1] * (x.dim() - 1)))


def jacobian_trace(fn: Callable[[Tensor], Tensor], x: Tensor, create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """(fn(x), tr(d fn / dx)) per sample, exactly: one backward pass per input dimension.

    Uses that sample b's output depends on sample b's input only, so the gradient of the
    batch sum of output i holds every sample's diagonal entry i."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = fn(x)
        out_flat = _flat(out)
        trace = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for i in range(out_flat.shape[1]):
            (g,) = torch.autograd.grad(out_flat[:, i].sum(), x, create_graph=create_graph, retain_graph=True)
            trace = trace + _flat(g)[:, i]
    return out, trace


def esm_loss(score_fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Implicit score matching (Hyvarinen 2005) with the exact Jacobian trace ("esm": exact):

        J(s) = E_p[ tr(grad_x s(x)) + 0.5 ||s(x)||^2 ].

    By integration by parts it equals the explicit score matching objective (the Fisher
    divergence with the true score) 0.5 E_p||s - grad log p||^2 up to a constant; "implicit"
    because the true score no longer appears. The trace is exact: D backward passes, kept
    in the graph so the loss can be trained."""
    _check_batch(x)
    s, trace = jacobian_trace(score_fn, x, create_graph=True)
    _check_score(s, x)
    return (trace + 0.5 * _flat(s).pow(2).sum(1)).mean()


def ssm_loss(
    score_fn: Callable[[Tensor], Tensor],
    x: Tensor,
    n_projections: int = 1,
    dist: str = "rademacher",
    variance_reduced: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sliced score matching, Song et al. 2019: project onto random directions v, E[v v^T] = I,

        J(s) = E_{p, v}[ v^T (grad_x s) v + 0.5 (v^T s)^2 ],

    one Jacobian-vector product per projection instead of D. ``variance_reduced`` replaces
    0.5 (v^T s)^2 by its expectation over v, 0.5 ||s||^2 (SSM-VR). Same expectation as
    :func:`esm_loss`."""
    _check_batch(x)
    if n_projections < 1:
        raise ValueError(f"n_projections must be >= 1, got {n_projections}")
    if dist not in ("rademacher", "gaussian"):
        raise ValueError(f"dist must be 'rademacher' or 'gaussian', got {dist!r}")
    xr = x.detach().repeat(n_projections, *([1] * (x.dim() - 1))).requires_grad_(True)
    v = _rademacher(xr.shape, xr, generator) if dist == "rademacher" else _randn(xr.shape, xr, generator)
    with torch.enable_grad():
        s = _check_score(score_fn(xr), xr)
        vs = _flat(v * s).sum(1)
        (gv,) = torch.autograd.grad(vs.sum(), xr, create_graph=True)
    vjv = _flat(gv * v).sum(1)
    square = 0.5 * _flat(s).pow(2).sum(1) if variance_reduced else 0.5 * vs**2
    return (vjv + square).mean()


def dsm_loss(
    score_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    sigma,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Denoising score matching, Vincent 2011, with Song & Ermon 2019's weight lambda = sigma^2.

    With x_noisy = x + sigma z the target is grad log q(x_noisy | x) = -(x_noisy - x)/sigma^2
    = -z/sigma, so the loss is

        0.5 E[ sigma^2 ||s(x_noisy, sigma) + z/sigma||^2 ] = 0.5 E||sigma s(x_noisy, sigma) + z||^2.

    Its minimiser is the score of p convolved with N(0, sigma^2 I). ``sigma`` is a positive
    scalar or a (batch,) tensor; ``score_fn(x_noisy, sigma)`` always gets sigma as (batch,)."""
    _check_batch(x)
    sig = _noise_levels(sigma, x)
    z = _randn(x.shape, x, generator)
    s_b = _expand(sig, x)
    x_noisy = x + s_b * z
    s = _check_score(score_fn(x_noisy, sig), x)
    return 0.5 * _flat(s_b * s + z).pow(2).sum(1).mean()


def langevin(
    score_fn: Callable[[Tensor], Tensor],
    x0: Tensor,
    step_size: float,
    n_steps: int,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
):
    """Unadjusted Langevin dynamics (Roberts & Tweedie 1996; Welling & Teh 2011):

        x <- x + eps * s(x) + sqrt(2 eps) z,   z ~ N(0, I),

    which samples p as eps -> 0 and n_steps -> inf. Returns the final samples, or
    ``(x, trajectory)`` with trajectory of shape (n_steps + 1, batch, *dims)."""
    _check_batch(x0, "x0")
    if not step_size > 0 or n_steps < 0:
        raise ValueError(f"need step_size > 0 and n_steps >= 0, got {step_size}, {n_steps}")
    x = x0.detach()
    traj = [x]
    noise_scale = math.sqrt(2 * step_size)
    with torch.no_grad():
        for _ in range(n_steps):
            x = x + step_size * _check_score(score_fn(x), x) + noise_scale * _randn(x.shape, x, generator)
            if return_trajectory:
                traj.append(x)
    return (x, torch.stack(traj)) if return_trajectory else x


def geometric_sigmas(sigma_max: float, sigma_min: float, L: int, dtype: torch.dtype | None = None, device=None) -> Tensor:
    """L noise levels sigma_1 = sigma_max > ... > sigma_L = sigma_min with a constant ratio
    (Song & Ermon 2019), as a (L,) tensor."""
    if not (0 < sigma_min < sigma_max) or L < 2:
        raise ValueError(f"need 0 < sigma_min < sigma_max and L >= 2, got {sigma_min}, {sigma_max}, {L}")
    return torch.logspace(math.log10(sigma_max), math.log10(sigma_min), L, dtype=dtype, device=device)


def annealed_langevin(
    score_fn: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    sigmas,
    eps: float,
    T: int,
    generator: torch.Generator | None = None,
    denoise: bool = False,
    return_trajectory: bool = False,
):
    """Annealed Langevin dynamics, Song & Ermon 2019 Algorithm 1: for each sigma_i from
    largest to smallest run T Langevin steps on s(x, sigma_i) with step

        alpha_i = eps * sigma_i^2 / sigma_L^2,

    so the signal-to-noise ratio of each step is the same at every level. ``denoise`` adds the
    final Tweedie step x + sigma_L^2 s(x, sigma_L) (Jolicoeur-Martineau et al. 2021).
    Returns the samples, or ``(x, trajectory)`` with one entry per level (L + 1 entries)."""
    _check_batch(x0, "x0")
    sigmas = torch.as_tensor(sigmas, dtype=x0.dtype, device=x0.device)
    if sigmas.dim() != 1 or sigmas.numel() < 1 or not bool((sigmas > 0).all()):
        raise ValueError("sigmas must be a non-empty 1-D sequence of positive noise levels")
    if not eps > 0 or T < 1:
        raise ValueError(f"need eps > 0 and T >= 1, got eps={eps}, T={T}")
    x = x0.detach()
    traj = [x]
    sigma_L = sigmas[-1]
    with torch.no_grad():
        for sigma in sigmas:
            alpha = eps * sigma**2 / sigma_L**2
            level = sigma.expand(x.shape[0])
            for _ in range(T):
                s = _check_score(score_fn(x, level), x)
                x = x + alpha * s + (2 * alpha).sqrt() * _randn(x.shape, x, generator)
            if return_trajectory:
                traj.append(x)
        if denoise:
            x = x + sigma_L**2 * score_fn(x, sigma_L.expand(x.shape[0]))
    return (x, torch.stack(traj)) if return_trajectory else x


class ScoreMLP(nn.Module):
    """A small noise-conditional score network for vectors, ``forward(x, c) -> s``, x (batch, *dims).

    ``conditioning="sigma"``: c is the noise level sigma; the net sees log sigma and its output
    is divided by sigma, since the true score scales like 1/sigma (Song & Ermon 2020).
    ``conditioning="time"``: c is the diffusion time t in [0, 1] (Song et al. 2021).
    The scalar is embedded with fixed sinusoidal features and concatenated to x; c may be a
    scalar or a (batch,) tensor.
    """

    def __init__(self, dim: int, hidden: int = 128, n_layers: int = 3, n_freqs: int = 8, conditioning: str = "sigma"):
        super().__init__()
        if conditioning not in ("sigma", "time"):
            raise ValueError(f"conditioning must be 'sigma' or 'time', got {conditioning!r}")
        if dim < 1 or hidden < 1 or n_layers < 1 or n_freqs < 0:
            raise ValueError("ScoreMLP: dim, hidden and n_layers must be >= 1 and n_freqs >= 0")
        self.dim, self.conditioning = dim, conditioning
        self.register_buffer("freqs", (2.0 ** torch.arange(n_freqs, dtype=torch.get_default_dtype())) * math.pi / 8)
        layers: list[nn.Module] = []
        width = dim + 1 + 2 * n_freqs
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, c) -> Tensor:
        _check_batch(x)
        flat = _flat(x)
        if flat.shape[1] != self.dim:
            raise ValueError(f"ScoreMLP: expected {self.dim} features per sample, got {flat.shape[1]}")
        c = torch.as_tensor(c, dtype=x.dtype, device=x.device)
        c = c.expand(x.shape[0]) if c.dim() == 0 else c
        if c.shape != (x.shape[0],):
            raise ValueError(f"ScoreMLP: the conditioning must be a scalar or (batch,), got {tuple(c.shape)}")
        u = c.log() if self.conditioning == "sigma" else c
        ang = u[:, None] * self.freqs.to(x)
        h = self.net(torch.cat([flat, u[:, None], ang.sin(), ang.cos()], dim=1))
        if self.conditioning == "sigma":
            h = h / c[:, None]
        return h.reshape(x.shape)
