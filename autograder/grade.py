"""Autograde a class: ``python autograder/grade.py SUBMISSIONS_DIR [--assignment NAME]``.

``SUBMISSIONS_DIR`` holds one entry per student, as a learning-management system exports
them. Accepted layouts, for assignment ``asg``:

    DIR/<student>/asg.ipynb
    DIR/<student>/asg/asg.ipynb
    DIR/<student>.ipynb            (only with --assignment: the file is that assignment)

Every submission is copied into nbgrader's ``submitted`` folder (a re-submission replaces
that student's copy only), autograded in its own nbgrader process so that one broken
notebook cannot stop the class, and given feedback. Grades land in
``autograder/course/grades.csv`` (one row per student and assignment, per-test points
included); a student whose notebook could not be graded gets a row with score 0 and the
reason. The gradebook keeps every earlier grade.
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # scan.py
REPO = HERE.parent
COURSE = HERE / "course"
SUBMITTED = COURSE / "submitted"
AUTOGRADED = COURSE / "autograded"
FEEDBACK = COURSE / "feedback"
GRADEBOOK_URL = "sqlite:///" + str(COURSE / "gradebook.db")  # --db replaces it (e.g. PostgreSQL)
GRADES_CSV = COURSE / "grades.csv"

_STUDENT_ID = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class Result:
    student: str
    assignment: str
    status: str = "graded"  # graded | flagged | failed | missing
    reason: str = ""
    score: float = 0.0
    max_score: float = 0.0
    cells: dict[str, float] = field(default_factory=dict)


def assignments() -> list[str]:
    """Assignments are the folders of solutions/ that hold a notebook of the same name."""
    src = REPO / "solutions"
    return sorted(p.name for p in src.iterdir() if (p / f"{p.name}.ipynb").is_file()) if src.is_dir() else []


def student_id(name: str) -> str:
    """A safe nbgrader student id from an LMS folder or file name (no path tricks)."""
    sid = _STUDENT_ID.sub("_", name).strip("._")
    if not sid:
        raise ValueError(f"cannot make a student id from {name!r}")
    return sid


def find_submissions(root: Path, only: str | None) -> tuple[dict[tuple[str, str], Path | None], list[str]]:
    """Map (student, assignment) -> notebook path (None when the student folder lacks it)."""
    known = assignments()
    if only is not None and only not in known:
        raise SystemExit(f"unknown assignment {only!r}; known: {', '.join(known) or 'none'}")
    wanted = [only] if only else known
    found: dict[tuple[str, str], Path | None] = {}
    notes: list[str] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix == ".ipynb":
            if only is None:
                notes.append(f"skipped {entry.name}: a loose notebook needs --assignment to say which assignment it is")
                continue
            found[(student_id(entry.stem), only)] = entry
        elif entry.is_dir():
            sid = student_id(entry.name)
            hits = {}
            for asg in wanted:
                for cand in (entry / f"{asg}.ipynb", entry / asg / f"{asg}.ipynb"):
                    if cand.is_file():
                        hits[asg] = cand
                        break
            if only:
                found[(sid, only)] = hits.get(only)
            elif hits:
                found.update({(sid, asg): path for asg, path in hits.items()})
            else:
                notes.append(f"skipped {entry.name}/: no notebook named after an assignment ({', '.join(wanted)})")
    return found, notes


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # nbgrader calls `alembic` and starts kernels: both must come from this environment.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("FLOWLIB_PROGRESS", "0")
    return env


def nbgrader(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run one nbgrader command with the course configuration (autograder/nbgrader_config.py)."""
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.db_url={GRADEBOOK_URL}"],
        cwd=HERE, env=_env(), capture_output=True, text=True,
    )
    if "Exception while loading config file" in proc.stderr:
        # nbgrader would go on with its defaults (other folders, no timeout): never grade like that.
        raise SystemExit(f"autograder/nbgrader_config.py failed to load:\n{proc.stderr[-3000:]}")
    if check and proc.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def register(assignment: str) -> None:
    """Record the assignment's graded cells in the gradebook (what autograde checks against),
    writing the release copy to a scratch folder so notebooks/ is left alone."""
    with tempfile.TemporaryDirectory() as scratch:
        nbgrader("generate_assignment", assignment, "--force", f"--CourseDirectory.release_directory={scratch}")


