"""Copy detection for one assignment: students' solution cells against each other and
against flowlib's source of the graded functions (issue 19).

A plain-function API, so the grader (or a Dask client after all gradings) calls it once
per assignment::

    result = similarity.check(repo, assignment, {student: notebook_path, ...}, threshold=0.6)
    similarity.write_report(result, course / "similarity" / f"{assignment}.html")
    result.flags  # student -> [(other party, similarity), ...], highest first

What is compared. Each student's *solution cells* (``nbgrader.solution`` true, matched by
``grade_id`` against ``solutions/<asg>/<asg>.ipynb``, in the source's order), minus the
release's own code in those cells (signatures, docstrings, ``raise NotImplementedError()``:
boilerplate every student receives). The other parties are every classmate and, for each
name in ``STUB`` of ``solutions/<asg>/hidden_tests.py`` (or, for an assignment not yet
ported, each name passed to ``block_reference`` in the notebook), the flowlib source of that
object (``inspect.getsource``), reported as ``flowlib:<name>``.

How. Python is tokenised here (:func:`normalise`, with :mod:`tokenize`): comments, blank
lines, line breaks inside brackets, indentation and docstrings are dropped; every identifier
that is not a keyword, a builtin, an attribute (``x.logsumexp``) or a keyword argument of a
call (``dim=``) becomes one placeholder, every string literal another, numbers are written
canonically. Each remaining token becomes one character, so copydetect's winnowing
(:class:`copydetect.CodeFingerprint`, MOSS's algorithm) works on k-grams of *tokens*:
renaming variables, rewording comments and docstrings, and changing whitespace or line
breaks leave the token sequence unchanged. copydetect's own filter (Pygments) would do most
of this too, but it also replaces attribute names (``torch.logsumexp`` and
``torch.log_softmax`` look the same), which makes independent solutions that call the same
library look alike, and it counts k in characters, so long names weigh more.

Similarity of a pair of students: the larger of the two fractions "share of this student's
fingerprinted code that also appears in the other's" (copydetect's per-file similarity), so
a short copy inside a long submission still counts. Similarity with ``flowlib:<name>``: the
share of that object's fingerprinted source that appears in the student's code (how much
of the reference was reproduced). Flags are for review: nothing here changes a score.
"""
from __future__ import annotations

import ast
import builtins
import html
import importlib
import inspect
import io
import itertools
import json
import keyword
import re
import tokenize
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Default threshold (README, "Copy detection"), calibrated on assignment 01 (tests/test_similarity.py):
#: three independently written solutions reach at most 0.23 with anyone and 0.10 with flowlib;
#: the three copies score 1.00, 0.81 and 0.73; the reference solution itself, written by the
#: author of flowlib, reaches 0.53 against flowlib's bisection_inverse. 0.6 stays above that
#: and far above the honest ones, and below every copy. Set per run with ``grade.py --similarity``.
DEFAULT_THRESHOLD = 0.6
K = 15        # noise threshold: a shared run shorter than K tokens is never a match
# Winnowing window 1: every k-gram is a fingerprint, so every shared run of K tokens is found
# (guarantee threshold = noise threshold). It also makes the scores reproducible: copydetect
# hashes k-grams with Python's hash(), salted per process, and a larger window would select
# other fingerprints on each run (scores moved by about 0.02). Solutions are short: the cost
# is a set intersection of a few hundred hashes per pair.
WINDOW = 1
MIN_TOKENS = 2 * K  # a student with less code of their own (an untouched release) is not compared
#: Some graded objects are short and have one natural implementation (an autograd trace loop,
#: a checkerboard from i + j): the course's own reference solution, written apart from
#: flowlib, reaches up to 0.61 against them. A student is flagged against flowlib:<name> only
#: above max(threshold, the reference solution's similarity to it + REFERENCE_MARGIN); the
#: pasted copies of the calibration score 0.2-0.7 above the reference solution.
REFERENCE_MARGIN = 0.15

_BUILTINS = frozenset(dir(builtins))
_STUB_LINE = re.compile(r"^\s*raise\s+NotImplementedError(\s*\(\s*\))?\s*$")
_MAGIC_LINE = re.compile(r"^\s*[%!]")
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING, tokenize.ENDMARKER}


