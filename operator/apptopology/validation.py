"""Turn untrusted documents into AppTopology models, or into precise, human error messages.

Every entry point (CLI, operator) goes through :func:`parse_topology`, so the same input gets the same
verdict everywhere. Messages carry the field path (``spec.flows[1].to.tier``) and, where it helps, the
valid choices. Cross-field rules live here rather than in pydantic validators so that each message can
point at the exact offending field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from .model import API_GROUP, API_VERSION, KIND, AppTopology, AppTopologySpec


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
            out += ("." if out else "") + part
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
        return f"invalid value {err['input']!r} (valid: {expected.replace(chr(39), '')})"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch" and err["loc"][-1] == "name":
        return (
            f"{err['input']!r} is not a DNS-1123 label "
            "(lowercase alphanumerics and '-', starting and ending with an alphanumeric)"
        )
    if kind in ("model_type", "dict_type"):
        return f"must be a mapping, not {type(err['input']).__name__}"
    if kind == "list_type":
        return f"must be a list, not {type(err['input']).__name__}"
    return str(err["msg"])


def _fields_at(loc: tuple[int | str, ...]) -> list[str] | None:
    """The valid field names of the model at ``loc`` (for 'unknown field' hints)."""
    from pydantic import BaseModel

    model: Any = AppTopology
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


def pydantic_issues(exc: ValidationError) -> list[Issue]:
    issues = []
    for err in exc.errors():
        loc = _user_loc(tuple(err["loc"]))
        fields = _fields_at(loc) if err["type"] == "extra_forbidden" else None
        issues.append(Issue(format_path(loc), _message(err, dict.fromkeys(fields) if fields else None)))
    return sorted(set(issues), key=lambda i: (i.path, i.message))


def semantic_issues(spec: AppTopologySpec) -> list[Issue]:
    """Cross-field rules: unique tier names and references to declared tiers."""
    issues: list[Issue] = []
    names = spec.tier_names()
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            issues.append(Issue(f"spec.tiers[{i}].name", f"duplicate tier {name!r} (also spec.tiers[{seen[name]}])"))
        seen.setdefault(name, i)
    declared = ", ".join(sorted(seen))

    def unknown(path: str, name: str) -> Issue:
        return Issue(path, f"unknown tier {name!r} (declared: {declared})")

    for i, flow in enumerate(spec.flows):
        for side, endpoint in (("from", flow.from_), ("to", flow.to)):
            if endpoint.tier is not None and endpoint.tier not in seen:
                issues.append(unknown(f"spec.flows[{i}].{side}.tier", endpoint.tier))
    for i, name in enumerate(spec.monitoring.tiers or []):
        if name not in seen:
            issues.append(unknown(f"spec.monitoring.tiers[{i}]", name))
    return issues


def parse_topology(doc: Any) -> AppTopology:
    """Validate one decoded document; raise :class:`InvalidTopology` with every issue found."""
    if not isinstance(doc, dict):
        raise InvalidTopology([Issue("", f"not a YAML mapping (got {type(doc).__name__})")])
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    expected = f"{API_GROUP}/{API_VERSION}"
    if kind != KIND or api_version != expected:
        raise InvalidTopology(
            [
                Issue(
                    "",
                    f"not an AppTopology: apiVersion {api_version!r}, kind {kind!r} (expected {expected}, {KIND})",
                )
            ]
        )
    try:
        topology = AppTopology.model_validate(doc)
    except ValidationError as exc:
        raise InvalidTopology(pydantic_issues(exc)) from None
    issues = semantic_issues(topology.spec)
    if issues:
        raise InvalidTopology(issues)
    return topology


def parse_spec(name: str, namespace: str | None, spec: Any) -> AppTopology:
    """Validate a live object's spec (the operator's view: metadata comes from the API server)."""
    doc = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": name, **({"namespace": namespace} if namespace else {})},
        "spec": spec,
    }
    return parse_topology(doc)
