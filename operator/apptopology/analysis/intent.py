"""The declared intent of a topology: who may talk to whom, computed from the model alone.

This is the second, independent reading of a topology (the first is the renderer). It never looks at
NetworkPolicies: it applies the documented AppTopology semantics to concrete endpoints. ``verify``
compares it with what the evaluator finds the policies allow; any difference is a bug in one of them
or a hand-written policy that does not do what the topology says.

It also synthesizes the inventory to compare on when none is given: a representative pod per tier, the
declared peers, near misses that catch the AND/OR trap (the peer's pod labels in the wrong namespace,
the peer's namespace without the pod labels), and stand-ins for the rest of the world (an unlabelled
pod of the namespace, a pod of another namespace, external addresses inside and outside every ipBlock
and its exceptions), so that an extra allow toward anything undeclared is caught.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..api.spec import AppTopology, Flow, LabelSelector, Port, selector_matches
from ..api.spec import Endpoint as FlowEndpoint
from ..evaluator import ContainerPort, Endpoint, External, Inventory, Namespace, Pod, PortSet
from ..render.facts import OFFLINE, ClusterFacts, DNSService

NAME_LABEL = "kubernetes.io/metadata.name"
WORLD_V4 = "203.0.113.10"  # TEST-NET-3: an address nobody declared
WORLD_V6 = "2001:db8::10"
# The cloud instance metadata service, as the API reference defines cloudMetadata: written out here again,
# not imported, so that this reading stays independent of the model's constants.
METADATA = (ipaddress.ip_network("169.254.169.254/32"), ipaddress.ip_network("fd00:ec2::254/128"))
FIRST_NAMED_PORT = 20000


def satisfying_labels(selector: LabelSelector | None) -> dict[str, str] | None:
    """Labels that satisfy ``selector``, or None when it cannot be satisfied."""
    if selector is None:
        return {}
    labels = dict(selector.match_labels or {})
    for req in selector.match_expressions or []:
        if req.operator == "In" and req.key not in labels:
            labels[req.key] = (req.values or ["x"])[0]
        elif req.operator == "Exists" and req.key not in labels:
            labels[req.key] = "x"
    return labels if selector_matches(selector, labels) else None


def violating_labels(selector: LabelSelector | None) -> dict[str, str] | None:
    """Labels that do NOT satisfy ``selector`` (a near miss), or None when everything matches."""
    if selector is None:
        return {}
    for candidate in ({}, {"apptopology-test/near-miss": "x"}):
        if not selector_matches(selector, candidate):
            return candidate
    base = satisfying_labels(selector) or {}
    for key in base:
        miss = {k: v for k, v in base.items() if k != key}
        if not selector_matches(selector, miss):
            return miss
    return None


# NodeLocal DNSCache answers on 53 (UDP and TCP); its default address. Written out here again (see METADATA).
NODE_LOCAL_PORTS = PortSet.of("UDP", 53).union(PortSet.of("TCP", 53))
NODE_LOCAL_DEFAULT = "169.254.20.10"
DNS_SERVICES = (("kube-system", "kube-dns"), ("openshift-dns", "dns-default"))


@dataclass(frozen=True)
class Intent:
    """The declared connectivity of one topology, over any inventory, given what is known of the cluster."""

    topology: AppTopology
    facts: ClusterFacts = OFFLINE

    def dns_service(self) -> DNSService | None:
        """The DNS Service that discovery follows, if the facts know it (the documented order)."""
        dns = self.topology.spec.dns
        if not dns.discover:
            return None
        refs = [(dns.service.namespace, dns.service.name)] if dns.service is not None else list(DNS_SERVICES)
        for namespace, name in refs:
            for service in self.facts.dns_services:
                if (service.namespace, service.name) == (namespace, name):
                    return service
        return None

    def node_local_dns(self) -> list[str]:
        dns = self.topology.spec.dns
        if dns.node_local is not None:
            return list(dns.node_local.addresses)
        if dns.discover and self.facts.node_local_dns:
            return list(self.facts.node_local_dns_addresses) or [NODE_LOCAL_DEFAULT]
        return []

    @property
    def namespace(self) -> str:
        return self.topology.metadata.namespace or "default"

    def tiers_of(self, endpoint: Endpoint) -> list[str]:
        if not isinstance(endpoint, Pod) or endpoint.namespace != self.namespace:
            return []
        return [t.name for t in self.topology.spec.tiers if selector_matches(t.pod_selector, endpoint.labels)]

    def tier_isolated(self, tier: str, direction: str) -> bool:
        """A tier's own isolation: its ``isolation`` override, else ``defaultDeny``."""
        spec = self.topology.spec
        deny = spec.default_deny
        declared = next(t for t in spec.tiers if t.name == tier)
        own = None if declared.isolation is None else getattr(declared.isolation, direction)
        return bool(getattr(deny, direction) if own is None else own)

    def isolated_tiers(self, endpoint: Endpoint, direction: str) -> list[str]:
        """The endpoint's tiers that isolate ``direction``: only their flows hold there."""
        return [t for t in self.tiers_of(endpoint) if self.tier_isolated(t, direction)]

    def isolated(self, endpoint: Endpoint, direction: str) -> bool:
        """Isolated when the namespace default-deny (scope Namespace) or any of its tiers isolates it: one
        selecting policy isolates a pod, whatever the others say."""
        deny = self.topology.spec.default_deny
        if not isinstance(endpoint, Pod) or endpoint.namespace != self.namespace:
            return False
        if deny.scope == "Namespace" and getattr(deny, direction):
            return True
        return bool(self.isolated_tiers(endpoint, direction))

    def peer_matches(
        self,
        namespace_selector: LabelSelector | None,
        pod_selector: LabelSelector | None,
        endpoint: Endpoint,
        inventory: Inventory,
    ) -> bool:
        if not isinstance(endpoint, Pod):
            return False
        if namespace_selector is None:
            in_namespaces = endpoint.namespace == self.namespace
        else:
            in_namespaces = selector_matches(namespace_selector, inventory.namespace(endpoint.namespace).labels)
        pods = pod_selector if pod_selector is not None else LabelSelector()
        return in_namespaces and selector_matches(pods, endpoint.labels)

    def matches(
        self, flow_endpoint: FlowEndpoint, endpoint: Endpoint, inventory: Inventory, destination: bool = False
    ) -> bool:
        """Whether a flow's endpoint covers a concrete endpoint (an External: all of its addresses).
        ``destination``: the flow's ``to``, where anywhere leaves out the cloud metadata service."""
        if flow_endpoint.anywhere:
            if destination and not isinstance(endpoint, Pod):
                return not any(endpoint.network.overlaps(m) for m in METADATA)
            return True
        if flow_endpoint.tier is not None:
            return flow_endpoint.tier in self.tiers_of(endpoint)
        if flow_endpoint.cloud_metadata:
            return any(_within(endpoint, str(m), []) for m in METADATA)
        if flow_endpoint.ip_block is not None:
            return _within(endpoint, flow_endpoint.ip_block.cidr, flow_endpoint.ip_block.except_ or [])
        return self.peer_matches(flow_endpoint.namespace_selector, flow_endpoint.pod_selector, endpoint, inventory)

    @staticmethod
    def ports(ports: Iterable[Port] | None, destination: Endpoint) -> PortSet:
        """A flow's ports as a set, named ports resolved on the destination pod's container ports."""
        ports = list(ports or [])
        if not ports:
            return PortSet.ALL
        out = PortSet.NONE
        for port in ports:
            if port.port is None:
                out = out.union(PortSet.of(port.protocol))
            elif isinstance(port.port, int):
                out = out.union(PortSet.of(port.protocol, port.port, port.end_port))
            elif isinstance(destination, Pod):
                for name, protocol, number in destination.named_ports:
                    if name == port.port and protocol == port.protocol:
                        out = out.union(PortSet.of(protocol, number))
        return out

    def _flows(
        self, direction: str, pod: Endpoint, peer: Endpoint, destination: Endpoint, inventory: Inventory
    ) -> PortSet:
        """Ports the flows grant ``pod`` in ``direction`` with ``peer`` on the other side. A tier's flows
        hold only in the directions it isolates; elsewhere its pods are open, unless another tier isolates
        them, and then that tier's flows are the ones that hold."""
        tiers = set(self.isolated_tiers(pod, direction))
        out = PortSet.NONE
        for flow in self.topology.spec.flows:
            mine, other = (flow.to, flow.from_) if direction == "ingress" else (flow.from_, flow.to)
            if mine.tier in tiers and other.kube_api:
                # The API server's addresses, each on its own ports; unknown (offline): nothing.
                for endpoint in self.facts.kube_api or ():
                    if _within(peer, endpoint.address, []):
                        out = out.union(PortSet.of(endpoint.protocol, endpoint.port))
                continue
            if mine.tier in tiers and self.matches(other, peer, inventory, destination=direction == "egress"):
                out = out.union(self.ports(flow.ports, destination))
        return out

    def ingress(self, source: Endpoint, destination: Endpoint, inventory: Inventory) -> PortSet:
        if not self.isolated(destination, "ingress"):
            return PortSet.ALL
        out = self._flows("ingress", destination, source, destination, inventory)
        spec = self.topology.spec
        mon = spec.monitoring
        scraped = set(mon.tiers if mon.tiers is not None else spec.tier_names())
        if (
            mon.enabled
            and set(self.isolated_tiers(destination, "ingress")) & scraped
            and self.peer_matches(mon.namespace_selector, mon.pod_selector, source, inventory)
        ):
            out = out.union(self.ports(mon.ports, destination))
        return out

    def egress(self, source: Endpoint, destination: Endpoint, inventory: Inventory) -> PortSet:
        if not self.isolated(source, "egress"):
            return PortSet.ALL
        out = self._flows("egress", source, destination, destination, inventory)
        if self.topology.spec.dns.enabled:
            out = out.union(self.dns(destination, inventory))
        return out

    def dns(self, destination: Endpoint, inventory: Inventory) -> PortSet:
        """What DNS allows toward ``destination``: the DNS pods on their ports, NodeLocal DNSCache on 53."""
        dns = self.topology.spec.dns
        out = PortSet.NONE
        service = self.dns_service()
        if service is not None:
            if (
                isinstance(destination, Pod)
                and inventory.namespace(destination.namespace).labels.get(NAME_LABEL) == service.namespace
                and all(destination.labels.get(k) == v for k, v in service.selector)
            ):
                ports = [Port.model_validate({"port": p.port, "protocol": p.protocol}) for p in service.target_ports]
                out = self.ports(ports, destination)
        elif (dns.namespace_selector is not None or dns.pod_selector is not None) and self.peer_matches(
            dns.namespace_selector, dns.pod_selector, destination, inventory
        ):
            out = self.ports(dns.ports, destination)
        if any(_within(destination, a, []) for a in self.node_local_dns()):
            out = out.union(NODE_LOCAL_PORTS)
        return out

    def allowed(self, source: Endpoint, destination: Endpoint, inventory: Inventory) -> PortSet:
        """What the topology declares from ``source`` to ``destination`` (both directions must agree)."""
        return self.egress(source, destination, inventory).intersection(self.ingress(source, destination, inventory))


