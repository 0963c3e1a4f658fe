"""Hidden tests of assignment 10, run by the grader (autograder/verdicts.py), never by students.

One function per graded test cell, named by the cell's grade_id, called as ``fn(student, seed)``:
``student`` calls the student's functions in the student's own process (autograder/probe),
``seed`` is the grading seed, from which every random input is drawn. Expected answers are
computed here, in the grader's process, without flowlib's spline or Glow code: the
rational-quadratic spline from its formula written out below with per-bin indicators, its
derivative by autograd, its inverse by bisection (gradients by the implicit function
theorem), a Glow step's log-determinant as ``slogdet`` of the autograd Jacobian, the
piecewise-quadratic CDF by the trapezoid rule over the breakpoints (exact for a piecewise-linear
density), and the trained flow's KL to the exact log-density of a Gaussian mixture. Knots come
from flowlib's ``spline_knots`` (not an exercise: the parameter constraints). A function passes
when it returns; any exception fails the cell with its message.
"""
from __future__ import annotations

import math

import torch

from flowlib import GaussianMixture
from flowlib.flows.splines import spline_knots
from probe.checks import close, finite, generator, one_thread, sequence, tensor, trained_density_2d

F64, F32 = torch.float64, torch.float32

#: flowlib references replaced by stubs that raise in the student's process
STUB = [
    "flowlib.flows.splines.rational_quadratic_spline", "flowlib.flows.splines.RationalQuadraticSpline",
    "flowlib.flows.splines.SplineCoupling", "flowlib.flows.splines.SplineAutoregressive",
    "flowlib.flows.glow.glow_step", "flowlib.flows.coupling.ActNorm", "flowlib.flows.coupling.InvertibleConv1x1",
    "flowlib.flows.coupling.AffineCoupling",
]

#: time limit per test cell in seconds (default: FLOWLIB_CELL_TIMEOUT, 120)
TIMEOUTS: dict[str, float] = {}

#: graded cells that check a result the student derived by hand (a number or a formula)
DERIVATIONS = ["test_rq_midpoint_derivative"]

#: the solution cells each slow test runs: tests/run_mutants.py skips it for a mutant of any other cell
USES: dict[str, list[str]] = {"test_train_spline_flow": ["rq_spline", "train_spline_flow"]}

#: the training exercise's data: a four-mode mixture whose conditionals are bimodal, its step budget
TRAIN_MIXTURE = ([0.4, 0.2, 0.15, 0.25], [[-1.5, -1.5], [1.5, -1.5], [-1.5, 1.5], [1.5, 1.5]], 0.4)
TRAIN_STEPS = 500
KL_BOUND = 0.1


# ------------------------------------------------------------------------- oracles (grader side)
def rq_oracle(x, kx, ky, kd):
    """The rational-quadratic spline, each bin's formula evaluated everywhere and the right one
    picked by an indicator (no search); the identity outside [kx_0, kx_K]."""
    xe = x.unsqueeze(-1)
    x0, x1, y0, y1, d0, d1 = kx[..., :-1], kx[..., 1:], ky[..., :-1], ky[..., 1:], kd[..., :-1], kd[..., 1:]
    w, h = x1 - x0, y1 - y0
    s = h / w
    pick = (xe >= x0) & (xe < x1)
    pick[..., -1] |= (xe[..., 0] == x1[..., -1])
    xi = ((xe - x0) / w).clamp(0, 1)
    num = h * (s * xi * xi + d0 * xi * (1 - xi))
    den = s + (d0 + d1 - 2 * s) * xi * (1 - xi)
    y_bins = y0 + num / den
    y = (pick.to(x.dtype) * y_bins).sum(-1)
    return torch.where(pick.any(-1), y, x)


def rq_oracle_log_derivative(x, kx, ky, kd):
    """log dy/dx of rq_oracle by autograd (elementwise map: the gradient of the sum)."""
    xg = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(rq_oracle(xg, kx, ky, kd).sum(), xg)
    return g.log()


def rq_oracle_inverse(y, kx, ky, kd, iters=200):
    """x with rq_oracle(x) = y by bisection on [min(y, kx_0), max(y, kx_K)] (the map is increasing)."""
    lo = torch.minimum(y, kx[..., 0]).clone()
    hi = torch.maximum(y, kx[..., -1]).clone()
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        up = rq_oracle(mid, kx, ky, kd) < y
        lo, hi = torch.where(up, mid, lo), torch.where(up, hi, mid)
    return 0.5 * (lo + hi)


