"""Hidden tests of assignment 09, run by the grader (autograder/verdicts.py), never by students.

One function per graded test cell, named by the cell's grade_id, called as ``fn(student, seed)``:
``student`` calls the student's functions in the student's own process (autograder/probe),
``seed`` is the grading seed, from which every random input is drawn. Expected answers are
computed here, in the grader's process, with the real flowlib (``flowlib.diffusion.ode``,
``flowlib.diffusion.score``) and the exact densities of Gaussian mixtures. The functions the student's
code differentiates (score functions, ``fn`` of the divergences) are differentiable grader
functions (``student.function(..., differentiable=True)``): the grader evaluates them and their
vector-Jacobian products, and counts the calls. The SDEs and the generators are built in the
student's process, seeded there with the same number as the grader's generator. A function
passes when it returns; any exception fails the cell with its message. The visible tests of the
notebook are repeated here: points come only from these functions.
"""
from __future__ import annotations

import math

import torch

from flowlib import VESDE, VPSDE, GaussianMixture, ode_log_prob
from flowlib.diffusion.ode import probability_flow_drift
from flowlib.diffusion.score import jacobian_trace
from probe.checks import close, finite, generator, one_thread, tensor
from probe.wire import Handle

F64, F32 = torch.float64, torch.float32

#: flowlib references replaced by stubs that raise in the student's process
STUB = ["flowlib.diffusion.ode.probability_flow_drift", "flowlib.diffusion.score.jacobian_trace", "flowlib.diffusion.ode.ode_log_prob",
        "flowlib.diffusion.ode._rk4", "flowlib.diffusion.sde.sde_dsm_loss",
        # the generic CNF likelihood and sampler that ode_log_prob is built on (flow matching's too)
        "flowlib.diffusion.ode.velocity_log_prob", "flowlib.diffusion.ode.velocity_sample", "flowlib.diffusion.flow_matching.fm_log_prob"]

#: time limit per test cell in seconds (default: FLOWLIB_CELL_TIMEOUT, 120)
TIMEOUTS: dict[str, float] = {}

#: graded cells that check a result the student derived by hand (a number or a formula)
DERIVATIONS = ["test_ve_gauss_derivation"]

#: the solution cells each slow test runs: tests/run_mutants.py skips it for a mutant of any other
#: cell (grading always runs every test)
USES: dict[str, list[str]] = {"test_train_ve_score": ["train_ve_score"],
                              "test_ode_log_likelihood_exact": ["pf_drift", "exact_divergence", "hutchinson_divergence", "ode_log_likelihood"],
                              "test_ode_log_likelihood_hutchinson": ["pf_drift", "exact_divergence", "hutchinson_divergence",
                                                                     "ode_log_likelihood"]}


# ------------------------------------------------------------------------- helpers


def _sde(student, sde):
    """The same SDE, built in the student's process (a handle to pass to the student's functions)."""
    if isinstance(sde, VESDE):
        return student.new("VESDE", sde.sigma_min, sde.sigma_max)
    return student.new("VPSDE", sde.beta_min, sde.beta_max)


def _generators(student, seed: int, salt: int):
    """(the grader's generator(seed, salt), a generator in the student's process in the same state)."""
    return generator(seed, salt), student.generator(1_000_003 * int(seed) + int(salt))


# exact_divergence's and ode_log_likelihood(trace="exact")'s functions are built in the
# student's process (plain torch and flowlib's mixture oracle): any correct way of taking the
# trace works on them, torch.func's jacrev and vmap included, which cannot differentiate
# through a grader function. The answers are still computed here.
_DIVERGENCE_HELPERS = '''
import math
import torch
import flowlib

def _grader_linear(A):
    def fn(v):
        return v @ A.T.to(v.dtype)
    return fn

def _grader_gauss_score(sigma_min, sigma_max):  # data N(0, I) under the VE SDE: p_t = N(0, (1 + sigma_t^2) I)
    sde = flowlib.VESDE(sigma_min, sigma_max)
    def score(v, s):
        return -v / (1 + sde.marginal_coefficients(s)[1][:, None] ** 2)
    return score

def _grader_gauss_log_pT(sigma_min, sigma_max):
    sde = flowlib.VESDE(sigma_min, sigma_max)
    def log_pT(z):
        var = 1 + sde.marginal_coefficients(torch.tensor(1.0, dtype=z.dtype))[1].item() ** 2
        return -0.5 * (z**2).sum(1) / var - math.log(2 * math.pi * var)
    return log_pT

def _grader_mixture(weights, means, stds, kind, a, b):  # (its exact score at time t, its exact log p_T)
    gmm = flowlib.GaussianMixture(weights, means, stds=stds)
    sde = flowlib.VPSDE(a, b) if kind == "VP" else flowlib.VESDE(a, b)
    def score(v, u):
        u = u.to(v.device, torch.float64) if torch.is_tensor(u) else u
        return gmm.to(v.device).score_at(v.double(), u, sde).to(v.dtype)
    def log_pT(z):
        return gmm.to(z.device).marginal_at(1.0, sde).log_prob(z.double()).to(z.dtype)
    return score, log_pT

def _grader_elementwise():
    return torch.tanh  # defined for x of any shape: a wrong shape must be refused by exact_divergence itself

def _grader_scaled_score(weights, means, covs, ts):
    gmm, sde = flowlib.GaussianMixture(weights, means, covs=covs), flowlib.VPSDE(0.1, 20.0)
    def fn(v):  # (mixture score at x under the VP SDE at ts) * (1 + x_0^2), in x's dtype
        out = gmm.score_at(v.double(), ts.to(v.device, torch.float64), sde) * (1 + v[:, :1].double() ** 2)
        return out.to(v.dtype)
    return fn
'''


