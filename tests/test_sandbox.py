"""`make grade SANDBOX=1`: each kernel runs in bubblewrap (autograder/sandbox.py) with no
network, a read-only view of the machine with the course's private folders emptied, and
only its own folder writable. A correct submission keeps full marks there; a submission
that tries to reach a server on 127.0.0.1, list the gradebook's folder and write outside
its folder is graded, and none of the three gets through."""
from __future__ import annotations

import copy
import csv
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "autograder"))
import sandbox  # noqa: E402

ASG = "01-change-of-variables"

ATTACK = '''
import socket as _socket, os as _os, pathlib as _pathlib
try:
    _socket.create_connection(("127.0.0.1", {port}), timeout=3)
    print("ATTACK-NET: connected")
except OSError as _err:
    print("ATTACK-NET: refused", _err)
print("ATTACK-LIST:", sorted(_os.listdir({course!r})))
try:
    _pathlib.Path({target!r}).write_text("pwned")
    print("ATTACK-WRITE: no error")
except OSError as _err:
    print("ATTACK-WRITE: refused", _err)
'''


def _require_bwrap() -> None:
    """Fail (not skip) with the fix: .ci/run installs bubblewrap when it is missing."""
    if shutil.which("bwrap") is None:
        pytest.fail("the sandbox needs bubblewrap: `apt-get install bubblewrap` (.ci/run installs it)")


def test_command_mounts_only_what_the_kernel_needs(tmp_path):
    """Fast check of the mounts: the submission's folder and the socket folder writable,
    the connection file, Python and flowlib read-only, nothing of the machine else (no
    `--ro-bind / /`, no course folder)."""
    _require_bwrap()
    work, sockets = tmp_path / "course" / "autograded" / "s" / "a", tmp_path / "rt"
    work.mkdir(parents=True)
    sockets.mkdir()
    conn = sockets / "kernel.json"
    conn.write_text("{}")
    cmd = sandbox.command(str(conn), str(sockets), str(work))
    pairs = list(zip(cmd, cmd[1:]))
    assert "--unshare-net" in cmd and "--die-with-parent" in cmd
    assert ("--bind", str(work)) in pairs and ("--bind", str(sockets)) in pairs
    assert ("--ro-bind", str(conn.resolve())) in pairs
    assert ("--ro-bind", str(Path(sys.prefix).resolve())) in pairs
    assert ("--ro-bind", "/") not in pairs, "the whole machine is mounted"
    mounted = [b for a, b in pairs if a in ("--bind", "--ro-bind", "--dev-bind")]
    assert not any(str(tmp_path / "course") == m for m in mounted)
    assert not any(m == str(REPO) or m == str(REPO / "solutions") for m in mounted), mounted
    assert cmd[-5:] == [sys.executable, "-m", "ipykernel_launcher", "-f", str(conn.resolve())]


def test_launch_refuses_tcp(tmp_path):
    conn = tmp_path / "kernel.json"
    conn.write_text('{"transport": "tcp", "ip": "127.0.0.1"}')
    proc = subprocess.run([sys.executable, str(REPO / "autograder" / "sandbox.py"), str(conn)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "transport=ipc" in proc.stderr


@pytest.mark.slow
def test_sandboxed_batch(course_copy, tmp_path):
    _require_bwrap()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    connections: list[object] = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                connections.append(listener.accept()[1])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()

    course = course_copy / "autograder" / "course"
    target = tmp_path / "written-by-student.txt"
    solution = nbformat.read(course_copy / "solutions" / ASG / f"{ASG}.ipynb", as_version=4)
    hostile = copy.deepcopy(solution)
    first = next(c for c in hostile.cells if c.metadata.get("nbgrader", {}).get("solution"))
    first.source += "\n" + ATTACK.format(port=port, course=str(course), target=str(target))
    subs = tmp_path / "export"
    for student, nb in (("good", solution), ("hostile", hostile)):
        (subs / student).mkdir(parents=True)
        nbformat.write(nb, subs / student / f"{ASG}.ipynb")

    proc = subprocess.run([sys.executable, str(course_copy / "autograder" / "grade.py"), str(subs),
                           "--assignment", ASG, "--sandbox"], capture_output=True, text=True, timeout=600)
    stop.set()
    thread.join()
    listener.close()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["student"]: r for r in csv.DictReader((course / "grades.csv").open())}
    for student in ("good", "hostile"):
        assert rows[student]["status"] == "graded", f"{student}: {rows[student]['status']}, {rows[student]['reason']}"
        assert float(rows[student]["score"]) == float(rows[student]["max_score"]) > 0, rows[student]

    graded = nbformat.read(course / "autograded" / "hostile" / ASG / f"{ASG}.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in graded.cells for o in c.get("outputs", []))
    assert "ATTACK-NET: refused" in printed, printed[-2000:]
    assert not connections, "the sandboxed kernel reached a server on the grader's 127.0.0.1"
    listing = printed.split("ATTACK-LIST:")[1].splitlines()[0]
    assert "gradebook.db" not in listing and "submitted" not in listing, listing
    assert not target.exists(), "the sandboxed kernel wrote outside its folder"
