"""Grader-side verdicts: hidden tests computed in a process where no student code ever ran.

For an assignment with ``solutions/<asg>/hidden_tests.py`` (a *ported* assignment), grade.py
calls :func:`apply` once per student after ``nbgrader autograde``:

1. the student's code cells (every code cell of the autograded notebook except the graded
   test cells: the locked setup that nbgrader restored, the solution cells and any cell the
   student added) run in a probe process (``autograder/probe``): a separate Python, in
   bubblewrap where available, with flowlib's graded entries stubbed;
2. each hidden-test function (one per graded test cell, named by its grade_id) runs *here*,
   draws its inputs from the grading seed, asks the probe for the student's outputs and
   judges them against answers computed here;
3. each graded cell's ``auto_score`` in the nbgrader gradebook becomes its points if the
   verdict passed and 0 otherwise (points come only from these verdicts), and the verdict's
   message is appended to that cell's outputs in the autograded notebook, so feedback and
   formgrader show it.

Assignments without the file keep nbgrader's own scores (hidden tests in the notebook).
See autograder/README.md for the design and how to write a hidden test.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

HIDDEN = "hidden_tests.py"
MARK = "[grader] "  # outputs this module adds to the autograded notebook start with it


@dataclass
class Verdict:
    passed: bool
    message: str = ""
    seconds: float = 0.0


@dataclass
class HiddenTests:
    assignment: str
    tests: dict           # grade_id -> function(student, seed)
    points: dict          # grade_id -> points of the cell
    stub: list
    timeouts: dict
    uses: dict = None     # grade_id -> the solution cells a (slow) hidden test runs (USES; tests/run_mutants.py)


def hidden_tests_file(assignment: str, repo: Path = REPO) -> Path:
    return Path(repo) / "solutions" / assignment / HIDDEN


def ported(assignment: str, repo: Path = REPO) -> bool:
    """Does this assignment's grading go through grader-side verdicts?"""
    return hidden_tests_file(assignment, repo).is_file()


def _graded_test_cells(nb) -> dict[str, float]:
    out = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") == "code" and meta.get("grade") and not meta.get("solution"):
            out[meta["grade_id"]] = float(meta.get("points", 0))
    return out


