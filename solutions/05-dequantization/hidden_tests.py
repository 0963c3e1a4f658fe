"""Hidden tests of assignment 05, run by the grader (autograder/verdicts.py), never by students.

One function per graded test cell, named by the cell's grade_id, called as ``fn(student, seed)``:
``student`` calls the student's functions in the student's own process (autograder/probe),
``seed`` is the grading seed, from which every random input, every network weight and every
noise generator is drawn. Expected answers are computed here, in the grader's process, with the
real flowlib (``uniform_dequantize``, ``LogitTransform``, ``bits_per_dim``,
``dequantized_log_likelihood``) or in closed form. The flows the student's functions evaluate
are built in the student's process from flowlib's (unstubbed) ``realnvp_image`` without its
logit layer (``LogitTransform`` is stubbed there), with the grader's weights loaded, and the
same model is the reference here; a generator passed to the student's code is a
``torch.Generator`` created there and seeded with the number the grader's own generator uses.
A function passes when it returns; any exception fails the cell with its message, which the
student sees in the feedback. The visible tests of the notebook are repeated here: points come
only from these functions.
"""
from __future__ import annotations

import contextlib
import math

import torch

from flowlib.bits import bits_per_dim as reference_bits_per_dim
from flowlib.coupling import realnvp_image
from flowlib.dequantization import LogitTransform
from flowlib.dequantization import dequantized_bits_per_dim as reference_bpd
from flowlib.dequantization import dequantized_log_likelihood as reference_ll
from flowlib.dequantization import uniform_dequantize
from probe.checks import case, close, generator, sequence, tensor

F64, F32 = torch.float64, torch.float32

#: flowlib references replaced by stubs that raise in the student's process
STUB = [
    "flowlib.dequantization.uniform_dequantize", "flowlib.dequantization._into_cells",
    "flowlib.dequantization.LogitTransform", "flowlib.bits.bits_per_dim",
    "flowlib.dequantization.dequantized_log_likelihood", "flowlib.dequantization.dequantized_bits_per_dim",
]

#: time limit per test cell in seconds (default: FLOWLIB_CELL_TIMEOUT, 120)
TIMEOUTS: dict[str, float] = {}

#: helpers defined in the student's process (names start with ``_grader_``): they only build the
#: inputs the student's functions receive (generators, dtypes, flowlib models, a torch.Size) or
#: backpropagate through the student's result there; every answer is judged here
_HELPERS = '''
def _grader_new(_path, *args, **kwargs):
    """flowlib's class or factory `_path` (e.g. "flowlib.coupling.realnvp_image") called with the arguments."""
    import importlib
    module, _, name = _path.rpartition(".")
    return getattr(importlib.import_module(module), name)(*args, **kwargs)


def _grader_generator(n):
    """A CPU torch.Generator seeded with n (the grader draws the same noise from the same seed)."""
    import torch
    return torch.Generator().manual_seed(n)


def _grader_dtype(name):
    import torch
    return getattr(torch, name)


def _grader_with_size(_name, logp, shape, n_bins):
    """The student's `_name(logp, torch.Size(shape), n_bins)`: event_shape as a torch.Size."""
    import torch
    return globals()[_name](logp, torch.Size(shape), n_bins)


def _grader_param_grads(_name, flow, cotangent, *args, **kwargs):
    """The student's `_name(flow, *args, **kwargs)` and the gradient of <cotangent, result>
    with respect to each of the flow's parameters (None where the result does not depend on it)."""
    import torch
    params = [(n, p) for n, p in flow.named_parameters() if p.requires_grad]
    with torch.enable_grad():
        out = globals()[_name](flow, *args, **kwargs)
        grads = torch.autograd.grad(out, [p for _, p in params], grad_outputs=cotangent, allow_unused=True)
    return out.detach(), {n: g for (n, _), g in zip(params, grads)}
'''


def _define(student, source: str = _HELPERS) -> None:
    """Define the grader's helper functions in the student's process (again after a restart)."""
    student.define(source)


