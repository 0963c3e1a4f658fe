"""Assertions for grader-side hidden tests, with messages that name the case.

Values come from :class:`probe.client.Student` calls, so they are plain CPU tensors and
Python values decoded from the wire; nothing here trusts their type. Each check raises
``AssertionError`` with what was expected, what came back and by how much it is off, and
returns the measured error where there is one. A NaN anywhere is a wrong answer.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import torch


def case(t: Any) -> str:
    """'float64 (40, 5)' for a tensor (the dtype and shape of an input, for messages)."""
    if isinstance(t, torch.Tensor):
        return f"{str(t.dtype).replace('torch.', '')} {tuple(t.shape)}"
    return repr(t)


def tensor(v: Any, what: str, *, shape=None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``v`` is a tensor (with this shape and dtype, when given); returns it."""
    if not isinstance(v, torch.Tensor):
        raise AssertionError(f"{what}: expected a torch.Tensor, got {type(v).__name__}")
    if shape is not None and tuple(v.shape) != tuple(shape):
        raise AssertionError(f"{what}: expected shape {tuple(shape)}, got {tuple(v.shape)}")
    if dtype is not None and v.dtype != dtype:
        raise AssertionError(f"{what}: expected dtype {str(dtype).replace('torch.', '')} "
                             f"(the input's), got {str(v.dtype).replace('torch.', '')}")
    return v


def sequence(v: Any, n: int, what: str) -> tuple:
    """``v`` is a tuple or list of ``n`` items; returns it as a tuple."""
    if not isinstance(v, (tuple, list)) or len(v) != n:
        got = f"{type(v).__name__} of length {len(v)}" if isinstance(v, (tuple, list)) else type(v).__name__
        raise AssertionError(f"{what}: expected {n} values, got {got}")
    return tuple(v)


def close(got: torch.Tensor, ref: torch.Tensor, tol: float, what: str, relative: bool = False) -> float:
    """max |got - ref| (or max |got - ref| / (1 + |ref|) with ``relative``) is at most ``tol``,
    compared in float64; shapes must agree."""
    got = tensor(got, what)
    if tuple(got.shape) != tuple(ref.shape):
        raise AssertionError(f"{what}: expected shape {tuple(ref.shape)}, got {tuple(got.shape)}")
    diff = (got.detach().to(torch.float64) - ref.detach().to(torch.float64)).abs()
    if relative:
        diff = diff / (1 + ref.detach().to(torch.float64).abs())
    err = diff.max().item() if diff.numel() else 0.0
    if not err <= tol:  # NaN fails too
        kind = "relative error" if relative else "off by"
        raise AssertionError(f"{what}: {kind} {err:.3e}, tolerance {tol:.1e}")
    return err


def finite(t: torch.Tensor, what: str) -> None:
    bad = (~torch.isfinite(tensor(t, what))).sum().item()
    if bad:
        raise AssertionError(f"{what}: {bad} of {t.numel()} values are not finite")


def generator(seed: int, salt: int) -> torch.Generator:
    """A CPU generator for one test's inputs: different for every grading seed and test."""
    return torch.Generator().manual_seed(1_000_003 * int(seed) + int(salt))


def one_thread(test):
    """Run a test with one torch thread in the grader: its tensors are tiny and it answers
    hundreds of callbacks, where an OpenMP team on busy cores costs milliseconds per operation
    (20 s instead of 4 s for the RK4 test on 2 busy cores). The thread count is restored after."""
    @functools.wraps(test)
    def run(student, seed):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return test(student, seed)
        finally:
            torch.set_num_threads(threads)

    return run


def trained_density_2d(student, model, x_test: torch.Tensor, what: str, lim: float = 4.0, n: int = 161) -> torch.Tensor:
    """A training exercise's returned 2-D density model, judged on held-out points: it must be a
    module whose ``log_prob`` gives one finite float32 value per point of ``x_test``, and whose
    density integrates (trapezoid rule on ``[-lim, lim]^2``) to between 0.9 and 1.05, which
    rejects a model that inflates its log-density. Returns the held-out log-densities."""
    if isinstance(model, (torch.Tensor, tuple, list, dict, int, float, str, type(None))):
        raise AssertionError(f"{what}: return the trained model (a torch.nn.Module), got {type(model).__name__}")
    log_q = tensor(student.method(model, "log_prob", x_test), f"{what}, then log_prob(float32 {tuple(x_test.shape)})",
                   shape=(x_test.shape[0],), dtype=torch.float32)
    finite(log_q, f"{what}, log_prob on held-out points")
    lin = torch.linspace(-lim, lim, n)
    grid = torch.stack(torch.meshgrid(lin, lin, indexing="ij"), dim=-1).reshape(-1, 2)
    values = tensor(student.method(model, "log_prob", grid), what + ", log_prob on a grid", shape=(n * n,))
    w = torch.ones(n, dtype=torch.float64)
    w[0] = w[-1] = 0.5
    h = 2 * lim / (n - 1)
    mass = (values.double().nan_to_num(nan=math.inf).reshape(n, n).exp() * w[:, None] * w[None, :]).sum().item() * h * h
    if not 0.9 < mass < 1.05:
        raise AssertionError(f"{what}: exp(log_prob) integrates to {mass:.3f} over [-{lim:g}, {lim:g}]^2, not to about 1 "
                             "(allowed: 0.9 to 1.05): is a log-determinant missing or of the wrong sign?")
    return log_q
