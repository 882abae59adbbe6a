"""Several topologies in one namespace: what a topology's intent denies that the namespace's policies allow
together (NetworkPolicies only add, so one topology's flows, DNS or monitoring can open another's pods)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..api.spec import AppTopology
from ..evaluator import Evaluator, Inventory, Pod, PortSet
from ..render.facts import OFFLINE, ClusterFacts
from ..render.renderer import TOPOLOGY_LABEL
from .intent import Intent, synthesize
from .subject import display_name, merge_inventories, parse, synthesize_from_policies


@dataclass(frozen=True)
class Interaction:
    """Connectivity a topology's intent denies that the namespace's policies together allow: another
    topology's (or a hand-written) policy opens it. ``responsible`` names the allowing rules in the
    direction(s) the topology denies that are not the topology's own."""

    topology: str
    namespace: str
    source: str
    destination: str
    ports: PortSet
    responsible: tuple[str, ...]

    def line(self) -> str:
        by = f" (allowed by {', '.join(self.responsible)})" if self.responsible else ""
        return f"{self.topology}: opened {self.source} -> {self.destination}: {self.ports}{by}"


def _own(policy: Mapping[str, Any], topology: AppTopology) -> bool:
    meta = policy.get("metadata") or {}
    home = topology.metadata.namespace or "default"
    return (meta.get("namespace") or "default") == home and (meta.get("labels") or {}).get(
        TOPOLOGY_LABEL
    ) == topology.metadata.name


def _named_after(inventory: Inventory, topology: str) -> Inventory:
    """The synthesized pods of one topology, named after it: those of two topologies must not merge into one
    (each topology's ``tier-api`` has its own labels)."""
    pods = []
    for pod in inventory.pods:
        workload = pod.workload
        if workload and workload.startswith("tier "):
            workload = f"{workload} of {topology}"
        pods.append(Pod(pod.namespace, f"{topology}.{pod.name}", pod.labels, pod.ip, pod.ports, workload))
    return Inventory(inventory.namespaces, tuple(pods), inventory.externals)


def _probes(ports: PortSet) -> list[tuple[str, int]]:
    """One (protocol, port) per protocol of ``ports``: enough to name the rules that allow them."""
    return [(protocol, next(iter(intervals))[0]) for protocol, intervals in ports.items()]


def namespace_interactions(
    topologies: Sequence[AppTopology],
    policies: Sequence[Mapping[str, Any]],
    inventory: Inventory | None = None,
    facts: ClusterFacts = OFFLINE,
) -> list[Interaction]:
    """Every pair that a topology's intent denies but the namespace's policies together allow.

    ``topologies`` are those of one namespace (or several: each is judged in its own); ``policies`` are all
    the policies there, the topologies' own included (for the operator: the live NetworkPolicies of the
    namespace; for the CLI: the topologies rendered, plus any others given). NetworkPolicies only add, so a
    topology's own policies can never be narrowed by another's, only widened: that is what is reported,
    attributed to the rules responsible (found by explaining one port per protocol of the difference).
    Without ``inventory`` one is synthesized from every topology and the other policies.
    """
    if not topologies:
        return []
    parsed = parse(policies)
    if inventory is None:
        others = [p for p in policies if not any(_own(p, t) for t in topologies)]
        parts = [_named_after(synthesize(t, facts), t.metadata.name) for t in topologies]
        inventory = merge_inventories(parts + ([synthesize_from_policies(others)] if others else []))
    evaluator = Evaluator(parsed, inventory)
    endpoints = list(inventory.endpoints)
    result = evaluator.matrix(endpoints, endpoints)
    out: list[Interaction] = []
    for topology in topologies:
        intent = Intent(topology, facts)
        home = intent.namespace
        own = {str((p.get("metadata") or {}).get("name")) for p in policies if _own(p, topology)}
        for source in endpoints:
            for destination in endpoints:
                if source == destination or not any(
                    isinstance(e, Pod) and e.namespace == home for e in (source, destination)
                ):
                    continue
                opened = result[source, destination].difference(intent.allowed(source, destination, inventory))
                if opened.is_empty:
                    continue
                egress_denied = not opened.difference(intent.egress(source, destination, inventory)).is_empty
                ingress_denied = not opened.difference(intent.ingress(source, destination, inventory)).is_empty
                responsible: dict[str, None] = {}
                for protocol, port in _probes(opened):
                    verdict = evaluator.explain(source, destination, protocol, port)
                    rules = [
                        *(verdict.egress.allowing_rules if egress_denied else ()),
                        *(verdict.ingress.allowing_rules if ingress_denied else ()),
                    ]
                    foreign = [r for r in rules if not (r.policy.namespace == home and r.policy.name in own)]
                    responsible.update(dict.fromkeys(str(r) for r in foreign or rules))
                out.append(
                    Interaction(
                        topology.metadata.name,
                        home,
                        display_name(source, home),
                        display_name(destination, home),
                        opened,
                        tuple(responsible),
                    )
                )
    return out
