"""Plausible wrong solutions ("mutants") for the nbgrader assignments, used by the grading test.

Each assignment has a file ``tests/mutants/<asg>.py`` (named like its folder under
``solutions/``) that defines ``MUTANTS``, a list of mutants. Each mutant is a dict:

``name``
    a short label for the mistake, shown in test ids and failure messages;
``cell``
    the ``grade_id`` of the *solution* cell to edit in the source notebook
    ``solutions/<asg>/<asg>.ipynb``;
``find``
    an exact substring of that cell's source, which must occur exactly once in it;
``replace``
    the wrong code that takes its place (``source.replace(find, replace)``);
``loses``
    the ``grade_id`` of every test cell that must score 0 for this submission. Every other
    test cell must keep its full marks, so a mutant also pins down that the tests do not
    punish one mistake in several unrelated places.

The grading test runs the solution notebook once per mutant with the edit applied
(tests/run_mutants.py) and checks that exactly the ``loses`` cells fail. A
mistake in a function that later exercises reuse (e.g. ``mixture_cdf`` inside
``cdf_flow_nll``) legitimately loses those later cells too; they are listed.
"""
from __future__ import annotations

import runpy
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(assignment: str) -> list[dict]:
    """The mutants of one assignment ([] when it has no file yet)."""
    path = HERE / f"{assignment}.py"
    return runpy.run_path(str(path))["MUTANTS"] if path.is_file() else []
