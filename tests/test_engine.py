"""The grading engine (autograder/engine.py): warm workers keep no state between students, a
task that hangs is stopped and reported, a Dask cluster that loses a worker mid-batch still
grades every student exactly once, and a dead scheduler address fails fast."""
from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "autograder"))
import engine  # noqa: E402

pytestmark = pytest.mark.slow
ASG = "01-change-of-variables"
BIN = Path(sys.executable).parent
PLANT = "import builtins, flowlib\nbuiltins.PLANTED_BY_ANOTHER_STUDENT = flowlib.PLANTED_BY_ANOTHER_STUDENT = True\n"
CHECK = ("import builtins, flowlib\n"
         "if hasattr(builtins, 'PLANTED_BY_ANOTHER_STUDENT') or hasattr(flowlib, 'PLANTED_BY_ANOTHER_STUDENT'):\n"
         "    raise RuntimeError('state from another student reached this kernel')\n")


def _task(student: str, nb: nbformat.NotebookNode, timeout: float = engine.NOTEBOOK_TIMEOUT) -> engine.Task:
    return engine.Task(student, ASG, nbformat.writes(nb).encode(), "", engine.assignment_bundle(REPO, ASG), None, False, timeout)


def _solution() -> nbformat.NotebookNode:
    return nbformat.read(REPO / "solutions" / ASG / f"{ASG}.ipynb", as_version=4)


def _solution_cells(nb) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]


def _first_solution_cell(nb) -> nbformat.NotebookNode:
    return _solution_cells(nb)[0]


def _auto(outcome: engine.Outcome) -> float:
    return sum(g["auto_score"] or 0 for g in outcome.grades.values())


def test_a_warm_worker_passes_no_state_from_one_student_to_the_next():
    """Two students graded one after the other by the same warm process (one fork server):
    the first plants globals in its kernel (a builtin, a flowlib attribute), the second's
    first exercise cell raises if it sees them. The second gets the reference's points; the
    same check in the planting notebook's next exercise cell costs it that exercise (the
    check can fail)."""
    reference = engine.grade_task(_task("reference", _solution()))
    assert reference.ok, reference.reason
    full = _auto(reference)

    planter = _solution()
    first, second = _solution_cells(planter)[:2]
    first.source = PLANT + first.source
    second.source = CHECK + second.source
    planted = engine.grade_task(_task("planter", planter))
    reader = _solution()
    cell = _first_solution_cell(reader)
    cell.source = CHECK + cell.source
    read = engine.grade_task(_task("reader", reader))

    assert planted.ok and read.ok, (planted.reason, read.reason)
    assert _auto(planted) < full, f"the planting notebook's own check did not fail: {_auto(planted)} of {full}"
    assert _auto(read) == full, f"the next student lost points to the previous one's state: {_auto(read)} of {full}"


def test_a_task_past_the_notebook_limit_is_stopped_and_reported():
    nb = _solution()
    cell = _first_solution_cell(nb)
    cell.source = "import time\ntime.sleep(600)\n" + cell.source
    t0 = time.monotonic()
    out = engine.grade_task(_task("sleeper", nb, timeout=15))
    took = time.monotonic() - t0
    assert not out.ok and "GradingTimeout" in out.reason and "15 s" in out.reason, out.reason
    assert took < 120, f"the task took {took:.0f} s against a 15 s limit"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_scheduler_address_fails_fast(course_copy, tmp_path):
    sub = tmp_path / "export" / "s0"
    sub.mkdir(parents=True)
    shutil.copy(course_copy / "solutions" / ASG / f"{ASG}.ipynb", sub)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(course_copy / "autograder" / "grade.py"), str(tmp_path / "export"),
                           "--assignment", ASG, "--scheduler", f"tcp://127.0.0.1:{_free_port()}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "no Dask scheduler answers at tcp://127.0.0.1:" in proc.stderr + proc.stdout, proc.stderr[-2000:]
    assert time.monotonic() - t0 < 120
    assert not (course_copy / "autograder" / "course" / "grades.csv").exists()


def _start(cmd: list[str], log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def test_a_cluster_that_loses_a_worker_still_grades_everyone_once(course_copy, tmp_path):
    """A real `dask scheduler` and two `dask worker` processes on 127.0.0.1; 8 students; one
    worker is killed (SIGKILL) once the first grade is in. Every student ends with exactly one
    grade, in grades.csv and in the gradebook, and the right one."""
    from nbgrader.api import Gradebook

    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False",
               PYTHONPATH=str(course_copy / "autograder"), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [_start([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                    tmp_path / "scheduler.log", env)]
    try:
        time.sleep(3)
        workers = [_start([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard"],
                          tmp_path / f"worker{i}.log", env) for i in range(2)]
        procs += workers
        subs = tmp_path / "export"
        expected = {}
        for i in range(8):
            solved = i not in (3, 6)
            (subs / f"s{i}").mkdir(parents=True)
            shutil.copy(course_copy / ("solutions" if solved else "notebooks") / ASG / f"{ASG}.ipynb", subs / f"s{i}")
            expected[f"s{i}"] = solved
        grader = subprocess.Popen([sys.executable, str(course_copy / "autograder" / "grade.py"), str(subs),
                                   "--assignment", ASG, "--scheduler", address, "--similarity", "off"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        lines, killed = [], False
        for line in grader.stdout:
            lines.append(line)
            if not killed and line.startswith("[1/8]"):
                os.killpg(workers[0].pid, signal.SIGKILL)
                killed = True
        assert grader.wait(timeout=1800) == 0, "".join(lines)[-4000:]
        assert killed, "".join(lines)[-3000:]
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    with (course_copy / "autograder" / "course" / "grades.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["student"] for r in rows) == sorted(expected), rows
    for r in rows:
        assert r["status"] == "graded", r
        want = r["auto_max"] if expected[r["student"]] else "0"
        assert float(r["auto_score"]) == float(want), (r["student"], r["auto_score"], want)
    with Gradebook("sqlite:///" + str(course_copy / "autograder" / "course" / "gradebook.db")) as gb:
        assert sorted(s.id for s in gb.students) == sorted(expected)
        for student in expected:
            assert len(gb.find_student(student).submissions) == 1, student
