"""Grades out, for a learning-management system's gradebook import.

    python autograder/export_grades.py ASSIGNMENT --format canvas|moodle|csv [--roster roster.csv]
                                       [--column "Assignment 1 (12345)"] [--out FILE]

(``make export-grades ASSIGNMENT=... FORMAT=...``) reads ``autograder/course/grades.csv`` and writes

* ``canvas``: Canvas's gradebook import CSV (the layout of Canvas's own gradebook export:
  ``Student, ID, SIS User ID, SIS Login ID, Section`` and one column per assignment, named
  exactly as in that export, ``<assignment name> (<assignment id>)``: pass it as ``--column``).
  Canvas matches rows on ``ID``, the Canvas user id, which comes from the roster (``lms_id``);
* ``moodle``: a CSV for Moodle's "Import grades: CSV file" (columns ``ID number``, the roster's
  ``lms_id`` or the student id, and ``Grade``; map them in Moodle's import form);
* ``csv``: student, score, max_score, status and the grading state, for anything else.

A submission whose written answers are not all graded yet (grades.csv: ``manual_pending`` > 0)
has no final score: its grade cell is left empty, so an import never records it as zero,
and the command says how many such rows it left out. Flagged, failed and missing rows are
exported with their score (0 for missing) and reported.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
GRADES_CSV = HERE / "course" / "grades.csv"


def rows_for(assignment: str, grades: Path = GRADES_CSV) -> list[dict[str, str]]:
    if not grades.is_file():
        raise SystemExit(f"{grades} does not exist: run make grade first")
    with grades.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["assignment"] == assignment]
    if not rows:
        raise SystemExit(f"no grades for {assignment} in {grades}")
    return rows


def export(assignment: str, fmt: str, out: Path, roster: Path | None = None, column: str | None = None,
           grades: Path = GRADES_CSV) -> list[str]:
    """Write the export; returns notes (rows left empty and why)."""
    rows = rows_for(assignment, grades)
    lms_ids: dict[str, str] = {}
    if roster:
        sys.path.insert(0, str(HERE))
        from lms import read_roster

        lms_ids = {student: lms_id for lms_id, student in read_roster(roster).items()}
    if fmt == "canvas" and not roster:
        raise SystemExit("--format canvas needs --roster: Canvas matches rows on its user id (the roster's lms_id)")
    notes = []
    table = []
    for r in sorted(rows, key=lambda r: r["student"]):
        pending = float(r.get("manual_pending") or 0)
        score = r["score"] if not pending else ""
        if pending:
            notes.append(f"{r['student']}: {pending:g} points of written answers not graded yet: grade left empty")
        if r["status"] != "graded":
            notes.append(f"{r['student']}: {r['status']} ({r['reason']})")
        table.append((r["student"], score, r))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        if fmt == "canvas":
            w.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column or f"{assignment}"])
            for student, score, _ in table:
                if student not in lms_ids:
                    notes.append(f"{student}: not in the roster, left out of the Canvas file")
                    continue
                w.writerow([student, lms_ids[student], "", "", "", score])
        elif fmt == "moodle":
            w.writerow(["ID number", "Grade"])
            for student, score, _ in table:
                w.writerow([lms_ids.get(student, student), score])
        else:
            w.writerow(["student", "score", "max_score", "status", "auto_score", "manual_pending", "reason"])
            for student, score, r in table:
                w.writerow([student, score, r["max_score"], r["status"], r.get("auto_score", ""),
                            r.get("manual_pending", ""), r["reason"]])
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("assignment")
    parser.add_argument("--format", choices=("canvas", "moodle", "csv"), default="csv")
    parser.add_argument("--roster", type=Path, help="CSV with columns lms_id,student (needed for canvas)")
    parser.add_argument("--column", help="Canvas: the assignment's column exactly as in Canvas's gradebook export")
    parser.add_argument("--out", type=Path, help="default: autograder/course/export/<assignment>-<format>.csv")
    args = parser.parse_args(argv)
    out = args.out or HERE / "course" / "export" / f"{args.assignment}-{args.format}.csv"
    notes = export(args.assignment, args.format, out, args.roster, args.column)
    print(f"wrote {out}")
    for n in notes:
        print(f"  {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
