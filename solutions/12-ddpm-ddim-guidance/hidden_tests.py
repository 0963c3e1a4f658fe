"""Hidden tests of assignment 12, run by the grader (autograder/verdicts.py), never by students.

One function per graded test cell, named by the cell's grade_id, called as ``fn(student, seed)``:
``student`` calls the student's functions in the student's own process (autograder/probe),
``seed`` is the grading seed, from which every random input is drawn. Expected answers are
computed here, in the grader's process, from the formulas written out in each test (the
schedule's cumulative product, the ancestral and DDIM updates, the posterior mean of a
Gaussian derived below), by autograd for gradients, and from the exact scores of a Gaussian
mixture for guidance and for the training exercise. The noise models the student's code
calls are grader functions (``student.function``): the grader evaluates them and counts the
calls. A function passes when it returns; any exception fails the cell with its message. The
visible tests of the notebook are repeated here: points come only from these functions.
"""
from __future__ import annotations

import math

import torch

from flowlib import GaussianMixture
from flowlib.diffusion.ddpm import ddim_sample as grader_ddim
from probe.checks import close, finite, generator, one_thread, tensor
from probe.wire import Handle

F64, F32 = torch.float64, torch.float32

#: flowlib references replaced by stubs that raise in the student's process
STUB = [
    "flowlib.diffusion.ddpm.NoiseSchedule.sample_xt", "flowlib.diffusion.ddpm.NoiseSchedule.abar",
    "flowlib.diffusion.ddpm.convert", "flowlib.diffusion.ddpm.tweedie_denoise", "flowlib.diffusion.ddpm.ddpm_loss",
    "flowlib.diffusion.ddpm.ddpm_sample.__wrapped__", "flowlib.diffusion.ddpm.ddim_sample.__wrapped__",
    "flowlib.diffusion.ddpm.guided_eps", "flowlib.diffusion.gmm.GaussianMixture.eps_at",
]

#: time limit per test cell in seconds (default: FLOWLIB_CELL_TIMEOUT, 120)
TIMEOUTS: dict[str, float] = {}

#: graded cells that check a result the student derived by hand (a number or a formula)
DERIVATIONS = ["test_min_simple_loss"]

#: the solution cells each slow test runs: tests/run_mutants.py skips it for a mutant of any other cell
USES: dict[str, list[str]] = {"test_train_guided": ["train_guided"]}

BETAS = torch.linspace(1e-4, 0.02, 1000, dtype=F64)   # the notebook's BETAS (Ho et al.'s linear schedule)


# ------------------------------------------------------------------------- helpers
def _abar(betas: torch.Tensor) -> torch.Tensor:
    """abar_n at index n - 1: the running product of 1 - beta, written as a loop (float64)."""
    out, acc = [], 1.0
    for b in betas.tolist():
        acc *= 1.0 - b
        out.append(acc)
    return torch.tensor(out, dtype=F64)


def _random_betas(gen, N: int) -> torch.Tensor:
    """An increasing random schedule in (1e-3, 0.3)."""
    return torch.sort(1e-3 + 0.3 * torch.rand(N, generator=gen, dtype=F64)).values


def _col(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.reshape((x.shape[0],) + (1,) * (x.dim() - 1))


def _eps_model(student, fn, name: str, seen: list | None = None, differentiable: bool = False, max_calls: int = 1000):
    """A noise model ``eps_fn(x, t[, y])`` evaluated here; ``seen`` records the t it got."""
    def eps(x, t, *rest):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"eps_fn takes a floating-point tensor x, got {type(x).__name__}")
        if seen is not None:
            seen.append((tuple(t.shape), t.dtype, getattr(t, "probe_device", "cpu").split(":")[0], t.detach().clone())
                        if isinstance(t, torch.Tensor) else type(t).__name__)
        return fn(x, t, *rest)

    return student.function(eps, max_calls=max_calls, name=name, differentiable=differentiable)


