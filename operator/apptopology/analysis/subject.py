"""What a connectivity question is asked about: policies (given, or rendered from topologies), the
topologies, and an inventory (given, or synthesized from the input).

Pure glue between the renderer (topology -> policies), the evaluator (policies -> connectivity) and the
intent (topology -> declared connectivity); explain, verify, diff and namespace build on it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..api.spec import AppTopology, LabelSelector
from ..evaluator import Endpoint, External, Inventory, Namespace, Pod, parse_policies
from ..evaluator import NetworkPolicy as ParsedPolicy
from ..render.facts import OFFLINE, ClusterFacts
from ..render.renderer import render
from ..render.validation import parse_topology
from .intent import satisfying_labels, synthesize


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
