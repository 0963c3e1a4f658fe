"""Static scan of a submission for code that tampers with grading.

Runs before the notebook is executed. It reads every code cell a student can write (all
cells except the locked ones, whose source nbgrader restores anyway) and reports code that
a solution of these exercises never needs:

* assigning to or deleting an attribute of a module or class (``torch.allclose = ...``,
  ``torch.Tensor.__lt__ = ...``, ``flowlib.testing.check_round_trip = ...``);
* ``setattr``/``delattr``, ``exec``/``eval``/``compile``, ``__import__``, ``globals()``,
  ``importlib``, ``builtins``/``__builtins__``, ``sys.modules``, ``ctypes``, ``gc``, frame
  and code-object access (``_getframe``, ``inspect.currentframe``/``stack``, ``__code__``,
  ``__closure__``, ``__globals__``);
* redefining, at the top level of a cell, a builtin the tests use or a name the locked
  setup cell provides (``block_reference``, ``DEVICE``, ...).

Read-only introspection is not a finding: ``inspect.getsource``, ``inspect.signature``,
``help``, ``dir``, ``__doc__`` (the notebooks invite students to read flowlib).

A cell whose source is exactly one of the instructor's locked cells (a copy-pasted setup
cell, say) is the instructor's code and is not scanned.

A finding does not change what nbgrader computes; the grader reports the student as
"flagged" with the reasons, for an instructor to review. For an assignment graded by
grader-side verdicts (autograder/README.md) the score is kept, since code in the student's
process cannot change those; otherwise it is held at 0.

Ordinary solution code is not a finding: ``torch.stack`` (only ``inspect``'s frame functions
are), and attributes of the student's own objects (``self.logits = ...`` in an ``nn.Module``):
only attributes of imported modules and of their classes (``torch.allclose = ...``,
``torch.Tensor.__lt__ = ...``) are.
"""
from __future__ import annotations

import ast

from nbformat import NotebookNode

FORBIDDEN_NAMES = {
    "setattr", "delattr", "exec", "eval", "compile", "__import__", "globals", "vars", "importlib",
    "builtins", "__builtins__", "ctypes", "gc",
}
# ``inspect`` is for reading: its source, signature and documentation functions are what an
# honest student uses to study flowlib. Only the parts that reach live frames (and through
# them other code's variables) are flagged.
INSPECT_FRAMES = {"currentframe", "stack", "trace", "getouterframes", "getinnerframes", "getframeinfo",
                  "getgeneratorlocals", "getcoroutinelocals", "getclosurevars"}
FORBIDDEN_ATTRS = {"_getframe", "__code__", "__closure__", "__globals__", "__dict__", "__builtins__", "modules",
                   "f_globals", "f_locals", "f_back", "cell_contents", "__wrapped__"}
PROTECTED = {
    "abs", "all", "any", "bool", "callable", "float", "getattr", "hasattr", "int", "isinstance", "len", "max",
    "min", "print", "range", "round", "sum", "type", "zip", "AssertionError", "Exception", "ValueError",
    "TypeError", "RuntimeError", "NotImplementedError", "torch", "math", "np", "numpy", "flowlib",
    "block_reference", "DEVICE",
}


def _targets(node: ast.AST):
    if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
        return node.targets if isinstance(node, ast.Assign) else [node.target]
    if isinstance(node, ast.Delete):
        return node.targets
    return []


def _names(target: ast.AST):
    if isinstance(target, (ast.Tuple, ast.List)):
        for t in target.elts:
            yield from _names(t)
    else:
        yield target


