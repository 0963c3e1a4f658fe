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

from flowlib.flows.bits import bits_per_dim as reference_bits_per_dim
from flowlib.flows.coupling import realnvp_image
from flowlib.flows.dequantization import LogitTransform
from flowlib.flows.dequantization import dequantized_bits_per_dim as reference_bpd
from flowlib.flows.dequantization import dequantized_log_likelihood as reference_ll
from flowlib.flows.dequantization import uniform_dequantize
from probe import wire
from probe.checks import case, close, finite, generator, sequence, tensor

F64, F32 = torch.float64, torch.float32

#: flowlib references replaced by stubs that raise in the student's process
STUB = [
    "flowlib.flows.dequantization.uniform_dequantize", "flowlib.flows.dequantization._into_cells",
    "flowlib.flows.dequantization.LogitTransform", "flowlib.flows.bits.bits_per_dim",
    "flowlib.flows.dequantization.dequantized_log_likelihood", "flowlib.flows.dequantization.dequantized_bits_per_dim",
]

#: time limit per test cell in seconds (default: FLOWLIB_CELL_TIMEOUT, 120)
TIMEOUTS: dict[str, float] = {}

#: graded cells that check a result the student derived by hand (a number or a formula)
DERIVATIONS = ["test_exponential_gap"]

#: the solution cells each slow (training) test runs: tests/run_mutants.py skips it for a mutant of
#: any other cell (grading always runs every test)
USES: dict[str, list[str]] = {"test_fit_discrete_flow": ["dequantize", "logit_transform", "bits_per_dim", "dequantized_log_likelihood",
                                    "dequantized_bits_per_dim", "fit_discrete_flow"]}

