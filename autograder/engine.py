"""The grading engine: one task grades one (student, assignment), here or on a Dask cluster.

grade.py builds a :class:`Task` per submission and hands the tasks to :func:`run`, which
yields each :class:`Outcome` as it completes:

* ``workers=1`` and no scheduler: the tasks run one after the other in this process;
* ``workers=N``: a ``dask.distributed.LocalCluster`` of N worker processes (nothing to start);
* ``scheduler="tcp://host:8786"``: an existing Dask cluster (``make grade-worker`` on each
  grading machine, or dask-jobqueue on Slurm/PBS, or Kubernetes).

A task carries everything the worker needs: the submitted notebook, the assignment's source
folder (``solutions/<asg>/``: source notebook and hidden tests) and the options. The worker
grades in a private temporary course folder with its own SQLite gradebook (``nbgrader
autograde``, then the grader-side verdicts of autograder/verdicts.py) and returns the
autograded notebook and the scores of every graded cell. Workers need the course environment
(this checkout and its virtual environment), but no shared file system and no database
access: the client alone writes the gradebook (:func:`record`), grades.csv and feedback.

Warm workers: each worker process keeps a fork server with nbgrader, nbclient and the course
preprocessors imported, and registers each assignment once (a template gradebook copied per
task). Each student's autograde runs in a fresh child of that fork server, in a session of its
own, which starts a fresh kernel: no state passes from one student to the next, and the whole
child is killed when it runs past the per-notebook limit (``FLOWLIB_NOTEBOOK_TIMEOUT``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# nbgrader calls `alembic` and starts kernels: both must come from this environment (as in grade._env).
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
os.environ.setdefault("FLOWLIB_PROGRESS", "0")

COURSE = Path("autograder") / "course"  # inside a task's temporary course root, as in nbgrader_config.py
NOTEBOOK_TIMEOUT = float(os.environ.get("FLOWLIB_NOTEBOOK_TIMEOUT", "1800"))
RETRIES = 2  # a task whose worker died is resubmitted by Dask; this bounds failures of the task itself


@dataclass
class Task:
    student: str
    assignment: str
    notebook: bytes                      # the submitted .ipynb, as handed in
    timestamp: str                       # nbgrader's timestamp.txt text
    bundle: dict[str, bytes]             # solutions/<asg>/ files, by name
    kernel: str | None = None
    sandboxed: bool = False
    timeout: float = NOTEBOOK_TIMEOUT


@dataclass
class Outcome:
    student: str
    assignment: str
    ok: bool
    reason: str = ""
    autograded: bytes = b""              # the autograded notebook (verdict messages included)
    grades: dict = field(default_factory=dict)    # "notebook/cell" -> {"auto_score", "needs_manual_grade"}
    comments: dict = field(default_factory=dict)  # "notebook/cell" -> auto_comment
    worker: str = ""
    seconds: float = 0.0


def make_task(repo: Path, student: str, assignment: str, submitted: Path, kernel: str | None,
              sandboxed: bool) -> Task:
    """The task for a submission already imported into ``submitted`` (grade.import_submission)."""
    stamp = submitted.parent / "timestamp.txt"
    return Task(student, assignment, submitted.read_bytes(), stamp.read_text() if stamp.is_file() else "",
                assignment_bundle(repo, assignment), kernel, sandboxed, NOTEBOOK_TIMEOUT)


def assignment_bundle(repo: Path, assignment: str) -> dict[str, bytes]:
    """What a task carries of the assignment: solutions/<asg>/'s notebook and Python files."""
    folder = Path(repo) / "solutions" / assignment
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.suffix in (".ipynb", ".py")}


# -- worker side -----------------------------------------------------------------------------
_FORKSERVER_PRELOAD = ["nbgrader.apps.api", "nbgrader.preprocessors", "nbclient", "jupyter_client",
                       "nbconvert", "nbformat", "traitlets", "engine"]
