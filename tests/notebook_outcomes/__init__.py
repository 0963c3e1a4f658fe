"""Outcome experiments of the assignments' training exercises, one module per assignment
(``nb01.py`` ... ``nb09.py``), mirrored from each exercise's hidden test. They are imported by
tests/test_notebook_outcomes.py (which tests them) and so registered for ``make margins``.
Each module uses ``test_notebook_outcomes.solution_namespace`` to run the notebook's own
reference solution."""
