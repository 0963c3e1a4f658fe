"""Serve the website's JavaScript from its own _static folder: the site works offline.

By default a Jupyter Book page asks three CDNs for MathJax, require.js and the ipywidgets
HTML manager; offline (a student on a train, an exam room without internet) the equations
stay raw TeX and the widgets stay blank. This extension pins those packages by version and
sha512 (npm registry tarballs), downloads each once into ``_build/vendor/`` (verified, so
a changed or truncated file is refused), adds that folder to ``html_static_path`` and points
Sphinx's ``mathjax_path`` and myst-nb's ``nb_ipywidgets_js`` at the local copies, with
``static/widgets-offline.js`` between require.js and the widget manager (it tells
require.js where the manager's fonts live and lets the manager's MathJax 2 calls reach
MathJax 3).

The only network access is that one-time download at build time, from the npm registry.
To build on a machine with no network, copy a ``_build/vendor/`` from a machine that has
one (or set ``FLOWLIB_VENDOR_DIR`` to a folder holding the same layout).
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import tarfile
import urllib.request
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError

REGISTRY = "https://registry.npmjs.org"
STATIC = Path(__file__).resolve().parent / "static"  # our own small scripts

# npm package: (version, sha512 of the registry tarball, the part of the package we serve)
PACKAGES = {
    "mathjax": ("3.2.2", "Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
                "es5/"),
    "requirejs": ("2.3.8", "7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
                  "require.js"),
    "@jupyter-widgets/html-manager": (
        "1.0.15", "5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
        "dist/"),
}


def folder_name(package: str) -> str:
    """'@jupyter-widgets/html-manager' 1.0.15 -> 'html-manager-1.0.15' (a path under _static)."""
    return f"{package.rsplit('/', 1)[-1]}-{PACKAGES[package][0]}"


def _tarball_url(package: str, version: str) -> str:
    return f"{REGISTRY}/{package}/-/{package.rsplit('/', 1)[-1]}-{version}.tgz"


def fetch(package: str, vendor: Path) -> Path:
    """Download, verify and unpack one package into vendor/<folder_name>/ (once)."""
    version, sha512, keep = PACKAGES[package]
    dest = vendor / folder_name(package)
    stamp = dest / ".sha512"
    if stamp.is_file() and stamp.read_text() == sha512:
        return dest
    url = _tarball_url(package, version)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
    except OSError as err:
        raise ExtensionError(
            f"offline_assets: could not download {package}@{version} from {url} ({err}). The site "
            f"serves it from _build/vendor/; on a machine without network, copy that folder from "
            f"one with network or set FLOWLIB_VENDOR_DIR to it.") from err
    got = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if got != sha512:
        raise ExtensionError(f"offline_assets: {url} has sha512 {got}, expected {sha512}; refusing it")
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = [m for m in tar.getmembers()
                   if m.isfile() and m.name.startswith(f"package/{keep}") and ".map" not in Path(m.name).suffixes]
        for m in members:
            m.name = m.name[len("package/"):]
        tar.extractall(tmp, members=members, filter="data")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    stamp.write_text(sha512)
    return dest


def vendor_dir(app: Sphinx) -> Path:
    override = os.environ.get("FLOWLIB_VENDOR_DIR")
    return Path(override) if override else Path(app.outdir).parent / "vendor"


def use_local_assets(app: Sphinx, config: Config) -> None:
    vendor = vendor_dir(app)
    for package in PACKAGES:
        fetch(package, vendor)
    config.html_static_path = list(config.html_static_path) + [str(vendor.resolve()), str(STATIC)]
    # relative paths are served from _static/
    config.mathjax_path = f"{folder_name('mathjax')}/es5/tex-mml-chtml.js"
    manager = f"{folder_name('@jupyter-widgets/html-manager')}/dist"
    config.nb_ipywidgets_js = {  # loaded in this order on pages with widgets
        f"{folder_name('requirejs')}/require.js": {},
        "widgets-offline.js": {"data-html-manager": manager},  # see the file's comment
        f"{manager}/embed-amd.js": {},
    }


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", use_local_assets)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
