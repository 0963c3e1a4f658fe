"""flowlib: small, tested reference implementations for the course
*Normalizing Flows and Score-Based Generative Models*.

Convention (as in zuko and nflows): a bijection's ``forward`` maps data to noise.
"""
from .core import Bijection, Compose, Flow, Inverse, device, fit, nll_loss, seed_everything
from .distributions import Beta, BoxUniform, StandardNormal

__all__ = [
    "Bijection",
    "Compose",
    "Inverse",
    "Flow",
    "StandardNormal",
    "BoxUniform",
    "Beta",
    "device",
    "seed_everything",
    "fit",
    "nll_loss",
]

__version__ = "0.1.0"

# Score-based side: ground-truth mixture, score matching, diffusion SDEs, probability flow.
from .flows.bits import bits_per_dim
from .diffusion.gmm import GaussianMixture
from .diffusion.ode import ode_log_prob, ode_sample, probability_flow_drift
from .diffusion.score import ScoreMLP, annealed_langevin, dsm_loss, esm_loss, geometric_sigmas, langevin, ssm_loss
from .diffusion.sde import SDE, VESDE, VPSDE, euler_maruyama, pc_sample, sde_dsm_loss

__all__ += [
    "GaussianMixture",
    "esm_loss",
    "ssm_loss",
    "dsm_loss",
    "langevin",
    "geometric_sigmas",
    "annealed_langevin",
    "ScoreMLP",
    "SDE",
    "VESDE",
    "VPSDE",
    "sde_dsm_loss",
    "euler_maruyama",
    "pc_sample",
    "probability_flow_drift",
    "ode_sample",
    "ode_log_prob",
    "bits_per_dim",
]

# Planar and autoregressive flows, variational-inference targets, 2-D toy data.
from .flows.autoregressive import (
    IAF,
    MADE,
    AutoregressiveMixtureCDF2D,
    MAFLayer,
    Permutation,
    Reverse,
    iaf,
    maf,
    mixture_cdf_flow_2d,
)
from .flows.energies import TEST_ENERGIES, reverse_kl_loss
from .flows.planar import Planar, planar_flow

__all__ += [
    "Planar",
    "planar_flow",
    "TEST_ENERGIES",
    "reverse_kl_loss",
    "MADE",
    "MAFLayer",
    "IAF",
    "Permutation",
    "Reverse",
    "maf",
    "iaf",
    "AutoregressiveMixtureCDF2D",
    "mixture_cdf_flow_2d",
]

# Coupling flows, multi-scale architecture, Glow layers, dequantization.
from .flows.coupling import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ConvConditioner,
    Flatten,
    InvertibleConv1x1,
    MLPConditioner,
    MultiScale,
    Squeeze,
    alternating_mask,
    channel_mask,
    checkerboard_mask,
    half_mask,
    realnvp,
    realnvp_image,
)
from .flows.dequantization import (
    LogitTransform,
    VariationalDequantizer,
    dequantized_bits_per_dim,
    dequantized_log_likelihood,
    histogram_baseline_bpd,
    uniform_dequantize,
)

__all__ += [
    "AdditiveCoupling",
    "AffineCoupling",
    "MLPConditioner",
    "ConvConditioner",
    "checkerboard_mask",
    "channel_mask",
    "alternating_mask",
    "half_mask",
    "Squeeze",
    "Flatten",
    "MultiScale",
    "ActNorm",
    "InvertibleConv1x1",
    "realnvp",
    "realnvp_image",
    "uniform_dequantize",
    "LogitTransform",
    "dequantized_log_likelihood",
    "dequantized_bits_per_dim",
    "VariationalDequantizer",
    "histogram_baseline_bpd",
]

# Neural spline flows and Glow (flows part); flow matching and DDPM/DDIM (diffusion part).
from .diffusion.ddpm import EpsMLP, NoiseSchedule, ddim_sample, ddpm_loss, ddpm_sample, drop_labels, guided_eps, tweedie_denoise
from .diffusion.flow_matching import LinearPath, VPPath, cfm_loss, fm_log_prob, fm_sample, reflow_pairs, straightness
from .flows.glow import glow, glow_step
from .diffusion.ode import velocity_log_prob, velocity_sample
from .flows.splines import RationalQuadraticSpline, SplineAutoregressive, SplineCoupling, nsf_autoregressive, nsf_coupling

__all__ += [
    "RationalQuadraticSpline",
    "SplineCoupling",
    "SplineAutoregressive",
    "nsf_coupling",
    "nsf_autoregressive",
    "glow_step",
    "glow",
    "velocity_sample",
    "velocity_log_prob",
    "LinearPath",
    "VPPath",
    "cfm_loss",
    "fm_sample",
    "fm_log_prob",
    "reflow_pairs",
    "straightness",
    "NoiseSchedule",
    "EpsMLP",
    "ddpm_loss",
    "ddpm_sample",
    "ddim_sample",
    "tweedie_denoise",
    "guided_eps",
    "drop_labels",
]
