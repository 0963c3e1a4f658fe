"""Submissions downloaded from a learning-management system, turned into the grader's layout.

``make grade SUBMISSIONS=download.zip ASSIGNMENT=asg [ROSTER=roster.csv]`` (or an unpacked
folder) accepts the bulk downloads of

* **Canvas** ("Download Submissions"): one file per submission, named
  ``<sortable name>_[late_]<user id>_<submission id>_<file name>``, where a re-uploaded file
  name gets ``-1``, ``-2`` ... before its extension (``01-change-of-variables-1.ipynb``);
* **Moodle** ("Download all submissions"): ``<full name>_<participant id>_assignsubmission_file_``
  either as a folder holding the student's files or as the prefix of each file's name.

Each entry becomes ``<student>/<asg>.ipynb`` in a fresh folder that grade.py then reads as any
export. The student id is the roster's (a CSV with columns ``lms_id`` and ``student``, one row
per student) when a roster is given, else ``<name>-<lms id>``; an LMS id missing from the
roster is refused with the reason, never guessed. When a student has several notebooks, the
latest version is kept (the highest Canvas ``-N``, else the newest file) and every dropped
version is reported. Entries that are not notebooks, links, or paths that leave the folder
are refused with a reason; nothing in a file name decides where a file is written.
"""
from __future__ import annotations

import csv
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

CANVAS = re.compile(r"^(?P<name>[^_/]+)_(?P<late>late_)?(?P<lms_id>\d+)_(?P<submission>\d+)_(?P<file>.+)$", re.I)
MOODLE = re.compile(r"^(?P<name>.+?)_(?P<lms_id>\d+)_assignsubmission_(?:file|onlinetext)_(?P<file>.*)$")
_VERSION = re.compile(r"^(?P<stem>.+?)-(?P<n>\d+)$")
MAX_UNPACKED = 2 * 1024**3  # bytes: a zip that would unpack to more is refused (a zip bomb)


@dataclass
class Download:
    """What :func:`prepare` made of a download: the folder to grade and what it noticed."""
    folder: Path
    lms: str                                            # "canvas", "moodle" or "" (not recognised)
    students: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)      # dropped versions, refused entries, late flags


def _safe_extract(archive: Path, dest: Path, notes: list[str]) -> None:
    """Unpack regular files only: links, absolute paths and ``..`` are refused with a note."""
    with zipfile.ZipFile(archive) as zf:
        total = 0
        for info in zf.infolist():
            name = info.filename
            parts = PurePosixPath(name).parts
            mode = info.external_attr >> 16
            if info.is_dir():
                continue
            if name.startswith("/") or ".." in parts or "\\" in name:
                notes.append(f"refused {name!r}: the path leaves the download folder")
                continue
            if stat.S_ISLNK(mode):
                notes.append(f"refused {name!r}: a symbolic link")
                continue
            total += info.file_size
            if total > MAX_UNPACKED:
                raise ValueError(f"{archive.name} unpacks to more than {MAX_UNPACKED // 1024**3} GiB: refused")
            target = dest.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            when = time.mktime((*info.date_time, 0, 0, -1))  # the upload time the LMS recorded (local time)
            os.utime(target, (when, when))


def _files(root: Path, notes: list[str]) -> list[Path]:
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            notes.append(f"refused {path.relative_to(root)}: a symbolic link")
        elif path.is_file() and "__MACOSX" not in path.parts:
            out.append(path)
    return out


def _entry(rel: PurePosixPath) -> tuple[str, re.Match | None]:
    """Which LMS named this file (relative to the download's root), and the match."""
    for part in rel.parts[:-1]:  # Moodle's folder per student
        m = MOODLE.match(part)
        if m:
            return "moodle", m
    m = MOODLE.match(rel.name)
    if m:
        return "moodle", m
    m = CANVAS.match(rel.name)
    return ("canvas", m) if m else ("", None)


def _version(file_name: str) -> tuple[str, int]:
    stem = file_name[:-len(".ipynb")] if file_name.endswith(".ipynb") else file_name
    m = _VERSION.match(stem)
    return (m.group("stem"), int(m.group("n"))) if m else (stem, 0)


def read_roster(path: Path) -> dict[str, str]:
    """LMS id -> student id from a CSV with columns ``lms_id`` and ``student``."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"lms_id", "student"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: a roster needs the columns lms_id and student, got {reader.fieldnames}")
        roster = {}
        for row in reader:
            lms_id, student = row["lms_id"].strip(), row["student"].strip()
            if lms_id in roster and roster[lms_id] != student:
                raise ValueError(f"{path}: lms_id {lms_id} is given to both {roster[lms_id]} and {student}")
            roster[lms_id] = student
        return roster


def prepare(download: Path, assignment: str, roster: Path | None = None, workdir: Path | None = None) -> Download:
    """Turn an LMS download (zip or folder) into ``<folder>/<student>/<assignment>.ipynb``.
    A download in neither LMS's naming is returned unchanged (``lms == ""``)."""
    notes: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="lms-")) if workdir is None else workdir
    if download.is_file():
        if not zipfile.is_zipfile(download):
            raise ValueError(f"{download} is neither a folder nor a zip file")
        unpacked = workdir / "unpacked"
        unpacked.mkdir(parents=True)
        _safe_extract(download, unpacked, notes)
        root = unpacked
    else:
        root = download
    ids = read_roster(roster) if roster else None
    found: dict[str, list[tuple[int, float, Path, str]]] = {}
    kinds = set()
    for path in _files(root, notes):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        kind, m = _entry(rel)
        if m is None:
            notes.append(f"refused {rel}: not named as a Canvas or Moodle submission")
            continue
        kinds.add(kind)
        file_name = m.group("file") if kind == "canvas" or MOODLE.match(rel.name) else rel.name
        if not file_name.endswith(".ipynb"):
            notes.append(f"refused {rel}: not a notebook (.ipynb)")
            continue
        lms_id = m.group("lms_id")
        if ids is not None:
            if lms_id not in ids:
                notes.append(f"refused {rel}: LMS id {lms_id} is not in the roster")
                continue
            student = ids[lms_id]
        else:  # grade.py's student_id() makes it a safe id (ASCII, with a hash when it had to change it)
            student = f"{m.group('name').strip()}-{lms_id}"
        if kind == "canvas" and m.group("late"):
            notes.append(f"{student}: Canvas marked the submission late")
        stem, version = _version(file_name)
        found.setdefault(student, []).append((version, path.stat().st_mtime, path, str(rel)))
    if not found:
        return Download(download, "", {}, notes)
    out = workdir / "submissions"
    out.mkdir(parents=True, exist_ok=True)
    result = Download(out, "/".join(sorted(kinds)), {}, notes)
    for student, versions in sorted(found.items()):
        versions.sort(key=lambda v: (v[0], v[1]))
        *dropped, (version, _, path, rel) = versions
        for d in dropped:
            notes.append(f"{student}: kept {rel}, dropped the earlier version {d[3]}")
        dest = out / student / f"{assignment}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest, follow_symlinks=False)
        shutil.copystat(path, dest, follow_symlinks=False)  # the submission time (grade.py records it)
        result.students[student] = dest
    return result
