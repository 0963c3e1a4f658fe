"""Written answers graded by hand: autograde -> pending -> manual score -> final score.

One submission is walked through the whole workflow of autograder/manual.py on a copy of
the course whose assignment 1 gains a written answer (so the test does not depend on what
the real assignments ask): after ``make grade`` its written answer is pending, grades.csv
has no final score for it (never a silent zero) and its feedback shows no rubric; after
``manual.py set`` the gradebook, grades.csv and the feedback page all carry the score, and
the feedback shows the comment and the rubric. A classmate who left the answer blank is
scored 0 for it by nbgrader and has a final score at once.
"""
from __future__ import annotations

import csv
import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course import assignments

pytestmark = pytest.mark.slow

ASG = assignments()[0]
RUBRIC = "**Rubric (2 points).**\n- 1 point: names the Jacobian factor 1/|a|.\n- 1 point: says why log|a| and not log a."
QUESTION = "Why does the density of x = a z + b carry the factor 1/|a|? (2 points)"
ANSWER = "Because probability mass is conserved: dx = |a| dz, so p(x) = N(z) / |a|, with |a| since a may be negative.\n\n" + RUBRIC


def _with_written_answer(course: Path) -> dict[str, float]:
    """Add a question and a manually graded answer cell to the course copy's source notebook
    and regenerate its release there; returns the written answers the assignment already had
    (grade_id -> points)."""
    path = course / "solutions" / ASG / f"{ASG}.ipynb"
    nb = nbformat.read(path, as_version=4)
    existing = {c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"]["points"]) for c in nb.cells
                if c.metadata.get("nbgrader", {}).get("grade") and c.metadata["nbgrader"].get("solution")}
    question = nbformat.v4.new_markdown_cell(QUESTION, metadata={"nbgrader": {
        "grade": False, "solution": False, "locked": True, "grade_id": "why_abs_md", "schema_version": 3}})
    answer = nbformat.v4.new_markdown_cell(ANSWER, metadata={"nbgrader": {
        "grade": True, "solution": True, "locked": False, "points": 2, "grade_id": "why_abs", "schema_version": 3}})
    nb.cells += [question, answer]
    nbformat.write(nb, path)
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", ASG, "--force"],
                          cwd=course / "autograder", capture_output=True, text=True,
                          env=dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return existing


def _rows(course: Path) -> dict[str, dict[str, str]]:
    with (course / "autograder" / "course" / "grades.csv").open() as fh:
        return {r["student"]: r for r in csv.DictReader(fh) if r["assignment"] == ASG}