# ----------------------------------------------------------------------------- tokens
@dataclass
class Document:
    """One party's code: the raw text shown in the report, the normalised token string
    (one character per token) that is fingerprinted, and for each token its span in raw."""
    label: str
    raw: str
    tokens: list[str] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(_char(t) for t in self.tokens)


def _char(token: str) -> str:
    """A stable one-character code for a normalised token (CJK block: 20,992 codes)."""
    return chr(0x4E00 + zlib.crc32(token.encode("utf-8")) % 20992)


def _blank(code: str, drop_stub: bool) -> str:
    """Turn IPython magics / shell lines and the release's stub line into comments (same
    length, so token offsets still point into the original text)."""
    out = []
    for line in code.splitlines(keepends=True):
        if _MAGIC_LINE.match(line) or (drop_stub and _STUB_LINE.match(line)):
            body = line.rstrip("\r\n")
            line = "#" + body[1:] + line[len(body):] if body else line
        out.append(line)
    return "".join(out)


def normalise(code: str, drop_stub: bool = True) -> tuple[list[str], list[tuple[int, int]]]:
    """Tokens of Python ``code`` with names, strings, comments, docstrings and layout
    normalised away (see the module docstring), and each token's (start, end) in ``code``.
    Code that does not tokenise to the end (a syntax error) keeps the tokens before it."""
    text = _blank(code, drop_stub)
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))

    def offset(pos: tuple[int, int]) -> int:
        row, col = pos
        return starts[min(row - 1, len(starts) - 1)] + col

    raw: list[tokenize.TokenInfo] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            raw.append(tok)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    sig = [t for t in raw if t.type not in _SKIP]
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    brackets: list[str] = []  # "call" or "other" per open bracket
    at_statement_start = True
    i = 0
    while i < len(sig):
        tok = sig[i]
        prev = sig[i - 1] if i else None
        nxt = sig[i + 1] if i + 1 < len(sig) else None
        if at_statement_start and tok.type == tokenize.STRING:
            # a bare string statement (docstring): skip it up to its NEWLINE
            j = i
            while j < len(sig) and sig[j].type == tokenize.STRING:
                j += 1
            if j == len(sig) or sig[j].type == tokenize.NEWLINE:
                i = j + 1
                continue
        at_statement_start = tok.type == tokenize.NEWLINE
        span = (offset(tok.start), offset(tok.end))
        if tok.type == tokenize.NAME:
            if keyword.iskeyword(tok.string) or tok.string in _BUILTINS:
                norm = tok.string
            elif prev is not None and prev.type == tokenize.OP and prev.string == ".":
                norm = "." + tok.string  # attribute: an API name, not renameable
            elif (brackets and brackets[-1] == "call" and nxt is not None and nxt.type == tokenize.OP
                  and nxt.string == "=" and prev is not None and prev.string in ("(", ",")):
                norm = tok.string + "="  # keyword argument of a call
            else:
                norm = "V"
        elif tok.type == tokenize.STRING or tok.type == getattr(tokenize, "FSTRING_START", -1):
            norm = "S"
            if tok.type != tokenize.STRING:  # Python 3.12+: an f-string is several tokens
                depth = 1
                while depth and i + 1 < len(sig):
                    i += 1
                    depth += {tokenize.FSTRING_START: 1, tokenize.FSTRING_END: -1}.get(sig[i].type, 0)
                span = (span[0], offset(sig[i].end))
        elif tok.type == tokenize.NUMBER:
            try:
                norm = repr(complex(ast.literal_eval(tok.string)).real) if "j" not in tok.string.lower() else tok.string
            except (ValueError, SyntaxError):
                norm = tok.string
        elif tok.type == tokenize.NEWLINE:
            norm = ";"
        elif tok.type == tokenize.OP:
            norm = tok.string
            if norm in "([{":
                is_call = norm == "(" and prev is not None and (
                    (prev.type == tokenize.NAME and not keyword.iskeyword(prev.string)) or prev.string in (")", "]"))
                is_def = len(sig) > 1 and i >= 2 and sig[i - 2].string == "def"
                brackets.append("call" if is_call and not is_def else "other")
            elif norm in ")]}" and brackets:
                brackets.pop()
        elif tok.type == tokenize.ERRORTOKEN and not tok.string.strip():
            i += 1
            continue
        else:
            norm = tok.string
        if norm == "." and nxt is not None and nxt.type == tokenize.NAME:
            i += 1  # the dot travels with the attribute name
            continue
        out.append(norm)
        spans.append(span)
        i += 1
    # drop a trailing or doubled statement separator (layout, not code)
    keep = [n for n in range(len(out)) if not (out[n] == ";" and (n == 0 or out[n - 1] == ";"))]
    return [out[n] for n in keep], [spans[n] for n in keep]


