"""Shared fixtures: the repository root, a device list, and a scratch copy of the course
(autograder + solutions + notebooks) so grading tests never touch the real gradebook."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def toc_pages() -> list[str]:
    """Every page of _toc.yml (root first), as paths without suffix: the website's pages."""
    import yaml

    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [ch["file"] for ch in part.get("chapters", [])]
    return pages

# The tests use small tensors: intra-op threads only add contention on a 2-core machine
# (measured: a planar fit ran about 15x slower with 2 threads while other jobs were running).
torch.set_num_threads(1)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture
def course_copy(tmp_path: Path) -> Path:
    """A copy of the parts of the repository that grading reads, in a temporary folder
    (bench/grading_throughput.py's, which the benchmarks use too)."""
    sys.path.insert(0, str(REPO / "bench"))
    from grading_throughput import course_copy as copy_course

    return copy_course(tmp_path / "course")


@pytest.fixture(scope="session")
def book_build() -> subprocess.CompletedProcess:
    """`make book`'s build, run once per test run into _build/ (the execution cache makes a
    rebuild with unchanged chapters fast); the book and site tests share it. Under
    pytest-xdist (`make test` runs two workers) every worker asks for it: the first builds
    while holding a lock on _build/.book-build.lock and records the result for this run
    (PYTEST_XDIST_TESTRUNUID); the others wait for the lock and reuse it, so the site is
    built once and never read half-written."""
    import fcntl
    import json

    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid-{os.getpid()}"
    build = REPO / "_build"
    build.mkdir(exist_ok=True)
    record = build / ".book-build-result.json"
    with (build / ".book-build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if record.is_file():
            saved = json.loads(record.read_text())
            if saved.get("run") == run:
                return subprocess.CompletedProcess(saved["args"], saved["returncode"], saved["stdout"], saved["stderr"])
        env = dict(os.environ, FLOWLIB_PROGRESS="0")
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "jupyter-book"), "build", ".", "-W", "-n", "--keep-going"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=3000,
        )
        record.write_text(json.dumps({"run": run, "args": proc.args, "returncode": proc.returncode,
                                      "stdout": proc.stdout, "stderr": proc.stderr}))
        return proc
