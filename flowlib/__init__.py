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
