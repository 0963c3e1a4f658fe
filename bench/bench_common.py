"""Shared plumbing of the benchmark scripts: a section is a titled table (columns, rows,
notes) that a script prints as markdown and, with ``--json PATH``, also writes as JSON for
``bench/run.py`` to collect."""
from __future__ import annotations

import json
import math
from pathlib import Path


def fmt(value, spec: str = ".3g") -> str:
    """A table cell: floats with ``spec``, ints as is, ``None`` as an em dash."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return format(value, spec)


def markdown(section: dict) -> str:
    """``section`` = ``{"title", "columns", "rows", "notes"}`` rendered as a markdown block."""
    cols = section["columns"]
    lines = [f"## {section['title']}", ""]
    if section.get("intro"):
        lines += [section["intro"], ""]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for row in section["rows"]:
        if len(row) != len(cols):
            raise ValueError(f"row {row!r} has {len(row)} cells, the table has {len(cols)} columns")
        lines.append("| " + " | ".join(row) + " |")
    for note in section.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def emit(section: dict, json_path: str | None) -> None:
    """Print the section as markdown; write it as JSON too when ``json_path`` is given."""
    print(markdown(section), flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps(section, indent=1))
