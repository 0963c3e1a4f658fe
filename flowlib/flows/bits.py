"""Bits per dimension, the likelihood unit of image models (Theis et al. 2016; Papamakarios et al. 2017)."""
from __future__ import annotations

import math

import torch
from torch import Tensor


def bits_per_dim(logp: Tensor, n_dims: int, n_bins: int = 256) -> Tensor:
    """Bits per dimension of discrete data with ``n_bins`` levels per dimension.

    ``logp`` is the continuous log-density (nats) of the data rescaled to [0, 1)^D, i.e.
    dequantized pixels divided by n_bins. On the original scale [0, n_bins)^D the density is
    smaller by a factor n_bins per dimension, log p_raw = logp - D log(n_bins), and that raw
    density is what bounds the discrete log-probability, so

        bits/dim = (-logp / D + log(n_bins)) / log(2).

    Forgetting the log(n_bins) offset reports 8 bits/dim too few for 8-bit images.
    Works elementwise: pass per-sample logp (batch,) and average afterwards if needed."""
    if n_dims < 1 or n_bins < 1:
        raise ValueError(f"need n_dims >= 1 and n_bins >= 1, got n_dims={n_dims}, n_bins={n_bins}")
    logp = torch.as_tensor(logp)
    return (-logp / n_dims + math.log(n_bins)) / math.log(2)
