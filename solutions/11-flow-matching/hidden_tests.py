"""Hidden tests of assignment 11, run by the grader (autograder/verdicts.py), never by students.

One function per graded test cell, named by the cell's grade_id, called as ``fn(student, seed)``:
``student`` calls the student's functions in the student's own process (autograder/probe),
``seed`` is the grading seed, from which every random input is drawn. Expected answers are
computed here, in the grader's process, never by the flowlib function of the same role: the VP
path's derivatives by autograd of alpha_t and sigma_t, the loss and its gradients by the
grader's autograd, the solvers' steps written out here, the mixture's marginal velocity from the
gradient of its exact log-density (Tweedie's formula), and the derivation by quadrature of the
conditional variance. The velocity functions the student's code calls are grader functions
(``student.function``): the grader evaluates them, counts the calls and sees the ``t`` passed.
A function passes when it returns; any exception fails the cell with its message. The visible
tests of the notebook are repeated here: points come only from these functions.
"""
from __future__ import annotations

import math

import torch

from flowlib import GaussianMixture
from probe.checks import close, finite, generator, one_thread, sequence, tensor
from probe.wire import Handle

F64, F32 = torch.float64, torch.float32

#: flowlib references replaced by stubs that raise in the student's process
STUB = [
    "flowlib.diffusion.flow_matching.ProbabilityPath", "flowlib.diffusion.flow_matching.LinearPath",
    "flowlib.diffusion.flow_matching.VPPath", "flowlib.diffusion.flow_matching.cfm_loss",
    "flowlib.diffusion.flow_matching.fm_sample", "flowlib.diffusion.flow_matching.reflow_pairs",
    "flowlib.diffusion.ode.velocity_sample", "flowlib.diffusion.ode._rk4", "flowlib.diffusion.ode._euler",
    "flowlib.diffusion.gmm.GaussianMixture.velocity_at",
    "flowlib.diffusion.sde.VPSDE.marginal_coefficients",
]

#: time limit per test cell in seconds (default: FLOWLIB_CELL_TIMEOUT, 120)
TIMEOUTS: dict[str, float] = {}

#: graded cells that check a result the student derived by hand (a number or a formula)
DERIVATIONS = ["test_cfm_min_loss"]

#: the solution cells each slow test runs: tests/run_mutants.py skips it for a mutant of any other
#: cell (grading always runs every test)
USES: dict[str, list[str]] = {"test_train_flow_matching": ["train_flow_matching", "cfm_loss", "vp_path"]}


# ------------------------------------------------------------------------- helpers


def _rel(got, ref, tol, what):
    """max |got - ref| / (1 + |ref|) <= tol."""
    return close(got, ref, tol, what, relative=True)


def _velocity(student, fn, name: str, seen: list | None = None, max_calls: int = 1000, differentiable: bool = False):
    """A velocity function ``v(x, t)`` evaluated here; ``seen`` records (shape, dtype, device, values) of t."""
    def velocity(x, t):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"velocity_fn takes a floating-point tensor x, got {type(x).__name__}")
        if seen is not None:
            seen.append((tuple(t.shape), t.dtype, getattr(t, "probe_device", "cpu").split(":")[0], t.detach().clone())
                        if isinstance(t, torch.Tensor) else (type(t).__name__, None, None, None))
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"velocity_fn takes t as a (batch,) tensor, got {type(t).__name__}")
        return fn(x, t)

    return student.function(velocity, max_calls=max_calls, name=name, differentiable=differentiable)


def _col(v, x):
    return v.reshape((x.shape[0],) + (1,) * (x.dim() - 1))


# ------------------------------------------------------------------------- Exercise 1
def _vp_coefficients(t: torch.Tensor, beta_min: float, beta_max: float):
    """(alpha, sigma, alpha', sigma') of the VP path at float64 times t, the derivatives by autograd."""
    t = t.detach().double().clone().requires_grad_(True)
    big_b = beta_min * t + 0.5 * (beta_max - beta_min) * t**2
    alpha = (-0.5 * big_b).exp()
    sigma = (-torch.expm1(-big_b)).sqrt()
    (d_alpha,) = torch.autograd.grad(alpha.sum(), t, retain_graph=True)
    (d_sigma,) = torch.autograd.grad(sigma.sum(), t)
    return alpha.detach(), sigma.detach(), d_alpha, d_sigma


