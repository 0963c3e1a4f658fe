"""The grading sandbox (autograder/sandbox.py), which `make grade` uses by default.

Fast checks run bubblewrap directly with the command line the kernelspec builds: no
capabilities and a user namespace also as root (a read-only bind cannot be remounted
writable), an empty private working folder, the environment cleared but for the
allow-list (a fake secret in the grader's environment does not get in), a session of its
own, the resource limits; then a real kernel started through a wrapped kernelspec (the
`--kernel` path, e.g. a CUDA kernelspec) that keeps its env, and a runaway cell stopped by
an interrupt *message* with the kernel still alive.

The slow batch grades, in the default (sandboxed) mode, a correct student, a correct
classmate and two hostile submissions: one reaches for the network, the course folder and
a file outside its folder; the other tries every file-level attack on the class (symlinks
named like its own notebook to a classmate's submission and to the gradebook, a symlink to
solutions/, a 1 GiB sparse file, reading the hidden tests from its working folder, printing
the environment, remounting the venv writable, writing a .pth into it, editing the
gradebook, and a detached process that holds the grader's stdout open and keeps trying to
rewrite grades.csv). Both classmates keep full marks, nothing outside the students' own
folders changes, nothing of the kernel's folder reaches the course folders or feedback,
and the run completes.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "autograder"))
import sandbox  # noqa: E402

ASG = "01-change-of-variables"
SECRET = "grader-secret-4f9a2c"  # set in the grader's environment; must never reach a kernel

ATTACK = '''
import socket as _socket, os as _os, pathlib as _pathlib
try:
    _socket.create_connection(("127.0.0.1", {port}), timeout=3)
    print("ATTACK-NET: connected")
except OSError as _err:
    print("ATTACK-NET: refused", _err)
try:
    print("ATTACK-LIST:", sorted(_os.listdir({course!r})))
except OSError as _err:
    print("ATTACK-LIST: refused", _err)
try:
    _pathlib.Path({target!r}).write_text("pwned")
    print("ATTACK-WRITE: no error")
except OSError as _err:
    print("ATTACK-WRITE: refused", _err)
'''

# Every file-level attack at once; each prints one ESC- line with what happened.
ESCAPE = '''
import json as _json, os as _os, pathlib as _pl, sqlite3 as _sq, subprocess as _sp, sys as _sys
_here = _pl.Path.cwd()
print("ESC-CWD", _json.dumps(sorted(_os.listdir(_here))))
def _try(label, fn):
    try:
        print(label, "DONE", fn())
    except BaseException as _e:
        print(label, "REFUSED", type(_e).__name__, _e)
_hidden = [str(p) for p in _here.rglob("*") if p.is_file() and "HIDDEN TESTS" in p.read_text(errors="ignore")]
print("ESC-HIDDEN", _json.dumps(_hidden))
_try("ESC-LINK-VICTIM", lambda: _os.symlink({victim!r}, _here / "{asg}.ipynb"))
_try("ESC-LINK-GRADEBOOK", lambda: _os.symlink({gradebook!r}, _here / "gradebook.db"))
_try("ESC-LINK-SOLUTIONS", lambda: _os.symlink({solutions!r}, _here / "solutions"))
def _sparse():
    with open(_here / "big.bin", "wb") as fh:
        fh.seek(2**30)
        fh.write(b"x")
    return (_here / "big.bin").stat().st_size
_try("ESC-SPARSE", _sparse)
print("ESC-ENV", _json.dumps(dict(_os.environ)))
_r = _sp.run(["mount", "-o", "remount,rw,bind", {venv!r}], capture_output=True, text=True)
print("ESC-REMOUNT rc=%d" % _r.returncode, _r.stderr.strip())
_try("ESC-PTH", lambda: _pl.Path({pth!r}).write_text("import sys\\n"))
def _edit():
    db = _sq.connect({gradebook!r})
    db.execute("update grade set manual_score = 99")
    db.commit()
_try("ESC-GRADEBOOK", _edit)
# a detached process that keeps the kernel's stdout open and rewrites grades.csv for ever
_daemon = """
import os, time
for _ in range(10**6):
    try:
        with open({grades!r}, "w") as fh:
            fh.write("student,assignment,status,score\\\\npwned,pwned,graded,999\\\\n")
        open({marker!r}, "w").write("the daemon wrote grades.csv")
    except OSError:
        pass
    time.sleep(0.2)
