"""Hidden tests of assignment 08, run by the grader (autograder/verdicts.py), never by students.

One function per graded test cell, named by the cell's grade_id, called as ``fn(student, seed)``:
``student`` calls the student's functions in the student's own process (autograder/probe),
``seed`` is the grading seed, from which every random input is drawn. Expected answers are
computed here, in the grader's process, with the real flowlib (the SDEs' marginals, its
samplers) and the exact score of a Gaussian mixture. The score functions the student's code
calls are grader functions (``student.function``): the grader evaluates them and sees every
call. The SDE objects are built in the student's process (``student.new("VESDE", ...)``); the
samplers' generators too, seeded there with the same number as the grader's generator, so the
noise is the same number for number. A function passes when it returns; any exception fails
the cell with its message. The visible tests of the notebook are repeated here: points come
only from these functions.
"""
from __future__ import annotations

import math

import torch

from flowlib import VESDE, VPSDE, GaussianMixture
from flowlib import euler_maruyama as reference_em
from flowlib import pc_sample as reference_pc
from probe.checks import close, finite, generator, one_thread, sequence, tensor
from probe.wire import Handle

F64, F32 = torch.float64, torch.float32

#: flowlib references replaced by stubs that raise in the student's process
STUB = [
    "flowlib.diffusion.sde.VESDE.marginal_coefficients", "flowlib.diffusion.sde.VPSDE.marginal_coefficients", "flowlib.diffusion.sde.SDE.marginal",
    "flowlib.diffusion.sde.euler_maruyama.__wrapped__", "flowlib.diffusion.sde.pc_sample.__wrapped__",
]

#: time limit per test cell in seconds (default: FLOWLIB_CELL_TIMEOUT, 120)
TIMEOUTS: dict[str, float] = {}

#: graded cells that check a result the student derived by hand (a number or a formula)
DERIVATIONS = ["test_subvp_half_std_time"]

#: the solution cells each slow test runs: tests/run_mutants.py skips it for a mutant of any other
#: cell (grading always runs every test)
USES: dict[str, list[str]] = {"test_train_vp_score": ["train_vp_score", "em_sampler", "em_step", "reverse_drift", "vp_marginal", "ve_marginal"],
                              "test_em_sampler": ["em_sampler", "em_step", "reverse_drift", "vp_marginal", "ve_marginal"]}


# ------------------------------------------------------------------------- helpers


def _sde(student, sde):
    """The same SDE, built in the student's process (a handle to pass to the student's functions)."""
    if isinstance(sde, VESDE):
        return student.new("VESDE", sde.sigma_min, sde.sigma_max)
    return student.new("VPSDE", sde.beta_min, sde.beta_max)


def _generators(student, seed: int, salt: int):
    """(the grader's generator(seed, salt), a generator in the student's process in the same state)."""
    return generator(seed, salt), student.generator(1_000_003 * int(seed) + int(salt))


def _score(student, fn, name: str, seen: list | None = None, max_calls: int = 1000):
    """A score function ``score_fn(x, t)`` evaluated here; ``seen`` records what t was."""
    def score(x, t):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"score_fn takes a floating-point tensor x, got {type(x).__name__}")
        if seen is not None:
            seen.append((tuple(t.shape), t.dtype, getattr(t, "probe_device", "cpu").split(":")[0])
                        if isinstance(t, torch.Tensor) else type(t).__name__)
        return fn(x, t)

    return student.function(score, max_calls=max_calls, name=name)


def _rel(got, ref, tol, what):
    """max |got - ref| / (1 + |ref|) <= tol."""
    return close(got, ref, tol, what, relative=True)


def _allclose(got, ref, rtol, atol, what):
    """|got - ref| <= atol + rtol |ref| everywhere (torch.allclose), compared in float64."""
    got = tensor(got, what)
    if tuple(got.shape) != tuple(ref.shape):
        raise AssertionError(f"{what}: expected shape {tuple(ref.shape)}, got {tuple(got.shape)}")
    excess = ((got.double() - ref.double()).abs() - rtol * ref.double().abs()).max().item()
    if not excess <= atol:
        raise AssertionError(f"{what}: off by {excess:.3e} beyond rtol {rtol:g} x |expected|, tolerance {atol:.1e}")


def _pair(student, name, what, *args, shape, dtype, **kwargs):
    out = sequence(student.call(name, *args, **kwargs), 2, what + ": return (mean, std)" if "marginal" in name
                   else what + ": return (x_new, x_mean)")
    a = tensor(out[0], what + (", mean" if "marginal" in name else ", x_new"), shape=shape[0], dtype=dtype)
    b = tensor(out[1], what + (", std" if "marginal" in name else ", x_mean"), shape=shape[1], dtype=dtype)
    return a, b


def _gmm(weights, means, stds):
    return GaussianMixture(weights, means, stds=stds).to(torch.float64)


