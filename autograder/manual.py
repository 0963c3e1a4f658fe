"""Written answers graded by hand: what is pending, recording a score, rubrics in feedback.

Every assignment has manually graded answer cells (nbgrader "manually graded answer": a
markdown cell with ``grade`` and ``solution`` set). In ``solutions/`` the cell holds a model
answer followed by a paragraph that starts ``**Rubric (P points).**``; the release replaces
the whole cell with "YOUR ANSWER HERE". ``make grade`` scores everything a machine can judge
and leaves these cells *pending* (grades.csv: ``manual_pending`` > 0 and an empty ``score``,
never a silent zero); an answer left as released is scored 0 by nbgrader and reported as
unanswered. The instructor then grades them, with nbgrader's formgrader or with

    python autograder/manual.py pending [--assignment A]            what is left to grade
    python autograder/manual.py set STUDENT ASSIGNMENT CELL POINTS [--comment TEXT]
    python autograder/manual.py sync [--assignment A]                after using formgrader

(``make grade-manual`` wraps these). ``set`` and ``sync`` rewrite the student's grades.csv
row from the gradebook (status and reason kept) and regenerate the feedback page, which
shows each written answer's score, comment and rubric once that answer has been graded,
and only then.
"""
from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

RUBRIC = re.compile(r"\*\*Rubric\b")
_BEGIN, _END = "<!-- written-answers: begin -->", "<!-- written-answers: end -->"