def document(label: str, cells: list[tuple[str, str]], drop_stub: bool = True,
             given: dict[str, list[str]] | None = None) -> Document:
    """A party from its code cells ``[(title, code), ...]``: the raw text joins the cells
    under a ``# ---- title`` line each; tokens are normalised per cell (one cell that does
    not parse does not hide the others). ``given``: title -> the release's tokens of that
    cell (its signature; the docstring is dropped anyway), removed from the start of the
    student's cell, so that code every student received is not the student's."""
    doc = Document(label, "")
    parts = []
    pos = 0
    for title, code in cells:
        header = f"# ---- {title}\n" if title else ""
        toks, spans = normalise(code, drop_stub)
        head = (given or {}).get(title) or []
        if head and toks[:len(head)] == head:
            toks, spans = toks[len(head):], spans[len(head):]
        base = pos + len(header)
        doc.tokens += toks
        doc.spans += [(base + a, base + b) for a, b in spans]
        chunk = header + code.rstrip() + "\n\n"
        parts.append(chunk)
        pos += len(chunk)
    doc.raw = "".join(parts)
    return doc


# ----------------------------------------------------------------------------- notebooks
def _source(cell) -> str:
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


def solution_ids(source_nb: dict) -> list[str]:
    """grade_ids of the solution cells of the assignment's source notebook, in order."""
    ids = []
    for cell in source_nb.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") == "code" and isinstance(meta, dict) and meta.get("solution") and meta.get("grade_id"):
            ids.append(meta["grade_id"])
    return ids


def release_code(code: str) -> str:
    """What nbgrader releases for a solution cell: the code outside ``### BEGIN SOLUTION`` /
    ``### END SOLUTION`` (the stub line nbgrader puts in their place is dropped anyway)."""
    out, inside = [], False
    for line in code.splitlines(keepends=True):
        tag = line.strip()
        if tag.startswith("### BEGIN SOLUTION"):
            inside = True
        elif tag.startswith("### END SOLUTION"):
            inside = False
        elif not inside:
            out.append(line)
    return "".join(out)


def student_cells(notebook: dict, ids: list[str]) -> list[tuple[str, str]]:
    """The student's solution cells, by grade_id (the last copy of an id wins, as in
    nbgrader), in the order of ``ids``; cells the student deleted are left out."""
    found: dict[str, str] = {}
    for cell in notebook.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {}) if isinstance(cell, dict) else {}
        if isinstance(meta, dict) and meta.get("solution") and meta.get("grade_id") in ids and cell.get("cell_type") == "code":
            found[meta["grade_id"]] = _source(cell)
    return [(gid, found[gid]) for gid in ids if gid in found]


def _read_json(path: Path) -> dict | None:
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return nb if isinstance(nb, dict) else None


# ----------------------------------------------------------------------------- flowlib
def graded_names(repo: Path, assignment: str) -> list[str]:
    """The flowlib objects an assignment's exercises ask for: ``STUB`` of its
    hidden_tests.py (read with ``ast``, never imported), else the names passed to
    ``block_reference(...)`` in its source notebook."""
    hidden = Path(repo) / "solutions" / assignment / "hidden_tests.py"
    names: list[str] = []
    if hidden.is_file():
        for node in ast.parse(hidden.read_text()).body:
            target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
            if isinstance(target, ast.Name) and target.id == "STUB" and node.value is not None:
                names = [str(v) for v in ast.literal_eval(node.value)]
    else:
        nb = _read_json(Path(repo) / "solutions" / assignment / f"{assignment}.ipynb") or {}
        for cell in nb.get("cells", []):
            src = _source(cell)
            for m in re.finditer(r"block_reference\s*\(", src):
                depth, i = 1, m.end()
                while i < len(src) and depth:
                    depth += {"(": 1, ")": -1}.get(src[i], 0)
                    i += 1
                names += re.findall(r"""['"](flowlib(?:\.\w+)+)['"]""", src[m.end():i])
    return list(dict.fromkeys(n for n in names if n.startswith("flowlib.")))