def _number(seed: int, salt: int) -> int:
    """The seed of probe.checks.generator(seed, salt): one test's noise, moved by the grading seed."""
    return 1_000_003 * int(seed) + int(salt)


def _student_generator(student, n: int):
    """A fresh torch.Generator in the student's process seeded with ``n``: its handle."""
    return student.call("_grader_generator", int(n))


def _student_dtype(student, dtype: torch.dtype):
    return student.call("_grader_dtype", str(dtype).replace("torch.", ""))


@contextlib.contextmanager
def _torch_seed(seed: int, salt: int):
    """torch's global generator seeded from the grading seed (network initialisations), restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_number(seed, salt))
        yield


def _student_model(student, model: torch.nn.Module, path: str, *args, **kwargs):
    """A float64 copy of the grader's ``model`` in the student's process, built there by
    flowlib's ``path(*args, **kwargs)``, on the student's device, the grader's weights loaded."""
    h = student.new("_grader_new", path, *args, **kwargs)
    h = student.method(h, "double")
    h = student.method(h, "to", student.device)
    student.load_state_dict(h, {k: v.detach().to(F64) if v.is_floating_point() else v
                                for k, v in model.state_dict().items()})
    return h


def _flat_density(student, event_shape):
    """The setup cell's FlatDensity (log p = 0 on the unit cube), float64, in the student's process."""
    h = student.new("FlatDensity", tuple(event_shape))
    h = student.method(h, "double")
    return student.method(h, "to", student.device)


def _noisy_realnvp(seed: int, salt: int, shape, scale: float):
    """flowlib's realnvp_image without the logit layer, float64, initialised from the grading
    seed and moved off the identity by ``scale`` N(0, 1) noise on every parameter."""
    kwargs = dict(hidden_ch=4, n_checker=1, n_channel=1, n_final=1, logit_alpha=None)
    with _torch_seed(seed, salt):
        flow = realnvp_image(shape, **kwargs).double()
    with torch.no_grad():
        pg = generator(seed, salt + 1)
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=pg, dtype=p.dtype))
    return flow, kwargs