@one_thread
def test_vp_path(student, seed):
    # the visible case: float32, beta = 4t, t = 1
    x0 = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    z = torch.tensor([[0.0, 1.0], [-1.0, 2.0]])
    what = "vp_path(x0 and z float32 (2, 2), t=1.0, beta_min=0.0, beta_max=4.0)"
    x_t, u = sequence(student.call("vp_path", x0, z, 1.0, 0.0, 4.0), 2, what + ": return (x_t, u)")
    tensor(x_t, what + ", x_t", shape=(2, 2), dtype=F32)
    tensor(u, what + ", u", shape=(2, 2), dtype=F32)
    a, s = math.exp(-1), math.sqrt(1 - math.exp(-2))
    close(x_t, (a * x0 + s * z).double(), 1e-5, what + ", x_t = alpha x0 + sigma z with alpha = e^-1")
    close(u, (-2 * a * x0 + 2 * a**2 / s * z).double(), 1e-5,
          what + ", u = alpha' x0 + sigma' z with alpha' = -beta alpha / 2, sigma' = beta alpha^2 / (2 sigma)")

    gen = generator(seed, 1101)
    xb = torch.randn(64, 2, 3, generator=gen, dtype=F64)
    zb = torch.randn(64, 2, 3, generator=gen, dtype=F64)
    tb = 1e-3 + (1 - 1e-3) * torch.rand(64, generator=gen, dtype=F64)
    tb[:4] = torch.tensor([1e-9, 1e-6, 1.0, 0.5], dtype=F64)
    for bmin, bmax in ((0.1, 20.0), (1.5, 3.0)):
        alpha, sigma, da, ds = _vp_coefficients(tb, bmin, bmax)
        ref_x = _col(alpha, xb) * xb + _col(sigma, xb) * zb
        ref_u = _col(da, xb) * xb + _col(ds, xb) * zb
        what = f"vp_path(float64 (64, 2, 3), t float64 (64,) with t = 1e-9, 1e-6, 1, 0.5 included, {bmin}, {bmax})"
        got = sequence(student.call("vp_path", xb, zb, tb, bmin, bmax), 2, what + ": return (x_t, u)")
        tensor(got[0], what + ", x_t", shape=(64, 2, 3), dtype=F64)
        tensor(got[1], what + ", u", shape=(64, 2, 3), dtype=F64)
        _rel(got[0], ref_x, 1e-10, what + ", x_t (sigma accurate at small t? use -torch.expm1(2 log alpha))")
        _rel(got[1], ref_u, 1e-9, what + ", u against alpha' x0 + sigma' z with the derivatives by autograd")

        alpha_s, sigma_s, da_s, ds_s = _vp_coefficients(torch.tensor([0.37], dtype=F64), bmin, bmax)
        for t_arg, label in ((0.37, "t=0.37"), (torch.tensor(0.37, dtype=F64), "t=tensor(0.37, float64) 0-dim")):
            what = f"vp_path(float64 (64, 2, 3), {label}, {bmin}, {bmax})"
            got = sequence(student.call("vp_path", xb, zb, t_arg, bmin, bmax), 2, what + ": return (x_t, u)")
            _rel(tensor(got[0], what + ", x_t", shape=(64, 2, 3), dtype=F64), alpha_s * xb + sigma_s * zb, 1e-10, what + ", x_t")
            _rel(tensor(got[1], what + ", u", shape=(64, 2, 3), dtype=F64), da_s * xb + ds_s * zb, 1e-9, what + ", u")

    alpha, sigma, da, ds = _vp_coefficients(tb, 0.1, 20.0)
    what = "vp_path(float32 (64, 2, 3), t float32 (64,), 0.1, 20.0)"
    got = sequence(student.call("vp_path", xb.float(), zb.float(), tb.float(), 0.1, 20.0), 2, what + ": return (x_t, u)")
    _rel(tensor(got[0], what + ", x_t", shape=(64, 2, 3), dtype=F32), _col(alpha, xb) * xb + _col(sigma, xb) * zb, 1e-4, what + ", x_t")
    # sigma' ~ 1/sqrt(t) at small t: compare float32 where t >= 1e-3
    ref_u = _col(da, xb) * xb + _col(ds, xb) * zb
    _rel(tensor(got[1], what + ", u", shape=(64, 2, 3), dtype=F32)[4:], ref_u[4:], 1e-4, what + ", u at t >= 1e-3")

    student.raises(ValueError, "vp_path", xb, zb, torch.full((64, 1), 0.5, dtype=F64), 0.1, 20.0)
    student.raises(ValueError, "vp_path", xb, zb, torch.full((63,), 0.5, dtype=F64), 0.1, 20.0)
    student.raises(ValueError, "vp_path", xb, zb[:, :1], 0.5, 0.1, 20.0)
    student.raises(ValueError, "vp_path", xb, zb, 0.0, 0.1, 20.0)
    bad = tb.clone()
    bad[7] = 1.5
    student.raises(ValueError, "vp_path", xb, zb, bad, 0.1, 20.0)