def _fn(student, fn, name: str, seen: list | None = None, max_calls: int = 5000):
    """A differentiable grader function for the student's code; ``seen`` records the second
    argument (a score function's t): (shape, dtype, device type), or its type if not a tensor."""
    def wrapped(x, *rest):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"{name} takes a floating-point tensor x, got {type(x).__name__}")
        if seen is not None and rest:
            t = rest[0]
            seen.append((tuple(t.shape), t.dtype, getattr(t, "probe_device", "cpu").split(":")[0])
                        if isinstance(t, torch.Tensor) else type(t).__name__)
        return fn(x, *rest)

    return student.function(wrapped, max_calls=max_calls, name=name, differentiable=True)


def _detached(t, what):
    if getattr(t, "probe_requires_grad", False):
        raise AssertionError(f"{what}: return a detached tensor (it requires grad)")


def _gmm(weights, means, **kw):
    return GaussianMixture(torch.tensor(weights, dtype=F64), torch.tensor(means, dtype=F64),
                           **{k: torch.tensor(v, dtype=F64) for k, v in kw.items()})


# ------------------------------------------------------------------------- Exercise 1
@one_thread
def test_pf_drift(student, seed):
    # the visible case: beta = 2 (f = -x, g^2 = 2) and the score -x / 4 of N(0, 4 I): drift -0.75 x
    x = torch.tensor([[2.0, -4.0], [0.0, 1.0]])
    what = "pf_drift(score_fn = -x / 4, VPSDE(2.0, 2.0), float32 (2, 2), t=0.3)"
    d = tensor(student.call("pf_drift", _fn(student, lambda v, s: -v / 4, "-x / 4"), _sde(student, VPSDE(2.0, 2.0)), x, 0.3),
               what, shape=(2, 2), dtype=F32)
    close(d, torch.tensor([[-1.5, 3.0], [0.0, -0.75]]), 1e-6, what + ": the drift is -x + 0.5 * 2 * x / 4 = -0.75 x")

    gen = generator(seed, 901)
    gmm = _gmm([0.3, 0.7], [[-2.0, 0.5, 1.0], [1.5, -1.0, 0.0]], stds=[0.5, 0.8])
    xs = 2 * torch.randn(50, 3, generator=gen, dtype=F64)
    ts = torch.rand(50, generator=gen, dtype=F64)
    seen: list = []
    device = torch.device(student.device).type
    for sde in (VPSDE(0.1, 20.0), VESDE(0.01, 10.0)):
        score = lambda v, s, sde=sde: gmm.score_at(v, s, sde)  # noqa: E731
        ref_a = probability_flow_drift(score, sde, xs, ts)
        ref_b = probability_flow_drift(score, sde, xs, 0.37)
        oracle, handle = _fn(student, score, "the exact mixture score", seen), _sde(student, sde)
        what = f"pf_drift(exact mixture score, {sde}, float64 (50, 3), t float64 (50,))"
        got_a = tensor(student.call("pf_drift", oracle, handle, xs, ts), what, shape=(50, 3), dtype=F64)
        close(got_a, ref_a, 1e-9 * (1 + ref_a.abs().max().item()), what + " (is it 0.5 g^2?)")
        what = f"pf_drift(exact mixture score, {sde}, float64 (50, 3), t=0.37)"
        got_b = tensor(student.call("pf_drift", oracle, handle, xs, 0.37), what, shape=(50, 3), dtype=F64)
        close(got_b, ref_b, 1e-9 * (1 + ref_a.abs().max().item()), what + " (is it 0.5 g^2?)")
    sde = VPSDE(0.1, 20.0)
    what = f"pf_drift(exact mixture score, {sde}, float32 (50, 3), t float32 (50,))"
    got32 = tensor(student.call("pf_drift", _fn(student, lambda v, s: gmm.score_at(v, s, sde), "the exact mixture score", seen),
                                _sde(student, sde), xs.float(), ts.float()), what, shape=(50, 3), dtype=F32)
    close(got32, probability_flow_drift(lambda v, s: gmm.score_at(v, s, sde), sde, xs, ts), 1e-3, what)
    if len(seen) != 5:
        raise AssertionError(f"pf_drift: call score_fn exactly once per call of pf_drift ({len(seen)} calls for 5)")
    bad = [c for c in seen[:4] if c != ((50,), F64, device)]
    if bad:
        raise AssertionError("pf_drift(..., float64 (50, 3), t): score_fn must get t as a (batch,) tensor with x's dtype "
                             f"and device, got {bad[0]}")


