"""The registry of outcome assertions: every check whose truth depends on training, sampling
or another iterative stochastic procedure, with the threshold it asserts.

A number that training or a sampler produces is not a property of the code alone: another
CPU, thread count or BLAS code path takes another floating-point path, and hundreds of
optimiser steps amplify the difference (tests/test_coupling.py's RealNVP fit went from
1.26 to 1.52 nats on a CPU with AVX-512 MKL kernels). So each such check is registered
here as an :class:`Experiment`: a function ``run(seed, weaker=False) -> {statistic: value}``
and its :class:`Check` s. The tests call ``EXPERIMENT.check()`` at the test's own seed;
``bench/margins.py`` (``make margins``) runs every experiment over 8 seeds with 1 and 2
threads, and with ``weaker=True`` (a named weaker model: fewer steps, plain Langevin, a
coarser solver...), and writes ``bench/outcome-margins.md``. A threshold is kept only when

* the reference meets it on every seed with a margin of at least 25% of the distance
  between its worst seed and the weaker model's best seed, and
* the weaker model misses it on every seed,

which ``tests/test_outcomes.py`` asserts from the committed table (and that the table lists
every registered check, so a new outcome test cannot be left out of it).
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Callable

_OPS = {"<": operator.lt, ">": operator.gt}

#: seeds the margin table is measured on; the first is each test's own seed
MARGIN_SEEDS = (0, 1, 2, 3, 4, 5, 6, 7)
THREADS = (1, 2)
MIN_MARGIN = 0.25


@dataclass(frozen=True)
class Check:
    stat: str          # key of the statistic in the experiment's result
    op: str            # "<" or ">": the reference's value must be op threshold
    threshold: float
    what: str          # what the statistic is, in words (with units)
    kind: str = "outcome"  # "z": a statistical test in standard errors (margin against the threshold itself)
    weaker: str = ""       # a weaker model of this check's own (else the experiment's)
    variant: str = ""      # passed as run(seed, weaker=variant) for that model

    def passes(self, value: float) -> bool:
        return math.isfinite(value) and _OPS[self.op](value, self.threshold)


@dataclass
class Experiment:
    name: str
    where: str                     # test or notebook cell that asserts it
    run: Callable[..., dict]       # run(seed, weaker=False | True | "variant") -> {stat: float}
    checks: list[Check]
    weaker: str                    # the named weaker model that must miss every check
    seed: int = 0                  # the seed the test itself runs
    extra: dict = field(default_factory=dict)

    def weaker_of(self, check: Check) -> tuple[str, object]:
        """(description, the value of run's ``weaker`` argument) of a check's weaker model."""
        return (check.weaker, check.variant) if check.variant else (self.weaker, True)

    def check(self, seed: int | None = None) -> dict:
        """Run at ``seed`` (default: the test's own) and assert every check, naming the
        statistic, its value and the threshold."""
        stats = self.run(self.seed if seed is None else seed)
        failed = [f"{c.stat} = {stats[c.stat]:.4g}, needs {c.op} {c.threshold:g} ({c.what})"
                  for c in self.checks if not c.passes(float(stats[c.stat]))]
        assert not failed, f"{self.name} (seed {self.seed if seed is None else seed}): " + "; ".join(failed) + \
            f". Thresholds and their margins over seeds: bench/outcome-margins.md"
        return stats


REGISTRY: dict[str, Experiment] = {}


def outcome(where: str, checks: list[Check], weaker: str, seed: int = 0, name: str | None = None,
            extra: dict | None = None):
    """Decorator: register ``run(seed, weaker=False) -> dict`` as an outcome experiment."""
    def wrap(run):
        key = name or run.__name__
        if key in REGISTRY:
            raise ValueError(f"outcome experiment {key!r} registered twice")
        REGISTRY[key] = Experiment(key, where, run, checks, weaker, seed, dict(extra or {}))
        return REGISTRY[key]
    return wrap


def margin(check: Check, ref_values: list[float], weak_values: list[float]) -> tuple[float, bool]:
    """(margin, weaker_misses): the reference's worst seed's distance to the threshold as a
    fraction of the distance between that worst seed and the weaker model's best seed."""
    misses = all(not check.passes(v) for v in weak_values)
    if check.kind == "z":
        # A z-test's scale is the standard error, not the distance to a weaker model (one that
        # breaks the identity sits many standard errors away): the reference's worst |z| must
        # stay MIN_MARGIN below the threshold, which fixes the false-alarm rate. (A signed,
        # one-sided z such as "bound above exact" counts its largest value.)
        worst = max(ref_values)
        return (check.threshold - worst) / check.threshold, misses
    if check.op == "<":
        worst, weak_best = max(ref_values), min(weak_values)
        gap, room = weak_best - worst, check.threshold - worst
    else:
        worst, weak_best = min(ref_values), max(weak_values)
        gap, room = worst - weak_best, worst - check.threshold
    if not all(math.isfinite(v) for v in ref_values) or gap <= 0:
        return -math.inf, misses
    return room / gap, misses


TEST_MODULES = ("test_core", "test_onedim", "test_planar", "test_autoregressive", "test_coupling",
                "test_dequantization", "test_score", "test_ode", "test_sde", "test_ddpm", "test_notebook_outcomes")


def load_all() -> dict[str, Experiment]:
    """Import every test module that registers experiments; returns the registry."""
    import importlib

    for mod in TEST_MODULES:
        importlib.import_module(mod)
    return REGISTRY
