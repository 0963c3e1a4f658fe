"""The ground-truth oracle of the score-based topics: a Gaussian mixture in any dimension.

    p(x) = sum_k w_k N(x; mu_k, Sigma_k)

has an exact log-density and an exact score

    grad log p(x) = sum_k r_k(x) * (-Sigma_k^{-1} (x - mu_k)),   r_k = posterior of component k,

and stays a mixture under the noise the diffusion models add: the law of ``a x + s z`` with
``z ~ N(0, I)`` is ``sum_k w_k N(a mu_k, a^2 Sigma_k + s^2 I)``. Variance-exploding noise is
``a = 1`` (Song & Ermon 2019), variance-preserving noise ``a = alpha_t`` (Ho et al. 2020;
Song et al. 2021), so the exact marginal p_t and its score are available at every t.

Each covariance is stored by its eigendecomposition ``Sigma_k = U_k diag(lambda_k) U_k^T``;
then ``a^2 Sigma_k + s^2 I = U_k diag(a^2 lambda_k + s^2) U_k^T`` and a per-sample noise level
costs no new factorisation. Isotropic and diagonal components skip the rotation.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

_LOG_2PI = math.log(2 * math.pi)


def _randn(shape, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise with ``like``'s device and dtype, drawn from ``generator`` (on its
    own device, so a CPU generator gives the same numbers on CPU and CUDA)."""
    if generator is None:
        return torch.randn(shape, device=like.device, dtype=like.dtype)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=like.dtype).to(like.device)


def _float_tensor(value, dtype=None) -> Tensor:
    # Convert Python numbers straight to the target dtype: going through float32 first
    # would round e.g. 0.7**2 in a float64 mixture.
    if dtype is not None:
        return torch.as_tensor(value, dtype=dtype)
    t = torch.as_tensor(value)
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