# ------------------------------------------------------------------------- Exercise 2
@one_thread
def test_exact_divergence(student, seed):
    # the visible case: x -> x A^T has Jacobian A, trace 1 + 4 = 5 everywhere
    A = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    x = torch.randn(3, 2, generator=generator(seed, 1))
    what = "exact_divergence(x -> x A^T with A = [[1, 2], [3, 4]], float32 (3, 2))"
    student.define(_DIVERGENCE_HELPERS)
    div = tensor(student.call("exact_divergence", student.call("_grader_linear", A), x), what, shape=(3,), dtype=F32)
    close(div, torch.full((3,), 5.0), 1e-5, what + ": the trace of A is 5 (the sum of ALL entries would be 10)")

    gen = generator(seed, 902)
    sde = VPSDE(0.1, 20.0)
    D = 5
    covs = torch.randn(2, D, D, generator=gen, dtype=F64)
    covs = 0.3 * covs @ covs.transpose(1, 2) + 0.2 * torch.eye(D, dtype=F64)
    gmm = GaussianMixture(torch.tensor([0.4, 0.6], dtype=F64), torch.randn(2, D, generator=gen, dtype=F64), covs=covs)
    xs = 1.5 * torch.randn(40, D, generator=gen, dtype=F64)
    ts = 0.05 + 0.9 * torch.rand(40, generator=gen, dtype=F64)

    def fn(v):  # nonlinear, non-symmetric Jacobian
        return gmm.score_at(v, ts, sde) * (1 + v[:, :1] ** 2)

    _, ref = jacobian_trace(fn, xs)
    student.define(_DIVERGENCE_HELPERS)
    student_fn = student.call("_grader_scaled_score", gmm.weights, gmm.means, covs, ts)
    tol = 1e-9 * (1 + ref.abs().max().item())
    name = "fn(x) = (mixture score at x) * (1 + x_0^2)"
    what = f"exact_divergence({name}, float64 (40, 5))"
    got = tensor(student.call("exact_divergence", student_fn, xs), what, shape=(40,), dtype=F64)
    _detached(got, what)
    close(got, ref, tol, what + " against flowlib's jacobian_trace (the diagonal only?)")

    what = f"exact_divergence({name}, float64 (40, 5)) inside torch.no_grad()"
    student.set_grad_enabled(False)
    try:
        got_ng = tensor(student.call("exact_divergence", student_fn, xs), what, shape=(40,), dtype=F64)
    finally:
        student.set_grad_enabled(True)
    close(got_ng, ref, tol, what + " (use torch.enable_grad())")

    what = f"exact_divergence({name}, float32 (40, 5))"
    got32 = tensor(student.call("exact_divergence", student_fn, xs.float()), what, shape=(40,), dtype=F32)
    close(got32, ref, 1e-3 * (1 + ref.abs().max().item()), what)

    any_shape = student.call("_grader_elementwise")
    student.raises(ValueError, "exact_divergence", any_shape, xs[0])
    # any other number of dimensions, also 3 (issue 19: every raises clause)
    student.raises(ValueError, "exact_divergence", any_shape, xs[:, :, None])


