"""Assignment 03's training exercise (fit_maf): KL to the ring, mirrored from its hidden test."""
from __future__ import annotations

import torch

from flowlib.data import ring_of_gaussians, ring_of_gaussians_log_prob
from outcomes import Check, outcome
from test_notebook_outcomes import solution_namespace

RING = dict(k=8, radius=2.0, std=0.3)


@outcome("solutions/03-autoregressive-flows/hidden_tests.py: test_fit_maf (KL to the ring)",
         [Check("kl", "<", 0.6, "KL(p || q) of the fitted 5-layer MAF on 5000 held-out points of the ring, std 0.3 (nats)")],
         weaker="fit_maf with alternate=False (natural order in every layer: x_1's marginal stays Gaussian)",
         extra={"asg": "03-autoregressive-flows", "file": "hidden_tests.py", "snippet": "if not kl < 0.6:"})
def nb03_fit_maf_ring(seed: int, weaker: bool = False) -> dict:
    fit_maf = solution_namespace("03-autoregressive-flows")["fit_maf"]
    # hidden_tests.py draws from autograder/probe/checks.py's generator(seed, 808) and seeds the
    # student's torch with student.seed(seed)
    gen = torch.Generator().manual_seed(1_000_003 * seed + 808)
    x_train = ring_of_gaussians(2000, generator=gen, **RING)
    x_test = ring_of_gaussians(5000, generator=gen, **RING)
    torch.manual_seed(seed)
    model = fit_maf(x_train, alternate=not weaker)
    with torch.no_grad():
        log_q = model.log_prob(x_test).double()
    return {"kl": (ring_of_gaussians_log_prob(x_test.double(), **RING) - log_q).mean().item()}