# ------------------------------------------------------------------------- Exercise 1
def test_dequantize(student, seed):
    _define(student)
    # the visible case: a known noise draw, default dtype, and float64
    x = torch.tensor([[0, 3], [2, 1]])
    what = "dequantize(int64 [[0, 3], [2, 1]], 4, generator=torch.Generator().manual_seed(0))"
    y = tensor(student.call("dequantize", x, 4, generator=_student_generator(student, 0)), what, shape=(2, 2),
               dtype=torch.get_default_dtype())
    if not ((y >= 0) & (y < 1)).all():
        raise AssertionError(f"{what}: dequantized values must lie in [0, 1) (did you divide by n_bins?), got {y.tolist()}")
    if not torch.equal(torch.floor(y * 4).long(), x):
        raise AssertionError(f"{what}: each value must stay in the cell of its integer: floor(y * n_bins) == x")
    u = torch.rand((2, 2), generator=torch.Generator().manual_seed(0))
    close(y[0, 1], (3 + u[0, 1]) / 4, 1e-6, what + ": y[0, 1] = (3 + u) / 4 with u from torch.rand(x.shape, generator=...)")
    what = "dequantize(int64 [[0, 3], [2, 1]], 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)"
    tensor(student.call("dequantize", x, 4, generator=_student_generator(student, 0), dtype=_student_dtype(student, F64)),
           what, shape=(2, 2), dtype=F64)

    got = []
    for salt, n_bins, shape, dtype in [(11, 17, (64, 1, 8, 8), F64), (12, 256, (32, 3, 4, 4), F32),
                                       (13, 2, (500, 3), F64)]:
        xi = torch.randint(n_bins, shape, generator=generator(seed, salt))
        ref = uniform_dequantize(xi, n_bins, generator=generator(seed, salt + 100), dtype=dtype)
        what = f"dequantize(int64 {tuple(shape)}, {n_bins}, generator=<seeded>, dtype={dtype})"
        yi = tensor(student.call("dequantize", xi, n_bins, generator=_student_generator(student, _number(seed, salt + 100)),
                                 dtype=_student_dtype(student, dtype)), what, shape=shape, dtype=dtype)
        if not torch.equal(torch.floor(yi.double() * n_bins).long(), xi):
            raise AssertionError(f"{what}: a value left its cell (floor(y * n_bins) must equal x)")
        if not ((yi >= 0) & (yi < 1)).all():
            raise AssertionError(f"{what}: values must lie in [0, 1)")
        close(yi, ref, 1e-6, what + ": against (x + u) / n_bins with u = torch.rand(x.shape, generator=..., dtype=...)")
        # thresholds: bench/outcome-margins.md (nb05_dequantize_offsets)
        off = (yi.double() * n_bins - xi.double()).flatten()
        if not (abs(off.mean().item() - 0.5) < 0.1 and abs(off.var().item() - 1 / 12) < 0.025):
            raise AssertionError(f"{what}: the offsets u = y * n_bins - x should be U[0, 1): mean {off.mean().item():.4f} "
                                 f"(1/2 +- 0.1), variance {off.var().item():.4f} (1/12 +- 0.025)")
        got.append((xi, yi))

    x0, y0 = got[0]
    what = "dequantize(int64 (64, 1, 8, 8), 17, generator=<seeded>, dtype=torch.float64)"
    again = student.call("dequantize", x0, 17, generator=_student_generator(student, _number(seed, 111)),
                         dtype=_student_dtype(student, F64))
    if not (isinstance(again, torch.Tensor) and torch.equal(again, y0)):
        raise AssertionError(f"{what}: the same generator seed must give the same noise")
    other = student.call("dequantize", x0, 17, generator=_student_generator(student, _number(seed, 112)),
                         dtype=_student_dtype(student, F64))
    if isinstance(other, torch.Tensor) and torch.equal(other, y0):
        raise AssertionError(f"{what}: different generator seeds must give different noise")
    what = "dequantize(int32 (64, 1, 8, 8), 17, generator=<seeded>, dtype=torch.float64)"
    int32 = student.call("dequantize", x0.int(), 17, generator=_student_generator(student, _number(seed, 111)),
                         dtype=_student_dtype(student, F64))
    if not (isinstance(int32, torch.Tensor) and torch.equal(int32, y0)):
        raise AssertionError(f"{what}: int32 inputs must work like int64 ones (same noise, same result)")

    bad_float = torch.rand(4, 2, generator=generator(seed, 14))
    for bad, label in [(bad_float, "a floating-point input"), (torch.tensor([[True, False]]), "a bool input"),
                       (torch.tensor([[0, 17]]), "a value equal to n_bins"), (torch.tensor([[-1, 3]]), "a negative value")]:
        try:
            student.raises(ValueError, "dequantize", bad, 17)
        except AssertionError as exc:
            raise AssertionError(f"{label}: {exc}") from None


# ------------------------------------------------------------------------- Exercise 2
def _logit(student, y, alpha, what):
    out = sequence(student.call("logit_transform", y, alpha), 2, what + ": return (z, ladj)")
    z = tensor(out[0], what + ", z", shape=y.shape, dtype=y.dtype)
    ladj = tensor(out[1], what + ", ladj", shape=(y.shape[0],), dtype=y.dtype)
    return z, ladj