_lock = threading.RLock()
_templates: dict[str, Path] = {}        # sha of the assignment's bundle -> a registered course root
_installed: set[str] = set()             # sandbox kernelspecs this process wrote
_context = None


def _mp_context():
    """The fork server of this worker process, preloaded with nbgrader (the warm part)."""
    global _context
    with _lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(_FORKSERVER_PRELOAD)
            _context = ctx
    return _context


def _config(root: Path, kernel_name: str | None, ipc: str | None):
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(HERE)).load_config()
    cfg.CourseDirectory.root = str(root)
    cfg.CourseDirectory.db_url = f"sqlite:///{root / COURSE / 'gradebook.db'}"
    if kernel_name:
        cfg.Execute.kernel_name = kernel_name
    if ipc:
        cfg.KernelManager.transport = "ipc"
        cfg.KernelManager.ip = ipc
    return cfg


def _child(op: str, root: str, assignment: str, student: str, kernel_name: str | None, ipc: str | None) -> None:
    """In a fresh child of the fork server: one nbgrader command, in-process, in a session of
    its own (so the parent can kill it and everything it started). Exit status 0 = success;
    the log goes to root/nbgrader.log."""
    os.setsid()
    root_p = Path(root)
    os.chdir(root_p)
    log = root_p / "nbgrader.log"
    # what nbgrader, SQLAlchemy and the kernel print goes to the task's log, not the worker's terminal
    fd = os.open(root_p / "nbgrader.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = 1
    try:
        from nbgrader.apps.api import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory

        cfg = _config(root_p, kernel_name, ipc)
        api = NbGraderAPI(coursedir=CourseDirectory(config=cfg), config=cfg)
        if op == "register":
            with tempfile.TemporaryDirectory() as scratch:
                api.coursedir.release_directory = scratch
                result = api.generate_assignment(assignment, force=True)
        else:
            result = api.autograde(assignment, student, force=True, create=True)
        log.write_text(str(result.get("log", "")) + "\n" + str(result.get("error", "") or ""))
        code = 0 if result.get("success") else 1
    except BaseException:  # noqa: BLE001 - reported through the log and the exit status
        log.write_text(traceback.format_exc())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _run_child(op: str, root: Path, assignment: str, student: str = "", kernel_name: str | None = None,
               ipc: str | None = None, timeout: float = NOTEBOOK_TIMEOUT) -> tuple[bool, str]:
    proc = _mp_context().Process(target=_child, args=(op, str(root), assignment, student, kernel_name, ipc))
    proc.start()
    proc.join(timeout)
    late = proc.is_alive()
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child's session: it and the kernel it started
    except (ProcessLookupError, PermissionError):
        pass
    proc.join(10)
    log = "".join((root / name).read_text(errors="replace")[-20000:] for name in ("nbgrader.out", "nbgrader.log")
                  if (root / name).is_file())
    if late:
        return False, log + f"\nGradingTimeout: nbgrader {op} ran past {timeout:g} s and was stopped\n"
    return proc.exitcode == 0, log


def _bundle_sha(task: Task) -> str:
    h = hashlib.sha256(task.assignment.encode())
    for name, data in sorted(task.bundle.items()):
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def _write_bundle(root: Path, task: Task) -> None:
    folder = root / "solutions" / task.assignment
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in task.bundle.items():
        if "/" in name or name.startswith("."):
            raise ValueError(f"bad file name in the assignment bundle: {name!r}")
        (folder / name).write_bytes(data)
    (root / COURSE).mkdir(parents=True, exist_ok=True)


def _template(task: Task) -> Path:
    """A course root where the assignment is registered (its gradebook knows the graded
    cells), made once per worker process and assignment version."""
    sha = _bundle_sha(task)
    with _lock:
        root = _templates.get(sha)
        if root is not None and (root / COURSE / "gradebook.db").is_file():
            return root
        root = Path(tempfile.mkdtemp(prefix=f"grading-template-{task.assignment[:20]}-"))
        _write_bundle(root, task)
        ok, log = _run_child("register", root, task.assignment)
        if not ok:
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"registering {task.assignment} failed on this worker:\n{log[-2000:]}")
        _templates[sha] = root
        return root


