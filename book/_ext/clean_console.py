"""Two fixes to the Jupyter Book 1 theme stack that keep the browser console free of errors
(the site's browser test fails on any console error, so real ones stand out):

* sphinx-thebe adds its inline configuration script once per read phase, and Jupyter Book
  runs two, so pages declared ``const THEBE_JS_URL`` twice ("Identifier has already been
  declared"). Each page now lists an inline script at most once.
* pydata-sphinx-theme's layout reads ``default_mode`` from ``html_context``, which Jupyter
  Book leaves unset: the theme's script then reports "invalid theme mode" on a browser's
  first visit. It now defaults to "auto" (follow the system's light/dark setting).
"""
from __future__ import annotations

from sphinx.application import Sphinx


def unique_inline_scripts(app: Sphinx, pagename: str, templatename, context: dict, doctree) -> None:
    if "script_files" not in context:
        return
    seen, kept = set(), []
    for script in context["script_files"]:
        body = getattr(script, "attributes", {}).get("body")
        inline = body is not None and not getattr(script, "filename", None)  # filename None or ''
        if inline and body in seen:
            continue
        if inline:
            seen.add(body)
        kept.append(script)
    # in place: the list is the builder's, and handlers after this one (MathJax's) append to it
    context["script_files"][:] = kept


def default_theme_mode(app: Sphinx) -> None:
    # a template variable of pydata-sphinx-theme's layout, set through html_context
    app.config.html_context.setdefault("default_mode", "auto")


def setup(app: Sphinx) -> dict:
    # early: html-page-context stops at the first handler that returns a template name
    app.connect("html-page-context", unique_inline_scripts, priority=100)
    app.connect("builder-inited", default_theme_mode)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