# ------------------------------------------------------------------------- Exercise 2
def _field(W: torch.Tensor, b: torch.Tensor, M: torch.Tensor):
    """A nonlinear time-dependent velocity field v(x, t) = tanh(x W + t b) M on flattened x."""
    def v(x, t):
        flat = x.reshape(x.shape[0], -1)
        h = torch.tanh(flat @ W.to(x.dtype) + t.to(x.dtype)[:, None] * b.to(x.dtype))
        return (h @ M.to(x.dtype)).reshape(x.shape)

    return v


def _ref_loss(v, x0, z, t):
    tc = _col(t, x0)
    err = v((1 - tc) * x0 + tc * z, t) - (z - x0)
    return err.pow(2).reshape(x0.shape[0], -1).sum(1).mean()


@one_thread
def test_cfm_loss(student, seed):
    # the visible cases: float32, v = 0 and v = x
    x0 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    t = torch.tensor([0.5, 0.25])
    for fn, label, want in ((lambda x, t: torch.zeros_like(x), "0", 3.5), (lambda x, t: x, "x", 7.65625)):
        what = f"cfm_loss(v = {label}, x0 and z float32 (2, 2), t float32 (2,))"
        got = tensor(student.call("cfm_loss", _velocity(student, fn, f"v = {label}"), x0, z, t), what, shape=(), dtype=F32)
        close(got, torch.tensor(want, dtype=F64), 1e-5, what + f": the loss is {want}")

    gen = generator(seed, 1102)
    for shape in ((40, 3), (30, 2, 2)):
        D = math.prod(shape[1:])
        W, M = torch.randn(D, 8, generator=gen, dtype=F64), 0.5 * torch.randn(8, D, generator=gen, dtype=F64)
        b = torch.randn(8, generator=gen, dtype=F64)
        v = _field(W, b, M)
        xb = 1.5 * torch.randn(shape, generator=gen, dtype=F64)
        zb = torch.randn(shape, generator=gen, dtype=F64)
        tb = torch.rand(shape[0], generator=gen, dtype=F64)
        tb[0], tb[1] = 0.0, 1.0
        xr, zr = xb.clone().requires_grad_(True), zb.clone().requires_grad_(True)
        ref = _ref_loss(v, xr, zr, tb)
        gx, gz = torch.autograd.grad(ref, (xr, zr))

        seen: list = []
        fn = _velocity(student, v, "tanh(x W + t b) M", seen, differentiable=True)
        what = f"cfm_loss(v = tanh(x W + t b) M, x0 and z float64 {shape}, t float64 ({shape[0]},) with t = 0 and 1 included)"
        value, grads = student.call_grad("cfm_loss", (fn, xb, zb, tb), wrt=(1, 2), cotangents=[torch.tensor(1.0, dtype=F64)])
        tensor(value, what, shape=(), dtype=F64)
        _rel(value, ref.detach(), 1e-10, what + " (mean over the batch of the squared error summed over all other dims)")
        if len(fn.calls) != 1:
            raise AssertionError(f"{what}: call velocity_fn exactly once (it was called {len(fn.calls)} times)")
        t_shape, t_dtype, t_dev, t_val = seen[0]
        if (t_shape, t_dtype) != ((shape[0],), F64) or t_dev != torch.device(student.device).type or not torch.equal(t_val, tb):
            raise AssertionError(f"{what}: pass the given t to velocity_fn as it is (a ({shape[0]},) float64 tensor), "
                                 f"got shape {t_shape}, dtype {t_dtype}")
        for g, ref_g, name in ((grads[0], gx, "x0"), (grads[1], gz, "z")):
            if g is None:
                raise AssertionError(f"{what}: no gradient reached {name}: do not detach anything")
            _rel(tensor(g, what + f", d loss / d {name}", shape=shape), ref_g, 1e-9,
                 what + f", d loss / d {name} against autograd (through x_t into velocity_fn and through the target)")

        what = f"cfm_loss(v = tanh(x W + t b) M, float32 {shape}, t float32)"
        got32 = tensor(student.call("cfm_loss", _velocity(student, v, "tanh(x W + t b) M"), xb.float(), zb.float(), tb.float()),
                       what, shape=(), dtype=F32)
        _rel(got32, ref.detach(), 1e-5, what)

    fn = _velocity(student, lambda x, t: x, "v = x")
    student.raises(ValueError, "cfm_loss", fn, xb, zb[:, :1], tb)
    student.raises(ValueError, "cfm_loss", fn, xb, zb, tb[:, None])
    student.raises(ValueError, "cfm_loss", fn, xb, zb, tb[:-1])


