"""Assignment 10's training exercise (train_spline_flow): held-out KL of a spline coupling flow to a
four-mode Gaussian mixture, mirrored from solutions/10-spline-flows-and-glow/hidden_tests.py on the
notebook's own reference solution."""
from __future__ import annotations

import importlib.util
import sys

import torch

import flowlib
from conftest import REPO
from flowlib import GaussianMixture
from outcomes import Check, outcome
from test_notebook_outcomes import solution_namespace


def _hidden():
    """The hidden test module (its mixture, step budget and bound), loaded from the solutions folder."""
    spec = importlib.util.spec_from_file_location("hidden_10", REPO / "solutions" / "10-spline-flows-and-glow" / "hidden_tests.py")
    sys.path.insert(0, str(REPO / "autograder"))  # its `probe.checks` imports
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _train_affine(x_train: torch.Tensor, n_steps: int):
    """The weaker model: flowlib's RealNVP of the same size (4 affine coupling layers, MLPs 32-32),
    the same optimiser, batch and steps as the reference's spline flow."""
    model = flowlib.realnvp(2, n_layers=4, hidden=(32, 32))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(n_steps):
        loss = -model.log_prob(x_train[torch.randint(0, x_train.shape[0], (256,))]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@outcome("solutions/10-spline-flows-and-glow/hidden_tests.py: test_train_spline_flow (held-out KL of the spline flow)",
         [Check("kl", "<", 0.1, "KL(mixture || model) in nats, from 4000 held-out points of the four-mode mixture, "
                "after 500 steps of the 4-layer spline coupling flow")],
         weaker="a RealNVP flow of the same size (4 affine coupling layers, MLPs 32-32, same steps and optimiser)",
         extra={"asg": "10-spline-flows-and-glow", "file": "hidden_tests.py", "snippet": "KL_BOUND = 0.1"})
def nb10_spline_flow_kl(seed: int, weaker: bool = False) -> dict:
    hidden = _hidden()
    ns = solution_namespace("10-spline-flows-and-glow")
    weights, means, std = hidden.TRAIN_MIXTURE
    gmm = GaussianMixture(weights, means, stds=std).to(torch.float64)
    # hidden_tests.py draws from autograder/probe/checks.py's generator(seed, 1005) and seeds the
    # student's torch with student.seed(1_000_003 * seed + 1006)
    gen = torch.Generator().manual_seed(1_000_003 * seed + 1005)
    x_train = gmm.sample(4000, generator=gen).float()
    x_test = gmm.sample(4000, generator=gen)
    torch.manual_seed(1_000_003 * seed + 1006)
    train = _train_affine if weaker else ns["train_spline_flow"]
    model = train(x_train, hidden.TRAIN_STEPS)
    with torch.no_grad():
        return {"kl": (gmm.log_prob(x_test) - model.log_prob(x_test.float()).double()).mean().item()}
