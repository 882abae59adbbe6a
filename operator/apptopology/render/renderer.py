"""Render an AppTopology into the NetworkPolicies that enforce exactly its declared traffic.

Pure and deterministic: the same topology always renders to the same list of plain dicts, in the same
order, so GitOps diffs stay quiet and the operator can compare desired and live state.

Policies produced (``N`` is the topology name):

- ``N.default-deny``: scope Namespace only; ``podSelector: {}`` with the isolated directions.
- ``N.allow-dns``: scope Namespace with egress isolated and DNS enabled; every pod may reach DNS.
- ``N.tier-T``: the rules of tier T. In scope Tiers it also carries T's isolation (so it exists whenever T
  isolates a direction, and includes the DNS rule); in scope Namespace it exists when T has rules or
  isolates a direction the default-deny leaves open (then it carries DNS itself too).

Only isolated directions get rules: a rule in a non-isolated direction would itself isolate the pod.
"""

from __future__ import annotations

import copy
import ipaddress
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ..api.spec import CLOUD_METADATA, DEFAULT_DNS_SERVICES, AppTopology, Endpoint, LabelSelector, Port, minimal_ports
from ..api.validation import Issue
from .facts import NODE_LOCAL_DNS_DEFAULT, OFFLINE, APIEndpoint, ClusterFacts, FactPort

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "apptopology-operator"
TOPOLOGY_LABEL = "apptopology.io/topology"
DESCRIPTION_ANNOTATION = "apptopology.io/description"

Peer = dict[str, Any]
# A peer key of None stands for "any peer" (the rule omits from/to); ANYWHERE for egress to anywhere.
PeerKey = str | None
ANYWHERE = "anywhere"  # not a JSON object, so no peer's key

# Egress to anywhere: every pod (of every namespace), and every address but the cloud metadata service.
# Pods matched by an ipBlock are implementation-defined, so the pods are named by selector; together the
# three peers are "any destination" minus the two metadata addresses.
ANYWHERE_PEERS: list[Peer] = [
    {"namespaceSelector": {}},
    {"ipBlock": {"cidr": "0.0.0.0/0", "except": [CLOUD_METADATA[0]]}},
    {"ipBlock": {"cidr": "::/0", "except": [CLOUD_METADATA[1]]}},
]
_METADATA_ADDRESSES = [ipaddress.ip_network(c).network_address for c in CLOUD_METADATA]
PortsKey = tuple[tuple[str, int, str, int], ...]  # () = all ports


def policy_name(topology: str, suffix: str) -> str:
    """``<topology>.<suffix>``: collision-free by construction. Topology and tier names are DNS-1123 labels
    (no dots), so the topology is everything before the first dot, and the suffixes (``default-deny``,
    ``allow-dns``, ``tier-<tier>``, the operator's transient ``guard-<hash>``) cannot be confused."""
    return f"{topology}.{suffix}"


def tier_policy_name(topology: str, tier: str) -> str:
    return policy_name(topology, f"tier-{tier}")


def endpoint_peers(
    endpoint: Endpoint, tier_selectors: dict[str, LabelSelector], destination: bool
) -> list[Peer | str] | None:
    """The NetworkPolicyPeers for an endpoint; None means any peer, ANYWHERE egress to anywhere but the
    cloud metadata service (``destination``: the endpoint is the flow's ``to``).

    namespaceSelector and podSelector always share ONE peer entry (AND); two entries would mean OR and
    open the flow to every pod of the namespace and every matching namespace.
    """
    if endpoint.tier is not None:
        return [{"podSelector": tier_selectors[endpoint.tier].to_k8s()}]
    if endpoint.anywhere:
        return [ANYWHERE] if destination else None
    if endpoint.cloud_metadata:
        return [{"ipBlock": {"cidr": cidr}} for cidr in CLOUD_METADATA]
    if endpoint.ip_block is not None:
        return [{"ipBlock": endpoint.ip_block.to_k8s()}]
    peer: Peer = {}
    if endpoint.namespace_selector is not None:
        peer["namespaceSelector"] = endpoint.namespace_selector.to_k8s()
    if endpoint.pod_selector is not None:
        peer["podSelector"] = endpoint.pod_selector.to_k8s()
    return [peer]


