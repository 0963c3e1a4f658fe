"""Detect graded code that rewires what the tests rely on.

Student code and the hidden tests run in one kernel, so a solution could make every check
pass by replacing ``torch.allclose``, ``math.isclose``, a comparison method of
``torch.Tensor``, a builtin such as ``abs``, or a function of :mod:`flowlib.testing`. This
module records the identity of those objects when it is first imported (in the locked
setup cell, before any student code runs) and :func:`check` reports any that changed.
:func:`flowlib.testing.block_reference`, which every hidden test uses, calls it on entry
and exit. The autograder also scans submissions for such code before running them
(``autograder/scan.py``); neither layer is a sandbox, see the README.
"""
from __future__ import annotations

import builtins
import math
import sys

import numpy
import numpy.testing
import torch
import torch.testing

_BUILTINS = (
    "abs all any bool callable dict float getattr hasattr int isinstance issubclass iter len list max min "
    "next print range repr round set sorted str sum tuple type zip __import__ "
    "AssertionError Exception ValueError TypeError RuntimeError NotImplementedError"
).split()

_WATCHED = {
    "builtins": (builtins, _BUILTINS),
    "math": (math, "isclose isfinite isnan isinf fabs exp log sqrt".split()),
    "numpy": (numpy, "allclose isclose array_equal abs max min all any isfinite asarray".split()),
    "numpy.testing": (numpy.testing, "assert_allclose assert_array_equal assert_array_almost_equal assert_equal".split()),
    "torch": (torch, "allclose isclose equal all any abs max min sum mean isfinite isnan tensor as_tensor".split()),
    "torch.testing": (torch.testing, ["assert_close"]),
    "torch.Tensor": (
        torch.Tensor,
        (
            "__eq__ __ne__ __lt__ __le__ __gt__ __ge__ __sub__ __rsub__ __add__ __mul__ __truediv__ __abs__ "
            "__bool__ __float__ __neg__ abs max min sum mean all any item tolist allclose isclose equal "
            "isfinite isnan float double cpu numpy size dim"
        ).split(),
    ),
}


def _identity(owner, name: str):
    # Class attributes are read from the class dict (or its C base) so that a patched
    # method is seen even where attribute lookup would find something else first.
    for klass in getattr(owner, "__mro__", ()):
        if name in vars(klass):
            return id(vars(klass)[name])
    return id(getattr(owner, name, None))


def _snapshot() -> dict[str, int]:
    snap = {f"{label}.{name}": _identity(owner, name) for label, (owner, names) in _WATCHED.items() for name in names}
    testing = sys.modules.get("flowlib.testing")
    if testing is not None:
        snap.update({f"flowlib.testing.{k}": id(v) for k, v in vars(testing).items() if callable(v)})
    return snap


_SNAPSHOT = _snapshot()


def record_testing_module() -> None:
    """Add flowlib.testing's own functions to the snapshot (called once it is imported)."""
    _SNAPSHOT.update({k: v for k, v in _snapshot().items() if k.startswith("flowlib.testing.")})


def _owner(name: str):
    label, _, attr = name.rpartition(".")
    if label == "flowlib.testing":
        return sys.modules["flowlib.testing"], attr
    return _WATCHED[label][0], attr


def changed(user_globals: dict | None = None) -> list[str]:
    """Names of watched objects that are no longer the ones recorded at import, plus
    builtins that ``user_globals`` (the notebook's namespace) shadows with a callable."""
    found = []
    for name, ident in _SNAPSHOT.items():
        owner, attr = _owner(name)
        if _identity(owner, attr) != ident:
            found.append(name)
    if user_globals is not None:
        for name in _BUILTINS:
            value = user_globals.get(name, None)
            if value is not None and callable(value) and value is not getattr(builtins, name):
                found.append(f"{name} (redefined in the notebook)")
    return found


class TamperingError(AssertionError):
    """Raised when graded code has replaced something the tests depend on."""


def check(user_globals: dict | None = None) -> None:
    bad = changed(user_globals)
    if bad:
        raise TamperingError(
            "the notebook replaced functions the tests rely on: " + ", ".join(bad)
            + ". Restore them (restart the kernel) and do not redefine them."
        )
