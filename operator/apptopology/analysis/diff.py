"""diff: connectivity added and removed between two revisions (topologies or policy sets), and what in
each revision causes it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..evaluator import DirectionVerdict, Endpoint, Evaluator, Inventory, PortSet
from .intent import Intent
from .subject import Subject, display_name, merge_inventories
from .verify import declared_by, probe


@dataclass(frozen=True)
class Change:
    source: str
    destination: str
    added: PortSet
    removed: PortSet
    endpoints: tuple[Endpoint, Endpoint] | None = dataclasses.field(default=None, compare=False)


def _inventory(old: Subject, new: Subject) -> Inventory:
    inventory = old.inventory if not old.synthesized else merge_inventories([old.inventory, new.inventory])
    return new.inventory if not new.synthesized else inventory


def diff(old: Subject, new: Subject) -> list[Change]:
    """Connectivity added and removed between two revisions, over the union of their inventories."""
    inventory = _inventory(old, new)
    before = Evaluator(old.parsed, inventory)
    after = Evaluator(new.parsed, inventory)
    endpoints = list(inventory.endpoints)
    a = before.matrix(endpoints, endpoints)
    b = after.matrix(endpoints, endpoints)
    homes = {t.metadata.namespace or "default" for t in (*old.topologies, *new.topologies)}
    home = next(iter(homes)) if len(homes) == 1 else None
    changes = []
    for source in endpoints:
        for destination in endpoints:
            if source == destination:
                continue
            was, now = a[source, destination], b[source, destination]
            if was != now:
                changes.append(
                    Change(
                        display_name(source, home),
                        display_name(destination, home),
                        now.difference(was),
                        was.difference(now),
                        (source, destination),
                    )
                )
    return changes


@dataclass(frozen=True)
class ChangeGroup:
    """Changes of one kind (``added`` or ``removed``) with one cause in the revision that has the access."""

    kind: str
    cause: str
    changes: tuple[Change, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cause": self.cause,
            "count": len(self.changes),
            "pairs": [
                {"from": c.source, "to": c.destination, "ports": str(c.added if self.kind == "added" else c.removed)}
                for c in self.changes
            ],
        }


def _rules(verdict: DirectionVerdict) -> set[str]:
    return {str(r) for r in verdict.allowing_rules}


def _cause(
    subj: Subject, other: Evaluator, this: Evaluator, source: Endpoint, destination: Endpoint, ports: PortSet
) -> tuple[str, Endpoint | None]:
    """Why ``this`` revision (``subj``) allows ``ports`` that ``other`` does not: the declared flows when it
    is a topology, else the rules that differ, or the pod it leaves open (returned, for the cause's list)."""
    flows = [
        f"{t.metadata.name} {part}"
        for t in subj.topologies
        for part in declared_by(Intent(t), source, destination, ports, this.inventory)
    ]
    if flows:
        return ", ".join(flows), None
    protocol, port = probe(ports)
    now, then = this.explain(source, destination, protocol, port), other.explain(source, destination, protocol, port)
    for mine, theirs, pod in ((now.egress, then.egress, source), (now.ingress, then.ingress, destination)):
        if theirs.allowed:
            continue
        if mine.status == "not-isolated":
            return f"no policy isolates for {mine.direction}", pod
        return "allowed by " + ", ".join(sorted(_rules(mine) - _rules(theirs)) or sorted(_rules(mine))), None
    return "the policies", None


def group(old: Subject, new: Subject, changes: list[Change]) -> list[ChangeGroup]:
    """``changes`` (from :func:`diff` of the same subjects) grouped by cause: what the new revision
    declares (or allows) for added connectivity, what the old one did for removed; largest group first."""
    inventory = _inventory(old, new)
    before, after = Evaluator(old.parsed, inventory), Evaluator(new.parsed, inventory)
    groups: dict[tuple[str, str], list[Change]] = {}
    open_pods: dict[tuple[str, str], dict[str, None]] = {}
    for change in changes:
        if change.endpoints is None:
            continue
        source, destination = change.endpoints
        for kind, ports, subj, others, this in (
            ("added", change.added, new, before, after),
            ("removed", change.removed, old, after, before),
        ):
            if ports.is_empty:
                continue
            cause, pod = _cause(subj, others, this, source, destination, ports)
            if pod is not None:
                open_pods.setdefault((kind, cause), {})[change.source if pod == source else change.destination] = None
            groups.setdefault((kind, cause), []).append(change)
    named = {
        key: f"{key[1]}: {', '.join(list(pods)[:5])}" + ("..." if len(pods) > 5 else "")
        for key, pods in open_pods.items()
    }
    groups = {(kind, named.get((kind, cause), cause)): items for (kind, cause), items in groups.items()}
    out = [ChangeGroup(kind, cause, tuple(items)) for (kind, cause), items in groups.items()]
    out.sort(key=lambda g: (-len(g.changes), g.kind, g.cause))
    return out
