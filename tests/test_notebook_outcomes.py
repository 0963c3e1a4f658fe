"""Outcome checks of the graded notebooks, in the registry of tests/outcomes.py.

The graded cells of solutions/ assert thresholds on a few trained or sampled numbers (a
fitted flow's held-out NLL, a sampler's mode weights and spread, a Monte Carlo bound, an
unbiasedness z-test). Each is mirrored here on the reference solution, with the data
drawn the way the cell draws it at grading seed ``s`` (``seeded(n)`` in the notebooks'
setup cell is ``torch.Generator().manual_seed(1000 * s + n)``), so ``make margins`` can
measure it over seeds and against a weaker model. Where the hidden test already pins the
student's function to flowlib's reference with the same generator (to 1e-9), the reference
is flowlib's; the training exercise runs the notebook's own reference solution.
``test_thresholds_match_the_notebooks`` keeps each threshold here equal to the notebook's.
"""
from __future__ import annotations

import importlib
import math

import nbformat
import pytest
import torch

import flowlib
from conftest import REPO
from flowlib import VESDE, VPSDE, GaussianMixture
from outcomes import REGISTRY, Check, outcome


def seeded(seed: int, n: int) -> torch.Generator:
    """The notebooks' ``seeded(n)`` at grading seed ``seed``."""
    return torch.Generator().manual_seed(1000 * seed + n)


def _notebook(asg: str) -> nbformat.NotebookNode:
    return nbformat.read(REPO / "solutions" / asg / f"{asg}.ipynb", as_version=4)


def solution_namespace(asg: str) -> dict:
    """The reference solution's functions: every solution cell of the source notebook, run
    in a namespace with what the setup cell provides (on the CPU)."""
    ns = {"torch": torch, "math": math, "flowlib": flowlib, "DEVICE": torch.device("cpu")}
    for cell in _notebook(asg).cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
            exec(compile(cell.source, f"{asg}:{cell.metadata['nbgrader']['grade_id']}", "exec"), ns)
    return ns


