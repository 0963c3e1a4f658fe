"""A term through nbgrader's exchange, end to end, as `make release PUBLISH=1`, the student's
Assignment List (fetch, submit, fetch feedback), `make collect`, `make grade ASSIGNMENT=...`
and `make feedback` run it: three students with separate home folders (alice submits once,
bob submits an untouched notebook and then his solution, carol never submits), one exchange
folder, the instructor's commands in a copy of the course. The students run as this OS user
and name themselves with nbgrader's --student (what a JupyterHub's single-user servers do
with JUPYTERHUB_USER); nbgrader otherwise takes the id from the OS user name."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow
ASG = "01-change-of-variables"
BIN = Path(sys.executable).parent


def _run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def test_release_submit_collect_grade_and_feedback_through_the_exchange(course_copy, tmp_path):
    exchange = tmp_path / "exchange"
    base = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", FLOWLIB_PROGRESS="0")
    teacher = dict(base, FLOWLIB_EXCHANGE=str(exchange))
    nbgrader = [str(BIN / "nbgrader")]
    here = course_copy / "autograder"

    # The instructor: the class list, then the release published into the exchange.
    for student in ("alice", "bob", "carol"):
        _run([*nbgrader, "db", "student", "add", student], here, teacher)
    _run([*nbgrader, "generate_assignment", ASG, "--force"], here, teacher)
    _run([*nbgrader, "release_assignment", ASG, "--force"], here, teacher)
    assert (exchange / "flows-and-scores" / "outbound" / ASG / f"{ASG}.ipynb").is_file()

    def student_env(name: str) -> tuple[dict, Path]:
        home = tmp_path / "home" / name
        home.mkdir(parents=True)
        # the student lab's nbgrader config (course id, exchange from FLOWLIB_LAB_EXCHANGE)
        return dict(base, HOME=str(home), USER=name, LOGNAME=name, FLOWLIB_LAB_EXCHANGE=str(exchange),
                    JUPYTER_CONFIG_PATH=str(REPO / "autograder" / "student_lab"),
                    JUPYTER_DATA_DIR=str(home / ".local" / "share" / "jupyter")), home

    solution = course_copy / "solutions" / ASG / f"{ASG}.ipynb"
    envs = {}
    for name in ("alice", "bob"):
        env, home = student_env(name)
        envs[name] = (env, home)
        _run([*nbgrader, "fetch_assignment", ASG, f"--student={name}"], home, env)
        assert (home / ASG / f"{ASG}.ipynb").is_file()
    env, home = envs["bob"]
    _run([*nbgrader, "submit", ASG, "--student=bob"], home, env)  # the untouched notebook first ...
    time.sleep(1.5)  # (nbgrader's submission times have a resolution of a second in the folder names)
    for name in ("alice", "bob"):
        env, home = envs[name]
        shutil.copy(solution, home / ASG / f"{ASG}.ipynb")  # ... then the worked one
        _run([*nbgrader, "submit", ASG, f"--student={name}"], home, env)

    # The instructor collects the latest submission of each and grades what was collected.
    _run([*nbgrader, "collect", ASG, "--update", "--CourseDirectory.submitted_directory=autograder/course/collected"],
         here, teacher)
    collected = here / "course" / "collected"
    assert sorted(p.name for p in collected.iterdir()) == ["alice", "bob"]
    stamps = {n: (collected / n / ASG / "timestamp.txt").read_text().strip() for n in ("alice", "bob")}
    proc = _run([sys.executable, str(here / "grade.py"), "--assignment", ASG, "--similarity", "off"], course_copy, teacher)
    with (here / "course" / "grades.csv").open() as fh:
        rows = {r["student"]: r for r in csv.DictReader(fh)}
    assert sorted(rows) == ["alice", "bob", "carol"], proc.stdout[-2000:]
    for name in ("alice", "bob"):  # bob's resubmission replaced his untouched first one
        assert rows[name]["status"] == "graded" and float(rows[name]["auto_score"]) == float(rows[name]["auto_max"]) > 0, rows[name]
        assert rows[name]["submitted_at"][:19].replace("T", " ") == stamps[name][:19], (rows[name]["submitted_at"], stamps[name])
    assert rows["carol"]["status"] == "missing" and "nothing submitted" in rows["carol"]["reason"], rows["carol"]

    # Feedback back through the exchange: each student fetches their own page.
    _run([*nbgrader, "release_feedback", ASG, "--CourseDirectory.submitted_directory=autograder/course/collected"],
         here, teacher)
    for name in ("alice", "bob"):
        env, home = envs[name]
        _run([*nbgrader, "fetch_feedback", ASG, f"--student={name}"], home, env)
        pages = list((home / ASG / "feedback").rglob(f"{ASG}.html"))
        assert len(pages) == 1, (name, pages)
        assert "test_affine_log_prob" in pages[0].read_text(), name
