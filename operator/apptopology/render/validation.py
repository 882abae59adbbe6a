"""The whole validation of a topology: the model's checks (``api.validation``) and what only the rendered
NetworkPolicies show. Every entry point (CLI, operator, import, suggest) parses topologies here."""

from __future__ import annotations

from typing import Any

from ..api.spec import MAX_ANNOTATIONS_BYTES, AppTopology
from ..api.validation import InvalidTopology, Issue, parse_model, spec_document
from .renderer import render

__all__ = ["InvalidTopology", "Issue", "parse_spec", "parse_topology", "rendered_issues"]


def rendered_issues(topology: AppTopology) -> list[Issue]:
    """What only the rendered NetworkPolicies show: each policy's annotations within the API server's limit.

    The description annotation grows with the flows' descriptions and endpoints; the API server refuses a
    policy whose annotations exceed 256 KiB in total. CEL cannot add that up within its cost budget, so this
    check runs here, before anything is written.
    """
    issues = []
    for policy in render(topology):
        meta = policy["metadata"]
        size = sum(len(k.encode()) + len(v.encode()) for k, v in meta.get("annotations", {}).items())
        if size > MAX_ANNOTATIONS_BYTES:
            issues.append(
                Issue(
                    "spec.flows",
                    f"the annotations of NetworkPolicy {meta['name']} would be {size} bytes, over Kubernetes' "
                    f"limit of {MAX_ANNOTATIONS_BYTES} (256 KiB): shorten the flows' descriptions or split the flows",
                )
            )
    return issues


def parse_topology(doc: Any) -> AppTopology:
    """Validate one decoded document; raise :class:`InvalidTopology` with every issue found."""
    return parse_model(doc, rendered_issues)


def parse_spec(name: str, namespace: str | None, spec: Any) -> AppTopology:
    """Validate a live object's spec (the operator's view: metadata comes from the API server)."""
    return parse_topology(spec_document(name, namespace, spec))
