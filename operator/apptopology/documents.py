"""Read multi-document YAML (or JSON) files and stdin into plain data, with located errors.

Kept apart from validation so every command (render, validate, explain, verify, diff) reads input the
same way and reports problems as ``FILE: document N: ...``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .api.spec import AppTopology
from .api.validation import InvalidTopology, Issue, parse_topology

# libyaml's loader when PyYAML was built with it: several times faster on large inventories.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Document:
    """One decoded YAML document and where it came from (index counts from 0, as kubectl does)."""

    source: str
    index: int
    data: Any


@dataclass(frozen=True)
class LocatedIssue:
    source: str
    index: int | None
    issue: Issue

    def __str__(self) -> str:
        where = self.source if self.index is None else f"{self.source}: document {self.index}"
        return f"{where}: {self.issue}"


class InputError(Exception):
    """Input that cannot be used; carries every located issue."""

    def __init__(self, issues: list[LocatedIssue]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def read_text(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    path = Path(source)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError([LocatedIssue(source, None, Issue("", "no such file"))]) from None
    except IsADirectoryError:
        raise InputError([LocatedIssue(source, None, Issue("", "is a directory"))]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError([LocatedIssue(source, None, Issue("", f"cannot read: {exc}"))]) from None


def parse_documents(text: str, source: str) -> list[Document]:
    """Split a YAML stream into documents; empty documents (a stray ``---``) are skipped."""
    name = "<stdin>" if source == "-" else source
    try:
        loaded = list(yaml.load_all(text, Loader=_SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError([LocatedIssue(name, None, Issue("", f"not valid YAML: {where}{problem}"))]) from None
    docs: list[Document] = []
    for index, data in enumerate(loaded):
        if data is None:
            continue
        if isinstance(data, dict) and data.get("kind") == "List" and isinstance(data.get("items"), list):
            docs.extend(Document(name, index, item) for item in data["items"])
            continue
        docs.append(Document(name, index, data))
    return docs


def load_documents(sources: list[str]) -> list[Document]:
    """Every document of every source, directories expanded to their *.yaml/*.yml/*.json files."""
    docs: list[Document] = []
    for source in sources:
        path = Path(source)
        if source != "-" and path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".json") and p.is_file())
            for f in files:
                docs.extend(parse_documents(read_text(str(f)), str(f)))
        else:
            docs.extend(parse_documents(read_text(source), source))
    return docs


def load_topologies(sources: list[str]) -> list[AppTopology]:
    """Every AppTopology in ``sources``; raises :class:`InputError` listing all problems of all documents."""
    docs = load_documents(sources)
    if not docs:
        raise InputError([LocatedIssue(", ".join(sources), None, Issue("", "no documents found"))])
    topologies = []
    problems: list[LocatedIssue] = []
    for doc in docs:
        try:
            topologies.append(parse_topology(doc.data))
        except InvalidTopology as exc:
            problems.extend(LocatedIssue(doc.source, doc.index, issue) for issue in exc.issues)
    if problems:
        raise InputError(problems)
    return topologies