# ------------------------------------------------------------------------- Exercise 3
def _euler(v, z, n):
    ts = torch.linspace(1.0, 0.0, n + 1, dtype=F64)
    x = z
    for i in range(n):
        t, h = ts[i].item(), (ts[i + 1] - ts[i]).item()
        x = x + h * v(x, torch.full((x.shape[0],), t, dtype=x.dtype))
    return x


def _rk4(v, z, n):
    ts = torch.linspace(1.0, 0.0, n + 1, dtype=F64)
    x = z

    def f(y, t):
        return v(y, torch.full((y.shape[0],), t, dtype=y.dtype))

    for i in range(n):
        t, h = ts[i].item(), (ts[i + 1] - ts[i]).item()
        k1 = f(x, t)
        k2 = f(x + h / 2 * k1, t + h / 2)
        k3 = f(x + h / 2 * k2, t + h / 2)
        k4 = f(x + h * k3, t + h)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


@one_thread
def test_ode_sampler(student, seed):
    # the visible cases: a constant velocity, v = t x
    z = torch.randn(500, 2, generator=generator(seed, 1103))
    c = torch.tensor([1.0, -2.0])
    for method in ("euler", "rk4"):
        what = f"ode_sampler(v = (1, -2), z float32 (500, 2), 3, {method!r})"
        x = tensor(student.call("ode_sampler", _velocity(student, lambda x, t: c.to(x.dtype).expand_as(x), "a constant"), z, 3, method),
                   what, shape=(500, 2), dtype=F32)
        close(x, (z - c).double(), 1e-5, what + ": with a constant velocity c every path is a line, x(0) = z - c")
    z64 = z.double()
    what = "ode_sampler(v = t x, z float64 (500, 2), 2, 'euler')"
    x = tensor(student.call("ode_sampler", _velocity(student, lambda x, t: t[:, None] * x, "t x"), z64, 2, "euler"),
               what, shape=(500, 2), dtype=F64)
    close(x, 0.375 * z64, 1e-12, what + ": two Euler steps (t = 1, then 1/2) give (1 - 1/2)(1 - 1/4) z = 0.375 z")

    gen = generator(seed, 1104)
    W, M, b = torch.randn(3, 8, generator=gen, dtype=F64), 0.7 * torch.randn(8, 3, generator=gen, dtype=F64), torch.randn(8, generator=gen, dtype=F64)
    v = _field(W, b, M)
    zb = torch.randn(60, 3, generator=gen, dtype=F64)
    for method, n, ref_fn, nfe in (("euler", 5, _euler, 5), ("rk4", 5, _rk4, 20)):
        seen: list = []
        fn = _velocity(student, v, "tanh(x W + t b) M", seen)
        what = f"ode_sampler(v = tanh(x W + t b) M, z float64 (60, 3), {n}, {method!r})"
        got = tensor(student.call("ode_sampler", fn, zb, n, method), what, shape=(60, 3), dtype=F64)
        _rel(got, ref_fn(v, zb, n), 1e-10, what + f" against {method} written out on the grid linspace(1, 0, {n + 1})")
        if len(fn.calls) != nfe:
            raise AssertionError(f"{what}: velocity_fn was called {len(fn.calls)} times, expected {nfe} "
                                 f"({'one' if method == 'euler' else 'four'} per step)")
        want = ((60,), F64, torch.device(student.device).type)
        if seen[0][:3] != want:
            raise AssertionError(f"{what}: pass t as a (batch,) tensor with x's dtype and device, got {seen[0][:3]}")
        if abs(seen[0][3][0].item() - 1.0) > 1e-15:
            raise AssertionError(f"{what}: the first evaluation is at t = 1 (noise), got t = {seen[0][3][0].item()}")
        # the same in float32
        what = f"ode_sampler(v = tanh(x W + t b) M, z float32 (60, 3), {n}, {method!r})"
        got32 = tensor(student.call("ode_sampler", _velocity(student, v, "tanh(x W + t b) M"), zb.float(), n, method),
                       what, shape=(60, 3), dtype=F32)
        _rel(got32, ref_fn(v, zb, n), 1e-4, what)

    # a linear field: dx/dt = A x gives x(0) = exp(-A) x(1); RK4 with 20 steps is accurate to ~1e-8
    A = 0.8 * torch.randn(2, 2, generator=gen, dtype=F64)
    zi = torch.randn(40, 1, 2, generator=gen, dtype=F64)
    what = "ode_sampler(v = A x, z float64 (40, 1, 2), 20, 'rk4')"
    got = tensor(student.call("ode_sampler", _velocity(student, lambda x, t: x @ A.T, "A x"), zi, 20, "rk4"),
                 what, shape=(40, 1, 2), dtype=F64)
    _rel(got, zi @ torch.linalg.matrix_exp(-A).T, 1e-6, what + ": the exact flow is x(0) = exp(-A) z")

    fn = _velocity(student, lambda x, t: x, "v = x")
    student.raises(ValueError, "ode_sampler", fn, zb, 0, "euler")
    student.raises(ValueError, "ode_sampler", fn, zb, 4, "heun")