# ------------------------------------------------------------------------- Exercise 1
@one_thread
def test_ve_marginal(student, seed):
    # the visible case: float32, t = 1/2, sigma(1/2) = 1
    x0 = torch.tensor([[1.0, -2.0], [0.5, 3.0], [0.0, 0.0]])
    what = "ve_marginal(float32 (3, 2), t=0.5, sigma_min=0.01, sigma_max=100.0)"
    mean, std = _pair(student, "ve_marginal", what, x0, 0.5, 0.01, 100.0, shape=((3, 2), (3, 1)), dtype=F32)
    if not torch.equal(mean, x0):
        raise AssertionError(f"{what}: the VE SDE has no drift, the mean is x0 exactly")
    close(std[:1, 0], torch.tensor([0.99994999875], dtype=F64), 1e-5,
          what + ": std at t = 1/2 is sqrt(1 - 0.01^2) = 0.99995")

    gen = generator(seed, 801)
    sde = VESDE(0.02, 30.0)
    xb = torch.randn(64, 3, 4, generator=gen, dtype=F64)
    tb = torch.rand(64, generator=gen, dtype=F64)
    tb[:4] = torch.tensor([0.0, 1e-7, 1e-3, 1.0], dtype=F64)
    ref_mean, ref_std = sde.marginal(xb, tb)
    ref_scalar = sde.marginal(xb, 0.37)[1]

    what = "ve_marginal(float64 (64, 3, 4), t float64 (64,) with t = 0, 1e-7, 1e-3, 1 included, 0.02, 30.0)"
    m, s = _pair(student, "ve_marginal", what, xb, tb, 0.02, 30.0, shape=((64, 3, 4), (64, 1, 1)), dtype=F64)
    close(m, ref_mean, 1e-12, what + ": the mean of the VE marginal is x0")
    if not abs(s[0].item()) < 1e-12:
        raise AssertionError(f"{what}: std at t = 0 must be 0 (the process starts at x0), got {s[0].item():.3e}")
    err = ((s - ref_std).abs() / ref_std.clamp_min(1e-300)).flatten()[1:].max().item()
    if not err < 1e-8:
        raise AssertionError(f"{what}: relative error of std {err:.2e}, tolerance 1e-08 "
                             "(is the variance sigma(t)^2 - sigma_min^2, and exact at small t? use torch.expm1)")
    exact_T = math.sqrt(30.0**2 - 0.02**2)
    if not abs(s[3].item() - exact_T) < 1e-9:
        raise AssertionError(f"{what}: std at t = 1 is sqrt(sigma_max^2 - sigma_min^2) = {exact_T:.12f}, "
                             f"got {s[3].item():.12f} (tolerance 1e-09)")

    what = "ve_marginal(float64 (64, 3, 4), t=0.37, 0.02, 30.0)"
    _, s_scalar = _pair(student, "ve_marginal", what, xb, 0.37, 0.02, 30.0, shape=((64, 3, 4), (64, 1, 1)), dtype=F64)
    _allclose(s_scalar, ref_scalar, 1e-10, 0.0, what + ", std (a Python number t)")
    what = "ve_marginal(float64 (64, 3, 4), t=tensor(0.37, float64) 0-dim, 0.02, 30.0)"
    _, s_0d = _pair(student, "ve_marginal", what, xb, torch.tensor(0.37, dtype=F64), 0.02, 30.0,
                    shape=((64, 3, 4), (64, 1, 1)), dtype=F64)
    _allclose(s_0d, ref_scalar, 1e-10, 0.0, what + ", std (a 0-dim tensor t)")

    what = "ve_marginal(float32 (64, 3, 4), t float32 (64,), 0.02, 30.0)"
    _, s32 = _pair(student, "ve_marginal", what, xb.float(), tb.float(), 0.02, 30.0,
                   shape=((64, 3, 4), (64, 1, 1)), dtype=F32)
    _allclose(s32, ref_std, 1e-4, 1e-6, what + ", std")

    student.raises(ValueError, "ve_marginal", xb, torch.full((63,), 0.5, dtype=F64), 0.02, 30.0)
    # any other shape, also one with 64 entries (issue 19: every raises clause)
    student.raises(ValueError, "ve_marginal", xb, torch.full((64, 1), 0.5, dtype=F64), 0.02, 30.0)


