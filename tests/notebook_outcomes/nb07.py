"""Outcome experiments of assignment 07's transfer exercise (level_mode_fractions), mirrored from
solutions/07-annealed-langevin/hidden_tests.py on the notebook's own reference solution.
(The mode-weights experiment of Exercise 4 is nb07_mode_weights in test_notebook_outcomes.py.)"""
from __future__ import annotations

import math

import torch

from flowlib import GaussianMixture
from outcomes import Check, outcome
from test_notebook_outcomes import solution_namespace

F64 = torch.float64


def _probe_generator(seed: int, salt: int) -> torch.Generator:
    """autograder/probe/checks.py's generator(seed, salt)."""
    return torch.Generator().manual_seed(1_000_003 * seed + salt)


@outcome("solutions/07-annealed-langevin/hidden_tests.py: test_level_mode_fractions (against the exact p_sigma)",
         [Check("frac_err", "<", 0.11, "max over the 10 levels of a linear ladder 20 -> 1 and the 2 modes of |fraction "
                "of 800 annealed chains nearer each mean - the exact fraction of p_sigma_i| (eps = 0.1, T = 50)")],
         weaker="plain Langevin: every level run at sigma_L = 1 with step eps (500 steps, no annealing)",
         extra={"asg": "07-annealed-langevin", "file": "hidden_tests.py", "snippet": "if not err < 0.11:"})
def nb07_level_fractions(seed: int, weaker: bool = False) -> dict:
    level_mode_fractions = solution_namespace("07-annealed-langevin")["level_mode_fractions"]
    two = GaussianMixture(torch.tensor([0.8, 0.2], dtype=F64), torch.tensor([[-4.0, -4.0], [4.0, 4.0]], dtype=F64), stds=1.0)
    gen = _probe_generator(seed, 1111)
    8 * torch.rand(200, 2, generator=gen, dtype=F64) - 4  # the test's first draw from the same generator
    x_uniform = 16 * torch.rand(800, 2, generator=gen, dtype=F64) - 8
    ladder = 20.0 - torch.arange(10, dtype=F64) / 9 * 19.0
    levels = torch.ones(10, dtype=F64) if weaker else ladder
    rows = level_mode_fractions(lambda v, s: two.affine_score(v, 1.0, s), x_uniform, levels, 0.1, 50, two.means,
                                generator=_probe_generator(seed, 22))
    inside = torch.special.ndtr(4 * math.sqrt(2) / (1 + ladder**2).sqrt())
    exact = 0.8 * inside + 0.2 * (1 - inside)
    return {"frac_err": (rows - torch.stack([exact, 1 - exact], 1)).abs().max().item()}
