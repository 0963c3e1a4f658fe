"""Helpers for tests that read the nbgrader notebooks of the course."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat

from conftest import REPO


def assignments() -> list[str]:
    src = REPO / "solutions"
    return sorted(p.name for p in src.iterdir() if (p / f"{p.name}.ipynb").is_file())


def source_notebook(asg: str, root: Path = REPO) -> nbformat.NotebookNode:
    return nbformat.read(root / "solutions" / asg / f"{asg}.ipynb", as_version=4)


def release_notebook(asg: str, root: Path = REPO) -> nbformat.NotebookNode:
    return nbformat.read(root / "notebooks" / asg / f"{asg}.ipynb", as_version=4)


def grade_meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def run_nbgrader(root: Path, *args: str) -> subprocess.CompletedProcess:
    env_bin = str(Path(sys.executable).parent)
    import os

    env = dict(os.environ, PATH=env_bin + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root / "autograder", env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc
