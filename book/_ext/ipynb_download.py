"""Offer each executed MyST-markdown chapter as an .ipynb in the theme's download menu.

sphinx-book-theme lists ``context["ipynb_source"]`` in its download menu, but sets it only
when a launch service is configured. This extension sets it for every markdown notebook:
it copies the notebook myst-nb wrote while executing the page
(``_build/jupyter_execute/<docname>.ipynb``, outputs included) to
``_build/html/_sources/<docname>.ipynb``. Pages whose source already is an .ipynb (the
exercise notebooks) are left alone: their source download is the notebook. If the executed
notebook is missing (an incremental build after ``jupyter_execute/`` was deleted by hand),
the page offers no .ipynb until the next clean build.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)


def _executed_notebook(app: Sphinx, docname: str) -> Path:
    folder = getattr(getattr(app.env, "mystnb_config", None), "output_folder", None)
    folder = Path(folder) if folder else Path(app.outdir).parent / "jupyter_execute"
    return folder / f"{docname}.ipynb"


def add_ipynb_download(app: Sphinx, pagename: str, templatename, context: dict, doctree) -> None:
    if app.builder.format != "html" or doctree is None:
        return
    source = str(app.env.doc2path(pagename, base=False))
    if not source.endswith(".md") or "kernelspec" not in app.env.metadata.get(pagename, {}):
        return
    notebook = _executed_notebook(app, pagename)
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not notebook.is_file():
        # only after jupyter_execute/ was deleted by hand and the page was not re-read:
        # offer no notebook rather than a stale or empty one (`make clean` fixes it)
        logger.info("ipynb_download: %s not found; no .ipynb download on %s", notebook, pagename)
        return
    shutil.copy2(notebook, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def setup(app: Sphinx) -> dict:
    # before the theme's header buttons (priority 501) read the context
    app.connect("html-page-context", add_ipynb_download, priority=500)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
