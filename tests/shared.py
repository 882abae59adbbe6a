"""Shared test helpers: the repository layout, the examples, and the shared invalid-input cases."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
CASES_FILE = ROOT / "tests" / "cases" / "invalid.yaml"


def invalid_cases() -> list[dict[str, Any]]:
    """Each case with its full document under ``document``."""
    data = yaml.safe_load(CASES_FILE.read_text())
    out = []
    for case in data["cases"]:
        if "doc" in case:
            document = case["doc"]
        else:
            document = copy.deepcopy(data["base"])
            document["spec"] = case["spec"]
        out.append({**case, "document": document})
    return out


def example_documents() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{p.name}#{i}", d) for p in EXAMPLES for i, d in enumerate(yaml.safe_load_all(p.read_text())) if d]


def go_pattern(pattern: str) -> str:
    """A CRD pattern as the API server matches it: in Go's regexp ``$`` is the end of the text, in Python it
    also matches before a final newline. Python's ``\\Z`` is Go's ``$``."""
    return re.sub(r"(?<!\\)\$", r"\\Z", pattern)