def _knots(gen, shape, K, bound, scale, dtype=F64):
    """Random knots from spline_knots: raw ~ scale * N(0, 1) (scale 6 reaches the floors:
    bins 0.1% of the interval wide, derivatives from 1e-3 to about 20)."""
    raw = scale * torch.randn(*shape, 3 * K - 1, generator=gen, dtype=F64)
    return tuple(t.to(dtype) for t in spline_knots(raw, bound))


def _pair(student, name, args, what, shape, dtype):
    out = sequence(student.call(name, *args), 2, what + ": return (values, log_abs_det)")
    a = tensor(out[0], what + ", values", shape=shape, dtype=dtype)
    b = tensor(out[1], what + ", log_abs_det", shape=shape, dtype=dtype)
    finite(a, what + ", values")
    finite(b, what + ", log_abs_det")
    return a, b


def _raises(student, name, label, *args):
    try:
        student.raises(ValueError, name, *args)
    except AssertionError as exc:
        text = str(exc)
        raise AssertionError(f"{name} with {label}" + (text[text.find(" must raise "):] if " must raise " in text
                                                       else f": {text}")) from None


def _identity_knots(shape, K, bound, dtype):
    kx = torch.linspace(-bound, bound, K + 1, dtype=dtype).expand(*shape, K + 1).contiguous()
    return kx, kx.clone(), torch.ones_like(kx)


def _points(gen, kx, bound):
    """x of shape kx.shape[:-1]: mostly inside, some in the tails, some exactly on knots."""
    x = 1.3 * bound * (2 * torch.rand(kx.shape[:-1], generator=gen, dtype=F64) - 1)
    k = torch.randint(0, kx.shape[-1], kx.shape[:-1], generator=gen)
    on_knot = torch.rand(kx.shape[:-1], generator=gen) < 0.15
    return torch.where(on_knot, kx.gather(-1, k[..., None]).squeeze(-1), x), on_knot


