"""Copy detection (issue 19 item 2, autograder/similarity.py).

Fast tests: the tokeniser hides renaming, comments, docstrings and layout but keeps the
library calls; on assignment 01, three copies (the reference, a renamed copy of it, one
pasted from flowlib) are flagged and three independently written solutions are not
(tests/similarity_fixtures.py), with the scores printed. One slow test runs the real
grade.py on those six students and checks grades.csv and the HTML report.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import similarity_fixtures as fx
from conftest import REPO

sys.path.insert(0, str(REPO / "autograder"))
import similarity  # noqa: E402

ASG = fx.ASG


def _tokens(code: str) -> list[str]:
    return similarity.normalise(code)[0]


# ----------------------------------------------------------------------------- the tokeniser
def test_renaming_comments_docstrings_and_layout_are_invisible():
    original = '''
def f(x, scale):
    """Docstring."""
    z = torch.log_softmax(x, dim=-1)   # a comment
    return z * scale + 0.5
'''
    disguised = '''
def g(inp,
      s):
    \'\'\'A different
    docstring.\'\'\'
    # new comment
    out = torch.log_softmax(inp,
                            dim = -1)
    return out*s + .5
'''
    assert _tokens(original) == _tokens(disguised)
    assert "V" in _tokens(original) and ".log_softmax" in _tokens(original) and "dim=" in _tokens(original)


def test_library_calls_and_structure_are_kept():
    assert _tokens("y = torch.logsumexp(x, dim=-1)") != _tokens("y = torch.log_softmax(x, dim=-1)")
    assert _tokens("for i in range(n):\n    x = x + 1\n") != _tokens("while n:\n    x = x + 1\n")
    assert _tokens("x = len(y)") != _tokens("x = foo(y)")  # builtins are not placeholders
    assert _tokens("s = 'abc'") == _tokens('s = "another message"')


def test_stub_magics_and_broken_code():
    assert _tokens("# YOUR CODE HERE\nraise NotImplementedError()\n") == []
    assert _tokens("%timeit f(x)\n!pip install torch\ny = 1\n") == _tokens("y = 1\n")
    assert _tokens("y = f(x)\nz = 'unterminated\n")[:6] == _tokens("y = f(x)\n")[:6]  # what parsed is kept
    spans = similarity.normalise("ab = cd + 1")[1]
    assert spans[0] == (0, 2) and spans[2] == (5, 7)


def test_graded_names_come_from_the_stub_list():
    names = similarity.graded_names(REPO, ASG)
    assert "flowlib.flows.onedim.mixture_cdf" in names and "flowlib.flows.onedim.bisection_inverse" in names
    docs = similarity.flowlib_documents(names)
    assert "flowlib:flows.onedim.mixture_cdf" in {d.label for d in docs}
    assert all(len(d.tokens) > 0 for d in docs)


# ----------------------------------------------------------------------------- calibration
@pytest.fixture(scope="module")
def result(tmp_path_factory):
    folder = tmp_path_factory.mktemp("subs")
    notebooks = {}
    for student in fx.STUDENTS:
        notebooks[student] = folder / f"{student}.ipynb"
        notebooks[student].write_text(json.dumps(fx.notebook(student)))
    notebooks["untouched"] = REPO / "notebooks" / ASG / f"{ASG}.ipynb"
    res = similarity.check(REPO, ASG, notebooks, similarity.DEFAULT_THRESHOLD)
    print("\nsimilarity of every pair above 0.05 (threshold %.2f):" % res.threshold)
    for p in res.pairs:
        if p.similarity > 0.05:
            print(f"  {p.similarity:.2f}  {p.a:6} {p.b:34} (shares {p.share_a:.2f} / {p.share_b:.2f})")
    return res


def _best(res, student: str, others=None) -> tuple[float, str]:
    cands = [(p.similarity, p.b if p.a == student else p.a) for p in res.pairs
             if student in (p.a, p.b) and (others is None or ({p.a, p.b} - {student}) <= set(others))]
    return max(cands, default=(0.0, ""))


def test_the_copies_are_flagged(result):
    flags = result.flags
    assert {"alice", "bob", "carol"} <= set(flags), flags
    assert ("bob", ) == tuple(o for o, _ in flags["alice"] if not o.startswith("flowlib:"))
    assert "alice" in [o for o, _ in flags["bob"]]
    carol = {o for o, _ in flags["carol"]}
    assert {"flowlib:flows.onedim.mixture_cdf", "flowlib:flows.onedim.bisection_inverse"} <= carol, flags["carol"]
    assert _best(result, "bob", ["alice"])[0] >= 0.95  # renaming and comments hide nothing


def test_the_honest_solutions_are_not_flagged(result):
    flags = result.flags
    for student in fx.HONEST:
        assert student not in flags, f"{student} flagged: {flags[student]}"
        best, other = _best(result, student)
        # a margin: an honest solution stays well under the threshold
        assert best < result.threshold - 0.2, f"{student} reaches {best:.2f} with {other}"


def test_an_untouched_release_is_not_compared(result):
    assert "untouched" in result.skipped
    assert all("untouched" not in (p.a, p.b) for p in result.pairs)


def test_detection_off_flags_nothing(result):
    result.threshold, kept = 0.0, result.threshold
    try:
        assert result.flags == {} and result.flagged == []
    finally:
        result.threshold = kept


def test_report_is_self_contained_and_shows_no_hidden_tests(result, tmp_path):
    page = similarity.write_report(result, tmp_path / "r.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:|//)""", page), "the report loads something from outside"
    assert "<script" not in page and "<link" not in page
    hidden = (REPO / "solutions" / ASG / "hidden_tests.py").read_text()
    for line in hidden.splitlines():
        if len(line.strip()) > 30:
            assert line.strip() not in page, f"the report shows a line of hidden_tests.py: {line.strip()}"
    assert "<mark>" in page
    order = [float(x) for x in re.findall(r"<tr(?: class='flag')?><td><a href='#pair-\d+'>\d+</a></td><td>([0-9.]+)</td>", page)]
    assert order == sorted(order, reverse=True) and order[0] == 1.0