# ------------------------------------------------------------------------- Exercise 2
@one_thread
def test_vp_marginal(student, seed):
    # the visible case: float32, beta = 4t, t = 1: alpha = e^-1
    x0 = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    what = "vp_marginal(float32 (2, 2), t=1.0, beta_min=0.0, beta_max=4.0)"
    mean, std = _pair(student, "vp_marginal", what, x0, 1.0, 0.0, 4.0, shape=((2, 2), (2, 1)), dtype=F32)
    close(mean[:1, 0], torch.tensor([0.36787944], dtype=F64), 1e-5, what + ": mean = e^-1 x0 = 0.36788")
    close(std[:1, 0], torch.tensor([0.92987353], dtype=F64), 1e-5, what + ": std = sqrt(1 - e^-2) = 0.92987")

    gen = generator(seed, 802)
    sde = VPSDE(0.1, 20.0)
    xb = torch.randn(64, 2, 3, generator=gen, dtype=F64)
    tb = torch.rand(64, generator=gen, dtype=F64)
    tb[:3] = torch.tensor([0.0, 1e-6, 1.0], dtype=F64)
    ref_mean, ref_std = sde.marginal(xb, tb)
    ref2 = VPSDE(1.5, 3.0).marginal(xb, 0.8)

    what = "vp_marginal(float64 (64, 2, 3), t float64 (64,) with t = 0, 1e-6, 1 included, 0.1, 20.0)"
    m, s = _pair(student, "vp_marginal", what, xb, tb, 0.1, 20.0, shape=((64, 2, 3), (64, 1, 1)), dtype=F64)
    close(m, ref_mean, 1e-12, what + ", mean (it is exp(-1/2 int_0^t beta) x0)")
    if not abs(s[0].item()) < 1e-12:
        raise AssertionError(f"{what}: std at t = 0 must be 0, got {s[0].item():.3e}")
    err = ((s - ref_std).abs() / ref_std.clamp_min(1e-300)).flatten()[1:].max().item()
    if not err < 1e-8:
        raise AssertionError(f"{what}: relative error of std {err:.2e}, tolerance 1e-08 "
                             "(exact at small t? -torch.expm1(2 log_alpha) is 1 - alpha^2)")
    # variance preserving: alpha^2 + std^2 = 1
    alpha = m[:, 0, 0] / xb[:, 0, 0]
    e = (alpha**2 + s.flatten() ** 2 - 1).abs().max().item()
    if not e < 1e-10:
        raise AssertionError(f"{what}: alpha^2 + std^2 - 1 is {e:.3e}, tolerance 1e-10 (the VP SDE preserves unit variance)")

    what = "vp_marginal(float64 (64, 2, 3), t=0.8, beta_min=1.5, beta_max=3.0)"
    m2, s2 = _pair(student, "vp_marginal", what, xb, 0.8, 1.5, 3.0, shape=((64, 2, 3), (64, 1, 1)), dtype=F64)
    close(m2, ref2[0], 1e-12, what + ", mean")
    close(s2, ref2[1], 1e-12, what + ", std")

    what = "vp_marginal(float32 (64, 2, 3), t float32 (64,), 0.1, 20.0)"
    m32, s32 = _pair(student, "vp_marginal", what, xb.float(), tb.float(), 0.1, 20.0,
                     shape=((64, 2, 3), (64, 1, 1)), dtype=F32)
    _allclose(s32, ref_std, 1e-4, 1e-6, what + ", std")
    _allclose(m32, ref_mean, 1e-4, 1e-6, what + ", mean")

    student.raises(ValueError, "vp_marginal", xb, torch.full((64, 1), 0.5, dtype=F64), 0.1, 20.0)
    student.raises(ValueError, "vp_marginal", xb, torch.full((63,), 0.5, dtype=F64), 0.1, 20.0)


# ------------------------------------------------------------------------- Exercise 3
@one_thread
def test_reverse_drift(student, seed):
    # the visible case: beta = 2 (f = -x, g^2 = 2) and s = -x: the drift is x
    x = torch.tensor([[1.0, 2.0]])
    what = "reverse_drift(score_fn = -x, VPSDE(2.0, 2.0), float32 (1, 2), t=0.5)"
    d = tensor(student.call("reverse_drift", _score(student, lambda v, t: -v, "-x"), _sde(student, VPSDE(2.0, 2.0)), x, 0.5),
               what, shape=(1, 2), dtype=F32)
    _allclose(d, x.double(), 1e-5, 1e-6, what + ": with beta = 2 and s = -x the drift is -x + 2x = x")

    gen = generator(seed, 803)
    gmm = _gmm([0.6, 0.4], [[-1.0, 0.5], [1.5, -1.0]], [0.4, 0.7])
    xb = 2 * torch.randn(50, 2, generator=gen, dtype=F64)
    tb = 0.01 + 0.98 * torch.rand(50, generator=gen, dtype=F64)
    for sde in (VESDE(0.01, 10.0), VPSDE(0.1, 20.0)):
        f, g = sde.drift_diffusion(xb, tb)
        ref = f - g**2 * gmm.score_at(xb, tb, sde)
        f, g = sde.drift_diffusion(xb, 0.3)
        ref_scalar = f - g**2 * gmm.score_at(xb, 0.3, sde)
        seen: list = []
        oracle = _score(student, lambda v, t, sde=sde: gmm.score_at(v, t, sde), "the exact mixture score", seen)
        handle = _sde(student, sde)

        what = f"reverse_drift(exact mixture score, {sde}, float64 (50, 2), t float64 (50,))"
        got = tensor(student.call("reverse_drift", oracle, handle, xb, tb), what, shape=(50, 2), dtype=F64)
        _rel(got, ref, 1e-10, what + " (it is f - g^2 s)")
        what = f"reverse_drift(exact mixture score, {sde}, float64 (50, 2), t=0.3)"
        got_scalar = tensor(student.call("reverse_drift", oracle, handle, xb, 0.3), what, shape=(50, 2), dtype=F64)
        _rel(got_scalar, ref_scalar, 1e-10, what + " (a scalar t)")
        what = f"reverse_drift(exact mixture score, {sde}, float32 (50, 2), t float32 (50,))"
        got32 = tensor(student.call("reverse_drift", oracle, handle, xb.float(), tb.float()), what, shape=(50, 2), dtype=F32)
        _rel(got32, ref, 1e-3, what)
        if len(oracle.calls) != 3:
            raise AssertionError(f"reverse_drift({sde}): call score_fn exactly once per call of reverse_drift "
                                 f"(it was called {len(oracle.calls)} times in 3 calls)")
        want = ((50,), F64, torch.device(student.device).type)
        if seen[1] != want:
            raise AssertionError(f"reverse_drift(..., float64 (50, 2), t=0.3) with {sde}: pass t to score_fn as a "
                                 f"(batch,) tensor with x's dtype and device, got {seen[1]}")


