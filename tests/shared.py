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


GUARDRAIL_CASES_FILE = ROOT / "tests" / "cases" / "guardrails.yaml"


def guardrail_documents() -> list[dict[str, Any]]:
    """The TopologyGuardrails of tests/cases/guardrails.yaml as documents."""
    data = yaml.safe_load(GUARDRAIL_CASES_FILE.read_text())
    return [
        {"apiVersion": "apptopology.io/v1alpha1", "kind": "TopologyGuardrail", "metadata": {"name": n}, "spec": s}
        for n, s in data["guardrails"].items()
    ]


def guardrail_cases() -> list[dict[str, Any]]:
    """Each case of tests/cases/guardrails.yaml with ``namespace`` (gc-<id>), the topology ``document`` in it,
    and ``violations`` with {namespace} filled in."""
    data = yaml.safe_load(GUARDRAIL_CASES_FILE.read_text())
    out = []
    for case in data["cases"]:
        namespace = f"gc-{case['id']}"
        document = copy.deepcopy(data["base"])
        document["metadata"]["namespace"] = namespace
        document["spec"].update(copy.deepcopy(case.get("spec", {})))
        violations = [{**v, "text": v["text"].replace("{namespace}", namespace)} for v in case["violations"]]
        out.append({**case, "namespace": namespace, "document": document, "violations": violations})
    return out
