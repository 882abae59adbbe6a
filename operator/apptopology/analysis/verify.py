"""verify: every pair where the policies' connectivity differs from a topology's declared intent."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..api.spec import AppTopology
from ..evaluator import Endpoint, Evaluator, Inventory, Pod, PortSet
from ..render.facts import OFFLINE, ClusterFacts
from .explain import describe_flow
from .intent import Intent, synthesize
from .subject import display_name, parse


@dataclass(frozen=True)
class Difference:
    """Connectivity that the policies allow but the topology does not declare (extra), or vice versa."""

    topology: str
    source: str
    destination: str
    extra: PortSet
    missing: PortSet
    # The pair itself, for callers that explain the difference (import names the input rules behind it).
    endpoints: tuple[Endpoint, Endpoint] | None = dataclasses.field(default=None, compare=False)

    def lines(self) -> list[str]:
        out = []
        if not self.extra.is_empty:
            out.append(f"{self.topology}: extra   {self.source} -> {self.destination}: {self.extra}")
        if not self.missing.is_empty:
            out.append(f"{self.topology}: missing {self.source} -> {self.destination}: {self.missing}")
        return out


def verify(
    topology: AppTopology,
    policies: Sequence[Mapping[str, Any]],
    inventory: Inventory | None,
    facts: ClusterFacts = OFFLINE,
) -> list[Difference]:
    """Every pair of endpoints where the policies' connectivity differs from the declared intent (given
    ``facts`` about the cluster: DNS discovery, the API server's addresses).

    Only pairs touching the topology's namespace are compared: elsewhere the topology declares nothing.
    """
    inv = inventory if inventory is not None else synthesize(topology, facts)
    intent = Intent(topology, facts)
    home = intent.namespace
    evaluator = Evaluator(parse(policies), inv)
    endpoints = list(inv.endpoints)
    result = evaluator.matrix(endpoints, endpoints)
    diffs = []
    for source in endpoints:
        for destination in endpoints:
            if source == destination:
                continue
            if not any(isinstance(e, Pod) and e.namespace == home for e in (source, destination)):
                continue
            actual = result[source, destination]
            declared = intent.allowed(source, destination, inv)
            if actual != declared:
                diffs.append(
                    Difference(
                        topology.metadata.name,
                        display_name(source, home),
                        display_name(destination, home),
                        actual.difference(declared),
                        declared.difference(actual),
                        (source, destination),
                    )
                )
    return diffs


# --- differences grouped by what causes them ----------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """Differences with one cause: for ``extra`` the policy rules (or the missing isolation) that allow
    what the topology denies; for ``missing`` the declared flows (or DNS, monitoring) the policies deny."""

    kind: str  # "extra" or "missing"
    cause: str
    differences: tuple[Difference, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cause": self.cause,
            "count": len(self.differences),
            "pairs": [
                {"from": d.source, "to": d.destination, "ports": str(d.extra if self.kind == "extra" else d.missing)}
                for d in self.differences
            ],
        }


def probe(ports: PortSet) -> tuple[str, int]:
    protocol, intervals = next(iter(ports.items()))
    return protocol, next(iter(intervals))[0]


def declared_by(intent: Intent, source: Endpoint, destination: Endpoint, ports: PortSet, inv: Inventory) -> list[str]:
    """The parts of the topology that declare any of ``ports`` from ``source`` to ``destination``."""
    spec = intent.topology.spec
    out = []
    for i, flow in enumerate(spec.flows):
        if (
            intent.matches(flow.from_, source, inv)
            and intent.matches(flow.to, destination, inv, destination=True)
            and not Intent.ports(flow.ports, destination).intersection(ports).is_empty
        ):
            out.append(f"spec.flows[{i}] ({describe_flow(flow)})")
    if spec.dns.enabled and not intent.dns(destination, inv).intersection(ports).is_empty:
        out.append("spec.dns")
    mon = spec.monitoring
    if (
        mon.enabled
        and intent.tiers_of(destination)
        and intent.peer_matches(mon.namespace_selector, mon.pod_selector, source, inv)
        and not Intent.ports(mon.ports, destination).intersection(ports).is_empty
    ):
        out.append("spec.monitoring")
    return out


def _few(names: list[str], most: int = 5) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _isolation(intent: Intent, pod: Endpoint, direction: str) -> str:
    """Why the topology isolates ``pod`` in ``direction``, which no policy does: the cause of what is open."""
    deny = intent.topology.spec.default_deny
    if deny.scope == "Namespace" and getattr(deny, direction):
        why = f"spec.defaultDeny isolates every pod of {intent.namespace} for {direction}"
    else:
        tiers = intent.isolated_tiers(pod, direction)
        why = f"tier {', '.join(tiers)} is isolated for {direction}" if tiers else f"isolated for {direction}"
    return f"{why}, but no policy isolates"


def group(
    topology: AppTopology,
    policies: Sequence[Mapping[str, Any]],
    differences: Sequence[Difference],
    inventory: Inventory | None,
    facts: ClusterFacts = OFFLINE,
) -> list[Group]:
    """``differences`` (from :func:`verify` of the same arguments) grouped by cause, largest group first.

    One port per protocol of each difference is explained by the evaluator; the allowing rules in the
    direction the topology denies name an extra's cause, the declared flows a missing one's (with the
    direction the policies deny)."""
    inv = inventory if inventory is not None else synthesize(topology, facts)
    intent = Intent(topology, facts)
    evaluator = Evaluator(parse(policies), inv)
    groups: dict[tuple[str, str], list[Difference]] = {}
    open_pods: dict[tuple[str, str], dict[str, None]] = {}  # isolation causes: the pods left open
    home = intent.namespace
    for d in differences:
        if d.endpoints is None:
            continue
        source, destination = d.endpoints
        if not d.extra.is_empty:
            protocol, port = probe(d.extra)
            verdict = evaluator.explain(source, destination, protocol, port)
            cause = "allowed by the policies"
            for direction, declared, pod in (
                (verdict.egress, intent.egress(source, destination, inv), source),
                (verdict.ingress, intent.ingress(source, destination, inv), destination),
            ):
                if declared.contains(protocol, port):
                    continue  # the topology allows this direction: not the cause
                if direction.status == "not-isolated":
                    cause = _isolation(intent, pod, direction.direction)
                    open_pods.setdefault(("extra", cause), {})[display_name(pod, home)] = None
                elif direction.allowing_rules:
                    cause = "allowed by " + ", ".join(map(str, direction.allowing_rules))
                break  # the first direction the topology denies is the cause; one cause per pair
            groups.setdefault(("extra", cause), []).append(d)
        if not d.missing.is_empty:
            protocol, port = probe(d.missing)
            verdict = evaluator.explain(source, destination, protocol, port)
            by = ", ".join(declared_by(intent, source, destination, d.missing, inv)) or "the topology"
            denied = [v.direction for v in (verdict.egress, verdict.ingress) if not v.allowed]
            where = f" (the policies deny its {' and '.join(denied)})" if denied else ""
            groups.setdefault(("missing", f"declared by {by}{where}"), []).append(d)
    named = {key: f"{key[1]}: {_few(list(pods))}" for key, pods in open_pods.items()}
    groups = {(kind, named.get((kind, cause), cause)): items for (kind, cause), items in groups.items()}
    out = [Group(kind, cause, tuple(items)) for (kind, cause), items in groups.items()]
    out.sort(key=lambda g: (-len(g.differences), g.kind, g.cause))
    return out
