"""Numeric checks shared by pytest, the book chapters and the nbgrader tests.

Every check raises :class:`AssertionError` with a message that says what was wrong and by
how much, and returns the measured error on success so callers can report it.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
import types
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

from . import tamper

__all__ = [
    "check_round_trip",
    "check_log_det",
    "check_ladj_cancel",
    "check_bijection",
    "check_density_integrates",
    "check_device_dtype",
    "jacobian_log_det",
    "block_reference",
    "ReferenceBlockedError",
    "check_autoregressive",
]


def _max_abs(a: Tensor, b: Tensor) -> float:
    return (a.detach() - b.detach()).abs().max().item() if a.numel() else 0.0


def _check_ladj_shape(name: str, ladj: Tensor, batch: int) -> None:
    if not isinstance(ladj, Tensor) or tuple(ladj.shape) != (batch,):
        shape = tuple(ladj.shape) if isinstance(ladj, Tensor) else type(ladj).__name__
        raise AssertionError(f"{name}: log|det| must have shape (batch,) = ({batch},), got {shape}")


def check_round_trip(bijection, x: Tensor, atol: float = 1e-5, rtol: float = 1e-5) -> float:
    """``inverse(forward(x)) == x``; returns the largest absolute error."""
    with torch.no_grad():
        z, ladj = bijection(x)
        _check_ladj_shape("forward", ladj, x.shape[0])
        x_back, ladj_inv = bijection.inverse(z)
        _check_ladj_shape("inverse", ladj_inv, x.shape[0])
    if x_back.shape != x.shape:
        raise AssertionError(f"round trip changed the shape: {tuple(x.shape)} -> {tuple(x_back.shape)}")
    err = _max_abs(x_back, x)
    tol = atol + rtol * x.abs().max().item()
    if not err <= tol:
        raise AssertionError(f"round trip: max |inverse(forward(x)) - x| = {err:.3e} exceeds tolerance {tol:.3e}")
    return err


def jacobian_log_det(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """log|det J| of ``fn`` at each sample of the batch ``x``, by autograd in x's dtype.

    ``fn`` maps a batch ``(batch, *event)`` to a batch of the same event size; the Jacobian
    of one sample is taken with the event flattened, so any event shape works."""
    out = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1]

        def flat(v: Tensor, shape=xi.shape) -> Tensor:
            return fn(v.reshape(shape)).reshape(-1)

        jac = torch.autograd.functional.jacobian(flat, xi.reshape(-1))
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


def check_log_det(bijection, x: Tensor, direction: str = "forward", atol: float = 1e-6, max_samples: int = 8) -> float:
    """The bijection's ``ladj`` against ``slogdet`` of its autograd Jacobian, in float64.

    ``direction='inverse'`` checks ``inverse`` at ``x`` (treated as noise). The bijection and
    ``x`` are copied to float64 so that the reference itself is accurate."""
    import copy

    if direction not in ("forward", "inverse"):
        raise ValueError(f"direction must be 'forward' or 'inverse', got {direction!r}")
    b64 = copy.deepcopy(bijection).double()
    x64 = x[:max_samples].detach().double()
    step = b64 if direction == "forward" else b64.inverse
    with torch.no_grad():
        _, ladj = step(x64)
    _check_ladj_shape(direction, ladj, x64.shape[0])
    ref = jacobian_log_det(lambda v: step(v)[0], x64)
    err = _max_abs(ladj, ref)
    if not err <= atol * max(1.0, ref.abs().max().item()):
        raise AssertionError(
            f"{direction} log|det|: max error {err:.3e} against slogdet of the autograd Jacobian "
            f"(ladj={ladj.tolist()}, autograd={ref.tolist()})"
        )
    return err


def check_ladj_cancel(bijection, x: Tensor, atol: float = 1e-4) -> float:
    """``forward`` ladj at x plus ``inverse`` ladj at z = f(x) must be zero."""
    with torch.no_grad():
        z, l_fwd = bijection(x)
        _, l_inv = bijection.inverse(z)
    err = (l_fwd + l_inv).abs().max().item()
    scale = max(1.0, l_fwd.abs().max().item())
    if not err <= atol * scale:
        raise AssertionError(f"forward + inverse log|det| should sum to 0; largest |sum| = {err:.3e}")
    return err


def check_bijection(bijection, x: Tensor, atol: float = 1e-5) -> None:
    """The whole battery for a bijection: round trip, both log-dets against autograd, the two
    log-dets cancel, device and dtype kept."""
    check_round_trip(bijection, x, atol=atol, rtol=atol)
    check_log_det(bijection, x, "forward")
    with torch.no_grad():
        z, _ = bijection(x)
    check_log_det(bijection, z, "inverse")
    check_ladj_cancel(bijection, x, atol=max(atol, 1e-4))
    check_device_dtype(lambda v: bijection(v), x)
    check_device_dtype(lambda v: bijection.inverse(v), z)


def check_density_integrates(
    log_prob: Callable[[Tensor], Tensor],
    bounds: Sequence[tuple[float, float]],
    n: int = 2001,
    atol: float = 1e-2,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> float:
    """Integrate ``exp(log_prob)`` over a 1-D or 2-D box with the trapezoid rule and check
    the result is 1 within ``atol``; returns the integral. ``bounds`` is ``[(lo, hi)]`` or
    ``[(lo0, hi0), (lo1, hi1)]``; the box must hold essentially all the mass."""
    if len(bounds) not in (1, 2):
        raise ValueError(f"check_density_integrates handles 1-D or 2-D densities, got {len(bounds)} bounds")
    axes = [torch.linspace(lo, hi, n, dtype=dtype, device=device) for lo, hi in bounds]
    if len(axes) == 1:
        grid = axes[0][:, None]
    else:
        g0, g1 = torch.meshgrid(*axes, indexing="ij")
        grid = torch.stack([g0.reshape(-1), g1.reshape(-1)], dim=1)
    with torch.no_grad():
        dens = torch.cat([log_prob(chunk).exp() for chunk in grid.split(65536)])
    if dens.shape != (grid.shape[0],):
        raise AssertionError(f"log_prob must return one value per point, shape ({grid.shape[0]},), got {tuple(dens.shape)}")
    dens = dens.to(dtype)
    if torch.isnan(dens).any():
        raise AssertionError("log_prob returned NaN on the integration grid")
    total = dens.reshape([n] * len(axes))
    for ax in reversed(axes):
        total = torch.trapezoid(total, ax, dim=-1)
    value = total.item()
    if not abs(value - 1.0) <= atol:
        raise AssertionError(f"density integrates to {value:.6f} over {list(bounds)}, expected 1 +- {atol}")
    return value


def check_device_dtype(fn: Callable, *inputs: Tensor) -> None:
    """Every tensor ``fn(*inputs)`` returns lives on the first input's device and dtype."""
    ref = inputs[0]
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    for i, o in enumerate(outs):
        if not isinstance(o, Tensor):
            continue
        if o.device != ref.device:
            raise AssertionError(f"output {i} is on {o.device}, expected the input's device {ref.device}")
        if o.is_floating_point() and o.dtype != ref.dtype:
            raise AssertionError(f"output {i} has dtype {o.dtype}, expected the input's dtype {ref.dtype}")


