"""Cluster facts: what rendering needs to know about the cluster, as plain data, built by pure functions.

Three things a topology may refer to are only known in a cluster: the DNS servers (``dns.discover``: the
DNS Service's selector and target ports, and NodeLocal DNSCache), and the Kubernetes API server's addresses
(the ``kubeAPI`` endpoint). The renderer takes them as an input, :class:`ClusterFacts`, so it stays pure:
``render(topology, facts)``. :data:`OFFLINE` is what is known without a cluster (nothing): DNS then follows
``spec.dns`` as written, and ``kubeAPI`` renders no peer at all (fail closed).

:func:`cluster_facts` builds the facts from manifests as the API returns them (Services, EndpointSlices,
DaemonSets), so the operator and ``apptopology render --cluster`` resolve the same way; only
``controller.kube`` reads them from the API (:func:`wanted_objects` says which).

Everything read from the cluster is checked as strictly as user input: a selector that is not a valid label
selector, an address that is not an IP, a port out of range, is left out (and so never rendered).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..api.spec import DEFAULT_DNS_SERVICES, AppTopology, check_label_key, check_label_value, check_port_name

DNS_PORT = 53  # the port clients send to (the Service's port); the pods may listen elsewhere (targetPort)
NODE_LOCAL_DNS_NAMESPACE = "kube-system"
NODE_LOCAL_DNS_LABEL = ("k8s-app", "node-local-dns")  # the label of the upstream NodeLocal DNSCache DaemonSet
NODE_LOCAL_DNS_DEFAULT = "169.254.20.10"
KUBE_API_SERVICE = ("default", "kubernetes")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # links an EndpointSlice to its Service
PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True)
class FactPort:
    """A port: a number, or (DNS target ports only) the name of a container port of the DNS pods."""

    protocol: str
    port: int | str


@dataclass(frozen=True)
class DNSService:
    """A DNS Service as found in the cluster: its pods (selector) and where they listen (target ports),
    and the ports clients use (``ports``, 53: what NodeLocal DNSCache answers on)."""

    namespace: str
    name: str
    selector: tuple[tuple[str, str], ...]
    target_ports: tuple[FactPort, ...]
    ports: tuple[FactPort, ...]


@dataclass(frozen=True)
class APIEndpoint:
    """One address of the Kubernetes API server (an EndpointSlice endpoint, or the Service's ClusterIP)."""

    address: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class ClusterFacts:
    """What rendering knows about the cluster. Frozen and hashable: compare two to see a change.

    ``kube_api`` is None when the API server's endpoints are unknown (offline), which is not the same as
    known to be none: both render no peer, but only the first says "render in the cluster".
    """

    dns_services: tuple[DNSService, ...] = ()
    node_local_dns: bool = False
    node_local_dns_addresses: tuple[str, ...] = ()
    kube_api: tuple[APIEndpoint, ...] | None = None
    in_cluster: bool = False  # read from a cluster (False: OFFLINE)
    problems: tuple[str, ...] = field(default=(), compare=False)

    def dns_service(self, namespace: str, name: str) -> DNSService | None:
        return next((s for s in self.dns_services if (s.namespace, s.name) == (namespace, name)), None)


OFFLINE = ClusterFacts()


@dataclass(frozen=True)
class WantedObjects:
    """The objects :func:`cluster_facts` reads: give it these (those that exist) and nothing else is needed."""

    dns_services: tuple[tuple[str, str], ...]
    node_local_dns: tuple[str, str, str]  # namespace, label key, label value of the DaemonSet
    kube_api: tuple[str, str]  # the Service (its EndpointSlices carry SERVICE_NAME_LABEL)


def wanted_objects(topologies: Iterable[AppTopology] = ()) -> WantedObjects:
    """Which Services (with their EndpointSlices) and DaemonSets to read for ``topologies``: the DNS Services
    they name, then the defaults."""
    services: list[tuple[str, str]] = []
    for topology in topologies:
        ref = topology.spec.dns.service
        if ref is not None and (ref.namespace, ref.name) not in services:
            services.append((ref.namespace, ref.name))
    services += [s for s in DEFAULT_DNS_SERVICES if s not in services]
    return WantedObjects(tuple(services), (NODE_LOCAL_DNS_NAMESPACE, *NODE_LOCAL_DNS_LABEL), KUBE_API_SERVICE)


# --- from manifests ----------------------------------------------------------------------------------------


def _meta(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _port_number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535 else None


def _protocol(raw: Mapping[str, Any]) -> str | None:
    protocol = raw.get("protocol") or "TCP"
    return protocol if protocol in PROTOCOLS else None


def _slice_ports(slices: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], set[int]]:
    """(port name, protocol) -> the numbers the EndpointSlices give it (a Service port's resolved target)."""
    out: dict[tuple[str, str], set[int]] = {}
    for s in slices:
        for raw in s.get("ports") or []:
            number, protocol = _port_number(raw.get("port")), _protocol(raw)
            if number is not None and protocol is not None:
                out.setdefault((str(raw.get("name") or ""), protocol), set()).add(number)
    return out


def dns_service_facts(service: Mapping[str, Any], slices: Iterable[Mapping[str, Any]] = ()) -> DNSService | None:
    """The DNS facts of a Service: its selector and the target ports of its port-53 ports. A named
    targetPort is resolved through the Service's EndpointSlices when they say; otherwise the name stays (a
    NetworkPolicy resolves it on the DNS pods). None when the Service cannot be a DNS peer (no selector,
    an invalid one, or no port 53)."""
    namespace, name = _meta(service)
    spec = service.get("spec") or {}
    selector = spec.get("selector")
    if not namespace or not isinstance(selector, Mapping) or not selector:
        return None
    if any(
        not isinstance(k, str) or not isinstance(v, str) or check_label_key(k) or check_label_value(v)
        for k, v in selector.items()
    ):
        return None
    resolved = _slice_ports(slices)
    targets: list[FactPort] = []
    ports: list[FactPort] = []
    for raw in spec.get("ports") or []:
        protocol = _protocol(raw)
        if raw.get("port") != DNS_PORT or protocol is None:
            continue  # metrics and other ports of the Service are not DNS
        ports.append(FactPort(protocol, DNS_PORT))
        target = raw.get("targetPort", DNS_PORT)
        if isinstance(target, str) and target.isdigit():
            target = int(target)
        if isinstance(target, int):
            if _port_number(target) is not None:
                targets.append(FactPort(protocol, target))
            continue
        numbers = resolved.get((str(raw.get("name") or ""), protocol))
        if numbers:
            targets.extend(FactPort(protocol, n) for n in sorted(numbers))
        elif isinstance(target, str) and check_port_name(target) is None:
            targets.append(FactPort(protocol, target))
    if not targets:
        return None
    return DNSService(
        namespace, name, tuple(sorted(selector.items())), tuple(dict.fromkeys(targets)), tuple(dict.fromkeys(ports))
    )


def _canonical_ip(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return None
    return str(ip)


def node_local_dns_facts(daemonsets: Iterable[Mapping[str, Any]]) -> tuple[bool, tuple[str, ...]]:
    """Whether NodeLocal DNSCache runs (its DaemonSet exists), and the addresses it listens on when its
    ``-localip`` argument says (the link-local address, and in iptables mode also the DNS Service's IP)."""
    present = False
    addresses: list[str] = []
    key, value = NODE_LOCAL_DNS_LABEL
    for ds in daemonsets:
        meta = ds.get("metadata") or {}
        if meta.get("namespace") != NODE_LOCAL_DNS_NAMESPACE or (meta.get("labels") or {}).get(key) != value:
            continue
        present = True
        pod_spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in pod_spec.get("containers") or []:
            args = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
            for i, arg in enumerate(args):
                if arg.lstrip("-") == "localip" and i + 1 < len(args):
                    found = args[i + 1]
                elif arg.lstrip("-").startswith("localip="):
                    found = arg.split("=", 1)[1]
                else:
                    continue
                addresses += [a for a in (_canonical_ip(x.strip()) for x in found.split(",")) if a]
    return present, tuple(dict.fromkeys(addresses))


def kube_api_facts(service: Mapping[str, Any] | None, slices: Iterable[Mapping[str, Any]]) -> tuple[APIEndpoint, ...]:
    """The API server's addresses: every ready endpoint of the ``default/kubernetes`` EndpointSlices on the
    slices' ports, and the Service's ClusterIPs on the Service's ports (a network plugin may check egress
    before or after the ClusterIP is translated)."""
    out: list[APIEndpoint] = []
    for s in slices:
        ports = [
            (n, p) for raw in s.get("ports") or [] if (n := _port_number(raw.get("port"))) and (p := _protocol(raw))
        ]
        for endpoint in s.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for address in endpoint.get("addresses") or []:
                ip = _canonical_ip(address)
                if ip is not None:
                    out += [APIEndpoint(ip, n, p) for n, p in ports]
    spec = (service or {}).get("spec") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    for raw in spec.get("ports") or []:
        number, protocol = _port_number(raw.get("port")), _protocol(raw)
        if number is None or protocol is None:
            continue
        out += [APIEndpoint(ip, number, protocol) for ip in (_canonical_ip(a) for a in ips) if ip is not None]
    return tuple(sorted(set(out), key=lambda e: (ipaddress.ip_address(e.address).version, e.address, e.port)))


def cluster_facts(manifests: Iterable[Mapping[str, Any]], wanted: WantedObjects | None = None) -> ClusterFacts:
    """Facts from a list of manifests (Services, EndpointSlices, DaemonSets, any order; others ignored).

    ``kube_api`` is known (possibly empty) when the ``default/kubernetes`` Service is among them, and None
    otherwise; DNS Services are those of ``wanted`` (default: the defaults) found and usable.
    """
    wanted = wanted or wanted_objects()
    services: dict[tuple[str, str], Mapping[str, Any]] = {}
    slices: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    daemonsets: list[Mapping[str, Any]] = []
    for obj in manifests:
        kind = obj.get("kind")
        namespace, name = _meta(obj)
        if kind == "Service":
            services[(namespace, name)] = obj
        elif kind == "EndpointSlice":
            owner = ((obj.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
            if isinstance(owner, str):
                slices.setdefault((namespace, owner), []).append(obj)
        elif kind == "DaemonSet":
            daemonsets.append(obj)
    problems: list[str] = []
    dns: list[DNSService] = []
    for ref in wanted.dns_services:
        if ref in services:
            found = dns_service_facts(services[ref], slices.get(ref, ()))
            if found is None:
                problems.append(f"Service {ref[0]}/{ref[1]} has no usable selector or port 53: not a DNS peer")
            else:
                dns.append(found)
    present, addresses = node_local_dns_facts(daemonsets)
    kube_api = None
    if wanted.kube_api in services:
        kube_api = kube_api_facts(services[wanted.kube_api], slices.get(wanted.kube_api, ()))
    return ClusterFacts(tuple(dns), present, addresses, kube_api, True, tuple(problems))


def describe_facts(facts: ClusterFacts) -> Sequence[str]:
    """One line per fact, for logs and ``render --cluster -v``."""
    lines = [
        f"DNS Service {s.namespace}/{s.name}: pods {dict(s.selector)}, target ports "
        + ", ".join(f"{p.protocol}/{p.port}" for p in s.target_ports)
        for s in facts.dns_services
    ]
    if facts.node_local_dns:
        lines.append(f"NodeLocal DNSCache: {', '.join(facts.node_local_dns_addresses) or 'addresses not found'}")
    if facts.kube_api is not None:
        lines.append(
            "Kubernetes API: " + (", ".join(f"{e.address}:{e.port}/{e.protocol}" for e in facts.kube_api) or "none")
        )
    return [*lines, *facts.problems]
