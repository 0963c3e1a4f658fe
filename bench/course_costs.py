"""Course costs: cold and warm `make book`, autograding time per assignment for the
reference solution, and grading throughput with 1 and 2 workers.

* make book: in a fresh temporary copy of the repository (a `git clone` of the committed
  state when the repository is a git checkout, else a copy without _build, .venv and
  autograder/course) that shares this repository's .venv through a symlink; `make -o
  .venv/.installed book` runs the Makefile's recipe without ever re-installing the shared
  environment. Cold = no _build (every chapter executes); warm = the same command again
  right after (execution cache and Sphinx environment reused).
* Autograde: one student whose submission is the reference solution, graded by
  autograder/grade.py (SQLite gradebook) in a fresh copy of the course, per assignment;
  the score column checks that the reference earns full marks.
* Grading: bench/grading_throughput.py's measurements: the per-student cost of one nbgrader
  process per student against a warm engine worker (side by side, as a ratio), and students
  per minute with 1 and 2 workers (a Dask LocalCluster).

Run: `python bench/course_costs.py [--quick] [--json PATH]`. ``--quick`` skips the two book
builds and grading throughput and autogrades the first assignment only.
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import emit, fmt
from grading_throughput import course_copy, measure, per_student

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv"


def fresh_checkout(dest: Path) -> str:
    """A fresh copy of the repository at ``dest``; returns how it was made."""
    if (REPO / ".git").exists() and shutil.which("git"):
        subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(dest)], check=True)
        return "git clone (committed state)"
    skip = shutil.ignore_patterns("_build", ".venv", "course", "__pycache__", ".ipynb_checkpoints")
    shutil.copytree(REPO, dest, ignore=skip, symlinks=True)
    return "copy of the working tree"


def book_times() -> tuple[list[list[str]], str]:
    if not (VENV / ".installed").exists():
        raise RuntimeError(f"{VENV} is not set up (run `make venv` first)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-book-") as tmp:
        root = Path(tmp) / "repo"
        how = fresh_checkout(root)
        (root / ".venv").symlink_to(VENV)
        for label in ("cold (fresh copy, no _build)", "warm (again, right after)"):
            start = time.perf_counter()
            # PYTHONPATH: the copy's flowlib, not the editable install's, runs in the chapters
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
            proc = subprocess.run(["make", "-o", ".venv/.installed", "book"], cwd=root, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if proc.returncode != 0:
                raise RuntimeError(f"make book failed ({label}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            rows.append(["make book", label, fmt(seconds, ".1f"), "-"])
    return rows, how


def autograde_reference(asg: str) -> tuple[float, str]:
    """Seconds to autograde one reference-solution submission of ``asg``, and 'score/max'."""
    with tempfile.TemporaryDirectory(prefix="bench-grade-") as tmp:
        course = course_copy(Path(tmp) / "course")
        subs = Path(tmp) / "export" / "ref"
        subs.mkdir(parents=True)
        shutil.copy(REPO / "solutions" / asg / f"{asg}.ipynb", subs / f"{asg}.ipynb")
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(course / "autograder" / "grade.py"), str(subs.parent),
                               "--assignment", asg], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"grading {asg} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        with (course / "autograder" / "course" / "grades.csv").open(newline="") as fh:
            row = next(r for r in csv.DictReader(fh) if r["assignment"] == asg)
        return seconds, f"{row['auto_score']}/{row['auto_max']} ({row['status']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="first assignment only, no book builds, no throughput")
    parser.add_argument("--students", type=int, default=8, help="submissions for grading throughput (default 8)")
    parser.add_argument("--json", help="also write the table as JSON here (for bench/run.py)")
    args = parser.parse_args()
    rows, notes = [], []
    if args.quick:
        notes.append("QUICK: book builds and grading throughput skipped; only the first assignment autograded.")
    else:
        book_rows, how = book_times()
        rows += book_rows
        notes.append(f"make book ran in a {how} sharing this repository's .venv.")
    asgs = sorted(p.name for p in (REPO / "solutions").iterdir() if (p / f"{p.name}.ipynb").is_file())
    for asg in asgs[:1] if args.quick else asgs:
        seconds, score = autograde_reference(asg)
        rows.append(["autograde reference solution", asg, fmt(seconds, ".1f"), score])
    if not args.quick:
        cost = per_student(4)
        rows.append(["grading, per student", "one nbgrader process each (before the engine)", fmt(cost["cold_s"], ".1f"),
                     f"median of {cost['students']}"])
        rows.append(["grading, per student", "warm engine worker (autograder/engine.py)", fmt(cost["warm_s"], ".1f"),
                     f"ratio to the line above: {cost['ratio']:.2f}"])
        for workers, seconds, rate in measure(args.students):
            rows.append(["grading throughput", f"{args.students} students, {workers} worker(s)", fmt(seconds, ".1f"),
                         f"{rate:.1f} students/min"])
    section = {
        "title": "Course costs",
        "intro": f"Wall clock on this machine ({os.cpu_count()} cores).",
        "columns": ["task", "case", "seconds", "result"],
        "rows": rows,
        "notes": notes,
    }
    emit(section, args.json)


if __name__ == "__main__":
    main()
