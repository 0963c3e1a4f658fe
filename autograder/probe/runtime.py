"""The probe runtime: the only process that runs a student's code when the grader computes verdicts.

Started by the grader (``autograder/probe/client.py``), inside bubblewrap where available,
in an empty scratch folder with a cleared environment. It speaks the frames of ``wire.py``
over two file descriptors (the grader's pipes, moved off stdin/stdout before any student
code runs, so that ``print`` cannot corrupt them), and serves one request at a time:

    init   {rlimits, stub: [dotted flowlib names], device, seed}
    exec   {cells: [{id, source}], cell_timeout}   -> per-cell error (type, message) or null
    seed   {seed}                                  torch.manual_seed in this process
    call   {target, handle?, attr?, args, kwargs, grad?, timeout}
                                                   -> {value, grads?, param_grads?}
    getattr / state_dict / load_state_dict {handle, ...}
    bye

Nothing here is trusted by the grader: student code runs in this process and can change
any of it. It only produces data, which the grader parses strictly and judges itself.
"""
from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

PROTO_IN = os.dup(0)
PROTO_OUT = os.dup(1)
_null = os.open(os.devnull, os.O_RDONLY)
os.dup2(_null, 0)
os.dup2(2, 1)  # the student's prints go to stderr, which the grader drains and discards

import wire  # noqa: E402  (after the descriptors are moved)

HANDLES: dict[int, object] = {}
NAMESPACE: dict = {}
STATE = {"device": "cpu", "shell": None}


class _Watchdog:
    """Interrupts the main thread (KeyboardInterrupt) when a request overruns: a timeout then
    loses only that request. The grader kills the whole process if this does not work."""

    def __init__(self):
        self.timer = None

    @staticmethod
    def install():
        """interrupt_main() only raises where Python handles SIGINT; a process started in the
        background by a non-interactive shell (a CI job, nohup ... &) inherits SIGINT ignored,
        and then no time limit could interrupt a loop (every infinite loop cost a kill and a
        restart: seen in a CI-path run)."""
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def arm(self, seconds):
        self.disarm()
        if seconds and seconds > 0:
            self.timer = threading.Timer(float(seconds), _thread.interrupt_main)
            self.timer.daemon = True
            self.timer.start()

    def disarm(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


WATCHDOG = _Watchdog()


def send(msg) -> None:
    wire.write_frame(PROTO_OUT, wire.encode(msg, handle=_new_handle))


def recv():
    msg, _ = wire.read_frame(PROTO_IN, wire.PROBE_SIDE)
    return msg


def _new_handle(obj) -> dict:
    n = len(HANDLES) + 1
    HANDLES[n] = obj
    return {"$handle": n, "type": type(obj).__name__}


def _error(exc: BaseException) -> dict:
    if isinstance(exc, KeyboardInterrupt):
        return {"type": "Timeout", "mro": ["Timeout"], "message": "interrupted: the time limit ran out"}
    mro = [k.__name__ for k in type(exc).__mro__]
    try:
        message = str(exc)
    except Exception:  # a hostile __str__
        message = "<unprintable>"
    return {"type": type(exc).__name__, "mro": mro[:20], "message": message[:4000]}


def _to_device(v):
    import torch

    if isinstance(v, torch.Tensor):
        return v.to(STATE["device"])
    if isinstance(v, tuple):
        return tuple(_to_device(x) for x in v)
    if isinstance(v, list):
        return [_to_device(x) for x in v]
    if isinstance(v, dict):
        return {k: _to_device(x) for k, x in v.items()}
    if isinstance(v, wire.Handle):
        return HANDLES[v.id]
    if isinstance(v, wire.Callback):
        return _callback(v.name)
    return v


def _callback(name: str):
    def callback(*args, **kwargs):
        send({"callback": name, "args": list(args), "kwargs": kwargs})
        return _callback_reply()

    callback.__name__ = callback.__qualname__ = name
    if name.startswith("dcb"):  # a differentiable grader function (client.GraderFunction)
        return _differentiable(name, callback)
    return callback


def _callback_reply():
    reply = recv()
    if not isinstance(reply, dict) or not reply.get("ok"):
        message = reply.get("error", {}).get("message", "the grader refused the call") if isinstance(reply, dict) else "bad reply"
        raise RuntimeError(message)
    return _to_device(reply.get("value"))


def _differentiable(name: str, plain):
    """A grader function that autograd differentiates: the forward pass asks the grader for the
    value, the backward pass sends the inputs and the output cotangents and gets the grader's
    vector-Jacobian product (one gradient per positional argument, None for non-tensors)."""
    import torch

    class GraderFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, kwargs, *args):
            ctx.inputs = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
            ctx.kwargs = kwargs
            return plain(*ctx.inputs, **kwargs)

        @staticmethod
        def backward(ctx, *cotangents):
            send({"callback": name, "vjp": list(cotangents), "args": ctx.inputs, "kwargs": ctx.kwargs})
            grads = _callback_reply()
            if not isinstance(grads, list) or len(grads) != len(ctx.inputs):
                raise RuntimeError("the grader sent malformed gradients")
            return (None, *grads)

    def callback(*args, **kwargs):
        return GraderFunction.apply(kwargs, *args)

    callback.__name__ = callback.__qualname__ = name
    return callback


