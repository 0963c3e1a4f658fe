"""Hostile and broken submissions, graded in one batch with a correct one (assignment 01),
in the default (sandboxed) mode.

Every case is a notebook (or export entry) this test builds; the correct submission must
keep full marks, each hostile one must get the score and status below, with a reason where
it was not graded normally, and nothing may be lost. Honest students are graded normally
too: a solution that reads flowlib with `inspect.getsource`, a notebook with its setup cell
copy-pasted, names that are not ASCII. Export entries that are symbolic links, and names
that collide, are refused with a reason. The file-level attacks on the sandbox live in
tests/test_sandbox.py; here `--no-sandbox` is also run once, with a detached process
holding the grader's output open (the run must not wait for it).
"""
from __future__ import annotations

import copy
import csv
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "autograder"))
from scan import scan_source  # noqa: E402

ASG = "01-change-of-variables"


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def _solution_cells(nb):
    """The code solution cells (written answers are markdown: nothing there runs)."""
    return [c for c in nb.cells if _meta(c).get("solution") and c.cell_type == "code"]


def _test_cells(nb):
    return [c for c in nb.cells if _meta(c).get("grade") and not _meta(c).get("solution")]


def _prepend_to_solution(nb, index: int, code: str):
    nb = copy.deepcopy(nb)
    cell = _solution_cells(nb)[index]
    cell.source = code + "\n" + cell.source
    return nb


