"""Due dates, extensions and the late policy (autograder/deadlines.py)."""
from __future__ import annotations

import datetime as dt
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "autograder"))
import deadlines  # noqa: E402

UTC = dt.timezone.utc
TERM = '''
[late_policy]
method = "per_day"
penalty = 0.1
max_penalty = 0.5
grace_minutes = 5

[due]
"asg" = "2027-02-01T23:59:00+01:00"

[extensions.asg]
alice = "48h"
'''


def _term(tmp_path, text=TERM):
    path = tmp_path / "term.toml"
    path.write_text(text)
    return deadlines.load(path)


def test_lateness_grace_extension_and_penalties(tmp_path):
    term = _term(tmp_path)
    due = dt.datetime(2027, 2, 1, 22, 59, tzinfo=UTC)  # 23:59 at +01:00
    assert term.lateness("asg", "bob", due + dt.timedelta(minutes=4)) == 0  # within the grace period
    late = term.lateness("asg", "bob", due + dt.timedelta(hours=25))
    assert late == 25 * 3600
    assert term.penalty_for("bob", 18.0, 20.0, late) == pytest.approx(0.2 * 20)  # two started days, 10% each
    assert term.penalty_for("bob", 18.0, 20.0, 30 * 86400) == pytest.approx(0.5 * 20)  # capped at max_penalty
    assert term.lateness("asg", "alice", due + dt.timedelta(hours=25)) == 0  # her 48 h extension
    assert term.lateness("other", "bob", due + dt.timedelta(days=9)) == 0  # no due date: never late
    assert isinstance(deadlines.TermLatePolicy(), deadlines.LateSubmissionPlugin)
    hourly = deadlines.Term(method="per_hour", penalty=0.01)
    assert hourly.penalty_for("x", 10.0, 10.0, 3601) == pytest.approx(0.2)  # two started hours
    zero = deadlines.Term(method="zero")
    assert zero.penalty_for("x", 7.0, 10.0, 1) == 7.0 and zero.penalty_for("x", 7.0, 10.0, 0) == 0.0


@pytest.mark.parametrize("text, match", [
    ('[late_policy]\nmethod = "weekly"\n', "method"),
    ('[late_policy]\npenalty = 2\n', "shares"),
    ('[due]\nasg = "2027-02-01T23:59:00"\n', "time zone"),
    ('[due]\nasg = "2027-02-01T23:59:00Z"\n[extensions.asg]\nbob = "two days"\n', "48h"),
    ('[extensions.nope]\nbob = "1d"\n', "without a due date"),
])
def test_bad_terms_are_refused_with_the_entry(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        _term(tmp_path, text)


def test_no_file_means_no_deadlines(tmp_path):
    term = deadlines.load(tmp_path / "absent.toml")
    assert term.lateness("asg", "bob", dt.datetime(2100, 1, 1, tzinfo=UTC)) == 0


def test_timestamp_as_grade_py_writes_it(tmp_path):
    (tmp_path / "timestamp.txt").write_text("2027-02-02 10:00:00.123456 UTC")
    assert deadlines.read_timestamp(tmp_path / "timestamp.txt") == dt.datetime(2027, 2, 2, 10, 0, 0, 123456, tzinfo=UTC)
    assert deadlines.read_timestamp(tmp_path / "missing.txt") is None
