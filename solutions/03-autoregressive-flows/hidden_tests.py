"""Hidden tests of assignment 03, run by the grader (autograder/verdicts.py), never by students.

One function per graded test cell, named by the cell's grade_id, called as ``fn(student, seed)``:
``student`` calls the student's functions in the student's own process (autograder/probe),
``seed`` is the grading seed, from which every random input is drawn. Expected answers are
computed here, in the grader's process, with the real flowlib (``MADE``, ``MAFLayer``,
``IAF``, ``check_autoregressive``) on layers whose random weights are drawn from the seed.
Conditioners are grader functions: the student's code calls them, they are evaluated here,
and the grader counts the calls. The functions whose Jacobian ``is_lower_triangular``
inspects must be differentiable in the student's process: they are plain-torch helpers
defined there (``_define``) from weights chosen here. A function passes when it returns; any
exception fails the cell with its message, which the student sees in the feedback. The
visible tests of the notebook are repeated here: points come only from these functions.
"""
from __future__ import annotations

import math

import torch

import flowlib
from flowlib import StandardNormal
from flowlib.flows.autoregressive import IAF, MADE, MAFLayer, MaskedLinear
from flowlib.testing import check_autoregressive
from probe.checks import trained_density_2d, close, finite, generator, sequence, tensor

F64, F32 = torch.float64, torch.float32

#: flowlib references replaced by stubs that raise in the student's process
STUB = [
    "flowlib.flows.autoregressive.MADE", "flowlib.flows.autoregressive.MaskedLinear", "flowlib.flows.autoregressive.resolve_order",
    "flowlib.flows.autoregressive.MAFLayer", "flowlib.flows.autoregressive.IAF", "flowlib.core.Flow", "flowlib.core.Inverse",
    "flowlib.testing.check_autoregressive", "flowlib.testing.jacobian_log_det",
]

#: time limit per test cell in seconds (default: FLOWLIB_CELL_TIMEOUT, 120)
TIMEOUTS: dict[str, float] = {}

#: graded cells that check a result the student derived by hand (a number or a formula)
DERIVATIONS = ["test_banana_moments"]

#: the solution cells each slow (training) test runs: tests/run_mutants.py skips it for a mutant of
#: any other cell (grading always runs every test)
USES: dict[str, list[str]] = {"test_fit_maf": ["made_masks", "maf_log_prob", "fit_maf"]}


def _define(student, source: str) -> None:
    """Define the grader's helper functions (plain torch, names starting with ``_grader_``) in
    the student's process, where the student's code must differentiate them or receive a
    CPU tensor. They only shape the inputs the student's functions receive; every answer is
    still judged here."""
    student.define(source)


_HELPERS = '''
def _grader_made_masks_tensor_order(order, hidden_sizes):
    """made_masks with order given as a CPU torch tensor of ints."""
    return made_masks(torch.tensor(order), hidden_sizes)


def _grader_linear(W):
    return lambda v: v @ W.T


def _grader_scaled(c):
    return lambda v: c * v


def _grader_made_map(weights, biases, kind, flip=False):
    """A MADE (masked weights given, ReLU) as a plain function: its mean or log-scale outputs,
    or the MAF layer z = (x - mu) exp(-alpha) with alpha = 3 tanh(. / 3); flip reads and
    returns the variables in reverse order."""
    def f(v):
        if flip:
            v = v.flip(1)
        h = v
        for W, b in zip(weights[:-1], biases[:-1]):
            h = torch.relu(h @ W.T + b)
        p = (h @ weights[-1].T + biases[-1]).reshape(v.shape[0], v.shape[1], 2)
        if kind == "mean":
            out = p[..., 0]
        elif kind == "log_scale":
            out = p[..., 1]
        elif kind == "conditioner":  # (mu, alpha), as made_conditioner of a MAF layer's MADE
            return p[..., 0], 3.0 * torch.tanh(p[..., 1] / 3.0)
        else:
            out = (v - p[..., 0]) * torch.exp(-3.0 * torch.tanh(p[..., 1] / 3.0))
        return out.flip(1) if flip else out
    return f


def _grader_with_conditioner(name, x, n_layers, *weights_and_biases):
    """The student's name(x, conditioner) with a MADE conditioner built here from the given
    weights and biases, so that autograd reaches x and every weight."""
    cond = _grader_made_map(list(weights_and_biases[:n_layers]), list(weights_and_biases[n_layers:]), "conditioner")
    return globals()[name](x, cond)


def _grader_relu_gate():
    def relu_gate(v):  # output 0 reads input 1 only where x_1 > 0
        out = v.clone()
        out[:, 0] = v[:, 0] + torch.relu(v[:, 1])
        return out
    return relu_gate
'''


def _layer(cls, D, seed, salt, order=None, hidden=(16, 16)):
    """A MAFLayer or IAF with flowlib's initialisation under a seed moved by the grading seed,
    every parameter then perturbed (the fresh layer is the identity); float64."""
    gen = generator(seed, salt)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1_000_003 * int(seed) + salt)
        layer = cls(D, hidden, order=order)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen))
    return layer.to(F64)