class ReferenceBlockedError(RuntimeError):
    """Raised when graded code calls a flowlib reference implementation."""


_BLOCKED_MESSAGE = (
    "{name} is the course's reference implementation and is blocked while your code is graded: "
    "implement it yourself (plain torch is fine)"
)


def _resolve(target: str):
    """'flowlib.flows.onedim.mixture_cdf' -> (module or class owner, attribute name, object)."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1], getattr(owner, parts[-1])
    raise ValueError(f"block_reference: cannot resolve {target!r}")


def _blocked_code(name: str, template: types.CodeType) -> types.CodeType:
    def blocked(*args, **kwargs):
        # Runs with the blocked function's globals, so it imports what it needs itself.
        testing = __import__("flowlib.testing", fromlist=["ReferenceBlockedError"])
        name = __import__("sys")._getframe(0).f_code.co_qualname
        raise testing.ReferenceBlockedError(testing._BLOCKED_MESSAGE.format(name=name))

    return blocked.__code__.replace(co_name=template.co_name, co_qualname=name)


def _blocked_method(name: str):
    def blocked(*args, **kwargs):
        raise ReferenceBlockedError(_BLOCKED_MESSAGE.format(name=name))

    return blocked


def _block_function(fn: types.FunctionType, name: str, saved: list) -> None:
    if fn.__code__.co_freevars:
        raise ValueError(f"block_reference: {name} is a closure; block its module attribute instead")
    saved.append((fn, "__code__", fn.__code__))
    fn.__code__ = _blocked_code(name, fn.__code__)


@contextlib.contextmanager
def block_reference(*targets: str) -> Iterator[None]:
    """Make the named flowlib references unusable inside the block.

    A target is a dotted path to a function (``'flowlib.flows.onedim.mixture_cdf'``) or a class
    (``'flowlib.flows.onedim.MixtureCDF'``, which blocks all of its methods). The function's code
    object itself is swapped, so a copy the student imported earlier under another name is
    blocked too. A call raises :class:`ReferenceBlockedError` naming the reference.

    On entry and exit it also checks that nothing the tests rely on (``torch.allclose``,
    ``math.isclose``, ``torch.Tensor`` comparisons, builtins, this module) has been
    replaced, and raises :class:`flowlib.tamper.TamperingError` if it has.
    """
    caller = _user_globals()
    tamper.check(caller)  # before: the student's code has run in earlier cells
    saved: list = []
    try:
        for target in targets:
            _, _, obj = _resolve(target)
            if isinstance(obj, types.FunctionType):
                # A decorated function (functools.wraps, e.g. @torch.no_grad()) is a closure
                # around the real one: block the function it wraps.
                while obj.__code__.co_freevars and isinstance(getattr(obj, "__wrapped__", None), types.FunctionType):
                    obj = obj.__wrapped__
                _block_function(obj, target, saved)
            elif isinstance(obj, type):
                # Replace the methods on the class itself: every instance and subclass sees it.
                for attr, member in list(vars(obj).items()):
                    if isinstance(member, (types.FunctionType, staticmethod, classmethod)):
                        saved.append((obj, attr, member))
                        setattr(obj, attr, _blocked_method(f"{target}.{attr}"))
            else:
                raise TypeError(f"block_reference: {target} is neither a function nor a class")
        yield
        tamper.check(caller)  # after: the student's code ran inside the block
    finally:
        for obj, attr, value in reversed(saved):
            setattr(obj, attr, value)


def _user_globals() -> dict:
    """The namespace of the code that entered block_reference (a notebook cell or a test)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") in ("contextlib", __name__):
        frame = frame.f_back
    return frame.f_globals if frame is not None else {}