# ----------------------------------------------------------------------------- through grade.py
@pytest.mark.slow
def test_grade_py_flags_copies_and_keeps_scores(course_copy, tmp_path):
    subs = tmp_path / "export"
    for student in fx.STUDENTS:
        (subs / student).mkdir(parents=True)
        (subs / student / f"{ASG}.ipynb").write_text(json.dumps(fx.notebook(student)))
    (subs / "nobody").mkdir()  # missing stays missing
    (subs / "broken").mkdir()  # a notebook nbgrader cannot read: failed stays failed
    (subs / "broken" / f"{ASG}.ipynb").write_text("{ not json")
    proc = subprocess.run([sys.executable, str(course_copy / "autograder" / "grade.py"), str(subs),
                           "--assignment", ASG, "--no-sandbox", "--similarity", "0.6"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    course = course_copy / "autograder" / "course"
    with (course / "grades.csv").open() as fh:
        rows = {r["student"]: r for r in csv.DictReader(fh)}
    for student in ("alice", "bob", "carol"):
        row = rows[student]
        assert row["status"] == "flagged" and "similar code" in row["reason"], row
        assert float(row["auto_score"]) > 0, f"{student}: a flag must not change the score: {row}"
    assert "bob (1.00)" in rows["alice"]["reason"] and "alice (1.00)" in rows["bob"]["reason"]
    assert "flowlib:flows.onedim.mixture_cdf (0." in rows["carol"]["reason"]
    assert float(rows["alice"]["auto_score"]) == float(rows["alice"]["auto_max"])  # the reference keeps full marks
    for student in fx.HONEST:
        row = rows[student]
        print(f"{student}: {row['status']} {row['auto_score']}/{row['auto_max']} {row['reason']}")
        assert "similar code" not in row["reason"], row
        # nor by the tampering scan (torch.stack, self.x = ... in an nn.Module are ordinary code)
        assert row["status"] == "graded" and row["reason"] == "", row
        assert fx.covered_tests(), "the fixtures cover no graded test cell"
        for test in fx.covered_tests():  # the exercises the fixtures write, all passed
            assert float(row[test]) > 0, (test, row)
    assert rows["nobody"]["status"] == "missing" and rows["broken"]["status"] == "failed"
    page = (course / "similarity" / f"{ASG}.html").read_text()
    assert "alice" in page and "flowlib:flows.onedim.bisection_inverse" in page and "<mark>" in page
    assert "BEGIN HIDDEN TESTS" not in page and "def test_" not in page

    # a re-submission later: compared with the classmates graded before; the classmate's
    # row of the earlier run is flagged too, with its score unchanged
    late = tmp_path / "late"
    (late / "dan").mkdir(parents=True)
    (late / "dan" / f"{ASG}.ipynb").write_text(json.dumps(fx.notebook("hana")))
    proc = subprocess.run([sys.executable, str(course_copy / "autograder" / "grade.py"), str(late),
                           "--assignment", ASG, "--no-sandbox"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with (course / "grades.csv").open() as fh:
        rows2 = {r["student"]: r for r in csv.DictReader(fh)}
    assert rows2["dan"]["status"] == "flagged" and "hana (1.00)" in rows2["dan"]["reason"]
    assert rows2["hana"]["status"] == "flagged" and "dan (1.00)" in rows2["hana"]["reason"]
    assert rows2["hana"]["auto_score"] == rows["hana"]["auto_score"]
    assert rows2["alice"]["reason"].count("similar code") == 1