# ------------------------------------------------------------------------- Exercise 3
@one_thread
def test_hutchinson_divergence(student, seed):
    # thresholds: bench/outcome-margins.md (nb09_hutchinson_divergence)
    # the visible case: x -> x A^T: v^T A v = 10 for v = (1, 1), 0 for v = (1, -1)
    A = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    x = torch.randn(2, 2, generator=generator(seed, 2))
    v = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    what = "hutchinson_divergence(x -> x A^T with A = [[1, 2], [3, 4]], float32 (2, 2), probe [[1, 1], [1, -1]])"
    est = tensor(student.call("hutchinson_divergence", _fn(student, lambda u: u @ A.T.to(u.dtype), "x -> x A^T"), x, v),
                 what, shape=(2,), dtype=F32)
    close(est, torch.tensor([10.0, 0.0]), 1e-5, what + ": v^T A v")

    gen = generator(seed, 903)
    D = 6
    W = torch.randn(D, D, generator=gen, dtype=F64)
    b = torch.randn(D, generator=gen, dtype=F64)

    def fn(u):  # tanh layer: Jacobian diag(1 - tanh^2) W, not symmetric
        return torch.tanh(u @ W.T.to(u.dtype) + b.to(u.dtype))

    name = "fn(x) = tanh(x W^T + b)"
    xs = torch.randn(30, D, generator=gen, dtype=F64)
    probes = (2 * torch.randint(0, 2, (30, D), generator=gen) - 1).to(F64)
    jac = (1 - torch.tanh(xs @ W.T + b) ** 2)[:, :, None] * W            # (batch, D, D), row i = d out_i / d x
    ref = torch.einsum("bi,bij,bj->b", probes, jac, probes)
    exact_tr = torch.diagonal(jac, dim1=1, dim2=2).sum(1)
    # unbiasedness: many probes at one point
    x0 = xs[:1].expand(4000, D)
    many = (2 * torch.randint(0, 2, (4000, D), generator=gen) - 1).to(F64)

    counted = _fn(student, fn, name)
    what = f"hutchinson_divergence({name}, float64 (30, 6), Rademacher probe float64 (30, 6))"
    got = tensor(student.call("hutchinson_divergence", counted, xs, probes), what, shape=(30,), dtype=F64)
    if len(counted.calls) != 1:
        raise AssertionError(f"{what}: call fn exactly once (called {len(counted.calls)} times)")
    _detached(got, what)
    close(got, ref, 1e-10, what + ": v^T J v (the probe must multiply the Jacobian on both sides)")

    what = f"hutchinson_divergence({name}, float64 (4000, 6) copies of one x, 4000 Rademacher probes) inside torch.no_grad()"
    student.set_grad_enabled(False)
    try:
        got_many = tensor(student.call("hutchinson_divergence", _fn(student, fn, name), x0, many), what,
                          shape=(4000,), dtype=F64)
    finally:
        student.set_grad_enabled(True)
    se = got_many.std().item() / math.sqrt(4000)
    if not abs(got_many.mean().item() - exact_tr[0].item()) < 5 * se + 1e-9:
        raise AssertionError(f"{what}: the mean {got_many.mean().item():.5f} is {abs(got_many.mean().item() - exact_tr[0].item()):.4f} "
                             f"from the exact trace {exact_tr[0].item():.5f}, more than 5 standard errors ({5 * se:.4f}): "
                             "the estimator should be unbiased")

    what = f"hutchinson_divergence({name}, float32 (30, 6), probe float32 (30, 6))"
    got32 = tensor(student.call("hutchinson_divergence", _fn(student, fn, name), xs.float(), probes.float()), what,
                   shape=(30,), dtype=F32)
    close(got32, ref, 1e-4, what)

    student.raises(ValueError, "hutchinson_divergence", _fn(student, fn, name), xs, probes[:, :3])


# ------------------------------------------------------------------------- Exercise 4
@one_thread
def test_ode_log_likelihood_exact(student, seed):
    # the visible case: data N(0, I) under VESDE(0.01, 5): p_t = N(0, (1 + sigma_t^2) I), exact p_T
    sde_ve = VESDE(0.01, 5.0)
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 2.0]])
    what = ("ode_log_likelihood(score of N(0, (1 + sigma_t^2) I) indexing t per sample, VESDE(0.01, 5.0), float32 (3, 2), "
            "n_steps=20, terminal_log_prob=log N(0, (1 + sigma_T^2) I))")
    student.define(_DIVERGENCE_HELPERS)
    lp = tensor(student.call("ode_log_likelihood", student.call("_grader_gauss_score", 0.01, 5.0), _sde(student, sde_ve), x,
                             n_steps=20, terminal_log_prob=student.call("_grader_gauss_log_pT", 0.01, 5.0)),
                what, shape=(3,), dtype=F32)
    close(lp, torch.tensor([-1.8378771, -2.3378771, -4.3378771]), 1e-2, what + ": log N(x; 0, I) up to the solver error")

    gen = generator(seed, 904)
    spec = ([0.3, 0.7], [[-2.0, 0.5], [1.5, -1.0]], [0.5, 0.8])
    gmm = _gmm(spec[0], spec[1], stds=spec[2])
    xs = gmm.sample(12, generator=gen)

    def student_mixture(sde):  # (score, log p_T) of the mixture, built in the student's process
        student.define(_DIVERGENCE_HELPERS)
        params = (sde.beta_min, sde.beta_max) if isinstance(sde, VPSDE) else (sde.sigma_min, sde.sigma_max)
        return student.call("_grader_mixture", *(torch.tensor(p, dtype=F64) for p in spec),
                            "VP" if isinstance(sde, VPSDE) else "VE", *params)

    for sde in (VPSDE(0.1, 20.0), VESDE(0.01, 10.0)):
        score = lambda v, u, sde=sde: gmm.score_at(v, u, sde)  # noqa: E731
        pT = gmm.marginal_at(1.0, sde).log_prob
        ref_T, _ = ode_log_prob(score, sde, xs, method="rk4", n_steps=7, eps=1e-3, terminal_log_prob=pT)
        ref_prior, _ = ode_log_prob(score, sde, xs, method="rk4", n_steps=5)
        (oracle, student_pT), handle = student_mixture(sde), _sde(student, sde)
        what = f"ode_log_likelihood(exact mixture score, {sde}, float64 (12, 2), n_steps=7, eps=0.001, terminal_log_prob=exact p_T)"
        got_T = tensor(student.call("ode_log_likelihood", oracle, handle, xs, n_steps=7, eps=1e-3,
                                    terminal_log_prob=student_pT), what, shape=(12,), dtype=F64)
        close(got_T, ref_T, 1e-8, what + " against ode_log_prob with the same RK4 grid "
                                         "(weights 1, 2, 2, 1? sign of the integral? grid from eps to T?)")
        what = f"ode_log_likelihood(exact mixture score, {sde}, float64 (12, 2), n_steps=5)"
        got_prior = tensor(student.call("ode_log_likelihood", oracle, handle, xs, n_steps=5), what, shape=(12,), dtype=F64)
        close(got_prior, ref_prior, 1e-8, what + ", prior terminal density (is log p_T(x(T)) included?)")

    sde = VPSDE(0.1, 20.0)
    (oracle, student_pT), handle = student_mixture(sde), _sde(student, sde)
    truth = gmm.log_prob_at(xs, 1e-5, sde)
    what = f"ode_log_likelihood(exact mixture score, {sde}, float64 (12, 2), n_steps=40, terminal_log_prob=exact p_T)"
    accurate = tensor(student.call("ode_log_likelihood", oracle, handle, xs, n_steps=40, terminal_log_prob=student_pT),
                      what, shape=(12,), dtype=F64)
    close(accurate, truth, 2e-3, what + ": with 40 steps and the exact p_T the result should match the exact log-density")
    what = f"ode_log_likelihood(exact mixture score, {sde}, float32 (12, 2), n_steps=3)"
    tensor(student.call("ode_log_likelihood", oracle, handle, xs.float(), n_steps=3), what, shape=(12,), dtype=F32)
    # eps = T is the boundary of 0 < eps < T (issue 19: the extremes the spec names)
    for bad in (dict(trace="stochastic"), dict(n_steps=0), dict(eps=0.0), dict(eps=1.5), dict(eps=1.0)):
        student.raises(ValueError, "ode_log_likelihood", oracle, handle, xs, **bad)


