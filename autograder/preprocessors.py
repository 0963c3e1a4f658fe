"""nbgrader preprocessors that make autograding safe for a real class.

Wired in by ``nbgrader_config.py``:

* :class:`StderrAsStdout` (autograde): nbgrader gives 0 to a test cell with *any* stderr
  output, so a correct solution that merely prints a warning would lose the cell. Our
  tests fail by raising, which nbgrader records as an ``error`` output and still scores 0;
  stderr text is therefore kept, but as stdout.
* :class:`TruncateOutputs` (autograde): caps the text of every output, so a cell that
  prints 50 MB does not produce a 50 MB graded notebook and feedback page.
  (nbgrader's own LimitOutput limits the number of lines, not their length.)
* :class:`HideHiddenTests` (feedback): removes the hidden-test region from each test
  cell's source and shortens each error to its message, so feedback tells the student
  which check failed and why without publishing the hidden tests.
"""
from __future__ import annotations

import re

from nbgrader.preprocessors import NbGraderPreprocessor
from nbgrader.preprocessors.clearhiddentests import ClearHiddenTests
from traitlets import Integer

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class StderrAsStdout(NbGraderPreprocessor):
    def preprocess_cell(self, cell, resources, index):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                out["name"] = "stdout"
        return cell, resources


class TruncateOutputs(NbGraderPreprocessor):
    max_chars = Integer(20_000, help="Largest text kept from one output").tag(config=True)

    def _cut(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        return text[: self.max_chars] + f"\n[... output truncated by the grader: {len(text):,} characters in all]\n"

    def preprocess_cell(self, cell, resources, index):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text = out.get("text", "")
                out["text"] = self._cut(text if isinstance(text, str) else "".join(text))
            for mime, value in list(out.get("data", {}).items()):
                if mime.startswith("text/") and isinstance(value, str):
                    out["data"][mime] = self._cut(value)
            if out.get("output_type") == "error":
                out["evalue"] = self._cut(out.get("evalue", ""))
                out["traceback"] = [self._cut(line) for line in out.get("traceback", [])[-50:]]
        return cell, resources


class HideHiddenTests(ClearHiddenTests):
    """ClearHiddenTests for feedback: strip hidden sources and the tracebacks that would
    quote them, keep the error type and message."""

    def preprocess_cell(self, cell, resources, index):
        cell, resources = super().preprocess_cell(cell, resources, index)
        grade = cell.get("metadata", {}).get("nbgrader", {}).get("grade")
        if cell.get("cell_type") == "code" and grade:
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    message = _ANSI.sub("", f"{out.get('ename', 'Error')}: {out.get('evalue', '')}")
                    out["traceback"] = [message]
        return cell, resources
