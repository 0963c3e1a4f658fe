"""Progress of a grading run: done/total, rate and time left, and a summary at the end.

On a terminal it is a tqdm bar (one line, redrawn); otherwise (a log file, CI, a pipe) one
plain line per student, ``[k/N] student assignment: status score (s; rate, ETA)``, so that a
log of a long run says where it is and how long the rest will take.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import Counter


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    def __init__(self, total: int, interactive: bool | None = None, stream=None):
        self.total, self.done, self.start = total, 0, time.monotonic()
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.statuses: Counter = Counter()
        self.graded_seconds: list[float] = []
        self.bar = None
        self._lock = threading.Lock()  # students finish in worker threads (WORKERS > 1)
        if self.interactive:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="student", file=self.stream, dynamic_ncols=True)

    def update(self, student: str, assignment: str, status: str, score: str = "", seconds: float | None = None) -> None:
        """One (student, assignment) finished: ``seconds`` is its grading time (None for an
        entry that was not graded: missing, refused)."""
        with self._lock:
            self._update(student, assignment, status, score, seconds)

    def _update(self, student: str, assignment: str, status: str, score: str, seconds: float | None) -> None:
        self.done += 1
        self.statuses[status] += 1
        if seconds is not None:
            self.graded_seconds.append(seconds)
        if self.bar is not None:
            self.bar.set_postfix_str(f"{student}: {status} {score}".strip(), refresh=False)
            self.bar.update(1)
            return
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        took = f"{seconds:.1f} s; " if seconds is not None else ""
        print(f"[{self.done}/{self.total}] {student} {assignment}: {status} {score} "
              f"({took}{rate * 60:.1f} students/min, ETA {_clock(left)})".replace("  ", " "), file=self.stream, flush=True)

    def close(self) -> str:
        """Close the bar; returns the summary line."""
        if self.bar is not None:
            self.bar.close()
        wall = time.monotonic() - self.start
        counts = ", ".join(f"{self.statuses.get(k, 0)} {k}" for k in ("graded", "flagged", "failed", "missing"))
        per = (f"{sum(self.graded_seconds) / len(self.graded_seconds):.1f} s per student graded, "
               if self.graded_seconds else "")
        return f"{self.done} of {self.total} done in {_clock(wall)}: {counts}; {per}{wall / max(self.done, 1):.1f} s per entry overall"
