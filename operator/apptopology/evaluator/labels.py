"""Hashable label maps and compiled Kubernetes LabelSelectors.

Labels are frozen (and hash-cached) so that pods, namespaces and selector-match
results can be used as dictionary keys; selectors are parsed once into
requirement tuples so matching never re-reads the raw manifest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
OPERATORS: Final = ("In", "NotIn", "Exists", "DoesNotExist")


class Labels(Mapping[str, str]):
    """Immutable, hashable str -> str mapping (the order of keys is irrelevant to equality)."""

    __slots__ = ("_data", "_hash", "_items")

    def __init__(self, data: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        items = dict(data.items() if isinstance(data, Mapping) else data)
        for key, value in items.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValueError(f"label {key!r}: keys and values must be strings, got {value!r}")
        self._data: dict[str, str] = items
        self._items: frozenset[tuple[str, str]] = frozenset(items.items())
        self._hash = hash(self._items)

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Labels):
            return self._hash == other._hash and self._items == other._items
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"Labels({self._data!r})"


def as_labels(data: Mapping[str, str] | None) -> Labels:
    """Coerce any mapping (or None) to Labels without copying an existing instance."""
    if isinstance(data, Labels):
        return data
    return Labels(data or {})


@dataclass(frozen=True, slots=True)
class Requirement:
    """One matchExpressions entry; `values` is a frozenset because order is meaningless."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        # NotIn and DoesNotExist deliberately match objects that lack the key.
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """matchLabels AND matchExpressions; the empty selector selects everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    requirements: tuple[Requirement, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.match_labels and not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        return all(req.matches(labels) for req in self.requirements)

    def __str__(self) -> str:
        """kubectl-style rendering, e.g. `app=web,tier in (a,b),!legacy`."""
        if self.is_empty:
            return "{}"
        parts = [f"{k}={v}" for k, v in self.match_labels]
        for r in self.requirements:
            if r.operator in ("In", "NotIn"):
                parts.append(f"{r.key} {r.operator.lower()} ({','.join(sorted(r.values))})")
            elif r.operator == "Exists":
                parts.append(r.key)
            else:
                parts.append(f"!{r.key}")
        return ",".join(parts)


def parse_selector(raw: Any, where: str) -> LabelSelector:
    """Compile a LabelSelector dict, raising ValueError that names `where` for malformed input.

    Validation mirrors the API server so that a selector we accept means what the cluster
    would make of it: In/NotIn need values, Exists/DoesNotExist must have none.
    """
    if raw is None:
        return LabelSelector()
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a label selector mapping, got {type(raw).__name__}")
    unknown = set(raw) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)} (expected matchLabels/matchExpressions)")
    match_labels = raw.get("matchLabels") or {}
    if not isinstance(match_labels, Mapping):
        raise ValueError(f"{where}.matchLabels: expected a mapping")
    pairs: list[tuple[str, str]] = []
    for key, value in match_labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"{where}.matchLabels[{key!r}]: key and value must be strings, got {value!r}")
        pairs.append((key, value))
    exprs = raw.get("matchExpressions") or []
    if not isinstance(exprs, list):
        raise ValueError(f"{where}.matchExpressions: expected a list")
    reqs: list[Requirement] = []
    for i, expr in enumerate(exprs):
        reqs.append(_parse_requirement(expr, f"{where}.matchExpressions[{i}]"))
    return LabelSelector(tuple(sorted(pairs)), tuple(reqs))


def _parse_requirement(expr: Any, where: str) -> Requirement:
    if not isinstance(expr, Mapping):
        raise ValueError(f"{where}: expected a mapping")
    unknown = set(expr) - {"key", "operator", "values"}
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
    key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
    if not isinstance(key, str) or not key:
        raise ValueError(f"{where}.key: required non-empty string")
    if op not in OPERATORS:
        raise ValueError(f"{where}.operator: {op!r} is not one of {', '.join(OPERATORS)}")
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{where}.values: expected a list of strings")
    if op in ("In", "NotIn") and not values:
        raise ValueError(f"{where}.values: must be non-empty for operator {op}")
    if op in ("Exists", "DoesNotExist") and values:
        raise ValueError(f"{where}.values: must be empty for operator {op}")
    return Requirement(key, op, frozenset(values))