def _within(endpoint: Endpoint, cidr: str, excepts: Iterable[str]) -> bool:
    """Whether every address of ``endpoint`` (a pod: its IP, if it has one) is in ``cidr`` minus ``excepts``."""
    if isinstance(endpoint, Pod):
        if endpoint.address is None:
            return False
        net = ipaddress.ip_network(endpoint.address)
    else:
        net = endpoint.network
    block = ipaddress.ip_network(cidr, strict=False)  # an address alone is its /32 or /128
    if net.version != block.version or not net.subnet_of(block):  # type: ignore[arg-type]
        return False
    return not any(net.overlaps(ipaddress.ip_network(e, strict=False)) for e in excepts)


def synthesize(topology: AppTopology, facts: ClusterFacts = OFFLINE) -> Inventory:
    """A small inventory that exercises every declared flow and the world around it (see module doc), and
    the cluster's DNS pods, NodeLocal DNSCache and API server addresses the facts give."""
    spec = topology.spec
    intent = Intent(topology, facts)
    service = intent.dns_service()
    home = topology.metadata.namespace or "default"
    namespaces: dict[str, Namespace] = {home: Namespace(home)}
    pods: dict[tuple[str, str], Pod] = {}
    externals: dict[str, External] = {}

    # Named ports used toward each tier (or anywhere): every tier pod declares them all.
    named: dict[tuple[str, str], int] = {}
    all_ports = [p for f in spec.flows for p in f.ports or []] + list(spec.monitoring.ports or [])
    for port in all_ports + list(spec.dns.ports):
        if isinstance(port.port, str):
            named.setdefault((port.port, port.protocol), FIRST_NAMED_PORT + len(named))
    for target in service.target_ports if service is not None else ():
        if isinstance(target.port, str):
            named.setdefault((target.port, target.protocol), FIRST_NAMED_PORT + len(named))
    container_ports = tuple(ContainerPort(name, number, proto) for (name, proto), number in sorted(named.items()))

    def add_pod(namespace: str, name: str, labels: Mapping[str, str], role: str) -> None:
        if (namespace, name) not in pods:
            pods[(namespace, name)] = Pod(namespace, name, dict(labels), ports=container_ports, workload=role)

    def namespace_for(selector: LabelSelector | None, hint: str) -> str | None:
        labels = satisfying_labels(selector)
        if labels is None:
            return None
        if selector is None:
            return home
        name = labels.get(NAME_LABEL) or f"{hint}-ns-{len(namespaces)}"
        existing = namespaces.get(name)
        if existing is None or not selector_matches(selector, existing.labels):
            merged = {**(dict(existing.labels) if existing else {}), **labels}
            namespaces[name] = Namespace(name, merged)
        return name

    for tier in spec.tiers:
        labels = satisfying_labels(tier.pod_selector)
        if labels is not None:
            add_pod(home, f"tier-{tier.name}", labels, f"tier {tier.name}")

    def add_peer(ns_sel: LabelSelector | None, pod_sel: LabelSelector | None, hint: str) -> None:
        ns = namespace_for(ns_sel, hint)
        pod_labels = satisfying_labels(pod_sel if pod_sel is not None else LabelSelector())
        if ns is not None and pod_labels is not None:
            add_pod(ns, f"{hint}-pod", pod_labels, hint)
        # Near misses: the peer's pod labels elsewhere, and the peer's namespace without them.
        if pod_labels is not None:
            # The peer's pod labels in this namespace and in an unrelated one: pods an OR would admit.
            for away in (home, "apptopology-elsewhere"):
                namespaces.setdefault(away, Namespace(away))
                if away != ns and (ns_sel is None or not selector_matches(ns_sel, namespaces[away].labels)):
                    add_pod(away, f"{hint}-pod-wrong-namespace", pod_labels, f"near miss of {hint}")
        miss = violating_labels(pod_sel)
        if ns is not None and miss is not None:
            add_pod(ns, f"{hint}-other-pod", miss, f"near miss of {hint}")

    for i, flow in enumerate(spec.flows):
        for side, endpoint in (("from", flow.from_), ("to", flow.to)):
            if endpoint.namespace_selector is not None or endpoint.pod_selector is not None:
                add_peer(endpoint.namespace_selector, endpoint.pod_selector, f"flow{i}-{side}")
            if endpoint.ip_block is not None:
                block = endpoint.ip_block
                net = ipaddress.ip_network(block.cidr, strict=False)
                excluded = [ipaddress.ip_network(e, strict=False) for e in block.except_ or []]
                inside = _first_address_outside(net, excluded)
                if inside is not None:
                    externals.setdefault(
                        str(inside), External(f"{inside}/{inside.max_prefixlen}", f"{inside} (in {block.cidr})")
                    )
                for e in excluded:
                    address = e.network_address
                    externals.setdefault(
                        str(address), External(f"{address}/{address.max_prefixlen}", f"{address} (in except {e})")
                    )
        if _touches_metadata(flow):
            # The metadata addresses, to show that anywhere leaves them out and cloudMetadata opens them.
            for m in METADATA:
                address = m.network_address
                externals.setdefault(str(address), External(str(m), f"{address} (cloud metadata)"))
        if flow.to.kube_api:
            for api in facts.kube_api or ():
                api_ip = ipaddress.ip_address(api.address)
                for a, what in ((api_ip, "Kubernetes API"), (api_ip + 1, "next to the Kubernetes API")):
                    externals.setdefault(str(a), External(f"{a}/{a.max_prefixlen}", f"{a} ({what})"))
    if spec.dns.enabled and service is not None:
        ns_selector = LabelSelector.model_validate({"matchLabels": {NAME_LABEL: service.namespace}})
        pod_selector = LabelSelector.model_validate({"matchLabels": dict(service.selector)})
        add_peer(ns_selector, pod_selector, "dns")
    elif spec.dns.enabled:
        add_peer(spec.dns.namespace_selector, spec.dns.pod_selector, "dns")
    for local in intent.node_local_dns() if spec.dns.enabled else []:
        ip = ipaddress.ip_address(local)
        externals.setdefault(str(ip), External(f"{ip}/{ip.max_prefixlen}", f"{ip} (NodeLocal DNSCache)"))
    if spec.monitoring.enabled:
        add_peer(spec.monitoring.namespace_selector, spec.monitoring.pod_selector, "monitoring")

    # The rest of the world.
    add_pod(home, "unlabelled", {}, "a pod of the namespace in no tier")
    namespaces.setdefault("apptopology-elsewhere", Namespace("apptopology-elsewhere"))
    add_pod("apptopology-elsewhere", "unlabelled", {}, "a pod of another namespace")
    externals.setdefault(WORLD_V4, External(f"{WORLD_V4}/32", f"{WORLD_V4} (internet)"))
    externals.setdefault(WORLD_V6, External(f"{WORLD_V6}/128", f"{WORLD_V6} (internet)"))
    return Inventory(tuple(namespaces.values()), tuple(pods.values()), tuple(externals.values()))


def _touches_metadata(flow: Flow) -> bool:
    """Whether a flow involves the metadata addresses: anywhere (which leaves them out) or cloudMetadata."""
    return any(bool(e.anywhere or e.cloud_metadata) for e in (flow.from_, flow.to))


def _first_address_outside(
    net: ipaddress.IPv4Network | ipaddress.IPv6Network,
    excluded: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address of ``net`` in none of ``excluded`` (checks a handful of candidates, enough in practice)."""
    size = net.num_addresses
    for offset in (size // 2 + 1, 1, size - 2, 0, size // 4, 3 * size // 4):
        if 0 <= offset < size:
            candidate = net.network_address + offset
            if not any(candidate in e for e in excluded):
                return candidate
    return None
