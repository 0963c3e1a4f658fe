"""Hidden tests of assignment 04, run by the grader (autograder/verdicts.py), never by students.

One function per graded test cell, named by the cell's grade_id, called as ``fn(student, seed)``:
``student`` calls the student's functions in the student's own process (autograder/probe),
``seed`` is the grading seed, from which every random input and every random network weight is
drawn. Expected answers are computed here, in the grader's process, with the real flowlib
(``AffineCoupling``, ``Squeeze``, ``MultiScale``, ``Flow``). Conditioner networks are built in
the student's process from flowlib's (unstubbed) ``MLPConditioner`` / ``ConvConditioner`` with
the grader's weights loaded, so that autograd runs through them there; the transforms of a
multi-scale stack are grader functions, evaluated here on what the student's code passes them.
A function passes when it returns; any exception fails the cell with its message, which the
student sees in the feedback. The visible tests of the notebook are repeated here: points come
only from these functions.
"""
from __future__ import annotations

import contextlib
import copy
import math

import torch
from torch import nn

from flowlib import Compose, Flow
from flowlib.flows.coupling import (AffineCoupling, ConvConditioner, Flatten, MLPConditioner, MultiScale, Squeeze,
                              alternating_mask, channel_mask, checkerboard_mask)
from flowlib.distributions import StandardNormal
from probe.checks import trained_density_2d, case, close, finite, generator, sequence, tensor

F64, F32 = torch.float64, torch.float32

#: flowlib references replaced by stubs that raise in the student's process
STUB = [
    "flowlib.flows.coupling.AffineCoupling", "flowlib.flows.coupling.AdditiveCoupling", "flowlib.flows.coupling.checkerboard_mask",
    "flowlib.flows.coupling.Squeeze", "flowlib.flows.coupling.MultiScale", "flowlib.core.Flow",
    "flowlib.distributions.StandardNormal",
]

#: time limit per test cell in seconds (default: FLOWLIB_CELL_TIMEOUT, 120)
TIMEOUTS: dict[str, float] = {}

#: graded cells that check a result the student derived by hand (a number or a formula)
DERIVATIONS = ["test_same_mask_excess"]

#: the solution cells each slow (training) test runs: tests/run_mutants.py skips it for a mutant of
#: any other cell (grading always runs every test)
USES: dict[str, list[str]] = {"test_fit_realnvp": ["coupling_forward", "coupling_inverse", "fit_realnvp"]}


@contextlib.contextmanager
def _torch_seed(seed: int, salt: int):
    """torch's global generator seeded from the grading seed (for nn.Module initialisations),
    restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1_000_003 * int(seed) + int(salt))
        yield


#: helpers defined in the student's process (names start with ``_grader_``): they only build
#: the inputs the student's functions receive (flowlib modules); every answer is judged here
_HELPERS = '''
def _grader_new(_path, *args, **kwargs):
    """An instance of flowlib's class `_path` (e.g. "flowlib.flows.coupling.MLPConditioner")."""
    import importlib
    module, _, name = _path.rpartition(".")
    return getattr(importlib.import_module(module), name)(*args, **kwargs)
