"""Autograde a class: ``python autograder/grade.py SUBMISSIONS_DIR [--assignment NAME]``.

``SUBMISSIONS_DIR`` holds one entry per student, as a learning-management system exports
them. Accepted layouts, for assignment ``asg``:

    DIR/<student>/asg.ipynb
    DIR/<student>/asg/asg.ipynb
    DIR/<student>.ipynb            (only with --assignment: the file is that assignment)

Every submission is copied into nbgrader's ``submitted`` folder (a re-submission replaces
that student's copy only), autograded as a task of its own (autograder/engine.py: a fresh
process and kernel per student, in this process's turn or on Dask workers with --workers N
or --scheduler ADDRESS) so that one broken notebook cannot stop the class, and given feedback. Grades land in
``autograder/course/grades.csv`` (one row per student and assignment, per-test points
included); a student whose notebook could not be graded gets a row with score 0 and the
reason. The gradebook keeps every earlier grade.
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # scan.py
REPO = HERE.parent
COURSE = HERE / "course"
SUBMITTED = COURSE / "submitted"
AUTOGRADED = COURSE / "autograded"
FEEDBACK = COURSE / "feedback"
SIMILARITY = COURSE / "similarity"  # copy-detection reports, one HTML page per assignment
GRADEBOOK_URL = "sqlite:///" + str(COURSE / "gradebook.db")  # --db replaces it (e.g. PostgreSQL)
GRADES_CSV = COURSE / "grades.csv"
COLLECTED = COURSE / "collected"  # `make collect`: the exchange's latest submission per student, nbgrader's layout

_STUDENT_ID = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class Result:
    student: str
    assignment: str
    status: str = "graded"  # graded | flagged | failed | missing
    reason: str = ""
    score: float = 0.0
    max_score: float = 0.0
    cells: dict[str, float | None] = field(default_factory=dict)  # grade_id -> points (None: written answer pending)
    auto_score: float = 0.0      # points of the cells a machine judged
    auto_max: float = 0.0
    manual_score: float = 0.0    # points of the written answers graded so far (autograder/manual.py)
    manual_max: float = 0.0
    manual_pending: float = 0.0  # points of written answers not graded yet: no final score until 0
    submitted_at: str = ""       # the submission's time (timestamp.txt), UTC
    late_hours: float = 0.0      # after the due date and the student's extension (autograder/deadlines.py)
    late_penalty: float = 0.0    # points taken off the total by the term's late policy

    @property
    def final(self) -> str:
        """grades.csv's ``score``: the total less the late penalty (never below 0), or empty
        while a written answer is ungraded."""
        return "" if self.manual_pending else f"{max(0.0, self.score - self.late_penalty):g}"


def assignments() -> list[str]:
    """Assignments are the folders of solutions/ that hold a notebook of the same name."""
    src = REPO / "solutions"
    return sorted(p.name for p in src.iterdir() if (p / f"{p.name}.ipynb").is_file()) if src.is_dir() else []


def student_id(name: str) -> str:
    """A safe nbgrader student id from an LMS folder or file name (no path tricks).

    A name that is already safe (ASCII letters, digits, ``_.-``) is kept as it is. Any other
    is transliterated to ASCII (Unicode NFKD, accents dropped) and gets a short hash of the
    original name, so that names differing only in what was dropped stay distinct students:
    ``Zoé`` -> ``Zoe-<hash>``, ``Zoë`` -> ``Zoe-<other hash>``, ``李雷`` -> ``student-<hash>``."""
    name = unicodedata.normalize("NFC", name)
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    sid = _STUDENT_ID.sub("_", ascii_name).strip("._")
    if sid == name:
        return sid
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return f"{sid or 'student'}-{digest}"


@dataclass
class Refused:
    """An export entry that is not graded, with the reason (grades.csv: status ``failed``)."""
    reason: str


def _unsafe(path: Path, root: Path) -> str:
    """Why ``path`` (an entry of the export ``root``) may not be read, or "" when it may:
    a symbolic link anywhere below the export, a path leading outside it, or not a regular
    file or folder."""
    rel = path.relative_to(root)
    for depth in range(1, len(rel.parts) + 1):
        part = root.joinpath(*rel.parts[:depth])
        if part.is_symlink():
            return f"refused: {'/'.join(rel.parts[:depth])} is a symbolic link (to {os.readlink(part)}); hand in a plain file"
    try:
        if not path.resolve(strict=True).is_relative_to(root.resolve()):
            return f"refused: {rel} resolves outside the export folder"
        mode = path.lstat().st_mode
    except OSError as err:
        return f"refused: {rel} cannot be read ({err.strerror})"
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return f"refused: {rel} is not a regular file"
    return ""


def find_submissions(root: Path, only: str | None) -> tuple[dict[tuple[str, str], Path | Refused | None], list[str]]:
    """Map (student, assignment) -> notebook path (None when the student folder lacks it,
    a :class:`Refused` with the reason when the entry may not be graded: a symbolic link,
    a path outside the export, or two export entries that map to the same student id)."""
    known = assignments()
    if only is not None and only not in known:
        raise SystemExit(f"unknown assignment {only!r}; known: {', '.join(known) or 'none'}")
    wanted = [only] if only else known
    found: dict[tuple[str, str], Path | Refused | None] = {}
    owner: dict[str, str] = {}  # student id -> the export entry it came from
    notes: list[str] = []

    def put(sid: str, entry: Path, asg: str, value: Path | Refused | None) -> None:
        if owner.setdefault(sid, entry.name) != entry.name:
            first = owner[sid]
            reason = (f"refused: the export entries {first!r} and {entry.name!r} both map to the student id "
                      f"{sid!r}; neither is graded (rename one)")
            notes.append(reason)
            for key in [k for k in found if k[0] == sid] + [(sid, asg)]:
                found[key] = Refused(reason)
            return
        if isinstance(found.get((sid, asg)), Refused):
            return
        found[(sid, asg)] = value

    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        is_notebook = entry.suffix == ".ipynb" and (entry.is_file() or entry.is_symlink())
        if is_notebook and only is None:
            notes.append(f"skipped {entry.name}: a loose notebook needs --assignment to say which assignment it is")
            continue
        if not is_notebook and not entry.is_dir():
            if entry.is_symlink():
                notes.append(f"skipped {entry.name}: a symbolic link, not a student folder")
            continue
        sid = student_id(entry.stem if is_notebook else entry.name)
        why = _unsafe(entry, root)
        if why:
            for asg in wanted:
                put(sid, entry, asg, Refused(why))
            continue
        if is_notebook:
            put(sid, entry, only, entry)
            continue
        hits: dict[str, Path | Refused] = {}
        for asg in wanted:
            for cand in (entry / f"{asg}.ipynb", entry / asg / f"{asg}.ipynb"):
                if cand.is_file() or cand.is_symlink():
                    why = _unsafe(cand, root)
                    hits[asg] = Refused(why) if why else cand
                    break
        if only:
            put(sid, entry, only, hits.get(only))
        elif hits:
            for asg, path in hits.items():
                put(sid, entry, asg, path)
        else:
            notes.append(f"skipped {entry.name}/: no notebook named after an assignment ({', '.join(wanted)})")
    return found, notes


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # nbgrader calls `alembic` and starts kernels: both must come from this environment.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("FLOWLIB_PROGRESS", "0")
    return env


NOTEBOOK_TIMEOUT = int(os.environ.get("FLOWLIB_NOTEBOOK_TIMEOUT", "1800"))  # one nbgrader process, in s


def nbgrader(*args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run one nbgrader command with the course configuration (autograder/nbgrader_config.py).

    Its output goes to files, not pipes (a process that a submission leaves behind holding
    a pipe open would block the grader); it runs in a session of its own, gets ``timeout``
    seconds (FLOWLIB_NOTEBOOK_TIMEOUT, default 1800) and its whole process group is killed
    when it ends or times out."""
    timeout = NOTEBOOK_TIMEOUT if timeout is None else timeout
    cmd = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.db_url={GRADEBOOK_URL}"]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=HERE, env=_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                text=True, start_new_session=True)
        try:
            returncode = proc.wait(timeout=timeout)
            late = ""
        except subprocess.TimeoutExpired:
            returncode = -signal.SIGKILL
            late = f"\nGradingTimeout: nbgrader {args[0]} ran past {timeout:g} s and was stopped\n"
        finally:
            try:  # the whole group: nbgrader and anything it left behind
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
        out.seek(0)
        err.seek(0)
        proc = subprocess.CompletedProcess(cmd, returncode, out.read(), err.read() + late)
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


