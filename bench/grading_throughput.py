"""Grading throughput and the per-student cost of a warm worker.

Two measurements on the same batch (copies of assignment 01's reference solution and
untouched release), each into a fresh copy of the course:

* :func:`measure`: ``grade.py --workers N`` end to end (a Dask LocalCluster of N worker
  processes for N > 1, SQLite gradebook), students per minute for N = 1 and 2;
* :func:`per_student`: side by side in one run, the cost of one student graded the way
  grade.py did before the Dask engine (one ``nbgrader autograde`` process per student, then
  the verdicts) against a warm engine worker (``engine.grade_task`` in a process that has
  graded once already), and their ratio.

Run: `python bench/grading_throughput.py [--students 8]`. bench/course_costs.py uses both.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "autograder"))

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


def _batch(root: Path, students: int) -> Path:
    subs = root / "export"
    for i in range(students):
        folder = "solutions" if i % 2 == 0 else "notebooks"
        (subs / f"s{i:03d}").mkdir(parents=True)
        shutil.copy(REPO / folder / ASG / f"{ASG}.ipynb", subs / f"s{i:03d}" / f"{ASG}.ipynb")
    return subs


def measure(students: int = 8, workers_list=(1, 2)):
    """Grade ``students`` submissions once per worker count; yield ``(workers, seconds, students/min)``."""
    if students < 1:
        raise ValueError(f"students must be at least 1, got {students}")
    with tempfile.TemporaryDirectory() as tmp:
        subs = _batch(Path(tmp), students)
        for workers in workers_list:
            course = course_copy(Path(tmp) / f"course{workers}")
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, str(course / "autograder" / "grade.py"), str(subs),
                                   "--assignment", ASG, "--workers", str(workers), "--similarity", "off"],
                                  capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if proc.returncode != 0:
                raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
            yield workers, seconds, students / seconds * 60


def per_student(students: int = 4, sandboxed: bool = False) -> dict:
    """Seconds per student, one nbgrader process each (cold) vs a warm engine worker, measured
    alternately on the same submissions in one run; returns medians and the ratio."""
    import statistics

    import engine

    env = dict(os.environ, FLOWLIB_PROGRESS="0", PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    solution = (REPO / "solutions" / ASG / f"{ASG}.ipynb").read_bytes()
    cold, warm = [], []
    with tempfile.TemporaryDirectory() as tmp:
        course = course_copy(Path(tmp) / "course")
        db = f"sqlite:///{course / 'autograder' / 'course' / 'gradebook.db'}"
        (course / "autograder" / "course").mkdir(parents=True, exist_ok=True)
        nbg = [sys.executable, "-m", "nbgrader"]
        subprocess.run([*nbg, "generate_assignment", ASG, "--force", f"--CourseDirectory.db_url={db}",
                        f"--CourseDirectory.release_directory={tmp}/release"],
                       cwd=course / "autograder", env=env, capture_output=True, check=True)
        import verdicts

        task = engine.Task("warmup", ASG, solution, "", engine.assignment_bundle(REPO, ASG))
        engine.grade_task(task)  # the worker's first student: registration and fork server start
        for i in range(students):
            student = f"s{i:03d}"
            dest = course / "autograder" / "course" / "submitted" / student / ASG
            dest.mkdir(parents=True)
            (dest / f"{ASG}.ipynb").write_bytes(solution)
            t0 = time.perf_counter()
            subprocess.run([*nbg, "autograde", ASG, f"--student={student}", "--force", "--create",
                            f"--CourseDirectory.db_url={db}"], cwd=course / "autograder", env=env, capture_output=True, check=True)
            verdicts.apply(course, db, student, ASG, course / "autograder" / "course" / "autograded" / student / ASG / f"{ASG}.ipynb")
            cold.append(time.perf_counter() - t0)
            task.student = student
            t0 = time.perf_counter()
            out = engine.grade_task(task)
            warm.append(time.perf_counter() - t0)
            if not out.ok:
                raise RuntimeError(out.reason)
    return {"students": students, "cold_s": statistics.median(cold), "warm_s": statistics.median(warm),
            "ratio": statistics.median(warm) / statistics.median(cold)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=8)
    args = parser.parse_args()
    if args.students < 1:
        parser.error("--students must be at least 1")
    cost = per_student(min(args.students, 4))
    print(f"per student ({cost['students']} students, median): one nbgrader process each {cost['cold_s']:.1f} s, "
          f"warm engine worker {cost['warm_s']:.1f} s, ratio {cost['ratio']:.2f}")
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
