"""Normalizing flows, the book's first part: one module per concept (1-D and CDF flows,
planar, autoregressive, coupling and multi-scale, dequantization and bits/dim, the
variational-inference energies).

Import from ``flowlib`` (``from flowlib import X``) or from the module itself."""