def _run(course: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=course, capture_output=True, text=True, timeout=1500)
    if check:
        assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def test_written_answer_from_autograde_to_final_score(course_copy, tmp_path):
    existing = _with_written_answer(course_copy)  # the assignment's own written answers: alice answers them too
    release = course_copy / "notebooks" / ASG / f"{ASG}.ipynb"
    assert "Rubric" not in release.read_text(), "the release shows the rubric"
    subs = tmp_path / "export"
    (subs / "alice").mkdir(parents=True)
    (subs / "bob").mkdir(parents=True)
    alice_nb = nbformat.read(course_copy / "solutions" / ASG / f"{ASG}.ipynb", as_version=4)
    alice_nb.cells[-1].source = "Mass is conserved, so p(x) |dx| = N(z) |dz| and p(x) = N((x - b)/a) / |a|."
    for cell in alice_nb.cells[:-1]:
        if cell.metadata.get("nbgrader", {}).get("grade_id") in existing:
            cell.source = "My own answer, in my own words."
    nbformat.write(alice_nb, subs / "alice" / f"{ASG}.ipynb")
    shutil.copy(release, subs / "bob" / f"{ASG}.ipynb")
    # a term: due yesterday, 10% of the maximum per started day late; bob has a long extension
    due = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=30)).isoformat(timespec="seconds")
    (course_copy / "autograder" / "term.toml").write_text(
        f'[late_policy]\nmethod = "per_day"\npenalty = 0.1\n\n[due]\n"{ASG}" = "{due}"\n\n'
        f'[extensions."{ASG}"]\nbob = "30d"\n')
    run = _run(course_copy, "autograder/grade.py", str(subs), "--assignment", ASG, "--similarity", "off")
    # not a terminal: one line per student with the count, the rate and the time left, then a summary
    assert "[1/2] alice" in run.stdout and "[2/2] bob" in run.stdout and "ETA" in run.stdout, run.stdout[-2000:]
    assert "2 of 2 done" in run.stdout and "2 graded, 0 flagged, 0 failed, 0 missing" in run.stdout, run.stdout[-2000:]

    rows = _rows(course_copy)
    alice, bob = rows["alice"], rows["bob"]
    # alice is 30 h late: two started days, 20% of the maximum off her final score; bob is not late
    assert 29.9 < float(alice["late_hours"]) < 31 and float(alice["late_penalty"]) == 0.2 * float(alice["max_score"]), alice
    assert "late by" in alice["reason"] and alice["submitted_at"].endswith("UTC"), alice
    assert (float(bob["late_hours"]), float(bob["late_penalty"])) == (0, 0), bob
    # alice answered: the machine's points are in, the written answer waits, no final score yet
    assert float(alice["auto_score"]) == float(alice["auto_max"]) > 0, alice
    total_written = 2 + sum(existing.values())
    assert (float(alice["manual_pending"]), float(alice["manual_max"]), alice["why_abs"]) == (total_written,) * 2 + ("",), alice
    assert alice["score"] == "", f"a pending written answer must not count as zero in the final score: {alice}"
    # bob left it blank: nbgrader scores an untouched answer 0, so bob has a final score
    assert (float(bob["manual_pending"]), bob["why_abs"], float(bob["score"])) == (0, "0", 0), bob

    feedback = course_copy / "autograder" / "course" / "feedback" / "alice" / ASG / f"{ASG}.html"
    assert "not graded yet" in feedback.read_text() and "names the Jacobian factor" not in feedback.read_text(), (
        "the feedback shows the rubric before the answer was graded")

    pending = _run(course_copy, "autograder/manual.py", "pending", "--assignment", ASG)
    assert "alice" in pending.stdout and "why_abs" in pending.stdout and "bob" not in pending.stdout, pending.stdout

    # bad input is refused with what was expected, and changes nothing
    too_many = _run(course_copy, "autograder/manual.py", "set", "alice", ASG, "why_abs", "3", check=False)
    assert too_many.returncode != 0 and "between 0 and 2" in too_many.stderr, too_many.stderr
    wrong_cell = _run(course_copy, "autograder/manual.py", "set", "alice", ASG, "nope", "1", check=False)
    assert wrong_cell.returncode != 0 and "why_abs" in wrong_cell.stderr, wrong_cell.stderr
    assert _rows(course_copy)["alice"]["score"] == ""

    _run(course_copy, "autograder/manual.py", "set", "alice", ASG, "why_abs", "1.5", "--comment", "say why |a|")
    alice = _rows(course_copy)["alice"]
    assert (float(alice["manual_pending"]), float(alice["manual_score"]), alice["why_abs"]) == (sum(existing.values()), 1.5, "1.5"), alice
    assert alice["score"] == "" or not existing, f"other written answers are still pending: {alice}"
    for gid, pts in existing.items():  # grade the assignment's own written answers: full marks
        _run(course_copy, "autograder/manual.py", "set", "alice", ASG, gid, str(pts))
    alice = _rows(course_copy)["alice"]
    total = float(alice["auto_max"]) + 1.5 + sum(existing.values())
    assert float(alice["manual_pending"]) == 0 and float(alice["score"]) == total - 0.2 * float(alice["max_score"]), (
        f"the final score is the total less the late penalty: {alice}")
    assert alice["status"] == "graded", alice
    page = feedback.read_text()
    assert "names the Jacobian factor" in page and "say why |a|" in page and "1.5 / 2" in page, (
        "the feedback of a graded written answer shows its score, comment and rubric")
    assert "alice" not in _run(course_copy, "autograder/manual.py", "pending").stdout

    from nbgrader.api import Gradebook

    with Gradebook("sqlite:///" + str(course_copy / "autograder" / "course" / "gradebook.db")) as gb:
        grade = gb.find_grade("why_abs", ASG, ASG, "alice")
        assert grade.manual_score == 1.5 and not grade.needs_manual_grade