# ------------------------------------------------------------------------- Exercise 4
@one_thread
def test_em_step(student, seed):
    # the visible case: beta = 2, s = -x: reverse drift x, x_mean = 0.75 x, generator seeded 0
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.0]])
    what = "em_step(score_fn = -x, VPSDE(2.0, 2.0), float32 (2, 2), t=0.5, h=0.25, generator seeded 0)"
    x_new, x_mean = _pair(student, "em_step", what, _score(student, lambda v, t: -v, "-x"), _sde(student, VPSDE(2.0, 2.0)),
                          x, 0.5, 0.25, generator=student.generator(0), shape=((2, 2), (2, 2)), dtype=F32)
    _allclose(x_mean, 0.75 * x.double(), 1e-5, 1e-6, what + ": x_mean = x - (reverse drift) h = 0.75 x")
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    _allclose(x_new, (0.75 * x + math.sqrt(2) * 0.5 * z).double(), 1e-5, 1e-5, what + ": x_new = x_mean + g sqrt(h) z")

    gmm = _gmm([0.6, 0.4], [[-1.0, 0.5], [1.5, -1.0]], [0.4, 0.7])
    xb = 2 * torch.randn(40, 2, generator=generator(seed, 804), dtype=F64)
    for sde, t, h in ((VESDE(0.01, 10.0), 0.7, 0.05), (VPSDE(0.1, 20.0), 0.4, 0.01)):
        oracle = _score(student, lambda v, s, sde=sde: gmm.score_at(v, s, sde), "the exact mixture score")
        handle = _sde(student, sde)
        f, g = sde.drift_diffusion(xb, t)
        mean_ref = xb - (f - g**2 * gmm.score_at(xb, t, sde)) * h
        gen5, sgen = _generators(student, seed, 5)
        new_ref = mean_ref + g * math.sqrt(h) * torch.randn(xb.shape, generator=gen5, dtype=F64)

        what = f"em_step(exact mixture score, {sde}, float64 (40, 2), t={t}, h={h}, generator)"
        got_new, got_mean = _pair(student, "em_step", what, oracle, handle, xb, t, h, generator=sgen,
                                  shape=((40, 2), (40, 2)), dtype=F64)
        _rel(got_mean, mean_ref, 1e-10, what + ", x_mean (x - (f - g^2 s) h)")
        _rel(got_new, new_ref, 1e-10, what + ", x_new (x_mean + g sqrt(h) z, with z drawn as in the introduction)")

        what = f"em_step(exact mixture score, {sde}, float64 (40, 2), t=tensor({t}) 0-dim, h=tensor({h}) 0-dim, generator)"
        got_new_t, _ = _pair(student, "em_step", what, oracle, handle, xb, torch.tensor(t, dtype=F64),
                             torch.tensor(h, dtype=F64), generator=_generators(student, seed, 5)[1],
                             shape=((40, 2), (40, 2)), dtype=F64)
        _rel(got_new_t, new_ref, 1e-10, what + ", x_new (0-dim tensor t and h must work too)")

        z32 = torch.randn(xb.shape, generator=generator(seed, 5), dtype=F32)
        new_ref32 = mean_ref + g * math.sqrt(h) * z32.double()
        what = f"em_step(exact mixture score, {sde}, float32 (40, 2), t={t}, h={h}, generator)"
        got32, _ = _pair(student, "em_step", what, oracle, handle, xb.float(), t, h, generator=_generators(student, seed, 5)[1],
                         shape=((40, 2), (40, 2)), dtype=F32)
        _rel(got32, new_ref32, 1e-3, what + ", x_new (z drawn in float32, x's dtype)")

    # against flowlib's sampler: one step from T = 1 with h = 0.1 (its grid is linspace(1, 0.9, 2))
    sde = VESDE(0.01, 10.0)
    gen6, sgen6 = _generators(student, seed, 6)
    ref = reference_em(lambda v, s: gmm.score_at(v, s, sde), sde, None, n_steps=1, eps=0.9, x_T=xb, generator=gen6,
                       denoise=False)
    what = f"em_step(exact mixture score, {sde}, float64 (40, 2), t=1.0, h=0.1, generator)"
    got, _ = _pair(student, "em_step", what, _score(student, lambda v, s: gmm.score_at(v, s, sde), "the exact mixture score"),
                   _sde(student, sde), xb, 1.0, 0.1, generator=sgen6, shape=((40, 2), (40, 2)), dtype=F64)
    _rel(got, ref, 1e-10, what + ", x_new against one step of flowlib's euler_maruyama")