def _conditioner(student, params, D, name, dtype=F64, max_calls=1000):
    """A conditioner as a grader function: ``params(v) -> (mu, alpha)`` evaluated here, in
    float64, on the batches the student's code sends; ``dtype`` is the dtype it takes and returns."""

    def checked(v):
        if not isinstance(v, torch.Tensor) or v.dtype != dtype or v.dim() != 2 or v.shape[1] != D:
            got = f"{str(v.dtype).replace('torch.', '')} {tuple(v.shape)}" if isinstance(v, torch.Tensor) else type(v).__name__
            raise TypeError(f"the conditioner takes a {str(dtype).replace('torch.', '')} batch of shape (batch, {D}), got {got}")
        with torch.no_grad():
            mu, alpha = params(v.to(F64))
        return mu.to(dtype), alpha.to(dtype)

    return student.function(checked, max_calls=max_calls, name=name)


def _constant(v):  # mu = 1, alpha = log 2: x = 1 + 2 z
    return torch.ones_like(v), torch.full_like(v, math.log(2.0))


def _shift(v):  # mu_k = v_{k-1} (mu_1 = 0), alpha = 0
    return torch.cat([torch.zeros_like(v[:, :1]), v[:, :-1]], dim=1), torch.zeros_like(v)


def _layers_of(made):
    return [m for m in made.hidden_net if isinstance(m, MaskedLinear)] + [made.output]


def _check_grads(student, name, layer, made, x, ref_fn, gen, what, arg="x"):
    """Gradients of the student's ``name(x, conditioner)`` (the conditioner: ``made``, built in
    the student's process) with respect to x and every weight and bias of the MADE, against the
    reference's autograd (``ref_fn(x) -> tensor or tuple``), float64, random cotangents."""
    layers = _layers_of(made)
    weights, biases = _made_weights(made)
    x_req = x.clone().requires_grad_(True)
    outs = ref_fn(x_req)
    outs = outs if isinstance(outs, tuple) else (outs,)
    cots = [torch.randn(o.shape, generator=gen, dtype=F64) for o in outs]
    params = [m.weight for m in layers] + [m.bias for m in layers]
    ref_grads = torch.autograd.grad(outs, [x_req, *params], cots)
    n = len(layers)
    args = (name, x, n, *weights, *biases)
    try:
        value, grads = student.call_grad("_grader_with_conditioner", args, wrt=tuple([1] + list(range(3, 3 + 2 * n))),
                                         cotangents=cots)
    except AssertionError as exc:  # say the student's call, not the helper's
        raise AssertionError(f"{what}: {exc}") from None
    # the values with this (differentiable) conditioner match the reference's too
    values = value if isinstance(value, (tuple, list)) else (value,)
    if len(values) != len(outs):
        raise AssertionError(f"{what}: expected {len(outs)} outputs, got {len(values)}")
    for i, (v, o) in enumerate(zip(values, outs)):
        close(tensor(v, f"{what}, output {i}", shape=o.shape, dtype=F64), o.detach(), 1e-8 * (1 + o.detach().abs().max().item()),
              f"{what}, output {i}")
    labels = [arg] + [f"the weight of MADE layer {i + 1}" for i in range(n)] + [f"the bias of MADE layer {i + 1}" for i in range(n)]
    masks = [None] + [m.mask for m in layers] + [None] * n
    for label, g, r, mask in zip(labels, grads, ref_grads, masks):
        if g is None:
            raise AssertionError(f"{what}: no gradient with respect to {label} (is the conditioner's output detached, "
                                 "or computed under no_grad?)")
        tensor(g, f"{what}: d/d{label}", shape=r.shape)
        if mask is not None:  # the grader's weights are passed masked: only the unmasked entries are the MADE's
            g = g * mask
        close(g, r, 1e-8 * (1 + r.abs().max().item()),
              f"{what}: gradient with respect to {label} against the reference's autograd, relative to 1 + max|grad| "
              "(is an intermediate detached?)")


# ------------------------------------------------------------------------- Exercise 1
def _reference_masks(order, hidden):
    made = MADE(len(order), tuple(hidden), order=order, n_params=1)
    return [m.mask.clone() for m in made.hidden_net if isinstance(m, MaskedLinear)] + [made.output.mask.clone()]


def _as_masks(value, what, n=None):
    if not isinstance(value, (list, tuple)):
        raise AssertionError(f"{what}: return a list of masks, got {type(value).__name__}")
    if n is not None and len(value) != n:
        raise AssertionError(f"{what}: expected {n} masks (one per hidden layer, plus the output mask), got {len(value)}")
    try:
        return [torch.as_tensor(m).detach().cpu().float() for m in value]
    except (TypeError, ValueError, RuntimeError) as exc:
        raise AssertionError(f"{what}: the masks must be tensors of 0.0 and 1.0 ({exc})") from None