def _within_anywhere(peer: Peer) -> bool:
    """Whether egress to ``peer`` is inside egress to anywhere: every pod peer is; an ipBlock only when it
    leaves out the metadata addresses."""
    block = peer.get("ipBlock")
    if block is None:
        return True
    cidr = ipaddress.ip_network(block["cidr"])
    excepts = [ipaddress.ip_network(e) for e in block.get("except") or []]
    return not any(
        a.version == cidr.version and a in cidr and not any(a in e for e in excepts) for a in _METADATA_ADDRESSES
    )


def selector_peer(namespace_selector: LabelSelector | None, pod_selector: LabelSelector | None) -> Peer:
    peer: Peer = {}
    if namespace_selector is not None:
        peer["namespaceSelector"] = namespace_selector.to_k8s()
    if pod_selector is not None:
        peer["podSelector"] = pod_selector.to_k8s()
    return peer


NAME_LABEL = "kubernetes.io/metadata.name"
_NODE_LOCAL_PORTS = [Port(port=53, protocol="UDP"), Port(port=53, protocol="TCP")]  # what the cache answers on


def _port(fact: FactPort) -> Port:
    return Port.model_validate({"port": fact.port, "protocol": fact.protocol})


def host_block(address: str) -> Peer:
    """One address as an ipBlock peer: ``/32`` or ``/128``."""
    ip = ipaddress.ip_address(address)
    return {"ipBlock": {"cidr": f"{ip}/{ip.max_prefixlen}"}}


@dataclass(frozen=True)
class ResolvedDNS:
    """The DNS peer a topology renders with these cluster facts: the DNS pods and their ports, and the
    NodeLocal DNSCache addresses (on 53/UDP and 53/TCP). ``source`` says where it came from (for status)."""

    peer: Peer
    ports: list[Port]
    node_local: tuple[str, ...]
    source: str
    note: str | None = None

    def grants(self) -> list[tuple[list[Peer | str], list[Port]]]:
        out: list[tuple[list[Peer | str], list[Port]]] = [([self.peer], self.ports)]
        if self.node_local:
            out.append(([host_block(a) for a in self.node_local], _NODE_LOCAL_PORTS))
        return out

    def text(self) -> str:
        where = "" if self.source == "spec.dns" else f"{self.source}, "
        local = f", NodeLocal DNSCache {', '.join(self.node_local)}" if self.node_local else ""
        return f"DNS ({where}{_ports_text(self.ports)}{local})"


def resolve_dns(topology: AppTopology, facts: ClusterFacts = OFFLINE) -> ResolvedDNS:
    """With ``dns.discover``, the pods of the first DNS Service the facts know (``dns.service``, or the
    defaults) on its target ports; otherwise, or when none is known, ``spec.dns`` as written."""
    dns = topology.spec.dns
    peer = selector_peer(dns.namespace_selector, dns.pod_selector)
    ports, source, note = list(dns.ports), "spec.dns", None
    if dns.discover:
        refs = [(dns.service.namespace, dns.service.name)] if dns.service is not None else list(DEFAULT_DNS_SERVICES)
        found = next((f for f in (facts.dns_service(*r) for r in refs) if f is not None), None)
        if found is not None:
            peer = {
                "namespaceSelector": {"matchLabels": {NAME_LABEL: found.namespace}},
                "podSelector": {"matchLabels": dict(found.selector)},
            }
            ports, source = [_port(p) for p in found.target_ports], f"Service {found.namespace}/{found.name}"
        else:
            tried = " or ".join(f"{a}/{b}" for a, b in refs)
            note = (
                f"no DNS Service {tried} found in the cluster: spec.dns applies"
                if facts.in_cluster
                else f"rendered without the cluster: spec.dns applies (render --cluster follows {tried})"
            )
    if dns.node_local is not None:
        node_local = tuple(dns.node_local.addresses)
    elif dns.discover and facts.node_local_dns:
        node_local = facts.node_local_dns_addresses or (NODE_LOCAL_DNS_DEFAULT,)
    else:
        node_local = ()
    return ResolvedDNS(peer, ports, node_local, source, note)


