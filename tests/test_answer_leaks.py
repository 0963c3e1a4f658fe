"""Answers stay off the website (issue 19, DESIGN.md "What the book may print").

The graded objects are every name a graded cell blocks: the arguments of
``block_reference(...)`` in ``solutions/*/*.ipynb`` and the ``STUB`` list of each ported
assignment's ``solutions/<asg>/hidden_tests.py`` (both, so the check holds before, during
and after the port), plus the private helpers of the same module that they call (what they
are built from). Each is resolved with ``inspect`` to its source, and no run of
``RUN`` (4) consecutive non-trivial source lines (whitespace collapsed; blank lines, comments,
docstrings, lone brackets and lines under ``MIN_CHARS`` characters ignored) may appear (in
order, each within ``GAP`` lines of the previous one, since a listing keeps the docstring
and comments that the source side drops)

* in a chapter source ``book/*.md`` (with every ``{literalinclude}`` expanded, so a listing
  is caught without building the site), or
* in a page of the built site ``_build/html`` (tags stripped, entities unescaped).

An object with only 2 or 3 such lines counts as leaked when all of them appear in a row (its
signature is one of them, so only a listing matches). A failure names the object, the file and line where its code appears, and the first
leaked line.
"""
from __future__ import annotations

import ast
import html
import inspect
import io
import json
import re
import sys
import textwrap
import tokenize
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "autograder"))
from similarity import resolve  # noqa: E402  (the one resolver of graded names, shared with copy detection)

RUN = 4          # this many consecutive non-trivial source lines make a leak (or all of a
                 # shorter object's lines, signature included, when it has 2 or 3)
GAP = 12         # a shown listing may interleave up to this many other lines (docstring, comments)
MIN_CHARS = 25   # shorter lines (``return x``, ``else:``, ``x = x + 1``) are too common to count

_STRING = re.compile(r"""(['"])(flowlib(?:\.\w+)+)\1""")


# ----------------------------------------------------------------------------- the names
def _block_reference_args(source: str) -> set[str]:
    """The dotted flowlib names passed to ``block_reference(...)`` in some Python text."""
    names: set[str] = set()
    for m in re.finditer(r"block_reference\s*\(", source):
        depth, i = 1, m.end()
        while i < len(source) and depth:
            depth += {"(": 1, ")": -1}.get(source[i], 0)
            i += 1
        names |= {n for _, n in _STRING.findall(source[m.end():i])}
    return names


def _stub_list(path: Path) -> set[str]:
    """The names in ``STUB = [...]`` of a hidden_tests.py."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
        if isinstance(target, ast.Name) and target.id == "STUB" and node.value is not None:
            return {v for v in ast.literal_eval(node.value) if str(v).startswith("flowlib.")}
    return set()


def graded_names() -> dict[str, set[str]]:
    """name -> the assignments that block it."""
    found: dict[str, set[str]] = {}
    for asg in sorted(p for p in (REPO / "solutions").iterdir() if p.is_dir()):
        names: set[str] = set()
        for nb in asg.glob("*.ipynb"):
            for cell in json.loads(nb.read_text())["cells"]:
                src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
                names |= _block_reference_args(src)
        hidden = asg / "hidden_tests.py"
        if hidden.is_file():
            names |= _stub_list(hidden) | _block_reference_args(hidden.read_text())
        for n in names:
            found.setdefault(n, set()).add(asg.name)
    return found


def _unwrap(obj):
    if isinstance(obj, types.FunctionType) or hasattr(obj, "__wrapped__"):
        obj = inspect.unwrap(obj)
    return obj


def _code_objects(obj) -> list[types.CodeType]:
    funcs = [obj] if isinstance(obj, types.FunctionType) else [
        _unwrap(m.__func__ if isinstance(m, (staticmethod, classmethod)) else m.fget if isinstance(m, property) else m)
        for m in vars(obj).values() if isinstance(m, (types.FunctionType, staticmethod, classmethod, property))
    ] if isinstance(obj, type) else []
    codes, stack = [], [f.__code__ for f in funcs if isinstance(f, types.FunctionType)]
    while stack:
        code = stack.pop()
        codes.append(code)
        stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    return codes


def _private_helpers(obj) -> list[tuple[str, object]]:
    """Module-level private functions and classes of the object's own module that it uses."""
    module = inspect.getmodule(obj)
    if module is None:
        return []
    out = []
    for code in _code_objects(obj):
        for name in code.co_names:
            helper = getattr(module, name, None)
            if (name.startswith("_") and not name.startswith("__")
                    and isinstance(helper, (types.FunctionType, type))
                    and getattr(helper, "__module__", None) == module.__name__):
                out.append((f"{module.__name__}.{name}", helper))
    return out


