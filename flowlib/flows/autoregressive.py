"""Autoregressive flows: MADE, MAF, IAF, permutations and a 2-D autoregressive CDF flow.

An autoregressive map transforms dimension k using only the dimensions before it (in some
order), so its Jacobian is triangular and ``log|det|`` is a sum of D diagonal terms. Which
direction is cheap depends on what the conditioner reads:

* MAF (conditioner reads the data ``x``): density ``x -> z`` is one pass, sampling is D
  sequential passes;
* IAF (conditioner reads the noise ``z``): sampling is one pass, density of an arbitrary
  ``x`` is D passes.

"Order" convention used throughout (``MADE``, ``MAFLayer``,
:func:`flowlib.testing.check_autoregressive`): ``order`` lists the variable indices in the
order they are generated; ``order[0]`` depends on nothing, ``order[j]`` on
``order[0], ..., order[j-1]``. The *degree* of variable ``order[j]`` is ``j + 1``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ..core import Bijection, Compose, Flow, Inverse
from ..distributions import BoxUniform, StandardNormal
from .onedim import bisection_inverse, mixture_cdf

__all__ = [
    "MaskedLinear",
    "MADE",
    "MAFLayer",
    "IAF",
    "Permutation",
    "Reverse",
    "maf",
    "iaf",
    "AutoregressiveMixtureCDF2D",
    "mixture_cdf_flow_2d",
    "resolve_order",
]


def resolve_order(features: int, order=None, generator: torch.Generator | None = None) -> Tensor:
    """An autoregressive order as a ``long`` tensor permutation of ``range(features)``.

    ``order`` is ``None`` (natural order ``0, 1, ..., D-1``), ``"reversed"``, ``"random"``
    (``torch.randperm`` with ``generator``) or an explicit sequence of indices."""
    if not isinstance(features, int) or features < 1:
        raise ValueError(f"features must be a positive int, got {features!r}")
    if order is None:
        return torch.arange(features)
    if isinstance(order, str):
        if order == "random":
            return torch.randperm(features, generator=generator)
        if order == "reversed":
            return torch.arange(features - 1, -1, -1)
        raise ValueError(f"order must be None, 'random', 'reversed' or a permutation of range({features}), got {order!r}")
    t = torch.as_tensor(order)
    if t.dim() != 1 or t.is_floating_point() or t.numel() != features or not torch.equal(t.sort().values, torch.arange(features)):
        raise ValueError(f"order must be a permutation of range({features}), got {list(order) if t.dim() else order!r}")
    return t.long().clone()


class MaskedLinear(nn.Linear):
    """``y = x (W * M)^T + b``: a linear layer whose connections are cut by a fixed 0/1 mask."""

    def __init__(self, in_features: int, out_features: int, mask: Tensor):
        super().__init__(in_features, out_features)
        if mask.shape != (out_features, in_features):
            raise ValueError(f"mask must have shape ({out_features}, {in_features}), got {tuple(mask.shape)}")
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked autoencoder for distribution estimation (Germain et al. 2015).

    An MLP ``R^D -> R^{D x n_params}`` whose weights are masked so that every output
    parameter of dimension k depends only on inputs of smaller degree (the dimensions before
    k in ``order``). Degrees: input ``order[j]`` has degree ``j + 1``; hidden unit i of every
    layer has degree ``1 + (i mod (D - 1))`` (deterministic, so every degree is represented
    when the width is at least D - 1). Optional ``context`` inputs have degree 0; then hidden
    degrees run over ``i mod D`` (width at least D), so degree-0 units that read only the
    context carry it to every output, the first dimension's included. Masks: a hidden unit of degree d sees units of degree <= d; an output of
    degree d sees hidden units of degree < d (strict).

    Output layout: the result has shape ``(batch, D, n_params)`` and output unit
    ``k * n_params + p`` of the last layer is parameter p of dimension k; its mask is built
    from the degrees repeated *per dimension* (``repeat_interleave``), matching that reshape.
    Building the mask with the degrees tiled (``repeat``) but reshaping per dimension is the
    classic interleaving bug: parameter p of dimension k would then carry the mask of another
    dimension. ``tests/test_autoregressive.py`` guards against it.

    ``forward(x, context=None)`` is one network pass. ``generator`` only draws
    ``order='random'``; the weights use torch's global generator (seed it for repeatability).
    """

    def __init__(
        self,
        features: int,
        hidden: int | Sequence[int] = (64, 64),
        context: int = 0,
        order=None,
        n_params: int = 2,
        activation: Callable[[], nn.Module] = nn.ReLU,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
        if not hidden or any((not isinstance(h, int)) or h < 1 for h in hidden):
            raise ValueError(f"MADE: hidden must be a positive int or a non-empty sequence of them, got {hidden!r}")
        if not isinstance(context, int) or context < 0:
            raise ValueError(f"MADE: context must be a non-negative int, got {context!r}")
        if not isinstance(n_params, int) or n_params < 1:
            raise ValueError(f"MADE: n_params must be a positive int, got {n_params!r}")
        self.features, self.context, self.n_params = features, context, n_params
        order = resolve_order(features, order, generator)
        self.register_buffer("order", order)
        degrees = torch.empty(features, dtype=torch.long)
        degrees[order] = torch.arange(1, features + 1)
        self.register_buffer("degrees", degrees)

        in_degrees = torch.cat([torch.zeros(context, dtype=torch.long), degrees])
        layers: list[nn.Module] = []
        prev = in_degrees
        for width in hidden:
            if context:  # degrees 0..D-1: degree-0 units read only the context, for output order[0]
                deg = torch.arange(width) % features
            else:  # degrees 1..D-1 (a degree-0 unit would see no input at all)
                deg = torch.arange(width) % max(features - 1, 1) + 1
            layers += [MaskedLinear(len(prev), width, (deg[:, None] >= prev[None, :]).float()), activation()]
            prev = deg
        out_degrees = degrees.repeat_interleave(n_params)  # unit k * n_params + p -> dimension k
        self.output = MaskedLinear(len(prev), features * n_params, (out_degrees[:, None] > prev[None, :]).float())
        self.hidden_net = nn.Sequential(*layers)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.features:
            raise ValueError(f"MADE: expected x of shape (batch, {self.features}), got {tuple(x.shape)}")
        if self.context:
            if context is None or context.dim() != 2 or context.shape != (x.shape[0], self.context):
                got = None if context is None else tuple(context.shape)
                raise ValueError(f"MADE: expected context of shape ({x.shape[0]}, {self.context}), got {got}")
            x = torch.cat([context, x], dim=1)
        elif context is not None:
            raise ValueError("MADE: built with context=0 but a context was given")
        out = self.output(self.hidden_net(x))
        return out.reshape(x.shape[0], self.features, self.n_params)


def _soft_clamp(a: Tensor, bound: float | None) -> Tensor:
    """``bound * tanh(a / bound)``: identity near 0, smooth, and never beyond +-bound."""
    return a if bound is None else bound * torch.tanh(a / bound)


class MAFLayer(Bijection):
    """Masked autoregressive flow layer (Papamakarios et al. 2017), affine in each dimension:

        z_k = (x_k - mu_k(x_<k)) exp(-alpha_k(x_<k)),    log|det dz/dx| = -sum_k alpha_k,

    with ``(mu, alpha)`` from one :class:`MADE` pass over ``x`` ("before" in ``order``).

    forward (data -> noise, density) is one MADE pass. inverse (noise -> data, sampling),
    ``x_k = mu_k(x_<k) + z_k exp(alpha_k(x_<k))``, is D sequential MADE passes: after pass t
    the first t dimensions in the order are exact. ``alpha`` is soft-clamped to
    ``(-scale_bound, scale_bound)`` with ``scale_bound * tanh(. / scale_bound)``, and the
    MADE's last layer starts at zero, so a fresh layer is the identity.
    """

    def __init__(
        self,
        features: int,
        hidden: int | Sequence[int] = (64, 64),
        order=None,
        scale_bound: float | None = 3.0,
        activation: Callable[[], nn.Module] = nn.ReLU,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if scale_bound is not None and not scale_bound > 0:
            raise ValueError(f"MAFLayer: scale_bound must be positive or None, got {scale_bound!r}")
        self.features = features
        self.scale_bound = scale_bound
        self.made = MADE(features, hidden, order=order, n_params=2, activation=activation, generator=generator)
        nn.init.zeros_(self.made.output.weight)
        nn.init.zeros_(self.made.output.bias)

    def _params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        p = self.made(x)
        return p[..., 0], _soft_clamp(p[..., 1], self.scale_bound)

    def _check(self, t: Tensor, name: str) -> None:
        if t.dim() != 2 or t.shape[1] != self.features:
            raise ValueError(f"{type(self).__name__}.{name}: expected shape (batch, {self.features}), got {tuple(t.shape)}")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, "forward")
        mu, alpha = self._params(x)
        return (x - mu) * torch.exp(-alpha), -alpha.sum(dim=1)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, "inverse")
        x = torch.zeros_like(z)
        alpha = torch.zeros_like(z)
        for _ in range(self.features):
            mu, alpha = self._params(x)
            x = mu + z * torch.exp(alpha)
        return x, alpha.sum(dim=1)


