"""Turn untrusted documents into AppTopology models, or into precise, human error messages.

Every entry point (CLI, operator) goes through ``render.validation.parse_topology`` (this module's
:func:`parse_model` plus what only the rendered policies show), so the same input gets the same verdict
everywhere. Messages carry the field path (``spec.flows[1].to.tier``) and, where it helps, the
valid choices. Cross-field rules live here rather than in pydantic validators so that each message can
point at the exact offending field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from .spec import (
    API_GROUP,
    API_VERSION,
    KIND,
    KUBE_API_PORTS,
    KUBE_API_SOURCE,
    MAX_FLOWS,
    AppTopology,
    describe_selector,
    quote,
    selector_yaml,
)

# Messages per document: enough to fix a document in one round, never a flood (input may be hostile).
MAX_ISSUES = 20


@dataclass(frozen=True, order=True)
class Issue:
    """One problem in one document: where (field path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InvalidTopology(Exception):
    """Raised with every issue found, so users fix a document in one round trip."""

    def __init__(self, issues: Sequence[Issue]):
        self.issues = list(issues)
        super().__init__("; ".join(str(i) for i in self.issues))


def format_path(loc: Iterable[int | str]) -> str:
    """``('spec', 'flows', 1, 'to', 'tier')`` -> ``spec.flows[1].to.tier``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # Map keys and unknown field names are user input: cut them.
            out += ("." if out else "") + (part if len(part) <= 80 else part[:80] + "...")
    return out


# Pydantic names union members and validator wrappers in error locations; users never wrote those.
def _user_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in ("int", "str"))))


def _message(err: ErrorDetails, model_fields: Mapping[str, Any] | None = None) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field" + (f" (valid fields: {', '.join(sorted(model_fields))})" if model_fields else "")
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        expected = (err.get("ctx") or {}).get("expected", "")
        return f"invalid value {quote(err['input'])} (valid: {expected.replace(chr(39), '')})"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch" and err["loc"][-1] == "name":
        return (
            f"{quote(err['input'])} is not a DNS-1123 label "
            "(lowercase alphanumerics and '-', starting and ending with an alphanumeric)"
        )
    if kind in ("model_type", "dict_type"):
        return f"must be a mapping, not {type(err['input']).__name__}"
    if kind == "list_type":
        return f"must be a list, not {type(err['input']).__name__}"
    return str(err["msg"])


def _fields_at(loc: tuple[int | str, ...], root: Any = AppTopology) -> list[str] | None:
    """The valid field names of the model at ``loc`` under ``root`` (for 'unknown field' hints)."""
    from pydantic import BaseModel

    model: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = {(f.alias or n): f for n, f in model.model_fields.items()}
        if part not in fields:
            return None
        ann = fields[part].annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        for cand in candidates:
            inner = [cand, *getattr(cand, "__args__", ())]
            found = next((c for c in inner if isinstance(c, type) and issubclass(c, BaseModel)), None)
            if found is not None:
                model = found
                break
        else:
            return None
    return [(f.alias or n) for n, f in model.model_fields.items()]


# A model validator may name the sub-field it complains about: "except[1]: ..." moves into the path.
_SUBPATH = re.compile(r"^([A-Za-z]+(?:\[\d+\])?): (.*)$", re.S)


def pydantic_issues(exc: ValidationError, root: Any = AppTopology) -> list[Issue]:
    """Pydantic's errors as issues at user field paths; ``root`` is the document's model."""
    issues = []
    for err in exc.errors():
        loc = _user_loc(tuple(err["loc"]))
        fields = _fields_at(loc, root) if err["type"] == "extra_forbidden" else None
        path = format_path(loc)
        message = _message(err, dict.fromkeys(fields) if fields else None)
        sub = _SUBPATH.match(message) if err["type"] == "value_error" else None
        if sub:
            path = f"{path}.{sub.group(1)}" if path else sub.group(1)
            message = sub.group(2)
        issues.append(Issue(path, message))
    return issues


def _q(name: str) -> str:
    """A tier name in double quotes, cut: names are user input and may be huge before the schema says so."""
    return '"' + (name if len(name) <= 80 else name[:80] + "...") + '"'


def semantic_issues(spec: Any) -> list[Issue]:
    """Cross-field rules: unique tier names and references to declared tiers.

    Works on the raw spec, defensively, so these issues are reported together with schema issues
    of the same document instead of one round trip later.
    """
    if not isinstance(spec, dict):
        return []
    issues: list[Issue] = []
    tiers = spec.get("tiers")
    seen: dict[str, int] = {}
    for i, tier in enumerate(tiers if isinstance(tiers, list) else []):
        name = tier.get("name") if isinstance(tier, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            issues.append(Issue(f"spec.tiers[{i}].name", f"duplicate tier {_q(name)} (also spec.tiers[{seen[name]}])"))
        seen.setdefault(name, i)
    declared = ", ".join(sorted(seen)[:20]) + (f" and {len(seen) - 20} more" if len(seen) > 20 else "") or "none"

    def check(path: str, name: Any) -> None:
        if isinstance(name, str) and name not in seen:
            issues.append(Issue(path, f"unknown tier {_q(name)} (declared: {declared})"))

    flows = spec.get("flows")
    for i, flow in enumerate(flows if isinstance(flows, list) else []):
        for side in ("from", "to"):
            endpoint = flow.get(side) if isinstance(flow, dict) else None
            if isinstance(endpoint, dict) and "tier" in endpoint:
                check(f"spec.flows[{i}].{side}.tier", endpoint["tier"])
    monitoring = spec.get("monitoring")
    scraped = monitoring.get("tiers") if isinstance(monitoring, dict) else None
    for i, name in enumerate(scraped if isinstance(scraped, list) else []):
        check(f"spec.monitoring.tiers[{i}]", name)
    return issues


def model_issues(topology: AppTopology) -> list[Issue]:
    """Rules between fields of a schema-valid topology, each at the field that breaks it.

    A tier of scope Namespace cannot be exempted from the namespace's default-deny: that policy selects
    every pod (``podSelector: {}``) and NetworkPolicies only add, so no other policy could take the
    isolation back; rendering it anyway would leave the tier isolated while the topology says it is not.
    """
    spec = topology.spec
    deny = spec.default_deny
    issues: list[Issue] = []
    for i, flow in enumerate(spec.flows):
        if flow.from_.cloud_metadata:
            issues.append(
                Issue(
                    f"spec.flows[{i}].from.cloudMetadata",
                    "cloudMetadata is a destination only (the metadata service opens no connections)",
                )
            )
        if flow.from_.kube_api:
            issues.append(Issue(f"spec.flows[{i}].from.kubeAPI", KUBE_API_SOURCE))
        if flow.to.kube_api and flow.ports:
            issues.append(Issue(f"spec.flows[{i}].ports", KUBE_API_PORTS))
    if deny.scope == "Namespace":
        for i, tier in enumerate(spec.tiers):
            for direction in ("ingress", "egress"):
                own = getattr(tier.isolation, direction) if tier.isolation is not None else None
                if own is False and getattr(deny, direction):
                    issues.append(
                        Issue(
                            f"spec.tiers[{i}].isolation.{direction}",
                            f"scope Namespace isolates every pod of the namespace for {direction} "
                            f"(spec.defaultDeny.{direction} is true), so tier {_q(tier.name)} cannot be exempted: "
                            f"use spec.defaultDeny.scope: Tiers (each tier then carries its own isolation), or set "
                            f"spec.defaultDeny.{direction}: false and isolation.{direction}: true on the tiers "
                            "that need it",
                        )
                    )
        issues.extend(isolated_peer_issues(topology))
    return issues


def isolated_peer_issues(topology: AppTopology) -> list[Issue]:
    """Scope Namespace: pods of this namespace that are in no tier are isolated by the topology's own
    default-deny, and only tiers get rules, so a flow to (or from) such pods by podSelector alone could never
    work in an isolated direction. Refused with how to declare it, rather than accepted and silently dead."""
    spec = topology.spec
    deny = spec.default_deny
    issues: list[Issue] = []
    for i, flow in enumerate(spec.flows):
        for side, endpoint, direction in (("to", flow.to, "ingress"), ("from", flow.from_, "egress")):
            pods = endpoint.pod_selector
            if pods is None or endpoint.namespace_selector is not None or not getattr(deny, direction):
                continue
            shown = describe_selector(pods)
            pasted = selector_yaml(pods)
            verb = "accept" if direction == "ingress" else "send"
            issues.append(
                Issue(
                    f"spec.flows[{i}].{side}.podSelector",
                    f"pods {shown} of this namespace are isolated for {direction} by this topology's own "
                    f"default-deny (scope Namespace) and only tiers get rules, so they could never {verb} this "
                    f"flow: declare them as a tier (tiers: [{{name: NAME, podSelector: {pasted}}}]) and use "
                    f"{side}: {{tier: NAME}}, or use spec.defaultDeny.scope: Tiers",
                )
            )
    dns = spec.dns
    dns_emitted = deny.egress or any(spec.isolates(t, "egress") for t in spec.tiers)
    if dns.enabled and dns.namespace_selector is None and deny.ingress and dns_emitted:
        issues.append(
            Issue(
                "spec.dns.namespaceSelector",
                "null means DNS servers in this namespace, and in scope Namespace they are isolated for ingress "
                "by this topology's own default-deny, so no pod could resolve names: name the DNS servers' "
                "namespace, or declare them as a tier with a flow from the tiers on the DNS ports (and "
                "dns.enabled: false), or use spec.defaultDeny.scope: Tiers",
            )
        )
    return issues


def oversized(doc: Any) -> Issue | None:
    """The first list or mapping with more entries than any in the API allows (MAX_FLOWS), or None.

    Checked before the model so that hostile input (100,000 flows) is refused at once instead of after
    validating every item. Visits each distinct container once: aliases and cycles cost nothing extra.
    """
    seen: set[int] = set()
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(doc, ())]
    while stack:
        value, loc = stack.pop()
        if not isinstance(value, dict | list) or id(value) in seen:
            continue
        seen.add(id(value))
        if len(value) > MAX_FLOWS:
            kind = "items" if isinstance(value, list) else "fields"
            return Issue(format_path(loc), f"{len(value)} {kind}; nothing in an AppTopology has more than {MAX_FLOWS}")
        children = value.items() if isinstance(value, dict) else enumerate(value)
        stack.extend((v, (*loc, k if isinstance(k, int | str) else str(k))) for k, v in children)
    return None


def _path_order(issue: Issue) -> tuple[Any, ...]:
    """Document order: spec.flows[2] before spec.flows[10]."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[\[\].]+", issue.path) if p), issue.message