# ------------------------------------------------------------------------- Exercise 1
@one_thread
def test_q_sample(student, seed):
    # the visible case
    betas = torch.tensor([0.19, 0.5], dtype=F64)
    x0 = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    noise = torch.tensor([[0.5, 1.0], [-1.0, 2.0]])
    what = "q_sample(float32 (2, 2), n=1, noise, betas=(0.19, 0.5))"
    got = tensor(student.call("q_sample", x0, 1, noise, betas), what, shape=(2, 2), dtype=F32)
    close(got, (0.9 * x0.double() + math.sqrt(0.19) * noise.double()), 1e-5, what + ": sqrt(abar_1) = 0.9")

    gen = generator(seed, 1201)
    for N, shape in ((1000, (64, 3, 2)), (37, (50, 4))):
        betas = BETAS if N == 1000 else _random_betas(gen, N)
        ab = _abar(betas)
        x = torch.randn(*shape, generator=gen, dtype=F64)
        z = torch.randn(*shape, generator=gen, dtype=F64)
        n = torch.randint(1, N + 1, (shape[0],), generator=gen)
        n[:2] = torch.tensor([1, N])
        want = _col(ab[n - 1].sqrt(), x) * x + _col((1 - ab[n - 1]).sqrt(), x) * z
        what = f"q_sample(float64 {shape}, n int64 ({shape[0]},) with n = 1 and {N} included, noise, betas of length {N})"
        got = tensor(student.call("q_sample", x, n, z, betas), what, shape=shape, dtype=F64)
        close(got, want, 1e-12, what)
        what = f"q_sample(float32 {shape}, n int64 ({shape[0]},), noise float32, betas of length {N})"
        got32 = tensor(student.call("q_sample", x.float(), n, z.float(), betas), what, shape=shape, dtype=F32)
        close(got32, want, 2e-5 * (1 + want.abs().max().item()), what)
        k = int(n[5])
        what = f"q_sample(float64 {shape}, n={k} (a Python int), noise, betas of length {N})"
        got_int = tensor(student.call("q_sample", x, k, z, betas), what, shape=shape, dtype=F64)
        close(got_int, ab[k - 1].sqrt() * x + (1 - ab[k - 1]).sqrt() * z, 1e-12, what)
    # abar is a product: at n = N of the long schedule almost all signal is gone (abar_1000 = 4.0e-5)
    x = torch.full((3, 2), 2.0, dtype=F64)
    got = student.call("q_sample", x, 1000, torch.zeros(3, 2, dtype=F64), BETAS)
    close(tensor(got, "q_sample(x0 = 2, n=1000, noise = 0, Ho et al.'s betas)"), x * _abar(BETAS)[-1].sqrt(), 1e-12,
          "q_sample(x0 = 2, n=1000, noise = 0, Ho et al.'s betas): 2 sqrt(abar_1000)")
    x, z = torch.randn(8, 2, generator=gen, dtype=F64), torch.randn(8, 2, generator=gen, dtype=F64)
    for bad, why in ((0, "n=0"), (1001, "n=N+1"), (torch.tensor([3, 0, 5, 5, 5, 5, 5, 5]), "a tensor n with a 0"),
                     (torch.full((8,), 2.0), "a floating-point tensor n"), (torch.full((7,), 2), "n of shape (7,) for a batch of 8"),
                     (torch.full((8, 1), 2), "n of shape (8, 1)")):
        student.raises(ValueError, "q_sample", x, bad, z, BETAS)


