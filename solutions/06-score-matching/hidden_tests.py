"""Hidden tests of assignment 06, run by the grader (autograder/verdicts.py), never by students.

One function per graded test cell, named by the cell's grade_id, called as ``fn(student, seed)``:
``student`` calls the student's functions in the student's own process (autograder/probe),
``seed`` is the grading seed, from which every random input is drawn. Expected answers are
computed here, in the grader's process, with the real flowlib or in closed form. A function
passes when it returns; any exception fails the cell with its message, which the student
sees in the feedback. The visible tests of the notebook are repeated here: points come only
from these functions.

Random draws the student's functions make come from a ``torch.Generator`` that lives in the
student's process (a handle), seeded like the grader's own ``generator(seed, K)``; the grader
repeats the same draws here, and compares the generator's state afterwards (so every draw is
exactly the documented one). Score functions the student's code only evaluates are grader
functions (``student.function``); score networks the student's code differentiates through
(the losses) are built in the student's process with the grader's parameters.
"""
from __future__ import annotations

import math

import torch

from flowlib import GaussianMixture, ScoreMLP, dsm_loss, esm_loss, langevin, ssm_loss
from probe import wire
from probe.checks import case, close, finite, generator, tensor

F64, F32 = torch.float64, torch.float32

#: flowlib references replaced by stubs that raise in the student's process
STUB = [
    "flowlib.diffusion.gmm.GaussianMixture", "flowlib.diffusion.score.esm_loss", "flowlib.diffusion.score.jacobian_trace",
    "flowlib.diffusion.score.ssm_loss", "flowlib.diffusion.score.dsm_loss", "flowlib.diffusion.sde.sde_dsm_loss",
    "flowlib.diffusion.score.langevin", "flowlib.diffusion.score.annealed_langevin",
]

#: time limit per test cell in seconds (default: FLOWLIB_CELL_TIMEOUT, 120)
TIMEOUTS: dict[str, float] = {}

#: graded cells that check a result the student derived by hand (a number or a formula)
DERIVATIONS = ["test_dsm_loss_minimum"]

#: the solution cells each slow (training) test runs: tests/run_mutants.py skips it for a mutant of
#: any other cell (grading always runs every test)
USES: dict[str, list[str]] = {"test_fit_score_model": ["denoising_score_matching_loss", "fit_score_model"]}

# Helpers defined in the student's process (plain torch, names starting with ``_grader_``):
# they build inputs that must live there (generators, dtypes, networks the student's losses
# differentiate through) and read gradients there. Every answer is still judged here.
_HELPERS = '''
def _grader_generator(n):
    return torch.Generator().manual_seed(int(n))


def _grader_dtype(name):
    return getattr(torch, name)


def _grader_mlp(state, dim_in, dim_out, hidden, dtype):
    net = torch.nn.Sequential(torch.nn.Linear(dim_in, hidden), torch.nn.Tanh(),
                              torch.nn.Linear(hidden, hidden), torch.nn.Tanh(),
                              torch.nn.Linear(hidden, dim_out))
    net = net.to(device=state["0.weight"].device, dtype=getattr(torch, dtype))
    net.load_state_dict(state)
    return net


def _grader_linear(weight, bias):
    lin = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    lin = lin.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        lin.weight.copy_(weight)
        if bias is not None:
            lin.bias.copy_(bias)
    return lin


def _grader_score_mlp(state, dim, hidden, n_layers):
    net = flowlib.ScoreMLP(dim, hidden=hidden, n_layers=n_layers)
    net = net.to(device=state["net.0.weight"].device, dtype=torch.float64)
    net.load_state_dict(state)
    return net


def _grader_loss_and_param_grads(name, net, *args):
    loss = globals()[name](net, *args)
    params = list(net.parameters())
    if not (isinstance(loss, torch.Tensor) and loss.requires_grad):
        return loss, [None] * len(params)
    return loss, list(torch.autograd.grad(loss, params, allow_unused=True))
'''


def _define(student) -> None:
    """Define the helpers above in the student's process (again after a restart)."""
    student.define(_HELPERS)


def _generators(student, seed: int, salt: int):
    """(a generator in the student's process, the grader's generator(seed, salt)), same state."""
    g = student.call("_grader_generator", 1_000_003 * int(seed) + int(salt))
    return g, generator(seed, salt)


def _fixed(student, n: int):
    return student.call("_grader_generator", n), torch.Generator().manual_seed(n)


def _same_draws(student, g, ref_gen, what: str, draw: str) -> None:
    """The student's generator is where the grader's is after the documented draws."""
    state = tensor(student.method(g, "get_state"), what + ": the generator's state")
    if not torch.equal(state, ref_gen.get_state()):
        raise AssertionError(f"{what}: the generator was used differently from the documented draw "
                             f"(draw {draw} with exactly one call, and nothing else from the generator)")


def _grader_seeded(seed: int, salt: int):
    """A grader-side torch seed for a network's initial weights (the global RNG is restored)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(1_000_003 * int(seed) + int(salt))
    return state


def _mlp(seed: int, salt: int, dim: int, hidden: int = 16) -> torch.nn.Sequential:
    """The setup cell's random_mlp architecture, with weights drawn from the grading seed."""
    state = _grader_seeded(seed, salt)
    try:
        net = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.Tanh(),
                                  torch.nn.Linear(hidden, hidden), torch.nn.Tanh(),
                                  torch.nn.Linear(hidden, dim)).to(F64)
    finally:
        torch.random.set_rng_state(state)
    return net