def test_logit_values(student, seed):
    # the visible case: y = 1/2, float32
    y = torch.full((2, 3), 0.5)
    what = "logit_transform(float32 (2, 3) of 0.5, alpha=0.05)"
    z, ladj = _logit(student, y, 0.05, what)
    close(z, torch.zeros(2, 3), 1e-6, what + ": logit(1/2) = 0")
    close(ladj[:1], torch.tensor([3 * 1.2809338]), 1e-5, what + ": ladj = 3 log(3.6)")

    gen = generator(seed, 21)
    y64 = torch.rand(16, 1, 8, 8, generator=gen, dtype=F64)
    y64[0, 0, 0, :2] = torch.tensor([0.0, 1.0], dtype=F64)   # the corners of the cube are allowed
    inner = y64.clamp(0.01, 0.99)
    for a, ya, label in [(0.05, y64, "float64 (16, 1, 8, 8) with the corners 0 and 1"),
                         (0.2, y64, "float64 (16, 1, 8, 8) with the corners 0 and 1"),
                         (0.0, inner, "float64 (16, 1, 8, 8) in [0.01, 0.99]")]:
        rz, rl = LogitTransform(a).double()(ya)
        what = f"logit_transform({label}, alpha={a})"
        z, ladj = _logit(student, ya, a, what)
        close(z, rz, 1e-10, what + ", z")
        close(ladj, rl, 1e-9, what + ", ladj (the (1 - 2 alpha) factor? the sign? summed per sample?)")

    what = "logit_transform(float32 (16, 1, 8, 8), alpha=0.05)"
    z32, l32 = _logit(student, y64.float(), 0.05, what)
    close(l32, LogitTransform(0.05).double()(y64)[1], 1e-3, what + ", ladj")

    for bad, kw, label in [(torch.tensor([[3.0, 0.5]]), {}, "an input above 1 (raw pixels?)"),
                           (torch.tensor([[-0.1, 0.5]]), {}, "a negative input"),
                           (torch.tensor([[0.2, 0.5]]), {"alpha": 0.5}, "alpha = 0.5"),
                           (torch.tensor([[0.2, 0.5]]), {"alpha": -0.1}, "alpha = -0.1 (alpha must lie in [0, 0.5))")]:
        try:
            student.raises(ValueError, "logit_transform", bad, **kw)
        except AssertionError as exc:
            raise AssertionError(f"{label}: {exc}") from None


def _jacobian_log_det(student, y, alpha, what):
    """log|det| of the autograd Jacobian of the student's z with respect to y, per sample:
    row j of every sample's Jacobian is one backward pass with the cotangent e_j."""
    B, D = y.shape[0], y[0].numel()
    rows = []
    for j in range(D):
        cot = torch.zeros(B, D, dtype=y.dtype)
        cot[:, j] = 1
        _, grads = student.call_grad("logit_transform", (y, alpha), wrt=(0,), cotangents=[cot.reshape(y.shape), None])
        if grads[0] is None:
            raise AssertionError(f"{what}: z does not depend on y by autograd")
        rows.append(tensor(grads[0], f"{what}: d z[{j}] / dy by autograd", shape=y.shape, dtype=y.dtype).reshape(B, D))
    return torch.linalg.slogdet(torch.stack(rows, dim=1))[1]