def _root(node: ast.AST) -> str | None:
    """The leftmost name of an attribute chain (``torch`` for ``torch.Tensor.__lt__``)."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.value if not isinstance(node, ast.Call) else node.func
    return node.id if isinstance(node, ast.Name) else None


def _module_aliases(tree: ast.AST) -> set[str]:
    """Names bound to imported modules (and their members) anywhere in the cell, plus the
    modules the setup cells import."""
    names = {"torch", "math", "np", "numpy", "flowlib", "sys", "os", "builtins", "inspect", "F", "nn"}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def scan_source(source: str, locked_names: set[str] = frozenset()) -> list[str]:
    """Findings for one cell's source, as 'line N: what'."""
    # IPython magics and shell escapes are not Python; they are not needed either.
    lines = ["" if ln.lstrip().startswith(("%", "!")) else ln for ln in source.splitlines()]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return []  # the kernel reports it; a syntax error gains nothing
    found = []
    module_names = _module_aliases(tree)
    for node in ast.walk(tree):
        for target in _targets(node):
            for t in _names(target):
                if isinstance(t, ast.Attribute) and _root(t) in module_names:
                    found.append(f"line {node.lineno}: assigns or deletes the attribute {ast.unparse(t)}")
                elif isinstance(t, ast.Subscript) and "modules" in ast.unparse(t.value):
                    found.append(f"line {node.lineno}: writes to {ast.unparse(t.value)}")
        if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            found.append(f"line {node.lineno}: uses {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRS:
            found.append(f"line {node.lineno}: uses .{node.attr}")
        elif isinstance(node, ast.Attribute) and node.attr in INSPECT_FRAMES and _root(node) not in {"torch", "np", "numpy"}:
            found.append(f"line {node.lineno}: uses .{node.attr} (frame access)")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for m in modules:
                if m.split(".")[0] in FORBIDDEN_NAMES:
                    found.append(f"line {node.lineno}: imports {m}")
            if isinstance(node, ast.ImportFrom) and node.module == "inspect":
                for a in node.names:
                    if a.name in INSPECT_FRAMES or a.name == "*":
                        found.append(f"line {node.lineno}: imports inspect.{a.name} (frame access)")
    protected = PROTECTED | set(locked_names)
    for node in tree.body:  # top level only: a local variable named `max` harms nothing
        defined = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined = [node.name]
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            defined = [t.id for target in _targets(node) for t in _names(target) if isinstance(t, ast.Name)]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined = [(a.asname or a.name).split(".")[0] for a in node.names]
            defined = [d for d in defined if d not in {"torch", "math", "numpy", "np", "flowlib"}]
        for name in defined:
            if name in protected:
                found.append(f"line {node.lineno}: redefines {name}")
    return found


def scan_notebook(nb: NotebookNode, locked_ids: set[str], setup_names: set[str],
                  locked_sources: set[str] = frozenset()) -> list[str]:
    """Findings for every student-writable code cell of a submission (a cell that is an
    exact copy of a locked cell, ``locked_sources``, is the instructor's code)."""
    findings = []
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in locked_ids:
            continue  # nbgrader overwrites locked cells with the instructor's version
        if cell.get("source", "").strip() in locked_sources:
            continue  # a copy of the instructor's own code
        label = grade_id or f"cell {index + 1}"
        findings += [f"{label}, {f}" for f in scan_source(cell.get("source", ""), setup_names)]
    return findings


def locked_sources(*notebooks: NotebookNode) -> set[str]:
    """Sources (stripped) of the locked, non-solution code cells of these notebooks."""
    return {c.source.strip() for nb in notebooks for c in nb.cells
            if c.get("cell_type") == "code" and c.get("metadata", {}).get("nbgrader", {}).get("locked")
            and not c.metadata["nbgrader"].get("solution") and c.source.strip()}


def locked_cells(source_nb: NotebookNode) -> tuple[set[str], set[str]]:
    """grade_ids of the instructor's locked cells, and the names the locked cells define."""
    ids, names = set(), set()
    for cell in source_nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta and not meta.get("solution") and cell.get("cell_type") == "code":
            ids.add(meta["grade_id"])
            if not meta.get("grade"):
                try:
                    tree = ast.parse(cell.source)
                except SyntaxError:
                    continue
                for node in tree.body:
                    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                        names.add(node.name)
                    elif isinstance(node, ast.Assign):
                        names.update(t.id for target in node.targets for t in _names(target) if isinstance(t, ast.Name))
                    elif isinstance(node, ast.ImportFrom):
                        names.update(a.asname or a.name for a in node.names)
    return ids, names