# ------------------------------------------------------------------------- Exercise 2
@one_thread
def test_simple_loss(student, seed):
    betas = torch.tensor([0.19, 0.5], dtype=F64)
    x0 = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    noise = torch.tensor([[0.5, 1.0], [-1.0, 2.0]])
    what = "simple_loss(eps_fn = 0, float32 (2, 2), n=1, noise, betas=(0.19, 0.5))"
    got = tensor(student.call("simple_loss", _eps_model(student, lambda x, t: torch.zeros_like(x), "0"), x0, 1, noise, betas),
                 what, shape=(), dtype=F32)
    close(got, torch.tensor(3.125, dtype=F64), 1e-5, what + ": the mean squared norm of the noise")

    gen = generator(seed, 1202)
    N = 50
    betas = _random_betas(gen, N)
    ab = _abar(betas)
    W = torch.randn(3, 3, generator=gen, dtype=F64) / 2
    c = torch.randn(3, generator=gen, dtype=F64)

    def model(x, t):  # a smooth time-dependent model acting on the last dimension
        return torch.tanh(x @ W.to(x.dtype).T + c.to(x.dtype)) * (1 + t.reshape((-1,) + (1,) * (x.dim() - 1)))

    x = torch.randn(40, 2, 3, generator=gen, dtype=F64)
    z = torch.randn(40, 2, 3, generator=gen, dtype=F64)
    n = torch.randint(1, N + 1, (40,), generator=gen)
    n[:2] = torch.tensor([1, N])

    def reference(x0_):
        xn = _col(ab[n - 1].sqrt(), x0_) * x0_ + _col((1 - ab[n - 1]).sqrt(), x0_) * z
        return (z - model(xn, n.double() / N)).pow(2).sum((1, 2)).mean()

    xr = x.clone().requires_grad_(True)
    want = reference(xr)
    (want_grad,) = torch.autograd.grad(want, xr)
    seen: list = []
    what = f"simple_loss(tanh model, float64 (40, 2, 3), n int64 (40,), noise, betas of length {N})"
    traced = _eps_model(student, model, "a tanh model", seen, differentiable=True)
    value, grads = student.call_grad("simple_loss", (traced, x, n, z, betas), wrt=(1,), cotangents=[torch.tensor(1.0, dtype=F64)])
    tensor(value, what, shape=(), dtype=F64)
    close(value, want.detach(), 1e-11, what + ", value", relative=True)
    if grads[0] is None:
        raise AssertionError(f"{what}: no gradient with respect to x0 (is x_n detached?)")
    close(grads[0], want_grad, 1e-10, what + ", gradient with respect to x0 (autograd)", relative=True)
    if len(traced.calls) != 1:  # (the backward pass asks the grader for a vector-Jacobian product, not a call)
        raise AssertionError(f"{what}: call eps_fn exactly once (it was called {len(traced.calls)} times)")
    shape_t, dtype_t, dev_t, t_val = seen[0]
    if (shape_t, dtype_t, dev_t) != ((40,), F64, torch.device(student.device).type):
        raise AssertionError(f"{what}: pass t to eps_fn as a (batch,) tensor with x0's dtype and device, got {shape_t} {dtype_t} on {dev_t}")
    close(t_val, n.double() / N, 1e-15, what + ": t passed to eps_fn must be n / N")

    what = f"simple_loss(tanh model, float32 (40, 2, 3), n int64 (40,), noise, betas of length {N})"
    v32 = tensor(student.call("simple_loss", _eps_model(student, model, "a tanh model"), x.float(), n, z.float(), betas),
                 what, shape=(), dtype=F32)
    close(v32, want.detach(), 1e-5, what, relative=True)
    what = f"simple_loss(tanh model, float64 (40, 2, 3), n=7 (a Python int), noise, betas of length {N})"
    v_int = student.call("simple_loss", _eps_model(student, model, "a tanh model"), x, 7, z, betas)
    xn = ab[6].sqrt() * x + (1 - ab[6]).sqrt() * z
    close(tensor(v_int, what, shape=(), dtype=F64), (z - model(xn, torch.full((40,), 7 / N, dtype=F64))).pow(2).sum((1, 2)).mean(),
          1e-11, what, relative=True)
    student.raises(ValueError, "simple_loss", _eps_model(student, model, "a tanh model"), x, N + 1, z, betas)


