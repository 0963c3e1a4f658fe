"""Assignment 06's training exercise (fit_score_model): held-out relative score error of a network
trained by denoising score matching on a 2-D mixture, against the exact noisy score, mirrored from
its hidden test."""
from __future__ import annotations

import torch

from flowlib import GaussianMixture
from outcomes import Check, outcome
from test_notebook_outcomes import cell_source, solution_namespace

ASG = "06-score-matching"
MIX = ([0.3, 0.7], [[-2.0, 1.0], [1.5, -0.5]], [0.4, 0.6])
SIGMA = 0.3
NETWORK = "net = flowlib.ScoreMLP(2, hidden=64, n_layers=2).to(x_train.device)"
LINEAR = ("class LinearScore(torch.nn.Module):\n"
          "        def __init__(self):\n"
          "            super().__init__()\n"
          "            self.lin = torch.nn.Linear(2, 2)\n\n"
          "        def forward(self, x, sigma):\n"
          "            return self.lin(x)\n\n"
          "    net = LinearScore().to(x_train.device)")


def _mixture_samples(n, gen):  # the notebook's mixture_samples (and hidden_tests.py's _mixture_samples)
    comp = (torch.rand(n, generator=gen) >= MIX[0][0]).long()
    return torch.tensor(MIX[1])[comp] + torch.tensor(MIX[2])[comp, None] * torch.randn(n, 2, generator=gen)


@outcome("solutions/06-score-matching/hidden_tests.py: test_fit_score_model (held-out relative score error)",
         [Check("rel", "<", 0.2, "E||s - grad log p_sigma||^2 / E||grad log p_sigma||^2 on 4000 held-out noisy points, "
                "sigma = 0.3, DSM-trained ScoreMLP (2 x 64), 800 steps")],
         weaker="fit_score_model with a linear score model s(x) = A x + b (the score of a single Gaussian)",
         extra={"asg": ASG, "file": "hidden_tests.py", "snippet": "if not rel < 0.2:"})
def nb06_fit_score_model(seed: int, weaker: bool = False) -> dict:
    ns = solution_namespace(ASG)
    if weaker:
        source = cell_source(ASG, "fit_score_model")
        assert NETWORK in source, "the reference no longer builds a ScoreMLP: update nb06.py"
        exec(compile(source.replace(NETWORK, LINEAR), f"{ASG}:fit_score_model (linear)", "exec"), ns)
    # hidden_tests.py draws from autograder/probe/checks.py's generator(seed, 610) and seeds the
    # student's torch with student.seed(seed + 1)
    gen = torch.Generator().manual_seed(1_000_003 * seed + 610)
    x_train = _mixture_samples(2000, gen)
    torch.manual_seed(seed + 1)
    net = ns["fit_score_model"](x_train, SIGMA)
    x = _mixture_samples(4000, gen)
    x = x + SIGMA * torch.randn(x.shape, generator=gen)
    f64 = torch.float64
    noisy = GaussianMixture(torch.tensor(MIX[0], dtype=f64), torch.tensor(MIX[1], dtype=f64),
                            stds=torch.sqrt(torch.tensor(MIX[2], dtype=f64) ** 2 + SIGMA**2)).double()
    exact = noisy.score(x.double())
    with torch.no_grad():
        s = net(x, torch.full((4000,), SIGMA)).double()
    return {"rel": (((s - exact) ** 2).sum(1).mean() / (exact**2).sum(1).mean()).item()}
