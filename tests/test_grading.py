"""The grading round trip, as an instructor runs it: `make grade` on a folder of submissions.

One batch per assignment holds: the reference solution (must score full marks), the
untouched release (must score 0), a student folder without the notebook (recorded with 0
and a reason), one loose .ipynb (the other LMS layout) and one submission per mutant of
tests/mutants.py (a plausible wrong implementation that must lose the listed test cells
and nothing else). A second run regrades one late re-submission only.
"""
from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course import assignments, grade_meta, source_notebook
from mutants import MUTANTS

pytestmark = pytest.mark.slow


def _grade(course: Path, submissions: Path, asg: str) -> dict[str, dict[str, str]]:
    proc = subprocess.run(
        [sys.executable, str(course / "autograder" / "grade.py"), str(submissions), "--assignment", asg],
        capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, f"grade.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    with (course / "autograder" / "course" / "grades.csv").open() as fh:
        return {row["student"]: row for row in csv.DictReader(fh) if row["assignment"] == asg}


def _mutant(asg: str, mutant: dict) -> nbformat.NotebookNode:
    nb = source_notebook(asg)
    cells = [c for c in nb.cells if grade_meta(c).get("grade_id") == mutant["cell"]]
    assert len(cells) == 1, f"mutant {mutant['name']}: no solution cell {mutant['cell']!r}"
    assert cells[0].source.count(mutant["find"]) == 1, f"mutant {mutant['name']}: `find` must occur exactly once"
    cells[0].source = cells[0].source.replace(mutant["find"], mutant["replace"])
    return nb


@pytest.mark.parametrize("asg", assignments())
def test_grading_round_trip(asg, course_copy, tmp_path):
    subs = tmp_path / "export"
    (subs / "reference").mkdir(parents=True)
    shutil.copy(course_copy / "solutions" / asg / f"{asg}.ipynb", subs / "reference" / f"{asg}.ipynb")
    (subs / "untouched" / asg).mkdir(parents=True)  # nested layout: <student>/<asg>/<asg>.ipynb
    shutil.copy(course_copy / "notebooks" / asg / f"{asg}.ipynb", subs / "untouched" / asg / f"{asg}.ipynb")
    (subs / "forgot").mkdir()
    (subs / "forgot" / "notes.txt").write_text("my notebook is on my other laptop")
    shutil.copy(course_copy / "solutions" / asg / f"{asg}.ipynb", subs / "Loose Student.ipynb")
    mutants = MUTANTS.get(asg, [])
    assert mutants, f"tests/mutants.py has no wrong implementations for {asg}"
    for i, m in enumerate(mutants):
        (subs / f"mutant{i}").mkdir()
        nbformat.write(_mutant(asg, m), subs / f"mutant{i}" / f"{asg}.ipynb")

    rows = _grade(course_copy, subs, asg)
    max_score = float(rows["reference"]["max_score"])
    tests = [g for g in rows["reference"] if g.startswith("test")] or [
        k for k in rows["reference"] if k not in {"student", "assignment", "status", "score", "max_score", "reason"}]
    assert max_score > 0 and tests
    assert rows["reference"]["status"] == "graded" and float(rows["reference"]["score"]) == max_score
    assert float(rows["Loose_Student"]["score"]) == max_score
    assert rows["untouched"]["status"] == "graded" and float(rows["untouched"]["score"]) == 0
    assert rows["forgot"]["status"] == "missing" and float(rows["forgot"]["score"]) == 0 and rows["forgot"]["reason"]
    feedback = course_copy / "autograder" / "course" / "feedback" / "reference" / asg / f"{asg}.html"
    assert feedback.is_file(), "feedback must be generated for each graded student"

    for i, m in enumerate(mutants):
        row = rows[f"mutant{i}"]
        lost = {c for c in tests if float(row[c]) < float(rows["reference"][c])}
        assert lost == set(m["loses"]), f"mutant {m['name']!r} lost {sorted(lost)}, expected {sorted(m['loses'])}"

    # A late re-submission replaces only that student's work; everyone else keeps their grade.
    late = tmp_path / "late"
    (late / "untouched").mkdir(parents=True)
    shutil.copy(course_copy / "solutions" / asg / f"{asg}.ipynb", late / "untouched" / f"{asg}.ipynb")
    rows2 = _grade(course_copy, late, asg)
    assert float(rows2["untouched"]["score"]) == max_score
    for student, row in rows.items():
        if student != "untouched":
            assert rows2[student]["score"] == row["score"], f"{student}'s grade changed on someone else's re-submission"
