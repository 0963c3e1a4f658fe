"""Run an assignment's source notebook once per mutant and report which test cells fail.

Used by test_grading.py as ``python tests/run_mutants.py ASSIGNMENT``; prints one JSON
object ``{mutant name: [grade_id of each failing test cell]}`` on the last line. With
``--seeds 1 2 3`` it instead runs the reference solution once per seed (the setup cell
seeds torch from ``FLOWLIB_SEED``) and reports ``{"seed N": [failing cells]}``. All mutants
run in this one process, each in a freshly reset IPython shell: a kernel start per mutant
would cost seconds each, and nbgrader scores a test cell 0 exactly when it raises, which
is what this records. (The full nbgrader path is exercised by the round-trip test.) A slow
hidden test may declare the solution cells it runs (``USES`` in hidden_tests.py); a mutant of
another cell skips it.

An assignment with grader-side hidden tests (``solutions/<asg>/hidden_tests.py``, see
autograder/verdicts.py) is judged the way grade.py judges it: each mutant's code runs in a
probe process and the hidden-test functions decide, with the seed as the grading seed; the
runs are independent and go side by side in ``--jobs`` worker processes (default: one per
core, at most 4).
"""
from __future__ import annotations

import ast
import json
import os
import re
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import mutants  # noqa: E402


def failing_tests(nb: nbformat.NotebookNode, shell) -> list[str]:
    shell.reset(new_session=True)
    failed = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        result = shell.run_cell(cell.source, silent=True, store_history=False)
        if meta.get("grade") and not meta.get("solution") and not result.success:
            failed.append(meta["grade_id"])
    return failed


def _verdict_job(asg: str, cells: list[dict], seed: int, label: str, only: set[str] | None) -> list[str]:
    """One reference or mutant run, in a worker process: the names of the failing test cells."""
    sys.path.insert(0, str(HERE.parent / "autograder"))
    import torch
    import verdicts

    torch.set_num_threads(1)  # the workers share the cores; their tensors are small
    found = verdicts.evaluate(asg, cells, seed=seed, only=only)
    for gid, v in found.items():
        if not v.passed:
            print(f"{label}: {gid}: {v.message[:300]}", file=sys.stderr, flush=True)
    return [gid for gid, v in found.items() if not v.passed]


def test_names(hidden_file: Path) -> dict[str, set[str]]:
    """The student names each hidden test can reach: every identifier inside a string constant
    of its body, of the module's helper functions it calls and of the module-level constants
    they read (transitively; code sent with ``student.define`` is such a string). Student
    entries are named by string (``student.call("name", ...)``), so this over-approximates."""
    tree = ast.parse(hidden_file.read_text())
    funcs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    consts = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                if isinstance(target, ast.Name):
                    consts[target.id] = node.value
    nodes = {**consts, **funcs}

    def words(node) -> set[str]:
        return {w for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)
                for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", c.value)}

    direct = {name: (words(node), {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in nodes and n.id != name})
              for name, node in nodes.items()}
    out = {}
    for name in funcs:
        if not name.startswith("test_"):
            continue
        seen, todo, strings = {name}, [name], set()
        while todo:
            found, used = direct[todo.pop()]
            strings |= found
            todo += [u for u in used if u not in seen]
            seen |= used
        out[name] = strings
    return out


