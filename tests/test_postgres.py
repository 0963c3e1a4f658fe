"""Parallel grading on a real PostgreSQL server: every grade lands exactly once.

CI installs Debian's postgresql package (.ci/run); elsewhere the test is skipped, with the
reason, when no PostgreSQL server binaries are installed.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "autograder"))
from local_postgres import LocalPostgres, bindir  # noqa: E402

pytestmark = pytest.mark.slow
ASG = "01-change-of-variables"


@pytest.fixture
def postgres_url():
    if bindir() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries missing in CI: .ci/run should have installed them")
        pytest.skip("PostgreSQL server binaries not installed (Debian: apt-get install postgresql)")
    with LocalPostgres() as url:
        yield url


def test_two_workers_grade_each_student_exactly_once(course_copy, tmp_path, postgres_url):
    from nbgrader.api import Gradebook

    subs = tmp_path / "export"
    expected = {}
    for i in range(4):
        folder = "solutions" if i % 2 == 0 else "notebooks"
        (subs / f"s{i}").mkdir(parents=True)
        shutil.copy(course_copy / folder / ASG / f"{ASG}.ipynb", subs / f"s{i}" / f"{ASG}.ipynb")
        expected[f"s{i}"] = folder == "solutions"
    cmd = [sys.executable, str(course_copy / "autograder" / "grade.py"), str(subs), "--assignment", ASG,
           "--workers", "2", "--db", postgres_url]
    for _ in range(2):  # grading the same batch again must not duplicate anything
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with Gradebook(postgres_url) as gb:
        # the auto-graded (code) points: the written answers wait for grading by hand
        max_code = gb.find_assignment(ASG).max_code_score
        assert sorted(s.id for s in gb.students) == sorted(expected)
        for student, solved in expected.items():
            subs_of = gb.find_student(student).submissions
            assert len(subs_of) == 1, f"{student} has {len(subs_of)} submissions"
            assert subs_of[0].code_score == (max_code if solved else 0), (student, subs_of[0].code_score, max_code)
    with (course_copy / "autograder" / "course" / "grades.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["student"] for r in rows) == sorted(expected)
    assert not (course_copy / "autograder" / "course" / "gradebook.db").exists(), "SQLite was used instead"
