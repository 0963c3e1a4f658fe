"""Outcome experiment of assignment 02's training exercise (``fit_planar_flow``), mirrored
from solutions/02-planar-flows/hidden_tests.py: test_fit_planar_flow."""
from __future__ import annotations

import math

import torch

from flowlib.flows.energies import TEST_ENERGIES
from outcomes import Check, outcome
from test_notebook_outcomes import solution_namespace

ASG = "02-planar-flows"


def _namespace() -> dict:
    ns = solution_namespace(ASG)
    ns["F"] = torch.nn.functional  # the setup cell's `import torch.nn.functional as F`
    return ns


def _held_out_kl(params, log_target, z0) -> float:
    """KL(q || p) of the stack on the base samples z0, log Z of the target by grid integration
    on [-5, 5]^2 (801 x 801), as the hidden test measures it."""
    ns = _namespace()
    axis = torch.linspace(-5, 5, 801, dtype=torch.float64)
    vals = log_target(torch.cartesian_prod(axis, axis)).exp().reshape(801, 801)
    log_z = math.log(torch.trapezoid(torch.trapezoid(vals, axis, dim=1), axis).item())
    with torch.no_grad():
        loss = ns["planar_reverse_kl"](z0, [tuple(t.double() for t in layer) for layer in params], log_target)
    return loss.item() + log_z


@outcome("solutions/02-planar-flows/hidden_tests.py: test_fit_planar_flow (U1, K = 8)",
         [Check("kl", "<", 0.88, "KL(q || p) of the fitted 8-layer planar flow on U1, 20000 held-out base samples (nats)")],
         weaker="fit_planar_flow with K=1 (a single planar layer)",
         extra={"asg": ASG, "file": "hidden_tests.py", "snippet": "if not kl < 0.88:"})
def nb02_fit_planar_ring(seed: int, weaker: bool = False) -> dict:
    fit_planar_flow = _namespace()["fit_planar_flow"]
    torch.manual_seed(seed)  # the hidden test's student.seed(seed)
    params = fit_planar_flow(TEST_ENERGIES["U1"], K=1 if weaker else 8, steps=400, n=256)
    # hidden_tests.py draws from autograder/probe/checks.py's generator(seed, 717)
    z0 = torch.randn(20000, 2, generator=torch.Generator().manual_seed(1_000_003 * seed + 717), dtype=torch.float64)
    return {"kl": _held_out_kl(params, TEST_ENERGIES["U1"], z0)}