def _read_scores(db_url: str, student: str, assignment: str) -> tuple[dict, dict]:
    """Every graded cell's auto score and manual flag, and every auto comment, from a task's gradebook."""
    from nbgrader.api import Gradebook

    grades, comments = {}, {}
    with Gradebook(db_url) as gb:
        sub = gb.find_submission(assignment, student)
        for nb in sub.notebooks:
            for g in nb.grades:
                grades[f"{nb.name}/{g.name}"] = {"auto_score": g.auto_score, "needs_manual_grade": bool(g.needs_manual_grade)}
            for c in nb.comments:
                comments[f"{nb.name}/{c.name}"] = c.auto_comment
    return grades, comments


def grade_task(task: Task) -> Outcome:
    """Grade one submission in a private temporary course folder (runs on a worker)."""
    import grade  # _failure_reason; a worker imports the course's autograder package from its checkout

    t0 = time.monotonic()
    worker = f"{os.uname().nodename}:{os.getpid()}"
    out = Outcome(task.student, task.assignment, ok=False, worker=worker)
    try:
        template = _template(task)
    except Exception as exc:  # noqa: BLE001 - the student gets the reason, the batch goes on
        out.reason = f"the worker could not register {task.assignment}: {str(exc)[-300:]}"
        return out
    with tempfile.TemporaryDirectory(prefix="grading-") as tmp:
        root = Path(tmp)
        _write_bundle(root, task)
        shutil.copyfile(template / COURSE / "gradebook.db", root / COURSE / "gradebook.db")
        sub = root / COURSE / "submitted" / task.student / task.assignment
        sub.mkdir(parents=True)
        (sub / f"{task.assignment}.ipynb").write_bytes(task.notebook)
        if task.timestamp:
            (sub / "timestamp.txt").write_text(task.timestamp)
        kernel_name, ipc = task.kernel, None
        if task.sandboxed:
            import sandbox

            kernel_name = sandbox.kernel_name(task.kernel)
            with _lock:  # once per worker process: the kernelspec names this checkout's sandbox.py
                if kernel_name not in _installed:
                    sandbox.install(task.kernel)
                    _installed.add(kernel_name)
            # a short prefix: IPC socket paths must stay under the 107 bytes of a Unix socket name
            ipc_dir = tempfile.mkdtemp(prefix="kernel-")
            ipc = f"{ipc_dir}/kernel-ipc"
        try:
            ok, log = _run_child("autograde", root, task.assignment, task.student, kernel_name, ipc, task.timeout)
        finally:
            if ipc:
                shutil.rmtree(os.path.dirname(ipc), ignore_errors=True)
        autograded = root / COURSE / "autograded" / task.student / task.assignment / f"{task.assignment}.ipynb"
        if not ok or not autograded.is_file():
            out.reason = grade._failure_reason(_Proc(log))
            out.seconds = time.monotonic() - t0
            return out
        import verdicts

        db_url = f"sqlite:///{root / COURSE / 'gradebook.db'}"
        verdicts.apply(root, db_url, task.student, task.assignment, autograded, sandbox=None)
        out.grades, out.comments = _read_scores(db_url, task.student, task.assignment)
        out.autograded = autograded.read_bytes()
        out.ok = True
    out.seconds = time.monotonic() - t0
    return out


@dataclass
class _Proc:  # what grade._failure_reason reads
    stdout: str
    stderr: str = ""
    returncode: int = 1