def import_submission(student: str, assignment: str, notebook: Path) -> None:
    dest = SUBMITTED / student / assignment
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copyfile(notebook, dest / f"{assignment}.ipynb")
    stamp = _dt.datetime.fromtimestamp(notebook.stat().st_mtime, _dt.timezone.utc)
    (dest / "timestamp.txt").write_text(stamp.strftime("%Y-%m-%d %H:%M:%S.%f %Z"))


def _failure_reason(proc: subprocess.CompletedProcess) -> str:
    text = proc.stdout + proc.stderr
    for pattern in (r"(No such kernel[^\n]*)", r"(Kernel died[^\n]*)", r"(DeadKernelError[^\n]*)", r"(CellTimeoutError[^\n]*)",
                    r"(NotJSONError[^\n]*)", r"(\w+Error: [^\n]*)"):
        m = re.findall(pattern, text)
        if m:
            return m[-1].strip()[:300]
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else f"nbgrader exited with code {proc.returncode}")[:300]


def read_grades(student: str, assignment: str) -> Result | None:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(GRADEBOOK_URL) as gb:
        try:
            sub = gb.find_submission(assignment, student)
        except MissingEntry:
            return None
        res = Result(student, assignment, score=float(sub.score), max_score=float(sub.max_score))
        for nb in sub.notebooks:
            for grade in nb.grades:
                if grade.max_score > 0 and grade.cell.cell_type == "code":
                    res.cells[grade.name] = float(grade.score)
        return res


def max_score(assignment: str) -> float:
    from nbgrader.api import Gradebook

    with Gradebook(GRADEBOOK_URL) as gb:
        return float(gb.find_assignment(assignment).max_score)


def grade_one(student: str, assignment: str, kernel: str | None = None, sandboxed: bool = False) -> Result:
    """Autograde one student in its own nbgrader process. ``sandboxed``: the kernel is
    autograder/sandbox.py's, spoken to over IPC sockets in a folder of this student's own."""
    extra = [f"--Execute.kernel_name={kernel}"] if kernel else []
    if not sandboxed:
        proc = nbgrader("autograde", assignment, f"--student={student}", "--force", "--create", *extra, check=False)
    else:
        import sandbox

        with tempfile.TemporaryDirectory(prefix=f"kernel-{student}-") as sockets:
            proc = nbgrader("autograde", assignment, f"--student={student}", "--force", "--create",
                            f"--Execute.kernel_name={sandbox.KERNEL_NAME}", "--KernelManager.transport=ipc",
                            f"--KernelManager.ip={sockets}/kernel-ipc", check=False)
    autograded = AUTOGRADED / student / assignment / f"{assignment}.ipynb"
    failed = Result(student, assignment, status="failed", max_score=max_score(assignment))
    if proc.returncode != 0 or not autograded.is_file():
        failed.reason = _failure_reason(proc)
        return failed
    res = read_grades(student, assignment)
    if res is None:
        failed.reason = "autograde left no grade in the gradebook"
        return failed
    return res


def generate_feedback(assignment: str, results: list[Result]) -> None:
    """Feedback for the whole assignment in one nbgrader process (one per student would
    cost a process start each); a graded student left without feedback is told why."""
    proc = nbgrader("generate_feedback", assignment, "--force", check=False)
    for r in results:
        page = FEEDBACK / r.student / assignment / f"{assignment}.html"
        if r.status == "graded" and r.assignment == assignment and not page.is_file():
            r.reason = "graded; feedback failed: " + _failure_reason(proc)


