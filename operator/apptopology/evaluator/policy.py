"""Parse networking.k8s.io/v1 NetworkPolicy manifests into frozen, precompiled dataclasses.

Parsing happens once per policy: selectors are compiled, CIDRs parsed and the
numeric part of every rule's ports folded into a PortSet, so evaluation never
touches raw dicts. Validation follows the API server (and is stricter about
unknown fields) because a typo such as `form:` for `from:` would otherwise turn
a narrow rule into "allow from everywhere" without anyone noticing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from .inventory import DEFAULT_NAMESPACE, IPAddress, IPNetwork
from .labels import LabelSelector, parse_selector
from .ports import PORT_MAX, PORT_MIN, PROTOCOLS, PortSet

API_VERSION: Final = "networking.k8s.io/v1"
Direction = Literal["ingress", "egress"]

# IANA_SVC_NAME as validated by the API server for named ports.
_SVC_NAME = re.compile(r"^(?=.*[a-z])(?!.*--)[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class IPBlock:
    """cidr minus the `except` sub-blocks."""

    cidr: IPNetwork
    excepts: tuple[IPNetwork, ...] = ()

    def contains(self, address: IPAddress) -> bool:
        if address.version != self.cidr.version or address not in self.cidr:
            return False
        return not any(address in ex for ex in self.excepts)

    def __str__(self) -> str:
        if not self.excepts:
            return str(self.cidr)
        return f"{self.cidr} except {', '.join(map(str, self.excepts))}"


@dataclass(frozen=True, slots=True)
class Peer:
    """One `from`/`to` entry. Its selectors are ANDed; separate entries are ORed."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None

    def __str__(self) -> str:
        if self.ip_block is not None:
            return f"ipBlock {self.ip_block}"
        parts = []
        if self.namespace_selector is not None:
            parts.append(f"namespaces[{self.namespace_selector}]")
        if self.pod_selector is not None:
            parts.append(f"pods[{self.pod_selector}]")
        return " AND ".join(parts)


@dataclass(frozen=True, slots=True)
class PolicyPort:
    """One `ports` entry: a port number or range, a named port, or (port None) a whole protocol."""

    protocol: str = "TCP"
    port: int | None = None
    end_port: int | None = None
    name: str | None = None

    def __str__(self) -> str:
        if self.name is not None:
            return f"{self.protocol}/{self.name}"
        return str(PortSet.of(self.protocol, self.port, self.end_port))


