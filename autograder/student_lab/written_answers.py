"""The lab's Validate button reports a written answer still to write as unanswered, not as a
failed test.

nbgrader's validator lists every graded cell that would score 0. A written answer (a markdown
cell graded by hand) scores 0 only while it is untouched, and nbgrader then says "You did not
provide a response." beside the failing tests. Here such a cell gets its own message: it is
not a test, it is graded by hand after the deadline, and what to do about it. Code cells keep
nbgrader's messages. This extension (loaded by jupyter_server_config.json in this folder) gives
nbgrader's validate handler a Validator subclass that words the error that way.
"""
from __future__ import annotations

from nbgrader import utils
from nbgrader.validator import Validator

UNANSWERED = ("Unanswered written answer (not a failed test): replace YOUR ANSWER HERE with your "
              "answer. Your instructor grades it by hand after the deadline, following the rubric "
              "in the question above it.")


def is_unanswered_written_answer(cell) -> bool:
    """A markdown cell graded by hand whose text is still the released one."""
    if cell.cell_type != "markdown" or not (utils.is_grade(cell) and utils.is_solution(cell)):
        return False
    score, _ = utils.determine_grade(cell)
    return score == 0


class WrittenAnswersValidator(Validator):
    """nbgrader's Validator, with the unanswered message for written answers."""

    def _extract_error(self, cell) -> str:
        if is_unanswered_written_answer(cell):
            return UNANSWERED
        return super()._extract_error(cell)


def _jupyter_server_extension_points():
    return [{"module": "written_answers"}]


def _load_jupyter_server_extension(serverapp) -> None:
    from nbgrader.server_extensions.validate_assignment import handlers

    handlers.Validator = WrittenAnswersValidator  # the handler builds `Validator(config=...)` per request