def import_submission(student: str, assignment: str, notebook: Path, trust_timestamp: bool = False) -> None:
    """Copy a submission into nbgrader's ``submitted`` folder: the file itself, never what a
    link points to (a link or anything but a regular file raises ValueError with the reason),
    then :func:`tidy_metadata` on the copy. Its time is the file's modification time, or, with
    ``trust_timestamp`` (submissions collected from the exchange), nbgrader's timestamp.txt
    beside it."""
    mode = os.lstat(notebook).st_mode
    if not stat.S_ISREG(mode):
        raise ValueError(f"refused: {notebook.name} is {'a symbolic link' if stat.S_ISLNK(mode) else 'not a regular file'}")
    dest = SUBMITTED / student / assignment
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copyfile(notebook, dest / f"{assignment}.ipynb", follow_symlinks=False)
    collected = notebook.parent / "timestamp.txt"
    if trust_timestamp and collected.is_file() and not collected.is_symlink():
        # handed in through the exchange: nbgrader's submission time (make collect), and the
        # secret that release_feedback names the student's feedback page with
        (dest / "timestamp.txt").write_text(collected.read_text()[:100])
        secret = notebook.parent / "submission_secret.txt"
        if secret.is_file() and not secret.is_symlink() and secret.stat().st_size <= 1024:
            (dest / "submission_secret.txt").write_text(secret.read_text())
    else:
        stamp = _dt.datetime.fromtimestamp(notebook.lstat().st_mtime, _dt.timezone.utc)
        (dest / "timestamp.txt").write_text(stamp.strftime("%Y-%m-%d %H:%M:%S.%f %Z"))
    tidy_metadata(dest / f"{assignment}.ipynb")