def _set_rlimits(limits: dict) -> None:
    import resource

    for name, value in limits.items():
        which = getattr(resource, name, None)
        if which is None or value is None:
            continue
        resource.setrlimit(which, (int(value), int(value)))


def _stub(names: list[str]) -> None:
    """Make the named flowlib references raise in this process (flowlib.testing.block_reference,
    entered for good). Student code can undo this: it only denies the easy path."""
    import contextlib

    from flowlib.testing import block_reference

    if names:
        STATE["stubs"] = contextlib.ExitStack()
        STATE["stubs"].enter_context(block_reference(*names))


def op_init(req):
    _set_rlimits(req.get("rlimits", {}))
    os.environ["FLOWLIB_DEVICE"] = req.get("device", "cpu")
    import torch

    torch.set_num_threads(int(req.get("threads", 1)))
    STATE["device"] = torch.device(req.get("device", "cpu"))
    import flowlib  # noqa: F401

    _stub(req.get("stub", []))
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance(user_ns=NAMESPACE)
    shell.enable_gui = lambda gui=None: None  # `%matplotlib inline` works as in a kernel (Agg backend)
    STATE["shell"] = shell
    return {"python": sys.version.split()[0], "torch": torch.__version__, "device": str(STATE["device"])}


def op_exec(req):
    shell = STATE["shell"]
    out = []
    for cell in req["cells"]:
        WATCHDOG.arm(req.get("cell_timeout"))
        try:
            result = shell.run_cell(cell["source"], store_history=False, silent=False)
            err = result.error_before_exec or result.error_in_exec
        except BaseException as exc:  # noqa: BLE001 - a cell may raise anything, even KeyboardInterrupt
            err = exc
        finally:
            WATCHDOG.disarm()
        out.append({"id": cell.get("id", ""), "error": None if err is None else _error(err)})
    return {"cells": out}


def _target(req):
    if req.get("handle") is not None:
        obj = HANDLES[req["handle"]]
    else:
        name = req["target"]
        if name not in NAMESPACE:
            raise NameError(f"name {name!r} is not defined (did its cell run without errors?)")
        obj = NAMESPACE[name]
    attr = req.get("attr")
    if attr:
        obj = getattr(obj, attr)
    return obj


def _flat_tensors(v):
    import torch

    if isinstance(v, torch.Tensor):
        return [v]
    if isinstance(v, (tuple, list)):
        return [t for x in v for t in _flat_tensors(x)]
    return []


def op_call(req):
    import torch

    fn = _target(req)
    args = list(_to_device(req.get("args", [])))
    kwargs = _to_device(req.get("kwargs", {}))
    grad = req.get("grad")
    if not grad:
        return {"value": fn(*args, **kwargs)}
    wrt = grad.get("wrt", [])
    for i in wrt:
        args[i] = args[i].detach().requires_grad_(True)
    params = []
    if grad.get("params"):
        owner = HANDLES[req["handle"]]
        params = [(n, p) for n, p in owner.named_parameters() if p.requires_grad]
    with torch.enable_grad():
        value = fn(*args, **kwargs)
    outs = _flat_tensors(value)
    cots = _to_device(grad.get("cotangents", []))
    if len(cots) != len(outs):
        raise ValueError(f"the grader sent {len(cots)} cotangents for {len(outs)} output tensors")
    pairs = [(o, c) for o, c in zip(outs, cots) if c is not None]
    inputs = [args[i] for i in wrt] + [p for _, p in params]
    grads = torch.autograd.grad([o for o, _ in pairs], inputs, grad_outputs=[c for _, c in pairs], allow_unused=True)
    return {"value": value, "grads": list(grads[: len(wrt)]),
            "param_grads": {n: g for (n, _), g in zip(params, grads[len(wrt):])}}


def op_getattr(req):
    return {"value": getattr(HANDLES[req["handle"]], req["attr"])}


def op_state_dict(req):
    return {"value": dict(HANDLES[req["handle"]].state_dict())}


def op_load_state_dict(req):
    HANDLES[req["handle"]].load_state_dict(_to_device(req["state"]), strict=bool(req.get("strict", True)))
    return {}


def op_seed(req):
    import torch

    torch.manual_seed(int(req["seed"]))
    return {}


OPS = {"init": op_init, "exec": op_exec, "call": op_call, "getattr": op_getattr, "state_dict": op_state_dict,
       "load_state_dict": op_load_state_dict, "seed": op_seed}


def serve() -> None:
    while True:
        try:
            req = recv()
        except EOFError:
            return
        if not isinstance(req, dict) or req.get("op") == "bye":
            return
        op = OPS.get(req.get("op"))
        try:
            if op is None:
                raise ValueError(f"unknown op {req.get('op')!r}")
            WATCHDOG.arm(req.get("timeout"))
            try:
                body = op(req)
            finally:
                WATCHDOG.disarm()
            reply = {"ok": True, **body}
            data = wire.encode(reply, handle=_new_handle)
        except BaseException as exc:  # noqa: BLE001 - report every failure as data
            if isinstance(exc, SystemExit):
                raise
            traceback.print_exc()
            data = wire.encode({"ok": False, "error": _error(exc)})
        wire.write_frame(PROTO_OUT, data)


if __name__ == "__main__":
    _Watchdog.install()
    serve()