def _compare_masks(got, ref, what):
    for i, (gm, rm) in enumerate(zip(got, ref)):
        if tuple(gm.shape) != tuple(rm.shape):
            raise AssertionError(f"{what}: mask {i} has shape {tuple(gm.shape)}, expected {tuple(rm.shape)}")
        if not torch.equal(gm, rm):
            raise AssertionError(f"{what}: mask {i} differs from MADE's in {int((gm != rm).sum())} entries "
                                 "(check the degrees and <= / <)")


def test_made_masks(student, seed):
    # the visible case: D = 3, natural order, one hidden layer of 2 units
    what = "made_masks([0, 1, 2], [2])"
    masks = _as_masks(student.call("made_masks", [0, 1, 2], [2]), what, 2)
    _compare_masks(masks, [torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]),
                           torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])], what)

    cases = [([0, 1, 2, 3, 4], [8, 8]), ([4, 3, 2, 1, 0], [3]), ([2, 0, 4, 1, 3], [7, 4, 9]),
             ([1, 0], [1, 5]), ([0], [3]), ([5, 2, 0, 3, 1, 4], [12])]
    gen = generator(seed, 303)
    cases.append((torch.randperm(7, generator=gen).tolist(), [10, 6]))
    for order, hidden in cases:
        ref = _reference_masks(order, hidden)
        what = f"made_masks({order}, {hidden})"
        got = student.call("made_masks", order, hidden)
        _compare_masks(_as_masks(got, what, len(ref)), ref, what)
        for i, m in enumerate(got):  # the spec: float tensors of 0.0 and 1.0 (a bool mask cannot multiply weights in place)
            if not isinstance(m, torch.Tensor) or not m.is_floating_point():
                kind = str(m.dtype).replace("torch.", "") if isinstance(m, torch.Tensor) else type(m).__name__
                raise AssertionError(f"{what}: mask {i} must be a float tensor of 0.0 and 1.0, got {kind}")

    # order as a (CPU) tensor of ints, hidden sizes as a tuple
    _define(student, _HELPERS)
    what = "made_masks(torch.tensor([2, 0, 1]), (4,))"
    ref = _reference_masks([2, 0, 1], [4])
    try:
        got = _as_masks(student.call("_grader_made_masks_tensor_order", [2, 0, 1], (4,)), what, len(ref))
    except AssertionError as exc:
        raise AssertionError(f"{what}: {exc}") from None
    _compare_masks(got[-1:], ref[-1:], what + ", the output mask")

    for bad in ([0, 0, 1], [0, 2], [1, 2, 3], []):
        student.raises(ValueError, "made_masks", bad, [4])


def test_made_masks_autoregressive(student, seed):
    # the visible case: natural order, hidden layers of at least D - 1 units: output k is
    # reachable from exactly the inputs j < k (strictly lower triangular)
    what = "made_masks([0, 1, 2, 3], [6, 6])"
    masks = _as_masks(student.call("made_masks", [0, 1, 2, 3], [6, 6]), what, 3)
    paths = _paths(masks, what, 4, [6, 6])
    expected = torch.ones(4, 4).tril(diagonal=-1).bool()
    if not torch.equal(paths > 0, expected):
        raise AssertionError(f"{what}: the connectivity (product of the masks) should be strictly lower triangular, "
                             f"got {(paths > 0).int().tolist()}")

    gen = generator(seed, 313)
    for D, hidden in [(5, [8, 8]), (6, [5, 11, 7]), (3, [2]), (7, [6])]:
        order = torch.randperm(D, generator=gen).tolist()
        what = f"made_masks({order}, {hidden})"
        ms = _as_masks(student.call("made_masks", order, hidden), what, len(hidden) + 1)
        pos = torch.empty(D, dtype=torch.long)
        pos[torch.tensor(order)] = torch.arange(D)
        allowed = pos[None, :] < pos[:, None]
        paths = _paths(ms, what, D, hidden)
        bad = (paths > 0) & ~allowed
        if bad.any():
            k, j = (int(i) for i in bad.nonzero()[0])
            raise AssertionError(f"{what}: output {k} can see input {j}, which is not before it in the order")
        if min(hidden) >= D - 1 and not torch.equal(paths > 0, allowed):
            raise AssertionError(f"{what}: some allowed connections are missing (output k must see every input before it)")
        # a masked tanh MLP with random weights is autoregressive by autograd
        Ws = [torch.randn(m.shape, generator=gen, dtype=F64) * m.double() for m in ms]

        def mlp(v, Ws=Ws):
            for W in Ws[:-1]:
                v = torch.tanh(v @ W.T)
            return v @ Ws[-1].T

        x = torch.randn(3, D, generator=gen, dtype=F64)
        try:
            check_autoregressive(mlp, x, order=order)
        except AssertionError as exc:
            raise AssertionError(f"{what}, a tanh MLP with these masks and random weights: {exc}") from None


