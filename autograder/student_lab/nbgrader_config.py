"""nbgrader configuration for the student's JupyterLab (`make lab`, `lab.py`).

Found through JUPYTER_CONFIG_PATH, which `lab.py` sets; the instructor's
`autograder/nbgrader_config.py` is not loaded here. The exchange is a local folder that
`lab.py` fills with the released notebooks, so the Assignments tab lists them; it is not
shared with an instructor.
"""
import os

c = get_config()  # noqa: F821 - provided by traitlets when it loads this file

c.CourseDirectory.course_id = "flows-and-scores"
c.Exchange.root = os.environ.get(
    "FLOWLIB_LAB_EXCHANGE", os.path.join(os.path.dirname(os.path.abspath(__file__)), "exchange"))