def cell_source(asg: str, grade_id: str) -> str:
    cells = [c for c in _notebook(asg).cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
    assert len(cells) == 1, f"{asg}: no cell {grade_id}"
    return cells[0].source


# --------------------------------------------------------------------------- 01 fit_cdf_flow
def _mixture_sample(n, weights, means, stds, gen):
    c = torch.multinomial(torch.tensor(weights), n, replacement=True, generator=gen)
    return torch.tensor(means)[c] + torch.tensor(stds)[c] * torch.randn(n, generator=gen)


def _true_nll(x, weights, means, stds):
    comp = torch.distributions.Normal(torch.tensor(means, dtype=x.dtype), torch.tensor(stds, dtype=x.dtype))
    return -torch.logsumexp(torch.log(torch.tensor(weights, dtype=x.dtype)) + comp.log_prob(x[:, None]), dim=1).mean().item()


def _held_out_nll(x, params):
    _, log_density = flowlib.flows.onedim.mixture_cdf(x, *(p.to(torch.float64) for p in params))
    return -log_density.mean().item()


def _two_bumps(n, gen):  # the notebook's sampler: 0.35 N(-2, 0.5^2) + 0.65 N(1, 0.8^2)
    pick = torch.rand(n, generator=gen) < 0.35
    return torch.where(pick, -2 + 0.5 * torch.randn(n, generator=gen), 1 + 0.8 * torch.randn(n, generator=gen))


@outcome("solutions/01-change-of-variables: test_fit_cdf_flow (visible)",
         [Check("excess", "<", 0.08, "held-out NLL of the fitted 6-component flow minus the true density's, two bumps (nats)")],
         weaker="fit_cdf_flow with n_components=1 (one Gaussian CDF for a bimodal density)",
         extra={"asg": "01-change-of-variables", "cell": "test_fit_cdf_flow", "snippet": "got < target + 0.08"})
def nb01_fit_two_bumps(seed: int, weaker: bool = False) -> dict:
    fit_cdf_flow = solution_namespace("01-change-of-variables")["fit_cdf_flow"]
    gen = seeded(seed, 606)
    x_train, x_test = _two_bumps(1000, gen), _two_bumps(2000, gen).double()
    params = fit_cdf_flow(x_train, **({"n_components": 1} if weaker else {}))
    return {"excess": _held_out_nll(x_test, params) - _true_nll(x_test, [0.35, 0.65], [-2.0, 1.0], [0.5, 0.8])}


@outcome("solutions/01-change-of-variables/hidden_tests.py: test_fit_cdf_flow (three bumps)",
         [Check("excess", "<", 0.08, "held-out NLL of the fitted 8-component flow minus the true density's, three bumps, float64 (nats)")],
         weaker="fit_cdf_flow with n_components=2 (three bumps, two components)",
         extra={"asg": "01-change-of-variables", "file": "hidden_tests.py", "snippet": "got < target + 0.08"})
def nb01_fit_three_bumps(seed: int, weaker: bool = False) -> dict:
    fit_cdf_flow = solution_namespace("01-change-of-variables")["fit_cdf_flow"]
    # hidden_tests.py draws from autograder/probe/checks.py's generator(seed, 707)
    gen, spec = torch.Generator().manual_seed(1_000_003 * seed + 707), ([0.5, 0.3, 0.2], [-3.0, 0.0, 4.0], [1.0, 0.4, 0.7])
    x_train, x_test = _mixture_sample(1500, *spec, gen).double(), _mixture_sample(3000, *spec, gen).double()
    params = fit_cdf_flow(x_train, n_components=2 if weaker else 8)
    return {"excess": _held_out_nll(x_test, params) - _true_nll(x_test, *spec)}


# --------------------------------------------------------------------------- 05 dequantization
@outcome("solutions/05-dequantization/hidden_tests.py: test_dequantize (offsets)",
         [Check("mean_err", "<", 0.1, "|mean of the offsets u - 1/2|, worst of 3 cases (1500 to 4096 values)"),
          Check("var_err", "<", 0.025, "|variance of the offsets u - 1/12|, worst of 3 cases")],
         weaker="offsets of half the cell width (u / 2)",
         extra={"asg": "05-dequantization", "file": "hidden_tests.py",
                "snippet": "abs(off.mean().item() - 0.5) < 0.1 and abs(off.var().item() - 1 / 12) < 0.025"})
def nb05_dequantize_offsets(seed: int, weaker: bool = False) -> dict:
    from flowlib.flows.dequantization import uniform_dequantize

    mean_err = var_err = 0.0
    for s, n_bins, shape, dtype in [(11, 17, (64, 1, 8, 8), torch.float64), (12, 256, (32, 3, 4, 4), torch.float32),
                                    (13, 2, (500, 3), torch.float64)]:
        # hidden_tests.py draws from autograder/probe/checks.py's generator(seed, s) and (seed, s + 100)
        xi = torch.randint(n_bins, shape, generator=torch.Generator().manual_seed(1_000_003 * seed + s))
        y = uniform_dequantize(xi, n_bins, generator=torch.Generator().manual_seed(1_000_003 * seed + s + 100), dtype=dtype)
        off = (y.double() * n_bins - xi.double()).flatten()
        off = off / 2 if weaker else off
        mean_err, var_err = max(mean_err, abs(off.mean().item() - 0.5)), max(var_err, abs(off.var().item() - 1 / 12))
    return {"mean_err": mean_err, "var_err": var_err}


def _toy_bound(seed: int, shift: float = 0.0):
    from flowlib.flows.dequantization import dequantized_log_likelihood
    from flowlib.flows.onedim import Affine

    toy = flowlib.Flow(flowlib.StandardNormal(1), Affine(0.45, 0.15, shape=(1,), learnable=False)).double()
    k = torch.arange(4, dtype=torch.float64)
    exact = torch.log(torch.special.ndtr(((k + 1) / 4 - 0.45) / 0.15) - torch.special.ndtr((k / 4 - 0.45) / 0.15))
    reps = 3000
    with torch.no_grad():
        # hidden_tests.py seeds the student's generator like autograder/probe/checks.py's generator(seed, 46)
        ll = dequantized_log_likelihood(toy, torch.arange(4)[:, None].repeat(reps, 1), 4,
                                        generator=torch.Generator().manual_seed(1_000_003 * seed + 46)).reshape(reps, 4)
    ll = ll + shift
    mean, stderr = ll.mean(0), ll.std(0) / math.sqrt(reps)
    return mean, stderr, exact


@outcome("solutions/05-dequantization/hidden_tests.py: test_dequantized_log_likelihood (bound below exact)",
         [Check("z_above", "<", 4.0, "max over the 4 bins of (bound - exact log P) / standard error, 3000 draws (a 4-sigma test)", kind="z")],
         weaker="the bound with -D log(n_bins - 1) for -D log n_bins (log(4/3) too high)",
         extra={"asg": "05-dequantization", "file": "hidden_tests.py", "snippet": "(mean <= exact + 4 * stderr).all()"})
def nb05_bound_below_exact(seed: int, weaker: bool = False) -> dict:
    mean, stderr, exact = _toy_bound(seed, math.log(4 / 3) if weaker else 0.0)
    return {"z_above": ((mean - exact) / stderr).max().item()}


@outcome("solutions/05-dequantization/hidden_tests.py: test_dequantized_log_likelihood (bound close to exact)",
         [Check("gap", "<", 1.2, "max over the 4 bins of exact log P - bound (nats)")],
         weaker="the bound with the log-determinant of y = (x + u) / n_bins counted twice (log 4 too low)",
         extra={"asg": "05-dequantization", "file": "hidden_tests.py", "snippet": "(mean > exact - 1.2).all()"})
def nb05_bound_close_to_exact(seed: int, weaker: bool = False) -> dict:
    mean, _, exact = _toy_bound(seed, -math.log(4) if weaker else 0.0)
    return {"gap": (exact - mean).max().item()}


# --------------------------------------------------------------------------- 06 / 07 Langevin
@outcome("solutions/06-score-matching/hidden_tests.py: test_langevin_chain (stationary variance)",
         [Check("var_rel", "<", 0.1, "relative error of the variance of 4000 chains after 300 steps against the ULA variance")],
         weaker="the same chains after 10 steps (not mixed)",
         extra={"asg": "06-score-matching", "file": "hidden_tests.py", "snippet": "abs(var - target) < 0.1 * target"})
def nb06_langevin_variance(seed: int, weaker: bool = False) -> dict:
    tau, eps = 1.5, 0.2
    # hidden_tests.py draws from autograder/probe/checks.py's generator(seed, 43)
    stat = flowlib.langevin(lambda t: -t / tau**2, torch.zeros(4000, 1, dtype=torch.float64), eps, 10 if weaker else 300,
                            generator=torch.Generator().manual_seed(1_000_003 * seed + 43))
    target = tau**2 / (1 - eps / (2 * tau**2))
    return {"var_rel": abs(stat.var().item() - target) / target}


def _langevin_level_chain(seed: int, steps: int = 150, noise: float = 2.0):
    """``steps`` Langevin steps at alpha = 0.05 on N(mu, 0.25 I) from 0."""
    mu, s2, alpha = torch.tensor([1.0, -2.0], dtype=torch.float64), 0.25, 0.05
    # hidden_tests.py draws from autograder/probe/checks.py's generator(seed, 9)
    gen, x = torch.Generator().manual_seed(1_000_003 * seed + 9), torch.zeros(40000, 2, dtype=torch.float64)
    for _ in range(steps):
        x = x - alpha * (x - mu) / s2 + math.sqrt(noise * alpha) * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    return x, mu, s2 / (1 - alpha / (2 * s2))


@outcome("solutions/07-annealed-langevin/hidden_tests.py: test_langevin_level (chain mean)",
         [Check("mean_err", "<", 0.05, "max |mean of 40000 chains - mu| after 150 steps at alpha = 0.05")],
         weaker="the same chains after 15 steps",
         extra={"asg": "07-annealed-langevin", "file": "hidden_tests.py", "snippet": "(chain.mean(0) - mu).abs().max().item() < 0.05"})
def nb07_langevin_level_mean(seed: int, weaker: bool = False) -> dict:
    chain, mu, _ = _langevin_level_chain(seed, steps=15 if weaker else 150)
    return {"mean_err": (chain.mean(0) - mu).abs().max().item()}


@outcome("solutions/07-annealed-langevin/hidden_tests.py: test_langevin_level (chain variance)",
         [Check("var_rel", "<", 0.06, "max relative error of the variance of those chains against the ULA variance (10% above the exact one)")],
         weaker="exact samples of N(mu, 0.25 I), without the ULA bias of alpha = 0.05",
         extra={"asg": "07-annealed-langevin", "file": "hidden_tests.py",
                "snippet": "((chain.var(0) / ula_var) - 1).abs().max().item() < 0.06"})
def nb07_langevin_level_var(seed: int, weaker: bool = False) -> dict:
    chain, mu, ula_var = _langevin_level_chain(seed)
    if weaker:
        chain = mu + 0.5 * torch.randn(chain.shape, generator=torch.Generator().manual_seed(1_000_003 * seed + 9), dtype=chain.dtype)
    return {"var_rel": ((chain.var(0) / ula_var) - 1).abs().max().item()}


@outcome("solutions/07-annealed-langevin/hidden_tests.py: test_annealed_langevin_sampler (mode weights)",
         [Check("weight_err", "<", 0.1, "|fraction of 800 chains in the 0.8 mode - 0.8|, 10 levels x 50 steps")],
         weaker="plain Langevin at the smallest level only (sigma = 1, 500 steps): stuck with the initial split",
         extra={"asg": "07-annealed-langevin", "file": "hidden_tests.py", "snippet": "abs(w - 0.8) < 0.1"})
def nb07_mode_weights(seed: int, weaker: bool = False) -> dict:
    from flowlib.diffusion.score import geometric_sigmas

    two = GaussianMixture(torch.tensor([0.8, 0.2], dtype=torch.float64), torch.tensor([[-4.0, -4.0], [4.0, 4.0]], dtype=torch.float64), stds=1.0)
    gen = torch.Generator().manual_seed(1_000_003 * seed + 909)  # hidden_tests.py's generator(seed, 909)
    6 * torch.rand(200, 2, generator=gen, dtype=torch.float64)  # the test draws x0 first from the same generator
    x_uniform = 16 * torch.rand(800, 2, generator=gen, dtype=torch.float64) - 8
    sigmas = torch.ones(1, dtype=torch.float64) if weaker else geometric_sigmas(20.0, 1.0, 10, dtype=torch.float64)
    x = flowlib.annealed_langevin(lambda v, s: two.affine_score(v, 1.0, s), x_uniform, sigmas, 0.1, 500 if weaker else 50,
                                  generator=torch.Generator().manual_seed(1_000_003 * seed + 5))
    return {"weight_err": abs((x.sum(1) < 0).double().mean().item() - 0.8)}


# --------------------------------------------------------------------------- 08 Euler-Maruyama
@outcome("solutions/08-sde-sampling/hidden_tests.py: test_em_sampler (the visible case, repeated)",
         [Check("std_err", "<", 0.15, "|std of 2000 samples of N(0, 1) - 1|, VP SDE, 50 steps")],
         weaker="the sampler returning x_T scaled by 1/2 (a lost noise term)",
         extra={"asg": "08-sde-sampling", "file": "hidden_tests.py", "snippet": "abs(x.std().item() - 1.0) < 0.15"})
def nb08_em_gaussian(seed: int, weaker: bool = False) -> dict:
    sde = VPSDE(0.1, 20.0)
    # hidden_tests.py draws from autograder/probe/checks.py's generator(seed, 0) and seeds the
    # student's generator like generator(seed, 1)
    x_T = torch.randn(2000, 1, generator=torch.Generator().manual_seed(1_000_003 * seed + 0))
    if weaker:
        x = 0.5 * x_T
    else:
        x = flowlib.euler_maruyama(lambda x, t: -x, sde, None, n_steps=50, x_T=x_T,
                                   generator=torch.Generator().manual_seed(1_000_003 * seed + 1))
    return {"std_err": abs(x.std().item() - 1.0)}


def _em_experiment(sde_name: str, n_steps: int, weak_steps: int):
    @outcome(f"solutions/08-sde-sampling/hidden_tests.py: test_em_sampler ({sde_name} SDE, exact mixture score)",
             [Check("mode_err", "<", 0.04, f"|fraction of 3000 samples nearer the 0.7 mode - 0.7|, {n_steps} steps"),
              Check("std_err", "<", 0.13, "|std of the samples within 2 of that mode - 0.5|")],
             weaker=f"the same sampler with {weak_steps} steps", name=f"nb08_em_mixture_{sde_name}",
             extra={"asg": "08-sde-sampling", "file": "hidden_tests.py", "snippet": "abs(near.std(0).mean().item() - 0.5) < 0.13"})
    def run(seed: int, weaker: bool = False) -> dict:
        sde = VPSDE(0.1, 20.0) if sde_name == "VP" else VESDE(0.01, 10.0)
        gmm = GaussianMixture([0.7, 0.3], [[-2.0, -1.0], [2.0, 1.5]], stds=[0.5, 0.4]).to(torch.float64)
        # hidden_tests.py draws from autograder/probe/checks.py's generator(seed, 8) and seeds the
        # student's generator like generator(seed, 10)
        x_T = sde.prior_sample((3000, 2), generator=torch.Generator().manual_seed(1_000_003 * seed + 8), dtype=torch.float64)
        samples = flowlib.euler_maruyama(lambda x, t: gmm.score_at(x, t, sde), sde, None, n_steps=weak_steps if weaker else n_steps,
                                         x_T=x_T, generator=torch.Generator().manual_seed(1_000_003 * seed + 10))
        first = ((samples - gmm.means[0]).norm(dim=1) < (samples - gmm.means[1]).norm(dim=1)).double().mean().item()
        near = samples[(samples - gmm.means[0]).norm(dim=1) < 2.0]
        return {"mode_err": abs(first - 0.7), "std_err": abs(near.std(0).mean().item() - 0.5)}
    return run


EM_MIXTURE = [_em_experiment("VP", 200, 4), _em_experiment("VE", 300, 5)]


# --------------------------------------------------------------------------- 09 Hutchinson
@outcome("solutions/09-ode-likelihood/hidden_tests.py: test_hutchinson_divergence (unbiasedness)",
         [Check("z", "<", 5.0, "|mean of 4000 Rademacher estimates - exact trace| in standard errors (a 5-sigma test)", kind="z")],
         weaker="one constant probe 1 for every row (the sum of all Jacobian entries, which the notebook warns about)",
         extra={"asg": "09-ode-likelihood", "file": "hidden_tests.py", "snippet": "< 5 * se + 1e-9"})
def nb09_hutchinson_divergence(seed: int, weaker: bool = False) -> dict:
    # hidden_tests.py draws from autograder/probe/checks.py's generator(seed, 903)
    gen, D = torch.Generator().manual_seed(1_000_003 * seed + 903), 6
    W = torch.randn(D, D, generator=gen, dtype=torch.float64)
    b = torch.randn(D, generator=gen, dtype=torch.float64)
    xs = torch.randn(30, D, generator=gen, dtype=torch.float64)
    torch.randint(0, 2, (30, D), generator=gen)  # the cell's probes for the value test
    jac = (1 - torch.tanh(xs[:1] @ W.T + b) ** 2)[:, :, None] * W
    probes = 2 * torch.randint(0, 2, (4000, D), generator=gen).double() - 1
    probes = torch.ones_like(probes) if weaker else probes
    est = torch.einsum("bi,ij,bj->b", probes, jac[0], probes)
    se = est.std().item() / math.sqrt(4000)
    return {"z": abs(est.mean().item() - torch.diagonal(jac[0]).sum().item()) / max(se, 1e-12)}


@outcome("solutions/09-ode-likelihood/hidden_tests.py: test_ode_log_likelihood_hutchinson (unbiasedness)",
         [Check("z", "<", 5.0, "|mean of 300 Hutchinson log-likelihoods - exact-trace value| in standard errors", kind="z")],
         weaker="one probe shared by all 300 rows (standard error 0)",
         extra={"asg": "09-ode-likelihood", "file": "hidden_tests.py", "snippet": "< 5 * se + 1e-6"})
def nb09_hutchinson_log_likelihood(seed: int, weaker: bool = False) -> dict:
    gmm = GaussianMixture(torch.tensor([0.3, 0.7], dtype=torch.float64),
                          torch.tensor([[-2.0, 0.5, 0.0], [1.5, -1.0, 1.0]], dtype=torch.float64),
                          stds=torch.tensor([[0.5, 0.3, 0.9], [0.8, 1.1, 0.4]], dtype=torch.float64))
    sde = VPSDE(0.1, 20.0)
    score = lambda v, u: gmm.score_at(v, u, sde)  # noqa: E731
    # hidden_tests.py draws from autograder/probe/checks.py's generator(seed, 905) and seeds the
    # student's generator like generator(seed, 13)
    xs = gmm.sample(10, generator=torch.Generator().manual_seed(1_000_003 * seed + 905))
    exact_one, _ = flowlib.ode_log_prob(score, sde, xs[:1], trace="exact", method="rk4", n_steps=6)
    copies = xs[:1].expand(300, 3).clone()
    if weaker:
        many = flowlib.ode_log_prob(score, sde, copies[:1], trace="hutchinson", method="rk4", n_steps=6,
                                    generator=torch.Generator().manual_seed(1_000_003 * seed + 13))[0].expand(300)
    else:
        many, _ = flowlib.ode_log_prob(score, sde, copies, trace="hutchinson", method="rk4", n_steps=6,
                                       generator=torch.Generator().manual_seed(1_000_003 * seed + 13))
    se = many.std().item() / math.sqrt(300)
    return {"z": abs(many.mean().item() - exact_one.item()) / max(se, 1e-12)}


# the training exercises' experiments, one module per assignment (tests/notebook_outcomes/)
for _module in sorted((REPO / "tests" / "notebook_outcomes").glob("nb[0-9]*.py")):
    importlib.import_module(f"notebook_outcomes.{_module.stem}")

NOTEBOOK_EXPERIMENTS = [e for e in REGISTRY.values() if "asg" in e.extra]


@pytest.mark.parametrize("experiment", NOTEBOOK_EXPERIMENTS, ids=lambda e: e.name)
def test_reference_meets_the_notebook_threshold(experiment):
    experiment.check()


@pytest.mark.parametrize("experiment", NOTEBOOK_EXPERIMENTS, ids=lambda e: e.name)
def test_thresholds_match_the_notebooks(experiment):
    """The threshold measured here is the one the notebook asserts (its text appears in the cell)."""
    asg = experiment.extra["asg"]
    if "file" in experiment.extra:  # a grader-side hidden test (autograder/README.md)
        source = (REPO / "solutions" / asg / experiment.extra["file"]).read_text()
    else:
        source = cell_source(asg, experiment.extra["cell"])
    assert experiment.extra["snippet"] in source, (
        f"{experiment.where}: the cell no longer contains {experiment.extra['snippet']!r}; update tests/test_notebook_outcomes.py")