# ------------------------------------------------------------------------- Exercise 5
@one_thread
def test_em_sampler(student, seed):
    # thresholds: bench/outcome-margins.md (nb08_em_gaussian, nb08_em_mixture_VP, nb08_em_mixture_VE)
    # the visible case: data N(0, 1) under the VP SDE keeps every marginal N(0, 1), score -x
    x_T = torch.randn(2000, 1, generator=generator(seed, 0))
    what = "em_sampler(score_fn = -x, VPSDE(0.1, 20.0), x_T float32 (2000, 1), 50 steps, generator)"
    x = tensor(student.call("em_sampler", _score(student, lambda v, t: -v, "-x"), _sde(student, VPSDE(0.1, 20.0)), x_T, 50,
                            generator=_generators(student, seed, 1)[1]), what, shape=(2000, 1), dtype=F32)
    finite(x, what)
    if not abs(x.std().item() - 1.0) < 0.15:
        raise AssertionError(f"{what}: samples of N(0, 1) should have std near 1 (allowed: 0.15 off), got {x.std().item():.3f}")

    gmm = _gmm([0.7, 0.3], [[-2.0, -1.0], [2.0, 1.5]], [0.5, 0.4])
    for sde, n_steps in ((VPSDE(0.1, 20.0), 200), (VESDE(0.01, 10.0), 300)):
        score = lambda v, t, sde=sde: gmm.score_at(v, t, sde)  # noqa: E731
        oracle = _score(student, score, "the exact mixture score")
        handle = _sde(student, sde)
        x_T = sde.prior_sample((3000, 2), generator=generator(seed, 8), dtype=F64)
        small = x_T[:50]
        gen9, sgen9 = _generators(student, seed, 9)
        ref = reference_em(score, sde, None, n_steps=7, eps=2e-3, x_T=small, generator=gen9)
        what = f"em_sampler(exact mixture score, {sde}, x_T float64 (50, 2), 7, eps=0.002, generator)"
        got = tensor(student.call("em_sampler", oracle, handle, small, 7, eps=2e-3, generator=sgen9), what,
                     shape=(50, 2), dtype=F64)
        _rel(got, ref, 1e-9, what + " against flowlib's euler_maruyama (time grid, step order, noise order, returned mean)")

        what = f"em_sampler(exact mixture score, {sde}, x_T float64 (3000, 2) from the prior, {n_steps}, generator)"
        samples = tensor(student.call("em_sampler", oracle, handle, x_T, n_steps, generator=_generators(student, seed, 10)[1]),
                         what, shape=(3000, 2), dtype=F64)
        finite(samples, what)
        # the mode split: fraction of samples nearer the first mean
        first = ((samples - gmm.means[0]).norm(dim=1) < (samples - gmm.means[1]).norm(dim=1)).double().mean().item()
        if not abs(first - 0.7) < 0.04:
            raise AssertionError(f"{what}: {first:.3f} of the samples are in the 0.7 mode (allowed: 0.04 off)")
        # component spread
        near = samples[(samples - gmm.means[0]).norm(dim=1) < 2.0]
        if not abs(near.std(0).mean().item() - 0.5) < 0.13:
            raise AssertionError(f"{what}: the 0.7 mode has std {near.std(0).mean().item():.3f}, expected 0.5 (allowed: 0.13 off)")

        # eps = T is the boundary of 0 < eps < T (issue 19: the extremes the spec names)
        for bad in (dict(n_steps=0), dict(n_steps=5, eps=0.0), dict(n_steps=5, eps=1.5), dict(n_steps=5, eps=1.0)):
            student.raises(ValueError, "em_sampler", oracle, handle, small, **{"eps": 1e-3, **bad})


# ------------------------------------------------------------------------- Exercise 6
@one_thread
def test_pc_step(student, seed):
    # the visible case: beta = 2, s = -x, ||s|| = 5, snr = 0.1, generator seeded 0
    x = torch.tensor([[3.0, 4.0]])
    what = "pc_step(score_fn = -x, VPSDE(2.0, 2.0), float32 (1, 2), t=0.5, h=0.25, snr=0.1, generator seeded 0)"
    _, x_mean = _pair(student, "pc_step", what, _score(student, lambda v, t: -v, "-x"), _sde(student, VPSDE(2.0, 2.0)),
                      x, 0.5, 0.25, snr=0.1, generator=student.generator(0), shape=((1, 2), (1, 2)), dtype=F32)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    eps = 2 * (0.1 * z.norm().item() / 5.0) ** 2
    x_c = x * (1 - eps) + math.sqrt(2 * eps) * z
    _allclose(x_mean, (0.75 * x_c).double(), 1e-5, 1e-5, what + ": x_mean = 0.75 x_c with x_c = x (1 - eps) + sqrt(2 eps) z")

    gmm = _gmm([0.6, 0.4], [[-1.0, 0.5], [1.5, -1.0]], [0.4, 0.7])
    gen = generator(seed, 806)
    for sde, snr in ((VESDE(0.01, 10.0), 0.16), (VPSDE(0.1, 20.0), 0.3)):
        score = lambda v, t, sde=sde: gmm.score_at(v, t, sde)  # noqa: E731
        score3 = lambda v, t, sde=sde: gmm.score_at(v.reshape(-1, 2), t, sde).reshape(v.shape)  # noqa: E731
        handle = _sde(student, sde)
        xb = sde.prior_sample((60, 2), generator=gen, dtype=F64)
        xi = 2 * torch.randn(60, 1, 2, generator=gen, dtype=F64)
        # flowlib: one PC iteration from T = 1 to 0.95 (its grid is linspace(1, 0.95, 2))
        ref_new = reference_pc(score, sde, None, n_steps=1, snr=snr, eps=0.95, x_T=xb, generator=generator(seed, 11),
                               denoise=False)
        ref_mean = reference_pc(score, sde, None, n_steps=1, snr=snr, eps=0.95, x_T=xb, generator=generator(seed, 11))
        # a reference formula at an interior time, images shaped (batch, 1, 2)
        g3 = generator(seed, 12)
        t_half = torch.full((60,), 0.5, dtype=F64)
        s = score3(xi, t_half)
        z = torch.randn(xi.shape, generator=g3, dtype=F64)
        step = 2 * (snr * z.flatten(1).norm(dim=1).mean() / s.flatten(1).norm(dim=1).mean()) ** 2
        x_c = xi + step * s + (2 * step).sqrt() * z
        f, g = sde.drift_diffusion(x_c, 0.5)
        mean3 = x_c - (f - g**2 * score3(x_c, t_half)) * 0.02
        new3 = mean3 + g * math.sqrt(0.02) * torch.randn(xi.shape, generator=g3, dtype=F64)

        hint = " (step size 2 (snr |z|/|s|)^2 with batch-mean norms, noise sqrt(2 eps) z, then the predictor)"
        what = f"pc_step(exact mixture score, {sde}, float64 (60, 2), t=1.0, h=0.05, snr={snr}, generator)"
        got_new, got_mean = _pair(student, "pc_step", what, _score(student, score, "the exact mixture score"), handle, xb,
                                  1.0, 0.05, snr, generator=_generators(student, seed, 11)[1],
                                  shape=((60, 2), (60, 2)), dtype=F64)
        _rel(got_new, ref_new, 1e-9, what + ", x_new against one iteration of flowlib's pc_sample" + hint)
        _rel(got_mean, ref_mean, 1e-9, what + ", x_mean against one iteration of flowlib's pc_sample" + hint)
        what = f"pc_step(exact mixture score, {sde}, float64 (60, 1, 2), t=0.5, h=0.02, snr={snr}, generator)"
        got_new3, got_mean3 = _pair(student, "pc_step", what, _score(student, score3, "the exact mixture score"), handle, xi,
                                    0.5, 0.02, snr, generator=_generators(student, seed, 12)[1],
                                    shape=((60, 1, 2), (60, 1, 2)), dtype=F64)
        _rel(got_new3, new3, 1e-9, what + ", x_new" + hint)
        _rel(got_mean3, mean3, 1e-9, what + ", x_mean" + hint)