class IAF(Inverse):
    """Inverse autoregressive flow layer (Kingma et al. 2016): ``Inverse(MAFLayer(...))``.

    Its sampling direction is the MAF density pass with the noise as input,

        x_k = (z_k - mu_k(z_<k)) exp(-alpha_k(z_<k)),    log|det dx/dz| = -sum_k alpha_k,

    so inverse (noise -> data, sampling, with log-density of the sample) is one pass, and
    forward (data -> noise, density of an arbitrary x) is D sequential passes. The wrapped
    MAF layer is ``self.bijection``; arguments are those of :class:`MAFLayer`.
    """

    def __init__(self, features: int, hidden: int | Sequence[int] = (64, 64), order=None, scale_bound: float | None = 3.0,
                 activation: Callable[[], nn.Module] = nn.ReLU, generator: torch.Generator | None = None):
        super().__init__(MAFLayer(features, hidden, order=order, scale_bound=scale_bound, activation=activation, generator=generator))


class Permutation(Bijection):
    """Reorder the features: ``z = x[:, perm]``, ``x = z[:, perm^{-1}]``; ``log|det| = 0``.

    Placed between autoregressive layers so each dimension is conditioned on by the others
    somewhere in the stack. Both directions are one cheap gather."""

    def __init__(self, perm: Sequence[int] | Tensor):
        super().__init__()
        perm = torch.as_tensor(perm)
        n = perm.numel()
        if perm.dim() != 1 or n < 1 or perm.is_floating_point() or not torch.equal(perm.sort().values, torch.arange(n)):
            raise ValueError(f"Permutation: expected a permutation of range(n), got {perm.tolist()}")
        self.register_buffer("perm", perm.long())
        self.register_buffer("inv_perm", torch.argsort(perm))

    def _check(self, t: Tensor) -> None:
        if t.dim() != 2 or t.shape[1] != self.perm.numel():
            raise ValueError(f"{type(self).__name__}: expected shape (batch, {self.perm.numel()}), got {tuple(t.shape)}")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x)
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z)
        return z[:, self.inv_perm], z.new_zeros(z.shape[0])


