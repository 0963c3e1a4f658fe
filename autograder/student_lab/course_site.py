"""The course website inside the student lab, and notebook chapter links that reach it.

The notebooks link their chapter relatively, `[...](../../book/<chapter>.md)`: on the
website (notebooks/<asg>/<asg>.html next to book/<chapter>.html) Sphinx turns that into the
chapter's page. In the lab, rooted at notebooks/ so that solutions/ stays out of reach, the
same link would point outside the root (JupyterLab answers "outside root contents
directory"). lab.py loads this module into the lab's server, where it

- serves the built website (`_build/html`, or FLOWLIB_SITE_DIR) read-only at
  `<base_url>course-site/`, to the logged-in user (GET and HEAD only; a page says to run
  `make book` when the site is not built);
- shows each notebook with its `../../book/<chapter>.md` links pointing at the website:
  FLOWLIB_SITE_URL (lab.py sets it from `html.baseurl` in _config.yml, the published
  site) or, by default, the local copy above. Saving turns them back, so the file on disk
  stays as released.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupyter_server.utils import url_path_join
from tornado import web

PREFIX = "course-site"
REPO = Path(__file__).resolve().parents[2]
CHAPTER_LINK = re.compile(r"\]\(\.\./\.\./book/([A-Za-z0-9_.-]+)\.md(#[^)\s]*)?\)")


def site_dir() -> Path:
    return Path(os.environ.get("FLOWLIB_SITE_DIR") or REPO / "_build" / "html")


def site_url(base_url: str) -> str:
    """Where chapter links point: the published site, else the lab's own copy (ends in /)."""
    url = os.environ.get("FLOWLIB_SITE_URL", "").strip()
    if url:
        return url.rstrip("/") + "/"
    return url_path_join(base_url, PREFIX) + "/"


def to_site(text: str, site: str) -> str:
    return CHAPTER_LINK.sub(lambda m: f"]({site}book/{m[1]}.html{m[2] or ''})", text)


def from_site(text: str, site: str) -> str:
    pattern = re.compile(r"\]\(" + re.escape(site) + r"book/([A-Za-z0-9_.-]+)\.html(#[^)\s]*)?\)")
    return pattern.sub(lambda m: f"](../../book/{m[1]}.md{m[2] or ''})", text)


def _rewrite(notebook, convert, site: str) -> None:
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "markdown" and isinstance(cell.get("source"), str):
            cell["source"] = convert(cell["source"], site)


class CourseContentsManager(AsyncLargeFileManager):
    """Jupyter's default contents manager, with chapter links shown as website links."""

    @property
    def _site(self) -> str:
        return site_url(getattr(self.parent, "base_url", "/") or "/")

    async def get(self, path, content=True, type=None, format=None, **kwargs):
        model = await super().get(path, content=content, type=type, format=format, **kwargs)
        if content and model.get("type") == "notebook" and model.get("content"):
            _rewrite(model["content"], to_site, self._site)
        return model

    async def save(self, model, path=""):
        if model.get("type") == "notebook" and model.get("content"):
            _rewrite(model["content"], from_site, self._site)
        return await super().save(model, path)


class SiteHandler(JupyterHandler, web.StaticFileHandler):
    """The built website, read-only, for the logged-in user."""

    def initialize(self, path: str, default_filename: str | None = None) -> None:
        web.StaticFileHandler.initialize(self, path, default_filename)

    def _built(self) -> None:
        if not (Path(self.root) / "index.html").is_file():
            raise web.HTTPError(404, f"the course website is not built ({self.root}): run `make book`")

    @web.authenticated
    def head(self, path: str):
        self._built()
        return web.StaticFileHandler.head(self, path)

    @web.authenticated
    def get(self, path: str, include_body: bool = True):
        self._built()
        return web.StaticFileHandler.get(self, path, include_body)

    def compute_etag(self):
        return None


def _jupyter_server_extension_points():
    return [{"module": "course_site"}]


def _load_jupyter_server_extension(serverapp) -> None:
    base = serverapp.web_app.settings["base_url"]
    pattern = url_path_join(base, PREFIX, "(.*)")
    serverapp.web_app.add_handlers(".*$", [
        (url_path_join(base, PREFIX), web.RedirectHandler, {"url": url_path_join(base, PREFIX) + "/"}),
        (pattern, SiteHandler, {"path": str(site_dir()), "default_filename": "index.html"}),
    ])
    serverapp.log.info("course website %s served at %s/", site_dir(), url_path_join(base, PREFIX))