#: helpers defined in the student's process (names start with ``_grader_``): they only build the
#: inputs the student's functions receive (generators, dtypes, flowlib models, a torch.Size) or
#: backpropagate through the student's result there; every answer is judged here
_HELPERS = '''
def _grader_new(_path, *args, **kwargs):
    """flowlib's class or factory `_path` (e.g. "flowlib.flows.coupling.realnvp_image") called with the arguments."""
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
    handle = _student_model(student, flow, "flowlib.flows.coupling.realnvp_image", (1, 4, 4), **kwargs)
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
    affine = student.new("_grader_new", "flowlib.flows.onedim.Affine", 0.45, 0.15, shape=(1,), learnable=False)
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
    handle = _student_model(student, flow, "flowlib.flows.coupling.realnvp_image", (1, 8, 8), **kwargs)
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


# ------------------------------------------------------------------------- Exercise 6 (transfer)
def _tilted_oracle(x, tilt, e, n_bins, log_density):
    """The tilted bound computed here: u by the inverse CDF (expm1 / log1p), log q = -log du/de by
    autograd of that map (no closed form of log q used), t = 0 entries uniform (u = e, log q = 0)."""
    zero = tilt == 0
    t = torch.where(zero, torch.ones_like(tilt), tilt)
    e = e.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        u = torch.where(zero, e, torch.log1p(e * torch.expm1(t)) / t)
        (du_de,) = torch.autograd.grad(u.sum(), e, create_graph=True)
    log_q = torch.where(zero, torch.zeros_like(tilt), -torch.log(du_de))
    y = (x.to(tilt.dtype) + u) / n_bins
    return log_density(y) - log_q.sum(dim=1) - x.shape[1] * math.log(n_bins), y


def _tilts(gen, shape, dtype=F64):
    """Tilts spread over [-40, 40], with exact zeros, tiny ones and both ends in the first rows."""
    t = 40 * (2 * torch.rand(shape, generator=gen, dtype=dtype) - 1)
    t = torch.where(torch.rand(shape, generator=gen) < 0.5, t / 40 * 3, t)  # half of them moderate
    t[0] = 0.0
    t[1, 0], t[2, 0] = 1e-7, -1e-7
    t[3, 0], t[4, 0] = 40.0, -40.0
    return t


def _gauss_log_density(center, prec):
    """A correlated Gaussian log-density (unnormalised is fine), differentiable, any dtype."""
    def f(y):
        d = y - center.to(y.dtype)
        return -0.5 * ((d @ prec.to(y.dtype)) * d).sum(dim=1)
    return f


def test_tilted_dequantized_log_likelihood(student, seed):
    _define(student)
    flat = lambda y: torch.zeros(y.shape[0], dtype=y.dtype)  # noqa: E731
    # the visible cases: t = 0 is uniform dequantization; tilt 1 in float64
    x = torch.tensor([[0, 3], [2, 1], [1, 1]])
    what = "tilted_dequantized_log_likelihood(log p = 0, int64 (3, 2), 4, tilt float32 zeros (3, 2), generator seeded 0)"
    ll = tensor(student.call("tilted_dequantized_log_likelihood", student.function(flat, name="log p = 0"), x, 4,
                             torch.zeros(3, 2), generator=_student_generator(student, 0)), what, shape=(3,), dtype=F32)
    close(ll, torch.full((3,), -2 * math.log(4)), 1e-5, what + ": t = 0 gives log q = 0, so -2 log 4")
    what = "tilted_dequantized_log_likelihood(log p = 0, int64 [[2, 0]], 4, tilt float64 [[1, 1]], generator seeded 0)"
    ll = tensor(student.call("tilted_dequantized_log_likelihood", student.function(flat, name="log p = 0"),
                             torch.tensor([[2, 0]]), 4, torch.ones(1, 2, dtype=F64), generator=_student_generator(student, 0)),
                what, shape=(1,), dtype=F64)
    e = torch.rand((1, 2), generator=torch.Generator().manual_seed(0), dtype=F64)
    ref, _ = _tilted_oracle(torch.tensor([[2, 0]]), torch.ones(1, 2, dtype=F64), e, 4, flat)
    close(ll, ref, 1e-10, what + ": -log q_1(u_1) - log q_1(u_2) - 2 log 4")

    # random levels and tilts over [-40, 40] (zeros, +-1e-7, +-40 included), a correlated Gaussian log p
    gen = generator(seed, 61)
    B, D, n = 40, 3, 8
    xr = torch.randint(n, (B, D), generator=gen)
    tilt = _tilts(gen, (B, D))
    center = torch.rand(D, generator=gen, dtype=F64)
    a = torch.randn(D, D, generator=gen, dtype=F64)
    prec = a @ a.T + D * torch.eye(D, dtype=F64)
    log_p = _gauss_log_density(center, prec)
    e = torch.rand((B, D), generator=generator(seed, 62), dtype=F64)
    ref, ref_y = _tilted_oracle(xr, tilt, e, n, log_p)
    recording = student.function(log_p, name="a correlated Gaussian log p")
    what = (f"tilted_dequantized_log_likelihood(a Gaussian log p, int64 ({B}, {D}), {n}, tilt float64 ({B}, {D}) in "
            "[-40, 40] with zeros and +-1e-7, generator)")
    got = tensor(student.call("tilted_dequantized_log_likelihood", recording, xr, n, tilt,
                              generator=_student_generator(student, _number(seed, 62))), what, shape=(B,), dtype=F64)
    if recording.calls != [((B, D), F64)]:
        raise AssertionError(f"{what}: call log_density once, with y float64 ({B}, {D}) (tilt's dtype); got calls "
                             f"{[(s, str(d).replace('torch.', '')) for s, d in recording.calls]}")
    close(got[:1], ref[:1], 1e-10, what + ", example 0 (every tilt 0: the uniform case)")
    close(got[1:3], ref[1:3], 1e-10, what + ", examples 1-2 (a tilt of +-1e-7: expm1 and log1p?)")
    close(got[3:5], ref[3:5], 1e-10, what + ", examples 3-4 (a tilt of +-40)", relative=True)
    close(got, ref, 1e-10, what + " (u = log(1 + e (e^t - 1)) / t, log q_t(u), -D log n)", relative=True)

    # the optimal tilt for an exponential density closes the gap: the bound equals log P(x) for every draw
    lam, ne = 3.0 + 4 * torch.rand((), generator=gen).item(), 4
    def exp_density(y):
        return (math.log(lam) - lam * y - math.log(-math.expm1(-lam))).sum(dim=1)
    xe = torch.randint(ne, (200, 2), generator=gen)
    k = xe.to(F64)
    exact = (math.log(-math.expm1(-lam / ne)) - lam * k / ne - math.log(-math.expm1(-lam))).sum(dim=1)
    what = (f"tilted_dequantized_log_likelihood(p(y) = {lam:.3f} e^(-{lam:.3f} y) / (1 - e^(-{lam:.3f})) per entry, "
            f"int64 (200, 2), {ne}, tilt = -lam / n_bins everywhere, float64)")
    got = tensor(student.call("tilted_dequantized_log_likelihood", student.function(exp_density, name="an exponential log p"),
                              xe, ne, torch.full((200, 2), -lam / ne, dtype=F64),
                              generator=_student_generator(student, _number(seed, 63))), what, shape=(200,), dtype=F64)
    close(got, exact, 1e-9, what + ": with q equal to the model's density in each cell the bound is exact", relative=True)

    # float32 keeps float32 (the noise drawn in float32)
    t32 = tilt.float()
    e32 = torch.rand((B, D), generator=generator(seed, 64), dtype=F32)
    ref32, _ = _tilted_oracle(xr, t32.double(), e32.double(), n, log_p)
    what = f"tilted_dequantized_log_likelihood(a Gaussian log p, int64 ({B}, {D}), {n}, tilt float32 ({B}, {D}), generator)"
    got32 = tensor(student.call("tilted_dequantized_log_likelihood", student.function(log_p, name="a Gaussian log p"), xr, n,
                                t32, generator=_student_generator(student, _number(seed, 64))), what, shape=(B,), dtype=F32)
    close(got32, ref32, 1e-4, what + " (against float64 with the same float32 noise)", relative=True)

    # the gradient with respect to the tilts (the dequantizer's training signal) and through log p's input
    tg = torch.where(tilt.abs() < 0.05, torch.full_like(tilt, 0.05), tilt).clamp(-10, 10)
    tg[0] = 0.3
    cot = torch.randn(B, generator=gen, dtype=F64)
    tg_ref = tg.clone().requires_grad_(True)
    with torch.enable_grad():
        ref_val, _ = _tilted_oracle(xr, tg_ref, e, n, log_p)
        (ref_grad,) = torch.autograd.grad((ref_val * cot).sum(), tg_ref)
    what = (f"tilted_dequantized_log_likelihood(a Gaussian log p, int64 ({B}, {D}), {n}, tilt float64 ({B}, {D}) "
            "nonzero in [-10, 10], generator) with autograd")
    value, grads = student.call_grad("tilted_dequantized_log_likelihood",
                                     (student.function(log_p, name="a Gaussian log p", differentiable=True), xr, n, tg),
                                     {"generator": _student_generator(student, _number(seed, 62))}, wrt=(3,), cotangents=[cot])
    close(tensor(value, what, shape=(B,), dtype=F64), ref_val.detach(), 1e-10, what + ", value", relative=True)
    if grads[0] is None:
        raise AssertionError(f"{what}: the bound does not depend on tilt by autograd (is something detached?)")
    close(tensor(grads[0], what + ": d bound / d tilt", shape=(B, D), dtype=F64), ref_grad, 1e-9,
          what + ": d bound / d tilt against autograd of the bound (u and log q both depend on t)", relative=True)
    # t = 0 exactly: a finite gradient
    what = "tilted_dequantized_log_likelihood(log p = 0, int64 (4, 2), 4, tilt float64 zeros (4, 2)) with autograd"
    value, grads = student.call_grad("tilted_dequantized_log_likelihood",
                                     (student.function(flat, name="log p = 0", differentiable=True), xr[:4, :2] % 4, 4,
                                      torch.zeros(4, 2, dtype=F64)),
                                     {"generator": _student_generator(student, 0)}, wrt=(3,), cotangents=[torch.ones(4, dtype=F64)])
    close(tensor(value, what, shape=(4,), dtype=F64), torch.full((4,), -2 * math.log(4), dtype=F64), 1e-12, what + ", value")
    if grads[0] is None or not torch.isfinite(grads[0]).all():
        raise AssertionError(f"{what}: the gradient at t = 0 must exist and be finite, got {grads[0]} "
                             "(torch.where: give the unused branch a harmless tilt)")

    for bad, t_bad, label in [(xr.double(), tilt, "a floating-point x"), (xr > 3, tilt, "a bool x"),
                              (torch.full((B, D), n), tilt, "a value equal to n_bins"),
                              (xr - 1, tilt, "a negative value"), (xr, tilt[:, :2], "tilt of another shape than x")]:
        try:
            student.raises(ValueError, "tilted_dequantized_log_likelihood", student.function(log_p, name="log p"), bad, n, t_bad,
                           generator=_student_generator(student, 0))
        except AssertionError as exc:
            raise AssertionError(f"{label}: {exc}") from None


# ------------------------------------------------------------------------- Exercise 7 (derivation)
def _exponential_gap(h: float) -> float:
    """log(sinh(h/2) / (h/2)), derived here: log P(k) = log(e^{-hk} (1 - e^{-h})) + const and
    E_u log p = -h (k + 1/2) + const, with the same constant log(lam / (1 - e^{-lam})) - log n."""
    if h < 0.01:
        return h**2 / 24 - h**4 / 2880 + h**6 / 181440
    return math.log(math.sinh(h / 2) / (h / 2))


def test_exponential_gap(student, seed):
    gen = generator(seed, 71)
    cases = [(3.0, 4), (0.016, 16), (0.4, 8), (12.0, 4), (40.0, 2), (0.5, 500)]
    cases.append((float(0.1 + 20 * torch.rand((), generator=gen)), int(torch.randint(2, 40, (), generator=gen))))
    for lam, n in cases:
        what = f"exponential_gap({lam:g}, {n}) (h = lam / n_bins = {lam / n:.4g})"
        got = student.call("exponential_gap", lam, n)
        if isinstance(got, torch.Tensor):
            got = tensor(got, what + " (a 0-dim tensor or a float)", shape=()).item()
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            raise AssertionError(f"{what}: expected a float, got {type(got).__name__}")
        ref = _exponential_gap(lam / n)
        if not abs(got - ref) <= 1e-8 * abs(ref):
            raise AssertionError(f"{what}: got {got!r}, the exact gap is {ref!r}; relative error "
                                 f"{abs(got - ref) / ref:.2e}, tolerance 1e-8")


# ------------------------------------------------------------------------- Exercise 8 (training)
def _band_levels(n, gen, n_bins=16):
    """The notebook's band_levels: a ~ U[0.1, 0.9), b = a + 0.06 N(0, 1), quantised to n_bins levels."""
    a = 0.1 + 0.8 * torch.rand(n, generator=gen)
    b = a + 0.06 * torch.randn(n, generator=gen)
    return (torch.stack([a, b], dim=1) * n_bins).floor().long().clamp(0, n_bins - 1)


def held_out_excess(log_prob, x_train, x_test, gen, n_draws=4):
    """Held-out dequantized bits/dim of a model (``log_prob`` maps float32 y (N, 2) to (N,)), averaged
    over ``n_draws`` noise draws, minus the per-coordinate histogram's bits/dim on the same data.
    Shared with tests/notebook_outcomes/nb05.py."""
    from flowlib.flows.dequantization import histogram_baseline_bpd

    lps = []
    for _ in range(n_draws):
        y = (x_test + torch.rand(x_test.shape, generator=gen)) / 16
        lps.append(log_prob(y.float()).to(F64))
    lp = torch.stack(lps).mean(0)
    flow_bpd = -(lp.mean().item() - 2 * math.log(16)) / (2 * math.log(2))
    return flow_bpd - histogram_baseline_bpd(x_train, x_test, 16), flow_bpd, lp


def _fit_and_measure(student, x_train, x_test, gen, what):
    h = student.call("fit_discrete_flow", x_train, 16)
    if not isinstance(h, wire.Handle):
        raise AssertionError(f"{what}: return the trained model (a torch.nn.Module with log_prob), got {type(h).__name__}")

    def log_prob(y):
        lp = tensor(student.method(h, "log_prob", y), f"{what}: model.log_prob(float32 {tuple(y.shape)})",
                    shape=(y.shape[0],), dtype=F32)
        finite(lp, f"{what}: model.log_prob on held-out data")
        return lp

    return held_out_excess(log_prob, x_train, x_test, gen)


def test_fit_discrete_flow(student, seed):
    # thresholds: bench/outcome-margins.md (nb05_fit_discrete_flow)
    # the visible case: the notebook's data and noise
    gen = torch.Generator().manual_seed(5)
    x_train, x_test = _band_levels(2000, gen), _band_levels(4000, gen)
    student.seed(0)
    what = "fit_discrete_flow(int64 (2000, 2) band data, 16)"
    excess, bpd, _ = _fit_and_measure(student, x_train, x_test, gen, what)
    if not excess < -0.4:
        raise AssertionError(f"{what}: held-out {bpd:.3f} bits/dim, {excess:+.3f} against the per-coordinate "
                             "histogram (needs below -0.4)")
    # fresh data from the grading seed; held-out data never leave the grader except as log_prob inputs
    gen = generator(seed, 808)
    x_train, x_test = _band_levels(2000, gen), _band_levels(4000, gen)
    student.seed(seed + 1)
    what = f"fit_discrete_flow(int64 (2000, 2) band data drawn at grading seed {seed}, 16)"
    excess, bpd, _ = _fit_and_measure(student, x_train, x_test, gen, what)
    if not excess < -0.4:
        raise AssertionError(f"{what}: held-out {bpd:.3f} bits/dim, {excess:+.3f} against the per-coordinate "
                             "histogram (needs below -0.4)")