# ------------------------------------------------------------------------- Exercise 1
@one_thread
def test_rq_spline(student, seed):
    gen = generator(seed, 1001)
    # the visible case: the identity spline
    kx, ky, kd = _identity_knots((3,), 4, 2.0, F32)
    xv = torch.tensor([-3.0, 0.3, 1.7])
    what = "rq_spline(float32 (3,), the identity spline: 4 bins on [-2, 2], y = x, derivatives 1)"
    y, ld = _pair(student, "rq_spline", (xv, kx, ky, kd), what, (3,), F32)
    close(y, xv.double(), 1e-6, what + ", y (the identity)")
    close(ld, torch.zeros(3, dtype=F64), 1e-6, what + ", log_abs_det (0 for the identity)")

    for scale, label in ((1.5, "random knots"), (6.0, "extreme knots (bins 0.1% wide, derivatives 1e-3 to 20)")):
        B, D, K, bound = 64, 3, int(torch.randint(2, 9, (1,), generator=gen)), 3.0
        kx, ky, kd = _knots(gen, (B, D), K, bound, scale)
        x, on_knot = _points(gen, kx, bound)
        what = f"rq_spline(float64 ({B}, {D}), {label}, K = {K}, on [-3, 3], with tails and knots)"
        y, ld = _pair(student, "rq_spline", (x, kx, ky, kd), what, (B, D), F64)
        close(y, rq_oracle(x, kx, ky, kd), 1e-10, what + ", y", relative=True)
        tails = x.abs() > bound
        if not torch.equal(y[tails], x[tails]) or not (ld[tails] == 0).all():
            raise AssertionError(f"{what}: outside [-B, B] the spline is the identity, y = x and log_abs_det = 0 exactly")
        # log|dy/dx| against autograd of the formula (away from knots, where the derivative is one-sided)
        inner = ~on_knot & ~tails
        close(ld[inner], rq_oracle_log_derivative(x, kx, ky, kd)[inner], 1e-8,
              what + ", log_abs_det against autograd's log dy/dx", relative=True)
        # at a knot the map passes through (x_k, y_k) with slope d_k
        knots_x = kx[..., 1:-1].reshape(-1)
        n = knots_x.numel()
        y_k, ld_k = _pair(student, "rq_spline", (knots_x, kx[..., None, :].expand(B, D, K - 1, K + 1).reshape(n, K + 1),
                                                ky[..., None, :].expand(B, D, K - 1, K + 1).reshape(n, K + 1),
                                                kd[..., None, :].expand(B, D, K - 1, K + 1).reshape(n, K + 1)),
                          f"rq_spline(float64 ({n},) at the interior knots of the {label})", (n,), F64)
        close(y_k, ky[..., 1:-1].reshape(-1), 1e-10, f"rq_spline at the interior knots ({label}): y_k", relative=True)
        close(ld_k, kd[..., 1:-1].reshape(-1).log(), 1e-8, f"rq_spline at the interior knots ({label}): log d_k")

    # gradients with respect to x and every knot tensor (what training backpropagates through)
    kx, ky, kd = _knots(gen, (40, 2), 5, 2.5, 1.0)
    x = 3.0 * (2 * torch.rand(40, 2, generator=gen, dtype=F64) - 1)
    cy, cl = torch.randn(40, 2, generator=gen, dtype=F64), torch.randn(40, 2, generator=gen, dtype=F64)
    what = "rq_spline(float64 (40, 2), knots (40, 2, 6)) backpropagated"
    _, grads = student.call_grad("rq_spline", (x, kx, ky, kd), wrt=(0, 1, 2, 3), cotangents=[cy, cl])
    args = [t.detach().clone().requires_grad_(True) for t in (x, kx, ky, kd)]
    yr = rq_oracle(*args)
    # log-derivative of the oracle, differentiable in the knots (autograd of the elementwise map)
    (dydx,) = torch.autograd.grad(yr.sum(), args[0], create_graph=True)
    ref = torch.autograd.grad((yr * cy).sum() + (dydx.log() * cl).sum(), args)
    for g, r, name in zip(grads, ref, ("x", "knot_x", "knot_y", "derivs")):
        if g is None:
            raise AssertionError(f"{what}: no gradient reached {name} (keep the computation differentiable)")
        close(g, r, 1e-8, f"{what}: gradient with respect to {name}", relative=True)

    # float32
    kx, ky, kd = _knots(gen, (50, 4), 8, 3.0, 1.5)
    x, _ = _points(gen, kx, 3.0)
    what = "rq_spline(float32 (50, 4), random knots float32 (50, 4, 9))"
    y, ld = _pair(student, "rq_spline", (x.float(), kx.float(), ky.float(), kd.float()), what, (50, 4), F32)
    close(y, rq_oracle(x.float().double(), kx.float().double(), ky.float().double(), kd.float().double()), 1e-4,
          what + ", y", relative=True)

    # raises
    _raises(student, "rq_spline", "knot_x of shape (64, 3, 5) for x of shape (64, 2)",
            torch.zeros(64, 2, dtype=F64), torch.zeros(64, 3, 5, dtype=F64), torch.zeros(64, 2, 5, dtype=F64),
            torch.ones(64, 2, 5, dtype=F64))
    kx, ky, kd = _identity_knots((10,), 4, 2.0, F64)
    _raises(student, "rq_spline", "derivs with 4 entries per row and knot_x, knot_y with 5",
            torch.zeros(10, dtype=F64), kx, ky, kd[:, :4])


