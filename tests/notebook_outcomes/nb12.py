"""Outcome experiment of assignment 12's training exercise (train_guided, sampled with guidance by
DDIM), mirrored from solutions/12-ddpm-ddim-guidance/hidden_tests.py on the notebook's own
reference solution."""
from __future__ import annotations

import importlib.util
import sys

import torch

from conftest import REPO
from outcomes import Check, outcome
from test_notebook_outcomes import solution_namespace

ASG = "12-ddpm-ddim-guidance"


def _hidden():
    """The hidden test module (its mixture, step budget, sampler and metric), loaded from the solutions folder."""
    spec = importlib.util.spec_from_file_location("hidden_12", REPO / "solutions" / ASG / "hidden_tests.py")
    sys.path.insert(0, str(REPO / "autograder"))  # its `probe.checks` imports
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _probe_generator(seed: int, salt: int) -> torch.Generator:
    """autograder/probe/checks.py's generator(seed, salt)."""
    return torch.Generator().manual_seed(1_000_003 * seed + salt)


@outcome("solutions/12-ddpm-ddim-guidance/hidden_tests.py: test_train_guided (mode fractions of guided DDIM samples)",
         [Check("fraction_err", "<", 0.17, "largest difference, over 2 classes x 4 modes, between the mode fractions of "
                "guided (w = 1) DDIM samples (50 steps, 1000 per class) of the model trained 3000 steps and those of the "
                "exact guided sampler from the same starting noise")],
         weaker="the same training with 300 steps instead of 3000 (an undertrained model)",
         extra={"asg": ASG, "file": "hidden_tests.py", "snippet": "if not err < 0.17:"})
def nb12_guided_mode_fractions(seed: int, weaker: bool = False) -> dict:
    hidden = _hidden()
    ns = solution_namespace(ASG)
    ns["BETAS"] = hidden.BETAS
    gen = _probe_generator(seed, 1207)
    x_train, y_train = hidden.labelled_sample(4000, gen)
    x_start = torch.randn(2 * hidden.PER_CLASS, 2, generator=_probe_generator(seed, 1208))
    torch.manual_seed(1_000_003 * seed + 1209)
    net = ns["train_guided"](x_train, y_train, 300 if weaker else hidden.TRAIN_STEPS)
    with torch.no_grad():
        err, _, _ = hidden.guided_error(net, x_start)
    return {"fraction_err": err}