def _score_mlp(seed: int, salt: int, dim: int) -> ScoreMLP:
    state = _grader_seeded(seed, salt)
    try:
        net = ScoreMLP(dim, hidden=16, n_layers=2).to(F64)
    finally:
        torch.random.set_rng_state(state)
    return net


def _student_mlp(student, net, dtype=F64):
    state = {k: v.to(dtype) for k, v in net.state_dict().items()}
    dim_in, dim_out, hidden = net[0].in_features, net[4].out_features, net[0].out_features
    return student.call("_grader_mlp", state, dim_in, dim_out, hidden, str(dtype).replace("torch.", ""))


def _loss_and_grads(student, name, net_handle, args, what, n_params):
    """(loss, gradients w.r.t. the score network's parameters), both from the student's process."""
    out = student.call("_grader_loss_and_param_grads", name, net_handle, *args)
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], list) and len(out[1]) == n_params):
        raise AssertionError(f"{what}: malformed answer from the grader's helper")
    return out


def _check_param_grads(grads, ref_net, ref_loss, what, tol):
    names = [n for n, _ in ref_net.named_parameters()]
    ref_grads = torch.autograd.grad(ref_loss, list(ref_net.parameters()))
    for name, g, r in zip(names, grads, ref_grads):
        if g is None:
            raise AssertionError(f"{what}: no gradient with respect to the network's {name}: the loss must be "
                                 "differentiable in score_fn's parameters (create_graph=True, nothing detached)")
        close(g, r, tol, f"{what}: d loss / d {name} (gradient w.r.t. the network's parameters)")


def _scalar(v, what, dtype):
    return tensor(v, what + " (return a 0-dim tensor)", shape=(), dtype=dtype)


def _mixture_log_density(x, w, mu, sd):
    """log sum_k w_k N(x; mu_k, sd_k^2 I) / sum w, written here (differentiable in every argument)."""
    D = x.shape[1]
    var = sd**2
    comp = -0.5 * ((x[:, None, :] - mu[None]) ** 2).sum(-1) / var - 0.5 * D * torch.log(2 * math.pi * var)
    return torch.logsumexp(torch.log(w / w.sum()) + comp, dim=1)


def _score_grads(log_density, args, cot):
    """Gradients of <cot, grad_x log_density(x, *params)> with respect to x and each parameter,
    by double autograd here: the oracle of a score function's gradient check."""
    leaves = [a.detach().clone().requires_grad_(True) for a in args]
    with torch.enable_grad():
        (score,) = torch.autograd.grad(log_density(*leaves).sum(), leaves[0], create_graph=True)
        return torch.autograd.grad((score * cot).sum(), leaves)


def _check_input_grads(grads, ref_grads, names, what, tol=1e-9):
    for g, r, name in zip(grads, ref_grads, names):
        if g is None:
            raise AssertionError(f"{what}: no gradient with respect to {name}: the score must be differentiable in "
                                 f"{name} (nothing detached, no torch.tensor(...) copy of an input)")
        close(tensor(g, f"{what}: d <cotangent, score> / d {name}", shape=r.shape, dtype=F64), r,
              tol * (1 + r.abs().max().item()), f"{what}: d <cotangent, score> / d {name} against autograd of log p")


# ------------------------------------------------------------------------- Exercise 1
def test_gaussian_score(student, seed):
    # the visible case: float32, std = 2
    x = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    what = "gaussian_score(float32 (2, 2), mean float32 zeros (2,), std=2.0)"
    s = tensor(student.call("gaussian_score", x, torch.zeros(2), 2.0), what, shape=(2, 2), dtype=F32)
    close(s[0], torch.tensor([-0.25, -0.5]), 1e-6, what + ": -(x - 0) / 2^2 at (1, 2) is (-0.25, -0.5)")

    gen = generator(seed, 601)
    x64 = 3 * torch.randn(200, 3, generator=gen, dtype=F64)
    mu = torch.randn(3, generator=gen, dtype=F64)
    ref = GaussianMixture(torch.ones(1), mu[None], stds=torch.tensor(0.7, dtype=F64)).double().score(x64)
    std_rows = 0.2 + torch.rand(200, 1, generator=gen, dtype=F64)
    xr = x64.clone().requires_grad_(True)
    (ref_rows,) = torch.autograd.grad(torch.distributions.Normal(mu, std_rows).log_prob(xr).sum(), xr)

    what = "gaussian_score(float64 (200, 3), mean float64 (3,), std=0.7)"
    got = tensor(student.call("gaussian_score", x64, mu, 0.7), what, shape=(200, 3), dtype=F64)
    close(got, ref, 1e-10, what + ": score of N(mu, 0.7^2 I)")
    what = "gaussian_score(float64 (200, 3), mean float64 (3,), std float64 (200, 1) per sample)"
    got_rows = tensor(student.call("gaussian_score", x64, mu, std_rows), what, shape=(200, 3), dtype=F64)
    close(got_rows, ref_rows, 1e-10, what + " against autograd of log N(mu, std^2 I)")
    what = "gaussian_score(float32 (200, 3), mean float32 (3,), std=0.7)"
    got32 = tensor(student.call("gaussian_score", x64.float(), mu.float(), 0.7), what, shape=(200, 3), dtype=F32)
    close(got32, ref, 1e-4, what)

    # gradients against autograd of log N(mu, std^2 I): x, mean and a per-sample std (issue 19)
    cot = torch.randn(200, 3, generator=gen, dtype=F64)
    what = "gaussian_score(float64 (200, 3), mean float64 (3,), std float64 (200, 1)) with autograd"
    value, grads = student.call_grad("gaussian_score", (x64, mu, std_rows), wrt=(0, 1, 2), cotangents=[cot])
    close(tensor(value, what, shape=(200, 3), dtype=F64), ref_rows, 1e-10, what + ", value")
    ref_grads = _score_grads(lambda v, m, sd: torch.distributions.Normal(m, sd).log_prob(v).sum(1), (x64, mu, std_rows), cot)
    _check_input_grads(grads, ref_grads, ("x", "mean", "std"), what)

    for bad in (0.0, -1.0, torch.tensor([[1.0], [0.0]]), torch.tensor([[1.0], [-0.5]])):
        try:
            student.raises(ValueError, "gaussian_score", x64[:2].float(), mu.float(), bad)
        except AssertionError as exc:
            raise AssertionError(f"std = {bad.tolist() if isinstance(bad, torch.Tensor) else bad} (not positive): {exc}") from None