def tampering_findings(student: str, assignment: str) -> list[str]:
    """Static scan of the submitted notebook (autograder/scan.py); [] if it is not JSON."""
    import nbformat

    from scan import locked_cells, scan_notebook

    try:
        submitted = nbformat.read(SUBMITTED / student / assignment / f"{assignment}.ipynb", as_version=4)
    except Exception:  # unreadable: autograde reports why
        return []
    source = nbformat.read(REPO / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    ids, names = locked_cells(source)
    return scan_notebook(submitted, ids, names)


def flag(res: Result, findings: list[str]) -> Result:
    """Hold a tampering submission at 0 for review, keeping what nbgrader computed."""
    shown = "; ".join(findings[:5]) + (f"; and {len(findings) - 5} more" if len(findings) > 5 else "")
    res.reason = f"flagged for review (autograder score {res.score:g}/{res.max_score:g}): {shown}"
    res.status, res.score = "flagged", 0.0
    return res


def write_csv(results: list[Result]) -> None:
    """Merge this run's rows into grades.csv: rows of students not graded now are kept."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    if GRADES_CSV.is_file():
        with GRADES_CSV.open(newline="") as fh:
            for row in csv.DictReader(fh):
                rows[(row["student"], row["assignment"])] = row
    for r in results:
        row = {"student": r.student, "assignment": r.assignment, "status": r.status,
               "score": f"{r.score:g}", "max_score": f"{r.max_score:g}", "reason": r.reason}
        row.update({cell: f"{pts:g}" for cell, pts in r.cells.items()})
        rows[(r.student, r.assignment)] = row
    fixed = ["student", "assignment", "status", "score", "max_score", "reason"]
    extra = sorted({k for row in rows.values() for k in row} - set(fixed))
    tmp = GRADES_CSV.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fixed + extra, restval="")
        writer.writeheader()
        for key in sorted(rows):
            writer.writerow(rows[key])
    tmp.replace(GRADES_CSV)  # atomic: an interrupted run never leaves a half-written CSV


def summarise(results: list[Result], notes: list[str]) -> str:
    lines = [f"graded {sum(r.status == 'graded' for r in results)} of {len(results)} submissions"
             f" ({sum(r.status == 'flagged' for r in results)} flagged for review)"]
    for r in results:
        if r.status != "graded":
            lines.append(f"  {r.student} / {r.assignment}: {r.status} ({r.reason})")
    lines.extend(f"  note: {n}" for n in notes)
    for asg in sorted({r.assignment for r in results}):
        graded = [r for r in results if r.assignment == asg and r.status == "graded"]
        if not graded:
            continue
        mean = sum(r.score for r in graded) / len(graded)
        lines.append(f"{asg}: mean {mean:.2f} / {graded[0].max_score:g}")
        cells = sorted({c for r in graded for c in r.cells})
        for c in cells:
            lines.append(f"  {c}: mean {sum(r.cells.get(c, 0.0) for r in graded) / len(graded):.2f}")
    lines.append(f"grades: {GRADES_CSV}")
    lines.append(f"feedback: {FEEDBACK}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", type=Path, help="folder with one folder or .ipynb per student")
    parser.add_argument("--assignment", help="grade only this assignment (required for loose .ipynb files)")
    parser.add_argument("--kernel", help="Jupyter kernelspec to run submissions with (e.g. a CUDA kernel); "
                                         "default: the notebook's python3")
    parser.add_argument("--sandbox", action="store_true",
                        help="run each kernel in bubblewrap: no network, only the submission's folder "
                             "mounted (writable) beside Python itself (autograder/sandbox.py)")
    parser.add_argument("--db", help="gradebook URL, e.g. postgresql+psycopg://user@host/db "
                                     "(default: SQLite in autograder/course/gradebook.db)")
    parser.add_argument("--workers", type=int, default=1, help="students graded at once (needs a server database)")
    args = parser.parse_args(argv)
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder of submissions")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.db:
        global GRADEBOOK_URL
        GRADEBOOK_URL = args.db
    if args.workers > 1 and GRADEBOOK_URL.startswith("sqlite"):
        parser.error("--workers > 1 needs a database server (--db postgresql+psycopg://...): "
                     "parallel writers to one SQLite file fail with 'database is locked'")
    if args.sandbox and args.kernel:
        parser.error("--sandbox runs its own kernel (flowlib-sandbox); leave out --kernel")
    if args.sandbox:
        import sandbox

        sandbox.bwrap()  # fails here, with the fix, rather than once per student
        sandbox.install()
    found, notes = find_submissions(args.submissions.resolve(), args.assignment)
    if not found:
        print(f"no submissions found in {args.submissions}", *notes, sep="\n")
        return 1
    COURSE.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    for asg in sorted({a for _, a in found}):
        register(asg)
        todo = []
        for (student, a), notebook in sorted(found.items()):
            if a != asg:
                continue
            if notebook is None:
                results.append(Result(student, asg, status="missing", max_score=max_score(asg),
                                      reason=f"no {asg}.ipynb in the student's folder"))
                continue
            import_submission(student, asg, notebook)
            todo.append(student)

        def grade_student(student: str, asg: str = asg) -> Result:
            res = grade_one(student, asg, args.kernel, args.sandbox)
            findings = tampering_findings(student, asg)
            if findings and res.status == "graded":
                res = flag(res, findings)
            print(f"{student:>20} {asg}: {res.status} {res.score:g}/{res.max_score:g} {res.reason}", flush=True)
            return res

        # Each student is its own nbgrader process; threads only wait for them.
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            results.extend(pool.map(grade_student, todo))
        generate_feedback(asg, results)
    write_csv(results)
    print(summarise(results, notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