def tidy_metadata(path: Path) -> int:
    """Undo what copy-pasting a cell does to nbgrader metadata, on the submitted copy, so
    that the notebook is graded normally instead of failing with "nbgrader update .": a
    cell copied in JupyterLab keeps its grade_id, nbgrader keeps the last cell with an id
    and leaves ``nbgrader: {}`` on the others, which its own validation then rejects. Here
    the earlier copies, and any cell with empty nbgrader metadata, become plain code cells
    (the last copy keeps the id, as in nbgrader; locked cells are restored from the
    gradebook anyway). Returns how many cells changed; a notebook that is not valid JSON is
    left for nbgrader to report."""
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:
        return 0
    seen: set[str] = set()
    changed = 0
    for cell in reversed(nb.cells):
        meta = cell.get("metadata", {})
        if "nbgrader" not in meta:
            continue
        grade_id = meta["nbgrader"].get("grade_id") if isinstance(meta["nbgrader"], dict) else None
        if not meta["nbgrader"] or (grade_id is not None and grade_id in seen):
            del meta["nbgrader"]
            changed += 1
        elif grade_id is not None:
            seen.add(grade_id)
    if changed:
        tmp = path.with_suffix(".tidy")
        try:
            nbformat.write(nb, tmp)
        except Exception:  # leave the submission as it came; nbgrader reports what is wrong
            tmp.unlink(missing_ok=True)
            return 0
        tmp.replace(path)
    return changed