def _defs_and_refs(source: str) -> tuple[set[str], set[str]] | None:
    """Top-level names a cell defines, and every name it reads; None if it does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    defs = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defs |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                defs |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    refs = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return defs, refs


def affected_tests(cells: list[dict], mutated: str, original: str, names: dict[str, set[str]]) -> set[str] | None:
    """The hidden tests a mutant of one cell can change: those that reach a name defined by that
    cell or by any cell that reads one of its names (transitively). None (run every test) when a
    cell does not parse or a test names nothing. Conservative; a miss would show as a mutant
    that loses fewer cells than its list says."""
    parsed = {c["id"]: _defs_and_refs(c["source"]) for c in cells}
    first, second = _defs_and_refs(mutated), _defs_and_refs(original)
    if first is None or second is None or any(v is None for v in parsed.values()) or not all(names.values()):
        return None
    defs = first[0] | second[0]
    changed = True
    while changed:
        changed = False
        for cid, (d, r) in parsed.items():
            if r & defs and not d <= defs:
                defs |= d
                changed = True
    return {test for test, strings in names.items() if strings & defs}


def cells_by_id(cells: list[dict]) -> dict[str, str]:
    return {c["id"]: c["source"] for c in cells}


def jobs_default() -> int:
    """Parallel runs: FLOWLIB_MUTANT_JOBS, else one per core up to 4. Each run is a probe
    process (one torch thread) plus the grader-side tests in a worker (one torch thread), which
    mostly take turns, so one run per core keeps the cores busy without oversubscribing."""
    if os.environ.get("FLOWLIB_MUTANT_JOBS"):
        return max(1, int(os.environ["FLOWLIB_MUTANT_JOBS"]))
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def main_verdicts(asg: str, seeds: list[int], jobs: int) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    sys.path.insert(0, str(HERE.parent / "autograder"))
    import verdicts

    source = HERE.parent / "solutions" / asg / f"{asg}.ipynb"
    hidden = verdicts.load(asg)
    test_ids = set(hidden.points)
    runs: dict[str, tuple] = {}  # label -> (cells, seed, only); the report keeps this order
    report: dict[str, list[str]] = {}
    if seeds:
        for s in seeds:
            runs[f"seed {s}"] = (verdicts.student_cells(nbformat.read(source, as_version=4), test_ids), s, None)
    else:
        seed = int(os.environ.get("FLOWLIB_SEED", "0"))
        runs["(reference)"] = (verdicts.student_cells(nbformat.read(source, as_version=4), test_ids), seed, None)
        original = cells_by_id(runs["(reference)"][0])
        names = {gid: strings for gid, strings in test_names(verdicts.hidden_tests_file(asg)).items() if gid in test_ids}
        for m in mutants.load(asg):
            nb = nbformat.read(source, as_version=4)
            cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == m["cell"]]
            if len(cells) != 1 or cells[0].source.count(m["find"]) != 1:
                report[m["name"]] = [f"BAD MUTANT: cell {m['cell']!r} missing or `find` not found exactly once"]
                continue
            cells[0].source = cells[0].source.replace(m["find"], m["replace"])
            # A slow hidden test (a training exercise) that declares in USES the solution cells it
            # runs is skipped for a mutant of any other cell: it gives the reference's verdict
            # there (a pass, which "(reference)" asserts in this same run).
            skip = {gid for gid, used in (hidden.uses or {}).items() if m["cell"] not in used}
            # Any test that cannot reach the mutated cell's names gives the reference's verdict too.
            cells = verdicts.student_cells(nb, test_ids)
            reach = affected_tests(cells, cells_by_id(cells)[m["cell"]], original[m["cell"]], names)
            if reach is not None:
                skip |= test_ids - reach
            runs[m["name"]] = (cells, seed, test_ids - skip)
    # Each run is independent (its own probe process, its own grading seed), so they run side by
    # side in worker processes; "spawn", because this process has torch's threads already.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {label: pool.submit(_verdict_job, asg, cells, s, label, only)
                   for label, (cells, s, only) in runs.items()}
        for label, fut in futures.items():
            report[label] = fut.result()
    order = list(runs) + [k for k in report if k not in runs]
    sys.stdout.flush()
    print("\n" + json.dumps({k: report[k] for k in order}))


def main(asg: str, seeds: list[int], jobs: int) -> None:
    if (HERE.parent / "solutions" / asg / "hidden_tests.py").is_file():
        return main_verdicts(asg, seeds, jobs)
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("FLOWLIB_PROGRESS", "0")
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    source = HERE.parent / "solutions" / asg / f"{asg}.ipynb"
    if seeds:
        report = {}
        for seed in seeds:
            os.environ["FLOWLIB_SEED"] = str(seed)
            report[f"seed {seed}"] = failing_tests(nbformat.read(source, as_version=4), shell)
        print("\n" + json.dumps(report))
        return
    report = {"(reference)": failing_tests(nbformat.read(source, as_version=4), shell)}
    for m in mutants.load(asg):
        nb = nbformat.read(source, as_version=4)
        cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == m["cell"]]
        if len(cells) != 1 or cells[0].source.count(m["find"]) != 1:
            report[m["name"]] = [f"BAD MUTANT: cell {m['cell']!r} missing or `find` not found exactly once"]
            continue
        cells[0].source = cells[0].source.replace(m["find"], m["replace"])
        report[m["name"]] = failing_tests(nb, shell)
    sys.stdout.flush()
    print("\n" + json.dumps(report))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("assignment")
    parser.add_argument("--seeds", type=int, nargs="*", default=[])
    parser.add_argument("--jobs", type=int, default=None, help="parallel runs (default: FLOWLIB_MUTANT_JOBS or one per core, at most 4)")
    args = parser.parse_args()
    main(args.assignment, args.seeds, args.jobs or jobs_default())