# ------------------------------------------------------------------------- Exercise 2
def test_mixture_score(student, seed):
    # the visible cases: two unit components at (-1, 0) and (1, 0), float32
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    w, mu, sd = torch.tensor([0.5, 0.5]), torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), torch.tensor([1.0, 1.0])
    what = "mixture_score(float32 (2, 2), weights [0.5, 0.5], means [[-1, 0], [1, 0]], stds [1, 1])"
    s = tensor(student.call("mixture_score", x, w, mu, sd), what, shape=(2, 2), dtype=F32)
    close(s[0], torch.zeros(2), 1e-6, what + ": at the midpoint (0, 0) the pulls cancel")
    close(s[1], torch.tensor([-0.2384058, 0.0]), 1e-5, what + ": at (1, 0) the score is (-0.2384058, 0)")

    gen = generator(seed, 602)
    K, D = 4, 3
    w = (0.2 + torch.rand(K, generator=gen, dtype=F64)) * 3.0   # unnormalised
    mu = 2.0 * torch.randn(K, D, generator=gen, dtype=F64)
    sd = 0.3 + torch.rand(K, generator=gen, dtype=F64)
    x64 = 3.0 * torch.randn(300, D, generator=gen, dtype=F64)
    ref_gmm = GaussianMixture(w, mu, stds=sd).double()
    ref = ref_gmm.score(x64)
    xr = x64.clone().requires_grad_(True)
    (ref_auto,) = torch.autograd.grad(ref_gmm.log_prob(xr).sum(), xr)

    what = "mixture_score(float64 (300, 3), unnormalised weights float64 (4,), means float64 (4, 3), unequal stds float64 (4,))"
    got = tensor(student.call("mixture_score", x64, w, mu, sd), what, shape=(300, 3), dtype=F64)
    close(got, ref, 1e-9, what)
    close(got, ref_auto, 1e-9, what + " against autograd of log p")
    what = "mixture_score(float64 (300, 3), one component)"
    got_one = tensor(student.call("mixture_score", x64, w[:1], mu[:1], sd[:1]), what, shape=(300, 3), dtype=F64)
    close(got_one, -(x64 - mu[0]) / sd[0] ** 2, 1e-10, what + ": the Gaussian score")

    x_far = torch.tensor([[40.0, -30.0, 25.0], [-60.0, 0.0, 0.0]])
    ref_far = ref_gmm.score(x_far.double())
    what = "mixture_score(float32 (2, 3) far from every component, parameters float32)"
    got_far = tensor(student.call("mixture_score", x_far, w.float(), mu.float(), sd.float()), what, shape=(2, 3), dtype=F32)
    finite(got_far, what + " (compute the responsibilities in log space: softmax of log w_k + log N_k)")
    close(got_far, ref_far, 1e-4, what, relative=True)

    # gradients against autograd of log p: x, weights, means and stds (issue 19)
    cot = torch.randn(300, D, generator=gen, dtype=F64)
    what = "mixture_score(float64 (300, 3), weights float64 (4,), means float64 (4, 3), stds float64 (4,)) with autograd"
    value, grads = student.call_grad("mixture_score", (x64, w, mu, sd), wrt=(0, 1, 2, 3), cotangents=[cot])
    close(tensor(value, what, shape=(300, 3), dtype=F64), ref_auto, 1e-9, what + ", value")
    ref_grads = _score_grads(_mixture_log_density, (x64, w, mu, sd), cot)
    _check_input_grads(grads, ref_grads, ("x", "weights", "means", "stds"), what)

    for bad_w, bad_sd, label in ((torch.tensor([1.0, 0.0]), torch.ones(2), "a zero weight"),
                                 (torch.tensor([1.0, -0.2]), torch.ones(2), "a negative weight"),
                                 (torch.ones(2), torch.tensor([1.0, -0.5]), "a negative std"),
                                 (torch.ones(2), torch.tensor([0.0, 1.0]), "a zero std")):
        try:
            student.raises(ValueError, "mixture_score", x64[:2], bad_w.double(), mu[:2], bad_sd.double())
        except AssertionError as exc:
            raise AssertionError(f"{label}: {exc}") from None