def _paths(masks, what, D, hidden):
    shapes = [(h, p) for h, p in zip(list(hidden) + [D], [D] + list(hidden))]
    for i, (m, s) in enumerate(zip(masks, shapes)):
        if tuple(m.shape) != s:
            raise AssertionError(f"{what}: mask {i} has shape {tuple(m.shape)}, expected {s}")
    paths = masks[0]
    for m in masks[1:]:
        paths = m @ paths
    return paths


# ------------------------------------------------------------------------- Exercise 2
def test_maf_log_prob(student, seed):
    # the visible case: a constant conditioner mu = 1, alpha = log 2 makes x = 1 + 2 z, i.e. N(1, 4 I)
    what = "maf_log_prob(float32 [[1, 1], [3, -1]], conditioner mu = 1, alpha = log 2)"
    lp = tensor(student.call("maf_log_prob", torch.tensor([[1.0, 1.0], [3.0, -1.0]]),
                             _conditioner(student, _constant, 2, "constant conditioner", F32)), what, shape=(2,), dtype=F32)
    close(lp, torch.tensor([-3.2241714, -4.2241714], dtype=F64), 1e-5, what + ": log p = [-3.2241714, -4.2241714]")

    gen = generator(seed, 404)
    for D, salt in [(5, 1), (2, 2), (1, 3), (8, 4)]:
        layer = _layer(MAFLayer, D, seed, salt)
        xs = 1.5 * torch.randn(64, D, generator=gen, dtype=F64)
        with torch.no_grad():
            ref = flowlib.Flow(StandardNormal(D), layer).to(F64).log_prob(xs)
        cond = _conditioner(student, layer._params, D, "a random MADE conditioner")
        what = f"maf_log_prob(float64 (64, {D}), a random MADE conditioner)"
        got = tensor(student.call("maf_log_prob", xs, cond), what, shape=(64,), dtype=F64)
        close(got, ref, 1e-9, what + " against flowlib's MAF (check z, the log-det and its sign)")
        if len(cond.calls) != 1:
            raise AssertionError(f"{what}: the conditioner was called {len(cond.calls)} times: the density needs one pass")
        if D == 5:
            case5 = (layer, xs, ref)

    layer, xs, ref = case5
    _define(student, _HELPERS)
    _check_grads(student, "maf_log_prob", layer, layer.made, xs,
                 lambda x: flowlib.Flow(StandardNormal(5), layer).to(F64).log_prob(x), gen,
                 "maf_log_prob(float64 (64, 5), a random MADE conditioner) with autograd")

    what = "maf_log_prob(float32 (64, 5), a random MADE conditioner taking and returning float32)"
    got32 = tensor(student.call("maf_log_prob", xs.float(), _conditioner(student, layer._params, 5, "a float32 conditioner", F32)),
                   what, shape=(64,), dtype=F32)
    # relative: with random weights log p reaches |1e4| on some grading seeds, where float32 keeps ~7 digits
    close(got32, ref, 1e-5, what + " against the float64 reference, relative to 1 + |log p|", relative=True)


# ------------------------------------------------------------------------- Exercise 3
def test_maf_sample(student, seed):
    # the visible cases: mu_k = x_{k-1}, alpha = 0 gives x = cumsum(z) and log|det| = 0;
    # a constant conditioner mu = 1, alpha = log 2 gives x = 1 + 2 z and log|det| = D log 2
    what = "maf_sample(float32 ones (2, 3), conditioner mu_k = x_{k-1}, alpha = 0)"
    x, ladj = sequence(student.call("maf_sample", torch.ones(2, 3), _conditioner(student, _shift, 3, "shift", F32)), 2, what)
    tensor(x, what + ", x", shape=(2, 3), dtype=F32)
    tensor(ladj, what + ", ladj", shape=(2,), dtype=F32)
    close(x, torch.tensor([[1.0, 2.0, 3.0]] * 2, dtype=F64), 1e-5, what + ": x = cumsum(z) = [1, 2, 3]")
    close(ladj, torch.zeros(2, dtype=F64), 0.0, what + ": log|det dx/dz| = 0")
    what = "maf_sample(float32 zeros (1, 2), conditioner mu = 1, alpha = log 2)"
    x, ladj = sequence(student.call("maf_sample", torch.zeros(1, 2), _conditioner(student, _constant, 2, "constant", F32)), 2, what)
    close(tensor(x, what + ", x", shape=(1, 2), dtype=F32), torch.ones(1, 2, dtype=F64), 1e-5, what + ": x = 1")
    close(tensor(ladj, what + ", ladj", shape=(1,), dtype=F32), torch.tensor([2 * math.log(2.0)], dtype=F64), 1e-6,
          what + ": log|det dx/dz| = 2 log 2")

    gen = generator(seed, 505)
    for D, salt in [(5, 11), (2, 12), (1, 13), (7, 14)]:
        layer = _layer(MAFLayer, D, seed, salt)
        zs = torch.randn(32, D, generator=gen, dtype=F64)
        with torch.no_grad():
            x_ref, ladj_ref = layer.inverse(zs)
        cond = _conditioner(student, layer._params, D, "a random MADE conditioner")
        what = f"maf_sample(float64 (32, {D}), a random MADE conditioner)"
        x, ladj = sequence(student.call("maf_sample", zs, cond), 2, what)
        tensor(x, what + ", x", shape=zs.shape, dtype=F64)
        tensor(ladj, what + ", ladj", shape=(32,), dtype=F64)
        close(x, x_ref, 1e-8, what + ", x against flowlib's MAF inverse (one pass is not enough)")
        # round trip through the density direction: (x - mu(x)) exp(-alpha(x)) = z
        with torch.no_grad():
            mu, alpha = layer._params(x)
        close((x - mu) * torch.exp(-alpha), zs, 1e-8, what + ": the density direction (x - mu(x)) exp(-alpha(x)) does not give back z")
        close(ladj, ladj_ref, 1e-8, what + ", log|det dx/dz| (it is +sum alpha, from a pass with exact x_<k)")
        if len(cond.calls) > D + 1:
            raise AssertionError(f"{what}: {len(cond.calls)} conditioner calls for D = {D}: use D passes")
        if D == 5:
            case5 = (layer, zs)

    # x and log|det dx/dz| are differentiable in z and in the conditioner's weights (every pass)
    layer, zs = case5
    _define(student, _HELPERS)
    _check_grads(student, "maf_sample", layer, layer.made, zs, layer.inverse, gen,
                 "maf_sample(float64 (32, 5), a random MADE conditioner) with autograd", arg="z")