def resolve(dotted: str):
    """The object a dotted name such as ``flowlib.diffusion.gmm.GaussianMixture.score`` names: the
    longest importable module prefix, then attributes; a class attribute is read statically
    and a staticmethod, classmethod or property is unwrapped to its function (so that its
    source can be read). tests/test_answer_leaks.py resolves the same names with it."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = inspect.getattr_static(obj, attr) if isinstance(obj, type) else getattr(obj, attr)
            if isinstance(obj, (staticmethod, classmethod)):
                obj = obj.__func__
            if isinstance(obj, property):
                obj = obj.fget
        return obj
    raise ImportError(dotted)


def flowlib_documents(names: list[str]) -> list[Document]:
    """``flowlib:<short name>`` parties, one per graded object whose source can be found."""
    docs = []
    for name in names:
        try:
            src = inspect.getsource(resolve(name))
        except (ImportError, AttributeError, TypeError, OSError):
            continue
        short = name.removeprefix("flowlib.")
        docs.append(document(f"flowlib:{short}", [(name, src)], drop_stub=False))
    return docs


# ----------------------------------------------------------------------------- comparing
@dataclass
class Pair:
    a: str               # a student
    b: str               # another student, or flowlib:<name>
    similarity: float    # what the threshold applies to (see the module docstring)
    share_a: float       # share of a's fingerprinted code found in b
    share_b: float       # share of b's fingerprinted code found in a
    slices_a: list[tuple[int, int]] = field(default_factory=list)  # matched spans in a's raw text
    slices_b: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Result:
    assignment: str
    threshold: float
    documents: dict[str, Document]
    pairs: list[Pair]                     # every compared pair, highest similarity first
    skipped: dict[str, str]               # student -> why not compared (unreadable, no code)
    names: list[str]                      # the flowlib objects compared
    baseline: dict[str, float] = field(default_factory=dict)  # flowlib:<name> -> the reference solution's similarity

    def threshold_for(self, other: str) -> float:
        """The threshold a pair with ``other`` must reach: ``threshold`` for a classmate; for
        flowlib:<name>, also REFERENCE_MARGIN above what the reference solution reaches."""
        return max(self.threshold, self.baseline.get(other, -1.0) + REFERENCE_MARGIN)

    @property
    def flagged(self) -> list[Pair]:
        return [p for p in self.pairs if self.threshold > 0 and p.similarity >= self.threshold_for(p.b)]

    @property
    def flags(self) -> dict[str, list[tuple[str, float]]]:
        """student -> [(other party, similarity), ...] at or above the threshold, highest first."""
        out: dict[str, list[tuple[str, float]]] = {}
        for p in self.flagged:
            out.setdefault(p.a, []).append((p.b, p.similarity))
            if not p.b.startswith("flowlib:"):
                out.setdefault(p.b, []).append((p.a, p.similarity))
        return out


def _fingerprint(doc: Document, boilerplate: np.ndarray):
    from copydetect import CodeFingerprint

    return CodeFingerprint(doc.label, K, WINDOW, boilerplate=boilerplate, filter=False, fp=io.StringIO(doc.text))


def _raw_slices(doc: Document, slices) -> list[tuple[int, int]]:
    """copydetect's token slices [start, end) -> character spans of doc.raw."""
    if len(slices) == 0 or len(slices[0]) == 0:
        return []
    out = []
    for start, end in zip(slices[0], slices[1]):
        start, end = int(start), min(int(end), len(doc.spans))
        if end > start:
            out.append((doc.spans[start][0], doc.spans[end - 1][1]))
    return out