# ------------------------------------------------------------------------- Exercise 3
def test_hyvarinen_loss(student, seed):
    _define(student)
    # the visible cases: the score -x of N(0, I) (a linear module), float32
    minus = student.call("_grader_linear", -torch.eye(2), None)
    for x, expected in ((torch.zeros(3, 2), -2.0), (torch.ones(3, 2), -1.0)):
        what = f"hyvarinen_loss(s(x) = -x, float32 {'zeros' if expected == -2.0 else 'ones'} (3, 2))"
        loss = _scalar(student.call("hyvarinen_loss", minus, x), what, F32)
        close(loss, torch.tensor(expected), 1e-6, what + f": trace -2 + 0.5 ||s||^2 = {expected}")

    net = _mlp(seed, 603, 3)
    gen = generator(seed, 603)
    x64 = torch.randn(64, 3, generator=gen, dtype=F64)
    ref = esm_loss(net, x64)
    what = "hyvarinen_loss(a float64 tanh MLP (3 -> 16 -> 16 -> 3), float64 (64, 3))"
    loss, grads = _loss_and_grads(student, "hyvarinen_loss", _student_mlp(student, net), (x64,), what, 6)
    close(_scalar(loss, what, F64), ref, 1e-9, what + " (trace + 0.5 ||s||^2, batch mean)")
    _check_param_grads(grads, net, ref, what, 1e-8)

    # s(x) = A x + b: the trace is tr(A)
    A = torch.randn(4, 4, generator=gen, dtype=F64)
    b = torch.randn(4, generator=gen, dtype=F64)
    x4 = torch.randn(10, 4, generator=gen, dtype=F64)
    lin_ref = torch.trace(A) + 0.5 * ((x4 @ A.T + b) ** 2).sum(1).mean()
    what = "hyvarinen_loss(s(x) = A x + b with A float64 (4, 4), float64 (10, 4))"
    got_lin = _scalar(student.call("hyvarinen_loss", student.call("_grader_linear", A, b), x4), what, F64)
    close(got_lin, lin_ref, 1e-9, what + ": for s(x) = A x + b the trace is tr(A)")

    # float32 keeps float32
    net32 = _mlp(seed, 613, 3)
    ref32 = esm_loss(net32, x64.float().double())
    what = "hyvarinen_loss(a float32 tanh MLP, float32 (64, 3))"
    got32 = _scalar(student.call("hyvarinen_loss", _student_mlp(student, net32, F32), x64.float()), what, F32)
    close(got32, ref32, 1e-4, what, relative=True)

    for bad in (torch.zeros(5), torch.zeros(2, 3, 4)):
        try:
            student.raises(ValueError, "hyvarinen_loss", student.function(lambda t: -t, name="s(x) = -x"), bad)
        except AssertionError as exc:
            raise AssertionError(f"x of shape {tuple(bad.shape)} (not (batch, D)): {exc}") from None


# ------------------------------------------------------------------------- Exercise 4
def test_sliced_score_matching_loss(student, seed):
    _define(student)
    # the visible case: s(x) = -x at x = 0 gives -||v||^2 with v the documented draw
    x = torch.zeros(4, 2, dtype=F64)
    g, ref_gen = _fixed(student, 0)
    v = torch.randn((4, 2), generator=ref_gen, dtype=F64)
    what = "sliced_score_matching_loss(s(x) = -x, float64 zeros (4, 2), generator seeded 0)"
    loss = _scalar(student.call("sliced_score_matching_loss", student.call("_grader_linear", -torch.eye(2, dtype=F64), None),
                                x, g), what, F64)
    close(loss, -(v**2).sum(1).mean(), 1e-9, what + ": -mean ||v||^2 (draw v exactly as documented)")

    net = _mlp(seed, 604, 3)
    gen = generator(seed, 604)
    x64 = torch.randn(64, 3, generator=gen, dtype=F64)
    h = _student_mlp(student, net)
    g11, ref_gen = _generators(student, seed, 11)
    ref = ssm_loss(net, x64, n_projections=1, dist="gaussian", variance_reduced=False, generator=ref_gen)
    what = "sliced_score_matching_loss(a float64 tanh MLP, float64 (64, 3), generator)"
    loss, grads = _loss_and_grads(student, "sliced_score_matching_loss", h, (x64, g11), what, 6)
    _same_draws(student, g11, ref_gen, what, "v = torch.randn(x.shape, generator=generator, dtype=x.dtype)")
    close(_scalar(loss, what, F64), ref, 1e-9, what + " with the same v (the plain form, not variance-reduced)")
    _check_param_grads(grads, net, ref, what, 1e-8)

    # averaged over many projections it estimates Hyvarinen's loss
    x_rep = x64[:4].repeat(5000, 1)
    ref_esm = esm_loss(net, x64[:4]).item()
    g12, ref_gen12 = _generators(student, seed, 12)
    what = "sliced_score_matching_loss(a float64 tanh MLP, 4 points repeated 5000 times (20000, 3))"
    mc_t = _scalar(student.call("sliced_score_matching_loss", h, x_rep, g12), what, F64)
    ref_mc = ssm_loss(net, x_rep, n_projections=1, dist="gaussian", variance_reduced=False, generator=ref_gen12)
    close(mc_t, ref_mc, 1e-8, what + " with the same v")
    mc = mc_t.item()
    if not abs(mc - ref_esm) < 0.1 * (1 + abs(ref_esm)):
        raise AssertionError(f"{what}: mean over 5000 projections {mc:.4f}, Hyvarinen loss {ref_esm:.4f} "
                             f"(allowed: 0.1 * (1 + |loss|))")

    # float32 keeps float32: s(x) = -2 x
    g13, ref_gen13 = _generators(student, seed, 13)
    v13 = torch.randn((64, 3), generator=ref_gen13, dtype=F32).double()
    x32 = x64.float()
    exp32 = (-2 * (v13**2).sum(1) + 0.5 * ((v13 * (-2 * x32.double())).sum(1)) ** 2).mean()
    what = "sliced_score_matching_loss(s(x) = -2 x, float32 (64, 3), generator)"
    got32 = _scalar(student.call("sliced_score_matching_loss",
                                 student.call("_grader_linear", -2 * torch.eye(3), None), x32, g13), what, F32)
    close(got32, exp32, 1e-4, what + " with v drawn in float32", relative=True)

    for bad in (torch.zeros(5), torch.zeros(2, 3, 4)):
        g, _ = _fixed(student, 0)
        try:
            student.raises(ValueError, "sliced_score_matching_loss", student.function(lambda t: -t, name="s(x) = -x"), bad, g)
        except AssertionError as exc:
            raise AssertionError(f"x of shape {tuple(bad.shape)} (not (batch, D)): {exc}") from None


