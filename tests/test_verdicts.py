"""Grader-side verdicts (autograder/verdicts.py, autograder/probe/): the wire format refuses
malformed data, the probe process is isolated and recovers from hangs and garbage, and
through the real grade.py a blank notebook that installs each kind of IPython hook, or
lies in its return values, gets 0 on every hidden-test cell while a correct classmate in
the same batch keeps full marks."""
from __future__ import annotations

import copy
import csv
import json
import os
import pickle
import struct
import subprocess
import sys

import nbformat
from pathlib import Path
import pytest
import torch

from conftest import REPO

sys.path.insert(0, str(REPO / "autograder"))
from probe import wire  # noqa: E402
from probe.client import Probe, ProbeFailure, Student, StudentError  # noqa: E402

ASG = "01-change-of-variables"


def frame(header: dict | bytes, payload: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return wire.MAGIC + struct.pack("<I", len(raw)) + raw + payload


# ----------------------------------------------------------------------------- wire format

def test_wire_round_trip_keeps_dtype_shape_and_nan():
    values = {
        "f64": torch.tensor([[1.5, float("nan")], [float("inf"), -0.0]], dtype=torch.float64),
        "bf16": torch.tensor([1.0, 2.0], dtype=torch.bfloat16),
        "i64": torch.arange(6).reshape(2, 3),
        "bool": torch.tensor([True, False]),
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(2.5),
        "c128": torch.tensor([1 + 2j], dtype=torch.complex128),
    }
    msg = {"t": values, "nums": (1, 2.5, float("nan"), float("-inf"), None, True, "text"), "list": [1, [2]]}
    back, _ = wire.decode(wire.encode(msg))
    for key, t in values.items():
        got = back["t"][key]
        assert got.dtype == t.dtype and got.shape == t.shape, key
        assert torch.equal(torch.nan_to_num(got.to(torch.complex128)), torch.nan_to_num(t.to(torch.complex128))), key
    assert torch.isnan(back["t"]["f64"][0, 1]) and back["nums"][:2] == (1, 2.5)
    assert back["nums"][2] != back["nums"][2] and back["nums"][3] == float("-inf") and back["nums"][4:] == (None, True, "text")
    assert back["list"] == [1, [2]]


@pytest.mark.parametrize("bad, reason", [
    (pickle.dumps({"msg": 1, "buffers": []}), "not a probe frame"),                              # a pickle stream
    (frame(pickle.dumps({"msg": 1, "buffers": []})), "not strict UTF-8 JSON"),                   # pickle as the header
    (frame({"msg": {"$tensor": 0}, "buffers": [{"dtype": "object", "shape": [1]}]}, b"\0" * 8), "dtype"),
    (frame({"msg": {"$tensor": 0}, "buffers": [{"dtype": "float64", "shape": [3]}]}, b"\0" * 16), "ends early"),
    (frame({"msg": {"$tensor": 0}, "buffers": [{"dtype": "float64", "shape": [1]}]}, b"\0" * 16), "trailing"),
    (frame({"msg": {"$tensor": 0}, "buffers": [{"dtype": "float32", "shape": [2, -1]}]}), "malformed shape"),
    (frame({"msg": {"$tensor": 0}, "buffers": [{"dtype": "float32", "shape": [1 << 30]}]}), "exceed"),
    (frame({"msg": {"$tensor": 0}, "buffers": [{"dtype": "bool", "shape": [2]}]}, b"\x01\x07"), "bool"),
    (frame(b'{"msg": NaN, "buffers": []}'), "NaN"),
    (frame(b'{"msg": 1, "msg": 2, "buffers": []}'), "duplicate"),
    (frame({"msg": {"__class__": "os.system"}, "buffers": []}), "untagged"),
    (frame({"msg": [{"$tensor": 0}, {"$tensor": 0}], "buffers": [{"dtype": "uint8", "shape": [1]}]}, b"\0"), "twice"),
    (frame({"msg": 1, "buffers": [{"dtype": "uint8", "shape": [1]}]}, b"\0"), "not referenced"),
    (frame({"msg": {"$float": "1e999"}, "buffers": []}), "float tag"),
    (frame({"msg": "x" * 100_000, "buffers": []}), "string"),
    (wire.MAGIC + struct.pack("<I", 2 << 20) + b"{}", "exceeds the limit"),
])
def test_wire_refuses_malformed_frames(bad, reason):
    with pytest.raises(wire.WireError, match=reason):
        wire.decode(bad, wire.GRADER_SIDE)


def test_wire_limits_total_tensor_bytes():
    big = wire.encode({"t": torch.zeros(1000, dtype=torch.float64)})
    with pytest.raises(wire.WireError, match="bytes of tensors exceed"):
        wire.decode(big, wire.Limits(max_bytes=4000))
    assert wire.decode(big, wire.Limits(max_bytes=8000))[0]["t"].shape == (1000,)


def test_wire_refuses_to_encode_arbitrary_objects():
    with pytest.raises(wire.WireError, match="cannot cross"):
        wire.encode({"f": open})


# ----------------------------------------------------------------------------- probe process

CELLS = [
    {"id": "setup", "source": "import os, sys, time, torch\nimport flowlib\nprint('student output goes nowhere')"},
    {"id": "funcs", "source": (
        "def double(x):\n    print('noise on stdout')\n    return 2 * x\n"
        "def hang(kind):\n    if kind == 'c':\n        time.sleep(1000)\n    while True:\n        pass\n"
        "def garbage():\n    for fd in range(3, 30):\n        try:\n            os.write(fd, b'FLW1\\xff\\xff\\xff\\x7f junk')\n        except OSError:\n            pass\n"
        "def env():\n    return {k: v for k, v in os.environ.items()}\n"
        "def look():\n    return (os.getcwd(), sorted(os.listdir('.')), os.path.exists(%r), os.path.exists(%r))\n"
        "def reference(x):\n    return flowlib.flows.onedim.mixture_cdf(x, torch.zeros(2), torch.zeros(2), torch.zeros(2))\n"
        "def wrong_device(x):\n    return x\n"
        "LOG_DET_AT_ORIGIN = -1.5\nWEIGHTS = (0.25, 0.75)\n"
    ) % (str(REPO / "solutions"), str(REPO / "autograder" / "course"))},
]


@pytest.fixture(scope="module")
def probe():
    os.environ["FLOWLIB_TEST_SECRET"] = "grader-only"
    p = Probe(CELLS, ["flowlib.flows.onedim.mixture_cdf"], "cpu", seed=0, cell_timeout=3)
    yield p
    p.close()


def test_probe_runs_student_code_isolated(probe):
    student = Student(probe, timeout=60)
    assert torch.equal(student.call("double", torch.arange(3.0)), torch.tensor([0.0, 2.0, 4.0]))  # prints do not corrupt
    env = student.call("env")
    assert "FLOWLIB_TEST_SECRET" not in env and env["FLOWLIB_SEED"] == "0", env
    cwd, listing, sees_solutions, sees_gradebook = student.call("look")
    assert not sees_solutions and not sees_gradebook, "the student's process sees the course folders"
    assert all(name.startswith(".") for name in listing), f"scratch folder not empty at start: {listing}"
    with pytest.raises(StudentError, match="ReferenceBlockedError"):
        student.call("reference", torch.zeros(3))
    with pytest.raises(StudentError, match="NameError"):
        student.call("not_defined_anywhere")
    # a derivation's answer: a global read back as data
    assert student.value("LOG_DET_AT_ORIGIN") == -1.5 and tuple(student.value("WEIGHTS")) == (0.25, 0.75)
    with pytest.raises(StudentError, match="NameError"):
        student.value("NOT_DEFINED_ANSWER")
    with pytest.raises(ValueError):
        student.value("__import__('os')")


def test_probe_recovers_from_hangs_and_garbage(probe):
    student = Student(probe, timeout=60)
    with pytest.raises(StudentError, match="Timeout"):  # a Python loop: interrupted at the request's limit
        Student(probe, timeout=2).call("hang", "py")
    with pytest.raises(ProbeFailure, match="no answer within"):  # stuck in C: the process is killed
        Student(probe, timeout=2).call("hang", "c")
    assert not probe.alive()
    assert torch.equal(student.call("double", torch.ones(1)), torch.full((1,), 2.0))  # a fresh process
    with pytest.raises(ProbeFailure, match="malformed|exceeds"):
        student.call("garbage")
    assert torch.equal(student.call("double", torch.ones(1)), torch.full((1,), 2.0))


def test_time_limits_hold_when_the_grader_ignores_sigint():
    """A grader started in the background by a non-interactive shell (a CI job, `nohup ... &`)
    passes SIGINT ignored to its children; the probe's time limit must still interrupt a loop
    (it did not, and every looping exercise cost a kill and a restart of the process)."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        p = Probe(CELLS, ["flowlib.flows.onedim.mixture_cdf"], "cpu", seed=0, cell_timeout=3)
        p.start()  # inherits SIGINT ignored
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        # interrupted by the runtime at the limit: a StudentError (Timeout), not a ProbeFailure
        # ("no answer within ..."), which is what a process that had to be killed gives
        with pytest.raises(StudentError, match="Timeout"):
            Student(p, timeout=2).call("hang", "py")
    finally:
        p.close()


# ----------------------------------------------------------------------------- hostile notebooks, real grade.py

def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def _with_cell_after_setup(nb, code: str, above: bool = False):
    nb = copy.deepcopy(nb)
    setup = next(i for i, c in enumerate(nb.cells) if _meta(c).get("grade_id") == "setup")
    nb.cells.insert(setup if above else setup + 1, nbformat.v4.new_code_cell(code))
    return nb


def _with_solutions(nb, bodies: dict[str, str]):
    nb = copy.deepcopy(nb)
    for c in nb.cells:
        if _meta(c).get("grade_id") in bodies:
            c.source = bodies[_meta(c)["grade_id"]]
    return nb


AST_TRY = """
import ast
class WrapInTry(ast.NodeTransformer):
    def visit_Module(self, node):
        handler = ast.ExceptHandler(type=ast.Name("BaseException", ast.Load()), name=None, body=[ast.Pass()])
        body = [ast.Try(body=node.body or [ast.Pass()], handlers=[handler], orelse=[], finalbody=[])]
        return ast.fix_missing_locations(ast.Module(body=body, type_ignores=[]))
get_ipython().ast_transformers.append(WrapInTry())
"""
INPUT_REWRITE = """
def neuter_tests(lines):
    return ["pass\\n"] if any("assert" in line for line in lines) else lines
get_ipython().input_transformers_post.append(neuter_tests)
"""
SWALLOW_ERRORS = """
def ignore(shell, etype, evalue, tb, tb_offset=None):
    return None
get_ipython().set_custom_exc((BaseException,), ignore)
def clear(result):
    result.error_in_exec = None
get_ipython().events.register("post_run_cell", clear)
"""
REBIND_GUARD = """
import contextlib
get_ipython().push({"block_reference": lambda *targets: contextlib.nullcontext()})
(block_reference := (lambda *targets: contextlib.nullcontext()))
"""
CALL_REFERENCES = {
    "mixture_cdf": "def mixture_cdf(x, logits, means, log_scales):\n    return flowlib.flows.onedim.mixture_cdf(x, logits, means, log_scales)",
    "invert_by_bisection": "def invert_by_bisection(f, u, lo, hi, n_iter=60):\n    return flowlib.flows.onedim.bisection_inverse(f, u, lo, hi, n_iter)",
}
LIAR = """
class AlwaysTrue(float):
    def __lt__(self, o): return True
    __le__ = __gt__ = __ge__ = __eq__ = __lt__
    def __ne__(self, o): return False
    def __abs__(self): return self
    def __sub__(self, o): return self
    __rsub__ = __add__ = __radd__ = __mul__ = __rmul__ = __truediv__ = __sub__
    def __hash__(self): return 0
class Liar(torch.Tensor):
    def __eq__(self, o): return True
    __lt__ = __le__ = __gt__ = __ge__ = __eq__
    def item(self): return AlwaysTrue(0.0)
    def __bool__(self): return True
def _lie(shape, like):
    return torch.zeros(shape, dtype=like.dtype, device=like.device).as_subclass(Liar)
"""
LYING_SOLUTIONS = {
    "affine_log_prob": "def affine_log_prob(x, a, b):\n    return _lie(x.shape, x)",
    "mixture_cdf": "def mixture_cdf(x, logits, means, log_scales):\n    return _lie(x.shape, x), _lie(x.shape, x)",
    "invert_by_bisection": "def invert_by_bisection(f, u, lo, hi, n_iter=60):\n    return _lie(u.shape, u)",
    "cdf_flow_nll": "def cdf_flow_nll(x, logits, means, log_scales, base='uniform'):\n    return _lie((), x)",
    "fit_cdf_flow": "def fit_cdf_flow(x, n_components=6, steps=250, lr=0.05):\n    return tuple(_lie((n_components,), x) for _ in range(3))",
}
PATCH_BEFORE_SETUP = """
import torch, math, builtins, flowlib, flowlib.testing
torch.allclose = lambda *a, **k: True
math.isclose = lambda *a, **k: True
builtins.abs = lambda x: 0
flowlib.testing.block_reference = lambda *targets: __import__("contextlib").nullcontext()
"""
ZEROS = {
    "affine_log_prob": "def affine_log_prob(x, a, b):\n    return torch.zeros_like(x)",
    "mixture_cdf": "def mixture_cdf(x, logits, means, log_scales):\n    return torch.zeros_like(x), torch.zeros_like(x)",
    "cdf_flow_nll": "def cdf_flow_nll(x, logits, means, log_scales, base='uniform'):\n    return torch.zeros((), dtype=x.dtype)",
}
PATCH_ORACLES = """
import flowlib.flows.onedim
torch.distributions.Normal.log_prob = lambda self, x: torch.zeros_like(x)
flowlib.flows.onedim.mixture_cdf = lambda x, *a, **k: (torch.zeros_like(x), torch.zeros_like(x))
torch.special.ndtr = lambda t: torch.zeros_like(t)
"""


def hostile_notebooks(solution, release) -> dict[str, nbformat.NotebookNode]:
    return {
        "good": solution,
        "ast_transformer": _with_cell_after_setup(release, AST_TRY),
        "input_transformer": _with_cell_after_setup(release, INPUT_REWRITE),
        "exception_handler": _with_cell_after_setup(release, SWALLOW_ERRORS),
        "rebinds_block_reference": _with_solutions(_with_cell_after_setup(release, REBIND_GUARD), CALL_REFERENCES),
        "lying_tensor": _with_solutions(_with_cell_after_setup(release, LIAR), LYING_SOLUTIONS),
        "patches_above_setup": _with_cell_after_setup(release, PATCH_BEFORE_SETUP, above=True),
        "patches_oracles": _with_solutions(_with_cell_after_setup(release, PATCH_ORACLES), ZEROS),
    }


@pytest.mark.slow
def test_hooks_and_lies_get_zero_through_grade_py(course_copy, tmp_path):
    solution = nbformat.read(course_copy / "solutions" / ASG / f"{ASG}.ipynb", as_version=4)
    release = nbformat.read(course_copy / "notebooks" / ASG / f"{ASG}.ipynb", as_version=4)
    subs = tmp_path / "export"
    cases = hostile_notebooks(solution, release)
    for name, nb in cases.items():
        (subs / name).mkdir(parents=True)
        nbformat.write(nb, subs / name / f"{ASG}.ipynb")
    env = dict(os.environ, FLOWLIB_CELL_TIMEOUT="20")
    # every hostile notebook carries the reference solution: copy detection (test_similarity) is off
    proc = subprocess.run([sys.executable, str(course_copy / "autograder" / "grade.py"), str(subs), "--assignment", ASG,
                           "--similarity", "off"], capture_output=True, text=True, timeout=1800, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with (course_copy / "autograder" / "course" / "grades.csv").open() as fh:
        rows = {r["student"]: r for r in csv.DictReader(fh)}
    cells = [_meta(c)["grade_id"] for c in solution.cells if _meta(c).get("grade") and not _meta(c).get("solution")]
    good = rows["good"]
    assert good["status"] == "graded" and float(good["auto_score"]) == float(good["auto_max"]) > 0, good
    for name in cases:
        if name == "good":
            continue
        row = rows[name]
        assert float(row["auto_score"]) == 0, f"{name}: scored {row['auto_score']} ({row['status']}: {row['reason']})"
        assert all(float(row[c]) == 0 for c in cells), f"{name}: {[(c, row[c]) for c in cells]}"
    # the verdict's message reaches the feedback, and no hidden-test source does
    page = (course_copy / "autograder" / "course" / "feedback" / "lying_tensor" / ASG / f"{ASG}.html").read_text()
    assert "HiddenTestFailed" in page and "off by" in page
    assert "def test_affine_log_prob" not in page and "generator(seed" not in page


def test_probe_sandbox_keeps_a_course_under_tmp_visible():
    """bubblewrap mounts in order: the private /tmp must come before the read-only binds of
    the Python and flowlib, or a course cloned under /tmp (as CI does) loses its own venv
    inside the sandbox (every hidden test then failed in a fresh clone)."""
    from probe import client

    if client.bwrap_available() is None:
        pytest.skip("bubblewrap cannot start here (.ci/run installs it)")
    argv = client.sandbox_argv(sys.executable, {})
    tmpfs = next(i for i in range(len(argv) - 1) if argv[i] == "--tmpfs" and argv[i + 1] == "/tmp")
    python = str(Path(sys.prefix).resolve())  # the venv: under /tmp in a CI clone there
    binds = [i for i in range(len(argv) - 2) if argv[i] == "--ro-bind" and argv[i + 1] == python]
    assert binds and all(i > tmpfs for i in binds), f"--tmpfs /tmp at {tmpfs}, the venv's --ro-bind at {binds}"


@pytest.mark.slow
def test_a_torch_func_divergence_passes_assignment_9():
    """A correct solution in another style passes: exact_divergence by torch.func.jacrev (which
    cannot differentiate through a grader function, so the hidden tests build the functions it
    differentiates in the student's process)."""
    import verdicts

    asg = "09-ode-likelihood"
    nb = nbformat.read(REPO / "solutions" / asg / f"{asg}.ipynb", as_version=4)
    test_ids = {_meta(c)["grade_id"] for c in nb.cells if _meta(c).get("grade") and not _meta(c).get("solution")}
    cell = next(c for c in nb.cells if _meta(c).get("solution") and "def exact_divergence" in c.source)
    cell.source = (
        "def exact_divergence(fn, x):\n"
        "    if not isinstance(x, torch.Tensor) or x.dim() != 2:\n"
        "        raise ValueError('x must be (batch, D)')\n"
        "    with torch.enable_grad():\n"
        "        jac = torch.func.jacrev(fn)(x.detach())  # (B, D, B, D)\n"
        "    rows = torch.arange(x.shape[0], device=x.device)\n"
        "    return torch.diagonal(jac[rows, :, rows, :], dim1=1, dim2=2).sum(-1).detach()\n")
    results = verdicts.evaluate(asg, verdicts.student_cells(nb, test_ids), seed=0)
    failed = {gid: v.message for gid, v in results.items() if not v.passed}
    assert not failed, failed
