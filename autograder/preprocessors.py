"""nbgrader preprocessors that make autograding safe for a real class.

Wired in by ``nbgrader_config.py``:

* :class:`StderrAsStdout` (autograde): nbgrader gives 0 to a test cell with *any* stderr
  output, so a correct solution that merely prints a warning would lose the cell. Our
  tests fail by raising, which nbgrader records as an ``error`` output and still scores 0;
  stderr text is therefore kept, but as stdout.
* :class:`TruncateOutputs` (autograde): caps every output, of any MIME type (text cut to
  20,000 characters; an image or other representation over 1 MB dropped) and the whole
  notebook's outputs (2 MB), leaving a note where something was removed, so a cell that
  prints 50 MB or shows a 30 MB image does not produce a huge graded notebook and feedback
  page. (nbgrader's own LimitOutput limits the number of lines, not their size.)
* :class:`HideHiddenTests` (feedback): removes the hidden-test region from each test
  cell's source and shortens each error to its message, so feedback tells the student
  which check failed and why without publishing the hidden tests.
"""
from __future__ import annotations

import json
import re

import nbformat

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
    """Cap what a notebook's outputs may weigh, whatever their type: the text of an output
    is cut to ``max_chars``; any other representation (an image, HTML, JSON, ...) larger than
    ``max_output_bytes`` is dropped; once the outputs of the notebook reach
    ``max_notebook_bytes`` in all, later outputs are dropped. What is dropped is replaced by
    a short text note, which the student sees in the feedback."""

    max_chars = Integer(20_000, help="Largest text kept from one output").tag(config=True)
    max_output_bytes = Integer(1_000_000, help="Largest representation kept in one output").tag(config=True)
    max_notebook_bytes = Integer(2_000_000, help="Largest total of all outputs of a notebook").tag(config=True)

    def preprocess(self, nb, resources):
        self._total = 0
        return super().preprocess(nb, resources)

    def _cut(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        return text[: self.max_chars] + f"\n[... output truncated by the grader: {len(text):,} characters in all]\n"

    @staticmethod
    def _size(value) -> int:
        if isinstance(value, str):
            return len(value)
        if isinstance(value, list):
            return sum(len(v) for v in value if isinstance(v, str))
        return len(json.dumps(value))

    def _cap_output(self, out) -> None:
        if out.get("output_type") == "stream":
            text = out.get("text", "")
            out["text"] = self._cut(text if isinstance(text, str) else "".join(text))
        data = out.get("data", {})
        dropped = []
        for mime, value in list(data.items()):
            if mime.startswith("text/") and isinstance(value, str):
                data[mime] = value = self._cut(value)
            size = self._size(value)
            if size > self.max_output_bytes:
                del data[mime]
                dropped.append(f"{mime} output of {size:,} bytes")
        if dropped:
            note = (f"[{', '.join(dropped)} removed by the grader: each output is capped at "
                    f"{self.max_output_bytes:,} bytes]")
            plain = data.get("text/plain", "")
            data["text/plain"] = (plain if isinstance(plain, str) else "".join(plain)) + ("\n" if plain else "") + note
        if out.get("output_type") == "error":
            out["evalue"] = self._cut(out.get("evalue", ""))
            out["traceback"] = [self._cut(line) for line in out.get("traceback", [])[-50:]]

    def preprocess_cell(self, cell, resources, index):
        outputs = cell.get("outputs", [])
        for i, out in enumerate(outputs):
            self._cap_output(out)
            size = len(json.dumps(out))
            if self._total + size > self.max_notebook_bytes and out.get("output_type") != "error":
                # keep errors (they are what a failed test cell shows); they are small once cut
                note = (f"[output of {size:,} bytes removed by the grader: the outputs of a notebook are "
                        f"capped at {self.max_notebook_bytes:,} bytes in all]\n")
                outputs[i] = nbformat.v4.new_output("stream", name="stdout", text=note)
                size = len(note)
            self._total += size
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