# ------------------------------------------------------------------------- Exercise 5
def test_denoising_score_matching_loss(student, seed):
    _define(student)
    # the visible cases: the exact target gives 0; a zero score gives 0.5 E||z||^2
    x = torch.tensor([[1.0, -2.0], [0.5, 3.0], [0.0, 0.0]], dtype=F64)
    oracle = student.function(lambda xn, s: -(xn - x) / s[:, None] ** 2, name="the exact target -(x_noisy - x) / sigma^2")
    g, _ = _fixed(student, 0)
    what = "denoising_score_matching_loss(the exact target, float64 (3, 2), sigma=0.5, generator seeded 0)"
    loss = _scalar(student.call("denoising_score_matching_loss", oracle, x, 0.5, g), what, F64)
    close(loss, torch.tensor(0.0, dtype=F64), 1e-9, what + ": the exact target must give loss 0")
    g, ref_gen = _fixed(student, 0)
    z = torch.randn((3, 2), generator=ref_gen, dtype=F64)
    zero = student.function(lambda xn, s: torch.zeros_like(xn), name="s = 0")
    what = "denoising_score_matching_loss(s = 0, float64 (3, 2), sigma=0.5, generator seeded 0)"
    loss = _scalar(student.call("denoising_score_matching_loss", zero, x, 0.5, g), what, F64)
    close(loss, 0.5 * (z**2).sum(1).mean(), 1e-9, what + ": with s = 0 the loss is 0.5 E||z||^2")

    net = _score_mlp(seed, 605, 3)
    gen = generator(seed, 605)
    x64 = torch.randn(64, 3, generator=gen, dtype=F64)
    sig_b = 0.05 + 2 * torch.rand(64, generator=gen, dtype=F64)
    h = student.call("_grader_score_mlp", net.state_dict(), 3, 16, 2)

    g21, ref_gen = _generators(student, seed, 21)
    ref_s = dsm_loss(net, x64, 0.3, generator=ref_gen)
    what = "denoising_score_matching_loss(a float64 ScoreMLP, float64 (64, 3), sigma=0.3, generator)"
    got_s = _scalar(student.call("denoising_score_matching_loss", h, x64, 0.3, g21), what, F64)
    _same_draws(student, g21, ref_gen, what, "z = torch.randn(x.shape, generator=generator, dtype=x.dtype)")
    close(got_s, ref_s, 1e-9, what + " with the same z")

    g22, ref_gen = _generators(student, seed, 22)
    ref_b = dsm_loss(net, x64, sig_b, generator=ref_gen)
    what = "denoising_score_matching_loss(a float64 ScoreMLP, float64 (64, 3), sigma float64 (64,) per sample, generator)"
    loss, grads = _loss_and_grads(student, "denoising_score_matching_loss", h, (x64, sig_b, g22), what,
                                  len(list(net.parameters())))
    close(_scalar(loss, what, F64), ref_b, 1e-9, what + " with the same z")
    _check_param_grads(grads, net, ref_b, what, 1e-8)

    seen = []

    def recording(xn, s):
        seen.append((tuple(s.shape), s.dtype, str(getattr(s, "probe_device", "cpu")).split(":")[0]))
        return -xn

    g23, _ = _generators(student, seed, 23)
    student.call("denoising_score_matching_loss", student.function(recording, name="a recording score_fn"), x64, 2.0, g23)
    want = [((64,), F64, student.device.split(":")[0])]
    if seen != want:
        raise AssertionError("denoising_score_matching_loss(score_fn, float64 (64, 3), sigma=2.0): call score_fn once "
                             f"with sigma a float64 (batch,) = (64,) tensor on x's device; got calls {seen}")

    g24, ref_gen24 = _generators(student, seed, 24)
    z24 = torch.randn((64, 3), generator=ref_gen24, dtype=F32)
    xn = x64.float() + 0.7 * z24
    exp32 = 0.5 * ((0.7 * (-xn) + z24) ** 2).sum(1).mean()
    what = "denoising_score_matching_loss(s(x) = -x, float32 (64, 3), sigma=0.7, generator)"
    got32 = _scalar(student.call("denoising_score_matching_loss", student.function(lambda v, s: -v, name="s(x) = -x"),
                                 x64.float(), 0.7, g24), what, F32)
    close(got32, exp32, 1e-4, what + " with z drawn in float32", relative=True)

    for bad in (0.0, -0.1, torch.cat([sig_b[:-1], torch.zeros(1, dtype=F64)])):
        g, _ = _fixed(student, 0)
        student.raises(ValueError, "denoising_score_matching_loss", h, x64, bad, g)