# ------------------------------------------------------------------------- Exercise 4 (transfer)
def _log_p_t(x, t, weights, means, stds):
    """log p_t(x) of the linear path from p_0 = sum_k w_k N(mu_k, s_k^2 I), written out here:
    x_t | k ~ N((1 - t) mu_k, ((1 - t)^2 s_k^2 + t^2) I)."""
    D = x.shape[1]
    a = (1 - t)[:, None]
    var = a**2 * stds[None] ** 2 + t[:, None] ** 2                        # (batch, K)
    diff = x[:, None, :] - a[:, :, None] * means[None]
    log_comp = weights.log()[None] - 0.5 * (diff**2).sum(-1) / var - 0.5 * D * (2 * math.pi * var).log()
    return torch.logsumexp(log_comp, dim=1)


def _exact_velocity(x, t, weights, means, stds):
    """u_t(x) = E[z - x0 | x_t = x] by Tweedie: with g = grad log p_t(x) (autograd),
    E[z | x] = -t g and E[x0 | x] = (x + t^2 g) / (1 - t), so u = -(x + t g) / (1 - t); t < 1."""
    xr = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(_log_p_t(xr, t, weights, means, stds).sum(), xr)
    return -(x + t[:, None] * g) / (1 - t)[:, None]


def _mixture(gen, K, D):
    w = torch.rand(K, generator=gen, dtype=F64) + 0.2
    return w / w.sum(), 1.5 * torch.randn(K, D, generator=gen, dtype=F64), 0.3 + 0.7 * torch.rand(K, generator=gen, dtype=F64)


