"""Assignment 05's training exercise (fit_discrete_flow): held-out dequantized bits/dim of a flow on
discrete 2-D band data against the per-coordinate histogram, mirrored from its hidden test."""
from __future__ import annotations

import math

import torch

from flowlib.flows.dequantization import _float_dtype, histogram_baseline_bpd
from outcomes import Check, outcome
from test_notebook_outcomes import cell_source, solution_namespace

ASG = "05-dequantization"
COUPLING = "self.flow = flowlib.realnvp(2, n_layers=4, hidden=(32, 32))"
FACTORISED = ("self.flow = flowlib.Flow(flowlib.StandardNormal(2), "
              "flowlib.flows.onedim.Affine(torch.zeros(2), torch.ones(2), shape=(2,)))")


def _band_levels(n, gen, n_bins=16):  # the notebook's band_levels (and hidden_tests.py's _band_levels)
    a = 0.1 + 0.8 * torch.rand(n, generator=gen)
    b = a + 0.06 * torch.randn(n, generator=gen)
    return (torch.stack([a, b], dim=1) * n_bins).floor().long().clamp(0, n_bins - 1)


@outcome("solutions/05-dequantization/hidden_tests.py: test_fit_discrete_flow (held-out bits/dim against the histogram)",
         [Check("excess", "<", -0.4, "held-out dequantized bits/dim of the fitted flow minus the per-coordinate "
                "histogram's, 4000 band points, 4 noise draws (bits/dim)")],
         weaker="fit_discrete_flow with a factorised model (a learned Gaussian per logit coordinate, no coupling)",
         extra={"asg": ASG, "file": "hidden_tests.py", "snippet": "if not excess < -0.4:"})
def nb05_fit_discrete_flow(seed: int, weaker: bool = False) -> dict:
    ns = solution_namespace(ASG)
    ns["flow_dtype"] = _float_dtype  # the setup cell's flow_dtype (same rule)
    if weaker:
        source = cell_source(ASG, "fit_discrete_flow")
        assert COUPLING in source, "the reference no longer builds its flow with flowlib.realnvp: update nb05.py"
        exec(compile(source.replace(COUPLING, FACTORISED), f"{ASG}:fit_discrete_flow (factorised)", "exec"), ns)
    # hidden_tests.py draws from autograder/probe/checks.py's generator(seed, 808) and seeds the
    # student's torch with student.seed(seed + 1)
    gen = torch.Generator().manual_seed(1_000_003 * seed + 808)
    x_train, x_test = _band_levels(2000, gen), _band_levels(4000, gen)
    torch.manual_seed(seed + 1)
    model = ns["fit_discrete_flow"](x_train, 16)
    with torch.no_grad():
        lp = torch.stack([model.log_prob(((x_test + torch.rand(x_test.shape, generator=gen)) / 16).float()).double()
                          for _ in range(4)]).mean(0)
    bpd = -(lp.mean().item() - 2 * math.log(16)) / (2 * math.log(2))
    return {"excess": bpd - histogram_baseline_bpd(x_train, x_test, 16)}