def compare(documents: list[Document], references: list[Document], boilerplate: list[Document] = (),
            threshold: float = DEFAULT_THRESHOLD, assignment: str = "") -> Result:
    """Every pair of ``documents`` (students) and every (student, reference) pair.
    ``boilerplate``: code every student was given (fingerprints found there never count)."""
    from copydetect import CodeFingerprint, compare_files

    bp = [CodeFingerprint(d.label, K, 1, filter=False, fp=io.StringIO(d.text)).hashes
          for d in boilerplate if len(d.tokens) >= K]
    bp_hashes = np.unique(np.array([h for hs in bp for h in hs], dtype=np.int64)) if bp else np.array([], dtype=np.int64)
    skipped: dict[str, str] = {}
    prints = {}
    for doc in list(documents) + list(references):
        fp = _fingerprint(doc, bp_hashes) if len(doc.tokens) >= MIN_TOKENS else None
        if fp is None or fp.token_coverage == 0:
            if doc in documents:
                skipped[doc.label] = "no code of the student's own in the solution cells"
            continue
        prints[doc.label] = fp
    students = [d for d in documents if d.label in prints]
    refs = [d for d in references if d.label in prints]
    docs = {d.label: d for d in list(documents) + list(references)}
    pairs: list[Pair] = []

    def pair(x: Document, y: Document, student_pair: bool) -> None:
        _, (sx, sy), (slx, sly) = compare_files(prints[x.label], prints[y.label])
        sx, sy = float(sx), float(sy)
        sim = max(sx, sy) if student_pair else sy
        pairs.append(Pair(x.label, y.label, round(sim, 4), round(sx, 4), round(sy, 4),
                          _raw_slices(x, slx), _raw_slices(y, sly)))

    for x, y in itertools.combinations(students, 2):
        pair(x, y, True)
    for x in students:
        for r in refs:
            pair(x, r, False)
    pairs.sort(key=lambda p: (-p.similarity, p.a, p.b))
    return Result(assignment, threshold, docs, pairs, skipped, [d.label for d in references])


def check(repo: Path, assignment: str, notebooks: dict[str, Path], threshold: float = DEFAULT_THRESHOLD) -> Result:
    """Compare the students' notebooks (student id -> path of the submitted ``.ipynb``)
    of one assignment with each other and with flowlib's graded objects."""
    repo = Path(repo)
    source = _read_json(repo / "solutions" / assignment / f"{assignment}.ipynb")
    if source is None:
        raise FileNotFoundError(f"solutions/{assignment}/{assignment}.ipynb")
    ids = solution_ids(source)
    given = dict(student_cells(source, ids))
    boilerplate = [document(f"release:{gid}", [(gid, release_code(code))]) for gid, code in given.items()]
    release_tokens = {d.label.removeprefix("release:"): d.tokens for d in boilerplate}
    docs: list[Document] = []
    unreadable: dict[str, str] = {}
    for student, path in sorted(notebooks.items()):
        nb = _read_json(path)
        if nb is None:
            unreadable[student] = "the notebook is not valid JSON"
            continue
        docs.append(document(student, student_cells(nb, ids), given=release_tokens))
    names = graded_names(repo, assignment)
    parties = flowlib_documents(names)
    result = compare(docs, parties, boilerplate, threshold, assignment)
    result.skipped.update(unreadable)
    # the reference solution (solutions/, written apart from flowlib) against the same parties
    reference = document("(reference solution)", student_cells(source, ids), given=release_tokens)
    base = compare([reference], parties, boilerplate, threshold, assignment)
    result.baseline = {p.b: p.similarity for p in base.pairs if p.a == reference.label}
    return result


def reason(flags: list[tuple[str, float]]) -> str:
    """grades.csv text for a student's flags."""
    shown = ", ".join(f"{other} ({sim:.2f})" for other, sim in flags[:5])
    more = f" and {len(flags) - 5} more" if len(flags) > 5 else ""
    return f"similar code, for review (score unchanged): {shown}{more}"