@dataclass(frozen=True, slots=True)
class Rule:
    """An ingress or egress rule. Empty `peers` matches every peer; empty `ports` every port."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PolicyPort, ...] = ()
    static_ports: PortSet = PortSet.ALL
    """Union of the numeric and whole-protocol entries of `ports` (all of them if `ports` is empty)."""
    named_ports: tuple[tuple[str, str], ...] = ()
    """(name, protocol) of named entries; they resolve against the destination pod."""

    def ports_for(self, destination_ports: frozenset[tuple[str, str, int]] | None) -> PortSet:
        """Ports this rule allows towards a destination with these named container ports.

        None means the destination is not a pod (an external IP), where named ports cannot match.
        """
        if not self.named_ports or not destination_ports:
            return self.static_ports
        wanted = set(self.named_ports)
        resolved = [PortSet.of(proto, port) for name, proto, port in destination_ports if (name, proto) in wanted]
        result = self.static_ports
        for ps in resolved:
            result = result | ps
        return result


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """A parsed policy. `ingress`/`egress` only take effect if the direction is in policy_types."""

    name: str
    namespace: str
    pod_selector: LabelSelector
    affects_ingress: bool
    affects_egress: bool
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def policy_types(self) -> tuple[str, ...]:
        return (("Ingress",) if self.affects_ingress else ()) + (("Egress",) if self.affects_egress else ())


def parse_policies(manifests: Iterable[Mapping[str, Any] | None]) -> tuple[NetworkPolicy, ...]:
    """Parse every NetworkPolicy among arbitrary manifests (other kinds and None are skipped)."""
    out: list[NetworkPolicy] = []
    for doc in manifests:
        if doc is None:
            continue
        if doc.get("kind") == "List":
            out.extend(parse_policies(doc.get("items") or []))
        elif doc.get("kind") == "NetworkPolicy":
            out.append(parse_policy(doc))
    return tuple(out)


def parse_policy(manifest: Mapping[str, Any]) -> NetworkPolicy:
    """Parse one NetworkPolicy manifest; raises ValueError naming the policy and offending field."""
    if not isinstance(manifest, Mapping):
        raise ValueError(f"NetworkPolicy manifest must be a mapping, got {type(manifest).__name__}")
    meta = manifest.get("metadata") or {}
    name = meta.get("name") if isinstance(meta, Mapping) else None
    namespace = (meta.get("namespace") if isinstance(meta, Mapping) else None) or DEFAULT_NAMESPACE
    label = f"NetworkPolicy {namespace}/{name}" if name else "NetworkPolicy <unnamed>"
    try:
        return _parse(manifest, name, namespace)
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from exc


def _parse(manifest: Mapping[str, Any], name: Any, namespace: Any) -> NetworkPolicy:
    kind, api = manifest.get("kind"), manifest.get("apiVersion")
    if kind is not None and kind != "NetworkPolicy":
        raise ValueError(f"kind: expected NetworkPolicy, got {kind!r}")
    if api is not None and api != API_VERSION:
        # e.g. Calico's projectcalico.org/v3 NetworkPolicy has different semantics (order, deny).
        raise ValueError(f"apiVersion: expected {API_VERSION}, got {api!r}")
    if not isinstance(name, str) or not name:
        raise ValueError("metadata.name: required")
    if not isinstance(namespace, str):
        raise ValueError("metadata.namespace: must be a string")
    _check_keys(manifest, {"apiVersion", "kind", "metadata", "spec", "status"}, "")
    spec = manifest.get("spec") or {}
    _check_mapping(spec, "spec")
    _check_keys(spec, {"podSelector", "policyTypes", "ingress", "egress"}, "spec")
    pod_selector = parse_selector(spec.get("podSelector"), "spec.podSelector")
    ingress_raw = _list(spec.get("ingress"), "spec.ingress")
    egress_raw = _list(spec.get("egress"), "spec.egress")
    types = _list(spec.get("policyTypes"), "spec.policyTypes")
    for i, t in enumerate(types):
        if t not in ("Ingress", "Egress"):
            raise ValueError(f"spec.policyTypes[{i}]: {t!r} is not Ingress or Egress")
    if types:
        affects_ingress, affects_egress = "Ingress" in types, "Egress" in types
    else:
        # API defaulting: every policy affects ingress; egress only if it has egress rules.
        affects_ingress, affects_egress = True, bool(egress_raw)
    return NetworkPolicy(
        name=name,
        namespace=namespace,
        pod_selector=pod_selector,
        affects_ingress=affects_ingress,
        affects_egress=affects_egress,
        ingress=tuple(_parse_rule(r, "from", f"spec.ingress[{i}]") for i, r in enumerate(ingress_raw)),
        egress=tuple(_parse_rule(r, "to", f"spec.egress[{i}]") for i, r in enumerate(egress_raw)),
    )


def _parse_rule(raw: Any, peer_key: str, where: str) -> Rule:
    if raw is None:
        raw = {}
    _check_mapping(raw, where)
    _check_keys(raw, {peer_key, "ports"}, where)
    raw_peers = _list(raw.get(peer_key), f"{where}.{peer_key}")
    peers = tuple(_parse_peer(p, f"{where}.{peer_key}[{i}]") for i, p in enumerate(raw_peers))
    ports = tuple(
        _parse_port(p, f"{where}.ports[{i}]") for i, p in enumerate(_list(raw.get("ports"), f"{where}.ports"))
    )
    if not ports:
        return Rule(peers, ports, PortSet.ALL, ())
    static = PortSet.NONE
    named: list[tuple[str, str]] = []
    for p in ports:
        if p.name is not None:
            named.append((p.name, p.protocol))
        else:
            static = static | PortSet.of(p.protocol, p.port, p.end_port)
    return Rule(peers, ports, static, tuple(dict.fromkeys(named)))


def _parse_peer(raw: Any, where: str) -> Peer:
    _check_mapping(raw, where)
    _check_keys(raw, {"podSelector", "namespaceSelector", "ipBlock"}, where)
    present = [k for k in ("podSelector", "namespaceSelector", "ipBlock") if raw.get(k) is not None]
    if not present:
        raise ValueError(f"{where}: must specify podSelector, namespaceSelector or ipBlock")
    if "ipBlock" in present:
        if len(present) > 1:
            raise ValueError(f"{where}: ipBlock cannot be combined with podSelector/namespaceSelector")
        return Peer(ip_block=_parse_ip_block(raw["ipBlock"], f"{where}.ipBlock"))
    return Peer(
        pod_selector=parse_selector(raw["podSelector"], f"{where}.podSelector") if "podSelector" in present else None,
        namespace_selector=(
            parse_selector(raw["namespaceSelector"], f"{where}.namespaceSelector")
            if "namespaceSelector" in present
            else None
        ),
    )


def _parse_ip_block(raw: Any, where: str) -> IPBlock:
    _check_mapping(raw, where)
    _check_keys(raw, {"cidr", "except"}, where)
    cidr = _parse_cidr(raw.get("cidr"), f"{where}.cidr")
    excepts: list[IPNetwork] = []
    for i, item in enumerate(_list(raw.get("except"), f"{where}.except")):
        ex = _parse_cidr(item, f"{where}.except[{i}]")
        # The API server requires each except to be a strict subset of cidr.
        if ex.version != cidr.version or not ex.subnet_of(cidr) or ex.prefixlen <= cidr.prefixlen:  # type: ignore[arg-type]
            raise ValueError(f"{where}.except[{i}]: {item!r} must be a strict subset of cidr {cidr}")
        excepts.append(ex)
    return IPBlock(cidr, tuple(excepts))


def _parse_cidr(raw: Any, where: str) -> IPNetwork:
    if not isinstance(raw, str) or "/" not in raw:
        raise ValueError(f"{where}: expected a CIDR string such as 10.0.0.0/8, got {raw!r}")
    try:
        # strict=False: host bits are masked, as Go's net.ParseCIDR does for the API server.
        return ipaddress.ip_network(raw, strict=False)
    except ValueError as exc:
        raise ValueError(f"{where}: invalid CIDR {raw!r}") from exc


def _parse_port(raw: Any, where: str) -> PolicyPort:
    _check_mapping(raw, where)
    _check_keys(raw, {"protocol", "port", "endPort"}, where)
    protocol = raw.get("protocol") or "TCP"
    if protocol not in PROTOCOLS:
        raise ValueError(f"{where}.protocol: {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    port, end = raw.get("port"), raw.get("endPort")
    if port is None:
        if end is not None:
            raise ValueError(f"{where}.endPort: requires a numeric port")
        return PolicyPort(protocol)
    if isinstance(port, str):
        if not _SVC_NAME.match(port):
            hint = " (write numeric ports as integers, not strings)" if port.isdigit() else ""
            raise ValueError(f"{where}.port: {port!r} is not a valid port name{hint}")
        if end is not None:
            raise ValueError(f"{where}.endPort: not allowed with a named port")
        return PolicyPort(protocol, name=port)
    if not _is_port(port):
        raise ValueError(f"{where}.port: {port!r} must be in {PORT_MIN}..{PORT_MAX} or a port name")
    if end is not None and (not _is_port(end) or end < port):
        raise ValueError(f"{where}.endPort: {end!r} must be an integer in {port}..{PORT_MAX}")
    return PolicyPort(protocol, port, end)


def _is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and PORT_MIN <= value <= PORT_MAX


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _check_mapping(value: Any, where: str) -> None:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where or 'manifest'}: expected a mapping, got {type(value).__name__}")


def _check_keys(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(f"{where or 'manifest'}: unknown field(s) {sorted(unknown)} (allowed: {sorted(allowed)})")