# ------------------------------------------------------------------------- Exercises 7-8 (transfer: sub-VP)
def _subvp_moments(t: torch.Tensor, beta_min: float, beta_max: float, n: int = 250):
    """(alpha_t, std_t) of the sub-VP SDE dx = -beta x / 2 dt + sqrt(beta (1 - e^{-2B})) dw, derived here:
    the mean solves the linear ODE m' = -beta m / 2, m(0) = 1, so alpha_t = exp(-B(t) / 2) with
    B(t) = int_0^t beta; the variance solves v' = -beta v + g^2, v(0) = 0, which is integrated numerically
    (RK4, n steps from 0 to each t, float64; no closed form of v is used: relative error ~1e-10)."""
    t = t.double()
    h = t / n

    def big_b(u):
        return beta_min * u + 0.5 * (beta_max - beta_min) * u**2

    def rhs(u, v):
        beta = beta_min + u * (beta_max - beta_min)
        return -beta * v + beta * -torch.expm1(-2 * big_b(u))

    v, u = torch.zeros_like(t), torch.zeros_like(t)
    for _ in range(n):
        k1 = rhs(u, v)
        k2 = rhs(u + h / 2, v + h / 2 * k1)
        k3 = rhs(u + h / 2, v + h / 2 * k2)
        k4 = rhs(u + h, v + h * k3)
        v = v + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        u = u + h
    return (-0.5 * big_b(t)).exp(), v.clamp_min(0).sqrt()


def _col(v, x):
    return v.reshape((x.shape[0],) + (1,) * (x.dim() - 1))


