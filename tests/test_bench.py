"""`make bench QUICK=1` runs every section and writes a well-formed report (no timing checks:
the numbers depend on the machine; only their presence and form are tested)."""
from __future__ import annotations

import datetime as dt
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from bench_common import markdown  # noqa: E402


def parse_report(text: str) -> tuple[list[str], dict[str, list[dict[str, str]]]]:
    """Header lines and, per '## ' section, its table as a list of {column: cell}."""
    head, *chunks = re.split(r"^## ", text, flags=re.M)
    sections = {}
    for chunk in chunks:
        title, _, body = chunk.partition("\n")
        table = [line for line in body.splitlines() if line.startswith("|")]
        assert len(table) >= 3, f"section {title!r} has no table rows"
        cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table]
        cols, rule, rows = cells[0], cells[1], cells[2:]
        assert all(set(c) <= set("-:") and c for c in rule), f"{title!r}: bad separator line {table[1]!r}"
        for row in rows:
            assert len(row) == len(cols), f"{title!r}: row {row} does not have the {len(cols)} columns {cols}"
        sections[title] = [dict(zip(cols, row)) for row in rows]
    return head.splitlines(), sections


def number(cell: str) -> float:
    value = float(cell.replace(",", ""))
    assert math.isfinite(value), cell
    return value


def find(sections: dict, prefix: str) -> list[dict[str, str]]:
    hits = [rows for title, rows in sections.items() if title.startswith(prefix)]
    assert len(hits) == 1, f"expected one section starting with {prefix!r}, found titles {list(sections)}"
    return hits[0]


def test_markdown_rejects_a_ragged_row():
    with pytest.raises(ValueError, match="columns"):
        markdown({"title": "t", "columns": ["a", "b"], "rows": [["1"]]})


def test_parse_report_catches_a_broken_table():
    with pytest.raises(AssertionError, match="columns"):
        parse_report("# x\n\n## s\n\n| a | b |\n|---|---|\n| 1 |\n")


@pytest.mark.slow
def test_make_bench_quick_writes_a_well_formed_report(tmp_path):
    out = tmp_path / "results.md"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    header, sections = parse_report(out.read_text())
    fields = dict(line[2:].split(": ", 1) for line in header if line.startswith("- ") and ": " in line)

    assert fields["mode"].startswith("QUICK")
    dt.datetime.fromisoformat(fields["date"])
    assert int(fields["cores"]) == os.cpu_count()
    for pkg in ("python", "torch", "zuko", "flowlib"):
        assert re.search(rf"\b{pkg} \d", fields["versions"]), (pkg, fields["versions"])

    import ring_kl

    kl = find(sections, "Ring of 8 Gaussians: KL(p || q) after a fixed wall-clock budget")
    assert [r["model"] for r in kl] == list(ring_kl.MODELS)
    # the same models for a fixed number of steps each (run.py's quick budget: 20), whatever the load
    per_step = find(sections, "Ring of 8 Gaussians: KL(p || q) after a fixed number of steps")
    assert [r["model"] for r in per_step] == list(ring_kl.MODELS)
    assert all(number(r["steps"]) == 20 for r in per_step if not r["KL (nats)"].startswith("diverged")), per_step
    for r in kl:
        assert number(r["steps"]) >= 1 and number(r["seconds"]) > 0 and number(r["steps/s"]) > 0
        if not r["KL (nats)"].startswith("diverged: loss became"):  # a diverging setting is reported, with its step
            assert number(r["KL (nats)"]) > -0.1 and number(r["s.e."]) >= 0  # KL >= 0 up to Monte Carlo error
    assert any(r["setting"] == "matched" for r in kl) and any(r["setting"].startswith("tuned") for r in kl)

    tp = find(sections, "Throughput")
    assert {(r["flow"], r["D"], r["op"]) for r in tp} == {
        (f, d, op) for f in ("MAF", "RealNVP") for d in ("2", "8") for op in ("log_prob", "sample")}
    for r in tp:
        for col in ("flowlib (ms)", "zuko (ms)", "ratio flowlib/zuko", "ratio of fastest"):
            assert number(r[col]) > 0, (col, r)

    ode = find(sections, "Probability-flow ODE")
    assert {r["solver"] for r in ode} == {"rk4", "rk45"} and {r["SDE"] for r in ode} == {"VP", "VE (sigma_max 10)"}
    for r in ode:
        assert number(r["NFE"]) >= 1
        for col in ("solver error (nats)", "end to end (nats)", "seconds"):
            assert number(r[col]) >= 0

    costs = find(sections, "Course costs")
    graded = [r for r in costs if r["task"] == "autograde reference solution"]
    assert graded, costs
    for r in graded:
        assert number(r["seconds"]) > 0
        score, max_score = re.fullmatch(r"([\d.]+)/([\d.]+) \(graded\)", r["result"]).groups()
        assert float(score) == float(max_score) > 0, r