"""
_sp.Popen([_sys.executable, "-c", _daemon], start_new_session=True)
print("ESC-DAEMON started")
'''


def _require_bwrap() -> None:
    """Fail (not skip) with the fix: .ci/run installs bubblewrap when it is missing."""
    if shutil.which("bwrap") is None:
        pytest.fail("the sandbox needs bubblewrap: `apt-get install bubblewrap` (.ci/run installs it)")


def _run_confined(tmp_path: Path, code: str, env_extra: dict[str, str] | None = None) -> dict:
    """Run ``python -c code`` with the sandbox's command line, limits and environment, as
    the kernelspec would; ``code`` prints one JSON object."""
    sockets = tmp_path / "rt"
    sockets.mkdir(exist_ok=True)
    conn = sockets / "kernel.json"
    conn.write_text("{}")
    grader_env = dict(os.environ, FLOWLIB_GRADER_SECRET=SECRET, FLOWLIB_DEVICE="cpu", **(env_extra or {}))
    env = sandbox.kernel_env(grader_env)
    mounts = sandbox._mounts_for(sandbox.PYTHON)
    cmd = sandbox.command(str(conn), str(sockets), [sandbox.PYTHON, "-c", code], mounts, env)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: sandbox.set_limits(grader_env))
    assert proc.returncode == 0, f"the confined process failed: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


PROBE = r'''
import json, os, resource, subprocess, sys
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
remount = subprocess.run(["mount", "-o", "remount,rw,bind", sys.prefix], capture_output=True, text=True)
try:
    open(os.path.join(sys.prefix, "pyvenv.cfg"), "a").close()
    venv_write = "written"
except OSError as err:
    venv_write = type(err).__name__ + ": " + str(err)
print(json.dumps({
    "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
    "uid_map": open("/proc/self/uid_map").read().split(),
    "remount_rc": remount.returncode, "remount_err": remount.stderr.strip(), "venv_write": venv_write,
    "cwd": os.getcwd(), "cwd_files": os.listdir("."), "env": dict(os.environ),
    "session": os.getsid(0),
    "as": resource.getrlimit(resource.RLIMIT_AS)[0], "cpu": resource.getrlimit(resource.RLIMIT_CPU)[0],
    "fsize": resource.getrlimit(resource.RLIMIT_FSIZE)[0],
    "visible": {p: os.path.exists(p) for p in (%r, %r, %r, "/home")},
}))
'''


def test_sandbox_confines_the_kernel(tmp_path):
    """As whatever user runs the tests (root on CI): no capabilities, a user namespace, the
    venv read-only even to `mount -o remount,rw`, an empty private cwd, the environment
    cleared but for the allow-list, a new session, and the rlimits in force."""
    _require_bwrap()
    r = _run_confined(tmp_path, PROBE % (str(REPO / "solutions"), str(REPO / "autograder"), str(REPO / "README.md")),
                      {"FLOWLIB_KERNEL_MEMORY_MB": "6000", "FLOWLIB_KERNEL_CPU_SECONDS": "900"})
    assert int(r["cap_eff"], 16) == 0 and int(r["cap_bnd"], 16) == 0, f"capabilities kept (uid {os.getuid()}): {r}"
    assert r["uid_map"] and r["uid_map"] != ["0", "0", "4294967295"], f"no user namespace: uid_map {r['uid_map']}"
    assert r["remount_rc"] != 0, f"the venv was remounted writable inside the sandbox: {r['remount_err']}"
    assert r["venv_write"].startswith("OSError"), f"the venv is writable inside the sandbox: {r['venv_write']}"
    assert (r["cwd"], r["cwd_files"]) == (sandbox.WORKDIR, []), f"the kernel's folder is not empty and private: {r}"
    assert SECRET not in json.dumps(r["env"]), "the grader's secret reached the sandbox"
    assert set(r["env"]) <= set(sandbox.ENV_ALLOWED) | {"PATH", "HOME", "MPLCONFIGDIR", "PWD"}, sorted(r["env"])
    assert r["env"].get("FLOWLIB_DEVICE") == "cpu", "FLOWLIB_DEVICE (allow-listed) did not pass"
    # --new-session: the sandbox's init leads the kernel's session (0: the grader's, outside)
    assert r["session"] == 1, f"the kernel is not in a session of its own (sid {r['session']})"
    assert (r["as"], r["cpu"], r["fsize"]) == (6000 * 2**20, 900, sandbox.FILE_SIZE_MB * 2**20), r
    assert not any(r["visible"].values()), f"course or home folders visible in the sandbox: {r['visible']}"


def test_sandbox_confines_an_ordinary_user(tmp_path):
    """The same namespace and capability checks as an unprivileged user (setpriv to nobody),
    with /bin/sh: this machine's Python lives under /root, which nobody may read."""
    _require_bwrap()
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to switch to an ordinary user (the root case runs above)")
    script = ("grep -E '^Cap(Eff|Bnd)' /proc/self/status; mount -o remount,rw,bind /usr 2>/dev/null; echo remount=$?; "
              "touch /usr/escape-test 2>/dev/null; echo touch=$?; echo cwd=$(pwd) files=$(ls -A | wc -l); env")
    shared = Path(tempfile.mkdtemp(prefix="sandbox-test-"))  # a folder nobody can reach (tmp_path is root's)
    try:
        shared.chmod(0o777)
        cmd = sandbox.command(None, str(shared), ["/bin/sh", "-c", script], [], {"LANG": "C"})
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd], capture_output=True,
                              text=True, timeout=60, env={"FLOWLIB_GRADER_SECRET": SECRET, "PATH": "/usr/bin:/bin"})
    finally:
        shutil.rmtree(shared)
    if "setting up uid map" in proc.stderr or "No permissions to create new namespace" in proc.stderr:
        pytest.skip(f"this kernel does not let ordinary users create user namespaces: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "CapEff:\t0000000000000000" in out and "CapBnd:\t0000000000000000" in out, out
    assert "remount=0" not in out and "touch=0" not in out, f"an ordinary user's sandbox could write /usr: {out}"
    assert f"cwd={sandbox.WORKDIR} files=0" in out, out
    assert SECRET not in out, "the grader's secret reached an ordinary user's sandbox"


def test_kernel_option_runs_that_kernelspec_sandboxed_and_interrupts_by_message(tmp_path, monkeypatch):
    """`--kernel NAME` with the sandbox: the wrapper kernelspec runs NAME's argv inside
    bubblewrap with NAME's env (as a CUDA kernelspec sets FLOWLIB_DEVICE); a runaway cell is
    stopped by an interrupt message and the kernel lives on for the next cell."""
    _require_bwrap()
    from jupyter_client import KernelManager

    base = tmp_path / "jupyter" / "kernels" / "fake-cuda"
    base.mkdir(parents=True)
    (base / "kernel.json").write_text(json.dumps({
        "argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"], "language": "python",
        "display_name": "fake CUDA", "env": {"FLOWLIB_DEVICE": "cpu", "SPEC_ONLY_VAR": "from-the-kernelspec"}}))
    prefix = tmp_path / "prefix"
    monkeypatch.setenv("JUPYTER_PATH", f"{tmp_path / 'jupyter'}{os.pathsep}{prefix / 'share' / 'jupyter'}")
    monkeypatch.setenv("FLOWLIB_GRADER_SECRET", SECRET)
    name = sandbox.install("fake-cuda", prefix=str(prefix))
    spec = json.loads((sandbox.kernelspec_dir(name, str(prefix)) / "kernel.json").read_text())
    assert name == "flowlib-sandbox-fake-cuda" and spec["interrupt_mode"] == "message", spec
    assert spec["argv"][spec["argv"].index("--") + 1:] == [sandbox.PYTHON, "-m", "ipykernel_launcher", "-f",
                                                            "{connection_file}"], spec["argv"]
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    km = KernelManager(kernel_name=name, transport="ipc", ip=str(sockets / "kernel-ipc"))
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        def run(code: str, timeout: float = 30) -> dict:
            msg_id = kc.execute(code)
            outputs, reply = [], None
            while reply is None:
                msg = kc.get_iopub_msg(timeout=timeout)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "stream":
                    outputs.append(msg["content"]["text"])
                elif msg["msg_type"] == "error":
                    outputs.append(msg["content"]["ename"])
                elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    reply = "".join(outputs)
            return reply

        seen = json.loads(run("import os, json; print(json.dumps([os.getcwd(), dict(os.environ)]))"))
        assert seen[0] == sandbox.WORKDIR, f"the wrapped kernel runs in {seen[0]}"
        assert seen[1].get("FLOWLIB_DEVICE") == "cpu" and seen[1].get("SPEC_ONLY_VAR") == "from-the-kernelspec", seen[1]
        assert SECRET not in json.dumps(seen[1]), "the grader's secret reached the wrapped kernel"
        msg_id = kc.execute("import time\nwhile True:\n    time.sleep(0.01)")
        time.sleep(1.5)
        km.interrupt_kernel()
        deadline = time.time() + 30
        got = []
        while time.time() < deadline:
            msg = kc.get_iopub_msg(timeout=30)
            if msg["parent_header"].get("msg_id") == msg_id:
                got.append(msg["msg_type"] + ":" + msg["content"].get("ename", msg["content"].get("execution_state", "")))
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    break
        assert "error:KeyboardInterrupt" in got, f"the interrupt message did not stop the cell: {got}"
        assert km.is_alive(), "the interrupt killed the sandboxed kernel"
        assert run("print(6 * 7)").strip() == "42", "the kernel did not run the next cell after the interrupt"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_command_mounts_only_what_the_kernel_needs(tmp_path):
    """The mounts: the socket folder writable; the connection file and the given folders
    read-only; a private tmpfs for the working folder; nothing of the machine else (no
    `--ro-bind / /`, no course folder), and no folder of the grader's as the cwd."""
    _require_bwrap()
    sockets = tmp_path / "rt"
    sockets.mkdir()
    conn = sockets / "kernel.json"
    conn.write_text("{}")
    python_dirs = sandbox._mounts_for(sandbox.PYTHON)
    cmd = sandbox.command(str(conn), str(sockets), [sandbox.PYTHON, "-m", "ipykernel_launcher", "-f", str(conn)],
                          python_dirs, {"PATH": "/usr/bin"})
    pairs = list(zip(cmd, cmd[1:]))
    for flag in ("--unshare-user", "--unshare-net", "--unshare-pid", "--new-session", "--die-with-parent", "--clearenv"):
        assert flag in cmd, f"{flag} missing from {cmd}"
    assert ("--cap-drop", "ALL") in pairs
    assert ("--bind", str(sockets)) in pairs and ("--ro-bind", str(conn.resolve())) in pairs
    assert ("--tmpfs", "/tmp") in pairs and ("--chdir", sandbox.WORKDIR) in pairs
    assert ("--ro-bind", "/") not in pairs, "the whole machine is mounted"
    writable = [b for a, b in pairs if a == "--bind"]
    assert writable == [str(sockets)], f"writable mounts besides the socket folder: {writable}"
    mounted = [b for a, b in pairs if a in ("--bind", "--ro-bind", "--dev-bind")]
    assert not any(m == str(REPO) or m.startswith(str(REPO / "autograder")) or m.startswith(str(REPO / "solutions"))
                   for m in mounted), mounted
    assert cmd[-5:] == [sandbox.PYTHON, "-m", "ipykernel_launcher", "-f", str(conn)]