def manual_cells(assignment: str, repo: Path = REPO) -> dict[str, dict]:
    """grade_id -> {"points", "rubric" (markdown), "source"} for every manually graded answer
    cell of the source notebook, in notebook order."""
    import nbformat

    nb = nbformat.read(Path(repo) / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    out = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and meta.get("solution"):
            text = cell.source
            m = RUBRIC.search(text)
            out[meta["grade_id"]] = {"points": float(meta.get("points", 0)), "source": text,
                                     "rubric": text[m.start():].strip() if m else ""}
    return out


def rubric_section(assignment: str, grades: dict[str, tuple[float | None, float, str]], repo: Path = REPO) -> str:
    """The feedback page's section on written answers. ``grades``: grade_id -> (manual score
    or None while pending, max, comment). A rubric is shown only for a graded answer."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    cells = manual_cells(assignment, repo)
    if not cells:
        return ""
    parts = [_BEGIN, '<section id="written-answers" style="max-width: 60em; margin: 2em auto; padding: 0 1em;">',
             "<h2>Written answers: scores and rubrics</h2>"]
    for gid, info in cells.items():
        score, maximum, comment = grades.get(gid, (None, info["points"], ""))
        if score is None:
            parts.append(f"<h3>{html.escape(gid)}: not graded yet (out of {maximum:g})</h3>"
                         "<p>Your instructor grades this answer by hand; its rubric appears here once it is graded.</p>")
            continue
        parts.append(f"<h3>{html.escape(gid)}: {score:g} / {maximum:g}</h3>")
        if comment:
            parts.append(f"<p><strong>Comment:</strong> {html.escape(comment)}</p>")
        if info["rubric"]:
            parts.append(f'<div class="rubric">{markdown2html_mistune(info["rubric"])}</div>')
    parts += ["</section>", _END]
    return "\n".join(parts)


def add_to_feedback(page: Path, section: str) -> None:
    """Put ``section`` at the end of a feedback page (replacing an earlier one)."""
    text = page.read_text(encoding="utf-8")
    text = re.sub(re.escape(_BEGIN) + r".*?" + re.escape(_END), "", text, flags=re.S)
    if section:
        end = text.rfind("</body>")
        text = text[:end] + section + "\n" + text[end:] if end >= 0 else text + section
    page.write_text(text, encoding="utf-8")


def written_grades(gradebook_url: str, student: str, assignment: str) -> dict[str, tuple[float | None, float, str]]:
    """grade_id -> (manual score, or None while pending; max; the grader's comment)."""
    from nbgrader.api import Gradebook, MissingEntry

    cells = manual_cells(assignment)
    out = {}
    with Gradebook(gradebook_url) as gb:
        for gid, info in cells.items():
            try:
                grade = gb.find_grade(gid, assignment, assignment, student)
            except MissingEntry:
                continue
            try:
                comment = gb.find_comment(gid, assignment, assignment, student).comment or ""
            except MissingEntry:
                comment = ""
            pending = grade.manual_score is None and (grade.auto_score is None or grade.needs_manual_grade)
            out[gid] = (None if pending else float(grade.score), float(grade.max_score), comment)
    return out


def refresh(students: list[tuple[str, str]]) -> None:
    """Re-read each (student, assignment) from the gradebook into grades.csv (status and
    reason kept) and regenerate its feedback page with the written answers' section."""
    import csv

    import grade

    rows = {}
    if grade.GRADES_CSV.is_file():
        with grade.GRADES_CSV.open(newline="") as fh:
            rows = {(r["student"], r["assignment"]): r for r in csv.DictReader(fh)}
    results = []
    for student, asg in students:
        res = grade.read_grades(student, asg)
        if res is None:
            raise SystemExit(f"{student} has no graded submission of {asg} in the gradebook")
        old = rows.get((student, asg))
        if old:  # what grading decided besides the points: status, reason and lateness stay
            res.status, res.reason = old["status"], old["reason"]
            res.submitted_at = old.get("submitted_at", "")
            res.late_hours = float(old.get("late_hours") or 0)
            res.late_penalty = float(old.get("late_penalty") or 0)
        results.append(res)
    grade.write_csv(results)
    for asg in sorted({a for _, a in students}):
        for student in sorted(s for s, a in students if a == asg):
            grade.nbgrader("generate_feedback", asg, f"--student={student}", "--force", check=False)
            page = grade.FEEDBACK / student / asg / f"{asg}.html"
            if page.is_file():
                add_to_feedback(page, rubric_section(asg, written_grades(grade.GRADEBOOK_URL, student, asg)))


def pending(assignment: str | None = None) -> list[tuple[str, str, str, float]]:
    """(student, assignment, cell, max points) of every written answer still to grade."""
    from nbgrader.api import Gradebook

    import grade

    out = []
    with Gradebook(grade.GRADEBOOK_URL) as gb:
        for asg in gb.assignments:
            if assignment and asg.name != assignment:
                continue
            for sub in asg.submissions:
                for nb in sub.notebooks:
                    for g in nb.grades:
                        if g.needs_manual_grade:
                            out.append((sub.student.id, asg.name, g.name, float(g.max_score)))
    return sorted(out)


def set_score(student: str, assignment: str, cell: str, points: float, comment: str | None = None) -> None:
    """Record ``points`` for a written answer (0 <= points <= the cell's points) and its comment."""
    from nbgrader.api import Gradebook, MissingEntry

    import grade

    cells = manual_cells(assignment)
    if cell not in cells:
        raise SystemExit(f"{assignment} has no written answer {cell!r}; its written answers: {', '.join(cells) or 'none'}")
    with Gradebook(grade.GRADEBOOK_URL) as gb:
        try:
            g = gb.find_grade(cell, assignment, assignment, student)
        except MissingEntry:
            raise SystemExit(f"no graded submission of {assignment} by {student!r}: run make grade first") from None
        if not 0 <= points <= g.max_score:
            raise SystemExit(f"{cell}: points must be between 0 and {g.max_score:g}, got {points:g}")
        g.manual_score = points
        g.needs_manual_grade = False
        if comment is not None:
            try:
                gb.find_comment(cell, assignment, assignment, student).manual_comment = comment
            except MissingEntry:
                pass
        gb.db.commit()
    refresh([(student, assignment)])


def main(argv: list[str] | None = None) -> int:
    import grade

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="gradebook URL (default: SQLite in autograder/course/gradebook.db)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pending", help="list the written answers still to grade")
    p.add_argument("--assignment")
    s = sub.add_parser("set", help="record a written answer's score (and comment)")
    s.add_argument("student")
    s.add_argument("assignment")
    s.add_argument("cell", help="the answer cell's grade_id")
    s.add_argument("points", type=float)
    s.add_argument("--comment")
    y = sub.add_parser("sync", help="after grading in formgrader: rewrite grades.csv rows and feedback")
    y.add_argument("--assignment")
    args = parser.parse_args(argv)
    if args.db:
        grade.GRADEBOOK_URL = args.db
    if args.command == "pending":
        rows = pending(args.assignment)
        for student, asg, cell, pts in rows:
            print(f"{student}\t{asg}\t{cell}\t{pts:g} points")
        print(f"{len(rows)} written answer(s) to grade", file=sys.stderr)
    elif args.command == "set":
        set_score(args.student, args.assignment, args.cell, args.points, args.comment)
        print(f"{args.student} / {args.assignment} / {args.cell}: {args.points:g} points recorded; "
              f"grades.csv and the feedback page updated")
    else:
        from nbgrader.api import Gradebook

        with Gradebook(grade.GRADEBOOK_URL) as gb:
            pairs = [(s.student.id, a.name) for a in gb.assignments if not args.assignment or a.name == args.assignment
                     for s in a.submissions if manual_cells(a.name)]
        refresh(pairs)
        print(f"{len(pairs)} submission(s) re-read from the gradebook")
    return 0


if __name__ == "__main__":
    sys.exit(main())
