"""2-D toy datasets for density estimation, as functions returning tensors.

Every sampler takes ``n``, a ``torch.Generator`` (the same generator state gives the same
points; ``None`` uses torch's global generator) and optional ``dtype``/``device``; it returns
an ``(n, 2)`` tensor. Where the density is known in closed form there is a matching
``*_log_prob(x)`` (exact, normalised, in ``x``'s dtype and on its device), so a fitted
model's KL to the truth, ``E_data[log p(x) - log q(x)]``, can be measured and not just eyeballed.

* :func:`ring_of_gaussians` / :func:`ring_of_gaussians_log_prob`: k Gaussians on a circle;
* :func:`checkerboard` / :func:`checkerboard_log_prob`: uniform on the dark cells of a board;
* :func:`two_moons`: scikit-learn's ``make_moons`` (no closed-form density);
* :func:`glyph` / :func:`glyph_log_prob`: uniform on the dark pixels of a character or a
  smiley face rendered offline with matplotlib (Agg canvas in memory, no files).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ring_of_gaussians",
    "ring_of_gaussians_log_prob",
    "checkerboard",
    "checkerboard_log_prob",
    "two_moons",
    "glyph",
    "glyph_log_prob",
    "glyph_mask",
]


def _check_n(n, name: str) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{name}: n must be a positive int, got {n!r}")


def _check_points(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected points of shape (batch, 2), got {shape}")


def _finish(x: Tensor, dtype, device) -> Tensor:
    return x.to(device=device, dtype=dtype or torch.get_default_dtype())


# --------------------------------------------------------------------------- ring of Gaussians
def _ring_centres(k: int, radius: float, dtype, device) -> Tensor:
    angles = 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
    return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).to(device=device, dtype=dtype)


def _check_ring(k, radius, std, name):
    if not isinstance(k, int) or k < 1 or not radius >= 0 or not std > 0:
        raise ValueError(f"{name}: need an int k >= 1, radius >= 0 and std > 0, got k={k!r}, radius={radius!r}, std={std!r}")


def ring_of_gaussians(n: int, k: int = 8, radius: float = 2.0, std: float = 0.2, generator: torch.Generator | None = None,
                      dtype: torch.dtype | None = None, device=None) -> Tensor:
    """``n`` points from an equal-weight mixture of ``k`` isotropic Gaussians N(c_i, std^2 I)
    with centres ``c_i = radius (cos 2 pi i/k, sin 2 pi i/k)``."""
    _check_n(n, "ring_of_gaussians")
    _check_ring(k, radius, std, "ring_of_gaussians")
    comp = torch.randint(k, (n,), generator=generator)
    noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    x = _ring_centres(k, radius, torch.float64, "cpu")[comp] + std * noise
    return _finish(x, dtype, device)


def ring_of_gaussians_log_prob(x: Tensor, k: int = 8, radius: float = 2.0, std: float = 0.2) -> Tensor:
    """Exact log-density of :func:`ring_of_gaussians`:
    ``log p(x) = logsumexp_i [-||x - c_i||^2 / (2 std^2)] - log k - log(2 pi std^2)``."""
    _check_points(x, "ring_of_gaussians_log_prob")
    _check_ring(k, radius, std, "ring_of_gaussians_log_prob")
    c = _ring_centres(k, radius, x.dtype, x.device)
    sq = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    return torch.logsumexp(-0.5 * sq / std**2, dim=1) - math.log(k) - math.log(2 * math.pi * std**2)


# --------------------------------------------------------------------------- checkerboard
def _check_board(cells, half_width, name):
    if not isinstance(cells, int) or cells < 2 or cells % 2 or not half_width > 0:
        raise ValueError(f"{name}: need an even int cells >= 2 and half_width > 0, got cells={cells!r}, half_width={half_width!r}")


def checkerboard(n: int, generator: torch.Generator | None = None, cells: int = 4, half_width: float = 2.0,
                 dtype: torch.dtype | None = None, device=None) -> Tensor:
    """``n`` points uniform on the dark cells of a ``cells x cells`` board covering
    ``[-half_width, half_width]^2``; cell (i, j) (column i, row j, counted from the lower
    left) is dark when ``i + j`` is even, so half of the board carries all the mass."""
    _check_n(n, "checkerboard")
    _check_board(cells, half_width, "checkerboard")
    h = 2 * half_width / cells
    i = torch.randint(cells, (n,), generator=generator)
    j = 2 * torch.randint(cells // 2, (n,), generator=generator) + (i % 2)  # same parity as i
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    x = -half_width + h * (torch.stack([i, j], dim=1).double() + u)
    return _finish(x, dtype, device)


def checkerboard_log_prob(x: Tensor, cells: int = 4, half_width: float = 2.0) -> Tensor:
    """Exact log-density of :func:`checkerboard`: ``-log(area of the dark cells)`` on them
    (``-log(2 half_width^2)``), ``-inf`` elsewhere."""
    _check_points(x, "checkerboard_log_prob")
    _check_board(cells, half_width, "checkerboard_log_prob")
    h = 2 * half_width / cells
    idx = torch.floor((x + half_width) / h)
    inside = ((idx >= 0) & (idx < cells)).all(dim=1)
    dark = inside & ((idx[:, 0] + idx[:, 1]) % 2 == 0)
    value = -math.log(2 * half_width**2)
    return torch.where(dark, torch.full_like(x[:, 0], value), torch.full_like(x[:, 0], -math.inf))


# --------------------------------------------------------------------------- two moons
def two_moons(n: int, noise: float = 0.1, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
              device=None) -> Tensor:
    """``n`` points of scikit-learn's ``make_moons`` (two interleaved half circles with
    Gaussian noise of std ``noise``), shuffled; the sklearn seed is drawn from ``generator``.
    No closed-form density."""
    _check_n(n, "two_moons")
    if not noise >= 0:
        raise ValueError(f"two_moons: noise must be >= 0, got {noise!r}")
    from sklearn.datasets import make_moons

    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    x, _ = make_moons(n_samples=n, noise=noise, random_state=seed)
    return _finish(torch.from_numpy(np.ascontiguousarray(x)), dtype, device)


# --------------------------------------------------------------------------- glyph
@functools.lru_cache(maxsize=16)
def _render(shape: str, resolution: int) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Arc, Circle

    fig = Figure(figsize=(1, 1), dpi=resolution, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    ax.set_axis_off()
    if shape == "smiley":
        lw = 7.0  # points; the figure is 72 points wide
        ax.add_patch(Circle((0, 0), 0.85, fill=False, linewidth=lw, edgecolor="black"))
        for cx in (-0.32, 0.32):
            ax.add_patch(Circle((cx, 0.25), 0.13, facecolor="black", edgecolor="none"))
        ax.add_patch(Arc((0, -0.05), 1.1, 0.9, theta1=200, theta2=340, linewidth=lw, edgecolor="black"))
    else:
        ax.text(0, 0, shape, ha="center", va="center_baseline", fontsize=62, fontweight="bold",
                family="DejaVu Sans", color="black")
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return rgba[..., :3].mean(axis=-1) < 128  # rows top to bottom


def glyph_mask(shape: str = "F", resolution: int = 64) -> np.ndarray:
    """The ``(resolution, resolution)`` boolean image of the glyph (rows top to bottom):
    a single character in bold DejaVu Sans, or ``"smiley"`` for a face drawn with patches."""
    if not isinstance(shape, str) or not (shape == "smiley" or len(shape) == 1) or shape.isspace():
        raise ValueError(f"glyph: shape must be one visible character or 'smiley', got {shape!r}")
    if not isinstance(resolution, int) or resolution < 8:
        raise ValueError(f"glyph: resolution must be an int >= 8, got {resolution!r}")
    mask = _render(shape, resolution)
    if not mask.any():
        raise ValueError(f"glyph: {shape!r} rendered no dark pixels")
    return mask.copy()


def glyph(n: int, shape: str = "F", generator: torch.Generator | None = None, resolution: int = 64,
          half_width: float = 2.0, dtype: torch.dtype | None = None, device=None) -> Tensor:
    """``n`` points uniform on the dark pixels of :func:`glyph_mask` mapped onto
    ``[-half_width, half_width]^2``: a dark pixel is drawn uniformly, then the point is
    jittered uniformly inside that pixel (so the density is exactly piecewise constant; see
    :func:`glyph_log_prob`)."""
    _check_n(n, "glyph")
    mask = torch.from_numpy(glyph_mask(shape, resolution))
    rows, cols = torch.nonzero(mask, as_tuple=True)
    pick = torch.randint(rows.numel(), (n,), generator=generator)
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    h = 2 * half_width / resolution
    x1 = -half_width + h * (cols[pick].double() + u[:, 0])
    x2 = half_width - h * (rows[pick].double() + u[:, 1])
    return _finish(torch.stack([x1, x2], dim=1), dtype, device)


def glyph_log_prob(x: Tensor, shape: str = "F", resolution: int = 64, half_width: float = 2.0) -> Tensor:
    """Exact log-density of :func:`glyph`: ``-log(n_dark h^2)`` on dark pixels (pixel side
    ``h = 2 half_width / resolution``), ``-inf`` elsewhere."""
    _check_points(x, "glyph_log_prob")
    mask = torch.from_numpy(glyph_mask(shape, resolution)).to(x.device)
    h = 2 * half_width / resolution
    col = torch.floor((x[:, 0] + half_width) / h)
    row = torch.floor((half_width - x[:, 1]) / h)
    inside = (col >= 0) & (col < resolution) & (row >= 0) & (row < resolution)
    r = row.clamp(0, resolution - 1).long()
    c = col.clamp(0, resolution - 1).long()
    dark = inside & mask[r, c]
    value = -math.log(int(mask.sum()) * h * h)
    return torch.where(dark, torch.full_like(x[:, 0], value), torch.full_like(x[:, 0], -math.inf))


# --------------------------------------------------------------------------- 8x8 digits (discrete images)
DIGITS_N_BINS = 17  # grey levels 0..16 of scikit-learn's load_digits


def load_digits_split(seed: int = 0, test_fraction: float = 0.2) -> tuple[Tensor, Tensor]:
    """scikit-learn's 8x8 handwritten digits (1797 images, grey levels ``0..16``, shipped with
    scikit-learn, no download) as ``int64`` tensors ``(N, 1, 8, 8)``, split into
    ``(train, test)`` by a fixed random permutation (``torch.Generator`` seeded with ``seed``;
    the same seed gives the same split). ``round(1797 * test_fraction)`` images go to test.
    The number of levels is :data:`DIGITS_N_BINS` ``= 17``."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"load_digits_split: test_fraction must lie in (0, 1), got {test_fraction!r}")
    from sklearn.datasets import load_digits

    images = torch.from_numpy(np.ascontiguousarray(load_digits().images)).round().long()[:, None]
    n = images.shape[0]
    n_test = int(round(n * test_fraction))
    if not 0 < n_test < n:
        raise ValueError(f"load_digits_split: test_fraction={test_fraction} leaves an empty split")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return images[perm[n_test:]].clone(), images[perm[:n_test]].clone()


__all__ += ["DIGITS_N_BINS", "load_digits_split"]