@one_thread
def test_gmm_velocity(student, seed):
    # the visible cases: the two ends of the path, one Gaussian
    weights, means, stds = torch.tensor([0.3, 0.7]), torch.tensor([[-1.0, 0.0], [2.0, 1.0]]), torch.tensor([0.5, 0.8])
    x = torch.randn(50, 2, generator=generator(seed, 1105))
    what = "gmm_velocity(x float32 (50, 2), t=0.0, 2 components)"
    close(tensor(student.call("gmm_velocity", x, 0.0, weights, means, stds), what, shape=(50, 2), dtype=F32), -x.double(), 1e-5,
          what + ": at t = 0, x_t = x0 and u = E[z] - x = -x")
    what = "gmm_velocity(x float32 (50, 2), t=1.0, 2 components)"
    close(tensor(student.call("gmm_velocity", x, 1.0, weights, means, stds), what, shape=(50, 2), dtype=F32),
          (x - weights @ means).double(), 1e-5, what + ": at t = 1, x_t = z and u = x - E[x0]")

    gen = generator(seed, 1106)
    for K, D in ((3, 2), (4, 3)):
        w, mu, s = _mixture(gen, K, D)
        xb = 2.5 * torch.randn(80, D, generator=gen, dtype=F64)
        xb[:3] = torch.tensor([8.0, -9.0, 7.5], dtype=F64)[:, None] * torch.ones(3, D, dtype=F64)  # far in the tails
        tb = 0.98 * torch.rand(80, generator=gen, dtype=F64)
        tb[:6] = torch.tensor([0.0, 1e-4, 0.5, 0.98, 0.3, 0.0], dtype=F64)
        ref = _exact_velocity(xb, tb, w, mu, s)
        what = f"gmm_velocity(x float64 (80, {D}) with tail points, t float64 (80,) with t = 0 and 0.98 included, {K} components)"
        got = tensor(student.call("gmm_velocity", xb, tb, w, mu, s), what, shape=(80, D), dtype=F64)
        finite(got, what)
        _rel(got, ref, 1e-9, what + " against -(x + t grad log p_t(x)) / (1 - t), grad by autograd of the exact log p_t")

        what = f"gmm_velocity(x float64 (80, {D}), t=1.0, {K} components)"
        got = tensor(student.call("gmm_velocity", xb, 1.0, w, mu, s), what, shape=(80, D), dtype=F64)
        finite(got, what)
        _rel(got, xb - w @ mu, 1e-10, what + ": at t = 1, u = x - E[x0]")
        what = f"gmm_velocity(x float64 (80, {D}), t=tensor(0.6, float64) 0-dim, {K} components)"
        got = tensor(student.call("gmm_velocity", xb, torch.tensor(0.6, dtype=F64), w, mu, s), what, shape=(80, D), dtype=F64)
        _rel(got, _exact_velocity(xb, torch.full((80,), 0.6, dtype=F64), w, mu, s), 1e-9, what)

        what = f"gmm_velocity(x float32 (80, {D}), t float32 (80,), {K} components)"
        got = tensor(student.call("gmm_velocity", xb.float(), tb.float(), w.float(), mu.float(), s.float()), what,
                     shape=(80, D), dtype=F32)
        _rel(got, ref, 2e-4, what)

    student.raises(ValueError, "gmm_velocity", xb, torch.full((80, 1), 0.5, dtype=F64), w, mu, s)
    student.raises(ValueError, "gmm_velocity", xb, -0.1, w, mu, s)
    student.raises(ValueError, "gmm_velocity", xb, 1.2, w, mu, s)


# ------------------------------------------------------------------------- Exercise 5 (training, outcome)
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


TRAIN_MIXTURE = ([0.5, 0.3, 0.2], [[-2.0, 0.0], [1.5, 1.5], [1.0, -2.0]], [0.4, 0.5, 0.35])
TRAIN_STEPS = 1500
SAMPLE_STEPS = 8  # RK4 steps of the grader's sampler: 32 evaluations of the network