def parse_model(doc: Any, rendered: Callable[[AppTopology], list[Issue]] | None = None) -> AppTopology:
    """Validate one decoded document; raise :class:`InvalidTopology` with every issue found.

    ``rendered``: the checks only the rendered policies can answer, run once the model is valid. The
    renderer lives above this package, so it passes them in (``render.validation.parse_topology``) rather
    than this module importing it.
    """
    if not isinstance(doc, dict):
        raise InvalidTopology([Issue("", f"not a YAML mapping (got {type(doc).__name__})")])
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    expected = f"{API_GROUP}/{API_VERSION}"
    if kind != KIND or api_version != expected:
        raise InvalidTopology(
            [
                Issue(
                    "",
                    f"not an AppTopology: apiVersion {quote(api_version)}, kind {quote(kind)} "
                    f"(expected {expected}, {KIND})",
                )
            ]
        )
    too_big = oversized(doc)
    if too_big is not None:
        raise InvalidTopology([too_big])
    issues = semantic_issues(doc.get("spec"))
    try:
        topology = AppTopology.model_validate(doc)
    except ValidationError as exc:
        issues = [*issues, *pydantic_issues(exc)]
    if not issues:
        issues = model_issues(topology) or (rendered(topology) if rendered is not None else [])
    if issues:
        ordered = sorted(set(issues), key=_path_order)
        if len(ordered) > MAX_ISSUES:
            more = len(ordered) - MAX_ISSUES
            ordered = [*ordered[:MAX_ISSUES], Issue("", f"... and {more} more problems in this document")]
        raise InvalidTopology(ordered)
    return topology


def spec_document(name: str, namespace: str | None, spec: Any) -> dict[str, Any]:
    """A live object's spec as a whole document (the operator's view: metadata comes from the API server)."""
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": name, **({"namespace": namespace} if namespace else {})},
        "spec": spec,
    }