def _failure_reason(proc: subprocess.CompletedProcess) -> str:
    text = proc.stdout + proc.stderr
    for pattern in (r"(GradingTimeout[^\n]*)", r"(No such kernel[^\n]*)", r"(Kernel died[^\n]*)", r"(DeadKernelError[^\n]*)", r"(CellTimeoutError[^\n]*)",
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
        res = Result(student, assignment, max_score=float(sub.max_score))
        for nb in sub.notebooks:
            written = {c.name for c in nb.notebook.solution_cells}
            for grade in nb.grades:
                if grade.max_score <= 0:
                    continue
                if grade.name in written:  # a written answer, graded by hand (autograder/manual.py)
                    res.manual_max += float(grade.max_score)
                    if grade.needs_manual_grade and grade.manual_score is None:
                        res.manual_pending += float(grade.max_score)
                        res.cells[grade.name] = None
                    else:  # graded by hand, or left blank (nbgrader scores an untouched answer 0)
                        res.manual_score += float(grade.score)
                        res.cells[grade.name] = float(grade.score)
                else:
                    res.auto_max += float(grade.max_score)
                    res.auto_score += float(grade.score)
                    res.cells[grade.name] = float(grade.score)
        res.score = res.auto_score + res.manual_score
        return res


def class_list() -> list[str]:
    """The students the gradebook knows (`nbgrader db student import`, or graded before)."""
    from nbgrader.api import Gradebook

    with Gradebook(GRADEBOOK_URL) as gb:
        return sorted(s.id for s in gb.students)


def max_score(assignment: str) -> float:
    from nbgrader.api import Gradebook

    with Gradebook(GRADEBOOK_URL) as gb:
        return float(gb.find_assignment(assignment).max_score)


def finish(outcome) -> Result:
    """The client's part of grading one student: the worker's outcome (autograder/engine.py)
    written into the gradebook and the autograded folder, then read back as a Result."""
    import engine

    failed = Result(outcome.student, outcome.assignment, status="failed", max_score=max_score(outcome.assignment))
    if not outcome.ok:
        failed.reason = outcome.reason or "grading failed without a reason"
        return failed
    submitted = SUBMITTED / outcome.student / outcome.assignment
    stamp = submitted / "timestamp.txt"
    engine.record(GRADEBOOK_URL, outcome, AUTOGRADED, stamp.read_text() if stamp.is_file() else "")
    if (submitted / "submission_secret.txt").is_file():  # as nbgrader autograde would carry it over
        shutil.copyfile(submitted / "submission_secret.txt", AUTOGRADED / outcome.student / outcome.assignment / "submission_secret.txt")
    res = read_grades(outcome.student, outcome.assignment)
    if res is None:
        failed.reason = "autograde left no grade in the gradebook"
        return failed
    return res


def apply_deadline(res: Result, term) -> None:
    """The submission's time, its lateness after the due date and the student's extension, and
    the late policy's penalty (autograder/deadlines.py; ``term.toml``)."""
    import deadlines

    when = deadlines.read_timestamp(SUBMITTED / res.student / res.assignment / "timestamp.txt")
    res.submitted_at = when.strftime("%Y-%m-%d %H:%M:%S UTC") if when else ""
    if res.status not in ("graded", "flagged"):
        return
    late = term.lateness(res.assignment, res.student, when)
    res.late_hours = late / 3600
    # "zero" takes the whole maximum, so the final score is 0 whatever the written answers get later
    score = res.max_score if term.method == "zero" else res.score
    res.late_penalty = term.penalty_for(res.student, score, res.max_score, late) if late else 0.0
    if res.late_penalty:
        note = f"late by {res.late_hours:.1f} h: {res.late_penalty:g} points off ({term.method})"
        res.reason = f"{res.reason}; {note}" if res.reason else note


def generate_feedback(assignment: str, results: list[Result]) -> None:
    """Feedback for the whole assignment in one nbgrader process (one per student would
    cost a process start each); a graded student left without feedback is told why."""
    import manual

    proc = nbgrader("generate_feedback", assignment, "--force", check=False)
    for r in results:
        page = FEEDBACK / r.student / assignment / f"{assignment}.html"
        if r.status == "graded" and r.assignment == assignment and not page.is_file():
            r.reason = "graded; feedback failed: " + _failure_reason(proc)
        elif r.assignment == assignment and page.is_file() and r.manual_max:
            # written answers: the score, comment and rubric of each one graded by hand (none yet
            # after autograding), never the rubric of one still pending
            manual.add_to_feedback(page, manual.rubric_section(
                assignment, manual.written_grades(GRADEBOOK_URL, r.student, assignment), REPO))


def tampering_findings(student: str, assignment: str) -> list[str]:
    """Static scan of the submitted notebook (autograder/scan.py); [] if it is not JSON."""
    import nbformat

    from scan import locked_cells, locked_sources, scan_notebook

    try:
        submitted = nbformat.read(SUBMITTED / student / assignment / f"{assignment}.ipynb", as_version=4)
    except Exception:  # unreadable: autograde reports why
        return []
    source = nbformat.read(REPO / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    ids, names = locked_cells(source)
    release = REPO / "notebooks" / assignment / f"{assignment}.ipynb"
    copies = locked_sources(source, *([nbformat.read(release, as_version=4)] if release.is_file() else []))
    return scan_notebook(submitted, ids, names, copies)


def flag(res: Result, findings: list[str], keep_score: bool = False) -> Result:
    """Flag a submission whose code the static scan reports, for review. Where the hidden
    tests run in the submission's own kernel (an assignment without hidden_tests.py) such
    code could have changed the score, so it is held at 0; where the verdicts are computed in
    the grader (autograder/README.md) it cannot, and the score is kept."""
    shown = "; ".join(findings[:5]) + (f"; and {len(findings) - 5} more" if len(findings) > 5 else "")
    if keep_score:
        res.reason = f"flagged for review, score kept (verdicts computed by the grader): {shown}"
    else:
        res.reason = f"flagged for review (autograder score {res.score:g}/{res.max_score:g}): {shown}"
        res.score = res.auto_score = 0.0
    res.status = "flagged"
    return res


_SIMILAR = "similar code, for review"


def _with_similarity(status: str, reason: str, flags: list[tuple[str, float]]) -> tuple[str, str]:
    """A row's status and reason once copy detection flagged it: ``graded`` becomes
    ``flagged``; any other status (failed, missing, flagged by the scan) stays as it is. The
    reason names each other party and the similarity; an earlier similarity note is
    replaced, anything else in the reason is kept. The score is never touched."""
    import similarity

    kept = "; ".join(part for part in reason.split("; ") if part and not part.startswith(_SIMILAR))
    note = similarity.reason(flags)
    return ("flagged" if status == "graded" else status), (f"{kept}; {note}" if kept else note)


def copy_detection(assignment: str, results: list[Result], threshold: float) -> dict[str, list[tuple[str, float]]]:
    """Compare the solution cells of every student of ``assignment`` who has a submitted
    notebook (this run's and earlier runs') with each other and with flowlib's source of the
    graded objects (autograder/similarity.py); write the HTML report to
    ``course/similarity/<assignment>.html``; mark this run's flagged rows (the score stays).
    Returns student -> flags, for the rows of earlier runs (see :func:`write_csv`)."""
    import similarity

    notebooks = {p.parent.parent.name: p for p in sorted(SUBMITTED.glob(f"*/{assignment}/{assignment}.ipynb"))
                 if not p.is_symlink() and p.is_file()}
    if not notebooks:
        return {}
    result = similarity.check(REPO, assignment, notebooks, threshold)
    report = similarity.write_report(result, SIMILARITY / f"{assignment}.html")
    flags = result.flags
    for r in results:
        if r.assignment == assignment and r.student in flags:
            r.status, r.reason = _with_similarity(r.status, r.reason, flags[r.student])
    print(f"copy detection: {len(result.flagged)} pair(s) at or above {threshold:g} among {len(notebooks)} "
          f"submissions of {assignment}; report: {report}", flush=True)
    return flags


def write_csv(results: list[Result], similar: dict[tuple[str, str], list[tuple[str, float]]] | None = None) -> None:
    """Merge this run's rows into grades.csv: rows of students not graded now are kept;
    ``similar`` flags rows of earlier runs ((student, assignment) -> flags) that a classmate
    graded now is similar to (status and reason only, as :func:`copy_detection` does)."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    if GRADES_CSV.is_file():
        with GRADES_CSV.open(newline="") as fh:
            for row in csv.DictReader(fh):
                rows[(row["student"], row["assignment"])] = row
    now = {(r.student, r.assignment) for r in results}
    for key, flags in (similar or {}).items():
        if key in rows and key not in now:
            rows[key]["status"], rows[key]["reason"] = _with_similarity(rows[key]["status"], rows[key]["reason"], flags)
    for r in results:
        row = {"student": r.student, "assignment": r.assignment, "status": r.status,
               "score": r.final, "max_score": f"{r.max_score:g}", "auto_score": f"{r.auto_score:g}",
               "auto_max": f"{r.auto_max:g}", "manual_score": f"{r.manual_score:g}",
               "manual_max": f"{r.manual_max:g}", "manual_pending": f"{r.manual_pending:g}",
               "submitted_at": r.submitted_at, "late_hours": f"{r.late_hours:.2f}" if r.late_hours else "0",
               "late_penalty": f"{r.late_penalty:g}", "reason": r.reason}
        row.update({cell: ("" if pts is None else f"{pts:g}") for cell, pts in r.cells.items()})
        rows[(r.student, r.assignment)] = row
    fixed = ["student", "assignment", "status", "score", "max_score", "auto_score", "auto_max",
             "manual_score", "manual_max", "manual_pending", "submitted_at", "late_hours", "late_penalty", "reason"]
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
        mean = sum(r.auto_score for r in graded) / len(graded)
        lines.append(f"{asg}: auto-graded mean {mean:.2f} / {graded[0].auto_max:g}")
        waiting = [r for r in graded if r.manual_pending]
        if waiting:
            lines.append(f"  written answers to grade by hand: {len(waiting)} submission(s), "
                         f"{sum(r.manual_pending for r in waiting):g} points; no final score until then "
                         f"(make grade-manual lists them)")
        cells = sorted({c for r in graded for c in r.cells})
        for c in cells:
            done = [r.cells[c] for r in graded if r.cells.get(c) is not None]
            if done:
                lines.append(f"  {c}: mean {sum(done) / len(done):.2f}" + (f" ({len(graded) - len(done)} pending)"
                                                                            if len(done) < len(graded) else ""))
    lines.append(f"grades: {GRADES_CSV}")
    lines.append(f"feedback: {FEEDBACK}")
    return "\n".join(lines)


def _threshold(text: str) -> float:
    if text.strip().lower() in ("off", "no", "none", "false"):
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'off', got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"the similarity threshold is a share in [0, 1] (0: off), got {value:g}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", type=Path, nargs="?",
                        help="folder with one folder or .ipynb per student, or a Canvas or Moodle download (zip or "
                             "folder; autograder/lms.py); default, with --assignment: what `make collect` collected "
                             "from the exchange (autograder/course/collected)")
    parser.add_argument("--roster", type=Path, help="CSV with columns lms_id,student: maps an LMS download's ids to students")
    parser.add_argument("--assignment", help="grade only this assignment (required for loose .ipynb files)")
    parser.add_argument("--kernel", help="Jupyter kernelspec to run submissions with (e.g. a CUDA kernel); "
                                         "default: the notebook's python3")
    parser.add_argument("--sandbox", dest="sandbox", action="store_true", default=True,
                        help="(the default) run each kernel in bubblewrap: no network, no capabilities, an empty "
                             "private folder, an allow-listed environment, memory and CPU limits "
                             "(autograder/sandbox.py); with --kernel, that kernelspec runs inside it")
    parser.add_argument("--no-sandbox", dest="sandbox", action="store_false",
                        help="run student code unconfined, as you (trusted notebooks only)")
    parser.add_argument("--db", help="gradebook URL, e.g. postgresql+psycopg://user@host/db "
                                     "(default: SQLite in autograder/course/gradebook.db)")
    parser.add_argument("--workers", type=int, default=1,
                        help="students graded at once: N > 1 starts a Dask LocalCluster of N worker processes")
    parser.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:8786): the students are "
                                            "graded on its workers (`make grade-worker`; README)")
    parser.add_argument("--similarity", type=_threshold, default=None, metavar="T|off",
                        help="copy-detection threshold in (0, 1]: pairs of students (or a student and flowlib's "
                             "source) at or above it are flagged for review, scores unchanged; 0 or 'off' disables "
                             "it (default: similarity.DEFAULT_THRESHOLD, 0.6; see README)")
    args = parser.parse_args(argv)
    collected = args.submissions is None
    if collected:
        if not args.assignment:
            parser.error("give SUBMISSIONS, or --assignment to grade what `make collect` collected")
        args.submissions = COLLECTED
        if not COLLECTED.is_dir():
            parser.error(f"nothing collected yet ({COLLECTED} is absent): run `make collect ASSIGNMENT={args.assignment}`")
    if args.similarity is None:
        import similarity

        args.similarity = similarity.DEFAULT_THRESHOLD
    lms_notes: list[str] = []
    if not collected and (args.submissions.is_file() or args.roster or (args.assignment and args.submissions.is_dir())):
        import lms

        if not args.assignment:
            parser.error("an LMS download (a zip, or --roster) needs --assignment: its files are named by the LMS")
        try:
            download = lms.prepare(args.submissions, args.assignment, args.roster)
        except (ValueError, OSError) as err:
            parser.error(str(err))
        if download.lms:
            print(f"{args.submissions}: a {download.lms} download, {len(download.students)} student(s)", flush=True)
            args.submissions, lms_notes = download.folder, download.notes
        elif not args.submissions.is_dir():
            parser.error(f"{args.submissions}: no file is named as a Canvas or Moodle submission "
                         f"({'; '.join(download.notes[:3])})")
        elif args.roster:
            parser.error(f"--roster: {args.submissions} holds no Canvas or Moodle download")
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder of submissions")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.db:
        global GRADEBOOK_URL
        GRADEBOOK_URL = args.db
    if args.scheduler:  # before anything is written: a wrong address fails in seconds
        import engine

        client = engine.connect(args.scheduler)
        n = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        client.close()
        print(f"Dask scheduler {args.scheduler}: {n} worker(s)", flush=True)
    if args.sandbox:
        import sandbox

        if not args.scheduler:  # a cluster's workers check their own machines, student by student
            sandbox.check()  # fails here, with the fix, rather than once per student
        try:
            if not args.scheduler:
                sandbox.install(args.kernel)
        except sandbox.NoSuchBaseKernel as err:
            print(f"WARNING: {err}: every student will fail with that reason", file=sys.stderr, flush=True)
    else:
        print("WARNING: grading without the sandbox (SANDBOX=0 / --no-sandbox): student code runs as you, "
              "with your files, environment and network; it can change the gradebook, grades.csv and other "
              "students' work. Use it only for notebooks you trust.", file=sys.stderr, flush=True)
    found, notes = find_submissions(args.submissions.resolve(), args.assignment)
    notes = lms_notes + notes
    if collected:  # the class list (nbgrader db student add/import): who never handed in is missing
        for student in class_list():
            found.setdefault((student, args.assignment), None)
    if not found:
        print(f"no submissions found in {args.submissions}", *notes, sep="\n")
        return 1
    import deadlines

    try:
        term = deadlines.load()
    except ValueError as err:
        parser.error(str(err))
    COURSE.mkdir(parents=True, exist_ok=True)
    import engine
    from progress import Progress

    progress = Progress(len(found))
    results: list[Result] = []
    similar: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for asg in sorted({a for _, a in found}):
        register(asg)
        todo = []
        for (student, a), notebook in sorted(found.items()):
            if a != asg:
                continue
            if notebook is None:
                results.append(Result(student, asg, status="missing", max_score=max_score(asg),
                                      reason="nothing submitted through the exchange" if collected
                                      else f"no {asg}.ipynb in the student's folder"))
                progress.update(student, asg, "missing")
                continue
            if isinstance(notebook, Refused):
                results.append(Result(student, asg, status="failed", max_score=max_score(asg), reason=notebook.reason))
                progress.update(student, asg, "failed")
                continue
            try:
                import_submission(student, asg, notebook, trust_timestamp=collected)
            except (ValueError, OSError) as err:
                results.append(Result(student, asg, status="failed", max_score=max_score(asg), reason=str(err)))
                progress.update(student, asg, "failed")
                continue
            todo.append(student)

        # One task per student (autograder/engine.py): here, on a LocalCluster of WORKERS
        # processes, or on the Dask cluster at SCHEDULER; this process alone writes the gradebook.
        tasks = [engine.make_task(REPO, student, asg, SUBMITTED / student / asg / f"{asg}.ipynb",
                                  args.kernel, args.sandbox) for student in todo]
        for outcome in engine.run(tasks, workers=args.workers, scheduler=args.scheduler):
            res = finish(outcome)
            findings = tampering_findings(outcome.student, asg)
            if findings and res.status == "graded":
                res = flag(res, findings, keep_score=(REPO / "solutions" / asg / "hidden_tests.py").is_file())
            apply_deadline(res, term)
            pending = f", {res.manual_pending:g} to grade by hand" if res.manual_pending else ""
            progress.update(outcome.student, asg, res.status, f"{res.auto_score:g}/{res.auto_max:g} auto{pending}",
                            outcome.seconds)
            results.append(res)
        generate_feedback(asg, results)
        if args.similarity > 0:
            try:
                flags = copy_detection(asg, results, args.similarity)
            except Exception as err:  # never lose a class's grades to the copy check
                notes.append(f"copy detection for {asg} failed: {type(err).__name__}: {err}")
                flags = {}
            similar.update({(student, asg): f for student, f in flags.items()})
    write_csv(results, similar)
    print(progress.close())
    print(summarise(results, notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