@one_thread
def test_ode_log_likelihood_hutchinson(student, seed):
    # thresholds: bench/outcome-margins.md (nb09_hutchinson_log_likelihood)
    # the visible case: N(0, I) data under the VP SDE: the drift is 0, log p = log N(x; 0, I) whatever the probe
    sde_vp = VPSDE(0.1, 20.0)
    x = torch.tensor([[0.5, -1.0], [2.0, 1.0]])
    what = "ode_log_likelihood(score_fn = -x, VPSDE(0.1, 20.0), float32 (2, 2), n_steps=4, trace='hutchinson', generator seeded 3)"
    a, b = (tensor(student.call("ode_log_likelihood", _fn(student, lambda v, s: -v, "-x"), _sde(student, sde_vp), x, n_steps=4,
                                trace="hutchinson", generator=student.generator(3)), what, shape=(2,), dtype=F32)
            for _ in range(2))
    if not torch.equal(a, b):
        raise AssertionError(f"{what}: the same generator seed must give the same result, got {a.tolist()} and {b.tolist()}")
    close(a, torch.tensor([-2.4628771, -4.3378771]), 1e-4, what + ": log N(x; 0, I)")

    gen = generator(seed, 905)
    gmm = _gmm([0.3, 0.7], [[-2.0, 0.5, 0.0], [1.5, -1.0, 1.0]], stds=[[0.5, 0.3, 0.9], [0.8, 1.1, 0.4]])
    sde = VPSDE(0.1, 20.0)
    score = lambda v, u: gmm.score_at(v, u, sde)  # noqa: E731
    oracle, handle = _fn(student, score, "the exact mixture score"), _sde(student, sde)
    xs = gmm.sample(10, generator=gen)
    gen11, sgen11 = _generators(student, seed, 11)
    ref, _ = ode_log_prob(score, sde, xs, trace="hutchinson", method="rk4", n_steps=6, generator=gen11)
    exact_one, _ = ode_log_prob(score, sde, xs[:1], trace="exact", method="rk4", n_steps=6)
    copies = xs[:1].expand(300, 3).clone()
    # the generator's state after exactly one probe draw of shape x.shape
    after_one = generator(seed, 12)
    torch.randint(0, 2, xs.shape, generator=after_one)

    what = f"ode_log_likelihood(exact mixture score, {sde}, float64 (10, 3), n_steps=6, trace='hutchinson', generator)"
    got = tensor(student.call("ode_log_likelihood", oracle, handle, xs, n_steps=6, trace="hutchinson", generator=sgen11),
                 what, shape=(10,), dtype=F64)
    close(got, ref, 1e-8, what + " against ode_log_prob(trace='hutchinson') with the same seed "
                                 "(one probe, drawn once, as documented)")
    sgen12 = _generators(student, seed, 12)[1]
    student.call("ode_log_likelihood", oracle, handle, xs, n_steps=6, trace="hutchinson", generator=sgen12)
    state = tensor(student.method(sgen12, "get_state"), "the generator's state")
    if not torch.equal(state, after_one.get_state()):
        raise AssertionError(f"{what}: draw the probe exactly once per solve (the generator did not advance by exactly "
                             "one draw of torch.randint(0, 2, x.shape))")

    what = f"ode_log_likelihood(exact mixture score, {sde}, 300 copies of one x float64 (300, 3), n_steps=6, trace='hutchinson', generator)"
    many = tensor(student.call("ode_log_likelihood", oracle, handle, copies, n_steps=6, trace="hutchinson",
                               generator=_generators(student, seed, 13)[1]), what, shape=(300,), dtype=F64)
    se = many.std().item() / math.sqrt(300)
    if not many.std().item() > 0:
        raise AssertionError(f"{what}: all 300 values are equal: each row must get its own probe entries")
    if not abs(many.mean().item() - exact_one.item()) < 5 * se + 1e-6:
        raise AssertionError(f"{what}: the mean {many.mean().item():.5f} is more than 5 standard errors ({5 * se:.4f}) from "
                             f"the exact-trace value {exact_one.item():.5f}: the Hutchinson log-likelihood should be unbiased")


# ------------------------------------------------------------------------- Exercise 5 (transfer)
def _log_mixture(x, weights, means, variances):
    """log sum_k w_k N(x; mu_k, v_k I) / sum_k w_k, written here (the oracle of Exercise 5)."""
    D = x.shape[1]
    sq = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    return torch.logsumexp(torch.log(weights / weights.sum()) - 0.5 * D * torch.log(2 * math.pi * variances)
                           - 0.5 * sq / variances, dim=1)


def _laplacian_autograd(x, weights, means, variances):
    """The Laplacian of the log-density above by double backward, kept differentiable (create_graph)."""
    with torch.enable_grad():
        x = x if x.requires_grad else x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(_log_mixture(x, weights, means, variances).sum(), x, create_graph=True)
        lap = torch.zeros(x.shape[0], dtype=x.dtype)
        for i in range(x.shape[1]):
            (row,) = torch.autograd.grad(grad[:, i].sum(), x, create_graph=True)
            lap = lap + row[:, i]
    return lap


def _laplacian_closed_form(x, weights, means, variances):
    """The same by the closed form derived by hand: with responsibilities r_k, component scores
    g_k = (mu_k - x) / v_k and the score s = sum_k r_k g_k, div s = sum_k r_k (|g_k|^2 - D / v_k) - |s|^2."""
    D = x.shape[1]
    r = torch.softmax(_log_mixture_terms(x, weights, means, variances), dim=1)
    g = (means[None] - x[:, None, :]) / variances[None, :, None]
    s = (r[:, :, None] * g).sum(1)
    return (r * ((g**2).sum(-1) - D / variances)).sum(1) - (s**2).sum(1)


def _log_mixture_terms(x, weights, means, variances):
    D = x.shape[1]
    sq = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    return torch.log(weights) - 0.5 * D * torch.log(variances) - 0.5 * sq / variances


def _mixture_case(gen, K, D, spread=2.0):
    weights = 0.2 + torch.rand(K, generator=gen, dtype=F64)          # positive, not normalised
    means = spread * torch.randn(K, D, generator=gen, dtype=F64)
    variances = 0.2 + torch.rand(K, generator=gen, dtype=F64)        # in [0.2, 1.2)
    return weights, means, variances