# ------------------------------------------------------------------------- Exercise 3
@one_thread
def test_ancestral_step(student, seed):
    betas = torch.tensor([0.19, 0.5], dtype=F64)
    x = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    eps = torch.tensor([[0.5, 1.0], [-1.0, 2.0]])
    z = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    what = "ancestral_step(float32 (2, 2), eps, n=2, betas=(0.19, 0.5), z)"
    got = tensor(student.call("ancestral_step", x, eps, 2, betas, z), what, shape=(2, 2), dtype=F32)
    close(got, ((x - 0.5 / math.sqrt(0.595) * eps) / math.sqrt(0.5) + math.sqrt(0.5) * z).double(), 1e-5, what)

    gen = generator(seed, 1203)
    for N, shape in ((1000, (30, 2, 2)), (25, (40, 3))):
        betas = BETAS if N == 1000 else _random_betas(gen, N)
        ab = _abar(betas)
        xb, eb, zb = (torch.randn(*shape, generator=gen, dtype=F64) for _ in range(3))
        for n in (N, int(torch.randint(2, N, (1,), generator=gen)), 2, 1):
            beta = betas[n - 1].item()
            want = (xb - beta / math.sqrt(1 - ab[n - 1].item()) * eb) / math.sqrt(1 - beta)
            if n > 1:
                want = want + math.sqrt(beta) * zb
            what = f"ancestral_step(float64 {shape}, eps, n={n}, betas of length {N}, z)"
            got = tensor(student.call("ancestral_step", xb, eb, n, betas, zb), what, shape=shape, dtype=F64)
            close(got, want, 1e-11, what + (" (no noise at n = 1)" if n == 1 else ""), relative=True)
            what = f"ancestral_step(float32 {shape}, eps, n={n}, betas of length {N}, z)"
            got32 = tensor(student.call("ancestral_step", xb.float(), eb.float(), n, betas, zb.float()), what, shape=shape, dtype=F32)
            close(got32, want, 1e-4, what, relative=True)
    for bad in (0, 26, 2.0):
        student.raises(ValueError, "ancestral_step", xb, eb, bad, betas, zb)


# ------------------------------------------------------------------------- Exercise 4
@one_thread
def test_ddim_step(student, seed):
    betas = torch.tensor([0.19, 0.5], dtype=F64)
    x = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    eps = torch.tensor([[0.5, 1.0], [-1.0, 2.0]])
    what = "ddim_step(float32 (2, 2), eps, n=2, n_prev=1, betas=(0.19, 0.5))"
    got = tensor(student.call("ddim_step", x, eps, 2, 1, betas), what, shape=(2, 2), dtype=F32)
    x0_hat = (x.double() - math.sqrt(0.595) * eps.double()) / math.sqrt(0.405)
    close(got, 0.9 * x0_hat + math.sqrt(0.19) * eps.double(), 1e-5, what)

    gen = generator(seed, 1204)
    for N, shape in ((1000, (30, 2, 2)), (40, (25, 3))):
        betas = BETAS if N == 1000 else _random_betas(gen, N)
        ab = _abar(betas)
        xb, eb = (torch.randn(*shape, generator=gen, dtype=F64) for _ in range(2))
        mid = int(torch.randint(2, N, (1,), generator=gen))
        for n, n_prev in ((N, mid), (mid, mid - 1), (N, 0), (1, 0), (mid, 0)):
            a = ab[n - 1].item()
            a_prev = ab[n_prev - 1].item() if n_prev else 1.0
            x0h = (xb - math.sqrt(1 - a) * eb) / math.sqrt(a)
            want = math.sqrt(a_prev) * x0h + math.sqrt(1 - a_prev) * eb
            what = f"ddim_step(float64 {shape}, eps, n={n}, n_prev={n_prev}, betas of length {N})"
            got = tensor(student.call("ddim_step", xb, eb, n, n_prev, betas), what, shape=shape, dtype=F64)
            close(got, want, 1e-10, what + (" (abar_0 = 1: the step returns x0_hat)" if n_prev == 0 else ""), relative=True)
            what = f"ddim_step(float32 {shape}, eps, n={n}, n_prev={n_prev}, betas of length {N})"
            got32 = tensor(student.call("ddim_step", xb.float(), eb.float(), n, n_prev, betas), what, shape=shape, dtype=F32)
            close(got32, want, 1e-3, what, relative=True)
    # a deterministic DDIM step with the exact noise of a noised point maps it to the same noise at the lower level
    x0, z = torch.randn(20, 3, generator=gen, dtype=F64), torch.randn(20, 3, generator=gen, dtype=F64)
    a, a_prev = ab[29].item(), ab[9].item()
    what = f"ddim_step(x_30 = sqrt(abar_30) x0 + sqrt(1 - abar_30) eps, the true eps, n=30, n_prev=10, betas of length {N})"
    got = student.call("ddim_step", math.sqrt(a) * x0 + math.sqrt(1 - a) * z, z, 30, 10, betas)
    close(tensor(got, what), math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * z, 1e-10, what + ": x_10 from the same x0 and eps")
    for n, n_prev in ((5, 5), (5, 7), (0, 0), (N + 1, 3), (5, -1)):
        student.raises(ValueError, "ddim_step", xb, eb, n, n_prev, betas)


