"""nbgrader configuration for the course (nbgrader >= 0.9.6).

Run nbgrader from this folder (the Makefile and ``autograder/grade.py`` do). The course
root is the repository: ``solutions/`` is nbgrader's source directory and ``notebooks/``
its release directory; everything a class produces (submissions, autograded copies,
feedback, the gradebook) lives under ``autograder/course/``, which git ignores.
"""
import os
import secrets
import sys

c = get_config()  # noqa: F821 - provided by traitlets when it loads this file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COURSE = os.path.join("autograder", "course")

os.makedirs(os.path.join(REPO, COURSE), exist_ok=True)  # the gradebook's folder must exist

c.CourseDirectory.root = REPO
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.submitted_directory = os.path.join(COURSE, "submitted")
c.CourseDirectory.autograded_directory = os.path.join(COURSE, "autograded")
c.CourseDirectory.feedback_directory = os.path.join(COURSE, "feedback")
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(REPO, COURSE, "gradebook.db")
c.CourseDirectory.course_id = "flows-and-scores"
# The nbgrader exchange (make release PUBLISH=1, make collect, make feedback): a local folder by
# default, a JupyterHub's shared exchange with EXCHANGE=/srv/nbgrader/exchange (FLOWLIB_EXCHANGE).
c.Exchange.root = os.environ.get("FLOWLIB_EXCHANGE") or os.path.join(REPO, COURSE, "exchange")
# Grader-side hidden tests (autograder/verdicts.py) live beside the source notebook and must
# never be copied into a release, a submission or feedback.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "hidden_tests.py"]

# Per-cell limit: a student's infinite loop costs this much, then grading goes on.
c.Execute.timeout = int(os.environ.get("FLOWLIB_CELL_TIMEOUT", "120"))
c.Execute.interrupt_on_timeout = True
# nbclient skips cells tagged `skip-execution` by default: a student could add that tag to a
# test cell and keep its points. Use a tag nobody can guess (new on every run).
c.Execute.skip_cells_with_tag = "never-skip-" + secrets.token_hex(16)

# The release keeps the visible tests and drops hidden ones; student work starts empty.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearHiddenTests.begin_test_delimeter = "BEGIN HIDDEN TESTS"
c.ClearHiddenTests.end_test_delimeter = "END HIDDEN TESTS"

# Safety nets (autograder/preprocessors.py): stderr from a correct solution must not zero a
# test cell, huge outputs are cut, and feedback shows each failed check's message but not
# the hidden tests' source.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import (  # noqa: E402
    AssignLatePenalties,
    CheckCellMetadata,
    Execute,
    GetGrades,
    IgnorePattern,
    LimitOutput,
    SaveAutoGrades,
)
from preprocessors import HideHiddenTests, StderrAsStdout, TruncateOutputs  # noqa: E402

c.Autograde.autograde_preprocessors = [
    Execute,
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    TruncateOutputs,
    StderrAsStdout,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]