@dataclass(frozen=True)
class Graded:
    name: str              # dotted name, as blocked (or "<blocked> -> <helper>")
    lines: tuple[str, ...]  # normalised non-trivial source lines
    numbers: tuple[int, ...]


def _significant(raw_lines: list[str], skip: set[int] = frozenset(), first: int = 1) -> tuple[list[str], list[int]]:
    lines, numbers = [], []
    for i, line in enumerate(raw_lines):
        if first + i in skip:
            continue
        norm = _normalise(line)
        if norm is not None:
            lines.append(norm)
            numbers.append(first + i)
    return lines, numbers


def _normalise(line: str) -> str | None:
    """One line, whitespace collapsed and a trailing comment dropped; None when trivial."""
    text = re.sub(r"\s+", " ", line).strip()
    text = re.sub(r"(^|\s)#(\s.*)?$", "", text).strip()
    if len(text) < MIN_CHARS or re.fullmatch(r"[()\[\]{},:;.\s]*", text):
        return None
    return text


def _source_lines(obj) -> tuple[list[str], list[int]]:
    """Normalised significant lines of an object's source (comments and docstrings removed)."""
    raw, first = inspect.getsourcelines(obj)
    text = textwrap.dedent("".join(raw))
    skip: set[int] = set()
    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            skip |= {first + n - 1 for n in range(body[0].lineno, body[0].end_lineno + 1)}
    # comments: drop them token-wise (a '#' inside a string stays)
    lines = text.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            lines[row - 1] = lines[row - 1][:col]
    return _significant(lines, skip, first)


def graded_objects() -> list[Graded]:
    out: dict[str, Graded] = {}
    for name in sorted(graded_names()):
        obj = _unwrap(resolve(name))
        todo = [(name, obj)] + [(f"{name} -> {h}", helper) for h, helper in _private_helpers(obj)]
        if isinstance(obj, type):  # each method on its own too: a short one shown alone is a leak
            todo += [(f"{name}.{attr}", _unwrap(m)) for attr, m in vars(obj).items()
                     if isinstance(m, types.FunctionType) and not attr.startswith("__")]
        for label, target in todo:
            lines, numbers = _source_lines(target)
            key = label.split(" -> ")[-1]
            if key not in out or len(lines) > len(out[key].lines):
                out[key] = Graded(label, tuple(lines), tuple(numbers))
    return list(out.values())


# ------------------------------------------------------------------------- the texts
def _pyobject_source(path: Path, dotted: str) -> str:
    tree = ast.parse(path.read_text())
    lines = path.read_text().splitlines(keepends=True)
    node: ast.AST = tree
    for part in dotted.split("."):
        node = next(n for n in getattr(node, "body", []) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == part)
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return "".join(lines[start - 1:node.end_lineno])


def expand_literalincludes(md: Path) -> list[tuple[int, str]]:
    """The chapter's lines with each ``{literalinclude}`` replaced by what it shows; each
    line keeps the line number of the chapter line it comes from."""
    out: list[tuple[int, str]] = []
    lines = md.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"\s*(`{3,}|:{3,})\{literalinclude\}\s+(\S+)", lines[i])
        if not m:
            out.append((i + 1, lines[i]))
            i += 1
            continue
        fence, rel, start, opts = m.group(1), m.group(2), i + 1, {}
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            o = re.match(r"\s*:(\w[\w-]*):\s*(.*)", lines[i])
            if o:
                opts[o.group(1)] = o.group(2).strip()
            i += 1
        i += 1
        path = (md.parent / rel).resolve()
        if not path.is_file():
            continue
        shown = _pyobject_source(path, opts["pyobject"]) if "pyobject" in opts else path.read_text()
        out += [(start, line) for line in shown.splitlines()]
    return out