# ------------------------------------------------------------------------- Exercise 5
def _labelled_oracle():
    gmm = GaussianMixture(torch.tensor([0.4, 0.3, 0.3], dtype=F64), torch.tensor([[-1.0, 0.0], [1.0, 1.0], [1.0, -1.0]], dtype=F64),
                          stds=0.5)
    return gmm, {0: gmm.restricted([0]), 1: gmm.restricted([1, 2])}


def _score_by_label(x, ab, y, gmm, parts, null):
    """The exact score of p_abar(x | y) (of p_abar(x) where y is the null label), float64."""
    out = torch.empty(x.shape, dtype=F64)
    for c, part in list(parts.items()) + [(null, gmm)]:
        m = y == c
        if m.any():
            out[m] = part.affine_score(x.double()[m], ab[m].sqrt(), (1 - ab[m]).sqrt())
    return out


@one_thread
def test_guided_eps(student, seed):
    x = torch.zeros(3, 2)
    t = torch.full((3,), 0.5)
    y = torch.tensor([0, 1, 1])
    fake = _eps_model(student, lambda v, tt, yy: yy.to(v.dtype)[:, None].expand_as(v) + 0 * v, "the label")
    what = "guided_eps(eps = the label, float32 (3, 2), t, y = (0, 1, 1), w=2.0, null_label=5)"
    got = tensor(student.call("guided_eps", fake, x, t, y, 2.0, 5), what, shape=(3, 2), dtype=F32)
    close(got, 3.0 * y.double()[:, None].expand(3, 2) - 10.0, 1e-6, what + ": 3 y - 2 x 5")

    gen = generator(seed, 1205)
    gmm, parts = _labelled_oracle()
    null = 2
    xb = 1.5 * torch.randn(60, 2, generator=gen, dtype=F64)
    tb = 0.05 + 0.9 * torch.rand(60, generator=gen, dtype=F64)
    yb = torch.randint(0, 2, (60,), generator=gen)
    ab = torch.cos(tb * math.pi / 2) ** 2  # any level in (0, 1) per row

    def exact_eps(v, tt, yy):
        a = torch.cos(tt.double() * math.pi / 2) ** 2
        return (-(1 - a).sqrt()[:, None] * _score_by_label(v, a, yy, gmm, parts, null)).to(v.dtype)

    for w in (0.0, 1.0, 3.5):
        # the guided eps is -sqrt(1 - abar) times the guided score (1 + w) s(x | y) - w s(x)
        want = -(1 - ab).sqrt()[:, None] * ((1 + w) * _score_by_label(xb, ab, yb, gmm, parts, null)
                                            - w * _score_by_label(xb, ab, torch.full_like(yb, null), gmm, parts, null))
        seen: list = []
        model = _eps_model(student, exact_eps, "the exact mixture eps", seen)
        what = f"guided_eps(exact mixture eps, float64 (60, 2), t (60,), y (60,), w={w}, null_label=2)"
        got = tensor(student.call("guided_eps", model, xb, tb, yb, w, null), what, shape=(60, 2), dtype=F64)
        close(got, want, 1e-10, what + ": -sqrt(1 - abar) ((1 + w) s(x | y) - w s(x))", relative=True)
        if len(model.calls) > 2:
            raise AssertionError(f"{what}: call eps_fn at most twice (it was called {len(model.calls)} times)")
        what = f"guided_eps(exact mixture eps, float32 (60, 2), t (60,), y (60,), w={w}, null_label=2)"
        got32 = tensor(student.call("guided_eps", _eps_model(student, exact_eps, "the exact mixture eps"), xb.float(), tb.float(), yb, w, null),
                       what, shape=(60, 2), dtype=F32)
        close(got32, want, 1e-4, what, relative=True)
    student.raises(ValueError, "guided_eps", _eps_model(student, exact_eps, "the exact mixture eps"), xb, tb, yb, -0.5, null)