@one_thread
def test_subvp_marginal(student, seed):
    # the visible case: float32, beta_min = 0.1, beta_max = 20, t = 1/2
    x0 = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    alpha_v, std_v = _subvp_moments(torch.tensor([0.5]), 0.1, 20.0)
    what = "subvp_marginal(float32 (2, 2), t=0.5, beta_min=0.1, beta_max=20.0)"
    mean, std = _pair(student, "subvp_marginal", what, x0, 0.5, 0.1, 20.0, shape=((2, 2), (2, 1)), dtype=F32)
    close(mean, alpha_v * x0.double(), 1e-5, what + ", mean")
    close(std, std_v.expand(2, 1), 1e-5, what + ", std")

    gen = generator(seed, 807)
    xb = torch.randn(64, 2, 3, generator=gen, dtype=F64)
    tb = torch.rand(64, generator=gen, dtype=F64)
    tb[:4] = torch.tensor([0.0, 1e-9, 1e-6, 1.0], dtype=F64)
    for bmin, bmax in ((0.1, 20.0), (1.5, 3.0)):
        alpha, sd = _subvp_moments(tb, bmin, bmax)
        what = f"subvp_marginal(float64 (64, 2, 3), t float64 (64,) with t = 0, 1e-9, 1e-6, 1 included, {bmin}, {bmax})"
        m, s = _pair(student, "subvp_marginal", what, xb, tb, bmin, bmax, shape=((64, 2, 3), (64, 1, 1)), dtype=F64)
        _rel(m, _col(alpha, xb) * xb, 1e-9, what + ", mean (the moment ODE m' = -beta m / 2)")
        if not abs(s[0].item()) < 1e-15:
            raise AssertionError(f"{what}: std at t = 0 must be 0 (the process starts at x0), got {s[0].item():.3e}")
        err = ((s.flatten() - sd).abs() / sd.clamp_min(1e-300))[1:].max().item()
        if not err < 1e-8:
            raise AssertionError(f"{what}: relative error of std {err:.2e} against the variance ODE v' = -beta v + g^2, "
                                 "tolerance 1e-08 (exact at small t? t = 1e-9 gives std ~ 1e-10: avoid 1 - (number near 1))")
        # sub-VP: its variance stays below the VP SDE's 1 - alpha^2 (at t > 0)
        vp_std = (1 - alpha[1:] ** 2).sqrt()
        if not bool((s.flatten()[1:] <= vp_std * (1 + 1e-12)).all()):
            raise AssertionError(f"{what}: the sub-VP std must not exceed the VP std sqrt(1 - alpha_t^2)")

    alpha_s, sd_s = _subvp_moments(torch.tensor([0.37], dtype=F64), 0.1, 20.0)
    for t_arg, label in ((0.37, "t=0.37"), (torch.tensor(0.37, dtype=F64), "t=tensor(0.37, float64) 0-dim")):
        what = f"subvp_marginal(float64 (64, 2, 3), {label}, 0.1, 20.0)"
        m, s = _pair(student, "subvp_marginal", what, xb, t_arg, 0.1, 20.0, shape=((64, 2, 3), (64, 1, 1)), dtype=F64)
        _rel(s, sd_s.expand(64).reshape(64, 1, 1), 1e-9, what + ", std")
        _rel(m, alpha_s.item() * xb, 1e-9, what + ", mean")

    alpha, sd = _subvp_moments(tb, 0.1, 20.0)
    what = "subvp_marginal(float32 (64, 2, 3), t float32 (64,), 0.1, 20.0)"
    m32, s32 = _pair(student, "subvp_marginal", what, xb.float(), tb.float(), 0.1, 20.0,
                     shape=((64, 2, 3), (64, 1, 1)), dtype=F32)
    _allclose(s32, _col(sd, xb), 1e-4, 1e-6, what + ", std")
    _allclose(m32, _col(alpha, xb) * xb, 1e-4, 1e-6, what + ", mean")

    student.raises(ValueError, "subvp_marginal", xb, torch.full((64, 1), 0.5, dtype=F64), 0.1, 20.0)
    student.raises(ValueError, "subvp_marginal", xb, torch.full((63,), 0.5, dtype=F64), 0.1, 20.0)


@one_thread
def test_subvp_reverse_drift(student, seed):
    # the visible case: beta = 2 everywhere, t = 1/2, s = -x
    x = torch.tensor([[1.0, 2.0]])
    what = "subvp_reverse_drift(score_fn = -x, float32 (1, 2), t=0.5, beta_min=2.0, beta_max=2.0)"
    d = tensor(student.call("subvp_reverse_drift", _score(student, lambda v, t: -v, "-x"), x, 0.5, 2.0, 2.0),
               what, shape=(1, 2), dtype=F32)
    g2 = 2.0 * (1 - math.exp(-2.0))
    _allclose(d, (-1.0 + g2) * x.double(), 1e-5, 1e-6, what)

    gen = generator(seed, 808)
    gmm = _gmm([0.6, 0.4], [[-1.0, 0.5], [1.5, -1.0]], [0.4, 0.7])
    xb = 2 * torch.randn(50, 2, generator=gen, dtype=F64)
    tb = 0.01 + 0.98 * torch.rand(50, generator=gen, dtype=F64)
    tb[0] = 0.0
    for bmin, bmax in ((0.1, 20.0), (1.0, 5.0)):
        def exact_score(v, t, bmin=bmin, bmax=bmax):
            """The score of the mixture's exact marginal under the sub-VP SDE: component k is
            N(alpha_t mu_k, alpha_t^2 Sigma_k + std_t^2 I), with (alpha_t, std_t) from the moment ODEs."""
            t = torch.as_tensor(t, dtype=F64).expand(v.shape[0]) if torch.as_tensor(t).dim() == 0 else t.double()
            a, s = _subvp_moments(t, bmin, bmax)
            return gmm.affine_score(v.double(), a, s.clamp_min(1e-12)).to(v.dtype)

        def expected(xv, t):
            t = torch.full((xv.shape[0],), float(t), dtype=F64) if not isinstance(t, torch.Tensor) else t
            beta = bmin + t * (bmax - bmin)
            big_b = bmin * t + 0.5 * (bmax - bmin) * t**2
            return -0.5 * _col(beta, xv) * xv - _col(beta * -torch.expm1(-2 * big_b), xv) * exact_score(xv, t)

        seen: list = []
        oracle = _score(student, exact_score, "the exact sub-VP mixture score", seen)
        tag = f"beta_min={bmin}, beta_max={bmax}"
        what = f"subvp_reverse_drift(exact sub-VP mixture score, float64 (50, 2), t float64 (50,) with t = 0 included, {tag})"
        got = tensor(student.call("subvp_reverse_drift", oracle, xb, tb, bmin, bmax), what, shape=(50, 2), dtype=F64)
        ref = expected(xb, tb)
        _rel(got, ref, 1e-9, what + " (f - g^2 s with g^2 = beta (1 - e^{-2B}))")
        close(got[0], -0.5 * bmin * xb[0], 1e-12, what + ": at t = 0, g = 0 and the drift is -beta_min x / 2")
        what = f"subvp_reverse_drift(exact sub-VP mixture score, float64 (50, 2), t=0.3, {tag})"
        got_s = tensor(student.call("subvp_reverse_drift", oracle, xb, 0.3, bmin, bmax), what, shape=(50, 2), dtype=F64)
        _rel(got_s, expected(xb, 0.3), 1e-9, what + " (a scalar t)")
        what = f"subvp_reverse_drift(exact sub-VP mixture score, float32 (50, 2), t float32 (50,), {tag})"
        got32 = tensor(student.call("subvp_reverse_drift", oracle, xb.float(), tb.float(), bmin, bmax), what,
                       shape=(50, 2), dtype=F32)
        _rel(got32, ref, 1e-3, what)
        if len(oracle.calls) != 3:
            raise AssertionError(f"subvp_reverse_drift({tag}): call score_fn exactly once per call "
                                 f"(it was called {len(oracle.calls)} times in 3 calls)")
        want = ((50,), F64, torch.device(student.device).type)
        if seen[1] != want:
            raise AssertionError(f"subvp_reverse_drift(..., float64 (50, 2), t=0.3, {tag}): pass t to score_fn as a "
                                 f"(batch,) tensor with x's dtype and device, got {seen[1]}")
    student.raises(ValueError, "subvp_reverse_drift", _score(student, lambda v, t: -v, "-x"), xb,
                   torch.full((50, 1), 0.5, dtype=F64), 0.1, 20.0)