def check_autoregressive(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    order: Sequence[int] | Tensor | None = None,
    strict: bool = True,
    atol: float = 0.0,
    max_samples: int = 4,
) -> float:
    """Output k of ``fn`` depends only on the inputs before k in ``order``, by autograd.

    ``fn`` maps ``(batch, D)`` to ``(batch, D, *rest)`` (e.g. a MADE's ``(batch, D, n_params)``
    or a transform's ``(batch, D)``); every entry ``[:, k, ...]`` is output k. ``order`` lists
    the variable indices in generation order (``None``: ``0, ..., D-1``). ``strict=True``
    checks a conditioner: dy_k/dx_j = 0 unless j comes strictly before k (strictly lower
    triangular in the order). ``strict=False`` checks a transform: j may also be k itself
    (triangular). The Jacobian is taken per sample for up to ``max_samples`` rows of ``x``.
    Raises naming the worst offending (output, input) pair and its magnitude; returns the
    largest forbidden |derivative| (0.0 for exact masks)."""
    if x.dim() != 2:
        raise ValueError(f"check_autoregressive: expected x of shape (batch, D), got {tuple(x.shape)}")
    D = x.shape[1]
    if order is None:
        order_t = torch.arange(D)
    else:
        order_t = torch.as_tensor(order)
        if order_t.dim() != 1 or order_t.is_floating_point() or order_t.numel() != D or not torch.equal(
            order_t.sort().values.cpu(), torch.arange(D)
        ):
            raise ValueError(f"check_autoregressive: order must be a permutation of range({D}), got {order_t.tolist()}")
    position = torch.empty(D, dtype=torch.long)
    position[order_t.long().cpu()] = torch.arange(D)
    # allowed[k, j]: may output k depend on input j?
    allowed = position[None, :] < position[:, None] if strict else position[None, :] <= position[:, None]

    worst, worst_pair = 0.0, None
    for i in range(min(max_samples, x.shape[0])):
        xi = x[i : i + 1].detach()
        jac = torch.autograd.functional.jacobian(lambda v: fn(v), xi)  # (1, D, *rest, 1, D)
        if jac.shape[1] != D:
            raise AssertionError(f"check_autoregressive: fn must return (batch, {D}, ...), got output shape {tuple(jac.shape[:-2])}")
        mag = jac.reshape(D, -1, D).abs().amax(dim=1).cpu()  # (output k, input j)
        forbidden = torch.where(allowed, torch.zeros_like(mag), mag)
        value = forbidden.max().item()
        if value > worst:
            worst = value
            flat = int(forbidden.argmax())
            worst_pair = (flat // D, flat % D)
    if worst > atol:
        k, j = worst_pair
        rel = "strictly before" if strict else "before or at"
        raise AssertionError(
            f"not autoregressive: output {k} (position {int(position[k])} in the order) depends on input {j} "
            f"(position {int(position[j])}), which is not {rel} it: |d out_{k} / d in_{j}| = {worst:.3e} > atol={atol:g}"
        )
    return worst


tamper.record_testing_module()  # from here on, replacing a function of this module is caught
