"""Suggest an AppTopology from observed flows, and audit a topology against them.

What the evidence shows, and no more: one tier per observed workload (its identifying labels), a flow per
observed (source, destination) with exactly the observed ports, external addresses as exact ``/32`` or
``/128`` ipBlocks (or aggregated, when asked), DNS lookups as ``dns``, scope Namespace (every pod of the
namespace isolated, also the ones never seen). Replies are not flows. Every flow says its evidence: how
many records, first and last seen. What cannot be placed (node traffic, unknown endpoints, ICMP, pods
without labels) is listed with the reason, never dropped silently.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..api.spec import MAX_FLOWS, MAX_PORTS, MAX_TIERS, AppTopology, plural
from ..api.validation import InvalidTopology
from ..evaluator import NAME_LABEL, Evaluator, External, Inventory, Namespace, Pod
from ..render.renderer import render
from ..render.validation import parse_topology
from .flows import Observation, Peer, valid_address
from .naming import NOISE_KEYS, base_name, canon, unique_names

# Labels that say what a workload is (not which version, which pod): a tier's selector uses these.
IDENTIFYING = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app",
    "component",
    "tier",
    "role",
    "k8s-app",
    "name",
)
DNS_APPS = {"kube-dns", "coredns", "dns-default", "node-local-dns"}
# The cluster's own namespaces: a topology there isolates what every namespace depends on.
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
MAX_LISTED = 200


@dataclass
class Evidence:
    """How often and when a suggested flow (or an unplaced or denied one) was seen."""

    count: int = 0
    first: str | None = None
    last: str | None = None
    lines: list[int] = field(default_factory=list)
    names: set[str] = field(default_factory=set)

    def add(self, observation: Observation) -> None:
        self.count += observation.count
        if observation.time:
            self.first = min(self.first or observation.time, observation.time)
            self.last = max(self.last or observation.time, observation.time)
        if len(self.lines) < 3:
            self.lines.append(observation.line)
        self.names.update(observation.names[:4])

    def text(self) -> str:
        when = f", first {self.first}, last {self.last}" if self.first else ""
        names = f" (names: {', '.join(sorted(self.names)[:3])})" if self.names else ""
        return f"observed {plural(self.count, 'time')}{when}{names}"


@dataclass(frozen=True)
class Listed:
    """A flow that is not suggested: why, and its evidence."""

    flow: str
    reason: str
    evidence: Evidence

    def __str__(self) -> str:
        return f"{self.flow}: {self.reason}; {self.evidence.text()} (line {', '.join(map(str, self.evidence.lines))})"


@dataclass
class Suggested:
    namespace: str
    document: dict[str, Any] | None = None
    topology: AppTopology | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Suggestion:
    topologies: list[Suggested]
    unplaced: list[Listed]
    denied: list[Listed]
    replies: int = 0
    records: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # namespace, why it is not suggested


def _is_dns(observation: Observation) -> bool:
    destination = observation.destination
    if observation.port != 53 or observation.protocol not in ("UDP", "TCP") or destination.kind != "pod":
        return False
    labels = dict(destination.labels)
    return bool(DNS_APPS & {labels.get("k8s-app"), labels.get("app.kubernetes.io/name"), labels.get("app")})


def _aggregate(address: str, v4: int | None, v6: int | None) -> str:
    ip = ipaddress.ip_address(address)
    length = (v4 if ip.version == 4 else v6) or ip.max_prefixlen
    return str(ipaddress.ip_network(f"{ip}/{length}", strict=False))


class _Workloads:
    """Pods grouped by workload (owner, else identifying labels), each group with a selector for its pods."""

    def __init__(self) -> None:
        self.groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)

    @staticmethod
    def key(peer: Peer) -> tuple[str, str]:
        labels = dict(peer.labels)
        ident = {k: labels[k] for k in IDENTIFYING if k in labels}
        return (str(peer.namespace), peer.workload or canon(ident or labels))

    def add(self, peer: Peer) -> None:
        self.groups[self.key(peer)].append({k: v for k, v in peer.labels if k not in NOISE_KEYS})

    def selectors(self) -> dict[tuple[str, str], dict[str, str] | None]:
        """The labels every observed pod of a group has: its identifying ones, or all of them where those
        would also select another observed group of the namespace (or are missing); None: no labels."""
        common: dict[tuple[str, str], dict[str, str]] = {}
        for key, pods in self.groups.items():
            shared = dict(pods[0])
            for labels in pods[1:]:
                shared = {k: v for k, v in shared.items() if labels.get(k) == v}
            common[key] = shared
        out: dict[tuple[str, str], dict[str, str] | None] = {}
        for key, shared in common.items():
            ident = {k: v for k, v in shared.items() if k in IDENTIFYING}
            others = [c for k, c in common.items() if k != key and k[0] == key[0]]
            if not ident or any(all(o.get(k) == v for k, v in ident.items()) for o in others):
                ident = shared
            out[key] = dict(sorted(ident.items())) or None
        return out


def _name(key: tuple[str, str], selector: Mapping[str, str]) -> tuple[str, str]:
    workload = key[1].split("/", 1)[1] if "/" in key[1] and not key[1].startswith("{") else ""
    words = [selector[k] for k in IDENTIFYING if k in selector][:2] or ([workload] if workload else [])
    words = words or list(selector.values())[:2]
    qualified = [workload] if workload else [f"{k.rsplit('/', 1)[-1]}-{v}" for k, v in selector.items()]
    return base_name(words, "pods"), base_name(qualified, "pods")


def suggest(
    observations: Iterable[Observation],
    namespaces: Sequence[str] = (),
    aggregate: tuple[int | None, int | None] = (None, None),
) -> Suggestion:
    """A topology per namespace of the observed pods (or of ``namespaces``) from ``observations``."""
    unplaced: dict[tuple[str, str], Evidence] = defaultdict(Evidence)
    denied: dict[str, Evidence] = defaultdict(Evidence)
    kept: list[Observation] = []
    replies = records = 0
    workloads = _Workloads()
    for o in observations:
        records += o.count
        if o.reply:
            replies += o.count
            continue
        if o.verdict == "other":
            continue
        flow = f"{o.source} -> {o.destination} {o.protocol or 'non-TCP/UDP/SCTP'}/{o.port or '-'}"
        reason = None
        if o.protocol is None or o.port is None:
            reason = "not TCP, UDP or SCTP with a port (ICMP and the like): NetworkPolicy cannot name it"
        elif "node" in (o.source.kind, o.destination.kind):
            reason = "node traffic (kubelet probes, host-network pods): NetworkPolicy does not govern it"
        elif "unknown" in (o.source.kind, o.destination.kind):
            reason = "an endpoint that is neither a pod, an external address nor the API server"
        elif o.source.kind == "kubeAPI":
            reason = "the API server as a source (a webhook call): declare an ipBlock of its addresses"
        elif "pod" not in (o.source.kind, o.destination.kind):
            reason = "neither side is a pod"
        elif any(p.kind == "pod" and not p.labels for p in (o.source, o.destination)):
            reason = "a pod without labels cannot be selected"
        elif any(p.kind == "external" and valid_address(p.address) is None for p in (o.source, o.destination)):
            reason = "an external endpoint without a valid IP address"
        if reason is not None:
            unplaced[(flow, reason)].add(o)
            continue
        if o.verdict == "denied":
            denied[flow].add(o)
            continue
        for peer in (o.source, o.destination):
            if peer.kind == "pod":
                workloads.add(peer)
        kept.append(o)
    selectors = workloads.selectors()
    wanted = set(namespaces) or {ns for ns, _ in workloads.groups}
    skipped = [] if namespaces else _unsafe(wanted, kept)
    wanted -= {ns for ns, _ in skipped}
    topologies = [
        _topology(ns, [o for o in kept if ns in (o.source.namespace, o.destination.namespace)], selectors, aggregate)
        for ns in sorted(wanted)
    ]
    return Suggestion(
        topologies,
        [Listed(flow, reason, e) for (flow, reason), e in sorted(unplaced.items(), key=lambda kv: -kv[1].count)],
        [
            Listed(flow, "denied when observed: not suggested", e)
            for flow, e in sorted(denied.items(), key=lambda kv: -kv[1].count)
        ],
        replies,
        records,
        skipped,
    )


def _unsafe(namespaces: set[str], observations: Sequence[Observation]) -> list[tuple[str, str]]:
    """Namespaces a suggestion would break the cluster in, unless named with -n: the cluster's own, and
    those serving DNS (pods receiving lookups) with no observed lookup of their own upstream: isolating
    their egress on evidence that never saw it would stop name resolution for every namespace."""
    serving = {o.destination.namespace for o in observations if _is_dns(o)}
    upstream = {
        o.source.namespace
        for o in observations
        if o.source.kind == "pod"
        and o.port == 53
        and not (o.destination.kind == "pod" and o.destination.namespace == o.source.namespace)
    }
    out = []
    for namespace in sorted(namespaces):
        if namespace in SYSTEM_NAMESPACES:
            out.append((namespace, "a namespace of the cluster itself"))
        elif namespace in serving and namespace not in upstream:
            why = "it serves DNS and no lookup of its DNS servers' upstream was observed"
            out.append((namespace, f"{why}: isolating its egress would stop name resolution cluster-wide"))
    return out


def _topology(
    namespace: str,
    observations: list[Observation],
    selectors: Mapping[tuple[str, str], dict[str, str] | None],
    aggregate: tuple[int | None, int | None],
) -> Suggested:
    result = Suggested(namespace)
    keys = sorted({_Workloads.key(p) for o in observations for p in (o.source, o.destination) if p.kind == "pod"})
    mine = [k for k in keys if k[0] == namespace and selectors.get(k)]
    names = unique_names((canon(k), *_name(k, selectors[k] or {})) for k in mine)
    tier_of = {k: names[canon(k)] for k in mine}
    flows: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any], Counter[tuple[str, int]], Evidence]] = {}
    dns: dict[str, tuple[dict[str, Any], set[str], Evidence]] = {}
    dns_sources: set[str] = set()

    def endpoint(peer: Peer) -> dict[str, Any]:
        if peer.kind == "kubeAPI":
            return {"kubeAPI": True}
        if peer.kind == "external":
            return {"ipBlock": {"cidr": _aggregate(str(peer.address), *aggregate)}}
        key = _Workloads.key(peer)
        if key in tier_of:
            return {"tier": tier_of[key]}
        return {
            "namespaceSelector": {"matchLabels": {NAME_LABEL: str(peer.namespace)}},
            "podSelector": {"matchLabels": selectors.get(key) or {}},
        }

    for o in observations:
        source, destination = endpoint(o.source), endpoint(o.destination)
        if "tier" not in source and "tier" not in destination:
            continue
        if _is_dns(o) and "tier" in source:
            peer = {"namespaceSelector": destination["namespaceSelector"], "podSelector": destination["podSelector"]}
            entry = dns.setdefault(canon(peer), (peer, set(), Evidence()))
            entry[1].add(str(o.protocol))
            entry[2].add(o)
            dns_sources.add(source["tier"])
            continue
        flow = flows.setdefault((canon(source), canon(destination)), (source, destination, Counter(), Evidence()))
        if "kubeAPI" not in destination:
            flow[2][(str(o.protocol), int(o.port or 0))] += o.count
        flow[3].add(o)
    spec: dict[str, Any] = {"defaultDeny": {"scope": "Namespace", "ingress": True, "egress": True}}
    if dns:
        peer, protocols, evidence = max(dns.values(), key=lambda e: e[2].count)
        spec["dns"] = {**peer, "ports": [{"port": 53, "protocol": p} for p in sorted(protocols, reverse=True)]}
        result.notes.append(
            f"dns: every tier may resolve names; lookups observed from {', '.join(sorted(dns_sources))}, "
            f"{evidence.text()}"
        )
        for other, protocols_, evidence_ in dns.values():
            if other is not peer:
                flows[("dns", canon(other))] = (
                    {"tier": sorted(dns_sources)[0]},
                    other,
                    Counter({(p, 53): evidence_.count for p in protocols_}),
                    evidence_,
                )
    else:
        spec["dns"] = {"enabled": False}
        result.notes.append(
            "dns: no DNS lookup observed, so dns.enabled is false; enable it if these pods resolve names"
        )
    tiers = sorted(tier_of.items(), key=lambda kv: kv[1])
    if len(tiers) > MAX_TIERS:
        result.error = f"{len(tiers)} workloads observed, and a topology has at most {MAX_TIERS} tiers"
        return result
    spec["tiers"] = [{"name": name, "podSelector": {"matchLabels": selectors[key]}} for key, name in tiers]
    entries = []
    for source, destination, ports, evidence in sorted(flows.values(), key=lambda f: (canon(f[0]), canon(f[1]))):
        listed = [{"port": p, **({"protocol": proto} if proto != "TCP" else {})} for proto, p in sorted(ports)]
        chunks = [listed[i : i + MAX_PORTS] for i in range(0, len(listed), MAX_PORTS)] or [[]]
        for chunk in chunks:
            item: dict[str, Any] = {"from": source, "to": destination}
            if chunk:
                item["ports"] = chunk
            item["description"] = evidence.text()[:512]
            entries.append(item)
    if len(entries) > MAX_FLOWS:
        result.notes.append(f"{len(entries) - MAX_FLOWS} flows left out: a topology takes at most {MAX_FLOWS}")
        entries = entries[:MAX_FLOWS]
    spec["flows"] = entries
    spec["enforcement"] = "DryRun"
    document = {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": namespace, "namespace": namespace},
        "spec": spec,
    }
    if not tiers:
        result.error = f"no workload of namespace {namespace} was observed in a flow that can be placed"
        return result
    try:
        result.topology = parse_topology(document)
    except InvalidTopology as exc:
        result.error = "the suggested topology is not valid: " + "; ".join(str(i) for i in exc.issues)
        return result
    result.document = document
    return result


# --- the audit ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Audited:
    flow: str
    allowed: bool | None  # None: cannot be judged (see reason)
    evidence: Evidence
    reason: str = ""


def _pod(peer: Peer) -> Pod:
    name = (peer.workload or "pod").replace("/", "-") + "-" + canon(dict(peer.labels))
    return Pod(str(peer.namespace), name[:200], dict(peer.labels), workload=peer.workload)


def audit(
    topology: AppTopology, observations: Iterable[Observation], inventory: Inventory | None = None
) -> list[Audited]:
    """Which observed flows ``topology`` would deny (the audit question), judged by the evaluator on the
    topology's policies, with namespace labels from ``inventory`` when given."""
    home = topology.metadata.namespace or "default"
    groups: dict[str, tuple[Observation, Evidence]] = {}
    for o in observations:
        if o.reply or o.verdict == "other" or home not in (o.source.namespace, o.destination.namespace):
            continue  # a reply, or a flow this topology's namespace has no part in
        flow = f"{o.source} -> {o.destination} {o.protocol or 'non-TCP/UDP/SCTP'}/{o.port or '-'}"
        groups.setdefault(flow, (o, Evidence()))[1].add(o)
    labels = {ns.name: dict(ns.labels) for ns in (inventory.namespaces if inventory else ())}
    endpoints: dict[str, Pod | External] = {}
    out: list[Audited] = []
    judged: list[tuple[str, Observation, Evidence]] = []
    for flow, (o, evidence) in groups.items():
        if o.protocol is None or o.port is None or {"node", "unknown", "kubeAPI"} & {o.source.kind, o.destination.kind}:
            out.append(Audited(flow, None, evidence, "cannot be judged here (node, unknown, API server or no port)"))
            continue
        for peer in (o.source, o.destination):
            if peer.kind == "pod":
                endpoints.setdefault(str(peer) + canon(dict(peer.labels)), _pod(peer))
            elif valid_address(peer.address) is not None:
                address = ipaddress.ip_address(str(peer.address))
                endpoints.setdefault(str(address), External(f"{address}/{address.max_prefixlen}"))
        judged.append((flow, o, evidence))
    pods = [e for e in endpoints.values() if isinstance(e, Pod)]
    namespaces = [Namespace(ns, labels.get(ns, {})) for ns in sorted({p.namespace for p in pods})]
    externals = [e for e in endpoints.values() if isinstance(e, External)]
    evaluator = Evaluator(render(topology), Inventory(tuple(namespaces), tuple(pods), tuple(externals)))
    for flow, o, evidence in judged:
        source, destination = (
            endpoints.get(str(p) + canon(dict(p.labels))) if p.kind == "pod" else endpoints.get(str(p.address))
            for p in (o.source, o.destination)
        )
        if source is None or destination is None:
            out.append(Audited(flow, None, evidence, "an endpoint without a valid address"))
            continue
        allowed = evaluator.allowed(source, destination).contains(str(o.protocol), int(o.port or 0))
        out.append(Audited(flow, allowed, evidence))
    return out
