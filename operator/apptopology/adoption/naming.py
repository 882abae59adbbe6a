"""Readable, stable names for tiers derived from labels (shared by import and suggest).

A reviewer reads ``frontend`` or ``shop-api``, not ``tier-3``: names come from the values of the labels
people use to name workloads, in a fixed order of keys, so the same selector always gets the same name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

# Keys whose values name a workload, most telling first; other keys follow in sorted order.
PREFERRED_KEYS = (
    "app.kubernetes.io/name",
    "app",
    "k8s-app",
    "name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "component",
    "tier",
    "role",
)
# Keys that never name anything (set by controllers, or per pod).
NOISE_KEYS = frozenset({"pod-template-hash", "controller-revision-hash", "statefulset.kubernetes.io/pod-name"})
MAX_NAME = 63
EVERY_POD = "all"


def _slug(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def _key_order(key: str) -> tuple[int, str]:
    return (PREFERRED_KEYS.index(key) if key in PREFERRED_KEYS else len(PREFERRED_KEYS), key)


def _short_key(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def selector_words(selector: Mapping[str, Any], qualified: bool = False) -> list[str]:
    """The words of a name for a label selector (a dict as Kubernetes spells it); ``qualified``: label values
    with their keys (``tier-api``), to tell apart selectors whose values alone read the same."""
    words: list[str] = []
    labels = selector.get("matchLabels") or {}
    for key in sorted(labels, key=_key_order):
        word = f"{_short_key(key)}-{labels[key]}" if qualified else str(labels[key])
        if key not in NOISE_KEYS and word not in words:
            words.append(word)
    for expr in sorted(selector.get("matchExpressions") or [], key=lambda e: _key_order(str(e.get("key")))):
        key, op, values = _short_key(str(expr.get("key"))), expr.get("operator"), sorted(expr.get("values") or [])
        if op == "In":
            words.append("-or-".join(values))
        elif op == "NotIn":
            words.append("not-" + "-".join(values))
        elif op == "Exists":
            words.append(f"with-{key}")
        else:
            words.append(f"without-{key}")
    return words


def base_name(words: Iterable[str], fallback: str) -> str:
    name = _slug("-".join(words))[: MAX_NAME - 4].strip("-")
    return name or fallback


def unique_names(items: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    """``(key, base, qualified)`` triples -> key: a unique DNS-1123 label: the base name where no other key
    wants it, else the qualified name, else with ``-2``, ``-3``... in the order of the keys (so the result
    depends on the input, not on its order)."""
    listed = list(items)
    wanted: dict[str, int] = {}
    for _, base, _ in listed:
        wanted[base] = wanted.get(base, 0) + 1
    chosen = [(key, base if wanted[base] == 1 else qualified) for key, base, qualified in listed]
    out: dict[str, str] = {}
    taken: set[str] = set()
    for key, base in sorted(chosen, key=lambda kb: (kb[1], kb[0])):
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name)
        out[key] = name
    return out


def canonical_selector(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """A label selector with the same meaning, in one spelling: labels sorted, expressions deduplicated and
    sorted with their values, empty parts dropped. Two selectors with this form equal select the same."""
    raw = raw or {}
    out: dict[str, Any] = {}
    labels = raw.get("matchLabels") or {}
    if labels:
        out["matchLabels"] = {k: labels[k] for k in sorted(labels)}
    exprs: dict[str, dict[str, Any]] = {}
    for expr in raw.get("matchExpressions") or []:
        entry: dict[str, Any] = {"key": expr["key"], "operator": expr["operator"]}
        if expr.get("values"):
            entry["values"] = sorted(set(expr["values"]))
        exprs.setdefault(json.dumps(entry, sort_keys=True), entry)
    if exprs:
        out["matchExpressions"] = [exprs[k] for k in sorted(exprs)]
    return out


def canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