# ------------------------------------------------------------------------- Exercise 6
def test_langevin_step(student, seed):
    _define(student)
    # the visible case: s(x) = -x, eps = 0.5 gives 0.5 x + z
    x = torch.tensor([[2.0, -4.0], [0.0, 1.0]], dtype=F64)
    g, ref_gen = _fixed(student, 0)
    z = torch.randn((2, 2), generator=ref_gen, dtype=F64)
    what = "langevin_step(float64 (2, 2), s(x) = -x, eps=0.5, generator seeded 0)"
    new = tensor(student.call("langevin_step", x, student.function(lambda t: -t, name="s(x) = -x"), 0.5, g),
                 what, shape=(2, 2), dtype=F64)
    close(new, 0.5 * x + z, 1e-12, what + ": expected 0.5 x + z")

    gmm = GaussianMixture([0.3, 0.7], [[-1.0, 0.5, 0.0], [2.0, 0.0, 1.0]], stds=[0.5, 1.2]).double()
    gen = generator(seed, 606)
    x64 = 2 * torch.randn(100, 3, generator=gen, dtype=F64)
    g31, ref_gen = _generators(student, seed, 31)
    ref = langevin(gmm.score, x64, 0.05, 1, generator=ref_gen)
    what = "langevin_step(float64 (100, 3), a mixture's score, eps=0.05, generator)"
    got = tensor(student.call("langevin_step", x64, student.function(gmm.score, name="a Gaussian mixture's score"), 0.05, g31),
                 what, shape=(100, 3), dtype=F64)
    _same_draws(student, g31, ref_gen, what, "z = torch.randn(x.shape, generator=generator, dtype=x.dtype)")
    close(got, ref, 1e-10, what + ": x + eps s(x) + sqrt(2 eps) z")

    g32, ref_gen32 = _generators(student, seed, 32)
    z32 = torch.randn((100, 3), generator=ref_gen32, dtype=F32)
    what = "langevin_step(float32 (100, 3), s(x) = -x, eps=0.2, generator)"
    got32 = tensor(student.call("langevin_step", x64.float(), student.function(lambda t: -t, name="s(x) = -x"), 0.2, g32),
                   what, shape=(100, 3), dtype=F32)
    close(got32, 0.8 * x64.float() + math.sqrt(0.4) * z32, 1e-5, what)

    for bad in (0.0, -0.01):
        g, _ = _fixed(student, 0)
        student.raises(ValueError, "langevin_step", x64, student.function(gmm.score, name="a Gaussian mixture's score"), bad, g)


# ------------------------------------------------------------------------- Exercise 7
def test_langevin_chain(student, seed):
    _define(student)
    minus = student.function(lambda t: -t, name="s(x) = -x")
    # the visible cases: s(x) = -x, eps = 1: two steps give sqrt(2) times the second draw; 0 steps return x0
    x0 = torch.tensor([[3.0], [-1.0], [0.5]], dtype=F64)
    g, ref_gen = _fixed(student, 0)
    torch.randn((3, 1), generator=ref_gen, dtype=F64)
    z2 = torch.randn((3, 1), generator=ref_gen, dtype=F64)
    what = "langevin_chain(float64 (3, 1), s(x) = -x, eps=1.0, n_steps=2, generator seeded 0)"
    out = tensor(student.call("langevin_chain", x0, minus, 1.0, 2, g), what, shape=(3, 1), dtype=F64)
    close(out, math.sqrt(2) * z2, 1e-12, what + ": after 2 steps expected sqrt(2) * (second draw of z)")
    g, _ = _fixed(student, 0)
    what = "langevin_chain(float64 (3, 1), s(x) = -x, eps=1.0, n_steps=0)"
    out0 = tensor(student.call("langevin_chain", x0, minus, 1.0, 0, g), what, shape=(3, 1), dtype=F64)
    if not torch.equal(out0, x0):
        raise AssertionError(f"{what}: 0 steps must return x0")

    gmm = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.5, 1.0]], stds=[0.6, 0.9]).double()
    gen = generator(seed, 607)
    x64 = 2 * torch.randn(200, 2, generator=gen, dtype=F64)
    g41, ref_gen = _generators(student, seed, 41)
    ref = langevin(gmm.score, x64, 0.02, 50, generator=ref_gen)
    what = "langevin_chain(float64 (200, 2), a mixture's score, eps=0.02, n_steps=50, generator)"
    got = tensor(student.call("langevin_chain", x64, student.function(gmm.score, name="a Gaussian mixture's score"),
                              0.02, 50, g41), what, shape=(200, 2), dtype=F64)
    close(got, ref, 1e-9, what + " against the reference chain with the same generator")
    _same_draws(student, g41, ref_gen, what, "one z per step")

    g42, _ = _generators(student, seed, 42)
    what = "langevin_chain(float64 (200, 2) requiring grad, s(x) = -x, eps=0.1, n_steps=3)"
    value, _ = student.call_grad("langevin_chain", (x64, minus, 0.1, 3, g42), wrt=(0,), cotangents=[None])
    tensor(value, what, shape=(200, 2), dtype=F64)
    if value.probe_requires_grad:
        raise AssertionError(f"{what}: return a tensor that does not require grad (run the chain under torch.no_grad())")

    # stationary variance of ULA on N(0, tau^2): tau^2 / (1 - eps / (2 tau^2))
    tau, eps = 1.5, 0.2
    g43, _ = _generators(student, seed, 43)
    what = "langevin_chain(float64 zeros (4000, 1), s(x) = -x / 1.5^2, eps=0.2, n_steps=300, generator)"
    stat = tensor(student.call("langevin_chain", torch.zeros(4000, 1, dtype=F64),
                               student.function(lambda t: -t / tau**2, name="s(x) = -x / tau^2"), eps, 300, g43),
                  what, shape=(4000, 1), dtype=F64)
    var = stat.var().item()
    target = tau**2 / (1 - eps / (2 * tau**2))
    if not abs(var - target) < 0.1 * target:
        raise AssertionError(f"{what}: stationary variance {var:.3f}, expected {target:.3f} (allowed: 10%)")

    g, _ = _fixed(student, 0)
    student.raises(ValueError, "langevin_chain", x64, student.function(gmm.score, name="a Gaussian mixture's score"), 0.1, -1, g)