def _cases(solution, release, other_solution) -> dict[str, object]:
    cases: dict[str, object] = {"good": solution}
    fit = [i for i, c in enumerate(_solution_cells(solution)) if _meta(c)["grade_id"] == "fit_cdf_flow"][0]
    cases["infinite_loop"] = _prepend_to_solution(solution, fit, "while True:\n    pass")
    cases["kernel_exit"] = _prepend_to_solution(solution, 1, "import os\nos._exit(1)")
    cases["kernel_segfault"] = _prepend_to_solution(solution, 1, "import ctypes\nctypes.string_at(0)")
    # The out-of-memory killer sends SIGKILL; allocating for real would endanger the machine.
    cases["kernel_oom_killed"] = _prepend_to_solution(solution, 1, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    for name, base in (("skip_tag_blank", release), ("skip_tag_good", solution)):
        nb = copy.deepcopy(base)
        for c in _test_cells(nb):
            c.metadata["tags"] = ["skip-execution", "raises-exception", "remove-cell"]
        cases[name] = nb
    nb = copy.deepcopy(release)
    for c in _test_cells(nb):
        c.source = "pass"
    cases["tests_edited_to_pass"] = nb
    nb = copy.deepcopy(release)
    nb.cells = [c for c in nb.cells if c not in _test_cells(nb)[:2]]
    cases["tests_deleted"] = nb
    nb = copy.deepcopy(release)
    nb.cells = [nbformat.v4.new_markdown_cell(c.source, metadata=c.metadata) if c in _test_cells(nb) else c for c in nb.cells]
    cases["tests_made_markdown"] = nb
    nb = copy.deepcopy(solution)
    for c in _test_cells(nb):
        c.metadata["nbgrader"]["points"] = 100
    cases["points_raised"] = nb
    nb = copy.deepcopy(release)
    for c in _test_cells(nb):
        c.metadata["nbgrader"]["grade_id"] += "_mine"
    cases["grade_ids_changed"] = nb
    cases["other_assignment"] = other_solution
    cases["invalid_json"] = "{not json"
    cases["empty_file"] = ""
    cases["prints_50_mb"] = _prepend_to_solution(solution, 0, "print('x' * 50_000_000)")
    cases["correct_with_stderr"] = _prepend_to_solution(
        solution, 0, "import sys, warnings\nwarnings.warn('a harmless warning')\nprint('progress...', file=sys.stderr)")
    calls_ref = copy.deepcopy(solution)
    cell = [c for c in calls_ref.cells if _meta(c).get("grade_id") == "mixture_cdf"][0]
    cell.source = cell.source.replace("### BEGIN SOLUTION", "### BEGIN SOLUTION\n    return flowlib.flows.onedim.mixture_cdf(x, logits, means, log_scales)", 1)
    cases["calls_reference"] = calls_ref
    patches = (
        "import numpy.testing, math\n"
        "torch.allclose = lambda *a, **k: True\n"
        "torch.testing.assert_close = lambda *a, **k: None\n"
        "numpy.testing.assert_allclose = lambda *a, **k: None\n"
        "math.isclose = lambda *a, **k: True\n"
        "def abs(x):\n    return 0\n"
        "flowlib.testing.check_density_integrates = lambda *a, **k: 1.0\n"
    )
    cases["monkeypatches"] = _prepend_to_solution(release, 0, patches)
    # The same attack written to slip past the static scan: the runtime check still sees it.
    cases["monkeypatch_evades_scan"] = _prepend_to_solution(
        release, 0, "type(torch).__setattr__(torch, 'allclose', lambda *a, **k: True)")
    # Honest students: reading flowlib's source, a copy-pasted setup cell, a big figure.
    cases["inspect_getsource"] = _prepend_to_solution(
        solution, 0, "import inspect\nfrom inspect import getsource, signature\n"
                     "print(len(inspect.getsource(flowlib.flows.onedim)), signature(getsource))")
    nb = copy.deepcopy(solution)
    setup = next(c for c in nb.cells if _meta(c).get("grade_id") == "setup")
    nb.cells.insert(0, copy.deepcopy(setup))  # a copy above (re-ordered) ...
    nb.cells.insert(4, copy.deepcopy(setup))  # ... and one below the original
    cases["duplicated_setup"] = nb
    cases["image_30mb"] = _prepend_to_solution(
        solution, 0, "from IPython.display import display\n"
                     "display({'image/png': 'iVBORw0KGgo' + 'A' * 30_000_000, 'text/plain': '<a huge figure>'}, raw=True)")
    return cases


def test_scan_flags_tampering_and_passes_normal_code():
    assert scan_source("torch.allclose = lambda *a, **k: True")
    assert scan_source("import builtins\nbuiltins.abs = len")
    assert scan_source("def block_reference(*a):\n    pass", {"block_reference"})
    assert scan_source("exec('x = 1')")
    assert scan_source("import sys\nsys.modules['flowlib.testing'] = None")
    normal = (
        "def mixture_cdf(x, logits, means, log_scales):\n"
        "    max = x.max()  # a local named like a builtin is harmless\n"
        "    w = torch.softmax(logits, -1)\n"
        "    self_x = x.abs().sum()\n"
        "    return torch.stack([w, max])\n"          # torch.stack is not inspect.stack
        "class Fit(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.logits = torch.nn.Parameter(torch.zeros(3))\n"   # an attribute of one's own object
        "%matplotlib inline\n"
    )
    assert scan_source(normal) == [], scan_source(normal)
    assert scan_source("import flowlib.testing as ft\nft.check_round_trip = print")  # a module under an alias


def test_scan_allows_read_only_introspection():
    for code in ("import inspect\nprint(inspect.getsource(flowlib.flows.onedim.mixture_cdf))",
                 "from inspect import getsource, signature, getdoc\nsignature(torch.sigmoid)",
                 "help(flowlib.flows.onedim)\nprint(dir(flowlib), flowlib.flows.onedim.__doc__)"):
        assert scan_source(code) == [], f"read-only introspection flagged: {code!r}: {scan_source(code)}"
    for code in ("import inspect\ninspect.currentframe().f_back", "from inspect import stack",
                 "import inspect\nx = inspect.stack()[1]"):
        assert scan_source(code), f"frame access not flagged: {code!r}"


def test_student_ids_keep_names_distinct():
    from grade import student_id

    assert student_id("alice") == "alice" and student_id("good_1.x") == "good_1.x", "safe names must not change"
    ids = {name: student_id(name) for name in ("Zoé", "Zoë", "Zoe", "李雷", "李磊", "Loose Student", "../x")}
    assert len(set(ids.values())) == len(ids), f"two names became one student: {ids}"
    assert ids["Zoé"].startswith("Zoe-") and ids["李雷"].startswith("student-"), ids
    assert student_id("Zoe\u0301") == ids["Zoé"], "NFC and NFD spellings of one name must be one student"
    for sid in ids.values():
        assert sid.isascii() and "/" not in sid and not sid.startswith("."), sid


def _write(path: Path, nb) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(nb, str):
        path.write_text(nb)
    else:
        nbformat.write(nb, path)


@pytest.mark.slow
def test_hostile_batch(course_copy, tmp_path):
    from grade import student_id

    solution = nbformat.read(course_copy / "solutions" / ASG / f"{ASG}.ipynb", as_version=4)
    release = nbformat.read(course_copy / "notebooks" / ASG / f"{ASG}.ipynb", as_version=4)
    other = sorted(p for p in (course_copy / "solutions").iterdir() if p.name != ASG)[0]
    other_solution = nbformat.read(other / f"{other.name}.ipynb", as_version=4)
    subs = tmp_path / "export"
    for name, nb in _cases(solution, release, other_solution).items():
        _write(subs / name / f"{ASG}.ipynb", nb)
    # Names: accents and scripts that are not Latin; two entries with the same id.
    _write(subs / "Zoé" / f"{ASG}.ipynb", solution)
    _write(subs / "Zoë" / f"{ASG}.ipynb", release)
    _write(subs / "李雷" / f"{ASG}.ipynb", solution)
    _write(subs / "twin" / f"{ASG}.ipynb", solution)
    _write(subs / "twin.ipynb", release)
    # Export entries that are symbolic links: a folder to solutions/, a notebook to the solution.
    (subs / "linked_folder").symlink_to(course_copy / "solutions" / ASG, target_is_directory=True)
    (subs / "linked_notebook").mkdir()
    (subs / "linked_notebook" / f"{ASG}.ipynb").symlink_to(course_copy / "solutions" / ASG / f"{ASG}.ipynb")
    env = dict(os.environ, FLOWLIB_CELL_TIMEOUT="10")
    # many classmates hand in the same reference solution: copy detection (tested in test_similarity) is off
    proc = subprocess.run([sys.executable, str(course_copy / "autograder" / "grade.py"), str(subs), "--assignment", ASG,
                           "--similarity", "off"], capture_output=True, text=True, timeout=3000, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    course = course_copy / "autograder" / "course"
    with (course / "grades.csv").open() as fh:
        rows = {r["student"]: r for r in csv.DictReader(fh)}
    full = float(rows["good"]["auto_max"])
    fit_points = float([c for c in _test_cells(solution) if _meta(c)["grade_id"] == "test_fit_cdf_flow"][0].metadata["nbgrader"]["points"])

    def expect(student, status, score, reason=""):
        row = rows[student]
        assert (row["status"], float(row["auto_score"])) == (status, score), f"{student}: {row}"
        assert reason.lower() in row["reason"].lower(), f"{student}: reason {row['reason']!r} lacks {reason!r}"

    expect("good", "graded", full)
    # only the looping exercise is lost: the sandbox's kernel is interrupted by a message
    expect("infinite_loop", "graded", full - fit_points)
    assert float(rows["infinite_loop"]["test_fit_cdf_flow"]) == 0
    for student in ("kernel_exit", "kernel_segfault", "kernel_oom_killed"):
        expect(student, "failed", 0, "kernel died")
    expect("skip_tag_blank", "graded", 0)
    expect("skip_tag_good", "graded", full)
    expect("tests_edited_to_pass", "graded", 0)
    expect("tests_deleted", "graded", 0)
    expect("tests_made_markdown", "graded", 0)
    expect("points_raised", "graded", full)
    expect("grade_ids_changed", "failed", 0, "metadata")
    assert float(rows["other_assignment"]["auto_score"]) == 0 and rows["other_assignment"]["status"] in ("graded", "failed")
    expect("invalid_json", "failed", 0, "json")
    expect("empty_file", "failed", 0, "json")
    expect("prints_50_mb", "graded", full)
    autograded = course / "autograded" / "prints_50_mb" / ASG / f"{ASG}.ipynb"
    assert autograded.stat().st_size < 2_000_000, "the 50 MB output was kept"
    expect("correct_with_stderr", "graded", full)
    assert float(rows["calls_reference"]["test_mixture_cdf_values"]) == 0
    assert float(rows["calls_reference"]["auto_score"]) < full
    # reported for review; the score is the grader-side verdicts' (0: the notebook is blank), kept
    expect("monkeypatches", "flagged", 0, "score kept")
    assert "torch.allclose" in rows["monkeypatches"]["reason"]
    expect("monkeypatch_evades_scan", "graded", 0)

    # Honest students keep full marks.
    expect("inspect_getsource", "graded", full)
    expect("duplicated_setup", "graded", full)
    expect("image_30mb", "graded", full)
    for folder, suffix in (("autograded", "ipynb"), ("feedback", "html")):
        page = course / folder / "image_30mb" / ASG / f"{ASG}.{suffix}"
        assert page.stat().st_size < 3_000_000, f"image_30mb: {folder} copy is {page.stat().st_size:,} bytes"
        assert "image/png output of 30,000,011 bytes removed by the grader" in page.read_text(), (
            f"image_30mb: no note about the dropped image in the {folder} copy")

    # Names: distinct students, each graded; a collision is reported, not merged.
    expect(student_id("Zoé"), "graded", full)
    expect(student_id("Zoë"), "graded", 0)
    expect(student_id("李雷"), "graded", full)
    expect("twin", "failed", 0, "both map to the student id 'twin'")
    assert "twin" in proc.stdout and "both map" in proc.stdout, "the collision is not reported in the summary"
    expect("linked_folder", "failed", 0, "linked_folder is a symbolic link")
    expect("linked_notebook", "failed", 0, "is a symbolic link")
    assert not (course / "submitted" / "linked_folder").exists(), "a symlinked export entry was imported"
    assert not (course / "submitted" / "linked_notebook").exists(), "a symlinked notebook was imported"

    # Nothing lost: every graded submission has a row and its submitted copy.
    for student, row in rows.items():
        if "refused" not in row["reason"]:
            assert (course / "submitted" / student / ASG / f"{ASG}.ipynb").is_file(), student
    assert len(rows) == len(_cases(solution, release, other_solution)) + 6, sorted(rows)


@pytest.mark.slow
def test_unsandboxed_run_does_not_wait_for_a_detached_process(course_copy, tmp_path):
    """`--no-sandbox`: a submission leaves a detached process that holds the grader's
    stdout open. nbgrader's output goes to files, so the run completes (it used to wait for
    it: 153 s seen). The warning about the unconfined mode is printed."""
    solution = nbformat.read(course_copy / "solutions" / ASG / f"{ASG}.ipynb", as_version=4)
    pidfile = tmp_path / "daemon.pid"
    daemon = ("import subprocess, sys\n"  # (the grader-side probes run this cell again, sandboxed: no pidfile there)
              "_p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
              "try:\n"
              f"    open({str(pidfile)!r}, 'w').write(str(_p.pid))\n"
              "except OSError:\n"
              "    pass")
    subs = tmp_path / "export"
    _write(subs / "good" / f"{ASG}.ipynb", solution)
    _write(subs / "daemon" / f"{ASG}.ipynb", _prepend_to_solution(solution, 0, daemon))
    try:
        proc = subprocess.run([sys.executable, str(course_copy / "autograder" / "grade.py"), str(subs),
                               "--assignment", ASG, "--no-sandbox", "--similarity", "off"],
                              capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail("the unsandboxed run waited for the detached process that holds its output open")
    finally:
        if pidfile.is_file():
            try:
                os.kill(int(pidfile.read_text()), 9)
            except ProcessLookupError:
                pass
    assert pidfile.is_file(), "the daemon never started: the test proves nothing"
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "WARNING: grading without the sandbox" in proc.stderr, proc.stderr[-2000:]
    rows = {r["student"]: r for r in csv.DictReader((course_copy / "autograder" / "course" / "grades.csv").open())}
    for student in ("good", "daemon"):
        assert rows[student]["status"] == "graded" and float(rows[student]["auto_score"]) == float(rows[student]["auto_max"]), rows[student]
