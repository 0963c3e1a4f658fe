"""The grading round trip, as an instructor runs it: `make grade` on a folder of submissions.

* Every assignment at once: a student folder with every reference solution must score full
  marks on each, a student with every untouched release must score 0 on each.
* The grader's bookkeeping, on assignment 01: a student folder without the notebook
  (recorded with 0 and a reason), a loose .ipynb (the other LMS layout), and a late
  re-submission that replaces only that student's grade.
* Every mutant of tests/mutants/<asg>.py (a plausible wrong implementation) must fail
  exactly the test cells it lists.
* Every reference solution passes all its tests under five more seeds (FLOWLIB_SEED).
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mutants
from conftest import REPO
from course import assignments, grade_meta, source_notebook

sys.path.insert(0, str(REPO / "autograder"))
from grade import student_id  # noqa: E402

pytestmark = pytest.mark.slow

META = {"student", "assignment", "status", "score", "max_score", "auto_score", "auto_max", "manual_score",
        "manual_max", "manual_pending", "submitted_at", "late_hours", "late_penalty", "reason"}


def grade(course: Path, submissions: Path, asg: str | None = None, *extra: str) -> dict[tuple[str, str], dict[str, str]]:
    args = [sys.executable, str(course / "autograder" / "grade.py"), str(submissions), *extra]
    if asg:
        args += ["--assignment", asg]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, f"grade.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    with (course / "autograder" / "course" / "grades.csv").open() as fh:
        return {(row["student"], row["assignment"]): row for row in csv.DictReader(fh)}


def test_every_assignment_round_trip(course_copy, tmp_path):
    subs = tmp_path / "export"
    for asg in assignments():
        (subs / "reference").mkdir(parents=True, exist_ok=True)
        shutil.copy(course_copy / "solutions" / asg / f"{asg}.ipynb", subs / "reference" / f"{asg}.ipynb")
        (subs / "untouched" / asg).mkdir(parents=True)  # nested layout: <student>/<asg>/<asg>.ipynb
        shutil.copy(course_copy / "notebooks" / asg / f"{asg}.ipynb", subs / "untouched" / asg / f"{asg}.ipynb")
    rows = grade(course_copy, subs)
    for asg in assignments():
        ref, blank = rows[("reference", asg)], rows[("untouched", asg)]
        tests = [k for k, v in ref.items() if k not in META and v != ""]
        assert tests, f"{asg}: no graded cells"
        assert ref["status"] == "graded" and float(ref["auto_score"]) == float(ref["auto_max"]) > 0, (
            f"{asg}: the reference solution scored {ref['auto_score']}/{ref['auto_max']} ({ref['reason']})")
        assert all(float(ref[c]) > 0 for c in tests)
        assert blank["status"] == "graded" and float(blank["auto_score"]) == 0, f"{asg}: the untouched release scored {blank['auto_score']}"
        assert all(float(blank[c]) == 0 for c in tests)
        feedback = course_copy / "autograder" / "course" / "feedback" / "reference" / asg / f"{asg}.html"
        assert feedback.is_file(), f"{asg}: no feedback page"
        assert "BEGIN HIDDEN TESTS" not in feedback.read_text(), f"{asg}: feedback shows the hidden tests"


def test_grader_bookkeeping(course_copy, tmp_path):
    asg = assignments()[0]
    solution = course_copy / "solutions" / asg / f"{asg}.ipynb"
    subs = tmp_path / "export"
    (subs / "forgot").mkdir(parents=True)
    (subs / "forgot" / "notes.txt").write_text("my notebook is on my other laptop")
    shutil.copy(solution, subs / "Loose Student.ipynb")
    (subs / "late").mkdir()
    shutil.copy(course_copy / "notebooks" / asg / f"{asg}.ipynb", subs / "late" / f"{asg}.ipynb")
    rows = grade(course_copy, subs, asg)
    loose = rows[(student_id("Loose Student"), asg)]  # a space is not kept: "Loose_Student-<hash>"
    assert float(loose["auto_score"]) == float(loose["auto_max"]) > 0, loose
    forgot = rows[("forgot", asg)]
    assert forgot["status"] == "missing" and float(forgot["auto_score"]) == 0 and f"no {asg}.ipynb" in forgot["reason"]
    assert float(rows[("late", asg)]["auto_score"]) == 0

    # A late re-submission replaces only that student's work; everyone else keeps their grade.
    resubmit = tmp_path / "resubmit"
    (resubmit / "late").mkdir(parents=True)
    shutil.copy(solution, resubmit / "late" / f"{asg}.ipynb")
    rows2 = grade(course_copy, resubmit, asg, "--kernel", "python3")  # the kernel option reaches nbgrader
    assert float(rows2[("late", asg)]["auto_score"]) == float(rows2[("late", asg)]["auto_max"])
    for key, row in rows.items():
        if key[0] != "late":
            assert rows2[key]["auto_score"] == row["auto_score"], f"{key} changed on someone else's re-submission"

    # A kernel that does not exist fails that student with the reason, and loses nothing.
    rows3 = grade(course_copy, resubmit, asg, "--kernel", "no-such-kernel")
    assert rows3[("late", asg)]["status"] == "failed" and "no-such-kernel" in rows3[("late", asg)]["reason"]


def mutant_jobs() -> int:
    """run_mutants.py's parallel runs: the cores left to this pytest worker (`make test` runs
    pytest-xdist workers side by side; PYTEST_XDIST_WORKER_COUNT says how many)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))


@pytest.mark.parametrize("asg", assignments())
def test_wrong_implementations_lose_points(asg):
    mutant_list = mutants.load(asg)
    assert mutant_list, f"tests/mutants/{asg}.py has no wrong implementations for {asg}"
    solution_cells = {grade_meta(c)["grade_id"] for c in source_notebook(asg).cells
                      if grade_meta(c).get("solution") and c.cell_type == "code"}  # written answers are graded by hand
    assert solution_cells <= {m["cell"] for m in mutant_list}, "every exercise needs at least one mutant"
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "run_mutants.py"), asg, "--jobs", str(mutant_jobs())],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report.pop("(reference)") == [], "the reference solution fails its own tests"
    for m in mutant_list:
        assert sorted(report[m["name"]]) == sorted(m["loses"]), (
            f"mutant {m['name']!r} failed {report[m['name']]}, expected exactly {m['loses']}")


@pytest.mark.parametrize("asg", assignments())
def test_reference_passes_under_other_seeds(asg):
    """Tests must not pass by luck of one seed: the setup cell seeds torch from FLOWLIB_SEED.
    (Run in one process like the mutants; the nbgrader path is covered by the round trip.)"""
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "run_mutants.py"), asg, "--jobs", str(mutant_jobs()),
                           "--seeds", "1", "2", "3", "4", "5"], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(report) == 5 and all(failed == [] for failed in report.values()), report
