"""Due dates, extensions and the late policy of a term, from ``autograder/term.toml``.

    [late_policy]
    method = "per_day"          # none | zero | per_hour | per_day
    penalty = 0.10              # per_hour / per_day: this share of the maximum score per started unit late
    max_penalty = 1.0           # never more than this share of the maximum score
    grace_minutes = 5           # a submission this close after the due time is on time

    [due]                       # ISO 8601 with a time zone
    "01-change-of-variables" = "2027-02-01T23:59:00+01:00"

    [extensions."01-change-of-variables"]
    alice = "48h"               # h or d: alice's own due time is 48 hours later

The policy is an nbgrader late-submission plugin (:class:`TermLatePolicy`, a subclass of
nbgrader's ``LateSubmissionPlugin`` with per-hour and per-day penalties), applied by grade.py
after the grader's verdicts to the submission's time (``timestamp.txt``: the file's time in
the export, the LMS's upload time for a download). grades.csv shows ``submitted_at``,
``late_hours`` and ``late_penalty``; the final score is the total minus the penalty, never
below 0. Without the file nothing is late.
"""
from __future__ import annotations

import datetime as dt
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.plugins.latesubmission import LateSubmissionPlugin
from traitlets import Enum, Float

HERE = Path(__file__).resolve().parent
TERM = HERE / "term.toml"


class TermLatePolicy(LateSubmissionPlugin):
    """nbgrader's late-submission plugin with two more methods: ``per_hour`` and ``per_day``
    take ``penalty`` of the maximum score per started hour (day) late, up to ``max_penalty``."""

    penalty_method = Enum(("none", "zero", "per_hour", "per_day"), default_value="none").tag(config=True)
    penalty = Float(0.0).tag(config=True)
    max_penalty = Float(1.0).tag(config=True)
    max_score = Float(0.0)

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float):
        if total_seconds_late <= 0 or self.penalty_method == "none":
            return None
        if self.penalty_method == "zero":
            return score
        unit = 3600.0 if self.penalty_method == "per_hour" else 86400.0
        share = min(self.max_penalty, self.penalty * math.ceil(total_seconds_late / unit))
        return min(score, share * self.max_score)


@dataclass
class Term:
    method: str = "none"
    penalty: float = 0.0
    max_penalty: float = 1.0
    grace: dt.timedelta = dt.timedelta(0)
    due: dict[str, dt.datetime] = field(default_factory=dict)
    extensions: dict[str, dict[str, dt.timedelta]] = field(default_factory=dict)

    def due_for(self, assignment: str, student: str) -> dt.datetime | None:
        when = self.due.get(assignment)
        if when is None:
            return None
        return when + self.extensions.get(assignment, {}).get(student, dt.timedelta(0))

    def lateness(self, assignment: str, student: str, submitted: dt.datetime | None) -> float:
        """Seconds late (0 when on time, within the grace period, or without a due date)."""
        due = self.due_for(assignment, student)
        if due is None or submitted is None:
            return 0.0
        late = (submitted - due).total_seconds()
        return late if late > self.grace.total_seconds() else 0.0

    def penalty_for(self, student: str, score: float, max_score: float, seconds_late: float) -> float:
        plugin = TermLatePolicy(penalty_method=self.method, penalty=self.penalty, max_penalty=self.max_penalty,
                                max_score=max_score)
        value = plugin.late_submission_penalty(student, score, seconds_late)
        return float(value or 0.0)


def _duration(text: str, where: str) -> dt.timedelta:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([hd])\s*", str(text))
    if not m:
        raise ValueError(f"{where}: an extension is a number of hours or days such as '48h' or '2d', got {text!r}")
    return dt.timedelta(hours=float(m.group(1)) * (24 if m.group(2) == "d" else 1))


def load(path: Path = TERM) -> Term:
    """The term's deadlines; an absent file means no deadlines. Bad entries raise ValueError
    naming the entry (grading must not start on a misread policy)."""
    if not path.is_file():
        return Term()
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    policy = data.get("late_policy", {})
    method = policy.get("method", "none")
    if method not in ("none", "zero", "per_hour", "per_day"):
        raise ValueError(f"{path}: late_policy.method must be none, zero, per_hour or per_day, got {method!r}")
    penalty, cap = float(policy.get("penalty", 0.0)), float(policy.get("max_penalty", 1.0))
    if not (0 <= penalty <= 1 and 0 <= cap <= 1):
        raise ValueError(f"{path}: late_policy.penalty and max_penalty are shares of the maximum score in [0, 1]")
    due = {}
    for asg, when in data.get("due", {}).items():
        value = when if isinstance(when, dt.datetime) else dt.datetime.fromisoformat(str(when))
        if value.tzinfo is None:
            raise ValueError(f"{path}: the due date of {asg} needs a time zone (e.g. 2027-02-01T23:59:00+01:00)")
        due[asg] = value
    extensions = {asg: {student: _duration(v, f"{path}: extensions.{asg}.{student}") for student, v in table.items()}
                  for asg, table in data.get("extensions", {}).items()}
    unknown = sorted(set(extensions) - set(due))
    if unknown:
        raise ValueError(f"{path}: extensions for assignments without a due date: {', '.join(unknown)}")
    return Term(method, penalty, cap, dt.timedelta(minutes=float(policy.get("grace_minutes", 0))), due, extensions)


def read_timestamp(path: Path) -> dt.datetime | None:
    """nbgrader's ``timestamp.txt`` (as grade.py writes it: ``%Y-%m-%d %H:%M:%S.%f UTC``)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S.%f %Z", "%Y-%m-%d %H:%M:%S %Z"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            continue
    return None
