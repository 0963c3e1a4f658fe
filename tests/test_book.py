"""The website: every page in the table of contents exists, chapters show library code by
`literalinclude` (never a pasted copy), and the book builds with no warning."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

TOC = yaml.safe_load((REPO / "_toc.yml").read_text())


def _toc_files() -> list[str]:
    files = [TOC["root"]]
    for part in TOC.get("parts", []):
        files += [ch["file"] for ch in part.get("chapters", [])]
    return files


def _page(stem: str) -> Path:
    for ext in (".md", ".ipynb"):
        if (REPO / (stem + ext)).is_file():
            return REPO / (stem + ext)
    raise FileNotFoundError(stem)


CHAPTERS = [f for f in _toc_files() if f.startswith("book/") and re.match(r"book/\d\d-", f)]


def test_every_toc_entry_exists():
    missing = []
    for stem in _toc_files():
        try:
            _page(stem)
        except FileNotFoundError:
            missing.append(stem)
    assert not missing, f"_toc.yml lists pages that do not exist: {missing}"


def test_every_assignment_is_in_the_exercises_part():
    listed = set(_toc_files())
    for asg in sorted(p.name for p in (REPO / "notebooks").iterdir() if p.is_dir()):
        assert f"notebooks/{asg}/{asg}" in listed, f"notebooks/{asg} is not under Exercises in _toc.yml"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_literalincludes_point_at_real_objects(chapter):
    text = _page(chapter).read_text()
    blocks = re.findall(r"```\{literalinclude\}\s+(\S+)\n((?::\w+:.*\n)*)", text)
    assert blocks, f"{chapter} shows no library code with literalinclude"
    for rel, options in blocks:
        path = (_page(chapter).parent / rel).resolve()
        assert path.is_file(), f"{chapter}: literalinclude of missing file {rel}"
        m = re.search(r":pyobject:\s*(\S+)", options)
        if m:
            tree = ast.parse(path.read_text())
            names = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            assert m.group(1).split(".")[-1] in names, f"{chapter}: {rel} has no {m.group(1)}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_links_its_assignment(chapter):
    number = Path(chapter).name[:2]
    assert re.search(rf"notebooks/{number}-[\w-]+/{number}-", _page(chapter).read_text()), (
        f"{chapter} does not link its assignment notebook"
    )


@pytest.mark.slow
def test_book_builds_without_warnings():
    """`make book`'s command: any warning, broken reference or failing cell fails it."""
    env = dict(os.environ, FLOWLIB_PROGRESS="0")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-book"), "build", ".", "-W", "-n", "--keep-going"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=3000,
    )
    assert proc.returncode == 0, f"book build failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    html = REPO / "_build" / "html"
    for stem in _toc_files():
        assert (html / f"{stem}.html").is_file(), f"{stem}.html was not built"
    for chapter in CHAPTERS:
        page = (html / f"{chapter}.html").read_text()
        assert "<img" in page, f"{chapter} has no figure"
        assert "Traceback" not in page, f"{chapter} shows a traceback"
