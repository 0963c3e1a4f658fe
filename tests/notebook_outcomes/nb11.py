"""Outcome experiment of assignment 11's training exercise (train_flow_matching, sampled by the
grader's own RK4 with 8 steps), mirrored from solutions/11-flow-matching/hidden_tests.py on the
notebook's own reference solution."""
from __future__ import annotations

import importlib.util

import torch

from conftest import REPO
from flowlib import GaussianMixture
from outcomes import Check, outcome
from test_notebook_outcomes import solution_namespace


def _hidden():
    """The hidden test module (its mixture, step budgets, sampler and MMD), loaded from the solutions folder."""
    spec = importlib.util.spec_from_file_location("hidden_11", REPO / "solutions" / "11-flow-matching" / "hidden_tests.py")
    import sys
    sys.path.insert(0, str(REPO / "autograder"))  # its `probe.checks` imports
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _probe_generator(seed: int, salt: int) -> torch.Generator:
    """autograder/probe/checks.py's generator(seed, salt)."""
    return torch.Generator().manual_seed(1_000_003 * seed + salt)


@outcome("solutions/11-flow-matching/hidden_tests.py: test_train_flow_matching (MMD of RK4 samples of the trained velocity)",
         [Check("mmd2", "<", 0.1, "squared MMD (Gaussian kernels 0.2, 0.5, 1, 2) between 2000 samples of the velocity "
                "trained 1500 steps (8 RK4 steps, 32 evaluations) and 2000 held-out samples of the mixture")],
         weaker="the same training with 150 steps",
         extra={"asg": "11-flow-matching", "file": "hidden_tests.py", "snippet": "if not d < 0.1:"})
def nb11_trained_velocity_mmd(seed: int, weaker: bool = False) -> dict:
    hidden = _hidden()
    ns = solution_namespace("11-flow-matching")
    weights, means, stds = hidden.TRAIN_MIXTURE
    gmm = GaussianMixture(weights, means, stds=stds).to(torch.float64)
    gen = _probe_generator(seed, 1107)
    x_train = gmm.sample(4000, generator=gen).float()
    held_out = gmm.sample(2000, generator=gen)
    z = torch.randn(2000, 2, generator=_probe_generator(seed, 1108))
    torch.manual_seed(1_000_003 * seed + 1109)
    net = ns["train_flow_matching"](x_train, 150 if weaker else hidden.TRAIN_STEPS)
    with torch.no_grad():
        samples = hidden.rk4_samples(net, z)
    return {"mmd2": hidden.mmd2(samples, held_out)}