# ------------------------------------------------------------------------- Exercise 2
@one_thread
def test_rq_spline_inverse(student, seed):
    gen = generator(seed, 1002)
    # the identity spline: the quadratic's leading coefficient is exactly 0 (the textbook root divides by it)
    kx, ky, kd = _identity_knots((6,), 4, 2.0, F64)
    yv = torch.tensor([-2.5, -1.0, -0.4, 0.0, 1.3, 2.0], dtype=F64)
    what = "rq_spline_inverse(float64 (6,), the identity spline on [-2, 2] (a = 0 in every bin))"
    x, ld = _pair(student, "rq_spline_inverse", (yv, kx, ky, kd), what, (6,), F64)
    close(x, yv, 1e-12, what + ", x (the identity)")
    close(ld, torch.zeros(6, dtype=F64), 1e-12, what + ", log_abs_det")
    # float32, visible case
    what = "rq_spline_inverse(float32 (6,), the identity spline on [-2, 2])"
    x32, _ = _pair(student, "rq_spline_inverse", (yv.float(), kx.float(), ky.float(), kd.float()), what, (6,), F32)
    close(x32, yv, 1e-6, what + ", x")

    for scale, label in ((1.5, "random knots"), (6.0, "extreme knots (bins 0.1% wide, derivatives 1e-3 to 20)")):
        B, D, K, bound = 64, 3, int(torch.randint(2, 9, (1,), generator=gen)), 3.0
        kx, ky, kd = _knots(gen, (B, D), K, bound, scale)
        xs, _ = _points(gen, kx, bound)
        y = rq_oracle(xs, kx, ky, kd)
        # some y exactly on knots y_k
        k = torch.randint(0, K + 1, (B, D), generator=gen)
        on = torch.rand(B, D, generator=gen) < 0.15
        y = torch.where(on, ky.gather(-1, k[..., None]).squeeze(-1), y)
        x_ref = torch.where(on, kx.gather(-1, k[..., None]).squeeze(-1), rq_oracle_inverse(y, kx, ky, kd))
        what = f"rq_spline_inverse(float64 ({B}, {D}), {label}, K = {K}, with tails and knots)"
        x, ld = _pair(student, "rq_spline_inverse", (y, kx, ky, kd), what, (B, D), F64)
        # where the spline is nearly flat (slope 1e-3 or less) y pins x down only to |error in y| / slope:
        # x is judged by the error it leaves in y, and against bisection where the knots are moderate
        close(rq_oracle(x, kx, ky, kd), y, 1e-10, what + ": the forward map of your x misses y", relative=True)
        if scale < 2:
            close(x, x_ref, 1e-9, what + ", x (against bisection on the forward map)", relative=True)
        tails = y.abs() > bound
        if not torch.equal(x[tails], y[tails]) or not (ld[tails] == 0).all():
            raise AssertionError(f"{what}: outside [-B, B] the inverse is the identity, x = y and log_abs_det = 0 exactly")
        inner = ~on & ~tails
        # log|dx/dy| = -log g'(x) at the x you return (autograd of the forward formula there)
        close(ld[inner], -rq_oracle_log_derivative(x, kx, ky, kd)[inner], 1e-8,
              what + ", log_abs_det (it is -log dy/dx at your x)", relative=True)

    # gradients by the implicit function theorem: with f(x, theta) = y, dx/dy = 1/f_x, dx/dtheta = -f_theta / f_x
    kx, ky, kd = _knots(gen, (40, 2), 5, 2.5, 1.0)
    y = 2.4 * (2 * torch.rand(40, 2, generator=gen, dtype=F64) - 1)
    cx = torch.randn(40, 2, generator=gen, dtype=F64)
    what = "rq_spline_inverse(float64 (40, 2), knots (40, 2, 6)) backpropagated"
    _, grads = student.call_grad("rq_spline_inverse", (y, kx, ky, kd), wrt=(0, 1, 2, 3), cotangents=[cx, None])
    x_ref = rq_oracle_inverse(y, kx, ky, kd)
    args = [t.detach().clone().requires_grad_(True) for t in (x_ref, kx, ky, kd)]
    f = rq_oracle(*args)
    fx = torch.autograd.grad(f.sum(), args[0], retain_graph=True)[0]
    ref = [cx / fx] + list(torch.autograd.grad((f * (-cx / fx)).sum(), args[1:]))
    for g, r, name in zip(grads, ref, ("y", "knot_x", "knot_y", "derivs")):
        if g is None:
            raise AssertionError(f"{what}: no gradient reached {name} (keep the computation differentiable)")
        close(g, r, 1e-7, f"{what}: gradient of x with respect to {name}", relative=True)

    _raises(student, "rq_spline_inverse", "knot_y of shape (10, 6) for knot_x of shape (10, 5)",
            torch.zeros(10, dtype=F64), kx[:10, 0, :5], torch.zeros(10, 6, dtype=F64), torch.ones(10, 5, dtype=F64))


# ------------------------------------------------------------------------- Exercise 3
def _lu(gen, C, dtype=F64):
    """Random LU parameters: a random permutation, full random matrices (only their strict
    triangles are to be used), log|s| and signs."""
    P = torch.eye(C, dtype=F64)[torch.randperm(C, generator=gen)]
    lower = 0.5 * torch.randn(C, C, generator=gen, dtype=F64)
    upper = 0.5 * torch.randn(C, C, generator=gen, dtype=F64)
    log_s = 0.4 * torch.randn(C, generator=gen, dtype=F64)
    sign_s = torch.where(torch.rand(C, generator=gen) < 0.5, -1.0, 1.0).to(F64)
    return tuple(t.to(dtype) for t in (P, lower, upper, log_s, sign_s))