# ------------------------------------------------------------------------- Exercise 9 (training, outcome)
def mmd2(a: torch.Tensor, b: torch.Tensor, bandwidths=(0.2, 0.5, 1.0, 2.0)) -> float:
    """Unbiased squared MMD between samples a (n, D) and b (m, D), sum of Gaussian kernels (float64)."""
    a, b = a.double(), b.double()

    def k(u, v):
        d2 = torch.cdist(u, v) ** 2
        return sum(torch.exp(-d2 / (2 * h**2)) for h in bandwidths)

    n, m = len(a), len(b)
    kaa, kbb = k(a, a), k(b, b)
    return ((kaa.sum() - kaa.diag().sum()) / (n * (n - 1)) + (kbb.sum() - kbb.diag().sum()) / (m * (m - 1))
            - 2 * k(a, b).mean()).item()


TRAIN_MIXTURE = ([0.65, 0.35], [[-1.5, 1.0], [2.0, -1.0]], [0.45, 0.6])
TRAIN_STEPS = 1500


def test_train_vp_score(student, seed):
    # thresholds: bench/outcome-margins.md (nb08_trained_score_mmd)
    gmm = _gmm(*TRAIN_MIXTURE)
    gen = generator(seed, 901)
    x_train = gmm.sample(4000, generator=gen).float()
    held_out = gmm.sample(2000, generator=gen)            # never sent to the student's process
    x_T = torch.randn(2000, 2, generator=generator(seed, 902))
    student.seed(1_000_003 * int(seed) + 903)
    what = f"train_vp_score(float32 (4000, 2) from a two-component mixture, {TRAIN_STEPS})"
    net = student.call("train_vp_score", x_train, TRAIN_STEPS)
    if not isinstance(net, Handle):
        raise AssertionError(f"{what}: return the trained network (a torch.nn.Module), got {type(net).__name__}")
    if student.method(net, "__getattribute__", "training"):
        raise AssertionError(f"{what}: return the network in eval mode (net.eval())")
    probe_t = torch.full((5,), 0.5)
    out = tensor(student.method(net, "forward", x_train[:5], probe_t), f"{what}: net(x float32 (5, 2), t (5,))",
                 shape=(5, 2), dtype=F32)
    finite(out, f"{what}: net(x, t)")
    student.set_grad_enabled(False)
    try:
        what_s = f"em_sampler(your trained network, VPSDE(0.1, 20.0), x_T float32 (2000, 2), 100, generator)"
        samples = tensor(student.call("em_sampler", net, _sde(student, VPSDE(0.1, 20.0)), x_T, 100,
                                      generator=student.generator(1_000_003 * int(seed) + 904)),
                         what_s, shape=(2000, 2), dtype=F32)
    finally:
        student.set_grad_enabled(True)
    finite(samples, what_s)
    d = mmd2(samples, held_out)
    if not d < 0.08:
        raise AssertionError(f"{what}, sampled by {what_s}: squared MMD to held-out samples of the mixture {d:.4f}, "
                             "must be below 0.08 (the noise floor is about 0.001; check the loss's weighting, the "
                             "time range and the marginal used to noise the data)")


# ------------------------------------------------------------------------- Exercise 10 (derivation)
def test_subvp_half_std_time(student, seed):
    v = student.value("SUBVP_HALF_STD_TIME")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise AssertionError(f"SUBVP_HALF_STD_TIME must be a Python float, got {type(v).__name__}")
    # the sub-VP std is 1 - e^{-B(t)} (it solves the variance ODE; test_subvp_marginal checks it numerically):
    # std = 1/2 where B(t) = 0.1 t + 9.95 t^2 = log 2, the positive root of the quadratic
    a, b, c = 0.5 * (20.0 - 0.1), 0.1, -math.log(2)
    want = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    err = abs(float(v) - want)
    if not err < 1e-6:
        raise AssertionError(f"SUBVP_HALF_STD_TIME = {float(v):.8f} is off by {err:.1e}, tolerance 1e-6 (check the "
                             "integral B(t) of beta and the root you took)")