def rk4_samples(velocity, z: torch.Tensor, n_steps: int = SAMPLE_STEPS) -> torch.Tensor:
    """The grader's own RK4 from t = 1 to 0 of ``velocity(x, t)`` (x float32, t a float32 (batch,))."""
    ts = torch.linspace(1.0, 0.0, n_steps + 1, dtype=F64)
    x = z

    def f(y, t):
        return velocity(y, torch.full((y.shape[0],), t, dtype=F32))

    for i in range(n_steps):
        t, h = ts[i].item(), (ts[i + 1] - ts[i]).item()
        k1 = f(x, t)
        k2 = f(x + h / 2 * k1, t + h / 2)
        k3 = f(x + h / 2 * k2, t + h / 2)
        k4 = f(x + h * k3, t + h)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


def test_train_flow_matching(student, seed):
    # thresholds: bench/outcome-margins.md (nb11_trained_velocity_mmd)
    gmm = GaussianMixture(*TRAIN_MIXTURE[:2], stds=TRAIN_MIXTURE[2]).to(F64)
    gen = generator(seed, 1107)
    x_train = gmm.sample(4000, generator=gen).float()
    held_out = gmm.sample(2000, generator=gen)            # never sent to the student's process
    z = torch.randn(2000, 2, generator=generator(seed, 1108))
    student.seed(1_000_003 * int(seed) + 1109)
    what = f"train_flow_matching(float32 (4000, 2) from a three-component mixture, {TRAIN_STEPS})"
    net = student.call("train_flow_matching", x_train, TRAIN_STEPS)
    if not isinstance(net, Handle):
        raise AssertionError(f"{what}: return the trained network (a torch.nn.Module), got {type(net).__name__}")
    if student.method(net, "__getattribute__", "training"):
        raise AssertionError(f"{what}: return the network in eval mode (net.eval())")
    out = tensor(student.method(net, "forward", x_train[:5], torch.full((5,), 0.5)), f"{what}: net(x float32 (5, 2), t (5,))",
                 shape=(5, 2), dtype=F32)
    finite(out, f"{what}: net(x, t)")
    student.set_grad_enabled(False)
    try:
        def velocity(x, t):
            return tensor(student.method(net, "forward", x, t), f"{what}: net(x float32 {tuple(x.shape)}, t)",
                          shape=tuple(x.shape), dtype=F32)

        samples = rk4_samples(velocity, z)
    finally:
        student.set_grad_enabled(True)
    finite(samples, f"{what}: samples of {SAMPLE_STEPS} RK4 steps")
    d = mmd2(samples, held_out)
    if not d < 0.1:
        raise AssertionError(f"{what}, sampled with {SAMPLE_STEPS} RK4 steps from t = 1 to 0: squared MMD to held-out samples "
                             f"of the mixture {d:.4f}, must be below 0.1 (the noise floor is about 0.001; check the "
                             "loss's target z - x0, the interpolation x_t = (1 - t) x0 + t z and the time range)")


# ------------------------------------------------------------------------- Exercise 6 (derivation)
def test_cfm_min_loss(student, seed):
    v = student.value("CFM_MIN_LOSS")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise AssertionError(f"CFM_MIN_LOSS must be a Python float, got {type(v).__name__}")
    # per coordinate with data std s: T = z - x0 and X = (1 - t) x0 + t z are jointly Gaussian, so
    # Var(T | X) = Var(T) - Cov(T, X)^2 / Var(X); integrated over t in [0, 1] by Simpson's rule (4000 intervals)
    n = 4000
    t = torch.linspace(0.0, 1.0, n + 1, dtype=F64)
    total = torch.zeros_like(t)
    for s in (0.5, 2.0):
        var_t, cov, var_x = 1 + s**2, t - (1 - t) * s**2, (1 - t) ** 2 * s**2 + t**2
        total = total + var_t - cov**2 / var_x
    w = torch.ones(n + 1, dtype=F64)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    want = (w * total).sum().item() / (3 * n)
    err = abs(float(v) - want)
    if not err < 1e-6:
        raise AssertionError(f"CFM_MIN_LOSS = {float(v):.8f} is off by {err:.1e}, tolerance 1e-6 (the conditional variance of "
                             "the target given x_t, summed over both coordinates and integrated over t in [0, 1]; "
                             "the data mean plays no role)")