class GaussianMixture(nn.Module):
    """Mixture of K Gaussians in R^D (Bishop 2006, ch. 9), with every quantity in closed form.

    Args:
        weights: (K,) positive mixture weights; normalised to sum to 1.
        means: (K, D) component means.
        stds: component standard deviations, a scalar, (K,) (isotropic per component) or
            (K, D) (diagonal). Ignored when ``covs`` is given.
        covs: optional (K, D, D) full covariance matrices (symmetric positive definite).

    Parameters live in buffers (``.to(device)``, ``.double()`` move them); every method
    computes in the dtype and on the device of its input ``x`` of shape (batch, D).
    """

    def __init__(self, weights, means, stds=1.0, covs=None):
        super().__init__()
        means = _float_tensor(means)
        if means.dim() != 2:
            raise ValueError(f"GaussianMixture: means must have shape (K, D), got {tuple(means.shape)}")
        K, D = means.shape
        weights = _float_tensor(weights, means.dtype).to(means.device)
        if weights.shape != (K,):
            raise ValueError(f"GaussianMixture: weights must have shape (K,) = ({K},), got {tuple(weights.shape)}")
        if not (torch.isfinite(weights).all() and (weights > 0).all()):
            raise ValueError(f"GaussianMixture: weights must be positive and finite, got {weights.tolist()}")
        weights = weights / weights.sum()
        rotation = None
        if covs is not None:
            covs = _float_tensor(covs, means.dtype).to(means.device)
            if covs.shape != (K, D, D):
                raise ValueError(f"GaussianMixture: covs must have shape (K, D, D) = ({K}, {D}, {D}), got {tuple(covs.shape)}")
            if not torch.allclose(covs, covs.transpose(1, 2), atol=1e-8, rtol=1e-6):
                raise ValueError("GaussianMixture: covariance matrices must be symmetric")
            variances, rotation = (t.to(means.dtype) for t in torch.linalg.eigh(covs.double()))
            if not (variances > 0).all():
                raise ValueError("GaussianMixture: covariance matrices must be positive definite")
        else:
            stds = _float_tensor(stds, means.dtype).to(means.device)
            if stds.dim() == 1 and stds.shape == (K,):
                stds = stds[:, None]
            if stds.dim() > 2 or not (stds.dim() == 0 or stds.shape in ((K, 1), (K, D))):
                raise ValueError(f"GaussianMixture: stds must be a scalar, (K,) or (K, D) = ({K}, {D}), got {tuple(stds.shape)}")
            if not (torch.isfinite(stds).all() and (stds > 0).all()):
                raise ValueError("GaussianMixture: stds must be positive and finite")
            variances = (stds**2).expand(K, D).clone()
        self.register_buffer("weights", weights)
        self.register_buffer("means", means.clone())
        self.register_buffer("variances", variances)  # eigenvalues lambda_k, (K, D)
        self.register_buffer("rotation", rotation)  # eigenvectors U_k as columns, (K, D, D) or None

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def covariances(self) -> Tensor:
        """(K, D, D) component covariances ``U_k diag(lambda_k) U_k^T``."""
        if self.rotation is None:
            return torch.diag_embed(self.variances)
        return self.rotation @ torch.diag_embed(self.variances) @ self.rotation.transpose(1, 2)

    def mean(self) -> Tensor:
        """E[x] = sum_k w_k mu_k."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """Cov[x] = sum_k w_k (Sigma_k + mu_k mu_k^T) - E[x] E[x]^T (law of total covariance)."""
        m = self.mean()
        second = torch.einsum("k,kde->de", self.weights, self.covariances + self.means[:, :, None] * self.means[:, None, :])
        return second - m[:, None] * m[None, :]

    # -- exact evaluation -------------------------------------------------------------------

    def _check(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"GaussianMixture: expected x of shape (batch, {self.dim}), got {shape}")

    @staticmethod
    def _per_sample(value, x: Tensor, name: str) -> Tensor:
        """A scalar or (batch,) noise coefficient as a float or a (batch, 1, 1) tensor like x."""
        if isinstance(value, (int, float)):
            return float(value)
        v = torch.as_tensor(value, dtype=x.dtype, device=x.device)
        if v.dim() == 0:
            return v.reshape(1, 1, 1)  # stays a tensor: no device sync
        if v.shape != (x.shape[0],):
            raise ValueError(f"GaussianMixture: {name} must be a scalar or have shape (batch,) = ({x.shape[0]},), got {tuple(v.shape)}")
        return v.reshape(-1, 1, 1)

    def _components(self, x: Tensor, scale=1.0, sigma=0.0) -> tuple[Tensor, Tensor]:
        """For the law of ``scale * X + sigma * Z``: per-component ``log w_k + log N_k(x)``,
        (batch, K), and per-component scores ``-C_k^{-1}(x - scale mu_k)``, (batch, K, D)."""
        self._check(x)
        a = self._per_sample(scale, x, "scale")
        s = self._per_sample(sigma, x, "sigma")
        mu, lam = self.means.to(x), self.variances.to(x)
        diff = x[:, None, :] - a * mu[None]
        U = None if self.rotation is None else self.rotation.to(x)
        y = diff if U is None else torch.einsum("kde,bkd->bke", U, diff)  # coordinates in the eigenbasis
        var = a**2 * lam[None] + s**2
        log_comp = -0.5 * (y**2 / var + var.log() + _LOG_2PI).sum(-1) + self.weights.to(x).log()
        grad = -y / var
        if U is not None:
            grad = torch.einsum("kde,bke->bkd", U, grad)
        return log_comp, grad

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log p(x), shape (batch,)."""
        return torch.logsumexp(self._components(x)[0], dim=1)

    def score(self, x: Tensor) -> Tensor:
        """Exact grad_x log p(x) in closed form (responsibility-weighted component scores)."""
        log_comp, grad = self._components(x)
        return (torch.softmax(log_comp, dim=1)[..., None] * grad).sum(1)

    def affine_log_prob(self, x: Tensor, scale, sigma) -> Tensor:
        """log-density of ``scale * X + sigma * Z`` at x; scale and sigma scalars or (batch,)."""
        return torch.logsumexp(self._components(x, scale, sigma)[0], dim=1)

    def affine_score(self, x: Tensor, scale, sigma) -> Tensor:
        """Score of ``scale * X + sigma * Z`` at x; scale and sigma scalars or (batch,), so each
        sample may carry its own noise level."""
        log_comp, grad = self._components(x, scale, sigma)
        return (torch.softmax(log_comp, dim=1)[..., None] * grad).sum(1)

    # -- the mixture after noising -----------------------------------------------------------

    def affine_perturbed(self, scale: float, sigma: float) -> "GaussianMixture":
        """The law of ``scale * X + sigma * Z``, Z ~ N(0, I): the mixture with means
        ``scale mu_k`` and covariances ``scale^2 Sigma_k + sigma^2 I``."""
        scale, sigma = float(scale), float(sigma)
        if sigma < 0 or not math.isfinite(sigma) or not math.isfinite(scale):
            raise ValueError(f"affine_perturbed: need finite scale and sigma >= 0, got scale={scale}, sigma={sigma}")
        if scale == 0 and sigma == 0:
            raise ValueError("affine_perturbed: scale = sigma = 0 gives a point mass, not a density")
        var = scale**2 * self.variances + sigma**2
        if self.rotation is None:
            return GaussianMixture(self.weights, scale * self.means, stds=var.sqrt())
        covs = self.rotation @ torch.diag_embed(var) @ self.rotation.transpose(1, 2)
        return GaussianMixture(self.weights, scale * self.means, covs=0.5 * (covs + covs.transpose(1, 2)))

    def perturbed(self, sigma: float) -> "GaussianMixture":
        """p convolved with N(0, sigma^2 I): the noise-conditional target of Song & Ermon 2019."""
        if not float(sigma) > 0:
            raise ValueError(f"perturbed: sigma must be > 0, got {sigma}")
        return self.affine_perturbed(1.0, sigma)

    def marginal_at(self, t: float, sde) -> "GaussianMixture":
        """The exact marginal p_t of ``sde`` started at this mixture (scalar t)."""
        alpha, std = sde.marginal_coefficients(torch.as_tensor(float(t), dtype=torch.float64))
        return self.affine_perturbed(alpha.item(), std.item())

    def log_prob_at(self, x: Tensor, t, sde) -> Tensor:
        """Exact log p_t(x) for ``sde`` (``x_t = alpha_t x_0 + sigma_t z``); t scalar or (batch,)."""
        alpha, std = sde.marginal_coefficients(torch.as_tensor(t, dtype=x.dtype, device=x.device))
        return self.affine_log_prob(x, alpha, std)

    def score_at(self, x: Tensor, t, sde) -> Tensor:
        """Exact score grad log p_t(x) for ``sde``; t scalar or (batch,). Use
        ``lambda x, t: gmm.score_at(x, t, sde)`` as the oracle ``score_fn`` of the samplers."""
        alpha, std = sde.marginal_coefficients(torch.as_tensor(t, dtype=x.dtype, device=x.device))
        return self.affine_score(x, alpha, std)

    def velocity_at(self, x: Tensor, t, path) -> Tensor:
        """Exact marginal velocity of the probability path ``x_t = alpha x_0 + sigma z`` started
        at this mixture (``path``: :class:`flowlib.diffusion.flow_matching.LinearPath`, ``VPPath``, any
        object with ``coefficients``/``derivatives``), t scalar or (batch,):

            u_t(x) = E[alpha' x_0 + sigma' z | x_t = x]
                   = sum_k r_k(x) [alpha' (mu_k - alpha Sigma_k g_k) - sigma' sigma g_k],

        with r_k the posterior of component k under p_t and ``g_k = -(alpha^2 Sigma_k +
        sigma^2 I)^{-1} (x - alpha mu_k)`` its score (Gaussian conditioning within a component:
        E[x_0 | x, k] = mu_k - alpha Sigma_k g_k, E[z | x, k] = -sigma g_k). Finite at alpha = 0."""
        self._check(x)
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        t = t.expand(x.shape[0]) if t.dim() == 0 else t
        if t.shape != (x.shape[0],):
            raise ValueError(f"velocity_at: t must be a scalar or have shape (batch,) = ({x.shape[0]},), got {tuple(t.shape)}")
        a, s = path.coefficients(t)
        da, ds = path.derivatives(t)
        log_comp, g = self._components(x, a, s)
        r = torch.softmax(log_comp, dim=1)[..., None]
        sigma_g = torch.einsum("kde,bke->bkd", self.covariances.to(x), g)
        a3, s3, da3, ds3 = (v.reshape(-1, 1, 1) for v in (a, s, da, ds))
        per_component = da3 * (self.means.to(x)[None] - a3 * sigma_g) - ds3 * s3 * g
        return (r * per_component).sum(1)

    def eps_at(self, x: Tensor, alpha_bar) -> Tensor:
        """The optimal noise prediction of DDPM at noise level ``alpha_bar`` (scalar or (batch,)):
        for ``x = sqrt(abar) x_0 + sqrt(1 - abar) eps``, ``E[eps | x] = -sqrt(1 - abar) grad log p_abar(x)``."""
        ab = torch.as_tensor(alpha_bar, dtype=x.dtype, device=x.device)
        return -(1 - ab).sqrt().reshape(-1, 1) * self.affine_score(x, ab.sqrt(), (1 - ab).sqrt())

    def restricted(self, components) -> "GaussianMixture":
        """The mixture of the given components only, weights renormalised: with components
        labelled by class, ``p(x | y)`` of a class-conditional oracle."""
        idx = torch.as_tensor(components, dtype=torch.long).reshape(-1)
        if idx.numel() == 0 or idx.min() < 0 or idx.max() >= self.n_components or idx.unique().numel() != idx.numel():
            raise ValueError(f"restricted: expected distinct component indices in 0..{self.n_components - 1}, got {idx.tolist()}")
        w = self.weights[idx] / self.weights[idx].sum()
        if self.rotation is None:
            return GaussianMixture(w, self.means[idx], stds=self.variances[idx].sqrt())
        return GaussianMixture(w, self.means[idx], covs=self.covariances[idx])

    # -- sampling ----------------------------------------------------------------------------

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws (n, D): pick component k with probability w_k, then ``mu_k + U_k sqrt(lambda_k) z``."""
        gen_device = generator.device if generator is not None else self.weights.device
        idx = torch.multinomial(self.weights.to(gen_device), n, replacement=True, generator=generator).to(self.means.device)
        z = _randn((n, self.dim), self.means, generator) * self.variances[idx].sqrt()
        if self.rotation is not None:
            z = torch.einsum("nde,ne->nd", self.rotation[idx], z)
        return self.means[idx] + z

    def extra_repr(self) -> str:
        kind = "isotropic/diagonal" if self.rotation is None else "full"
        return f"K={self.n_components}, D={self.dim}, covariance={kind}"