# ----------------------------------------------------------------------------- report
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1500px; padding: 0 1em; color: #222; }
table.pairs { border-collapse: collapse; margin: 1em 0; }
table.pairs td, table.pairs th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
tr.flag td { background: #fde8e8; }
details { margin: 0.6em 0; border: 1px solid #ccc; border-radius: 4px; padding: 0.3em 0.6em; }
details.flag { border-color: #c33; }
summary { cursor: pointer; }
.side { display: flex; gap: 1em; }
.side > div { flex: 1; min-width: 0; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 12px; line-height: 1.35; }
mark { background: #ffd27a; }
.muted { color: #666; }
"""


def _highlight(raw: str, slices: list[tuple[int, int]]) -> str:
    out, pos = [], 0
    for start, end in sorted(slices):
        start = max(start, pos)
        if end <= start:
            continue
        out.append(html.escape(raw[pos:start]))
        out.append("<mark>" + html.escape(raw[start:end]) + "</mark>")
        pos = end
    out.append(html.escape(raw[pos:]))
    return "".join(out)


def render_report(result: Result, shown_below: int = 10) -> str:
    """A self-contained HTML page (inline CSS, no script, no external link): every flagged
    pair and the ``shown_below`` most similar pairs under the threshold, highest first,
    each with both parties' code side by side and the matched regions marked. It shows the
    students' solution cells and flowlib's public source only, never the hidden tests."""
    flagged = result.flagged
    below = [p for p in result.pairs if p not in flagged][:shown_below]
    esc = html.escape
    n_students = sum(1 for d in result.documents if not d.startswith("flowlib:"))
    hist = np.histogram([p.similarity for p in result.pairs], bins=10, range=(0, 1))[0] if result.pairs else [0] * 10
    lines = [
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>Similarity: {esc(result.assignment)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Copy detection: {esc(result.assignment)}</h1>",
        f"<p>{n_students} students compared with each other and with flowlib's source of "
        f"{esc(', '.join(result.names) or 'no graded objects')}. Threshold <b>{result.threshold:g}</b>"
        f"{' (off: nothing flagged)' if result.threshold <= 0 else ''}; {len(flagged)} pair(s) at or above it.</p>",
        "<p class='muted'>Similarity of two students: the larger share of either one's code (after removing "
        "comments, docstrings, layout, and with every variable name replaced by one placeholder) that occurs in "
        "runs of at least " f"{K} tokens in the other's. Similarity with <code>flowlib:NAME</code>: the share of "
        "flowlib's source of NAME reproduced in the student's code. Code every student was given (signatures, "
        "docstrings) never counts. A flag asks for a review: the grade is unchanged. Marked regions are the "
        "matched runs.</p>",
        "<p class='muted'>All pairs by similarity (0-0.1, ..., 0.9-1): " + " ".join(str(int(h)) for h in hist) + "</p>",
    ]
    if result.skipped:
        lines.append("<p class='muted'>Not compared: " + "; ".join(
            f"{esc(s)} ({esc(r)})" for s, r in sorted(result.skipped.items())) + "</p>")
    lines.append("<table class='pairs'><tr><th>#</th><th>similarity</th><th>party A</th><th>share of A</th>"
                 "<th>party B</th><th>share of B</th></tr>")
    for i, p in enumerate(flagged + below, 1):
        cls = " class='flag'" if p in flagged else ""
        lines.append(f"<tr{cls}><td><a href='#pair-{i}'>{i}</a></td><td>{p.similarity:.2f}</td><td>{esc(p.a)}</td>"
                     f"<td>{p.share_a:.2f}</td><td>{esc(p.b)}</td><td>{p.share_b:.2f}</td></tr>")
    lines.append("</table>")
    if below:
        lines.append(f"<p class='muted'>Rows without colour: the {len(below)} most similar pairs below the threshold, "
                     "for context.</p>")
    for i, p in enumerate(flagged + below, 1):
        da, db = result.documents[p.a], result.documents[p.b]
        flag = p in flagged
        lines.append(f"<details id='pair-{i}'{' class=flag open' if flag else ''}><summary><b>{i}. {esc(p.a)} &harr; "
                     f"{esc(p.b)}</b>: similarity {p.similarity:.2f}{' (flagged)' if flag else ''}</summary>")
        lines.append("<div class='side'>")
        for doc, sl, share in ((da, p.slices_a, p.share_a), (db, p.slices_b, p.share_b)):
            lines.append(f"<div><h3>{esc(doc.label)} <span class='muted'>({share:.0%} matched)</span></h3>"
                         f"<pre>{_highlight(doc.raw, sl)}</pre></div>")
        lines.append("</div></details>")
    lines.append("</body></html>")
    return "\n".join(lines)


def write_report(result: Result, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render_report(result), encoding="utf-8")
    tmp.replace(path)
    return path
