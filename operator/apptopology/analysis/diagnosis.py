"""What a topology selects in the cluster right now, what looks wrong, and what enforcing it would deny.

The status the operator writes from here answers the questions users ask first ("why is my traffic
blocked?", "does this selector match anything?"): how many pods each tier selects, tiers that select
nothing, peers whose namespaceSelector matches no namespace, named ports none of the destination pods
declare, pods in two tiers at once, DNS selectors that select no DNS pod; and, in dry run, which
connections between the pods running now enforcing would deny.

Pure: pods and namespaces come in as the evaluator's inventory types (the operator's cache holds those).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..api.spec import AppTopology, Endpoint, LabelSelector, describe_selector, selector_matches
from ..evaluator import Evaluator, Inventory, Namespace, Pod

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class TierReport:
    name: str
    pods: int
    warnings: tuple[str, ...]

    def to_status(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "pods": self.pods}
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


@dataclass(frozen=True)
class Report:
    tiers: tuple[TierReport, ...]
    pods: int  # distinct pods in some tier
    warnings: tuple[str, ...]  # about the topology as a whole

    @property
    def warning_count(self) -> int:
        return len(self.warnings) + sum(len(t.warnings) for t in self.tiers)


def _namespaces_matching(selector: LabelSelector, namespaces: Iterable[Namespace]) -> list[str]:
    return [ns.name for ns in namespaces if selector_matches(selector, ns.labels)]


def _declares(pod: Pod, name: str, protocol: str) -> bool:
    return any(p.name == name and p.protocol == protocol for p in pod.ports)


def diagnose(topology: AppTopology, pods: Sequence[Pod], namespaces: Sequence[Namespace]) -> Report:
    """The report for ``topology`` over the cluster's ``pods`` and ``namespaces`` (all of them, or at
    least the topology's namespace and the namespaces its peers may select)."""
    home = topology.metadata.namespace or ""
    local = [p for p in pods if p.namespace == home]
    spec = topology.spec
    selected = {t.name: {p for p in local if selector_matches(t.pod_selector, p.labels)} for t in spec.tiers}
    notes: dict[str, list[str]] = {t.name: [] for t in spec.tiers}
    for tier in spec.tiers:
        if not selected[tier.name]:
            notes[tier.name].append(f"selects no pods ({describe_selector(tier.pod_selector)} in {home})")
    for i, tier in enumerate(spec.tiers):
        for other in spec.tiers[i + 1 :]:
            both = selected[tier.name] & selected[other.name]
            if both:
                notes[tier.name].append(f"{len(both)} of its pods are also in tier {other.name}")
                notes[other.name].append(f"{len(both)} of its pods are also in tier {tier.name}")
    for index, flow in enumerate(spec.flows):
        for side, endpoint, far in (("from", flow.from_, flow.to), ("to", flow.to, flow.from_)):
            problem = _peer_problem(endpoint, namespaces)
            if far.tier is not None and problem:
                notes[far.tier].append(f"spec.flows[{index}].{side}: {problem}")
        destination = flow.to.tier
        if destination is not None and selected[destination]:
            for port in flow.ports or []:
                if isinstance(port.port, str) and not any(
                    _declares(p, port.port, port.protocol) for p in selected[destination]
                ):
                    notes[destination].append(
                        f"spec.flows[{index}]: named port {port.port}/{port.protocol} is declared by none of its pods"
                    )
    warnings = []
    if spec.dns.enabled and spec.default_deny.egress:
        dns_pods = [
            p
            for p in pods
            if (spec.dns.namespace_selector is None and p.namespace == home)
            or (
                spec.dns.namespace_selector is not None
                and selector_matches(spec.dns.namespace_selector, _labels_of(p.namespace, namespaces))
            )
        ]
        if spec.dns.pod_selector is not None:
            dns_pods = [p for p in dns_pods if selector_matches(spec.dns.pod_selector, p.labels)]
        if not dns_pods:
            warnings.append("spec.dns selects no pod: name resolution of every isolated pod will fail")
    monitors = spec.monitoring.namespace_selector
    if spec.monitoring.enabled and monitors is not None and not _namespaces_matching(monitors, namespaces):
        warnings.append("spec.monitoring.namespaceSelector matches no namespace")
    tiers = tuple(TierReport(t.name, len(selected[t.name]), tuple(notes[t.name])) for t in spec.tiers)
    in_some_tier = set().union(*selected.values()) if selected else set()
    return Report(tiers, len(in_some_tier), tuple(warnings))


def _labels_of(namespace: str, namespaces: Sequence[Namespace]) -> Mapping[str, str]:
    for ns in namespaces:
        if ns.name == namespace:
            return ns.labels
    return {"kubernetes.io/metadata.name": namespace}


def _peer_problem(endpoint: Endpoint, namespaces: Sequence[Namespace]) -> str | None:
    selector = endpoint.namespace_selector
    if selector is None:
        return None
    if not _namespaces_matching(selector, namespaces):
        return f"namespaceSelector {describe_selector(selector)} matches no namespace"
    return None


@dataclass(frozen=True)
class Denied:
    count: int
    examples: tuple[str, ...]


def denied_connections(
    before: Iterable[Mapping[str, object]],
    after: Iterable[Mapping[str, object]],
    pods: Sequence[Pod],
    namespaces: Sequence[Namespace],
    namespace: str,
) -> Denied:
    """Pairs of the running pods of ``namespace`` that the policies ``before`` allow on some port and the
    policies ``after`` (before plus the topology's) no longer allow on it."""
    local = tuple(p for p in pods if p.namespace == namespace)
    inventory = Inventory(tuple(namespaces), local, ())
    old, new = Evaluator(list(before), inventory), Evaluator(list(after), inventory)
    count, examples = 0, list[str]()
    for src in local:
        for dst in local:
            if src == dst:
                continue
            lost = old.allowed(src, dst).difference(new.allowed(src, dst))
            if lost.is_empty:
                continue
            count += 1
            if len(examples) < MAX_EXAMPLES:
                examples.append(f"{src.namespace}/{src.name} -> {dst.namespace}/{dst.name}: {_ports(lost)}")
    return Denied(count, tuple(examples))


def _ports(ports: object) -> str:
    text = str(ports)
    return text if len(text) <= 80 else text[:77] + "..."
