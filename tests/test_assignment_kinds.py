"""Every assignment grades four kinds of work (DESIGN.md, issue 13), checked on its source:

* a written answer graded by hand: a markdown cell with nbgrader ``grade`` and ``solution``,
  whose source ends in a rubric paragraph ``**Rubric (P points).**`` with P its points, and
  which the release replaces (no rubric or model answer in ``notebooks/``);
* a derivation whose result is auto-checked: hidden_tests.py's DERIVATIONS names its cells;
* a training or experiment exercise graded by outcome: an experiment of the assignment in
  the outcome registry (tests/outcomes.py), with a threshold and a named weaker model;
* implementation and transfer exercises: graded test cells with hidden tests (checked by
  autograder/verdicts.py's loader, which pairs every graded cell with a hidden test).
"""
from __future__ import annotations

import re
import sys

import nbformat
import pytest

from conftest import REPO
from course import assignments

RUBRIC = re.compile(r"\*\*Rubric \((\d+(?:\.\d+)?) points?\)\.\*\*")


def _written(asg: str) -> list[nbformat.NotebookNode]:
    nb = nbformat.read(REPO / "solutions" / asg / f"{asg}.ipynb", as_version=4)
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade") and c.metadata["nbgrader"].get("solution")]


@pytest.mark.parametrize("asg", assignments())
def test_written_answers_have_a_rubric_and_are_not_released(asg):
    written = [c for c in _written(asg) if c.cell_type == "markdown"]
    assert written, f"{asg}: no written answer graded by hand (a markdown cell with grade and solution set)"
    release = (REPO / "notebooks" / asg / f"{asg}.ipynb").read_text()
    for cell in written:
        meta = cell.metadata["nbgrader"]
        m = RUBRIC.search(cell.source)
        assert m, f"{asg}/{meta['grade_id']}: the answer cell has no '**Rubric (P points).**' paragraph"
        assert float(m.group(1)) == float(meta["points"]), (
            f"{asg}/{meta['grade_id']}: the rubric says {m.group(1)} points, the cell is worth {meta['points']}")
        assert cell.source[m.end():].strip(), f"{asg}/{meta['grade_id']}: the rubric lists nothing"
        model = cell.source[:m.start()].strip()
        assert model, f"{asg}/{meta['grade_id']}: no model answer before the rubric"
        assert model[:80] not in release, f"{asg}/{meta['grade_id']}: the release shows the model answer"
    assert "**Rubric" not in release, f"{asg}: the release shows a rubric"


@pytest.mark.parametrize("asg", assignments())
def test_a_derivation_is_auto_checked(asg):
    """hidden_tests.py names its derivation cells in DERIVATIONS; each is a graded cell with a
    hidden test, and reads the student's result (student.value for a number, student.call
    for a formula written as a function)."""
    import importlib.util
    import inspect

    path = REPO / "solutions" / asg / "hidden_tests.py"
    sys.path.insert(0, str(REPO / "autograder"))
    spec = importlib.util.spec_from_file_location(f"kinds_{asg.replace('-', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = list(getattr(module, "DERIVATIONS", []))
    assert names, f"{asg}: hidden_tests.py names no derivation cell (DERIVATIONS)"
    for name in names:
        fn = getattr(module, name, None)
        assert callable(fn), f"{asg}: DERIVATIONS names {name}, which is not a hidden test"
        body = inspect.getsource(fn)
        assert "student.value(" in body or "student.call(" in body, f"{asg}: {name} reads no answer of the student"


@pytest.mark.parametrize("asg", assignments())
def test_an_outcome_is_graded_with_a_threshold_and_a_weaker_model(asg):
    import test_notebook_outcomes  # noqa: F401  (registers the notebooks' experiments)
    from outcomes import REGISTRY

    mine = [e for e in REGISTRY.values() if e.extra.get("asg") == asg]
    assert mine, f"{asg}: no training or experiment exercise in the outcome registry (tests/notebook_outcomes/)"
    assert all(e.weaker for e in mine), f"{asg}: an outcome experiment names no weaker model"