class Reverse(Permutation):
    """Reverse the feature order, ``z = x[:, ::-1]`` (its own inverse, ``log|det| = 0``)."""

    def __init__(self, features: int):
        if not isinstance(features, int) or features < 1:
            raise ValueError(f"Reverse: features must be a positive int, got {features!r}")
        super().__init__(torch.arange(features - 1, -1, -1))


def _stack(layer_cls, features: int, n_layers: int, hidden, scale_bound, generator) -> Flow:
    if not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive int, got {n_layers!r}")
    parts: list[Bijection] = []
    for i in range(n_layers):
        if i > 0 and features > 1:
            parts.append(Reverse(features))
        parts.append(layer_cls(features, hidden, scale_bound=scale_bound, generator=generator))
    return Flow(StandardNormal(features), Compose(*parts))


def maf(features: int, n_layers: int = 5, hidden: int | Sequence[int] = (64, 64), scale_bound: float | None = 3.0,
        generator: torch.Generator | None = None) -> Flow:
    """A masked autoregressive flow: ``n_layers`` :class:`MAFLayer` with :class:`Reverse`
    between them, on a standard-normal base. ``log_prob`` is one pass per layer (fit it by
    maximum likelihood); ``sample`` is D passes per layer."""
    return _stack(MAFLayer, features, n_layers, hidden, scale_bound, generator)