# ------------------------------------------------------------------------- Exercise 4
def test_iaf_sample(student, seed):
    # the visible case: mu_k = z_{k-1}, alpha = 0 gives x_k = z_k - z_{k-1}, log q = log N(z)
    shift = _conditioner(student, _shift, 3, "shift", F32)
    what = "iaf_sample(float32 [[1, 2, 3]], conditioner mu_k = z_{k-1}, alpha = 0)"
    x, log_q = sequence(student.call("iaf_sample", torch.tensor([[1.0, 2.0, 3.0]]), shift), 2, what)
    close(tensor(x, what + ", x", shape=(1, 3), dtype=F32), torch.ones(1, 3, dtype=F64), 1e-5, what + ": x = [1, 1, 1]")
    close(tensor(log_q, what + ", log_q", shape=(1,), dtype=F32), torch.tensor([-9.7568156], dtype=F64), 1e-5,
          what + ": log q = log N(z) = -9.7568156")
    if len(shift.calls) != 1:
        raise AssertionError(f"{what}: the conditioner was called {len(shift.calls)} times: IAF sampling is one pass")

    gen = generator(seed, 606)
    for D, salt in [(5, 21), (2, 22), (1, 23), (6, 24)]:
        layer = _layer(IAF, D, seed, salt)
        zs = torch.randn(32, D, generator=gen, dtype=F64)
        with torch.no_grad():
            x_ref, ladj = layer.inverse(zs)  # noise -> data, one pass
            log_q_ref = StandardNormal(D).to(F64).log_prob(zs) - ladj
            log_q_slow = flowlib.Flow(StandardNormal(D), layer).to(F64).log_prob(x_ref)  # D passes
        assert (log_q_slow - log_q_ref).abs().max().item() < 1e-8, "grader: the IAF reference is inconsistent"
        cond = _conditioner(student, layer.bijection._params, D, "a random MADE conditioner")
        what = f"iaf_sample(float64 (32, {D}), a random MADE conditioner)"
        x, log_q = sequence(student.call("iaf_sample", zs, cond), 2, what)
        tensor(x, what + ", x", shape=zs.shape, dtype=F64)
        tensor(log_q, what + ", log_q", shape=(32,), dtype=F64)
        close(x, x_ref, 1e-9, what + ", x against flowlib's IAF (the conditioner reads z, not x)")
        close(log_q, log_q_ref, 1e-9, what + ", log q (log N(z) minus log|det dx/dz|)")
        if len(cond.calls) != 1:
            raise AssertionError(f"{what}: the conditioner was called {len(cond.calls)} times: IAF sampling is one pass")
        if D == 5:
            case5 = (layer, zs, log_q_ref)

    layer, zs, log_q_ref = case5
    _define(student, _HELPERS)

    def reference(z):
        x, ladj = layer.inverse(z)
        return x, StandardNormal(5).to(F64).log_prob(z) - ladj

    _check_grads(student, "iaf_sample", layer, layer.bijection.made, zs, reference, gen,
                 "iaf_sample(float64 (32, 5), a random MADE conditioner) with autograd", arg="z")

    what = "iaf_sample(float32 (32, 5), a random MADE conditioner taking and returning float32)"
    x32, log_q32 = sequence(student.call("iaf_sample", zs.float(),
                                         _conditioner(student, layer.bijection._params, 5, "a float32 conditioner", F32)), 2, what)
    tensor(x32, what + ", x", dtype=F32)
    tensor(log_q32, what + ", log_q", shape=(32,), dtype=F32)
    close(log_q32, log_q_ref, 1e-3, what + ", log q against the float64 reference")


