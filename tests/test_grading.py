"""The grading round trip, as an instructor runs it: `make grade` on a folder of submissions.

One batch per assignment holds: the reference solution (must score full marks), the
untouched release (must score 0), a student folder without the notebook (recorded with 0
and a reason) and one loose .ipynb (the other LMS layout). A second run regrades one late
re-submission only. Separately, every mutant of tests/mutants.py (a plausible wrong
implementation) must fail exactly the test cells it lists.
"""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course import assignments, grade_meta, source_notebook
import mutants

pytestmark = pytest.mark.slow


def _grade(course: Path, submissions: Path, asg: str) -> dict[str, dict[str, str]]:
    proc = subprocess.run(
        [sys.executable, str(course / "autograder" / "grade.py"), str(submissions), "--assignment", asg],
        capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, f"grade.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    with (course / "autograder" / "course" / "grades.csv").open() as fh:
        return {row["student"]: row for row in csv.DictReader(fh) if row["assignment"] == asg}


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

    rows = _grade(course_copy, subs, asg)
    max_score = float(rows["reference"]["max_score"])
    tests = [g for g in rows["reference"] if g.startswith("test")] or [
        k for k in rows["reference"] if k not in {"student", "assignment", "status", "score", "max_score", "reason"}]
    assert max_score > 0 and tests
    assert all(float(rows["reference"][c]) > 0 for c in tests)
    assert all(float(rows["untouched"][c]) == 0 for c in tests)
    assert rows["reference"]["status"] == "graded" and float(rows["reference"]["score"]) == max_score
    assert float(rows["Loose_Student"]["score"]) == max_score
    assert rows["untouched"]["status"] == "graded" and float(rows["untouched"]["score"]) == 0
    assert rows["forgot"]["status"] == "missing" and float(rows["forgot"]["score"]) == 0 and rows["forgot"]["reason"]
    feedback = course_copy / "autograder" / "course" / "feedback" / "reference" / asg / f"{asg}.html"
    assert feedback.is_file(), "feedback must be generated for each graded student"

    # A late re-submission replaces only that student's work; everyone else keeps their grade.
    late = tmp_path / "late"
    (late / "untouched").mkdir(parents=True)
    shutil.copy(course_copy / "solutions" / asg / f"{asg}.ipynb", late / "untouched" / f"{asg}.ipynb")
    rows2 = _grade(course_copy, late, asg)
    assert float(rows2["untouched"]["score"]) == max_score
    for student, row in rows.items():
        if student != "untouched":
            assert rows2[student]["score"] == row["score"], f"{student}'s grade changed on someone else's re-submission"


@pytest.mark.parametrize("asg", assignments())
def test_wrong_implementations_lose_points(asg):
    mutant_list = mutants.load(asg)
    assert mutant_list, f"tests/mutants/{asg}.py has no wrong implementations for {asg}"
    solution_cells = {grade_meta(c)["grade_id"] for c in source_notebook(asg).cells if grade_meta(c).get("solution")}
    assert solution_cells <= {m["cell"] for m in mutant_list}, "every exercise needs at least one mutant"
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "run_mutants.py"), asg],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report.pop("(reference)") == [], "the reference solution fails its own tests"
    for m in mutant_list:
        assert sorted(report[m["name"]]) == sorted(m["loses"]), (
            f"mutant {m['name']!r} failed {report[m['name']]}, expected exactly {m['loses']}")
