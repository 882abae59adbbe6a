"""Connectivity questions over topologies and policies: the matrix, one verdict, verify, diff.

Pure glue between the renderer (topology -> policies), the evaluator (policies -> connectivity) and the
intent (topology -> declared connectivity). The CLI formats what these functions return.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .api.spec import AppTopology, LabelSelector
from .evaluator import (
    ConnectivityMatrix,
    Endpoint,
    Evaluator,
    External,
    Inventory,
    Namespace,
    Pod,
    PortSet,
    Verdict,
    parse_policies,
)
from .evaluator import NetworkPolicy as ParsedPolicy
from .intent import Intent, satisfying_labels, synthesize
from .render.facts import OFFLINE, ClusterFacts
from .render.renderer import render


class AnalysisError(ValueError):
    """Input that cannot be analysed (unknown endpoint, malformed policy, ...): exit code 2."""


@dataclass(frozen=True)
class Subject:
    """What a command analyses: policies, the topologies they came from (if any), and an inventory."""

    policies: tuple[dict[str, Any], ...]
    topologies: tuple[AppTopology, ...]
    inventory: Inventory
    synthesized: bool
    parsed: tuple[ParsedPolicy, ...]  # the policies, parsed once (the expensive part of a large input)


def merge_inventories(inventories: Sequence[Inventory]) -> Inventory:
    namespaces: dict[str, Namespace] = {}
    pods: dict[tuple[str, str], Pod] = {}
    externals: dict[str, External] = {}
    for inv in inventories:
        for ns in inv.namespaces:
            if ns.name in namespaces and dict(namespaces[ns.name].labels) != dict(ns.labels):
                merged = {**dict(namespaces[ns.name].labels), **dict(ns.labels)}
                namespaces[ns.name] = Namespace(ns.name, merged)
            else:
                namespaces.setdefault(ns.name, ns)
        for pod in inv.pods:
            pods.setdefault((pod.namespace, pod.name), pod)
        for ext in inv.externals:
            externals.setdefault(ext.address, ext)
    return Inventory(tuple(namespaces.values()), tuple(pods.values()), tuple(externals.values()))


def _selector(raw: Mapping[str, Any] | None) -> LabelSelector | None:
    if raw is None:
        return None
    try:
        return LabelSelector.model_validate(raw)
    except ValueError:
        return None


def synthesize_from_policies(policies: Sequence[Mapping[str, Any]]) -> Inventory:
    """For hand-written policies without an inventory: a pod per selected group and per peer, plus the world."""
    namespaces: dict[str, Namespace] = {}
    pods: dict[tuple[str, str], Pod] = {}
    externals: dict[str, External] = {}
    for policy in policies:
        meta = policy.get("metadata") or {}
        spec = policy.get("spec") or {}
        ns = meta.get("namespace") or "default"
        namespaces.setdefault(ns, Namespace(ns))
        labels = satisfying_labels(_selector(spec.get("podSelector") or {}))
        if labels is not None:
            pods.setdefault((ns, f"{meta.get('name')}-target"), Pod(ns, f"{meta.get('name')}-target", labels))
        for direction, field in (("ingress", "from"), ("egress", "to")):
            for r, rule in enumerate(spec.get(direction) or []):
                for p, peer in enumerate(rule.get(field) or []):
                    name = f"{meta.get('name')}-{direction}{r}-peer{p}"
                    if "ipBlock" in peer:
                        cidr = ipaddress.ip_network(peer["ipBlock"]["cidr"], strict=False)
                        address = cidr.network_address + (cidr.num_addresses // 2 + 1 if cidr.num_addresses > 2 else 0)
                        externals.setdefault(
                            str(address), External(f"{address}/{address.max_prefixlen}", f"{address} ({name})")
                        )
                        continue
                    pod_labels = satisfying_labels(_selector(peer.get("podSelector") or {}))
                    if pod_labels is None:
                        continue
                    peer_ns = ns
                    if "namespaceSelector" in peer:
                        ns_labels = satisfying_labels(_selector(peer["namespaceSelector"]))
                        if ns_labels is None:
                            continue
                        peer_ns = ns_labels.get("kubernetes.io/metadata.name") or f"{name}-ns"
                        namespaces.setdefault(peer_ns, Namespace(peer_ns, ns_labels))
                    pods.setdefault((peer_ns, name), Pod(peer_ns, name, pod_labels))
    for ns in list(namespaces):
        pods.setdefault((ns, "unlabelled"), Pod(ns, "unlabelled", {}))
    namespaces.setdefault("apptopology-elsewhere", Namespace("apptopology-elsewhere"))
    pods.setdefault(("apptopology-elsewhere", "unlabelled"), Pod("apptopology-elsewhere", "unlabelled", {}))
    externals.setdefault("world", External("203.0.113.10/32", "203.0.113.10 (internet)"))
    return Inventory(tuple(namespaces.values()), tuple(pods.values()), tuple(externals.values()))


def subject(documents: Sequence[Any], inventory: Inventory | None, facts: ClusterFacts = OFFLINE) -> Subject:
    """Split input documents into topologies (rendered with ``facts``) and NetworkPolicies; pick or synthesize
    an inventory."""
    from .api.validation import parse_topology

    topologies: list[AppTopology] = []
    policies: list[dict[str, Any]] = []
    for doc in documents:
        if isinstance(doc, dict) and doc.get("kind") == "AppTopology":
            topology = parse_topology(doc)
            topologies.append(topology)
            policies.extend(render(topology, facts))
        elif isinstance(doc, dict) and doc.get("kind") in ("NetworkPolicy", "List"):
            policies.extend(doc.get("items") or [] if doc.get("kind") == "List" else [doc])
    for policy in policies:  # the evaluator needs the namespace; topologies without one render none
        policy.setdefault("metadata", {}).setdefault("namespace", "default")
    if not policies and not topologies:
        raise AnalysisError("no AppTopology or NetworkPolicy documents found")
    parsed = parse(policies)
    if inventory is not None:
        return Subject(tuple(policies), tuple(topologies), inventory, False, parsed)
    synthesized = [synthesize(t, facts) for t in topologies] or [synthesize_from_policies(policies)]
    return Subject(tuple(policies), tuple(topologies), merge_inventories(synthesized), True, parsed)


def parse(policies: Iterable[Mapping[str, Any]]) -> tuple[ParsedPolicy, ...]:
    try:
        return parse_policies(list(policies))
    except ValueError as exc:
        raise AnalysisError(str(exc)) from None


def display_name(endpoint: Endpoint, home: str | None = None) -> str:
    """Tier pods by tier name, workload pods by workload, other pods as ns/name, externals by address."""
    if isinstance(endpoint, External):
        return endpoint.ref
    if "tier-" in endpoint.name and endpoint.workload and endpoint.workload.startswith("tier "):
        tier = endpoint.workload.removeprefix("tier ")
        return tier if endpoint.namespace == home else f"{endpoint.namespace}/{tier}"
    if endpoint.workload and "/" in endpoint.workload:
        return f"{endpoint.namespace}/{endpoint.workload}"
    return endpoint.ref


@dataclass(frozen=True)
class Cell:
    source: Endpoint
    destination: Endpoint
    ports: PortSet


def governed(subj: Subject) -> set[str]:
    """Namespaces whose pods the analysed policies can select."""
    return {str((p.get("metadata") or {}).get("namespace") or "default") for p in subj.policies}


@dataclass(frozen=True)
class MatrixView:
    """The evaluated matrix, read lazily: a large inventory has millions of pairs, never materialized.

    Only pairs with at least one side in a governed namespace count (elsewhere these policies decide
    nothing), and a pod talking to itself is left out.
    """

    sources: list[Endpoint]
    destinations: list[Endpoint]
    result: ConnectivityMatrix
    homes: frozenset[str]

    def relevant(self, source: Endpoint, destination: Endpoint) -> bool:
        if source == destination:
            return False
        return any(isinstance(e, Pod) and e.namespace in self.homes for e in (source, destination))

    def cell(self, source: Endpoint, destination: Endpoint) -> PortSet | None:
        """The allowed ports, or None for a pair these policies do not decide."""
        return self.result[source, destination] if self.relevant(source, destination) else None

    def allowed(self) -> Iterator[tuple[Endpoint, Endpoint, PortSet]]:
        """Every relevant pair with something allowed, in time proportional to their number."""
        for sources, destinations, ports in self.result.groups(include_denied=False):
            for source in sources:
                for destination in destinations:
                    if self.relevant(source, destination):
                        yield source, destination, ports


def matrix(subj: Subject) -> MatrixView:
    """The connectivity matrix of ``subj``. In a synthesized inventory the near-miss pods are left out:
    they exist for verify, and would only clutter the table."""
    evaluator = Evaluator(subj.parsed, subj.inventory)
    endpoints = [
        e
        for e in subj.inventory.endpoints
        if not (subj.synthesized and isinstance(e, Pod) and (e.workload or "").startswith("near miss"))
    ]
    destinations = [e for e in endpoints if isinstance(e, Pod)] + [e for e in endpoints if isinstance(e, External)]
    return MatrixView(endpoints, destinations, evaluator.matrix(endpoints, destinations), frozenset(governed(subj)))


def resolve(name: str, subj: Subject) -> Endpoint:
    """NAMESPACE/POD (or NAMESPACE/Kind/workload), a tier of the topology, or an IP address."""
    inv = subj.inventory
    for pod in inv.pods:
        if name in (pod.ref, f"{pod.namespace}/{pod.workload}") and pod.workload != f"tier {name}":
            return pod
    for topology in subj.topologies:
        tier = next((t for t in topology.spec.tiers if t.name == name), None)
        if tier is None:
            continue
        home = topology.metadata.namespace or "default"
        intent = Intent(topology)
        for pod in inv.pods:
            if pod.namespace == home and name in intent.tiers_of(pod):
                return pod
        raise AnalysisError(f"tier {name!r} selects no pod of the inventory")
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return External(f"{address}/{address.max_prefixlen}")
    for external in inv.externals:
        if name == external.name:
            return external
    tiers = sorted({t.name for topology in subj.topologies for t in topology.spec.tiers})
    hint = f" (tiers: {', '.join(tiers)})" if tiers else ""
    raise AnalysisError(f"unknown endpoint {name!r}: give NAMESPACE/POD, a tier name or an IP address{hint}")


def explain_one(subj: Subject, source: str, destination: str, port: int, protocol: str) -> Verdict:
    evaluator = Evaluator(subj.parsed, subj.inventory)
    try:
        return evaluator.explain(resolve(source, subj), resolve(destination, subj), protocol, port)
    except ValueError as exc:
        raise AnalysisError(str(exc)) from None


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


@dataclass(frozen=True)
class Change:
    source: str
    destination: str
    added: PortSet
    removed: PortSet


def diff(old: Subject, new: Subject) -> list[Change]:
    """Connectivity added and removed between two revisions, over the union of their inventories."""
    inventory = old.inventory if not old.synthesized else merge_inventories([old.inventory, new.inventory])
    if not new.synthesized:
        inventory = new.inventory
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
                    )
                )
    return changes


# --- several topologies in one namespace -------------------------------------------------------------------

TOPOLOGY_LABEL = "apptopology.io/topology"


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

    A pod is judged by its own topology: the one whose tiers select it (each of them, when several do), or,
    for a pod in no tier of any of ``topologies``, every topology that isolates it (scope Namespace). A
    scope-Namespace topology isolates the other topologies' pods too, but what they may do is what their
    own topology declares, so their flows are not openings of it. A pair is judged in the direction(s) of
    its judged pods: the egress of a judged source, the ingress of a judged destination.
    """
    if not topologies:
        return []
    # Every item is a NetworkPolicy by contract; a LIST's items carry no kind (only the list does), and a
    # manifest without one is skipped by the parser: the namespace would be judged as empty.
    policies = [
        p if p.get("kind") else {**p, "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"} for p in policies
    ]
    parsed = parse(policies)
    if inventory is None:
        others = [p for p in policies if not any(_own(p, t) for t in topologies)]
        parts = [_named_after(synthesize(t, facts), t.metadata.name) for t in topologies]
        inventory = merge_inventories(parts + ([synthesize_from_policies(others)] if others else []))
    evaluator = Evaluator(parsed, inventory)
    endpoints = list(inventory.endpoints)
    result = evaluator.matrix(endpoints, endpoints)
    intents = [Intent(t, facts) for t in topologies]
    claimed = {e for e in endpoints if any(i.tiers_of(e) for i in intents)}
    out: list[Interaction] = []
    for topology, intent in zip(topologies, intents, strict=True):
        home = intent.namespace
        own = {str((p.get("metadata") or {}).get("name")) for p in policies if _own(p, topology)}
        judged = {
            e
            for e in endpoints
            if isinstance(e, Pod) and e.namespace == home and (intent.tiers_of(e) or e not in claimed)
        }
        for source in endpoints:
            for destination in endpoints:
                if source == destination or (source not in judged and destination not in judged):
                    continue
                egress = intent.egress(source, destination, inventory) if source in judged else PortSet.ALL
                ingress = intent.ingress(source, destination, inventory) if destination in judged else PortSet.ALL
                opened = result[source, destination].difference(egress.intersection(ingress))
                if opened.is_empty:
                    continue
                egress_denied = not opened.difference(egress).is_empty
                ingress_denied = not opened.difference(ingress).is_empty
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
