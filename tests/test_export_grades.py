"""Grades out for an LMS (autograder/export_grades.py): Canvas's and Moodle's import layouts,
and a pending written answer never exported as a zero."""
from __future__ import annotations

import csv
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "autograder"))
from export_grades import export  # noqa: E402

FIELDS = ["student", "assignment", "status", "score", "max_score", "auto_score", "auto_max", "manual_score",
          "manual_max", "manual_pending", "reason"]


@pytest.fixture()
def grades(tmp_path):
    path = tmp_path / "grades.csv"
    rows = [
        ["ana", "asg", "graded", "20", "20", "17", "17", "3", "3", "0", ""],
        ["bo", "asg", "graded", "", "20", "15", "17", "0", "3", "3", ""],           # written answer pending
        ["cy", "asg", "missing", "0", "20", "0", "0", "0", "0", "0", "no asg.ipynb in the student's folder"],
        ["di", "asg", "flagged", "18", "20", "15", "17", "3", "3", "0", "similar code, for review: ana (0.91)"],
        ["ed", "other", "graded", "5", "5", "5", "5", "0", "0", "0", ""],
    ]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(FIELDS)
        w.writerows(rows)
    roster = tmp_path / "roster.csv"
    roster.write_text("lms_id,student\n101,ana\n102,bo\n103,cy\n")
    return path, roster


def _read(path):
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def test_canvas_layout_ids_from_the_roster_and_pending_left_empty(grades, tmp_path):
    path, roster = grades
    out = tmp_path / "canvas.csv"
    notes = export("asg", "canvas", out, roster, "Assignment 1 (4242)", grades=path)
    table = _read(out)
    assert table[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Assignment 1 (4242)"]
    body = {r[0]: r for r in table[1:]}
    assert body["ana"][1] == "101" and body["ana"][5] == "20"
    assert body["bo"][5] == "", "a pending written answer must not be exported as a grade"
    assert "di" not in body and any("di: not in the roster" in n for n in notes)
    assert any("bo: 3 points of written answers not graded yet" in n for n in notes)
    with pytest.raises(SystemExit, match="roster"):
        export("asg", "canvas", out, None, grades=path)


def test_moodle_and_plain_csv(grades, tmp_path):
    path, roster = grades
    export("asg", "moodle", tmp_path / "m.csv", roster, grades=path)
    assert _read(tmp_path / "m.csv") == [["ID number", "Grade"], ["101", "20"], ["102", ""], ["103", "0"], ["di", "18"]]
    notes = export("asg", "csv", tmp_path / "p.csv", grades=path)
    plain = {r[0]: r for r in _read(tmp_path / "p.csv")[1:]}
    assert plain["bo"][1] == "" and plain["bo"][5] == "3" and plain["di"][3] == "flagged"
    assert any(n.startswith("cy: missing") for n in notes)
    with pytest.raises(SystemExit, match="no grades"):
        export("nope", "csv", tmp_path / "x.csv", grades=path)
