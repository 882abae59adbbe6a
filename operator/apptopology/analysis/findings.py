"""A topology against the real pods: the network policies guide's "common issues", found before they bite.

Policies can be exactly what a topology declares and still not do what its author meant, because the
topology does not fit the cluster: a tier whose selector matches no pod, a peer whose namespaceSelector
names a label no namespace carries (the guide's ``name: monitoring``), a port no container declares, or
hand-written policies of another namespace. Each finding names the topology's field (``spec.tiers[1]
.podSelector``), so the CLI can point at the line; ``verify`` fails on them, ``explain`` warns.

Pure: the inventory comes in as the evaluator's types (from manifests or the cluster).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..api.spec import AppTopology, Endpoint, LabelSelector, Port, plural, selector_matches, selector_yaml
from ..api.validation import Issue
from ..evaluator import NAME_LABEL, Inventory, Pod

MAX_LISTED = 5


@dataclass(frozen=True)
class Finding:
    """One problem of a topology on an inventory: the field responsible and what is wrong there.
    ``warning``: reported, but not a failure (the inventory cannot tell, e.g. pods that declare no ports)."""

    topology: str
    path: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        return str(self.issue())

    def issue(self) -> Issue:
        return Issue(self.path, self.message)


def _listed(items: Iterable[str]) -> str:
    items = sorted(set(items))
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def _near(selector: LabelSelector, pods: Sequence[Pod]) -> str:
    """What the pods carry instead, for the selector's matchLabels keys: the typo is usually visible there."""
    hints = []
    for key, wanted in (selector.match_labels or {}).items():
        values = {p.labels[key] for p in pods if key in p.labels}
        if not values:
            hints.append(f"no pod there has the label {key}")
        elif wanted not in values:
            hints.append(f"pods there have {key}: {_listed(values)}")
    return f" ({'; '.join(hints)})" if hints else ""


def _namespace_hint(selector: LabelSelector, inventory: Inventory) -> str:
    """The guide's trap: ``namespaceSelector: {matchLabels: {name: monitoring}}`` where namespace monitoring
    exists without that label. Say so, with both fixes."""
    names = {ns.name for ns in inventory.namespaces}
    for key, value in (selector.match_labels or {}).items():
        if key != NAME_LABEL and value in names:
            return (
                f": namespace {value} exists but has no label {key}={value}; label it "
                f"(kubectl label namespace {value} {key}={value}) or select it by name "
                f"(namespaceSelector: {{matchLabels: {{{NAME_LABEL}: {value}}}}})"
            )
    return ": namespaces are selected by their labels (kubectl get namespaces --show-labels)"


def _peer_pods(
    namespace_selector: LabelSelector | None,
    pod_selector: LabelSelector | None,
    where: str,
    home: str,
    inventory: Inventory,
    findings: list[tuple[str, str]],
    consequence: str = "",
) -> list[Pod] | None:
    """The pods a (namespaceSelector, podSelector) peer selects; appends (field, message) when it selects
    nothing. None: the peer is not a pod peer."""
    if namespace_selector is None and pod_selector is None:
        return None
    if namespace_selector is None:
        spaces = [home]
    else:
        spaces = [ns.name for ns in inventory.namespaces if selector_matches(namespace_selector, ns.labels)]
        if not spaces:
            shown = selector_yaml(namespace_selector)
            hint = _namespace_hint(namespace_selector, inventory)
            findings.append(
                (f"{where}.namespaceSelector", f"{shown} matches no namespace of the inventory{hint}{consequence}")
            )
            return []
    candidates = [p for p in inventory.pods if p.namespace in spaces]
    selector = pod_selector if pod_selector is not None else LabelSelector()
    pods = [p for p in candidates if selector_matches(selector, p.labels)]
    if not pods:
        field = f"{where}.podSelector" if pod_selector is not None else where
        in_spaces = f"namespace {spaces[0]}" if len(spaces) == 1 else f"namespaces {_listed(spaces)}"
        findings.append(
            (
                field,
                f"{selector_yaml(selector)} matches no pod in {in_spaces}{_near(selector, candidates)}{consequence}",
            )
        )
    return pods


def _declares(pod: Pod, port: Port) -> bool:
    if isinstance(port.port, str):
        return any(c.name == port.port and c.protocol == port.protocol for c in pod.ports)
    assert port.port is not None
    last = port.end_port or port.port
    return any(c.protocol == port.protocol and port.port <= c.port <= last for c in pod.ports)


def _port_findings(
    ports: Sequence[Port] | None, where: str, pods: Sequence[Pod], what: str
) -> list[tuple[str, str, bool]]:
    """(field, message, warning) for each port no container of ``pods`` declares."""
    out: list[tuple[str, str, bool]] = []
    if not pods:
        return out
    declared = {f"{c.protocol}/{c.port}" + (f" ({c.name})" if c.name else "") for p in pods for c in p.ports}
    for j, port in enumerate(ports or []):
        if port.port is None or any(_declares(p, port) for p in pods):
            continue
        if not declared:
            message = f"{port.label()}: the pods of {what} declare no container ports, so it cannot be checked"
            out.append((f"{where}[{j}]", message, True))
            continue
        kind = "named port" if isinstance(port.port, str) else "port"
        out.append(
            (
                f"{where}[{j}]",
                f"{kind} {port.label()} is declared by no container of {what} "
                f"(they declare {_listed(declared)}): traffic to it is allowed, but nothing listens there",
                False,
            )
        )
    return out


