"""The outcome-margin table (bench/outcome-margins.md, written by `make margins`) covers every
outcome assertion of the suite, and every threshold in it holds on every seed and thread
count with margin while the named weaker model misses it (tests/outcomes.py)."""
from __future__ import annotations

import ast
import re

import pytest

import outcomes
from conftest import REPO

TABLE = REPO / "bench" / "outcome-margins.md"
# Calls that make a test's numbers depend on training or on an iterative sampler.
STOCHASTIC_CALLS = {"fit", "langevin", "annealed_langevin", "euler_maruyama", "pc_sample", "ode_sample", "ddpm_sample",
                    "ddim_sample", "fm_sample", "reflow_pairs"}
# Tests that call one of them but assert no threshold on the outcome, with the reason.
NOT_OUTCOMES = {
    "test_core.py::test_fit_with_data_free_loss": "a convex quadratic: Adam reaches 1e-3 from any start (no data, no sampling)",
    "test_core.py::test_fit_reports_divergence": "checks the error raised on a NaN loss, not a value",
    "test_core.py::test_fit_is_quiet_when_not_interactive": "checks what is printed, not a value",
    "test_ode.py::test_ode_sample_rk45_agrees_with_rk4": "two solvers of one deterministic ODE agree (no sampling)",
    "test_ode.py::test_bad_inputs_raise_value_error": "errors only",
    "test_score.py::test_losses_broadcast_over_image_shapes": "shapes only",
    "test_score.py::test_bad_inputs_raise_value_error": "errors only",
    "test_sde.py::test_shapes_broadcast_over_images": "shapes only",
    "test_sde.py::test_samplers_are_reproducible_with_a_generator": "bitwise equality of two runs on one machine",
    "test_sde.py::test_bad_inputs_raise_value_error": "errors only",
    "test_testing.py::test_block_reference_sees_through_decorators": "the guard, not a value",
    "test_ddpm.py::test_ddim_on_gaussian_data_is_the_exact_probability_flow_map": "deterministic DDIM (eta = 0) from given x_N against a closed form",
    "test_ddpm.py::test_samplers_and_model_shapes": "shapes only",
    "test_flow_matching.py::test_the_exact_flow_is_reversible_and_carries_noise_to_data_support": "a deterministic ODE from given noise, both ways",
    "test_flow_matching.py::test_straightness_and_reflow": "shapes of the reflow pairs; straightness of given fields",
}


def table_rows() -> dict[tuple[str, str], list[str]]:
    rows = {}
    for line in TABLE.read_text().splitlines():
        m = re.match(r"\| `([^`]+)` \|", line)
        if m:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            stat = cells[3].split()[0]
            rows[(m.group(1), stat)] = cells
    return rows


def test_table_lists_every_registered_check_with_margin():
    registry = outcomes.load_all()
    assert TABLE.is_file(), "bench/outcome-margins.md is missing: run `make margins`"
    rows = table_rows()
    expected = {(name, c.stat) for name, exp in registry.items() for c in exp.checks}
    missing = expected - set(rows)
    assert not missing, f"checks without a row in {TABLE.name} (run `make margins`): {sorted(missing)}"
    stale = set(rows) - expected
    assert not stale, f"rows for checks no longer registered (run `make margins`): {sorted(stale)}"
    for (name, stat), cells in rows.items():
        check = next(c for c in registry[name].checks if c.stat == stat)
        assert cells[3] == f"{stat} {check.op} {check.threshold:g}", (
            f"{name}.{stat}: the table was measured at {cells[3]!r}, the registry now says {check.op} {check.threshold:g}: "
            "run `make margins`")
        margin, misses = float(cells[6]), cells[7]
        assert margin >= outcomes.MIN_MARGIN, f"{name}.{stat}: margin {margin} < {outcomes.MIN_MARGIN} ({cells[4]} vs {cells[5]})"
        assert misses == "yes", f"{name}.{stat}: the weaker model ({registry[name].weaker}) does not miss {cells[3]} on every seed"


def test_margin_definition():
    check = outcomes.Check("x", "<", 1.0, "")
    assert outcomes.margin(check, [0.2, 0.6], [2.0, 3.0]) == (pytest.approx(0.4 / 1.4), True)
    assert outcomes.margin(check, [0.2, 1.2], [2.0]) [0] < 0            # a reference seed misses
    assert outcomes.margin(check, [0.2], [0.9, 2.0])[1] is False         # a weaker seed passes
    above = outcomes.Check("x", ">", 1.0, "")
    assert outcomes.margin(above, [2.0, 3.0], [0.0]) == (pytest.approx(0.5), True)
    z = outcomes.Check("z", "<", 4.0, "", kind="z")
    assert outcomes.margin(z, [1.0, 3.0], [50.0]) == (pytest.approx(0.25), True)
    assert outcomes.margin(z, [-7.0, 1.0], [50.0]) == (pytest.approx(0.75), True)


def _calls(fn: ast.FunctionDef) -> set[str]:
    names = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            f = node.func
            names.add(f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "")
    return names


def test_every_training_or_sampling_test_goes_through_the_registry():
    """A test that trains or runs a sampler and asserts on the result must take its threshold
    from a registered experiment (so `make margins` measures it), or be listed above with why not."""
    unregistered, seen = [], set()
    for path in sorted((REPO / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        experiments = {name for name, fn in functions.items()
                       if any(isinstance(d, ast.Call) and getattr(d.func, "id", "") == "outcome" for d in fn.decorator_list)}
        for name, fn in functions.items():
            if not name.startswith("test_") or not (_calls(fn) & STOCHASTIC_CALLS):
                continue
            key = f"{path.name}::{name}"
            seen.add(key)
            if key in NOT_OUTCOMES or "check" in _calls(fn) or _calls(fn) & experiments:
                continue
            unregistered.append(key)
    stale = [k for k in NOT_OUTCOMES if k not in seen]
    assert not stale, f"NOT_OUTCOMES lists tests that no longer train or sample: {stale}"
    assert not unregistered, (f"tests that train or sample without a registered outcome experiment: {unregistered}; "
                              "register one with @outcome in tests/outcomes.py's style, or list the test in NOT_OUTCOMES with the reason")
