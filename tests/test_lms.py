"""LMS downloads (autograder/lms.py): Canvas- and Moodle-style zips built here, with
resubmissions, a late flag, a non-notebook file, a non-ASCII name, a link and a path that
leaves the folder; a roster; and the prepared folder as grade.py reads it."""
from __future__ import annotations

import csv
import json
import os
import stat
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "autograder"))
import lms  # noqa: E402
from grade import find_submissions  # noqa: E402

ASG = "01-change-of-variables"


def _nb(tag: str) -> str:
    return json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": tag}], "metadata": {},
                       "nbformat": 4, "nbformat_minor": 5})


def _zip(path: Path, entries: dict[str, str], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for i, (name, text) in enumerate(entries.items()):
            info = zipfile.ZipInfo(name, date_time=(2026, 11, 1, 10, i, 0))
            zf.writestr(info, text)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def test_canvas_download_keeps_the_latest_version_and_refuses_what_is_not_a_notebook(tmp_path):
    zf = _zip(tmp_path / "canvas.zip", {
        f"smithjohn_1001_5001_{ASG}.ipynb": _nb("john v0"),
        f"smithjohn_1001_5002_{ASG}-1.ipynb": _nb("john v1"),
        f"doejane_late_1002_5003_{ASG}.ipynb": _nb("jane"),
        "lópezana_1003_5004_notes.pdf": "%PDF",
        f"lópezana_1003_5005_{ASG}.ipynb": _nb("ana"),
        f"../escape_1004_5006_{ASG}.ipynb": _nb("escape"),
        "README.txt": "not a submission",
    }, links={f"mallory_1005_5007_{ASG}.ipynb": "/etc/passwd"})
    dl = lms.prepare(zf, ASG, workdir=tmp_path / "work")
    assert dl.lms == "canvas"
    assert sorted(dl.students) == ["doejane-1002", "lópezana-1003", "smithjohn-1001"]
    assert "john v1" in (dl.students["smithjohn-1001"]).read_text()
    notes = "\n".join(dl.notes)
    assert "dropped the earlier version" in notes and "late" in notes
    assert "notes.pdf" in notes and "not a notebook" in notes
    assert "leaves the download folder" in notes and "symbolic link" in notes and "README.txt" in notes
    assert not (tmp_path / "escape_1004_5006_01-change-of-variables.ipynb").exists()
    # grade.py reads the prepared folder as any export; the non-ASCII name becomes a safe id
    found, _ = find_submissions(dl.folder, ASG)
    ids = sorted(s for s, _ in found)
    assert "doejane-1002" in ids and "smithjohn-1001" in ids and len(ids) == 3
    assert all(s.isascii() for s in ids)


def test_moodle_download_in_folders_with_a_roster(tmp_path):
    folder = "Ana María López_2001_assignsubmission_file_"
    zf = _zip(tmp_path / "moodle.zip", {
        f"{folder}/{ASG}.ipynb": _nb("ana"),
        f"{folder}/scratch.txt": "x",
        f"Bo Chen_2002_assignsubmission_file_{ASG}.ipynb": _nb("bo"),
        f"Eve Unknown_2999_assignsubmission_file_{ASG}.ipynb": _nb("eve"),
    })
    roster = tmp_path / "roster.csv"
    with roster.open("w", newline="") as fh:
        csv.writer(fh).writerows([["lms_id", "student"], ["2001", "s2001"], ["2002", "s2002"]])
    dl = lms.prepare(zf, ASG, roster, workdir=tmp_path / "work")
    assert dl.lms == "moodle" and sorted(dl.students) == ["s2001", "s2002"]
    notes = "\n".join(dl.notes)
    assert "2999 is not in the roster" in notes and "scratch.txt" in notes
    assert "ana" in dl.students["s2001"].read_text()


def test_bad_roster_and_not_a_download(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name\n1,a\n")
    with pytest.raises(ValueError, match="lms_id and student"):
        lms.read_roster(bad)
    twice = tmp_path / "twice.csv"
    twice.write_text("lms_id,student\n1,a\n1,b\n")
    with pytest.raises(ValueError, match="both"):
        lms.read_roster(twice)
    export = tmp_path / "export" / "alice"
    export.mkdir(parents=True)
    (export / f"{ASG}.ipynb").write_text(_nb("alice"))
    assert lms.prepare(tmp_path / "export", ASG, workdir=tmp_path / "w").lms == ""  # an ordinary export stays as it is
    not_zip = tmp_path / "x.zip"
    not_zip.write_text("no")
    with pytest.raises(ValueError, match="neither a folder nor a zip"):
        lms.prepare(not_zip, ASG, workdir=tmp_path / "w2")


def test_the_submission_time_is_kept(tmp_path):
    zf = _zip(tmp_path / "c.zip", {f"smithjohn_1001_5001_{ASG}.ipynb": _nb("john")})
    dl = lms.prepare(zf, ASG, workdir=tmp_path / "work")
    mtime = os.stat(dl.students["smithjohn-1001"]).st_mtime
    import datetime as dt

    assert dt.datetime.fromtimestamp(mtime).date() == dt.date(2026, 11, 1)