# ------------------------------------------------------------------------- Exercise 8 (transfer)
def _student_t_log_density(df):
    """log p of the multivariate Student-t up to a constant in x, written here; df = inf: the Gaussian."""
    def f(x, loc, scale):
        r2 = ((x - loc) ** 2).sum(1, keepdim=True)
        if math.isinf(df):
            return (-0.5 * r2 / scale**2).sum(1)
        return (-0.5 * (df + x.shape[1]) * torch.log1p(r2 / (df * scale**2))).sum(1)
    return f


def _student_t_oracle(x, loc, scale, df):
    xr = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (s,) = torch.autograd.grad(_student_t_log_density(df)(xr, loc, scale).sum(), xr)
    return s


def test_student_t_score(student, seed):
    # the visible cases: nu = 3 at (1, 2), float32; a Cauchy (nu = 1) with scale 0.5, float64
    x = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    what = "student_t_score(float32 (2, 2), loc zeros (2,), scale=1.0, df=3.0)"
    s = tensor(student.call("student_t_score", x, torch.zeros(2), 1.0, 3.0), what, shape=(2, 2), dtype=F32)
    close(s, torch.tensor([[-0.625, -1.25], [0.0, 0.0]]), 1e-6, what + ": -(3 + 2) (1, 2) / (3 + 5) at (1, 2), 0 at the location")
    what = "student_t_score(float64 (2, 2), loc zeros (2,), scale=0.5, df=1.0)"
    s = tensor(student.call("student_t_score", x.double(), torch.zeros(2, dtype=F64), 0.5, 1.0), what, shape=(2, 2), dtype=F64)
    close(s[0], torch.tensor([-3 / 5.25, -6 / 5.25], dtype=F64), 1e-12, what + ": -(1 + 2) (1, 2) / (0.25 + 5) at (1, 2)")

    gen = generator(seed, 608)
    D = 3
    x64 = 4 * torch.randn(200, D, generator=gen, dtype=F64)
    x64[:5] *= 1e4                                   # far in the tails
    loc = torch.randn(D, generator=gen, dtype=F64)
    scale_rows = 0.3 + torch.rand(200, 1, generator=gen, dtype=F64)
    df_r = 0.5 + 10 * torch.rand((), generator=gen).item()
    for df in (1.0, df_r, 200.0):
        for sc, label in ((0.7, "scale=0.7"), (scale_rows, "scale float64 (200, 1) per sample")):
            what = f"student_t_score(float64 (200, {D}) some far in the tails, loc float64 ({D},), {label}, df={df:g})"
            got = tensor(student.call("student_t_score", x64, loc, sc, df), what, shape=(200, D), dtype=F64)
            ref = _student_t_oracle(x64, loc, torch.as_tensor(sc, dtype=F64), df)
            close(got, ref, 1e-10, what + " against autograd of log p", relative=True)
    what = f"student_t_score(float64 (200, {D}), loc float64 ({D},), scale float64 (200, 1), df=math.inf)"
    got = tensor(student.call("student_t_score", x64, loc, scale_rows, math.inf), what, shape=(200, D), dtype=F64)
    close(got, -(x64 - loc) / scale_rows**2, 1e-10, what + ": the Gaussian limit -(x - loc) / scale^2", relative=True)
    what = f"student_t_score(float32 (200, {D}), loc float32 ({D},), scale=0.7, df={df_r:g})"
    got32 = tensor(student.call("student_t_score", x64.float(), loc.float(), 0.7, df_r), what, shape=(200, D), dtype=F32)
    close(got32, _student_t_oracle(x64.float().double(), loc.float().double(), torch.tensor(0.7, dtype=F64), df_r), 1e-5,
          what, relative=True)

    # gradients against double autograd of log p: x, loc and a per-sample scale
    xs = 2 * torch.randn(100, D, generator=gen, dtype=F64)
    cot = torch.randn(100, D, generator=gen, dtype=F64)
    for df in (df_r, math.inf):
        what = f"student_t_score(float64 (100, {D}), loc float64 ({D},), scale float64 (100, 1), df={df:g}) with autograd"
        value, grads = student.call_grad("student_t_score", (xs, loc, scale_rows[:100], df), wrt=(0, 1, 2), cotangents=[cot])
        close(tensor(value, what, shape=(100, D), dtype=F64), _student_t_oracle(xs, loc, scale_rows[:100], df), 1e-10,
              what + ", value", relative=True)
        ref_grads = _score_grads(_student_t_log_density(df), (xs, loc, scale_rows[:100]), cot)
        _check_input_grads(grads, ref_grads, ("x", "loc", "scale"), what)

    for args, label in (((x64[:4], loc, 0.0, 3.0), "scale = 0"), ((x64[:4], loc, -1.0, 3.0), "scale = -1"),
                        ((x64[:4], loc, torch.cat([scale_rows[:3], torch.zeros(1, 1, dtype=F64)]), 3.0),
                         "a per-sample scale with a zero entry"),
                        ((x64[:4], loc, 0.7, 0.0), "df = 0"), ((x64[:4], loc, 0.7, -2.0), "df = -2"),
                        ((x64[:4], loc, 0.7, math.nan), "df = nan"),
                        ((x64[0], loc, 0.7, 3.0), "x of shape (3,) (not (batch, D))"),
                        ((x64[:4].reshape(2, 2, 3), loc, 0.7, 3.0), "x of shape (2, 2, 3) (not (batch, D))")):
        try:
            student.raises(ValueError, "student_t_score", *args)
        except AssertionError as exc:
            raise AssertionError(f"{label}: {exc}") from None


