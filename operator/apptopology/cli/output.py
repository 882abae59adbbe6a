"""Every output format of the CLI in one place: YAML and JSON documents, the result shapes CI reads, and
tables that fit the terminal.

The JSON shapes are part of the CLI's interface (docs/cli/json.md describes them, and golden tests in
tests/unit/golden/cli hold them still): fields are added, never renamed or removed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from . import documents

# Width of tables and wrapped lines when stdout is not a terminal (CI logs, pipes, files).
PIPE_WIDTH = 120
# Result documents (validate, verify, suggest --against, ...) carry this apiVersion and a kind.
RESULT_API_VERSION = "cli.apptopology.io/v1"


def dump_yaml(objects: Sequence[Any], out: TextIO) -> None:
    """Multi-document YAML, keys in rendering order, that kubectl reads back as the same data."""
    documents.dump_yaml(objects, out)


def dump_objects(objects: Sequence[Any], fmt: str, out: TextIO) -> None:
    """Kubernetes objects: multi-document YAML, or one JSON ``List`` (whatever their number, so a script
    reads ``.items`` every time)."""
    if fmt == "json":
        out.write(json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}, indent=2) + "\n")
    else:
        dump_yaml(objects, out)


def result(kind: str, **fields: Any) -> dict[str, Any]:
    """A result document: ``{"apiVersion": "cli.apptopology.io/v1", "kind": KIND, ...fields}``."""
    return {"apiVersion": RESULT_API_VERSION, "kind": kind, **fields}


def dump_result(data: Any, fmt: str, out: TextIO) -> None:
    """One result document as JSON or YAML."""
    if fmt == "json":
        out.write(json.dumps(data, indent=2) + "\n")
    else:
        documents.dump_yaml([data], out)


def width(out: TextIO | None = None) -> int:
    """The terminal's width when ``out`` is one, else PIPE_WIDTH (``COLUMNS`` overrides both)."""
    stream = out or sys.stdout
    if os.environ.get("COLUMNS", "").isdigit():
        return max(40, int(os.environ["COLUMNS"]))
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    if not tty:
        return PIPE_WIDTH
    return max(40, shutil.get_terminal_size((PIPE_WIDTH, 24)).columns)


def table_lines(rows: list[list[str]]) -> list[str]:
    """A plain table: a header row, a rule, then the rows, columns padded to their widest cell."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def wrap(text: str, columns: int, indent: str = "", subsequent: str | None = None) -> list[str]:
    """``text`` wrapped to ``columns``, breaking at ", " and spaces only (never inside a port or a name)."""
    return textwrap.wrap(
        text,
        columns,
        initial_indent=indent,
        subsequent_indent=indent + "    " if subsequent is None else subsequent,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent]


def wrap_items(head: str, items: Sequence[str], columns: int, indent: str = "") -> list[str]:
    """``head`` and ``items`` joined by ", ", wrapped between items only (an item never splits)."""
    glued = [item.replace(" ", "\u00a0") for item in items]
    return [line.replace("\u00a0", " ") for line in wrap(head + ", ".join(glued), columns, indent)]


def write_lines(lines: Iterable[str], out: TextIO) -> None:
    for line in lines:
        out.write(line + "\n")