def test_logit_log_det_autograd(student, seed):
    # the visible case: one sample of 4 entries, float64, alpha = 0.1
    y = torch.tensor([[0.1, 0.4, 0.7, 0.95]], dtype=F64)
    what = "logit_transform(float64 [[0.1, 0.4, 0.7, 0.95]], alpha=0.1)"
    _, ladj = _logit(student, y, 0.1, what)
    close(ladj, _jacobian_log_det(student, y, 0.1, what), 1e-9, what + ": ladj against log|det| of the autograd Jacobian")

    gen = generator(seed, 22)
    for alpha in (0.05, 0.25, 0.0):
        y = 0.02 + 0.96 * torch.rand(4, 2, 3, 3, generator=gen, dtype=F64)
        what = f"logit_transform(float64 (4, 2, 3, 3) in [0.02, 0.98], alpha={alpha})"
        z, ladj = _logit(student, y, alpha, what)
        close(ladj, _jacobian_log_det(student, y, alpha, what), 1e-8,
              what + ": ladj against log|det| of the autograd Jacobian")
        # the inverse, sigmoid, undoes it: y = (sigmoid(z) - alpha) / (1 - 2 alpha)
        close((torch.sigmoid(z) - alpha) / (1 - 2 * alpha), y, 1e-10, what + ": (sigmoid(z) - alpha) / (1 - 2 alpha) against y")
        # the log-det is differentiable in y (it enters the training loss): d sum(ladj) / dy by autograd
        yr = y.clone().requires_grad_(True)
        ref_g, = torch.autograd.grad(LogitTransform(alpha).double()(yr)[1].sum(), yr)
        try:
            _, grads = student.call_grad("logit_transform", (y, alpha), wrt=(0,), cotangents=[None, torch.ones(4, dtype=F64)])
        except AssertionError as exc:
            raise AssertionError(f"{exc} (backpropagating sum(ladj) to y: ladj must be differentiable in y, not detached)") from None
        if grads[0] is None:
            raise AssertionError(f"{what}: ladj does not depend on y by autograd (detached?); it must be differentiable in y")
        close(tensor(grads[0], what + ": d sum(ladj) / dy by autograd", shape=y.shape, dtype=F64), ref_g,
              1e-9 * (1 + ref_g.abs().max().item()), what + ": d sum(ladj) / dy by autograd against the reference's")


# ------------------------------------------------------------------------- Exercise 3
def test_bits_per_dim(student, seed):
    _define(student)
    # the visible case: the flat density scores 8 bits/dim; 48 log 2 more nats on 48 dims is 1 bit less
    logp = torch.tensor([0.0, 48 * math.log(2)])
    what = "bits_per_dim(float32 [0, 48 log 2], (3, 4, 4), 256)"
    bpd = tensor(student.call("bits_per_dim", logp, (3, 4, 4), 256), what, shape=(2,), dtype=F32)
    close(bpd[:1], torch.tensor([8.0]), 1e-5, what + ": the flat density scores log2(256) = 8 bits/dim "
                                                  "(the log(n_bins) offset? base 2?)")
    close(bpd[1:], torch.tensor([7.0]), 1e-5, what + ": 7 bits/dim expected (D = 3 * 4 * 4 = 48)")

    gen = generator(seed, 31)
    cases = [((1, 8, 8), 17), ((3, 32, 32), 256), ((10,), 2), ((2, 5), 1)]
    lps = [50 * torch.randn(7, generator=gen, dtype=F64) for _ in cases]
    refs = [reference_bits_per_dim(lp, math.prod(shape), n) for lp, (shape, n) in zip(lps, cases)]
    for lp, ref, (shape, n) in zip(lps, refs, cases):
        what = f"bits_per_dim(float64 (7,), event_shape={shape}, n_bins={n})"
        got = tensor(student.call("bits_per_dim", lp, shape, n), what, shape=(7,), dtype=F64)
        close(got, ref, 1e-12, what)
    what = "bits_per_dim(float64 (7,), event_shape=torch.Size([3, 32, 32]), n_bins=256)"
    got = tensor(student.call("_grader_with_size", "bits_per_dim", lps[1], [3, 32, 32], 256), what, shape=(7,), dtype=F64)
    close(got, refs[1], 1e-12, what + " (event_shape may be a torch.Size)")
    what = "bits_per_dim(float32 (7,), event_shape=(1, 8, 8), n_bins=17)"
    got32 = tensor(student.call("bits_per_dim", lps[0].float(), (1, 8, 8), 17), what, shape=(7,), dtype=F32)
    close(got32, refs[0], 1e-5, what)