# ------------------------------------------------------------------------- Exercise 9 (derivation)
def _dsm_minimum(tau: float, sigma: float, dim: int) -> float:
    """Derived here: s* = -x~ / (tau^2 + sigma^2); per dimension 0.5 E(z - c x~)^2 with
    c = sigma / (tau^2 + sigma^2) is 0.5 (1 - 2 c sigma + c^2 (tau^2 + sigma^2))."""
    c = sigma / (tau**2 + sigma**2)
    return 0.5 * dim * (1 - 2 * c * sigma + c**2 * (tau**2 + sigma**2))


def test_dsm_loss_minimum(student, seed):
    gen = generator(seed, 609)
    cases = [(1.0, 0.5, 2), (0.3, 2.0, 1), (5.0, 0.01, 64), (1.0, 1.0, 3)]
    cases.append((float(0.1 + 3 * torch.rand((), generator=gen)), float(0.05 + 2 * torch.rand((), generator=gen)),
                  int(torch.randint(1, 10, (), generator=gen))))
    for tau, sigma, dim in cases:
        what = f"dsm_loss_minimum(tau={tau:g}, sigma={sigma:g}, dim={dim})"
        got = student.call("dsm_loss_minimum", tau, sigma, dim)
        if isinstance(got, torch.Tensor):
            got = tensor(got, what + " (a 0-dim tensor or a float)", shape=()).item()
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            raise AssertionError(f"{what}: expected a float, got {type(got).__name__}")
        ref = _dsm_minimum(tau, sigma, dim)
        if not abs(got - ref) <= 1e-10 * abs(ref):
            raise AssertionError(f"{what}: got {got!r}, the exact minimum is {ref!r}; relative error "
                                 f"{abs(got - ref) / ref:.2e}, tolerance 1e-10")


# ------------------------------------------------------------------------- Exercise 10 (training)
MIX = ([0.3, 0.7], [[-2.0, 1.0], [1.5, -0.5]], [0.4, 0.6])
FIT_SIGMA = 0.3


def _mixture_samples(n, gen):
    """The notebook's mixture_samples (float32, CPU)."""
    comp = (torch.rand(n, generator=gen) >= MIX[0][0]).long()
    noise = torch.randn(n, 2, generator=gen)
    return torch.tensor(MIX[1])[comp] + torch.tensor(MIX[2])[comp, None] * noise


def relative_score_error(score, gen, n=4000):
    """E||s - grad log p_sigma||^2 / E||grad log p_sigma||^2 on n held-out points of p_sigma drawn
    from ``gen``; ``score`` maps float32 (n, 2) and sigma (n,) to (n, 2). The exact score comes from
    flowlib.GaussianMixture with every variance increased by sigma^2. Shared with
    tests/notebook_outcomes/nb06.py."""
    x = _mixture_samples(n, gen)
    x = x + FIT_SIGMA * torch.randn(x.shape, generator=gen)
    noisy = GaussianMixture(torch.tensor(MIX[0], dtype=F64), torch.tensor(MIX[1], dtype=F64),
                            stds=torch.sqrt(torch.tensor(MIX[2], dtype=F64) ** 2 + FIT_SIGMA**2)).double()
    exact = noisy.score(x.double())
    s = score(x, torch.full((n,), FIT_SIGMA)).to(F64)
    return (((s - exact) ** 2).sum(1).mean() / (exact**2).sum(1).mean()).item()


def _fit_and_score(student, x_train, gen, what):
    h = student.call("fit_score_model", x_train, FIT_SIGMA)
    if not isinstance(h, wire.Handle):
        raise AssertionError(f"{what}: return the trained network (a torch.nn.Module), got {type(h).__name__}")

    def score(x, sig):
        s = tensor(student.method(h, "forward", x, sig), f"{what}: net(float32 {tuple(x.shape)}, sigma float32 {tuple(sig.shape)})",
                   shape=tuple(x.shape), dtype=F32)
        finite(s, f"{what}: the network's score on held-out points")
        return s

    return relative_score_error(score, gen)


def test_fit_score_model(student, seed):
    # thresholds: bench/outcome-margins.md (nb06_fit_score_model)
    # the visible case: the notebook's data
    gen = torch.Generator().manual_seed(5)
    x_train = _mixture_samples(2000, gen)
    student.seed(0)
    what = "fit_score_model(float32 (2000, 2) from the mixture, sigma=0.3)"
    rel = _fit_and_score(student, x_train, gen, what)
    if not rel < 0.2:
        raise AssertionError(f"{what}: held-out relative score error {rel:.4f}, needs < 0.2")
    # fresh training data from the grading seed; held-out points never leave the grader except as the network's inputs
    gen = generator(seed, 610)
    x_train = _mixture_samples(2000, gen)
    student.seed(seed + 1)
    what = f"fit_score_model(float32 (2000, 2) from the mixture drawn at grading seed {seed}, sigma=0.3)"
    rel = _fit_and_score(student, x_train, gen, what)
    if not rel < 0.2:
        raise AssertionError(f"{what}: held-out relative score error {rel:.4f}, needs < 0.2")