def kube_api_grants(facts: ClusterFacts) -> list[tuple[list[Peer | str], list[Port]]]:
    """The API server's addresses as /32 and /128 peers, each on its ports; none when unknown."""
    by_address: dict[str, list[APIEndpoint]] = defaultdict(list)
    for endpoint in facts.kube_api or ():
        by_address[endpoint.address].append(endpoint)
    return [
        ([host_block(a)], [_port(FactPort(e.protocol, e.port)) for e in endpoints])
        for a, endpoints in by_address.items()
    ]


def _kube_api_unresolved(facts: ClusterFacts) -> str | None:
    if facts.kube_api is None:
        return "not resolved without the cluster: no rule, fail closed"
    if not facts.kube_api:
        return "no endpoints found in the cluster: no rule"
    return None


def _kube_api_text(facts: ClusterFacts) -> str:
    missing = _kube_api_unresolved(facts)
    if missing is not None:
        return f"the Kubernetes API ({missing})"
    return "the Kubernetes API (" + ", ".join(f"{e.address}:{e.protocol}/{e.port}" for e in facts.kube_api or ()) + ")"


def render_notes(topology: AppTopology, facts: ClusterFacts = OFFLINE) -> list[Issue]:
    """What rendering with ``facts`` could not resolve, at the field that asks for it: printed as warnings
    by the CLI; the renderer has already failed closed (spec.dns as written, no peer for kubeAPI)."""
    spec = topology.spec
    notes = []
    dns = resolve_dns(topology, facts)
    if dns.note is not None and spec.dns.enabled:
        notes.append(Issue("spec.dns.discover", dns.note))
    for i, flow in enumerate(spec.flows):
        tier = next((t for t in spec.tiers if t.name == flow.from_.tier), None)
        missing = _kube_api_unresolved(facts)
        if flow.to.kube_api and tier is not None and spec.isolates(tier, "egress") and missing is not None:
            notes.append(Issue(f"spec.flows[{i}].to.kubeAPI", f"the Kubernetes API's addresses are {missing}"))
    return notes


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


class _Direction:
    """Accumulates (peer, ports) grants for one direction of one tier, then merges them minimally."""

    def __init__(self) -> None:
        # peer key -> set of port keys; None in the set means "all ports" (absorbs the rest)
        self.grants: dict[PeerKey, set[Any]] = defaultdict(set)
        self.peers: dict[str, Peer] = {}
        self.ports: dict[tuple[str, int, str, int], Port] = {}

    def add(self, peers: list[Peer | str] | None, ports: list[Port] | None) -> None:
        for peer in peers if peers is not None else [None]:
            key = peer if peer is None or isinstance(peer, str) else _canon(peer)
            if isinstance(peer, dict) and key is not None:
                self.peers[key] = peer
            if not ports:
                self.grants[key].add(None)
                continue
            for port in ports:
                self.ports[port.key()] = port
                self.grants[key].add(port.key())

    def rules(self, peer_field: str) -> list[dict[str, Any]]:
        """Group peers with identical port sets into one rule; a peer with all ports gets no ``ports``.

        Peers granted on exactly the same ports as "any peer" are subsumed by it and dropped; so are those
        inside egress to anywhere when that has the same ports.
        """
        by_ports: dict[PortsKey, set[PeerKey]] = defaultdict(set)
        for peer_key, port_keys in self.grants.items():
            ports_key: PortsKey = () if None in port_keys else _absorbed(port_keys)
            by_ports[ports_key].add(peer_key)
        rules = []
        for ports_key in sorted(by_ports, key=lambda k: (len(k) > 0, k)):
            peer_keys = by_ports[ports_key]
            rule: dict[str, Any] = {}
            if None not in peer_keys:
                keys = sorted(k for k in peer_keys if k is not None)
                if ANYWHERE in peer_keys:
                    keys = [k for k in keys if k == ANYWHERE or not _within_anywhere(self.peers[k])]
                rule[peer_field] = [
                    p for k in keys for p in (copy.deepcopy(ANYWHERE_PEERS) if k == ANYWHERE else [self.peers[k]])
                ]
            if ports_key:
                rule["ports"] = [self.ports[k].to_k8s() for k in ports_key]
            rules.append(rule)
        return rules

    def __bool__(self) -> bool:
        return bool(self.grants)