def _coupling_net(gen, C):
    """A grader-side conditioner: (B, C/2, H, W) -> (B, C, H, W), shift then log-scale, mixing
    channels and neighbouring pixels."""
    A1 = 0.7 * torch.randn(C, C // 2, generator=gen, dtype=F64)
    A2 = 0.5 * torch.randn(C, C // 2, generator=gen, dtype=F64)
    b = 0.3 * torch.randn(C, generator=gen, dtype=F64)

    def net(ha):
        A1_, A2_, b_ = A1.to(ha.dtype), A2.to(ha.dtype), b.to(ha.dtype)
        mixed = torch.einsum("ij,bjhw->bihw", A1_, ha) + b_[:, None, None]
        return torch.tanh(mixed) + 0.3 * torch.roll(torch.einsum("ij,bjhw->bihw", A2_, ha), 1, dims=-1)

    return net


def _glow_oracle(x, actnorm, lu, net):
    """The step's output, composed here from its three maps."""
    loc, log_scale = actnorm
    P, lower, upper, log_s, sign_s = lu
    C = x.shape[1]
    h = (x - loc[:, None, None]) / log_scale.exp()[:, None, None]
    Lm = torch.tril(lower, -1) + torch.eye(C, dtype=x.dtype)
    Um = torch.triu(upper, 1) + torch.diag(sign_s * log_s.exp())
    h = torch.einsum("ij,bjhw->bihw", P @ Lm @ Um, h)
    out = net(h[:, : C // 2])
    return torch.cat([h[:, : C // 2], (h[:, C // 2:] - out[:, : C // 2]) * torch.exp(-out[:, C // 2:])], 1)


def _slogdet_ladj(x, actnorm, lu, net):
    """log|det dz/dx| per sample, from the autograd Jacobian of the whole step (float64)."""
    out = []
    for xb in x:
        J = torch.autograd.functional.jacobian(lambda v: _glow_oracle(v[None], actnorm, lu, net)[0].reshape(-1), xb)
        out.append(torch.linalg.slogdet(J.reshape(xb.numel(), xb.numel()))[1])
    return torch.stack(out)


@one_thread
def test_glow_step_forward(student, seed):
    gen = generator(seed, 1003)
    for (B, C, H, W) in ((3, 4, 2, 2), (2, 6, 3, 2)):
        x = torch.randn(B, C, H, W, generator=gen, dtype=F64)
        actnorm = (0.5 * torch.randn(C, generator=gen, dtype=F64), 0.5 * torch.randn(C, generator=gen, dtype=F64))
        lu = _lu(gen, C)
        net = _coupling_net(gen, C)
        calls = student.function(net, max_calls=10, name="coupling_fn")
        what = f"glow_step_forward(float64 ({B}, {C}, {H}, {W}), random ActNorm, LU with a permutation, a coupling_fn)"
        out = sequence(student.call("glow_step_forward", x, actnorm, lu, calls), 2, what + ": return (z, ladj)")
        z = tensor(out[0], what + ", z", shape=(B, C, H, W), dtype=F64)
        ladj = tensor(out[1], what + ", ladj", shape=(B,), dtype=F64)
        if len(calls.calls) != 1 or tuple(calls.calls[0][0]) != (B, C // 2, H, W):
            raise AssertionError(f"{what}: call coupling_fn exactly once, on the first C/2 channels after the 1x1 "
                                 f"convolution, shape {(B, C // 2, H, W)}; it was called with {[c[0] for c in calls.calls]}")
        close(z, _glow_oracle(x, actnorm, lu, net), 1e-10, what + ", z (ActNorm, then W = P L U, then the coupling)",
              relative=True)
        close(ladj, _slogdet_ladj(x, actnorm, lu, net), 1e-9,
              what + ", ladj against slogdet of the autograd Jacobian of the whole step", relative=True)

    # float32
    B, C, H, W = 4, 4, 3, 3
    x = torch.randn(B, C, H, W, generator=gen, dtype=F64)
    actnorm = (0.5 * torch.randn(C, generator=gen, dtype=F64), 0.5 * torch.randn(C, generator=gen, dtype=F64))
    lu = _lu(gen, C)
    net = _coupling_net(gen, C)
    what = "glow_step_forward(float32 (4, 4, 3, 3), float32 parameters)"
    out = sequence(student.call("glow_step_forward", x.float(), tuple(t.float() for t in actnorm),
                                tuple(t.float() for t in lu), student.function(net, name="coupling_fn")), 2, what)
    z = tensor(out[0], what + ", z", shape=(B, C, H, W), dtype=F32)
    ladj = tensor(out[1], what + ", ladj", shape=(B,), dtype=F32)
    xr = x.float().double()
    close(z, _glow_oracle(xr, tuple(t.float().double() for t in actnorm), tuple(t.float().double() for t in lu), net),
          1e-4, what + ", z", relative=True)
    close(ladj, _slogdet_ladj(xr, tuple(t.float().double() for t in actnorm), tuple(t.float().double() for t in lu), net),
          1e-4, what + ", ladj", relative=True)

    lu = _lu(gen, 3)
    _raises(student, "glow_step_forward", "3 channels (odd: no halves)", torch.zeros(2, 3, 2, 2, dtype=F64),
            (torch.zeros(3, dtype=F64), torch.zeros(3, dtype=F64)), lu, student.function(lambda h: h, name="coupling_fn"))
    lu = _lu(gen, 4)
    _raises(student, "glow_step_forward", "x of shape (2, 4) (not an image batch)", torch.zeros(2, 4, dtype=F64),
            (torch.zeros(4, dtype=F64), torch.zeros(4, dtype=F64)), lu, student.function(lambda h: h, name="coupling_fn"))


# ------------------------------------------------------------------------- Exercise 4 (transfer)
def pq_oracle(x, widths, heights):
    """The CDF of the piecewise-linear density through (edge_k, heights_k), normalised, by the
    trapezoid rule over the edges below x and x itself (exact for a linear integrand), and the
    density at x by linear interpolation."""
    edges = torch.cat([torch.zeros(1, dtype=F64), torch.cumsum(widths.double(), 0)])
    edges[-1] = 1.0
    hts = heights.double()
    total = torch.trapezoid(hts, edges)

    def dens(t):
        return torch.from_numpy(__import__("numpy").interp(t.numpy(), edges.numpy(), hts.numpy()))

    y = []
    for xi in x.double():
        pts = torch.cat([edges[edges < xi], xi[None]])
        y.append(torch.trapezoid(dens(pts), pts) if len(pts) > 1 else torch.tensor(0.0, dtype=F64))
    return torch.stack(y) / total, (dens(x.double()) / total).log()


@one_thread
def test_pq_cdf(student, seed):
    gen = generator(seed, 1004)
    # the visible case: a constant density, y = x
    x = torch.tensor([0.0, 0.25, 0.6, 1.0])
    what = "pq_cdf(float32 (4,), widths (0.5, 0.5), heights (2, 2, 2): the uniform density)"
    y, ld = _pair(student, "pq_cdf", (x, torch.tensor([0.5, 0.5]), torch.tensor([2.0, 2.0, 2.0])), what, (4,), F32)
    close(y, x.double(), 1e-6, what + ", y = x")
    close(ld, torch.zeros(4, dtype=F64), 1e-6, what + ", log density 0")

    for K in (1, 3, 7):
        widths = torch.softmax(torch.randn(K, generator=gen, dtype=F64), 0)
        heights = torch.exp(torch.randn(K + 1, generator=gen, dtype=F64))
        edges = torch.cat([torch.zeros(1, dtype=F64), torch.cumsum(widths, 0)])
        x = torch.cat([torch.rand(60, generator=gen, dtype=F64), edges[1:-1], torch.tensor([0.0, 1.0], dtype=F64)])
        n = x.numel()
        what = f"pq_cdf(float64 ({n},) with the edges, 0 and 1, K = {K} random bins, random heights)"
        y, ld = _pair(student, "pq_cdf", (x, widths, heights), what, (n,), F64)
        y_ref, ld_ref = pq_oracle(x, widths, heights)
        close(y, y_ref, 1e-10, what + ", y (the CDF, integrated here by the trapezoid rule)")
        close(ld, ld_ref, 1e-10, what + ", log dy/dx (the normalised density at x)")
        # log-det against autograd of the student's own map (strictly inside the bins)
        inner = torch.rand(40, generator=gen, dtype=F64)
        (_, lg), (g,) = student.call_grad("pq_cdf", (inner, widths, heights), wrt=(0,),
                                          cotangents=[torch.ones(40, dtype=F64), None])
        close(lg, g.log(), 1e-10, f"pq_cdf(float64 (40,), K = {K}): log_abs_det against autograd's dy/dx of your y")

    widths = torch.softmax(torch.randn(4, generator=gen, dtype=F64), 0)
    heights = torch.exp(torch.randn(5, generator=gen, dtype=F64))
    x = torch.rand(30, generator=gen, dtype=F64)
    what = "pq_cdf(float32 (30,), K = 4, float32 parameters)"
    y, ld = _pair(student, "pq_cdf", (x.float(), widths.float(), heights.float()), what, (30,), F32)
    y_ref, ld_ref = pq_oracle(x.float(), widths.float(), heights.float())
    close(y, y_ref, 1e-5, what + ", y")
    close(ld, ld_ref, 1e-4, what + ", log_abs_det")

    _raises(student, "pq_cdf", "x = 1.2 outside [0, 1]", torch.tensor([0.5, 1.2], dtype=F64), widths, heights)
    _raises(student, "pq_cdf", "x = -0.1 outside [0, 1]", torch.tensor([-0.1], dtype=F64), widths, heights)
    _raises(student, "pq_cdf", "4 widths and 4 heights (heights needs K + 1 = 5)", x, widths, heights[:4])


# ------------------------------------------------------------------------- Exercise 5 (training, outcome)
def test_train_spline_flow(student, seed):
    # threshold: bench/outcome-margins.md (nb10_spline_flow_kl)
    weights, means, std = TRAIN_MIXTURE
    gmm = GaussianMixture(weights, means, stds=std).to(F64)
    gen = generator(seed, 1005)
    x_train = gmm.sample(4000, generator=gen).float()
    x_test = gmm.sample(4000, generator=gen)            # held out: never leaves the grader
    student.seed(1_000_003 * int(seed) + 1006)
    what = f"train_spline_flow(float32 (4000, 2) from a four-mode mixture, {TRAIN_STEPS})"
    model = student.call("train_spline_flow", x_train, TRAIN_STEPS)
    log_q = trained_density_2d(student, model, x_test.float(), what)
    kl = (gmm.log_prob(x_test) - log_q.double()).mean().item()
    if not kl < KL_BOUND:
        raise AssertionError(f"{what}: KL(data || model) estimated on 4000 held-out points is {kl:.4f} nats, "
                             f"needs < {KL_BOUND} (the reference reaches 0.024 to 0.050; an affine coupling flow of the same size 0.17 to 0.24)")


# ------------------------------------------------------------------------- Exercise 6 (derivation)
def test_rq_midpoint_derivative(student, seed):
    gen = generator(seed, 1007)
    s = torch.exp(torch.randn(50, generator=gen, dtype=F64))
    d0 = torch.exp(1.5 * torch.randn(50, generator=gen, dtype=F64))
    d1 = torch.exp(1.5 * torch.randn(50, generator=gen, dtype=F64))
    # one bin [0, 1] -> [0, s]: the derivative at x = 1/2 by autograd of the spline formula
    kx = torch.tensor([0.0, 1.0], dtype=F64).expand(50, 2)
    ky = torch.stack([torch.zeros(50, dtype=F64), s], -1)
    kd = torch.stack([d0, d1], -1)
    want = rq_oracle_log_derivative(torch.full((50,), 0.5, dtype=F64), kx, ky, kd).exp()
    what = "rq_midpoint_derivative(s, d_left, d_right) on float64 (50,) tensors"
    got = tensor(student.call("rq_midpoint_derivative", s, d0, d1), what, shape=(50,), dtype=F64)
    close(got, want, 1e-10, what + " against autograd of the spline at xi = 1/2", relative=True)
    v = student.call("rq_midpoint_derivative", 1.5, 1.0, 3.0)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise AssertionError(f"rq_midpoint_derivative(1.5, 1.0, 3.0) with Python floats must return a Python float, "
                             f"got {type(v).__name__}")
    if not abs(v - 9 / 7) < 1e-12:
        raise AssertionError(f"rq_midpoint_derivative(1.5, 1.0, 3.0) = {v!r}, expected {9 / 7!r}")