# ------------------------------------------------------------------------- Exercise 5
def _made_weights(made):
    """The masked weights and biases of a flowlib MADE, in order (hidden layers, then output)."""
    layers = [m for m in made.hidden_net if isinstance(m, MaskedLinear)] + [made.output]
    with torch.no_grad():
        return [(m.weight * m.mask).detach().clone() for m in layers], [m.bias.detach().clone() for m in layers]


def test_is_lower_triangular(student, seed):
    _define(student, _HELPERS)

    def lower(fn, x, what, **kwargs):
        try:
            got = student.call("is_lower_triangular", fn, x, **kwargs)
        except AssertionError as exc:  # the message names the case, not the handle of the function
            raise AssertionError(f"{what}: {exc}") from None
        if not isinstance(got, bool):
            raise AssertionError(f"{what}: return a Python bool, got {type(got).__name__}")
        return got

    # the visible cases: linear maps x -> x W^T, whose Jacobian is W
    W = torch.tensor([[1.0, 0.0, 0.0], [2.0, 3.0, 0.0], [4.0, 5.0, 6.0]])
    x = torch.randn(2, 3, generator=generator(seed, 700))
    visible = [("a lower-triangular W", student.call("_grader_linear", W), {}, True),
               ("a lower-triangular W with a non-zero diagonal, strict=True", student.call("_grader_linear", W),
                {"strict": True}, False),
               ("W^T, upper triangular", student.call("_grader_linear", W.T.contiguous()), {}, False)]
    for label, fn, kwargs, want in visible:
        what = f"is_lower_triangular(x -> x W^T for {label}, float32 (2, 3))"
        got = lower(fn, x, what, **kwargs)
        if got is not want:
            raise AssertionError(f"{what}: expected {want}, got {got}")

    gen = generator(seed, 707)
    x5 = torch.randn(4, 5, generator=gen, dtype=F64)
    Wl = torch.randn(5, 5, generator=gen, dtype=F64).tril(-1)
    W_up = Wl.clone()
    W_up[1, 3] = 0.25
    W_tiny = Wl.clone()
    W_tiny[0, 4] = 1e-13
    maf_nat, maf_rev = _layer(MAFLayer, 5, seed, 1), _layer(MAFLayer, 5, seed, 2, order="reversed")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1_000_003 * int(seed) + 3)
        made = MADE(5, (16, 16), n_params=2).to(F64)
    nat_w, nat_b = _made_weights(maf_nat.made)
    rev_w, rev_b = _made_weights(maf_rev.made)
    made_w, made_b = _made_weights(made)
    x_gate = torch.tensor([[0.3, -1.0, 0.2], [0.1, -0.5, 0.4], [-0.2, 0.7, 1.0]], dtype=F64)

    cases = [
        ("x -> x W^T with W strictly lower triangular, strict=True", ("_grader_linear", Wl), x5, {"strict": True}, True),
        ("x -> x W^T with one entry of W above the diagonal", ("_grader_linear", W_up), x5, {}, False),
        ("x -> x W^T with an entry 1e-13 above the diagonal (below atol)", ("_grader_linear", W_tiny), x5, {}, True),
        ("x -> 2 x, strict=True", ("_grader_scaled", 2.0), x5, {"strict": True}, False),
        ("x -> 2 x", ("_grader_scaled", 2.0), x5, {}, True),
        ("a MAF layer, natural order", ("_grader_made_map", nat_w, nat_b, "maf"), x5, {}, True),
        ("a MAF layer, reversed order", ("_grader_made_map", rev_w, rev_b, "maf"), x5, {}, False),
        ("a MAF layer, reversed order, read reversed", ("_grader_made_map", rev_w, rev_b, "maf", True), x5, {}, True),
        ("a MADE's means, strict=True", ("_grader_made_map", made_w, made_b, "mean"), x5, {"strict": True}, True),
        ("a MADE's log-scales, strict=True", ("_grader_made_map", made_w, made_b, "log_scale"), x5, {"strict": True}, True),
        ("a relu gate, x_1 < 0 at the first rows only", ("_grader_relu_gate",), x_gate, {}, False),
        ("a relu gate, x_1 < 0 everywhere", ("_grader_relu_gate",), x_gate[:2], {}, True),
        ("x -> x W^T in float32 with W strictly lower triangular, strict=True", ("_grader_linear", Wl.float()), x5.float(),
         {"strict": True}, True),
    ]
    for label, (maker, *margs), xs, kwargs, want in cases:
        fn = student.call(maker, *margs)
        what = f"is_lower_triangular({label}, x {str(xs.dtype).replace('torch.', '')} {tuple(xs.shape)})"
        got = lower(fn, xs, what, **kwargs)
        if got is not want:
            raise AssertionError(f"{what}: expected {want}, got {got}")

    identity = student.call("_grader_scaled", 1.0)
    for bad in (torch.zeros(5, dtype=F64), torch.zeros(2, 3, 1, dtype=F64), torch.zeros((), dtype=F64)):
        what = f"is_lower_triangular(x -> x, float64 {tuple(bad.shape)})"
        try:
            student.raises(ValueError, "is_lower_triangular", identity, bad)
        except AssertionError as exc:
            text = str(exc)
            raise AssertionError(what + text[text.find(" must raise "):] if " must raise " in text else f"{what}: {text}") from None


