"""Assignment 04's training exercise (fit_realnvp): held-out NLL on two moons, mirrored from its hidden test."""
from __future__ import annotations

import torch

from flowlib.data import two_moons
from outcomes import Check, outcome
from test_notebook_outcomes import solution_namespace


@outcome("solutions/04-realnvp/hidden_tests.py: test_fit_realnvp (held-out NLL on two moons)",
         [Check("nll", "<", 1.45, "mean NLL of 5000 held-out points of two moons (noise 0.1) under the fitted 6-layer RealNVP (nats)")],
         weaker="fit_realnvp with alternate=False (mask (1, 0) in every layer: x_1's marginal stays N(0, 1))",
         extra={"asg": "04-realnvp", "file": "hidden_tests.py", "snippet": "if not nll < 1.45:"})
def nb04_fit_realnvp_moons(seed: int, weaker: bool = False) -> dict:
    ns = solution_namespace("04-realnvp")
    # hidden_tests.py draws from autograder/probe/checks.py's generator(seed, 707) and seeds the
    # student's torch with student.seed(seed)
    gen = torch.Generator().manual_seed(1_000_003 * seed + 707)
    x_train = two_moons(2000, noise=0.1, generator=gen, dtype=torch.float32)
    x_test = two_moons(5000, noise=0.1, generator=gen, dtype=torch.float32)
    torch.manual_seed(seed)
    model = ns["fit_realnvp"](x_train, alternate=not weaker)
    with torch.no_grad():
        return {"nll": -model.log_prob(x_test).double().mean().item()}
