"""Grading throughput: students per minute with 1 and with 2 parallel workers.

Grades the same batch (copies of assignment 01's reference solution and untouched
release) twice on a throwaway local PostgreSQL server, once with --workers 1 and once
with --workers 2, each into a fresh copy of the course, and prints both rates and their
ratio. Run: `python bench/grading_throughput.py [--students 8]` (needs Debian's
postgresql package). :func:`measure` returns the timings as data (used by
bench/course_costs.py).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "autograder"))
from local_postgres import LocalPostgres  # noqa: E402

ASG = "01-change-of-variables"


def course_copy(root: Path) -> Path:
    """A copy of what grading reads (autograder/ with its probe runtime, solutions/, notebooks/)
    at ``root``: grading tests and benchmarks never touch the real gradebook."""
    (root / "autograder").mkdir(parents=True)
    for path in (REPO / "autograder").glob("*.py"):
        shutil.copy(path, root / "autograder" / path.name)
    # the grader's probe runtime (autograder/verdicts.py): without it no hidden test can load
    shutil.copytree(REPO / "autograder" / "probe", root / "autograder" / "probe",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("solutions", "notebooks"):
        shutil.copytree(REPO / folder, root / folder)
    return root


def measure(students: int = 8, workers_list=(1, 2)):
    """Grade ``students`` submissions once per worker count; yield ``(workers, seconds, students/min)``."""
    if students < 1:
        raise ValueError(f"students must be at least 1, got {students}")
    with tempfile.TemporaryDirectory() as tmp:
        subs = Path(tmp) / "export"
        for i in range(students):
            folder = "solutions" if i % 2 == 0 else "notebooks"
            (subs / f"s{i:03d}").mkdir(parents=True)
            shutil.copy(REPO / folder / ASG / f"{ASG}.ipynb", subs / f"s{i:03d}" / f"{ASG}.ipynb")
        for workers in workers_list:
            course = course_copy(Path(tmp) / f"course{workers}")
            with LocalPostgres() as url:
                start = time.perf_counter()
                proc = subprocess.run([sys.executable, str(course / "autograder" / "grade.py"), str(subs),
                                       "--assignment", ASG, "--workers", str(workers), "--db", url],
                                      capture_output=True, text=True)
                seconds = time.perf_counter() - start
            if proc.returncode != 0:
                raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
            yield workers, seconds, students / seconds * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=8)
    args = parser.parse_args()
    if args.students < 1:
        parser.error("--students must be at least 1")
    rates = {}
    try:
        for workers, seconds, rate in measure(args.students):
            rates[workers] = rate
            print(f"{workers} worker(s): {args.students} students in {seconds:.1f} s = {rate:.1f} students/min")
    except RuntimeError as exc:
        raise SystemExit(str(exc))
    print(f"2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
