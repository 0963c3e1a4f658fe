"""The grader's side of a probe: start a student's process, send requests, parse replies strictly.

:class:`Probe` owns one probe process (``runtime.py``), started in bubblewrap when it is
available (no network, read-only system and Python, flowlib read-only, an empty private
scratch folder as working directory, a cleared environment, all capabilities dropped, its own
user, PID, IPC and UTS namespaces, a new session) and with rlimits (address space, CPU time,
file size, no core dumps). :class:`Student` is what a hidden test receives: it calls the
student's functions by name on inputs the hidden test chose, and returns plain CPU tensors,
numbers and tuples decoded by ``wire.py``. Whatever the student's process does, the grader
only ever sees such data.
"""
from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch

from . import wire

HERE = Path(__file__).resolve().parent
INSIDE = "/opt/flowlib-probe"  # where the runtime's folder is mounted in the sandbox
SCRATCH = "/scratch"
SCRATCH_BYTES = 256 << 20  # each of /tmp and /scratch (tmpfs, in memory)

#: environment the probe process gets (nothing else of the grader's environment crosses)
ENV_ALLOW = ("LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "OMP_NUM_THREADS")


class ProbeFailure(AssertionError):
    """The probe process did not answer properly: it died, timed out or sent malformed data."""


class StudentError(AssertionError):
    """The student's code raised; ``type`` and ``mro`` are the exception's class names."""

    def __init__(self, what: str, error: dict):
        self.type = str(error.get("type", "?"))[:100]
        self.mro = [str(m)[:100] for m in error.get("mro", [])][:20] if isinstance(error.get("mro"), list) else [self.type]
        self.message = str(error.get("message", ""))[:2000]
        super().__init__(self.describe(what))

    def describe(self, what: str) -> str:
        return f"{what} raised {self.type}" + (f": {self.message}" if self.message else "")


def describe(v: Any) -> str:
    """A short description of a value for failure messages: dtype, shape and device of tensors."""
    if isinstance(v, torch.Tensor):
        return f"{str(v.dtype).replace('torch.', '')} tensor of shape {tuple(v.shape)}"
    if isinstance(v, (tuple, list)):
        inner = ", ".join(describe(x) for x in v[:4]) + (", ..." if len(v) > 4 else "")
        return f"({inner})" if isinstance(v, tuple) else f"[{inner}]"
    if isinstance(v, GraderFunction):
        return f"<function {v.name}>"
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def bwrap_available() -> str | None:
    """bubblewrap's path if it can start a sandbox here (checked once), else None."""
    if "ok" not in _BWRAP:
        path = shutil.which("bwrap")
        ok = None
        if path and os.environ.get("FLOWLIB_PROBE_SANDBOX", "1") != "0":
            probe = subprocess.run([path, *_mounts(), "--unshare-all", "--cap-drop", "ALL", "--", "/bin/true"],
                                   capture_output=True, timeout=30)
            ok = path if probe.returncode == 0 else None
            if ok is None:
                print(f"warning: bubblewrap cannot start here ({probe.stderr.decode(errors='replace').strip()[:200]}); "
                      "probe processes run without a sandbox", file=sys.stderr)
        _BWRAP["ok"] = ok
    return _BWRAP["ok"]


_BWRAP: dict = {}


def _mounts() -> list[str]:
    """System folders read-only (merged-/usr links stay links), like autograder/sandbox.py."""
    args = []
    for name in ("usr", "etc", "bin", "sbin", "lib", "lib32", "lib64"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def sandbox_argv(python: str, env: dict[str, str]) -> list[str]:
    """bubblewrap command line around ``python runtime.py``: nothing of the machine but the
    system folders, this Python (venv and base interpreter) and flowlib, read-only; the
    runtime's own folder at /opt/flowlib-probe; an empty tmpfs as working folder."""
    import importlib.util

    argv = [_BWRAP["ok"], *_mounts()]
    for device in sorted(Path("/dev").glob("nvidia*")):  # a GPU grader's probe keeps its GPU
        argv += ["--dev-bind", str(device), str(device)]
    # the private /tmp first: bubblewrap mounts in order, and a course (its venv) under /tmp,
    # as in a CI clone, must stay visible on top of it
    argv += ["--size", str(SCRATCH_BYTES), "--tmpfs", "/tmp"]
    needed = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    spec = importlib.util.find_spec("flowlib")
    if spec is not None and spec.origin:
        needed.add(Path(spec.origin).resolve().parent)
    for path in sorted(needed):
        argv += ["--ro-bind", str(path), str(path)]
    argv += ["--ro-bind", str(HERE), INSIDE, "--dev", "/dev", "--proc", "/proc",
             "--size", str(SCRATCH_BYTES), "--tmpfs", SCRATCH,
             "--chdir", SCRATCH,
             "--unshare-all", "--cap-drop", "ALL", "--new-session", "--die-with-parent",
             "--clearenv"]
    for key, value in sorted(env.items()):
        argv += ["--setenv", key, value]
    return argv + ["--", python, "-s", f"{INSIDE}/runtime.py"]


class GraderFunction:
    """A Python function of the grader's, passed to the student's code as an argument: the
    student's process gets a stand-in that sends its arguments here; this side evaluates it
    (so call counts and argument shapes are observed by the grader, not reported by the
    student's process) and refuses calls past ``max_calls``.

    ``differentiable=True``: the stand-in is a ``torch.autograd.Function``; autograd in the
    student's process sends the inputs and output cotangents of each backward pass here, and
    :meth:`vjp` answers with the gradients of ``fn`` by the grader's autograd (first order only;
    ``vjp_calls`` counts them). E.g. a score function whose Jacobian the student's code needs."""

    _names = itertools.count()

    def __init__(self, fn: Callable, max_calls: int = 1000, name: str | None = None, differentiable: bool = False):
        self.fn, self.max_calls, self.differentiable = fn, max_calls, differentiable
        self.name = name or getattr(fn, "__name__", "f")
        self.wire_name = f"{'dcb' if differentiable else 'cb'}{next(self._names)}"
        self.calls: list[tuple[tuple[int, ...], torch.dtype]] = []  # (shape, dtype) of each call's tensor
        self.vjp_calls = 0
        self.refused = 0

    def __call__(self, args: list, kwargs: dict):
        if len(self.calls) >= self.max_calls:
            self.refused += 1
            raise RuntimeError(f"{self.name} was called more than {self.max_calls} times in one call")
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        self.calls.append((tuple(tensors[0].shape), tensors[0].dtype) if tensors else ((), None))
        return self.fn(*args, **kwargs)

    def vjp(self, args: list, kwargs: dict, cotangents: list) -> list:
        """Gradients of ``fn`` at ``args`` against the output ``cotangents`` (one per output tensor),
        one entry per argument: a tensor for each floating-point tensor argument, else None."""
        if not self.differentiable:
            raise RuntimeError(f"{self.name} is not differentiable")
        if self.vjp_calls >= self.max_calls:
            self.refused += 1
            raise RuntimeError(f"{self.name} was differentiated more than {self.max_calls} times in one call")
        self.vjp_calls += 1
        inputs = [a.detach().clone().requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                  for a in args]
        with torch.enable_grad():
            out = self.fn(*inputs, **kwargs)
        outs = list(_tensors(out))
        if len(outs) != len(cotangents):
            raise RuntimeError(f"{len(cotangents)} cotangents for {len(outs)} outputs of {self.name}")
        pairs = [(o, c) for o, c in zip(outs, cotangents) if isinstance(c, torch.Tensor) and o.requires_grad]
        wrt = [i for i, a in enumerate(inputs) if isinstance(a, torch.Tensor) and a.requires_grad]
        grads: list = [None] * len(inputs)
        if pairs and wrt:
            found = torch.autograd.grad([o for o, _ in pairs], [inputs[i] for i in wrt],
                                        [c.to(o.dtype) for o, c in pairs], allow_unused=True)
            for i, g in zip(wrt, found):
                grads[i] = g
        return grads


class Probe:
    """One student's probe process, restarted when it dies or hangs."""

    def __init__(self, cells: list[dict], stub: list[str], device: str, seed: int,
                 cell_timeout: float = 120.0, memory_mb: int | None = None, sandbox: bool | None = None,
                 limits: wire.Limits = wire.GRADER_SIDE):
        self.cells, self.stub, self.device, self.seed = cells, stub, device, seed
        self.cell_timeout = cell_timeout
        default_mb = int(os.environ.get("FLOWLIB_PROBE_MEMORY_MB", "8192"))
        self.memory_mb = memory_mb if memory_mb is not None else default_mb
        self.sandbox = (bwrap_available() is not None) if sandbox is None else sandbox
        self.limits = limits
        self.proc: subprocess.Popen | None = None
        self.cell_errors: dict[str, dict] = {}
        self.stderr_tail = b""
        self.starts = 0
        self.callbacks: dict[str, GraderFunction] = {}

    # -- process -------------------------------------------------------------------------
    def _argv(self) -> list[str]:
        if self.sandbox:
            return sandbox_argv(os.path.abspath(sys.executable), self._env())
        return [sys.executable, "-s", str(HERE / "runtime.py")]

    def _env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in ENV_ALLOW if k in os.environ}
        env.update(PATH="/usr/bin:/bin", HOME=SCRATCH if self.sandbox else "/nonexistent", MPLBACKEND="Agg",
                   FLOWLIB_PROGRESS="0", FLOWLIB_SEED=str(self.seed), FLOWLIB_DEVICE=self.device,
                   NBGRADER_EXECUTION="autograde", PYTHONDONTWRITEBYTECODE="1")
        return env

    def start(self) -> None:
        self.close()
        self.starts += 1
        workdir = None
        if not self.sandbox:
            import tempfile

            workdir = tempfile.mkdtemp(prefix="probe-")
            self._workdir = workdir
        self.proc = subprocess.Popen(self._argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=self._env(), cwd=workdir,
                                     start_new_session=True, close_fds=True)
        self.stderr_tail = b""
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()
        cpu = int(max(60, self.cell_timeout * (len(self.cells) + 20)))
        rlimits = {"RLIMIT_CPU": cpu, "RLIMIT_FSIZE": 64 << 20, "RLIMIT_CORE": 0}
        if not self.device.startswith("cuda"):  # CUDA reserves huge virtual ranges
            rlimits["RLIMIT_AS"] = self.memory_mb << 20
        self.request({"op": "init", "rlimits": rlimits, "stub": self.stub, "device": self.device,
                      "threads": 1}, timeout=120)
        reply = self.request({"op": "exec", "cells": self.cells, "cell_timeout": self.cell_timeout},
                             timeout=self.cell_timeout * (len(self.cells) + 1) + 30)
        cells = reply.get("cells") if isinstance(reply, dict) else None
        if not isinstance(cells, list):
            raise ProbeFailure("the probe process sent a malformed answer to the notebook's cells")
        self.cell_errors = {str(c.get("id")): c["error"] for c in cells
                            if isinstance(c, dict) and isinstance(c.get("error"), dict)}

    def _drain(self, proc: subprocess.Popen) -> None:
        """Read the process's stderr (the student's prints land there), keeping the last 8 KiB."""
        fd = proc.stderr.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.stderr_tail = (self.stderr_tail + chunk)[-8192:]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for pipe in (proc.stdin, proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if getattr(self, "_workdir", None):
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    # -- requests ------------------------------------------------------------------------
    def request(self, msg: dict, timeout: float) -> dict:
        """Send one request and wait for its reply, serving the student's calls of grader
        functions meanwhile. Kills the process on a hard timeout or malformed data."""
        if not self.alive():
            raise ProbeFailure("the probe process is not running")
        msg = dict(msg, timeout=timeout)
        deadline = time.monotonic() + timeout + 5  # the runtime interrupts itself at `timeout`
        try:
            wire.write_frame(self.proc.stdin.fileno(), wire.encode(msg))
            while True:
                reply, _ = wire.read_frame(self.proc.stdout.fileno(), self.limits, deadline)
                if isinstance(reply, dict) and "callback" in reply and "ok" not in reply:
                    self._serve_callback(reply, deadline)
                    continue
                break
        except wire.WireTimeout:
            self.close()
            raise ProbeFailure(f"no answer within {timeout:g} s (the time limit); the process was stopped") from None
        except (EOFError, BrokenPipeError, ConnectionError):
            proc = self.proc
            try:
                code = proc.wait(timeout=5) if proc else None
            except subprocess.TimeoutExpired:
                code = None
            self.close()
            time.sleep(0.05)  # let the drain thread read the last words
            tail = self.stderr_tail.decode(errors="replace").strip().splitlines()[-3:]
            raise ProbeFailure(f"the student's process died (exit status {code})"
                               + (f"; its last output: {' | '.join(tail)[-500:]}" if tail else "")) from None
        except wire.WireError as exc:
            self.close()
            raise ProbeFailure(f"the student's process sent malformed data: {exc}") from None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            self.close()
            raise ProbeFailure("the student's process sent a reply that is not a probe reply")
        if not reply["ok"]:
            error = reply.get("error") if isinstance(reply.get("error"), dict) else {}
            if error.get("type") == "Timeout":
                self.close()  # state after an interrupt is unknown: the next test gets a fresh process
            raise StudentError(msg.get("what", msg.get("op", "request")), error)
        return reply

    def _serve_callback(self, req: dict, deadline: float) -> None:
        fn = self.callbacks.get(req.get("callback")) if isinstance(req.get("callback"), str) else None
        args = req.get("args") if isinstance(req.get("args"), list) else []
        kwargs = req.get("kwargs") if isinstance(req.get("kwargs"), dict) else {}
        try:
            if fn is None:
                raise RuntimeError("unknown function")
            if "vjp" in req:  # a backward pass through a differentiable grader function
                if not isinstance(req["vjp"], list):
                    raise RuntimeError("malformed cotangents")
                value = fn.vjp(args, kwargs, req["vjp"])
            else:
                value = fn(args, kwargs)
            reply = {"ok": True, "value": value}
        except Exception as exc:  # the grader's function refused or failed on the student's input
            reply = {"ok": False, "error": {"type": type(exc).__name__, "message": str(exc)[:500]}}
        wire.write_frame(self.proc.stdin.fileno(), wire.encode(reply))


class Student:
    """What a hidden test function receives: the student's code, behind a probe process.

    ``student.call("f", *args, **kwargs)`` runs ``f`` in the student's process on these
    arguments (tensors are sent to the student's device) and returns the result as plain CPU
    tensors and Python values; every returned tensor must be on the student's device (else
    :class:`ProbeFailure`-like AssertionError naming the call). If the student's code raises,
    :class:`StudentError` (an AssertionError) says which call raised what.
    """

    def __init__(self, probe: Probe, timeout: float):
        self.probe = probe
        self.device = probe.device
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout

    # -- helpers -------------------------------------------------------------------------
    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ProbeFailure(f"the exercise's time limit of {self.timeout:g} s ran out")
        return left

    def _ensure(self) -> Probe:
        if not self.probe.alive():
            # (re)starting the process (seconds on a busy machine) does not count against the exercise
            started = time.monotonic()
            self.probe.start()
            self.deadline += time.monotonic() - started
        return self.probe

    def define(self, source: str) -> None:
        """Run the grader's helper source (plain torch functions named ``_grader_*``) in the
        student's process, where the student's code must differentiate a function, receive a
        ``torch.Generator`` or a dtype, or call a module built there. Helpers only shape the
        inputs that the student's functions receive; every answer is still judged here.
        (Again after a restart: call it at the start of each use.)"""
        probe = self._ensure()
        reply = probe.request({"op": "exec", "cells": [{"id": "grader helpers", "source": source}],
                               "cell_timeout": 30.0}, timeout=min(60.0, self._left()))
        cells = reply.get("cells") if isinstance(reply, dict) else None
        errors = [c.get("error") for c in cells or [] if isinstance(c, dict) and c.get("error")]
        if not isinstance(cells, list) or errors:
            detail = f"{errors[0].get('type')}: {str(errors[0].get('message'))[:300]}" if errors else "no answer"
            raise AssertionError(f"the grader's helper functions could not be defined in your notebook's process ({detail})")

    def function(self, fn: Callable, max_calls: int = 1000, name: str | None = None,
                 differentiable: bool = False) -> GraderFunction:
        """A grader-side function to pass as an argument (e.g. the ``f`` of a root finder);
        ``differentiable=True`` lets the student's autograd backpropagate through it."""
        return GraderFunction(fn, max_calls, name, differentiable)

    def _request(self, msg: dict, what: str) -> dict:
        probe = self._ensure()
        callbacks = {}

        def collect(v):
            if isinstance(v, GraderFunction):
                callbacks[v.wire_name] = v
                return wire.Callback(v.wire_name)
            if isinstance(v, tuple):
                return tuple(collect(x) for x in v)
            if isinstance(v, list):
                return [collect(x) for x in v]
            if isinstance(v, dict):
                return {k: collect(x) for k, x in v.items()}
            return v

        msg = {k: collect(v) for k, v in msg.items()}
        probe.callbacks = callbacks
        try:
            return probe.request(dict(msg, what=what), timeout=self._left())
        except StudentError as exc:
            exc.args = (exc.describe(what),)
            raise

    def _what(self, name: str, args, kwargs) -> str:
        parts = [describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()]
        return f"{name}({', '.join(parts)})"

    # -- API -----------------------------------------------------------------------------
    def call(self, name: str, /, *args, **kwargs):
        """``name(*args, **kwargs)`` in the student's process; returns the decoded result."""
        what = self._what(name, args, kwargs)
        reply = self._request({"op": "call", "target": name, "args": list(args), "kwargs": kwargs}, what)
        return self._value(reply, "value", what)

    def value(self, name: str):
        """The value of the student's global ``name`` (a derivation's answer: a number, a tuple
        of numbers, a tensor), decoded like a call's result. A missing name fails with
        "name ... is not defined", which says what to define."""
        if not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"value(): {name!r} is not a public Python name")
        self.define(f"def _grader_value_of_{name}():\n    return {name}\n")
        return self.call(f"_grader_value_of_{name}")

    def call_grad(self, name: str, args: tuple, kwargs: dict | None = None, wrt: tuple[int, ...] = (0,),
                  cotangents: list | None = None):
        """Call ``name`` with ``args[i]`` (i in ``wrt``) requiring grad, then backpropagate
        ``cotangents`` (one per output tensor, None to skip one) in the student's process.
        Returns (value, [gradient of each wrt argument, None where unused])."""
        kwargs = kwargs or {}
        what = self._what(name, args, kwargs) + " with autograd"
        reply = self._request({"op": "call", "target": name, "args": list(args), "kwargs": kwargs,
                               "grad": {"wrt": list(wrt), "cotangents": list(cotangents or [])}}, what)
        value = self._value(reply, "value", what)
        grads = self._value(reply, "grads", what)
        if not isinstance(grads, list) or len(grads) != len(wrt) or not all(
                g is None or isinstance(g, torch.Tensor) for g in grads):
            raise ProbeFailure(f"{what}: malformed gradients from the student's process")
        return value, grads

    def raises(self, expected: type[BaseException], name: str, /, *args, **kwargs) -> str:
        """Assert that ``name(*args, **kwargs)`` raises ``expected`` (or a subclass) in the
        student's process; returns the message."""
        what = self._what(name, args, kwargs)
        try:
            self._request({"op": "call", "target": name, "args": list(args), "kwargs": kwargs}, what)
        except StudentError as exc:
            if expected.__name__ in exc.mro:
                return exc.message
            raise AssertionError(f"{what} must raise {expected.__name__}, it raised {exc.type}: {exc.message}") from None
        raise AssertionError(f"{what} must raise {expected.__name__}, it returned normally")

    def seed(self, seed: int) -> None:
        """torch.manual_seed(seed) in the student's process (e.g. before a training call)."""
        self._request({"op": "seed", "seed": int(seed)}, f"torch.manual_seed({seed})")

    def generator(self, seed: int) -> wire.Handle:
        """A CPU ``torch.Generator`` in the student's process seeded with ``seed`` (a handle to
        pass as a sampler's ``generator``): it draws what ``torch.Generator().manual_seed(seed)``
        draws here, so the grader can reproduce the student's noise number for number."""
        what = f"torch.Generator().manual_seed({int(seed)})"
        reply = self._request({"op": "call", "target": "torch", "attr": "Generator", "args": [], "kwargs": {}}, what)
        handle = self._value(reply, "value", what)
        if not isinstance(handle, wire.Handle):
            raise AssertionError(f"{what} did not build a generator in the student's process")
        return self.method(handle, "manual_seed", int(seed))

    def set_grad_enabled(self, mode: bool) -> None:
        """torch.set_grad_enabled(mode) in the student's process, for the requests that follow
        (e.g. ``False`` to check that a function also works inside ``torch.no_grad()``; set it
        back in a ``finally``). A restarted process starts with gradients enabled."""
        self._request({"op": "call", "target": "torch", "attr": "set_grad_enabled", "args": [bool(mode)],
                       "kwargs": {}}, f"torch.set_grad_enabled({bool(mode)})")

    def state_dict(self, handle: wire.Handle) -> dict:
        what = f"{handle.type}.state_dict()"
        return self._value(self._request({"op": "state_dict", "handle": handle.id}, what), "value", what)

    def load_state_dict(self, handle: wire.Handle, state: dict, strict: bool = True) -> None:
        self._request({"op": "load_state_dict", "handle": handle.id, "state": state, "strict": strict},
                      f"{handle.type}.load_state_dict(...)")

    def method(self, handle: wire.Handle, attr: str, /, *args, **kwargs):
        """``obj.attr(*args, **kwargs)`` on an object the student's code returned or built."""
        what = self._what(f"{handle.type}.{attr}", args, kwargs)
        reply = self._request({"op": "call", "handle": handle.id, "attr": attr, "args": list(args),
                               "kwargs": kwargs}, what)
        return self._value(reply, "value", what)

    def new(self, cls: str, /, *args, **kwargs) -> wire.Handle:
        """Construct the student's class ``cls``; returns a handle for :meth:`method`."""
        value = self.call(cls, *args, **kwargs)
        if not isinstance(value, wire.Handle):
            raise AssertionError(f"{self._what(cls, args, kwargs)} did not build an object")
        return value

    def _value(self, reply: dict, key: str, what: str):
        if key not in reply:
            raise ProbeFailure(f"{what}: the reply has no {key!r}")
        want = torch.device(self.device).type
        for t in _tensors(reply[key]):
            if t.probe_device.split(":")[0] != want:
                raise AssertionError(f"{what} returned a tensor on {t.probe_device}; the inputs were on {self.device}")
        return reply[key]


def _tensors(v):
    if isinstance(v, torch.Tensor):
        yield v
    elif isinstance(v, (tuple, list)):
        for x in v:
            yield from _tensors(x)
    elif isinstance(v, dict):
        for x in v.values():
            yield from _tensors(x)