# ------------------------------------------------------------------------- Exercise 6
def _gaussian_oracle(mean, cov):
    """(B, c, alpha) derived here: with cov = L L^T, z = L^{-1} (x - mean), so
    z_k = (x_k - mean_k) / L_kk + sum_{j<k} (L^{-1})_kj (x_j - mean_j) = (x_k - mu_k) e^{-alpha_k}
    with alpha_k = log L_kk and mu = mean + B (x - mean), B_kj = -L_kk (L^{-1})_kj for j < k."""
    L = torch.linalg.cholesky(cov)
    d = torch.diagonal(L)
    L_inv = torch.linalg.solve_triangular(L, torch.eye(len(mean), dtype=cov.dtype), upper=False)
    B = -(d[:, None] * L_inv).tril(diagonal=-1)
    return B, mean - B @ mean, torch.log(d)


def _linear_maf_log_prob(x, B, c, alpha):
    z = (x - c - x @ B.T) * torch.exp(-alpha)
    return -0.5 * (z**2).sum(1) - 0.5 * x.shape[1] * math.log(2 * math.pi) - alpha.sum()


def _random_cov(D, gen, dtype=F64):
    A = torch.randn(D, D, generator=gen, dtype=F64)
    cov = A @ A.T / D + 0.2 * torch.eye(D, dtype=F64)
    return ((cov + cov.T) / 2).to(dtype)


def _gaussian_case(student, mean, cov, what, tol):
    """The student's (B, c, alpha) against the oracle (relative to 1 + |entry|) and the layer's
    log-density against torch.distributions' N(mean, cov) at random points."""
    D, dtype = len(mean), mean.dtype
    out = sequence(student.call("gaussian_maf_params", mean, cov), 3, what + ": return (B, c, alpha)")
    B, c, alpha = (tensor(t, f"{what}, {n}", shape=s, dtype=dtype)
                   for t, n, s in zip(out, ("B", "c", "alpha"), ((D, D), (D,), (D,))))
    if (B.triu() != 0).any():
        raise AssertionError(f"{what}: B must be strictly lower triangular (zeros on and above the diagonal), got {B.tolist()}")
    ref = _gaussian_oracle(mean.to(F64), cov.to(F64))
    for name, got, want in zip(("B", "c", "alpha"), (B, c, alpha), ref):
        close(got, want, tol, f"{what}, {name} against the conditional-Gaussian answer, relative to 1 + |entry|", relative=True)
    x = mean.to(F64) + torch.randn(20, D, generator=torch.Generator().manual_seed(D), dtype=F64) @ torch.linalg.cholesky(cov.to(F64)).T
    want = torch.distributions.MultivariateNormal(mean.to(F64), cov.to(F64)).log_prob(x)
    close(_linear_maf_log_prob(x, B.to(F64), c.to(F64), alpha.to(F64)), want, tol * (10 + want.abs().max().item()),
          f"{what}: the layer's log-density at 20 points against N(mean, cov)'s")