@one_thread
def test_mixture_score_divergence(student, seed):
    # the visible cases: one component N(0, 0.25 I) in D = 3 (-D / v = -12); two at +-e_1 with v = 1 at x = 0 (-1)
    x = torch.randn(4, 3, generator=generator(seed, 3))
    what = "mixture_score_divergence(x float32 (4, 3), one component N(0, 0.25 I))"
    lap = tensor(student.call("mixture_score_divergence", x, torch.tensor([1.0]), torch.zeros(1, 3), torch.tensor([0.25])),
                 what, shape=(4,), dtype=F32)
    close(lap, torch.full((4,), -12.0), 1e-4, what + ": -D / v = -12 everywhere")
    what = "mixture_score_divergence(x = 0 float64 (1, 2), 0.5 N((1, 0), I) + 0.5 N((-1, 0), I))"
    lap = tensor(student.call("mixture_score_divergence", torch.zeros(1, 2, dtype=F64), torch.tensor([0.5, 0.5], dtype=F64),
                              torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=F64), torch.tensor([1.0, 1.0], dtype=F64)),
                 what, shape=(1,), dtype=F64)
    close(lap, torch.tensor([-1.0], dtype=F64), 1e-12, what)

    gen = generator(seed, 906)
    for K, D, n in ((3, 2, 40), (4, 5, 30), (2, 1, 25), (1, 4, 10)):
        w, mu, v = _mixture_case(gen, K, D)
        xs = mu[torch.randint(0, K, (n,), generator=gen)] + 1.5 * torch.randn(n, D, generator=gen, dtype=F64)
        ref = _laplacian_autograd(xs, w, mu, v).detach()
        close(_laplacian_closed_form(xs, w, mu, v), ref, 1e-9 * (1 + ref.abs().max().item()), "the grader's own two oracles")
        what = (f"mixture_score_divergence(x float64 ({n}, {D}), {K} components, weights not summing to 1, "
                f"variances in [0.2, 1.2))")
        got = tensor(student.call("mixture_score_divergence", xs, w, mu, v), what, shape=(n,), dtype=F64)
        close(got, ref, 1e-9 * (1 + ref.abs().max().item()), what + " against the Laplacian of log p by autograd")
        if K == 3:
            what = f"mixture_score_divergence(x float32 ({n}, {D}), {K} components, float32 parameters)"
            got32 = tensor(student.call("mixture_score_divergence", xs.float(), w.float(), mu.float(), v.float()),
                           what, shape=(n,), dtype=F32)
            close(got32, ref, 1e-3 * (1 + ref.abs().max().item()), what)

    # far from every mean: exp of the log-densities underflows there (a softmax does not)
    w, mu, v = _mixture_case(gen, 3, 2)
    v = torch.tensor([0.2, 0.5, 1.0], dtype=F64)
    direction = torch.randn(6, 2, generator=gen, dtype=F64)
    far = 60 * direction / direction.norm(dim=1, keepdim=True)
    ref = _laplacian_autograd(far, w, mu, v).detach()
    what = "mixture_score_divergence(x float64 (6, 2) 60 units from the origin, 3 components, variances 0.2, 0.5, 1)"
    got = tensor(student.call("mixture_score_divergence", far, w, mu, v), what, shape=(6,), dtype=F64)
    finite(got, what + " (compute the responsibilities with a softmax / logsumexp)")
    close(got, ref, 1e-8 * (1 + ref.abs().max().item()), what)

    # gradients with respect to x and the means, against autograd of the oracle
    w, mu, v = _mixture_case(gen, 3, 3)
    xs = mu[torch.randint(0, 3, (20,), generator=gen)] + torch.randn(20, 3, generator=gen, dtype=F64)
    cot = torch.randn(20, generator=gen, dtype=F64)
    xg, mug = xs.clone().requires_grad_(True), mu.clone().requires_grad_(True)
    ref_gx, ref_gmu = torch.autograd.grad((_laplacian_autograd(xg, w, mug, v) * cot).sum(), (xg, mug))
    what = "mixture_score_divergence(x float64 (20, 3), 3 components): gradient"
    _, (gx, gmu) = student.call_grad("mixture_score_divergence", (xs, w, mu, v), wrt=(0, 2), cotangents=[cot])
    if gx is None or gmu is None:
        raise AssertionError(f"{what}: the result does not depend on {'x' if gx is None else 'means'} through autograd "
                             "(keep it differentiable: no detach, no .item())")
    close(gx, ref_gx, 1e-7 * (1 + ref_gx.abs().max().item()), what + " with respect to x")
    close(gmu, ref_gmu, 1e-7 * (1 + ref_gmu.abs().max().item()), what + " with respect to means")

    # every raises clause of the spec
    x2 = torch.randn(5, 2, generator=gen, dtype=F64)
    w, mu, v = _mixture_case(gen, 3, 2)
    student.raises(ValueError, "mixture_score_divergence", x2[0], w, mu, v)                     # x 1-D
    student.raises(ValueError, "mixture_score_divergence", x2[:, :, None], w, mu, v)            # x 3-D
    student.raises(ValueError, "mixture_score_divergence", x2, w[:, None], mu, v)               # weights not 1-D
    student.raises(ValueError, "mixture_score_divergence", x2, w, torch.randn(3, 3, dtype=F64), v)   # means (K, D + 1)
    student.raises(ValueError, "mixture_score_divergence", x2, w, mu[:2], v)                    # means (K - 1, D)
    student.raises(ValueError, "mixture_score_divergence", x2, w, mu, v[:2])                    # variances (K - 1,)
    student.raises(ValueError, "mixture_score_divergence", x2, torch.tensor([0.5, 0.0, 0.5], dtype=F64), mu, v)
    student.raises(ValueError, "mixture_score_divergence", x2, w, mu, torch.tensor([0.5, -0.1, 0.3], dtype=F64))
    student.raises(ValueError, "mixture_score_divergence", x2, w, mu, torch.tensor([0.5, 0.0, 0.3], dtype=F64))


# ------------------------------------------------------------------------- Exercise 6 (derivation)
def _number(v, name):
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise AssertionError(f"{name} must be a Python float, got {type(v).__name__}")
    return float(v)


def test_ve_gauss_derivation(student, seed):
    # N(0, s^2 I) data under VESDE(0.01, 10): p_t = N(0, v(t) I), v = s^2 + sigma(t)^2 - sigma_min^2; the
    # drift is (1/2) v'/v x, so x / sqrt(v) is constant and div = (D / 2) v'/v, integrated: (D / 2) log(v(T) / v(eps)).
    s2, smin, smax, eps, D = 0.25, 0.01, 10.0, 1e-5, 2

    def v(t):
        return s2 + smin**2 * math.expm1(2 * t * math.log(smax / smin))

    scale = math.sqrt(v(1.0) / v(eps))
    delta = 0.5 * D * math.log(v(1.0) / v(eps))
    for name, want, hint in (("VE_GAUSS_SCALE", scale, "x(T) / x(eps)"), ("VE_GAUSS_DELTA", delta, "delta(T)")):
        got = _number(student.value(name), name)
        err = abs(got - want) / abs(want)
        if not err <= 1e-6:
            raise AssertionError(f"{name} ({hint} for N(0, 0.25 I) data under VESDE(0.01, 10), eps = 1e-5): "
                                 f"got {got!r}, relative error {err:.1e}, tolerance 1.0e-06")