'''


def _define(student, source: str = _HELPERS) -> None:
    """Define the grader's helper functions in the student's process (again after a restart)."""
    student.define(source)


def _student_module(student, path: str, args: tuple, module: nn.Module, dtype: torch.dtype):
    """A copy of the grader's ``module`` in the student's process: flowlib's class ``path``
    built there with ``args``, cast to ``dtype``, moved to the student's device, the grader's
    weights loaded. Returns its handle."""
    _define(student)
    h = student.new("_grader_new", path, *args)
    h = student.method(h, "double" if dtype == F64 else "float")
    h = student.method(h, "to", student.device)
    student.load_state_dict(h, {k: v.detach().to(dtype) for k, v in module.state_dict().items()})
    return h


def _pair(student, what, name, *args, batch_shape, dtype):
    out = sequence(student.call(name, *args), 2, what + ": return (output, ladj)")
    y = tensor(out[0], what + ", output", shape=batch_shape, dtype=dtype)
    ladj = tensor(out[1], what + ", ladj", shape=(batch_shape[0],), dtype=dtype)
    return y, ladj


def _jacobian_log_det(student, name, x, mask, cond, what):
    """log|det| of the autograd Jacobian of the student's output (``name(x, mask, cond)[0]``)
    with respect to ``x`` (batch, D), sample by sample: row j of every sample's Jacobian is
    one backward pass in the student's process with the cotangent e_j."""
    B, D = x.shape
    rows = []
    for j in range(D):
        cot = torch.zeros(B, D, dtype=x.dtype)
        cot[:, j] = 1
        _, grads = student.call_grad(name, (x, mask, cond), wrt=(0,), cotangents=[cot, None])
        if grads[0] is None:
            raise AssertionError(f"{what}: the output does not depend on x by autograd")
        rows.append(tensor(grads[0], f"{what}: d output[:, {j}] / dx by autograd", shape=(B, D), dtype=x.dtype))
    J = torch.stack(rows, dim=1)
    return torch.linalg.slogdet(J)[1], J


def _reference_jacobians(fn, x):
    """The autograd Jacobian of the reference ``fn`` (batch, D) -> (batch, D) at each sample: (batch, D, D)."""
    return torch.stack([torch.autograd.functional.jacobian(lambda v: fn(v[None])[0][0], xi) for xi in x])


def _check_gradients(student, name, x, mask, cond, ref_fn, J, what):
    """Gradients through the student's conditioner call (issue 19: a value can be right while a
    detached shift or log-scale makes training silently fail): the Jacobian of the output and
    the gradient of sum(ladj) with respect to x, against the reference's autograd."""
    close(J, _reference_jacobians(ref_fn, x), 1e-9,
          what + ": the Jacobian of the output by autograd against the reference's (is t or s detached?)")
    xr = x.clone().requires_grad_(True)
    ref_g, = torch.autograd.grad(ref_fn(xr)[1].sum(), xr)
    try:
        _, grads = student.call_grad(name, (x, mask, cond), wrt=(0,), cotangents=[None, torch.ones(x.shape[0], dtype=x.dtype)])
    except AssertionError as exc:
        raise AssertionError(f"{exc} (backpropagating sum(ladj) to x: ladj must be differentiable, s not detached)") from None
    if grads[0] is None:
        raise AssertionError(f"{what}: ladj does not depend on x by autograd (is s detached?); "
                             f"the reference's gradient of sum(ladj) has size {ref_g.abs().max().item():.3g}")
    close(tensor(grads[0], what + ": d sum(ladj) / dx by autograd", shape=x.shape, dtype=x.dtype), ref_g, 1e-9,
          what + ": d sum(ladj) / dx by autograd against the reference's (is s detached?)")


class _Constant(nn.Module):
    """The visible tests' conditioner: shift 1 and log-scale log 2 for every entry."""

    def forward(self, h):
        return torch.cat([torch.ones_like(h), torch.full_like(h, math.log(2.0))], dim=1)


def _no_grad(fn):
    def run(*args):
        with torch.no_grad():
            return fn(*args)

    return run


# ------------------------------------------------------------------------- Exercise 1
def test_coupling_forward(student, seed):
    # the visible case: float32, constant conditioner, entries 0 and 2 pass through
    x = torch.tensor([[3.0, 5.0, 7.0, 9.0]])
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    const = student.function(_no_grad(_Constant()), name="a constant conditioner (t = 1, s = log 2)")
    what = "coupling_forward(float32 [[3, 5, 7, 9]], mask [1, 0, 1, 0], a constant conditioner (t = 1, s = log 2))"
    z, ladj = _pair(student, what, "coupling_forward", x, mask, const, batch_shape=(1, 4), dtype=F32)
    close(z, torch.tensor([[3.0, 2.0, 7.0, 4.0]]), 1e-5, what + ": z = [[3, 2, 7, 4]]")
    close(ladj, torch.tensor([-2 * math.log(2.0)]), 1e-5, what + ": ladj = -2 log 2 (passed-through entries add 0)")

    gen = generator(seed, 404)
    with _torch_seed(seed, 404):
        mlp = MLPConditioner(6, (16, 16), 12)
        nn.init.normal_(mlp.last.weight, std=0.5)
        nn.init.normal_(mlp.last.bias, std=0.5)
        conv = ConvConditioner(2, 8, 4)
        nn.init.normal_(conv.last.weight, std=0.3)
        nn.init.normal_(conv.last.bias, std=0.3)
    mlp64, conv64, mlp32 = mlp.to(F64), conv.to(F64), copy.deepcopy(mlp).to(F32)
    x_vec = torch.randn(7, 6, generator=gen, dtype=F64)
    x_img = torch.randn(3, 2, 4, 4, generator=gen, dtype=F64)
    s_mlp = _student_module(student, "flowlib.flows.coupling.MLPConditioner", (6, (16, 16), 12), mlp64, F64)
    s_conv = _student_module(student, "flowlib.flows.coupling.ConvConditioner", (2, 8, 4), conv64, F64)
    cases = [(x_vec, alternating_mask(6, 1), mlp64, s_mlp, "alternating mask (6,) parity 1, an MLP conditioner"),
             (x_vec, torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0]), mlp64, s_mlp, "mask [1, 1, 0, 1, 0, 0], an MLP conditioner"),
             (x_img, checkerboard_mask(4, 4, 0), conv64, s_conv, "checkerboard mask (1, 4, 4), a conv conditioner"),
             (x_img, channel_mask(2, 1), conv64, s_conv, "channel mask (2, 1, 1), a conv conditioner")]
    got = []
    for xc, m, net, handle, label in cases:
        with torch.no_grad():
            z_ref, l_ref = AffineCoupling(m, net, scale_bound=None).to(F64)(xc)
        what = f"coupling_forward({case(xc)}, {label})"
        z, ladj = _pair(student, what, "coupling_forward", xc, m, handle, batch_shape=xc.shape, dtype=F64)
        close(z, z_ref, 1e-10, what + ", z")
        keep = m.to(F64).expand_as(xc) == 1
        if not torch.equal(z[keep], xc[keep]):
            raise AssertionError(f"{what}: entries with mask 1 must pass through exactly")
        close(ladj, l_ref, 1e-10, what + ", ladj (sum -s over the transformed entries only)")
        got.append(ladj)

    # log|det| of the autograd Jacobian of the student's z, through the student-side conditioner
    what = "coupling_forward(float64 (4, 6), alternating mask (6,) parity 1, an MLP conditioner)"
    auto, J = _jacobian_log_det(student, "coupling_forward", x_vec[:4], alternating_mask(6, 1), s_mlp, what)
    close(got[0][:4], auto, 1e-9, what + ": ladj against log|det| of the autograd Jacobian of z")
    layer = AffineCoupling(alternating_mask(6, 1), mlp64, scale_bound=None).to(F64)
    _check_gradients(student, "coupling_forward", x_vec[:4], alternating_mask(6, 1), s_mlp, layer, J, what)

    # the conditioner is given the masked input b * x only (observed here, by the grader)
    seen = []

    def recording(h):
        seen.append(h.detach().clone())
        with torch.no_grad():
            return mlp64(h)

    rec = student.function(recording, name="a recording MLP conditioner")
    what = "coupling_forward(float64 (7, 6), alternating mask (6,) parity 0, a recording conditioner)"
    sequence(student.call("coupling_forward", x_vec, alternating_mask(6, 0), rec), 2, what)
    if not seen:
        raise AssertionError(f"{what}: the conditioner was never called")
    h = seen[0]
    if tuple(h.shape) != tuple(x_vec.shape) or not torch.equal(h[:, 1::2], torch.zeros_like(h[:, 1::2])):
        raise AssertionError(f"{what}: the conditioner must be given the masked input b * x only "
                             f"(got shape {tuple(h.shape)}, nonzero entries where b = 0)")

    # float32 inputs and conditioner keep float32
    s_mlp32 = _student_module(student, "flowlib.flows.coupling.MLPConditioner", (6, (16, 16), 12), mlp32, F32)
    what = "coupling_forward(float32 (7, 6), alternating mask (6,) parity 0, a float32 MLP conditioner)"
    z32, l32 = _pair(student, what, "coupling_forward", x_vec.float(), alternating_mask(6, 0), s_mlp32,
                     batch_shape=(7, 6), dtype=F32)
    with torch.no_grad():
        z_ref, l_ref = AffineCoupling(alternating_mask(6, 0), mlp64, scale_bound=None).to(F64)(x_vec)
    close(z32, z_ref, 1e-4, what + ", z", relative=True)
    close(l32, l_ref, 1e-4, what + ", ladj", relative=True)


# ------------------------------------------------------------------------- Exercise 2
def test_coupling_inverse(student, seed):
    # the visible case: the example of Exercise 1 backwards
    z = torch.tensor([[3.0, 2.0, 7.0, 4.0]])
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    const = student.function(_no_grad(_Constant()), name="a constant conditioner (t = 1, s = log 2)")
    what = "coupling_inverse(float32 [[3, 2, 7, 4]], mask [1, 0, 1, 0], a constant conditioner (t = 1, s = log 2))"
    x, ladj = _pair(student, what, "coupling_inverse", z, mask, const, batch_shape=(1, 4), dtype=F32)
    close(x, torch.tensor([[3.0, 5.0, 7.0, 9.0]]), 1e-5, what + ": x = [[3, 5, 7, 9]]")
    close(ladj, torch.tensor([2 * math.log(2.0)]), 1e-5, what + ": ladj = +2 log 2")

    gen = generator(seed, 505)
    with _torch_seed(seed, 505):
        mlp = MLPConditioner(5, (16, 16), 10)
        nn.init.normal_(mlp.last.weight, std=0.5)
        nn.init.normal_(mlp.last.bias, std=0.5)
        conv = ConvConditioner(1, 8, 2)
        nn.init.normal_(conv.last.weight, std=0.3)
    mlp, conv = mlp.to(F64), conv.to(F64)
    x_vec = torch.randn(9, 5, generator=gen, dtype=F64)
    x_img = torch.randn(2, 1, 6, 6, generator=gen, dtype=F64)
    s_mlp = _student_module(student, "flowlib.flows.coupling.MLPConditioner", (5, (16, 16), 10), mlp, F64)
    s_conv = _student_module(student, "flowlib.flows.coupling.ConvConditioner", (1, 8, 2), conv, F64)
    cases = [(x_vec, alternating_mask(5, 0), mlp, s_mlp, "alternating mask (5,) parity 0, an MLP conditioner"),
             (x_img, checkerboard_mask(6, 6, 1), conv, s_conv, "checkerboard mask (1, 6, 6) parity 1, a conv conditioner")]
    got = []
    for xc, m, net, handle, label in cases:
        layer = AffineCoupling(m, net, scale_bound=None).to(F64)
        with torch.no_grad():
            zc, l_fwd = layer(xc)                 # the reference forward
            _, l_ref = layer.inverse(zc)          # the reference inverse
        what = f"coupling_inverse({case(zc)} = coupling_forward(x), {label})"
        xr, ladj = _pair(student, what, "coupling_inverse", zc, m, handle, batch_shape=xc.shape, dtype=F64)
        close(xr, xc, 1e-9, what + ": inverse(forward(x)) against x")
        close(ladj, l_ref, 1e-10, what + ", ladj")
        close(ladj, -l_fwd, 1e-10, what + ": ladj at z against minus the forward ladj at x")
        got.append((zc, ladj))

    zc, ladj = got[0]
    what = "coupling_inverse(float64 (4, 5), alternating mask (5,) parity 0, an MLP conditioner)"
    auto, J = _jacobian_log_det(student, "coupling_inverse", zc[:4], alternating_mask(5, 0), s_mlp, what)
    close(ladj[:4], auto, 1e-9, what + ": ladj against log|det| of the autograd Jacobian of x")
    layer = AffineCoupling(alternating_mask(5, 0), mlp, scale_bound=None).to(F64)
    _check_gradients(student, "coupling_inverse", zc[:4], alternating_mask(5, 0), s_mlp, layer.inverse, J, what)


# ------------------------------------------------------------------------- Exercise 3
def _call_on_cpu(student, name, *args, **kwargs):
    """``student.call`` for a function whose spec puts its result on the CPU whatever the
    device (a mask): the returned tensors must be CPU tensors."""
    device = student.device
    student.device = "cpu"
    try:
        return student.call(name, *args, **kwargs)
    finally:
        student.device = device


def test_checkerboard(student, seed):
    # the visible case: shape, dtype, the top-left corner
    what = "checkerboard(3, 4)"
    b = tensor(_call_on_cpu(student, "checkerboard", 3, 4), what + " (on the CPU)", shape=(1, 3, 4),
               dtype=torch.get_default_dtype())
    if b[0, 0, 0].item() != 1.0:
        raise AssertionError(f"{what}: parity 0 passes pixel (0, 0): b[0, 0, 0] must be 1")
    if b[0, 0, 1].item() != 0.0 or b[0, 1, 0].item() != 0.0:
        raise AssertionError(f"{what}: the neighbours of (0, 0) are transformed: b[0, 0, 1] and b[0, 1, 0] must be 0")

    sizes = [(1, 1), (2, 2), (5, 3), (8, 8), (4, 7)]
    got = {}
    for h, w in sizes:
        for p in (0, 1):
            what = f"checkerboard({h}, {w}, {p})"
            ref = checkerboard_mask(h, w, p)
            g = tensor(_call_on_cpu(student, "checkerboard", h, w, p), what + " (on the CPU)", shape=ref.shape,
                       dtype=ref.dtype)
            if not torch.equal(g, ref):
                raise AssertionError(f"{what} is wrong: {g.tolist()}, expected {ref.tolist()}")
            got[(h, w, p)] = g
        if not torch.equal(got[(h, w, 0)] + got[(h, w, 1)], torch.ones(1, h, w)):
            raise AssertionError(f"checkerboard({h}, {w}, 0) and checkerboard({h}, {w}, 1) must be complementary")
    for bad in [dict(h=4, w=4, parity=2), dict(h=4, w=4, parity=-1), dict(h=0, w=4), dict(h=3, w=0)]:
        student.raises(ValueError, "checkerboard", **bad)


# ------------------------------------------------------------------------- Exercise 4
def _squeeze(student, v):
    B, C, H, W = v.shape
    what = f"squeeze({case(v)})"
    return tensor(student.call("squeeze", v), what, shape=(B, 4 * C, H // 2, W // 2), dtype=v.dtype), what


def _unsqueeze(student, z):
    B, C4, h, w = z.shape
    what = f"unsqueeze({case(z)})"
    return tensor(student.call("unsqueeze", z), what, shape=(B, C4 // 4, 2 * h, 2 * w), dtype=z.dtype), what


def test_squeeze_round_trip(student, seed):
    # the visible case: arange (2, 3, 4, 6), float32
    x = torch.arange(2 * 3 * 4 * 6, dtype=F32).reshape(2, 3, 4, 6)
    z, what = _squeeze(student, x)
    back, what_back = _unsqueeze(student, z)
    if not torch.equal(back, x):
        raise AssertionError(f"{what_back} of {what}: unsqueeze(squeeze(x)) must give x back exactly")

    gen = generator(seed, 606)
    xs = [torch.randn(3, 1, 8, 8, generator=gen, dtype=F64), torch.randn(1, 2, 2, 6, generator=gen),
          torch.randn(4, 4, 4, 4, generator=gen, dtype=F64)]
    for v in xs:
        o, what = _squeeze(student, v)
        back, _ = _unsqueeze(student, o)
        if not torch.equal(back, v):
            raise AssertionError(f"{what}: unsqueeze(squeeze(x)) must give x back exactly")
        B = v.shape[0]
        # a permutation of each sample's entries: the same values per sample
        if not torch.equal(o.reshape(B, -1).sort(dim=1).values, v.reshape(B, -1).sort(dim=1).values):
            raise AssertionError(f"{what}: squeeze must only move entries (each sample keeps its values)")
    zr = torch.randn(2, 8, 3, 5, generator=gen)
    u, what = _unsqueeze(student, zr)
    forth, _ = _squeeze(student, u)
    if not torch.equal(forth, zr):
        raise AssertionError(f"{what}: squeeze(unsqueeze(z)) must give z back exactly")
    s1, _ = _squeeze(student, xs[0])
    s2, _ = _squeeze(student, s1)
    u1, _ = _unsqueeze(student, s2)
    u2, _ = _unsqueeze(student, u1)
    if not torch.equal(u2, xs[0]):
        raise AssertionError("two squeezes then two unsqueezes of float64 (3, 1, 8, 8): the round trip fails")
    for name, bad in [("squeeze", torch.zeros(2, 1, 3, 4)), ("squeeze", torch.zeros(2, 1, 4, 5)),
                      ("squeeze", torch.zeros(4, 8)), ("unsqueeze", torch.zeros(2, 6, 2, 2)),
                      ("unsqueeze", torch.zeros(8, 2, 2))]:
        student.raises(ValueError, name, bad)


def test_squeeze_layout(student, seed):
    # the visible case: the labelled 4x4 example
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    expected = torch.tensor([[[0, 2], [8, 10]], [[1, 3], [9, 11]], [[4, 6], [12, 14]], [[5, 7], [13, 15]]],
                            dtype=F32)
    got, what = _squeeze(student, x)
    if not torch.equal(got[0], expected):
        raise AssertionError(f"squeeze of the labelled 4x4 array should be {expected.tolist()}, got {got[0].tolist()}")

    gen = generator(seed, 707)
    x = torch.randn(2, 3, 6, 4, generator=gen, dtype=F64)
    zr = torch.randn(2, 8, 3, 2, generator=gen, dtype=F64)
    ref_fwd, _ = Squeeze()(x)
    ref_inv, _ = Squeeze().inverse(zr)
    got_fwd, what = _squeeze(student, x)
    if not torch.equal(got_fwd, ref_fwd):
        raise AssertionError(f"{what} does not follow flowlib's layout (channel 4c + 2di + dj holds pixel (2i + di, 2j + dj))")
    got_inv, what = _unsqueeze(student, zr)
    if not torch.equal(got_inv, ref_inv):
        raise AssertionError(f"{what} does not follow flowlib's layout (channel 4c + 2di + dj holds pixel (2i + di, 2j + dj))")


# ------------------------------------------------------------------------- Exercise 5
def _transform(student, T, name):
    """A bijection of the grader's, called by the student's code as ``h, ladj = T(h)``."""
    return student.function(_no_grad(T), name=name)


class _Double(nn.Module):
    """The visible test's transform: h = 2 h, log|det| = n log 2 for n entries."""

    def forward(self, h):
        return 2 * h, torch.full((h.shape[0],), h[0].numel() * math.log(2.0), dtype=h.dtype)


class _Same(nn.Module):
    def forward(self, h):
        return h, torch.zeros(h.shape[0], dtype=h.dtype)


def _noisy(layer):
    nn.init.normal_(layer.conditioner.last.weight, std=0.2)
    nn.init.normal_(layer.conditioner.last.bias, std=0.2)
    return layer


def _scale_block(c, h, w):  # checkerboard coupling, squeeze, channel coupling
    return Compose(_noisy(AffineCoupling(checkerboard_mask(h, w, 0), ConvConditioner(c, 8))), Squeeze(),
                   _noisy(AffineCoupling(channel_mask(4 * c, 1), ConvConditioner(4 * c, 8))))


def test_multiscale_log_prob(student, seed):
    # the visible case: [squeeze, double] on zeros (3, 1, 2, 2), float32: -2 log(pi)
    x = torch.zeros(3, 1, 2, 2)
    what = "multiscale_log_prob(float32 zeros (3, 1, 2, 2), [Squeeze, h -> 2h])"
    lp = tensor(student.call("multiscale_log_prob", x, [_transform(student, Squeeze(), "Squeeze"),
                                                          _transform(student, _Double(), "h -> 2h")]),
                what, shape=(3,), dtype=F32)
    close(lp[:1], torch.tensor([-2 * math.log(math.pi)]), 1e-5, what + ": log p = -2 log(pi)")

    gen = generator(seed, 808)
    with _torch_seed(seed, 808):
        T1, T2 = _scale_block(1, 8, 8), _scale_block(2, 4, 4)        # (1,8,8)->(4,4,4); (2,4,4)->(8,2,2)
        T3 = Compose(_noisy(AffineCoupling(checkerboard_mask(2, 2, 1), ConvConditioner(4, 8))))   # (4,2,2)->(4,2,2)
    stack = MultiScale(T1, MultiScale(T2, Compose(T3, Flatten((4, 2, 2))), (8, 2, 2)), (4, 4, 4))
    flow = Flow(StandardNormal(64), stack).to(F64)
    x = torch.rand(5, 1, 8, 8, generator=gen, dtype=F64)
    with torch.no_grad():
        ref3 = flow.log_prob(x)
        ref1 = Flow(StandardNormal(64), Compose(T1, Flatten((4, 4, 4)))).to(F64).log_prob(x)

    what = "multiscale_log_prob(float64 (5, 1, 8, 8), three scales [T1, T2, T3])"
    ts = [_transform(student, T, name) for T, name in ((T1, "T1"), (T2, "T2"), (T3, "T3"))]
    got3 = tensor(student.call("multiscale_log_prob", x, ts), what, shape=(5,), dtype=F64)
    close(got3, ref3, 1e-8, what + " (count every factored-out part, the last output and every log-det; "
                                   "the FIRST half of the channels is factored out)")
    what = "multiscale_log_prob(float64 (5, 1, 8, 8), a single transform [T1], no split)"
    got1 = tensor(student.call("multiscale_log_prob", x, [_transform(student, T1, "T1")]), what, shape=(5,), dtype=F64)
    close(got1, ref1, 1e-8, what)

    T32 = [copy.deepcopy(T).to(F32) for T in (T1, T2, T3)]
    what = "multiscale_log_prob(float32 (5, 1, 8, 8), three float32 scales [T1, T2, T3])"
    got32 = tensor(student.call("multiscale_log_prob", x.float(),
                                [_transform(student, T, f"T{i + 1}") for i, T in enumerate(T32)]),
                   what, shape=(5,), dtype=F32)
    close(got32, ref3, 1e-3, what)

    student.raises(ValueError, "multiscale_log_prob", x, [])
    # a 1-channel output cannot be split in half
    same = [_transform(student, _Same(), "h -> h"), _transform(student, _Same(), "h -> h")]
    student.raises(ValueError, "multiscale_log_prob", x, same)


# ------------------------------------------------------------------------- Exercise 6
def _sas_params(v, mask, net):
    b = mask.to(v)
    t, s = net(b * v).chunk(2, dim=1)
    return b, t, s


def _log_cosh(u):  # |u| + log(1 + e^{-2|u|}) - log 2, finite where cosh overflows
    return u.abs() + torch.log1p(torch.exp(-2 * u.abs())) - math.log(2.0)


def _sas_oracle(x, mask, net):
    """The sinh-arcsinh coupling and its log-determinant, derived here: on a transformed entry
    z = sinh(u), u = e^s asinh(x) - t, dz/dx = cosh(u) e^s / sqrt(1 + x^2); the Jacobian is
    triangular after reordering (t, s read kept entries only), so ladj sums the logs."""
    b, t, s = _sas_params(x, mask, net)
    u = torch.exp(s) * torch.asinh(x) - t
    z = b * x + (1 - b) * torch.sinh(u)
    return z, ((1 - b) * (s + _log_cosh(u) - 0.5 * torch.log1p(x**2))).sum(dim=1)


def _sas_inverse_oracle(z, mask, net):
    """x = sinh(v), v = (asinh(z) + t) e^{-s} (solving z = sinh(e^s asinh(x) - t) for x);
    dx/dz = cosh(v) e^{-s} / sqrt(1 + z^2)."""
    b, t, s = _sas_params(z, mask, net)
    v = (torch.asinh(z) + t) * torch.exp(-s)
    x = b * z + (1 - b) * torch.sinh(v)
    return x, ((1 - b) * (-s + _log_cosh(v) - 0.5 * torch.log1p(z**2))).sum(dim=1)


def _slogdet_of(fn, x):
    """log|det| of the autograd Jacobian of fn's first output at each row of x."""
    J = torch.stack([torch.autograd.functional.jacobian(lambda v: fn(v[None])[0][0], xi) for xi in x])
    return torch.linalg.slogdet(J)[1]


def _sas_net(seed, salt, D, hidden=(16,), out=None, std=0.3):
    with _torch_seed(seed, salt):
        net = MLPConditioner(D, hidden, 2 * D if out is None else out)
        nn.init.normal_(net.last.weight, std=std)
        nn.init.normal_(net.last.bias, std=std)
    return net.to(F64)


def test_sas_coupling(student, seed):
    # the visible case, both dtypes: t = 0, s = log 2, z = 2 x sqrt(1 + x^2) on the transformed entries
    class ConstantSAS(nn.Module):
        def forward(self, h):
            return torch.cat([torch.zeros_like(h), torch.full_like(h, math.log(2.0))], dim=1)

    x = torch.tensor([[0.5, 1.0, -2.0], [3.0, 0.0, 0.25]], dtype=F64)
    mask = torch.tensor([1.0, 0.0, 0.0])
    for dtype, tol in ((F32, 1e-4), (F64, 1e-10)):
        const = student.function(_no_grad(ConstantSAS()), name="a constant conditioner (t = 0, s = log 2)")
        what = f"sas_coupling_forward({str(dtype)[6:]} (2, 3), mask [1, 0, 0], a constant conditioner (t = 0, s = log 2))"
        z, ladj = _pair(student, what, "sas_coupling_forward", x.to(dtype), mask, const, batch_shape=(2, 3), dtype=dtype)
        z_ref, l_ref = _sas_oracle(x, mask, ConstantSAS())
        close(z, z_ref, tol, what + ": z (2 x sqrt(1 + x^2) on the transformed entries)", relative=True)
        close(ladj, l_ref, tol, what + ", ladj", relative=True)

    D = 6
    gen = generator(seed, 606)
    net = _sas_net(seed, 606, D)
    handle = _student_module(student, "flowlib.flows.coupling.MLPConditioner", (D, (16,), 2 * D), net, F64)
    xs = 1.5 * torch.randn(7, D, generator=gen, dtype=F64)
    masks = [("alternating mask (6,) parity 1", alternating_mask(D, 1)),
             ("mask [1, 1, 0, 1, 0, 0]", torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0]))]
    for label, m in masks:
        with torch.no_grad():
            z_ref, l_ref = _sas_oracle(xs, m, net)
            x_ref, li_ref = _sas_inverse_oracle(z_ref, m, net)
        close(li_ref, -l_ref, 1e-9, "grader: the inverse oracle is inconsistent", relative=True)
        close(x_ref, xs, 1e-9, "grader: the inverse oracle does not round-trip", relative=True)
        what = f"sas_coupling_forward(float64 (7, 6), {label}, an MLP conditioner)"
        z, ladj = _pair(student, what, "sas_coupling_forward", xs, m, handle, batch_shape=xs.shape, dtype=F64)
        close(z, z_ref, 1e-9, what + ", z", relative=True)
        keep = m.to(F64).expand_as(xs) == 1
        if not torch.equal(z[keep], xs[keep]):
            raise AssertionError(f"{what}: entries with mask 1 must pass through exactly")
        close(ladj, _slogdet_of(lambda v: _sas_oracle(v, m, net), xs), 1e-9,
              what + ", ladj against slogdet of the autograd Jacobian (relative to 1 + |ladj|)", relative=True)
        what = f"sas_coupling_inverse(float64 (7, 6), {label}, an MLP conditioner)"
        xb, ladj_inv = _pair(student, what, "sas_coupling_inverse", z_ref, m, handle, batch_shape=xs.shape, dtype=F64)
        close(xb, xs, 1e-9, what + ": x back (the forward's input)", relative=True)
        close(ladj_inv, _slogdet_of(lambda v: _sas_inverse_oracle(v, m, net), z_ref), 1e-9,
              what + ", ladj against slogdet of the autograd Jacobian", relative=True)

    # the student's own autograd Jacobians and gradients, through the student-side conditioner
    m = alternating_mask(D, 1)
    for name, oracle, inp in (("sas_coupling_forward", _sas_oracle, xs[:4]),
                              ("sas_coupling_inverse", _sas_inverse_oracle, _sas_oracle(xs[:4], m, net)[0].detach())):
        what = f"{name}(float64 (4, 6), alternating mask (6,) parity 1, an MLP conditioner)"
        with torch.no_grad():
            own = _pair(student, what, name, inp, m, handle, batch_shape=inp.shape, dtype=F64)[1]
        auto, _ = _jacobian_log_det(student, name, inp, m, handle, what)
        close(own, auto, 1e-9, what + ": ladj against log|det| of the autograd Jacobian of your output", relative=True)
        inp_req = inp.clone().requires_grad_(True)
        out, l = oracle(inp_req, m, net)
        cots = [torch.randn(out.shape, generator=gen, dtype=F64), torch.randn(l.shape, generator=gen, dtype=F64)]
        ref_g, = torch.autograd.grad((out, l), inp_req, cots)
        _, grads = student.call_grad(name, (inp, m, handle), wrt=(0,), cotangents=cots)
        if grads[0] is None:
            raise AssertionError(f"{what} with autograd: no gradient with respect to the input (is t or s detached?)")
        close(tensor(grads[0], what + ": gradient", shape=inp.shape), ref_g, 1e-9,
              what + ": the gradient of <cotangents, (output, ladj)> with respect to the input, against the oracle's "
              "autograd, relative to 1 + |entry|", relative=True)

    # extremes: transformed entries at 0, +-1e-8, +-3 and +-1e6 (the kept entries moderate)
    ext = torch.tensor([[0.3, 0.0, -0.2, 1e6, 0.5, -1e6], [-0.4, 1e-8, 0.1, -1e-8, -0.7, 3.0],
                        [1.0, -3.0, -1.0, 0.0, 0.2, 1e3]], dtype=F64)
    m = alternating_mask(D, 0)
    if not torch.equal(m, torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])):
        raise AssertionError("grader: alternating_mask(6, 0) changed")
    with torch.no_grad():
        z_ref, l_ref = _sas_oracle(ext, m, net)
    what = "sas_coupling_forward(float64 (3, 6) with transformed entries 0, +-1e-8, +-3, 1e3, +-1e6, an MLP conditioner)"
    z, ladj = _pair(student, what, "sas_coupling_forward", ext, m, handle, batch_shape=ext.shape, dtype=F64)
    finite(z, what + ", z")
    close(z, z_ref, 1e-9, what + ", z", relative=True)
    close(ladj, l_ref, 1e-9, what + ", ladj", relative=True)
    what = "sas_coupling_inverse(float64 (3, 6), of that z)"
    xb, ladj_inv = _pair(student, what, "sas_coupling_inverse", z_ref, m, handle, batch_shape=ext.shape, dtype=F64)
    close(xb, ext, 1e-9, what + ": x back", relative=True)
    close(ladj_inv, -l_ref, 1e-9, what + ": ladj = -ladj of the forward", relative=True)

    # float32
    net32 = copy.deepcopy(net).to(F32)
    h32 = _student_module(student, "flowlib.flows.coupling.MLPConditioner", (D, (16,), 2 * D), net32, F32)
    with torch.no_grad():
        z_ref, l_ref = _sas_oracle(xs, masks[0][1], net)
    what = "sas_coupling_forward(float32 (7, 6), alternating mask (6,) parity 1, a float32 MLP conditioner)"
    z, ladj = _pair(student, what, "sas_coupling_forward", xs.float(), masks[0][1], h32, batch_shape=xs.shape, dtype=F32)
    close(z, z_ref, 1e-4, what + ", z", relative=True)
    close(ladj, l_ref, 1e-4, what + ", ladj", relative=True)

    # the raises clauses of the spec
    wrong = _student_module(student, "flowlib.flows.coupling.MLPConditioner", (D, (8,), D), _sas_net(seed, 607, D, (8,), out=D), F64)
    for name in ("sas_coupling_forward", "sas_coupling_inverse"):
        for label, args in ((f"x float64 of shape (6,)", (xs[0], m, handle)),
                            ("a conditioner returning (7, 6) instead of (7, 12)", (xs, m, wrong))):
            try:
                student.raises(ValueError, name, *args)
            except AssertionError as exc:
                text = str(exc)
                raise AssertionError(f"{name} with {label}" + (text[text.find(" must raise "):] if " must raise " in text else f": {text}")) from None


# ------------------------------------------------------------------------- Exercise 7
def test_fit_realnvp(student, seed):
    # threshold: bench/outcome-margins.md (nb04_fit_realnvp_moons)
    from flowlib.data import two_moons

    gen = generator(seed, 707)
    x_train = two_moons(2000, noise=0.1, generator=gen, dtype=F32)
    x_test = two_moons(5000, noise=0.1, generator=gen, dtype=F32)  # held out: never leaves the grader
    student.seed(seed)
    what = "fit_realnvp(float32 (2000, 2) from two moons, noise 0.1)"
    model = student.call("fit_realnvp", x_train)
    log_q = trained_density_2d(student, model, x_test, what)
    nll = -log_q.double().mean().item()
    if not nll < 1.45:
        raise AssertionError(f"{what}: the NLL of 5000 held-out points is {nll:.3f} nats, needs < 1.45")


# ------------------------------------------------------------------------- Exercise 8
def test_same_mask_excess(student, seed):
    # derived here: q's x1-marginal is N(0, 1) exactly, and KL(p || q) = KL(p(x1) || q(x1)) +
    # E KL(p(x2 | x1) || q(x2 | x1)) >= KL(N(2, 0.5^2) || N(0, 1)) = log(1 / 0.5) + (0.5^2 + 2^2) / 2 - 1/2
    want = math.log(1 / 0.5) + (0.25 + 4.0) / 2 - 0.5
    got = student.value("SAME_MASK_EXCESS_NLL")
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        raise AssertionError(f"SAME_MASK_EXCESS_NLL must be a Python float, got {type(got).__name__}")
    if not abs(got - want) <= 1e-6:
        raise AssertionError(f"SAME_MASK_EXCESS_NLL is off by {abs(got - want):.2e} nats (tolerance 1e-6)")