def test_gaussian_maf_params(student, seed):
    # the visible case, both dtypes
    mean = torch.tensor([1.0, -1.0, 0.5], dtype=F64)
    cov = torch.tensor([[2.0, 0.6, 0.2], [0.6, 1.0, -0.3], [0.2, -0.3, 0.5]], dtype=F64)
    _gaussian_case(student, mean.float(), cov.float(), "gaussian_maf_params(mean float32 (3,), cov float32 (3, 3))", 1e-4)
    _gaussian_case(student, mean, cov, "gaussian_maf_params(mean float64 (3,), cov float64 (3, 3))", 1e-9)

    gen = generator(seed, 610)
    for D in (1, 2, 4, 7):
        mean = 2 * torch.randn(D, generator=gen, dtype=F64)
        _gaussian_case(student, mean, _random_cov(D, gen), f"gaussian_maf_params(mean float64 ({D},), a random cov float64 ({D}, {D}))", 1e-9)
    # extremes: a diagonal covariance (B = 0), a correlation of 0.999, a float32 random case
    diag = torch.diag(torch.rand(4, generator=gen, dtype=F64) * 3 + 0.1)
    _gaussian_case(student, torch.zeros(4, dtype=F64), diag, "gaussian_maf_params(zeros float64 (4,), a diagonal cov)", 1e-12)
    s = torch.tensor([1.5, 0.5], dtype=F64)
    tight = torch.tensor([[1.0, 0.999], [0.999, 1.0]], dtype=F64) * s[:, None] * s[None, :]
    _gaussian_case(student, torch.tensor([0.3, -0.2], dtype=F64), tight,
                   "gaussian_maf_params(mean float64 (2,), cov float64 (2, 2) with correlation 0.999)", 1e-9)
    mean32 = torch.randn(5, generator=gen)
    _gaussian_case(student, mean32, _random_cov(5, gen, F32), "gaussian_maf_params(mean float32 (5,), a random cov float32 (5, 5))", 1e-4)

    # gradients: random cotangents on (B, c, alpha), backpropagated to mean and cov, against the
    # oracle's autograd (the cov gradient symmetrised: only symmetric perturbations are defined)
    D = 4
    mean, cov = torch.randn(D, generator=gen, dtype=F64), _random_cov(D, gen)
    cots = [torch.randn(D, D, generator=gen, dtype=F64).tril(-1), torch.randn(D, generator=gen, dtype=F64),
            torch.randn(D, generator=gen, dtype=F64)]
    m_req, c_req = mean.clone().requires_grad_(True), cov.clone().requires_grad_(True)
    ref_gm, ref_gc = torch.autograd.grad(_gaussian_oracle(m_req, c_req), [m_req, c_req], cots)
    what = f"gaussian_maf_params(mean float64 ({D},), cov float64 ({D}, {D})) with autograd"
    _, grads = student.call_grad("gaussian_maf_params", (mean, cov), wrt=(0, 1), cotangents=cots)
    for label, g, r in (("mean", grads[0], ref_gm), ("cov", grads[1], ref_gc)):
        if g is None:
            raise AssertionError(f"{what}: no gradient with respect to {label} (is the result detached?)")
        tensor(g, f"{what}: d/d{label}", shape=r.shape)
        if label == "cov":
            g, r = (g + g.T) / 2, (r + r.T) / 2
        close(g, r, 1e-8, f"{what}: gradient with respect to {label} (symmetrised) against the oracle's autograd, "
              "relative to 1 + |entry|", relative=True)

    # the raises clauses of the spec
    good = _random_cov(3, gen)
    skew = good.clone()
    skew[0, 2] += 0.5
    indefinite = torch.diag(torch.tensor([1.0, -1.0, 2.0], dtype=F64))
    for label, args in (("mean of shape (1, 3)", (torch.zeros(1, 3, dtype=F64), good)),
                        ("cov of shape (3, 2)", (torch.zeros(3, dtype=F64), good[:, :2])),
                        ("cov of shape (4, 4) for a mean of shape (3,)", (torch.zeros(3, dtype=F64), _random_cov(4, gen))),
                        ("a cov that is not symmetric", (torch.zeros(3, dtype=F64), skew)),
                        ("a symmetric cov with an eigenvalue -1", (torch.zeros(3, dtype=F64), indefinite))):
        try:
            student.raises(ValueError, "gaussian_maf_params", *args)
        except AssertionError as exc:
            text = str(exc)
            raise AssertionError(f"gaussian_maf_params with {label}" + (text[text.find(" must raise "):] if " must raise " in text else f": {text}")) from None


# ------------------------------------------------------------------------- Exercise 7
#: KL(p || q) bound on the ring: bench/outcome-margins.md (nb03_fit_maf_ring)
RING = dict(k=8, radius=2.0, std=0.3)


def test_fit_maf(student, seed):
    from flowlib.data import ring_of_gaussians, ring_of_gaussians_log_prob

    gen = generator(seed, 808)
    x_train = ring_of_gaussians(2000, generator=gen, **RING)
    x_test = ring_of_gaussians(5000, generator=gen, **RING)  # held out: never leaves the grader
    student.seed(seed)
    what = "fit_maf(float32 (2000, 2) from the ring of eight Gaussians, std 0.3)"
    model = student.call("fit_maf", x_train)
    log_q = trained_density_2d(student, model, x_test, what)
    kl = (ring_of_gaussians_log_prob(x_test.double(), **RING) - log_q.double()).mean().item()
    if not kl < 0.6:
        raise AssertionError(f"{what}: KL(p || q) on 5000 held-out points is {kl:.3f} nats, needs < 0.6")


# ------------------------------------------------------------------------- Exercise 8
def test_banana_moments(student, seed):
    # derived here: x2 = z1^2 + e^{z1/2} z2, so E[x2] = E[z1^2] = 1 and, by the law of total
    # variance, Var[x2] = Var(z1^2) + E[e^{z1}] = (3 - 1) + e^{1/2} (E[z^4] = 3, E[e^z] = e^{1/2})
    want = (1.0, 2.0 + math.exp(0.5))
    got = student.value("BANANA_MOMENTS")
    if not isinstance(got, (tuple, list)) or len(got) != 2 or not all(isinstance(v, (int, float)) for v in got):
        raise AssertionError(f"BANANA_MOMENTS must be a tuple of two floats (mean, variance), got {got!r}"[:300])
    for name, g, w in zip(("mean", "variance"), got, want):
        if not abs(g - w) <= 1e-6:
            raise AssertionError(f"BANANA_MOMENTS: the {name} of x_2 is off by {abs(g - w):.2e} (tolerance 1e-6)")