def iaf(features: int, n_layers: int = 5, hidden: int | Sequence[int] = (64, 64), scale_bound: float | None = 3.0,
        generator: torch.Generator | None = None) -> Flow:
    """An inverse autoregressive flow: ``n_layers`` :class:`IAF` with :class:`Reverse` between
    them, on a standard-normal base. ``sample`` and ``sample_and_log_prob`` are one pass per
    layer (fit it by reverse KL); ``log_prob`` of an arbitrary x is D passes per layer."""
    return _stack(IAF, features, n_layers, hidden, scale_bound, generator)


class AutoregressiveMixtureCDF2D(Bijection):
    """The lecture's 2-D autoregressive CDF flow onto the unit square:

        u1 = F_1(x1),                  F_1 a K-component Gaussian-mixture CDF (free parameters),
        u2 = F_2(x2 | x1),             F_2 a mixture CDF with (logits, means, log-scales) = MLP(x1),
        log|det du/dx| = log F_1'(x1) + log F_2'(x2 | x1).

    With a Uniform[0, 1]^2 base (:class:`flowlib.BoxUniform`) this is the density
    ``p(x) = p(x1) p(x2 | x1)`` written as two 1-D mixtures. forward (data -> noise) is one
    pass; inverse has no closed form and runs two bisections, first x1 then x2 given x1
    (:func:`flowlib.flows.onedim.bisection_inverse`, ``iters`` halvings of ``[-bracket, bracket]``).
    The MLP's last layer starts at zero with means spread on [-2, 2], so both conditionals start
    as the same fixed mixture.
    """

    def __init__(self, n_components: int = 5, hidden: int | Sequence[int] = (32, 32), bracket: float = 50.0, iters: int = 60):
        super().__init__()
        if not isinstance(n_components, int) or n_components < 1:
            raise ValueError(f"AutoregressiveMixtureCDF2D: n_components must be a positive int, got {n_components!r}")
        hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
        K = n_components
        self.n_components, self.bracket, self.iters = K, float(bracket), int(iters)
        means = torch.linspace(-2.0, 2.0, K)
        self.logits1 = nn.Parameter(torch.zeros(K))
        self.means1 = nn.Parameter(means.clone())
        self.log_scales1 = nn.Parameter(torch.zeros(K))
        layers: list[nn.Module] = []
        prev = 1
        for width in hidden:
            layers += [nn.Linear(prev, width), nn.Tanh()]
            prev = width
        last = nn.Linear(prev, 3 * K)
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.copy_(torch.cat([torch.zeros(K), means, torch.zeros(K)]))
        self.conditioner = nn.Sequential(*layers, last)

    def _check(self, t: Tensor, name: str) -> None:
        if t.dim() != 2 or t.shape[1] != 2:
            raise ValueError(f"AutoregressiveMixtureCDF2D.{name}: expected shape (batch, 2), got {tuple(t.shape)}")

    def _cdf1(self, x1: Tensor) -> tuple[Tensor, Tensor]:
        return mixture_cdf(x1, self.logits1, self.means1, self.log_scales1)

    def _cdf2(self, x2: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        logits, means, log_scales = self.conditioner(x1[:, None]).chunk(3, dim=-1)
        return mixture_cdf(x2, logits, means, log_scales)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, "forward")
        u1, ld1 = self._cdf1(x[:, 0])
        u2, ld2 = self._cdf2(x[:, 1], x[:, 0])
        return torch.stack([u1, u2], dim=1), ld1 + ld2

    def inverse(self, u: Tensor) -> tuple[Tensor, Tensor]:
        self._check(u, "inverse")
        if ((u < 0) | (u > 1)).any():
            raise ValueError("AutoregressiveMixtureCDF2D.inverse: u must lie in the unit square [0, 1]^2")
        with torch.no_grad():
            x1 = bisection_inverse(lambda t: self._cdf1(t)[0], u[:, 0], -self.bracket, self.bracket, self.iters)
            x2 = bisection_inverse(lambda t: self._cdf2(t, x1)[0], u[:, 1], -self.bracket, self.bracket, self.iters)
        x = torch.stack([x1, x2], dim=1)
        _, ladj = self.forward(x)
        return x, -ladj


def mixture_cdf_flow_2d(n_components: int = 5, hidden: int | Sequence[int] = (32, 32)) -> Flow:
    """:class:`AutoregressiveMixtureCDF2D` on a Uniform[0, 1]^2 base: ``log_prob`` is one pass,
    ``sample`` runs the two bisections."""
    return Flow(BoxUniform(2), AutoregressiveMixtureCDF2D(n_components, hidden))