def _absorbed(port_keys: set[Any]) -> PortsKey:
    """A peer's port keys, sorted, a whole protocol (key ``(protocol, 0, "", 0)``) absorbing its narrower keys."""
    whole = {k[0] for k in port_keys if k[1] == 0}
    return tuple(sorted(k for k in port_keys if k[1] == 0 or k[0] not in whole))


def _destination_text(endpoint: Endpoint) -> str:
    if endpoint.anywhere:
        return "anywhere except the cloud metadata service (" + ", ".join(CLOUD_METADATA) + ")"
    return endpoint.describe()


def _sentence(parts: list[str]) -> str:
    return "; ".join(parts) + "." if parts else ""


def _ports_text(ports: list[Port] | None) -> str:
    if not ports:
        return "all ports"
    return ", ".join(p.label() for p in minimal_ports(ports))


def _metadata(topology: AppTopology, name: str, description: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if topology.metadata.namespace:
        meta["namespace"] = topology.metadata.namespace
    meta["labels"] = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, TOPOLOGY_LABEL: topology.metadata.name}
    meta["annotations"] = {DESCRIPTION_ANNOTATION: description}
    return meta


def _policy(topology: AppTopology, name: str, description: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(topology, name, description),
        "spec": spec,
    }


def render(topology: AppTopology, facts: ClusterFacts = OFFLINE) -> list[dict[str, Any]]:
    """All NetworkPolicies for ``topology``, in a stable order: default-deny, DNS, then tiers as declared.

    ``facts`` is what is known about the cluster (DNS discovery, the Kubernetes API's addresses); without
    it the DNS peer is spec.dns as written and a kubeAPI flow renders no peer (see :mod:`.facts`)."""
    spec = topology.spec
    name = topology.metadata.name
    deny = spec.default_deny
    namespace_scope = deny.scope == "Namespace"
    # The namespace default-deny's directions (scope Namespace): every pod of the namespace, tier or not.
    types = [t for t, on in (("Ingress", deny.ingress), ("Egress", deny.egress)) if on] if namespace_scope else []
    dns_everywhere = spec.dns.enabled and namespace_scope and deny.egress
    dns = resolve_dns(topology, facts)
    dns_text = dns.text()
    where = f"namespace {topology.metadata.namespace}" if topology.metadata.namespace else "the namespace"
    selectors = {t.name: t.pod_selector for t in spec.tiers}
    isolates = {t.name: {d: spec.isolates(t, d) for d in ("ingress", "egress")} for t in spec.tiers}

    policies: list[dict[str, Any]] = []
    if types:
        directions = " and ".join(t.lower() for t in types)
        policies.append(
            _policy(
                topology,
                policy_name(name, "default-deny"),
                f"Topology {name}: deny all {directions} traffic of every pod in {where} unless another "
                "policy allows it.",
                {"podSelector": {}, "policyTypes": types},
            )
        )
    if dns_everywhere:
        everyone = _Direction()
        for peers, ports in dns.grants():
            everyone.add(peers, ports)
        policies.append(
            _policy(
                topology,
                policy_name(name, "allow-dns"),
                f"Topology {name}: every pod in {where} may reach {dns_text}.",
                {
                    "podSelector": {},
                    "policyTypes": ["Egress"],
                    "egress": everyone.rules("to"),
                },
            )
        )

    ingress: dict[str, _Direction] = {t: _Direction() for t in selectors}
    egress: dict[str, _Direction] = {t: _Direction() for t in selectors}
    said_in: dict[str, list[str]] = defaultdict(list)
    said_out: dict[str, list[str]] = defaultdict(list)

    # A tier's flows become rules only in the directions its policy isolates: a rule in another direction
    # would isolate it there (and there its pods are open anyway).
    for flow in spec.flows:
        ports_text = _ports_text(flow.ports)
        why = f" ({flow.description})" if flow.description else ""
        if flow.to.tier is not None and isolates[flow.to.tier]["ingress"]:
            ingress[flow.to.tier].add(endpoint_peers(flow.from_, selectors, destination=False), flow.ports)
            said_in[flow.to.tier].append(f"accept {flow.from_.describe()} on {ports_text}{why}")
        if flow.from_.tier is not None and isolates[flow.from_.tier]["egress"]:
            if flow.to.kube_api:  # its ports come from the cluster, address by address
                for peers, ports in kube_api_grants(facts):
                    egress[flow.from_.tier].add(peers, ports)
                said_out[flow.from_.tier].append(f"reach {_kube_api_text(facts)}{why}")
                continue
            egress[flow.from_.tier].add(endpoint_peers(flow.to, selectors, destination=True), flow.ports)
            said_out[flow.from_.tier].append(f"reach {_destination_text(flow.to)} on {ports_text}{why}")

    mon = spec.monitoring
    if mon.enabled:
        mon_peer = selector_peer(mon.namespace_selector, mon.pod_selector)
        mon_desc = (
            "monitoring "
            + Endpoint(namespace_selector=mon.namespace_selector, pod_selector=mon.pod_selector).describe()
        )
        for scraped in mon.tiers if mon.tiers is not None else list(selectors):
            if isolates[scraped]["ingress"]:
                ingress[scraped].add([mon_peer], mon.ports)
                said_in[scraped].append(f"accept {mon_desc} on {_ports_text(mon.ports)}")

    for tier in spec.tiers:
        t = tier.name
        tier_types = [d.title() for d in ("ingress", "egress") if isolates[t][d]]
        if not tier_types:
            continue
        # Isolation this tier's policy must hold itself: all of it in scope Tiers, and in scope Namespace
        # the directions it adds to the namespace default-deny.
        own = [d for d in tier_types if d not in types]
        if spec.dns.enabled and "Egress" in tier_types and not dns_everywhere:
            for peers, ports in dns.grants():
                egress[t].add(peers, ports)
            said_out[t].append(f"reach {dns_text}")
        if not (own or ingress[t] or egress[t]):
            continue  # the namespace default-deny isolates it, and it has no rules
        tier_spec: dict[str, Any] = {"podSelector": tier.pod_selector.to_k8s(), "policyTypes": tier_types}
        if ingress[t]:
            tier_spec["ingress"] = ingress[t].rules("from")
        if egress[t]:
            tier_spec["egress"] = egress[t].rules("to")
        parts = [*said_in[t], *said_out[t]]
        isolation = f"isolate {' and '.join(x.lower() for x in own)}; " if own else ""
        text = f"Topology {name}, tier {t}: {isolation}{_sentence(parts) or 'no traffic allowed.'}"
        policies.append(_policy(topology, tier_policy_name(name, t), text, tier_spec))
    return policies


def render_all(topologies: list[AppTopology], facts: ClusterFacts = OFFLINE) -> list[dict[str, Any]]:
    return [p for t in topologies for p in render(t, facts)]