# ------------------------------------------------------------------------- Exercise 6 (transfer)
def _posterior_eps(x, ab, mean, std):
    """E[eps | x_n = x] for x_0 ~ N(mean, diag(std^2)), derived here coordinate by coordinate:
    x_n = sqrt(ab) x_0 + sqrt(1 - ab) eps has mean sqrt(ab) mu and variance ab s^2 + 1 - ab, and
    Cov(eps, x_n) = sqrt(1 - ab); the Gaussian regression of eps on x_n is the posterior mean."""
    ab = ab.double()[:, None]
    mean, std = mean.double(), std.double()
    return (1 - ab).sqrt() / (ab * std**2 + 1 - ab) * (x.double() - ab.sqrt() * mean)


@one_thread
def test_gaussian_eps(student, seed):
    x = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    what = "gaussian_eps(float32 (2, 2), alpha_bar=0.36, mean=0, std=1)"
    got = tensor(student.call("gaussian_eps", x, 0.36, torch.zeros(2), torch.ones(2)), what, shape=(2, 2), dtype=F32)
    close(got, 0.8 * x.double(), 1e-6, what + ": sqrt(1 - abar) x for standard normal data")

    gen = generator(seed, 1206)
    D = 4
    mean = 2 * torch.randn(D, generator=gen, dtype=F64)
    std = 0.2 + 2 * torch.rand(D, generator=gen, dtype=F64)
    x0 = mean + std * torch.randn(80, D, generator=gen, dtype=F64)
    ab = 0.02 + 0.96 * torch.rand(80, generator=gen, dtype=F64)
    ab[:2] = torch.tensor([1e-6, 1 - 1e-6], dtype=F64)
    z = torch.randn(80, D, generator=gen, dtype=F64)
    xn = ab.sqrt()[:, None] * x0 + (1 - ab).sqrt()[:, None] * z
    want = _posterior_eps(xn, ab, mean, std)
    what = f"gaussian_eps(float64 (80, {D}), alpha_bar float64 (80,) with 1e-6 and 1 - 1e-6 included, mean (4,), std (4,))"
    got = tensor(student.call("gaussian_eps", xn, ab, mean, std), what, shape=(80, D), dtype=F64)
    close(got, want, 1e-10, what, relative=True)
    # the same answer from the oracle's exact score of the noised Gaussian (Tweedie): -sqrt(1 - ab) grad log p_ab
    one = GaussianMixture(torch.ones(1, dtype=F64), mean[None], stds=std[None])
    via_score = -(1 - ab).sqrt()[:, None] * one.affine_score(xn, ab.sqrt(), (1 - ab).sqrt())
    close(got, via_score, 1e-9, what + ": against -sqrt(1 - abar) times the exact score of the noised data", relative=True)
    # the optimal eps beats any other predictor: its simple loss at one level is below that of a shifted one
    what = f"gaussian_eps(float64 (80, {D}), alpha_bar=0.4 (a Python float), mean (4,), std (4,))"
    got_s = tensor(student.call("gaussian_eps", xn, 0.4, mean, std), what, shape=(80, D), dtype=F64)
    close(got_s, _posterior_eps(xn, torch.full((80,), 0.4, dtype=F64), mean, std), 1e-10, what, relative=True)
    what = f"gaussian_eps(float32 (80, {D}), alpha_bar float32 (80,), mean float32 (4,), std float32 (4,))"
    got32 = tensor(student.call("gaussian_eps", xn.float(), ab.float(), mean.float(), std.float()), what, shape=(80, D), dtype=F32)
    close(got32, want, 1e-4, what, relative=True)
    what = f"gaussian_eps(float64 (80, {D}), alpha_bar float64 (80,), mean float32 (4,), std float32 (4,))"
    got_mixed = tensor(student.call("gaussian_eps", xn, ab, mean.float(), std.float()), what, shape=(80, D), dtype=F64)
    close(got_mixed, _posterior_eps(xn, ab, mean.float(), std.float()), 1e-10, what + " (compute in x's dtype)", relative=True)
    for bad_ab in (0.0, 1.0, torch.full((80,), 1.2, dtype=F64), torch.full((79,), 0.5, dtype=F64)):
        student.raises(ValueError, "gaussian_eps", xn, bad_ab, mean, std)
    student.raises(ValueError, "gaussian_eps", xn, 0.5, mean, torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=F64))


