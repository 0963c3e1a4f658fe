"""Assignment 09's training exercise (train_ve_score): the ODE likelihood of a learned VE score
against the exact mixture density, mirrored from its hidden test. The ODE is solved by the hidden
test's own integrator (``learned_log_likelihood``), here with the network's Jacobian taken in
this process instead of through the probe."""
from __future__ import annotations

import importlib.util
import sys

import torch

from conftest import REPO
from flowlib import VESDE, GaussianMixture
from outcomes import Check, outcome
from test_notebook_outcomes import solution_namespace

ASG = "09-ode-likelihood"


def _hidden_tests():
    """solutions/09-ode-likelihood/hidden_tests.py as a module (it imports the grader's probe.checks)."""
    if str(REPO / "autograder") not in sys.path:
        sys.path.insert(0, str(REPO / "autograder"))
    spec = importlib.util.spec_from_file_location("hidden_tests_09", REPO / "solutions" / ASG / "hidden_tests.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _score_and_trace(net):
    def score_and_trace(y, t):
        x = y.float().requires_grad_(True)
        with torch.enable_grad():
            s = net(x, torch.full((x.shape[0],), t, dtype=torch.float32))
            tr = sum(torch.autograd.grad(s[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(x.shape[1]))
        return s.detach().double(), tr.detach().double()
    return score_and_trace


@outcome("solutions/09-ode-likelihood/hidden_tests.py: test_train_ve_score (ODE likelihood of the learned score)",
         [Check("gap", "<", 0.2, "|mean of exact log p_eps - the network's ODE log-likelihood| on 1000 held-out points "
                                 "of a 2-D three-component mixture, VE SDE, RK4 16 steps, exact trace (nats)")],
         weaker="train_ve_score with 200 steps instead of 2000",
         extra={"asg": ASG, "file": "hidden_tests.py", "snippet": "if not abs(gap) < 0.2:"})
def nb09_train_ve_score(seed: int, weaker: bool = False) -> dict:
    hidden = _hidden_tests()
    train_ve_score = solution_namespace(ASG)["train_ve_score"]
    weights, means, stds = (torch.tensor(p, dtype=torch.float64) for p in hidden.TRAIN_MIXTURE)
    gmm = GaussianMixture(weights, means, stds=stds)
    sde = VESDE(0.01, 10.0)
    # hidden_tests.py draws from autograder/probe/checks.py's generator(seed, 907) and seeds the
    # student's torch with student.seed(seed)
    gen = torch.Generator().manual_seed(1_000_003 * seed + 907)
    x_train = gmm.sample(2000, generator=gen).float()
    x_test = gmm.sample(1000, generator=gen)
    torch.manual_seed(seed)
    net = train_ve_score(x_train, sde, 200 if weaker else 2000)
    logp = hidden.learned_log_likelihood(_score_and_trace(net), sde, x_test, log_pT=gmm.marginal_at(1.0, sde).log_prob)
    return {"gap": abs((gmm.log_prob_at(x_test, 1e-5, sde) - logp).mean().item())}