# ------------------------------------------------------------------------- Exercise 4
def test_dequantized_log_likelihood(student, seed):
    _define(student)
    # the visible case: the flat density on the cube gives every x the probability n_bins^-D exactly
    flat = _flat_density(student, (1, 4, 4))
    x = torch.randint(17, (5, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    what = "dequantized_log_likelihood(the flat density float64, int64 (5, 1, 4, 4), 17, generator=<seeded>)"
    ll = tensor(student.call("dequantized_log_likelihood", flat, x, 17, generator=_student_generator(student, 1)),
                what, shape=(5,), dtype=F64)
    close(ll, torch.full((5,), -16 * math.log(17), dtype=F64), 1e-9, what + ": log P(x) = -16 log 17 = -45.3314135")

    flow, kwargs = _noisy_realnvp(seed, 41, (1, 4, 4), 0.2)
    handle = _student_model(student, flow, "flowlib.coupling.realnvp_image", (1, 4, 4), **kwargs)
    xb = torch.randint(17, (12, 1, 4, 4), generator=generator(seed, 43))
    with torch.no_grad():
        ref1 = reference_ll(flow, xb, 17, generator=generator(seed, 44))
        ref3 = reference_ll(flow, xb, 17, n_samples=3, generator=generator(seed, 45))
    what = "dequantized_log_likelihood(a float64 RealNVP on (1, 4, 4), int64 (12, 1, 4, 4), 17, generator=<seeded>)"
    got1 = tensor(student.call("dequantized_log_likelihood", handle, xb, 17,
                               generator=_student_generator(student, _number(seed, 44))), what, shape=(12,), dtype=F64)
    close(got1, ref1, 1e-8, what + " (the -D log n_bins offset? the noise?)")
    what = ("dequantized_log_likelihood(a float64 RealNVP on (1, 4, 4), int64 (12, 1, 4, 4), 17, n_samples=3, "
            "generator=<seeded>)")
    got3 = tensor(student.call("dequantized_log_likelihood", handle, xb, 17, n_samples=3,
                               generator=_student_generator(student, _number(seed, 45))), what, shape=(12,), dtype=F64)
    close(got3, ref3, 1e-8, what + " (average over the draws, one dequantize call per draw)")

    # a 1-D toy with an exact discrete likelihood: p = N(0.45, 0.15^2) on the unit scale, 4 bins
    base = student.new("_grader_new", "flowlib.distributions.StandardNormal", 1)
    affine = student.new("_grader_new", "flowlib.onedim.Affine", 0.45, 0.15, shape=(1,), learnable=False)
    toy = student.new("_grader_new", "flowlib.core.Flow", base, affine)
    toy = student.method(student.method(toy, "double"), "to", student.device)
    k = torch.arange(4, dtype=F64)
    exact = torch.log(torch.special.ndtr(((k + 1) / 4 - 0.45) / 0.15) - torch.special.ndtr((k / 4 - 0.45) / 0.15))
    reps = 3000
    what = "dequantized_log_likelihood(the flow N(0.45, 0.15^2) in 1-D, int64 (12000, 1) of 0..3 repeated, 4, generator=<seeded>)"
    toy_ll = tensor(student.call("dequantized_log_likelihood", toy, torch.arange(4)[:, None].repeat(reps, 1), 4,
                                 generator=_student_generator(student, _number(seed, 46))),
                    what, shape=(4 * reps,), dtype=F64).reshape(reps, 4)
    # thresholds: bench/outcome-margins.md (nb05_bound_below_exact, nb05_bound_close_to_exact)
    mean, stderr = toy_ll.mean(0), toy_ll.std(0) / math.sqrt(reps)
    if not (mean <= exact + 4 * stderr).all():
        raise AssertionError(f"{what}: the bound {mean.tolist()} must lie below the exact log P {exact.tolist()} "
                             "(4 standard errors allowed)")
    if not (mean > exact - 1.2).all():
        raise AssertionError(f"{what}: the bound {mean.tolist()} is far below the exact log P {exact.tolist()} "
                             "(more than 1.2 nats)")

    # differentiable with respect to the flow's parameters (it is the training loss)
    what = "-dequantized_log_likelihood(a float64 RealNVP, int64 (12, 1, 4, 4), 17, generator=<seeded>).mean() with autograd"
    value, grads = sequence(student.call("_grader_param_grads", "dequantized_log_likelihood", handle,
                                         torch.full((12,), -1 / 12, dtype=F64), xb, 17,
                                         generator=_student_generator(student, _number(seed, 47))), 2, what)
    if not isinstance(grads, dict) or not grads:
        raise AssertionError(f"{what}: no parameter gradients came back")
    missing = [n for n, g in grads.items() if g is None]
    if missing:
        raise AssertionError(f"{what}: no gradient for the flow's parameters {missing[:3]} (is the result differentiable?)")
    if not all(torch.isfinite(g).all() for g in grads.values()) or not sum(g.abs().sum() for g in grads.values()) > 0:
        raise AssertionError(f"{what}: the gradients with respect to the flow's parameters must be finite and not all 0")
    # against the reference's gradients with the same noise
    named = dict(flow.named_parameters())
    ref_grads = torch.autograd.grad(-reference_ll(flow, xb, 17, generator=generator(seed, 47)).mean(), list(named.values()))
    for (name, p), r in zip(named.items(), ref_grads):
        if name not in grads:
            raise AssertionError(f"{what}: no gradient for the flow's parameter {name}")
        close(tensor(grads[name], f"{what}: d loss / d {name}", shape=p.shape, dtype=F64), r,
              1e-8 * (1 + r.abs().max().item()), f"{what}: d loss / d {name} against the reference's")


# ------------------------------------------------------------------------- Exercise 5
def test_dequantized_bits_per_dim(student, seed):
    _define(student)
    # the visible case: the flat density scores exactly log2(n_bins) bits per dimension
    flat = _flat_density(student, (1, 4, 4))
    x = torch.randint(17, (5, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    what = "dequantized_bits_per_dim(the flat density float64, int64 (5, 1, 4, 4), 17, generator=<seeded>)"
    bpd = tensor(student.call("dequantized_bits_per_dim", flat, x, 17, generator=_student_generator(student, 1)),
                 what, shape=(5,), dtype=F64)
    close(bpd, torch.full((5,), math.log2(17), dtype=F64), 1e-9,
          what + f": log2(17) = {math.log2(17):.6f} bits/dim expected (offset counted twice?)")

    flow, kwargs = _noisy_realnvp(seed, 51, (1, 8, 8), 0.1)
    handle = _student_model(student, flow, "flowlib.coupling.realnvp_image", (1, 8, 8), **kwargs)
    xb = torch.randint(17, (6, 1, 8, 8), generator=generator(seed, 53))
    with torch.no_grad():
        ref = reference_bpd(flow, xb, 17, n_samples=2, generator=generator(seed, 54))
        ref256 = reference_bpd(flow, xb * 15, 256, generator=generator(seed, 55))
    for xi, n, kw, r, salt in [(xb, 17, {"n_samples": 2}, ref, 54), (xb * 15, 256, {}, ref256, 55)]:
        what = (f"dequantized_bits_per_dim(a float64 RealNVP on (1, 8, 8), {case(xi)}, {n}"
                + "".join(f", {k}={v}" for k, v in kw.items()) + ", generator=<seeded>)")
        got = tensor(student.call("dequantized_bits_per_dim", handle, xi, n, **kw,
                                  generator=_student_generator(student, _number(seed, salt))), what, shape=(6,), dtype=F64)
        close(got, r, 1e-9, what + " (offset counted once? divided by D = 64?)")
    what = "dequantized_bits_per_dim(a float64 RealNVP on (1, 8, 8), int64 (1, 1, 8, 8), 17, generator=<seeded>)"
    one = tensor(student.call("dequantized_bits_per_dim", handle, xb[:1], 17,
                              generator=_student_generator(student, _number(seed, 56))), what, shape=(1,), dtype=F64)
    if not 0 < one.item() < 2 * math.log2(17) + 5:
        raise AssertionError(f"{what} = {one.item():.4g}: expected a positive number of bits per dimension below "
                             f"{2 * math.log2(17) + 5:.3g}")