def check_inventory(topology: AppTopology, inventory: Inventory) -> list[Finding]:
    """Everything of ``topology`` that selects nothing, or a port nothing declares, on ``inventory``."""
    spec = topology.spec
    home = topology.metadata.namespace or "default"
    name = f"{home}/{topology.metadata.name}"
    if not any(ns.name == home for ns in inventory.namespaces):
        return [
            Finding(
                name,
                "metadata.namespace",
                f"namespace {home} is not in the inventory: none of its pods can be checked (give its pods and "
                "workloads with --inventory, e.g. kubectl get all,namespaces -o yaml, or use --cluster)",
            )
        ]
    local = [p for p in inventory.pods if p.namespace == home]
    raw: list[tuple[str, str]] = []
    tier_pods: dict[str, list[Pod]] = {}
    for i, tier in enumerate(spec.tiers):
        pods = [p for p in local if selector_matches(tier.pod_selector, p.labels)]
        tier_pods[tier.name] = pods
        if not pods:
            shown = selector_yaml(tier.pod_selector)
            raw.append(
                (
                    f"spec.tiers[{i}].podSelector",
                    f"tier {tier.name} selects no pod of namespace {home} ({shown}){_near(tier.pod_selector, local)}",
                )
            )

    def pods_of(endpoint: Endpoint, where: str) -> list[Pod] | None:
        if endpoint.tier is not None:
            return None  # a tier's own finding says it
        return _peer_pods(endpoint.namespace_selector, endpoint.pod_selector, where, home, inventory, raw)

    ports: list[tuple[str, str, bool]] = []
    for i, flow in enumerate(spec.flows):
        pods_of(flow.from_, f"spec.flows[{i}].from")
        peers = pods_of(flow.to, f"spec.flows[{i}].to")
        if flow.to.tier is not None:
            what, destination = f"tier {flow.to.tier}'s pods", tier_pods.get(flow.to.tier, [])
        else:
            what, destination = "the pods it selects", peers or []
        ports += _port_findings(flow.ports, f"spec.flows[{i}].ports", destination, what)
    isolates_egress = spec.default_deny.egress or any(spec.isolates(t, "egress") for t in spec.tiers)
    if spec.dns.enabled and isolates_egress and not spec.dns.discover:
        fails = ": name resolution of every pod isolated for egress will fail"
        dns = _peer_pods(spec.dns.namespace_selector, spec.dns.pod_selector, "spec.dns", home, inventory, raw, fails)
        ports += _port_findings(spec.dns.ports, "spec.dns.ports", dns or [], "the DNS pods")
    mon = spec.monitoring
    if mon.enabled:
        _peer_pods(mon.namespace_selector, mon.pod_selector, "spec.monitoring", home, inventory, raw)
        scraped = [p for t in (mon.tiers if mon.tiers is not None else spec.tier_names()) for p in tier_pods.get(t, [])]
        ports += _port_findings(mon.ports, "spec.monitoring.ports", scraped, "the scraped tiers' pods")
    return [Finding(name, f, m) for f, m in raw] + [Finding(name, f, m, warning) for f, m, warning in ports]


@dataclass(frozen=True)
class PolicyProblem:
    """A given NetworkPolicy that cannot be compared as given: ``index`` into the policies, the field, why."""

    index: int
    path: str
    message: str


def foreign_policies(
    topologies: Sequence[AppTopology], policies: Sequence[Mapping[str, object]]
) -> list[PolicyProblem]:
    """Policies of a namespace no topology of the input is in: verify compares a topology only with the
    policies of its own namespace, so these would silently count for nothing (and every flow look missing)."""
    homes = {t.metadata.namespace or "default": t for t in topologies}
    out = []
    for index, policy in enumerate(policies):
        meta = policy.get("metadata")
        namespace = meta.get("namespace") if isinstance(meta, Mapping) else None
        if not isinstance(namespace, str) or namespace in homes:
            continue
        name = meta.get("name") if isinstance(meta, Mapping) else None
        theirs = ", ".join(f"{t.metadata.name} in {ns}" for ns, t in sorted(homes.items()))
        out.append(
            PolicyProblem(
                index,
                "metadata.namespace",
                f"NetworkPolicy {name} is in namespace {namespace}, but the "
                f"{plural(len(homes), 'topology', 'topologies')} given {'is' if len(homes) == 1 else 'are'} not "
                f"({theirs}): it would be compared with nothing. "
                "Give the topology's namespace (metadata.namespace), or the policies of its namespace",
            )
        )
    return out


def duplicate_names(policies: Sequence[Mapping[str, object]]) -> list[tuple[str, list[int]]]:
    """``namespace/name`` of every NetworkPolicy name given more than once in a namespace, with the indexes:
    kubectl would keep only the last, so an analysis of all of them would not be of what the cluster gets."""
    seen: dict[str, list[int]] = {}
    for index, policy in enumerate(policies):
        meta = policy.get("metadata")
        if not isinstance(meta, Mapping):
            continue
        key = f"{meta.get('namespace') or 'default'}/{meta.get('name')}"
        seen.setdefault(key, []).append(index)
    return [(key, indexes) for key, indexes in seen.items() if len(indexes) > 1]