# -- client side -----------------------------------------------------------------------------
def record(db_url: str, outcome: Outcome, autograded_dir: Path, timestamp: str = "") -> None:
    """Write a worker's outcome into the course gradebook and autograded folder, as nbgrader
    autograde would have: the submission (created if new), each cell's auto score and auto
    comment; a manual score given earlier is kept and the cell stays marked for review."""
    from nbgrader.api import Gradebook

    from dateutil.parser import parse as parse_time

    with Gradebook(db_url) as gb:
        gb.update_or_create_student(outcome.student)
        kwargs = {"timestamp": parse_time(timestamp)} if timestamp.strip() else {}
        sub = gb.update_or_create_submission(outcome.assignment, outcome.student, **kwargs)
        for nb in sub.notebooks:
            for grade in nb.grades:
                found = outcome.grades.get(f"{nb.name}/{grade.name}")
                if found is None:
                    continue
                grade.auto_score = found["auto_score"]
                grade.needs_manual_grade = grade.manual_score is not None or found["needs_manual_grade"]
            for comment in nb.comments:
                key = f"{nb.name}/{comment.name}"
                if key in outcome.comments:
                    comment.auto_comment = outcome.comments[key]
        gb.db.commit()
    dest = autograded_dir / outcome.student / outcome.assignment
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    (dest / f"{outcome.assignment}.ipynb").write_bytes(outcome.autograded)
    if timestamp:
        (dest / "timestamp.txt").write_text(timestamp)


def connect(scheduler: str):
    """A Dask client of the cluster at ``scheduler``, or SystemExit saying how to start one."""
    from dask.distributed import Client

    try:
        return Client(scheduler, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise SystemExit(f"no Dask scheduler answers at {scheduler} ({type(exc).__name__}: {exc}); start one with "
                         "`dask scheduler` and workers with `make grade-worker SCHEDULER=...` (README)") from None


def _dask_client(workers: int, scheduler: str | None):
    import dask
    from dask.distributed import Client, LocalCluster

    # A worker starts a fork server and, through it, one process per student: Dask's worker
    # processes must not be daemonic (make grade-worker sets the same for a cluster's workers).
    dask.config.set({"distributed.worker.daemon": False})

    if scheduler:
        return connect(scheduler), None
    # Worker processes import this module by name: put autograder/ on their path.
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           env={"PYTHONPATH": path}, silence_logs=logging.ERROR)
    return Client(cluster), cluster


def run(tasks: list[Task], workers: int = 1, scheduler: str | None = None) -> Iterator[Outcome]:
    """Grade every task and yield its outcome as it completes (any order). One task per
    (student, assignment): a worker lost mid-task has its task rerun elsewhere by Dask."""
    if not tasks:
        return
    if workers <= 1 and not scheduler:
        for task in tasks:
            yield _safe(task)
        return
    from dask.distributed import as_completed

    client, cluster = _dask_client(workers, scheduler)
    try:
        futures = {client.submit(_safe, t, key=f"grade-{t.assignment}-{t.student}-{time.time_ns()}", pure=False,
                                 retries=RETRIES): t for t in tasks}
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                yield fut.result()
            except Exception as exc:  # noqa: BLE001 - e.g. every worker that tried it died
                yield Outcome(task.student, task.assignment, ok=False,
                              reason=f"grading task failed on the cluster: {type(exc).__name__}: {str(exc)[:300]}")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _safe(task: Task) -> Outcome:
    """grade_task, with any error of the grader itself turned into that student's failure."""
    try:
        return grade_task(task)
    except Exception as exc:  # noqa: BLE001
        return Outcome(task.student, task.assignment, ok=False,
                       reason=f"grader error: {type(exc).__name__}: {str(exc)[:300]}")


if __name__ == "__main__":  # a quick check: python autograder/engine.py ASSIGNMENT NOTEBOOK
    asg, nb_path = sys.argv[1], Path(sys.argv[2])
    t = Task("check", asg, nb_path.read_bytes(), "", assignment_bundle(HERE.parent, asg))
    for _ in range(2):
        o = grade_task(t)
        print(json.dumps({"ok": o.ok, "reason": o.reason, "seconds": round(o.seconds, 2),
                          "auto": sum((g["auto_score"] or 0) for g in o.grades.values())}))