def load(assignment: str, repo: Path = REPO) -> HiddenTests:
    """Import hidden_tests.py in this (the grader's) process and match it to the source notebook:
    every graded test cell needs a function of its name, and every test function a cell."""
    import nbformat

    path = hidden_tests_file(assignment, repo)
    spec = importlib.util.spec_from_file_location(f"hidden_tests_{assignment.replace('-', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    source = nbformat.read(Path(repo) / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    points = _graded_test_cells(source)
    tests = {gid: getattr(module, gid, None) for gid in points}
    missing = [gid for gid, fn in tests.items() if not callable(fn)]
    if missing:
        raise ValueError(f"{path}: no hidden-test function for the graded cell(s) {', '.join(missing)}")
    extra = [n for n in vars(module) if n.startswith("test_") and callable(getattr(module, n)) and n not in points]
    if extra:
        raise ValueError(f"{path}: {', '.join(extra)} match no graded test cell of the notebook")
    uses = {gid: set(cells) for gid, cells in dict(getattr(module, "USES", {})).items()}
    solution_ids = {c.metadata["nbgrader"]["grade_id"] for c in source.cells
                    if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    bad = [f"{gid} -> {sorted(cells - solution_ids)}" for gid, cells in uses.items()
           if gid not in points or not cells or cells - solution_ids]
    if bad:
        raise ValueError(f"{path}: USES names a test that is not a graded cell, or cells that are not solution cells: {'; '.join(bad)}")
    return HiddenTests(assignment, tests, points, list(getattr(module, "STUB", [])), dict(getattr(module, "TIMEOUTS", {})), uses)


def student_cells(nb, test_ids) -> list[dict]:
    """The code cells to run in the student's process: all but the graded test cells."""
    cells = []
    for i, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in test_ids:
            continue
        src = cell.get("source", "")
        cells.append({"id": gid or f"cell {i}", "source": src if isinstance(src, str) else "".join(src)})
    return cells


def _message(exc: BaseException, probe) -> str:
    text = str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}"
    text = text.strip() or type(exc).__name__
    if "is not defined" in text and probe.cell_errors:
        notes = "; ".join(f"cell {cid!r} raised {e.get('type')}: {str(e.get('message'))[:200]}"
                          for cid, e in list(probe.cell_errors.items())[:3])
        text += f" ({notes})"
    return text[:3000]


def evaluate(assignment: str, cells: list[dict], seed: int = 0, repo: Path = REPO, device: str | None = None,
             sandbox: bool | None = None, cell_timeout: float | None = None,
             only: set[str] | None = None) -> dict[str, Verdict]:
    """Run every hidden test of ``assignment`` (or those in ``only``) against the student whose
    code is ``cells``."""
    from probe.client import Probe, ProbeFailure, Student

    tests = load(assignment, repo)
    if device is None:
        import flowlib

        device = str(flowlib.device())
    if cell_timeout is None:
        cell_timeout = float(os.environ.get("FLOWLIB_CELL_TIMEOUT", "120"))
    probe = Probe(cells, tests.stub, device, seed, cell_timeout=cell_timeout, sandbox=sandbox)
    verdicts: dict[str, Verdict] = {}
    start_failures = 0
    try:
        for gid, fn in tests.tests.items():
            if only is not None and gid not in only:
                continue
            t0 = time.monotonic()
            if start_failures >= 2:
                verdicts[gid] = Verdict(False, "not run: the student's process could not be started twice in a row")
                continue
            try:
                if not probe.alive():  # (re)start before the test's clock starts: the cells have their own limits
                    try:
                        probe.start()
                        start_failures = 0
                    except (ProbeFailure, OSError) as exc:
                        start_failures += 1
                        raise ProbeFailure(f"the notebook's code could not be run: {exc}") from None
                student = Student(probe, timeout=float(tests.timeouts.get(gid, cell_timeout)))
                fn(student, seed)
                verdicts[gid] = Verdict(True, "", time.monotonic() - t0)
            except Exception as exc:  # noqa: BLE001 - any failure of the test is a failed verdict
                verdicts[gid] = Verdict(False, _message(exc, probe), time.monotonic() - t0)
    finally:
        probe.close()
    return verdicts


def _annotate(cell, verdict: Verdict, points: float) -> None:
    import nbformat

    outputs = [o for o in cell.get("outputs", []) if not _ours(o)]
    if verdict.passed:
        outputs.append(nbformat.v4.new_output("stream", name="stdout",
                                              text=f"{MARK}hidden tests passed: {points:g} of {points:g} points\n"))
    else:
        outputs.append(nbformat.v4.new_output("error", ename="HiddenTestFailed", evalue=f"{MARK}{verdict.message}",
                                              traceback=[f"HiddenTestFailed: {MARK}{verdict.message}"]))
    cell["outputs"] = outputs


def _ours(out) -> bool:
    text = out.get("text", "") if out.get("output_type") == "stream" else out.get("evalue", "")
    return isinstance(text, str) and text.startswith(MARK)


def apply(repo: Path, db_url: str, student: str, assignment: str, autograded: Path,
          sandbox: bool | None = None) -> dict[str, Verdict] | None:
    """grade.py's verdict step, after ``nbgrader autograde``: compute the verdicts of a ported
    assignment and make them the gradebook's scores; None (nothing done) for other assignments."""
    if not ported(assignment, repo):
        return None
    import nbformat
    from nbgrader.api import Gradebook

    nb = nbformat.read(autograded, as_version=4)
    tests = load(assignment, repo)
    seed = int(os.environ.get("FLOWLIB_SEED", "0"))
    verdicts = evaluate(assignment, student_cells(nb, set(tests.points)), seed=seed, repo=repo, sandbox=sandbox)
    with Gradebook(db_url) as gb:
        for gid, verdict in verdicts.items():
            grade = gb.find_grade(gid, assignment, assignment, student)
            grade.auto_score = float(grade.max_score) if verdict.passed else 0.0
        gb.db.commit()
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.get("cell_type") == "code" and gid in verdicts:
            _annotate(cell, verdicts[gid], tests.points[gid])
    # a new file renamed over the old one: a link planted in its place is replaced, not followed
    tmp = autograded.with_name(f".{autograded.name}.verdicts")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    nbformat.write(nb, str(tmp))
    os.replace(tmp, autograded)
    return verdicts
