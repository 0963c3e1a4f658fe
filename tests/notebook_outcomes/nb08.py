"""Outcome experiment of assignment 08's training exercise (train_vp_score sampled by em_sampler),
mirrored from solutions/08-sde-sampling/hidden_tests.py on the notebook's own reference solution."""
from __future__ import annotations

import importlib.util

import torch

from conftest import REPO
from flowlib import VPSDE, GaussianMixture
from outcomes import Check, outcome
from test_notebook_outcomes import solution_namespace


def _hidden():
    """The hidden test module (its mixture, step budget and MMD), loaded from the solutions folder."""
    spec = importlib.util.spec_from_file_location("hidden_08", REPO / "solutions" / "08-sde-sampling" / "hidden_tests.py")
    import sys
    sys.path.insert(0, str(REPO / "autograder"))  # its `probe.checks` imports
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _probe_generator(seed: int, salt: int) -> torch.Generator:
    """autograder/probe/checks.py's generator(seed, salt)."""
    return torch.Generator().manual_seed(1_000_003 * seed + salt)


@outcome("solutions/08-sde-sampling/hidden_tests.py: test_train_vp_score (MMD of EM samples of the trained score)",
         [Check("mmd2", "<", 0.08, "squared MMD (Gaussian kernels 0.2, 0.5, 1, 2) between 2000 EM samples (100 steps) "
                "of the score trained 1500 steps and 2000 held-out samples of the mixture")],
         weaker="the same training with 200 steps",
         extra={"asg": "08-sde-sampling", "file": "hidden_tests.py", "snippet": "if not d < 0.08:"})
def nb08_trained_score_mmd(seed: int, weaker: bool = False) -> dict:
    hidden = _hidden()
    ns = solution_namespace("08-sde-sampling")
    gmm = GaussianMixture(hidden.TRAIN_MIXTURE[0], hidden.TRAIN_MIXTURE[1], stds=hidden.TRAIN_MIXTURE[2]).to(torch.float64)
    gen = _probe_generator(seed, 901)
    x_train = gmm.sample(4000, generator=gen).float()
    held_out = gmm.sample(2000, generator=gen)
    x_T = torch.randn(2000, 2, generator=_probe_generator(seed, 902))
    torch.manual_seed(1_000_003 * seed + 903)
    net = ns["train_vp_score"](x_train, 200 if weaker else hidden.TRAIN_STEPS)
    with torch.no_grad():
        samples = ns["em_sampler"](net, VPSDE(0.1, 20.0), x_T, 100, generator=_probe_generator(seed, 904))
    return {"mmd2": hidden.mmd2(samples, held_out)}
