"""The whole validation of a topology: the model's checks (``api.validation``) and what only the rendered
NetworkPolicies show. Every entry point (CLI, operator, import, suggest) parses topologies here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ..api.spec import MAX_ANNOTATIONS_BYTES, AppTopology
from ..api.validation import InvalidTopology, Issue, parse_model, spec_document
from .renderer import render

__all__ = ["InvalidTopology", "Issue", "parse_spec", "parse_topology", "parsed_once", "rendered_issues"]


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


# Within parsed_once(): (name, namespace, id(spec)) -> (spec, its topology or its issues).
_PARSED: ContextVar[dict[tuple[str, str | None, int], tuple[Any, AppTopology | list[Issue]]] | None] = ContextVar(
    "parsed", default=None
)


@contextmanager
def parsed_once() -> Iterator[None]:
    """Within the block (on this thread), :func:`parse_spec` of the same spec object is validated once: a
    reconcile reads its body's spec in several steps, and the largest one takes a third of a second to
    validate. The spec must not change meanwhile; nothing is kept after the block."""
    token = _PARSED.set({})
    try:
        yield
    finally:
        _PARSED.reset(token)


def parse_spec(name: str, namespace: str | None, spec: Any) -> AppTopology:
    """Validate a live object's spec (the operator's view: metadata comes from the API server)."""
    memo = _PARSED.get()
    if memo is None:
        return parse_topology(spec_document(name, namespace, spec))
    key = (name, namespace, id(spec))
    hit = memo.get(key)
    if hit is None or hit[0] is not spec:
        try:
            hit = memo[key] = (spec, parse_topology(spec_document(name, namespace, spec)))
        except InvalidTopology as exc:
            hit = memo[key] = (spec, list(exc.issues))
    if isinstance(hit[1], list):
        raise InvalidTopology(hit[1])
    return hit[1]