def _html_text(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(errors="replace")
    text = re.sub(r"(?is)<(script|style)\b.*?</\1>", "", text)
    text = re.sub(r"(?i)<br\s*/?>", "\n", text)
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    return list(enumerate(text.splitlines(), start=1))


def _ipynb_text(path: Path) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for k, cell in enumerate(json.loads(path.read_text()).get("cells", [])):
        src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        out += [(k + 1, line) for line in src.splitlines()]
        for o in cell.get("outputs", []):
            t = o.get("text") or o.get("data", {}).get("text/plain", "")
            out += [(k + 1, line) for line in ("".join(t) if isinstance(t, list) else t).splitlines()]
    return out


def _follows(index: dict[str, list[int]], k: int, rest: tuple[str, ...]) -> bool:
    """Whether the lines ``rest`` come after text line ``k`` in order, each within ``GAP``
    lines of the previous one (a listing keeps its docstring and comments, which the
    source side drops)."""
    for line in rest:
        after = [j for j in index.get(line, []) if k < j <= k + 1 + GAP]
        if not after:
            return False
        k = after[0]
    return True


def find_leaks(where: str, numbered: list[tuple[int, str]], objects: list[Graded]) -> list[str]:
    """Messages for every graded object with RUN consecutive significant lines in the text."""
    text, at = [], []
    for n, line in numbered:
        norm = _normalise(line)
        if norm is not None:
            text.append(norm)
            at.append(n)
    index: dict[str, list[int]] = {}
    for k, line in enumerate(text):
        index.setdefault(line, []).append(k)
    leaks = []
    for g in objects:
        run = min(RUN, len(g.lines))
        if run < 2:
            continue
        for s in range(len(g.lines) - run + 1):
            hit = next((k for k in index.get(g.lines[s], [])
                        if _follows(index, k, g.lines[s + 1:s + run])), None)
            if hit is not None:
                leaks.append(f"{g.name}: its source (line {g.numbers[s]} on) appears in {where}, "
                             f"line {at[hit]}; first leaked line: {g.lines[s]!r}")
                break
    return leaks


# ------------------------------------------------------------------------------ tests
OBJECTS = graded_objects()


def test_graded_names_are_found_and_resolve():
    names = graded_names()
    assert len(names) >= 30, f"only {len(names)} graded names found in solutions/: {sorted(names)}"
    for probe in ("flowlib.flows.onedim.mixture_cdf", "flowlib.diffusion.score.esm_loss", "flowlib.diffusion.ode.ode_log_prob"):
        assert probe in names, f"{probe} is not among the graded names: the collector is broken"
    assert all(len(g.lines) >= 1 for g in OBJECTS)
    assert any(g.name.endswith("-> flowlib.flows.dequantization._into_cells") or g.name.endswith("_into_cells") for g in OBJECTS)


def test_leak_detector_catches_a_pasted_listing(tmp_path):
    """The detector itself: a chapter that includes a graded object is caught, with the name,
    the place and the first leaked line; a chapter that only calls it is not."""
    md = tmp_path / "chapter.md"
    md.write_text(f"# x\n\n```{{literalinclude}} {REPO / 'flowlib' / 'diffusion' / 'score.py'}\n:language: python\n"
                  f":pyobject: esm_loss\n```\n\nloss = flowlib.esm_loss(model, x)\n")
    leaks = find_leaks("chapter.md", expand_literalincludes(md), OBJECTS)
    assert leaks and "flowlib.diffusion.score.esm_loss" in leaks[0] and "line 3" in leaks[0], leaks
    md.write_text("loss = flowlib.esm_loss(model, x)\n")
    assert not find_leaks("chapter.md", expand_literalincludes(md), OBJECTS)


@pytest.mark.parametrize("page", sorted(p.name for p in (REPO / "book").glob("*.md")))
def test_chapter_sources_show_no_graded_code(page):
    leaks = find_leaks(f"book/{page}", expand_literalincludes(REPO / "book" / page), OBJECTS)
    assert not leaks, "graded code shown by the book (teach it with math and a prf:algorithm box):\n" + "\n".join(leaks)


@pytest.mark.slow
def test_built_site_shows_no_graded_code(book_build):
    site = REPO / "_build" / "html"
    if not site.is_dir():
        pytest.skip(f"{site} is absent (the book build did not produce it; see test_book_builds_without_warnings)")
    leaks = []
    for path in sorted(site.rglob("*")):
        if not path.is_file() or "_static" in path.parts:
            continue
        if path.suffix == ".html":
            numbered = _html_text(path)
        elif path.suffix == ".ipynb":
            numbered = _ipynb_text(path)
        elif path.suffix in (".md", ".txt", ".py"):
            numbered = list(enumerate(path.read_text(errors="replace").splitlines(), start=1))
        else:
            continue
        leaks += find_leaks(str(path.relative_to(REPO)), numbered, OBJECTS)
    assert not leaks, "graded code on the built site:\n" + "\n".join(leaks)
