"""Score-based and continuous-time models, the book's second part: the Gaussian-mixture
oracle, score matching and Langevin, diffusion SDEs, the probability-flow ODE.

Import from ``flowlib`` (``from flowlib import X``) or from the module itself."""
