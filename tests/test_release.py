"""Student notebooks: generated from solutions/ by nbgrader, in sync, and well formed."""
import pytest

from conftest import REPO
from course import assignments, grade_meta, release_notebook, run_nbgrader, source_notebook

ASSIGNMENTS = assignments()


def test_there_are_assignments():
    assert ASSIGNMENTS, "solutions/ holds no assignment (solutions/<asg>/<asg>.ipynb)"


@pytest.mark.parametrize("asg", ASSIGNMENTS)
def test_release_is_in_sync_with_solutions(asg, course_copy, tmp_path):
    """notebooks/ must equal what `make release` would generate now."""
    out = tmp_path / "release"
    run_nbgrader(course_copy, "generate_assignment", asg, "--force",
                 f"--CourseDirectory.release_directory={out}",
                 f"--CourseDirectory.db_url=sqlite:///{tmp_path / 'gb.db'}")
    import nbformat

    fresh = nbformat.read(out / asg / f"{asg}.ipynb", as_version=4)
    committed = release_notebook(asg)
    assert len(fresh.cells) == len(committed.cells), "run `make release` and commit notebooks/"
    for i, (a, b) in enumerate(zip(fresh.cells, committed.cells)):
        assert (a.cell_type, a.source, a.metadata) == (b.cell_type, b.source, b.metadata), (
            f"{asg} cell {i} differs from a fresh `make release`: run it and commit notebooks/"
        )


@pytest.mark.parametrize("asg", ASSIGNMENTS)
def test_source_notebook_structure(asg):
    nb = source_notebook(asg)
    ids = [grade_meta(c)["grade_id"] for c in nb.cells if grade_meta(c)]
    assert len(ids) == len(set(ids)), f"duplicate grade_id in {asg}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    setup = grade_meta(code[0])
    assert setup.get("locked") and not setup.get("grade") and not setup.get("solution"), "first code cell must be the locked setup"
    assert "warnings.filterwarnings" in code[0].source, "the setup cell must silence warnings (stderr zeroes a test cell)"
    assert "FLOWLIB_SEED" in code[0].source, "the setup cell must seed torch from FLOWLIB_SEED (the seed test varies it)"
    assert all(not c.get("outputs") for c in code), "commit the source notebook without outputs"
    tests = [c for c in code if grade_meta(c).get("grade")]
    solutions = [c for c in code if grade_meta(c).get("solution")]
    assert len(tests) >= 4 and len(solutions) >= 4, "at least four graded exercises"
    hidden_file = REPO / "solutions" / asg / "hidden_tests.py"
    for c in tests:
        if hidden_file.is_file():
            # grader-side hidden tests (autograder/verdicts.py): the notebook keeps only visible tests
            assert "### BEGIN HIDDEN TESTS" not in c.source, (
                f"{grade_meta(c)['grade_id']}: hidden tests live in hidden_tests.py, not in the notebook")
            assert c.source.strip(), f"test cell {grade_meta(c)['grade_id']} has no visible test"
            continue
        assert "### BEGIN HIDDEN TESTS" in c.source, f"test cell {grade_meta(c)['grade_id']} has no hidden tests"
        # block_reference also checks that student code replaced nothing the tests rely on.
        assert "block_reference(" in c.source.split("### BEGIN HIDDEN TESTS")[1], (
            f"hidden tests of {grade_meta(c)['grade_id']} never enter block_reference")
        assert c.source.split("### BEGIN HIDDEN TESTS")[0].strip(), f"test cell {grade_meta(c)['grade_id']} has no visible test"
    for c in solutions:
        assert "### BEGIN SOLUTION" in c.source and "### END SOLUTION" in c.source
    total = sum(grade_meta(c)["points"] for c in tests)
    assert 10 <= total <= 30, f"{asg} is worth {total} points"


@pytest.mark.parametrize("asg", ASSIGNMENTS)
def test_release_hides_solutions_and_hidden_tests(asg):
    nb = release_notebook(asg)
    text = "\n".join(c.source for c in nb.cells)
    assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN TESTS" not in text
    assert text.count("raise NotImplementedError()") >= 4
