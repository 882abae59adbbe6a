"""The things NetworkPolicies talk about: namespaces, pods and cluster-external endpoints.

Everything is a frozen, hashable dataclass so endpoints can key connectivity
matrices. `inventory_from_manifests` turns ordinary manifests into an inventory
with one representative pod per workload, which is what policy generation
reasons about (replicas of a template are indistinguishable to selectors).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .labels import Labels, as_labels
from .ports import PORT_MAX, PORT_MIN, check_protocol

NAME_LABEL: Final = "kubernetes.io/metadata.name"
"""Label the API server puts on every namespace, always equal to its name."""

DEFAULT_NAMESPACE: Final = "default"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_WORKLOAD_KINDS: Final = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
_INVENTORY_KINDS: Final = ("Namespace", "Pod", "CronJob", *_WORKLOAD_KINDS)


@dataclass(frozen=True, slots=True)
class ContainerPort:
    """A declared container port; only named ones matter to policies (numeric rules ignore them)."""

    name: str | None
    port: int
    protocol: str = "TCP"

    def __post_init__(self) -> None:
        check_protocol(self.protocol)
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not PORT_MIN <= self.port <= PORT_MAX:
            raise ValueError(f"container port {self.port!r} must be an integer in {PORT_MIN}..{PORT_MAX}")


@dataclass(frozen=True)
class Namespace:
    """A namespace; `kubernetes.io/metadata.name` is forced to the name, as the API server does."""

    name: str
    labels: Mapping[str, str] = field(default_factory=Labels)

    def __post_init__(self) -> None:
        merged = dict(self.labels)
        merged[NAME_LABEL] = self.name
        object.__setattr__(self, "labels", Labels(merged))


@dataclass(frozen=True)
class Pod:
    """A pod (or the representative pod of a workload template).

    `ip` is optional: policies' ipBlock peers can only match pods that have one.
    """

    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=Labels)
    ip: str | None = None
    ports: tuple[ContainerPort, ...] = ()
    workload: str | None = None
    address: IPAddress | None = field(init=False, repr=False, compare=False, default=None)
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", as_labels(self.labels))
        object.__setattr__(self, "ports", tuple(self.ports))
        # Pods key every cache and matrix lookup: hash once, not per lookup.
        key = (self.namespace, self.name, self.labels, self.ip, self.ports, self.workload)
        object.__setattr__(self, "_hash", hash(key))
        if self.ip is not None:
            try:
                object.__setattr__(self, "address", ipaddress.ip_address(self.ip))
            except ValueError as exc:
                raise ValueError(f"pod {self.namespace}/{self.name}: invalid ip {self.ip!r}") from exc

    def __hash__(self) -> int:
        return self._hash

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def named_ports(self) -> frozenset[tuple[str, str, int]]:
        """(name, protocol, port) of every named container port: what named policy ports resolve to."""
        return frozenset((p.name, p.protocol, p.port) for p in self.ports if p.name)

    def __str__(self) -> str:
        return self.ref


@dataclass(frozen=True)
class External:
    """A cluster-external IP address or CIDR block (e.g. an API, a database, "the internet").

    A CIDR stands for every address in it: connectivity to or from it is reported as
    what is allowed for *all* of its addresses.
    """

    address: str
    name: str | None = None
    network: IPNetwork = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            net = ipaddress.ip_network(self.address, strict=False)
        except ValueError as exc:
            raise ValueError(f"external {self.name or self.address!r}: invalid IP/CIDR {self.address!r}") from exc
        object.__setattr__(self, "network", net)

    @property
    def ref(self) -> str:
        return self.name or self.address

    def __str__(self) -> str:
        return self.ref if self.name is None else f"{self.name} ({self.address})"


Endpoint = Pod | External


@dataclass(frozen=True)
class Inventory:
    """Namespaces, pods and externals; namespaces referenced by pods are added if undeclared."""

    namespaces: tuple[Namespace, ...] = ()
    pods: tuple[Pod, ...] = ()
    externals: tuple[External, ...] = ()
    _ns_by_name: dict[str, Namespace] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        by_name: dict[str, Namespace] = {}
        for ns in self.namespaces:
            if ns.name in by_name:
                raise ValueError(f"namespace {ns.name!r} declared twice")
            by_name[ns.name] = ns
        seen: set[tuple[str, str]] = set()
        for pod in self.pods:
            if (pod.namespace, pod.name) in seen:
                raise ValueError(f"pod {pod.ref} declared twice")
            seen.add((pod.namespace, pod.name))
            if pod.namespace not in by_name:
                by_name[pod.namespace] = Namespace(pod.namespace)
        object.__setattr__(self, "namespaces", tuple(by_name.values()))
        object.__setattr__(self, "pods", tuple(self.pods))
        object.__setattr__(self, "externals", tuple(self.externals))
        object.__setattr__(self, "_ns_by_name", by_name)

    def namespace(self, name: str) -> Namespace:
        """The declared namespace, or a synthetic one carrying only its name label."""
        return self._ns_by_name.get(name) or Namespace(name)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return (*self.pods, *self.externals)


def inventory_from_manifests(
    manifests: Iterable[Mapping[str, Any] | None], externals: Iterable[External] = ()
) -> Inventory:
    """Build an Inventory from Namespace, Pod and workload manifests (other kinds are ignored).

    Workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) contribute one
    representative pod named after the workload, with `workload="Kind/name"` and no IP.
    An object whose controlling owner is also among the manifests (the Pods and ReplicaSet
    of a Deployment in a `kubectl get all` dump) is skipped: its owner already represents it.
    `kind: List` documents are flattened; None entries (empty YAML documents) are skipped.
    """
    docs = [d for d in _flatten(manifests) if d.get("kind") in _INVENTORY_KINDS]
    present = {(_namespace_of(d), d.get("kind"), (d.get("metadata") or {}).get("name")) for d in docs}
    namespaces: list[Namespace] = []
    pods: list[Pod] = []
    for doc in docs:
        kind = doc.get("kind")
        meta = doc.get("metadata") or {}
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{kind} without metadata.name")
        if kind == "Namespace":
            namespaces.append(Namespace(name, _labels(meta, f"Namespace {name}")))
            continue
        namespace = _namespace_of(doc)
        owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
        if owner is not None and (namespace, owner.get("kind"), owner.get("name")) in present:
            continue
        where = f"{kind} {namespace}/{name}"
        if kind == "Pod":
            status = doc.get("status") or {}
            pods.append(
                Pod(
                    namespace,
                    name,
                    _labels(meta, where),
                    ip=status.get("podIP") or None,
                    ports=_container_ports(doc.get("spec") or {}, where),
                )
            )
            continue
        spec = doc.get("spec") or {}
        if kind == "CronJob":
            spec = (spec.get("jobTemplate") or {}).get("spec") or {}
        template = spec.get("template") or {}
        pods.append(
            Pod(
                namespace,
                name,
                _labels(template.get("metadata") or {}, f"{where} template"),
                ports=_container_ports(template.get("spec") or {}, f"{where} template"),
                workload=f"{kind}/{name}",
            )
        )
    return Inventory(tuple(namespaces), tuple(pods), tuple(externals))


def _namespace_of(doc: Mapping[str, Any]) -> str:
    return str((doc.get("metadata") or {}).get("namespace") or DEFAULT_NAMESPACE)


def _flatten(manifests: Iterable[Mapping[str, Any] | None]) -> Iterator[Mapping[str, Any]]:
    for doc in manifests:
        if doc is None:
            continue
        if not isinstance(doc, Mapping):
            raise ValueError(f"manifest must be a mapping, got {type(doc).__name__}")
        if doc.get("kind") == "List":
            yield from _flatten(doc.get("items") or [])
        else:
            yield doc


def _labels(meta: Mapping[str, Any], where: str) -> Labels:
    try:
        return Labels(meta.get("labels") or {})
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def _container_ports(pod_spec: Mapping[str, Any], where: str) -> tuple[ContainerPort, ...]:
    """Ports of regular containers plus native sidecars (init containers with restartPolicy Always)."""
    containers = list(pod_spec.get("containers") or [])
    containers += [c for c in pod_spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    out: list[ContainerPort] = []
    for c in containers:
        for p in c.get("ports") or []:
            try:
                out.append(ContainerPort(p.get("name") or None, p.get("containerPort"), p.get("protocol") or "TCP"))
            except ValueError as exc:
                raise ValueError(f"{where}: container {c.get('name')!r}: {exc}") from exc
    return tuple(out)