def test_launch_refuses_tcp(tmp_path):
    conn = tmp_path / "kernel.json"
    conn.write_text('{"transport": "tcp", "ip": "127.0.0.1"}')
    proc = subprocess.run([sys.executable, str(REPO / "autograder" / "sandbox.py"), "--",
                           sys.executable, "-m", "ipykernel_launcher", "-f", str(conn)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "transport=ipc" in proc.stderr, proc.stderr


def _digest(path: Path) -> str:
    """Checksum of a file or of a folder's files (names, link targets and contents)."""
    h = hashlib.sha256()
    paths = sorted(path.rglob("*")) if path.is_dir() else [path]
    for p in paths:
        h.update(str(p.relative_to(path.parent)).encode())
        if p.is_symlink():
            h.update(b"link:" + os.readlink(p).encode())
        elif p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


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
    marker = tmp_path / "daemon-was-here"
    venv = Path(sys.prefix)
    pth = next(venv.glob("lib/python3*/site-packages")) / "zz_sandbox_escape.pth"
    solution = nbformat.read(course_copy / "solutions" / ASG / f"{ASG}.ipynb", as_version=4)

    def with_code(code: str):
        nb = copy.deepcopy(solution)
        first = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
        first.source += "\n" + code
        return nb

    hostile = with_code(ATTACK.format(port=port, course=str(course), target=str(target)))
    escape = with_code(ESCAPE.format(
        asg=ASG, victim=str(course / "submitted" / "victim" / ASG / f"{ASG}.ipynb"),
        gradebook=str(course / "gradebook.db"), solutions=str(course_copy / "solutions"), venv=str(venv),
        pth=str(pth), grades=str(course / "grades.csv"), marker=str(marker)))
    subs = tmp_path / "export"
    for student, nb in (("good", solution), ("hostile", hostile), ("escape", escape), ("victim", solution)):
        (subs / student).mkdir(parents=True)
        nbformat.write(nb, subs / student / f"{ASG}.ipynb")

    solutions_before = _digest(course_copy / "solutions")
    env = dict(os.environ, FLOWLIB_GRADER_SECRET=SECRET)
    try:
        proc = subprocess.run([sys.executable, str(course_copy / "autograder" / "grade.py"), str(subs),
                               "--assignment", ASG, "--similarity", "off"],  # classmates share one solution
                              capture_output=True, text=True, timeout=900, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("the sandboxed run did not complete in 900 s (a detached process holding the grader's output?)")
    finally:
        stop.set()
        thread.join()
        listener.close()
        if pth.exists():
            pth.unlink()
            pytest.fail("the sandboxed kernel wrote a .pth into the venv")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    time.sleep(2)  # the daemon, had it survived, rewrites grades.csv every 0.2 s
    rows = {r["student"]: r for r in csv.DictReader((course / "grades.csv").open())}
    assert "pwned" not in rows and not marker.exists(), "a process left by a kernel rewrote grades.csv after the run"
    for student in ("good", "victim", "hostile", "escape"):
        assert rows[student]["status"] == "graded", f"{student}: {rows[student]['status']}, {rows[student]['reason']}"
        assert float(rows[student]["auto_score"]) == float(rows[student]["auto_max"]) > 0, rows[student]

    graded = nbformat.read(course / "autograded" / "hostile" / ASG / f"{ASG}.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in graded.cells for o in c.get("outputs", []))
    assert "ATTACK-NET: refused" in printed, printed[-2000:]
    assert not connections, "the sandboxed kernel reached a server on the grader's 127.0.0.1"
    assert "ATTACK-LIST: refused" in printed, f"the kernel listed the course folder: {printed[-2000:]}"
    assert not target.exists(), "the sandboxed kernel wrote outside its folder"

    graded = nbformat.read(course / "autograded" / "escape" / ASG / f"{ASG}.ipynb", as_version=4)
    lines = {ln.split(" ", 1)[0]: ln for c in graded.cells for o in c.get("outputs", [])
             for ln in o.get("text", "").splitlines() if ln.startswith("ESC-")}
    assert lines.get("ESC-CWD") == "ESC-CWD []", f"the kernel's folder was not empty: {lines.get('ESC-CWD')}"
    assert lines.get("ESC-HIDDEN") == "ESC-HIDDEN []", f"the kernel found the hidden tests: {lines.get('ESC-HIDDEN')}"
    assert "ESC-ENV" in lines and SECRET not in lines["ESC-ENV"], "the grader's secret reached the kernel"
    assert "rc=0" not in lines.get("ESC-REMOUNT", "rc=0"), f"the venv was remounted: {lines.get('ESC-REMOUNT')}"
    assert "REFUSED" in lines.get("ESC-PTH", ""), f"a .pth was written into the venv: {lines.get('ESC-PTH')}"
    assert "REFUSED" in lines.get("ESC-GRADEBOOK", ""), f"the gradebook was edited: {lines.get('ESC-GRADEBOOK')}"
    assert "ESC-DAEMON" in lines, sorted(lines)
    for page in (course / "feedback" / "escape").rglob("*.html"):
        assert SECRET not in page.read_text(), f"{page.name}: the grader's secret is in the feedback"

    # Nothing outside the students' own folders changed; nothing of the kernel's folder came back.
    assert _digest(course_copy / "solutions") == solutions_before, "solutions/ changed"
    for student in ("good", "victim"):
        sub = course / "submitted" / student / ASG / f"{ASG}.ipynb"
        assert sub.read_bytes() == (subs / student / f"{ASG}.ipynb").read_bytes(), f"{student}'s submission changed"
    with sqlite3.connect(course / "gradebook.db") as db:
        edited = db.execute("select count(*) from grade where manual_score is not null").fetchone()[0]
    assert edited == 0, "manual scores appeared in the gradebook"
    for folder in ("submitted", "autograded", "feedback"):
        for p in (course / folder).rglob("*"):
            assert not p.is_symlink(), f"a symbolic link reached {p.relative_to(course)}"
            assert not p.is_file() or p.stat().st_size < 5_000_000, f"{p.relative_to(course)}: {p.stat().st_size} bytes"
    for folder in ("autograded", "feedback"):  # what nbgrader puts in every student's folder, and no more
        names = {p.relative_to(course / folder / "escape") for p in (course / folder / "escape").rglob("*")}
        usual = {p.relative_to(course / folder / "good") for p in (course / folder / "good").rglob("*")}
        assert names == usual, f"{folder}/escape differs from a classmate's: {sorted(map(str, names ^ usual))}"