# ------------------------------------------------------------------------- Exercise 7 (training)
_TRAINING_HELPERS = '''
def _grader_score_of(net, x, t):
    return net(x, t)

def _grader_is_training(net):
    return bool(net.training)
'''

#: the mixture of the graded training run (the notebook's own run uses another one)
TRAIN_MIXTURE = ([0.45, 0.35, 0.2], [[-1.6, 0.6], [1.2, -0.8], [0.6, 1.9]], [0.4, 0.55, 0.35])


def learned_log_likelihood(score_and_trace, sde, x, n_steps=16, eps=1e-5, log_pT=None):
    """log p_theta(x) of the probability-flow ODE of a VE SDE with a learned score, by RK4 on the
    augmented state from eps to T, computed here. ``score_and_trace(y, t)`` gives the network's score
    at the float64 points y and time t, and the trace of its Jacobian; the VE drift is
    -(1/2) g(t)^2 s (f = 0), its divergence -(1/2) g(t)^2 tr(ds/dx)."""
    def rhs(t, y):
        s, tr = score_and_trace(y, t)
        g2 = sde.sigma(torch.tensor(t, dtype=F64)).item() ** 2 * 2 * math.log(sde.sigma_max / sde.sigma_min)
        return -0.5 * g2 * s, -0.5 * g2 * tr

    y, delta = x.clone(), torch.zeros(x.shape[0], dtype=F64)
    ts = torch.linspace(eps, sde.T, n_steps + 1, dtype=F64)
    for i in range(n_steps):
        t, h = ts[i].item(), (ts[i + 1] - ts[i]).item()
        k1 = rhs(t, y)
        k2 = rhs(t + h / 2, y + h / 2 * k1[0])
        k3 = rhs(t + h / 2, y + h / 2 * k2[0])
        k4 = rhs(t + h, y + h * k3[0])
        y = y + h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        delta = delta + h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    return log_pT(y) + delta


def _student_score_and_trace(student, net, what):
    """The student's network at float32 points: its score and the exact trace of its Jacobian, from one
    backward pass in the student's process: the batch is repeated D times and copy i backpropagates e_i,
    so (rows being independent) copy i's input gradient holds row i of each sample's Jacobian."""
    def score_and_trace(y, t):
        B, D = y.shape
        ys = y.float().repeat(D, 1)
        ts = torch.full((B * D,), t, dtype=F32)
        cot = torch.zeros(B * D, D, dtype=F32)
        for i in range(D):
            cot[i * B:(i + 1) * B, i] = 1
        s, (gy,) = student.call_grad("_grader_score_of", (net, ys, ts), wrt=(1,), cotangents=[cot])
        s = tensor(s, f"{what}: net(x float32 ({B * D}, {D}), t float32 ({B * D},))", shape=(B * D, D), dtype=F32)
        gy = tensor(gy, f"{what}: the gradient of net(x, t) with respect to x", shape=(B * D, D))
        tr = sum(gy[i * B:(i + 1) * B, i] for i in range(D))
        return s[:B].double(), tr.double()

    return score_and_trace


@one_thread
def test_train_ve_score(student, seed):
    # thresholds: bench/outcome-margins.md (nb09_train_ve_score)
    sde = VESDE(0.01, 10.0)
    gmm = _gmm(TRAIN_MIXTURE[0], TRAIN_MIXTURE[1], stds=TRAIN_MIXTURE[2])
    gen = generator(seed, 907)
    x_train = gmm.sample(2000, generator=gen).float()
    x_test = gmm.sample(1000, generator=gen)                       # held out: never sent to the student
    student.seed(seed)
    what = "train_ve_score(float32 (2000, 2) from a three-component mixture, VESDE(0.01, 10.0), 2000)"
    net = student.call("train_ve_score", x_train, _sde(student, sde), 2000)
    if not isinstance(net, Handle):
        raise AssertionError(f"{what}: return the network (a torch.nn.Module), got {type(net).__name__}")
    student.define(_TRAINING_HELPERS)
    if student.call("_grader_is_training", net) is not False:
        raise AssertionError(f"{what}: return the network in eval mode (net.eval())")
    probe_x = x_test[:10].float()
    out = student.call("_grader_score_of", net, probe_x, torch.full((10,), 0.5))
    tensor(out, f"{what}: net(x float32 (10, 2), t float32 (10,))", shape=(10, 2), dtype=F32)
    logp = learned_log_likelihood(_student_score_and_trace(student, net, what), sde, x_test,
                                  log_pT=gmm.marginal_at(1.0, sde).log_prob)
    finite(logp, f"{what}: the ODE log-likelihood of your network on 1000 held-out points")
    gap = (gmm.log_prob_at(x_test, 1e-5, sde) - logp).mean().item()
    if not abs(gap) < 0.2:
        raise AssertionError(f"{what}: on 1000 held-out points the exact log p_eps exceeds your network's ODE "
                             f"log-likelihood by {gap:.4f} nats on average (allowed: 0.2 in absolute value)")