# ------------------------------------------------------------------------- Exercise 7 (training, outcome)
MODES = [[-2.5, 0.0], [0.0, 1.2], [1.2, -0.6], [2.7, -1.2]]
WEIGHTS = [0.3, 0.2, 0.3, 0.2]
STD = 0.45
CLASS_OF = [0, 0, 1, 1]
NULL = 2
TRAIN_STEPS = 3000
GUIDANCE = 1.0
DDIM_STEPS = 50
PER_CLASS = 1000


def mixture() -> GaussianMixture:
    return GaussianMixture(torch.tensor(WEIGHTS, dtype=F64), torch.tensor(MODES, dtype=F64), stds=STD)


def labelled_sample(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n float32 points of the mixture and the int64 class of the mode each came from."""
    k = torch.multinomial(torch.tensor(WEIGHTS, dtype=F64), n, replacement=True, generator=gen)
    x = torch.tensor(MODES, dtype=F64)[k] + STD * torch.randn(n, 2, generator=gen, dtype=F64)
    return x.float(), torch.tensor(CLASS_OF)[k]


def mode_fractions(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """(2, 4): for each class, the fraction of its samples whose most probable mode is k."""
    d2 = torch.cdist(xs.double(), torch.tensor(MODES, dtype=F64)) ** 2
    k = (torch.tensor(WEIGHTS, dtype=F64).log() - d2 / (2 * STD**2)).argmax(1)
    return torch.stack([torch.stack([(k[ys == c] == j).double().mean() for j in range(4)]) for c in (0, 1)])


def exact_eps(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The mixture's exact noise prediction E[eps | x_n = x, y] (y = NULL: unconditional), t = n / 1000."""
    gmm = mixture()
    parts = {0: gmm.restricted([0, 1]), 1: gmm.restricted([2, 3])}
    ab = _abar(BETAS)[(t.double() * 1000).round().long() - 1]
    return (-(1 - ab).sqrt()[:, None] * _score_by_label(x, ab, y, gmm, parts, NULL)).to(x.dtype)


def guided(eps_fn, w: float):
    def eps(x, t, y):
        return (1 + w) * eps_fn(x, t, y) - w * eps_fn(x, t, torch.full_like(y, NULL))
    return eps


def guided_error(eps_fn, x_start: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Largest difference of the 8 mode fractions between DDIM samples of ``eps_fn`` and of the exact
    eps, both guided with weight GUIDANCE from the same starting noise (PER_CLASS rows per class)."""
    ys = torch.arange(2 * PER_CLASS) % 2
    sched = _schedule()
    got = grader_ddim(guided(eps_fn, GUIDANCE), sched, None, n_steps=DDIM_STEPS, y=ys, x_N=x_start.float())
    ref = grader_ddim(guided(exact_eps, GUIDANCE), sched, None, n_steps=DDIM_STEPS, y=ys, x_N=x_start.double())
    fg, fr = mode_fractions(got, ys), mode_fractions(ref, ys)
    return (fg - fr).abs().max().item(), fg, fr


def _schedule():
    from flowlib import NoiseSchedule
    return NoiseSchedule(BETAS)


def test_train_guided(student, seed):
    # thresholds: bench/outcome-margins.md (nb12_guided_mode_fractions)
    gen = generator(seed, 1207)
    x_train, y_train = labelled_sample(4000, gen)
    x_start = torch.randn(2 * PER_CLASS, 2, generator=generator(seed, 1208))   # never sent before sampling
    student.seed(1_000_003 * int(seed) + 1209)
    what = f"train_guided(float32 (4000, 2), int64 (4000,), {TRAIN_STEPS})"
    net = student.call("train_guided", x_train, y_train, TRAIN_STEPS)
    if not isinstance(net, Handle):
        raise AssertionError(f"{what}: return the trained network (a torch.nn.Module), got {type(net).__name__}")
    if student.method(net, "__getattribute__", "training"):
        raise AssertionError(f"{what}: return the network in eval mode (net.eval())")
    student.set_grad_enabled(False)
    try:
        def student_eps(x, t, y):
            out = tensor(student.method(net, "forward", x, t, y), f"{what}: net(x float32 {tuple(x.shape)}, t, y)",
                         shape=tuple(x.shape), dtype=F32)
            finite(out, f"{what}: net(x, t, y)")
            return out
        err, got, ref = guided_error(student_eps, x_start)
    finally:
        student.set_grad_enabled(True)
    if not err < 0.17:
        raise AssertionError(
            f"{what}, sampled by DDIM ({DDIM_STEPS} steps) with guidance w = {GUIDANCE}: mode fractions per class "
            f"{got.numpy().round(3).tolist()}, the exact guided sampler's {ref.numpy().round(3).tolist()}; the largest "
            f"difference {err:.3f} must be below 0.17 (check the label dropout, the time input t = n / 1000 and the training budget)")


# ------------------------------------------------------------------------- Exercise 8 (derivation)
def test_min_simple_loss(student, seed):
    v = student.value("MIN_SIMPLE_LOSS")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise AssertionError(f"MIN_SIMPLE_LOSS must be a Python float, got {type(v).__name__}")
    # per coordinate, Var(eps | x_n) = 1 - Cov(eps, x_n)^2 / Var(x_n) = 1 - (1 - ab) / (ab s^2 + 1 - ab); D = 3
    ab, s2, D = 0.3, 1.5**2, 3
    want = D * (1 - (1 - ab) / (ab * s2 + 1 - ab))
    err = abs(float(v) - want)
    if not err < 1e-6:
        raise AssertionError(f"MIN_SIMPLE_LOSS = {float(v):.8f} is off by {err:.1e}, tolerance 1e-6 (it is the expected "
                             "posterior variance of eps given x_n, summed over the 3 coordinates)")
