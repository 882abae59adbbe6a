"""The operator's view of the cluster: seeded by one paged LIST at start, then kept by the watch events
Kopf delivers anyway.

What is kept is what a reconcile needs to decide "nothing to do" without a request: the newest body of
every AppTopology (packed: compressed JSON), the names of every NetworkPolicy (for name conflicts), and
for every NetworkPolicy a topology owns, 16 bytes of digest of what the operator manages on it
(:func:`apptopology.planner.compare.managed_digest`). Writes never trust the cache: when anything differs, the
reconcile reads the topology's policies from the API server and plans from that answer.

(Not Kopf indexes: Kopf holds every handler until each indexed object's worker has run once, and the
wake-ups of that barrier grow with the cube of the object count: at 8,000 objects a restart never got
past it.)

Also kept: what each topology last wanted (the digests of its desired policies), so that the watch
event of our own write, which arrives with exactly that digest, costs no reconcile at all.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..api.spec import API_GROUP, KIND
from ..evaluator import Namespace, Pod, inventory_from_manifests
from ..planner.compare import managed_digest
from ..planner.plan import candidate_owners

Key = tuple[str, str]  # (namespace, name) of an AppTopology


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    name: str
    uid: str
    digest: bytes


@dataclass(frozen=True)
class View:
    """What the cache knows about one topology at the start of a reconcile (a snapshot, not live):
    its body, the policies it owns, and the names of every policy of its namespace (for conflicts)."""

    body: dict[str, Any] | None
    owned: dict[str, PolicyEntry]
    names: frozenset[str] = frozenset()
    pods: tuple[Pod, ...] = ()  # of its namespace, and of the namespaces its DNS servers run in
    namespaces: tuple[Namespace, ...] = ()
    neighbours: int = 0  # how many other topologies its namespace has
    # The other topologies of its namespace: (name, metadata.generation, packed body) each (shared bytes, not
    # copies): what it renders may depend on theirs (a DNS policy selecting every pod must not open theirs).
    neighbour_bodies: tuple[tuple[str, object, bytes], ...] = ()
    # Counts the events of the namespace's NetworkPolicies this topology does not own: a change means another
    # policy came, went or changed, so whether they open its pods (the Isolated condition) may have changed.
    foreign_changes: int = 0


def _controller(policy: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in (policy.get("metadata") or {}).get("ownerReferences") or []:
        if (
            ref.get("controller") is True
            and ref.get("kind") == KIND
            and str(ref.get("apiVersion", "")).startswith(f"{API_GROUP}/")
        ):
            return dict(ref)
    return None


def controller_uid(policy: Mapping[str, Any]) -> str | None:
    ref = _controller(policy)
    return str(ref.get("uid")) if ref is not None else None


def controller_name(policy: Mapping[str, Any]) -> str | None:
    """The name of the AppTopology a policy's controller reference points to (whatever its UID)."""
    ref = _controller(policy)
    return str(ref.get("name")) if ref is not None else None


# Metadata a reconcile never reads: dropped from cached bodies (managedFields and kubectl's
# last-applied-configuration annotation are often larger than the spec).
_UNUSED_METADATA = ("managedFields", "annotations", "labels")


def cached_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the cache keeps of an AppTopology body."""
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k not in _UNUSED_METADATA}
    return {**body, "metadata": meta}


def pack(data: Any) -> bytes:
    """JSON data as compressed bytes. A topology body with its status is 2.3 KB of JSON, about 18 KB as
    Python dicts and strings, 0.8 KB packed: at 10,000 topologies the parsed bodies alone were 180 MB."""
    return zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 1)


def unpack(blob: bytes) -> Any:
    """A fresh copy of what :func:`pack` was given (about 25 microseconds for a topology)."""
    return json.loads(zlib.decompress(blob))


def needs_facts(body: Mapping[str, Any]) -> bool:
    """Whether a topology renders from cluster facts: dns.discover, or a kubeAPI endpoint."""
    spec = body.get("spec")
    if not isinstance(spec, dict):
        return False
    dns = spec.get("dns")
    if isinstance(dns, dict) and dns.get("discover") is True:
        return True
    flows = spec.get("flows")
    return any(
        isinstance(f, dict) and any(isinstance(f.get(s), dict) and f[s].get("kubeAPI") is True for s in ("from", "to"))
        for f in (flows if isinstance(flows, list) else [])
    )


def weight(body: Mapping[str, Any]) -> int:
    """What rendering and planning the topology costs, roughly: its tiers plus, per flow, its port entries
    (at least one). Read from the body as it is, without validating it."""
    spec = body.get("spec")
    if not isinstance(spec, dict):
        return 0
    tiers, flows = spec.get("tiers"), spec.get("flows")
    count = len(tiers) if isinstance(tiers, list) else 0
    for flow in flows if isinstance(flows, list) else []:
        ports = flow.get("ports") if isinstance(flow, dict) else None
        count += max(1, len(ports) if isinstance(ports, list) else 0)
    return count


class Bodies(Mapping[Key, dict[str, Any]]):
    """The newest body of every AppTopology, packed; each read decodes a fresh copy (so a reconcile on
    another thread owns what it reads). Known without decoding: each one's generation (an event tells an
    edit from a status echo by it), which ones need cluster facts, and each one's :func:`weight`."""

    def __init__(self) -> None:
        self._packed: dict[Key, tuple[object, bytes, int]] = {}  # key -> (metadata.generation, packed, weight)
        self.needing_facts: set[Key] = set()

    def put(self, key: Key, body: Mapping[str, Any]) -> None:
        generation = (body.get("metadata") or {}).get("generation")
        self._packed[key] = (generation, pack(cached_body(body)), weight(body))
        if needs_facts(body):
            self.needing_facts.add(key)
        else:
            self.needing_facts.discard(key)

    def pop(self, key: Key) -> None:
        self._packed.pop(key, None)
        self.needing_facts.discard(key)

    def entry(self, key: Key) -> tuple[object, bytes]:
        """(metadata.generation, packed body) of ``key``, without decoding it."""
        generation, packed, _ = self._packed[key]
        return generation, packed

    def generation(self, key: Key) -> object:
        """The metadata.generation of the body kept for ``key``; None when none is kept."""
        entry = self._packed.get(key)
        return entry[0] if entry is not None else None

    def weight(self, key: Key) -> int:
        """The :func:`weight` of the body kept for ``key``; 0 when none is kept."""
        entry = self._packed.get(key)
        return entry[2] if entry is not None else 0

    def __getitem__(self, key: Key) -> dict[str, Any]:
        body: dict[str, Any] = unpack(self._packed[key][1])
        return body

    def __contains__(self, key: object) -> bool:
        return key in self._packed

    def __iter__(self) -> Iterator[Key]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)


class Cache:
    """AppTopology bodies and NetworkPolicy digests, by namespace. Mutated only on the event loop."""

    def __init__(self) -> None:
        self.topologies = Bodies()
        self._owned: dict[tuple[str, str], dict[str, PolicyEntry]] = {}  # (namespace, owner uid) -> name -> entry
        self._names: dict[str, set[str]] = {}  # namespace -> names of every policy
        self._owner_of: dict[tuple[str, str], str | None] = {}  # (namespace, name) -> owner uid
        self._in_namespace: dict[str, set[str]] = {}  # namespace -> names of its topologies
        self.pods: dict[str, dict[str, Pod]] = {}  # namespace -> name -> pod (labels, IP, container ports)
        self._changes: dict[str, int] = {}  # namespace -> policy events
        self._own_changes: dict[tuple[str, str], int] = {}  # (namespace, owner uid) -> events of its policies
        self.namespaces: dict[str, Namespace] = {}

    def put_topology(self, body: Mapping[str, Any]) -> Key:
        meta = body["metadata"]
        key = (str(meta["namespace"]), str(meta["name"]))
        self.topologies.put(key, body)
        self._in_namespace.setdefault(key[0], set()).add(key[1])
        return key

    def drop_topology(self, body: Mapping[str, Any]) -> Key:
        meta = body["metadata"]
        key = (str(meta["namespace"]), str(meta["name"]))
        self.topologies.pop(key)
        names = self._in_namespace.get(key[0])
        if names is not None:
            names.discard(key[1])
            if not names:
                del self._in_namespace[key[0]]
                self._changes.pop(key[0], None)
        self._own_changes.pop((key[0], str(meta.get("uid"))), None)
        return key

    def topologies_in(self, namespace: str) -> list[Key]:
        return [(namespace, n) for n in sorted(self._in_namespace.get(namespace, ()))]

    def put_pod(self, manifest: Mapping[str, Any]) -> bool:
        """Keep a pod's labels, IP and container ports; True when what is kept changed."""
        try:
            (pod,) = inventory_from_manifests([{**manifest, "kind": "Pod"}]).pods
        except ValueError:
            return self.drop_pod(manifest)  # unreadable labels or ports: as if absent
        pods = self.pods.setdefault(pod.namespace, {})
        if pods.get(pod.name) == pod:
            return False
        pods[pod.name] = pod
        return True

    def drop_pod(self, manifest: Mapping[str, Any]) -> bool:
        meta = manifest.get("metadata") or {}
        pods = self.pods.get(str(meta.get("namespace")))
        if pods is None or pods.pop(str(meta.get("name")), None) is None:
            return False
        if not pods:
            del self.pods[str(meta.get("namespace"))]
        return True

    def put_namespace(self, manifest: Mapping[str, Any]) -> bool:
        meta = manifest.get("metadata") or {}
        name = str(meta.get("name"))
        namespace = Namespace(name, {**dict(meta.get("labels") or {}), "kubernetes.io/metadata.name": name})
        changed = self.namespaces.get(name) != namespace
        self.namespaces[name] = namespace
        return changed

    def drop_namespace(self, manifest: Mapping[str, Any]) -> bool:
        return self.namespaces.pop(str((manifest.get("metadata") or {}).get("name")), None) is not None

    def put_policy(self, policy: Mapping[str, Any]) -> None:
        meta = policy["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        self._forget(namespace, name)
        self._changed(namespace, controller_uid(policy))
        self._names.setdefault(namespace, set()).add(name)
        owner = controller_uid(policy)
        self._owner_of[(namespace, name)] = owner
        if owner is not None:
            entry = PolicyEntry(name, str(meta.get("uid", "")), managed_digest(policy))
            self._owned.setdefault((namespace, owner), {})[name] = entry

    def drop_policy(self, policy: Mapping[str, Any]) -> None:
        meta = policy["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        self._changed(namespace, self._owner_of.get((namespace, name), controller_uid(policy)))
        self._forget(namespace, name)

    def _changed(self, namespace: str, owner: str | None) -> None:
        """Count a policy event where topologies live (only there: a namespace without any needs no count)."""
        if namespace not in self._in_namespace:
            return
        self._changes[namespace] = self._changes.get(namespace, 0) + 1
        if owner is not None:
            self._own_changes[(namespace, owner)] = self._own_changes.get((namespace, owner), 0) + 1

    def _forget(self, namespace: str, name: str) -> None:
        if (namespace, name) not in self._owner_of:
            return
        owner = self._owner_of.pop((namespace, name))
        names = self._names.get(namespace)
        if names is not None:
            names.discard(name)
            if not names:
                del self._names[namespace]
        if owner is not None:
            owned = self._owned.get((namespace, owner))
            if owned is not None:
                owned.pop(name, None)
                if not owned:
                    del self._owned[(namespace, owner)]

    def view(self, key: Key) -> View:
        """A snapshot for one reconcile (copies: the reconcile runs on another thread)."""
        body = self.topologies.get(key)
        if body is None:
            return View(None, {})
        uid = str(body["metadata"].get("uid"))
        pods = [*self.pods.get(key[0], {}).values()]
        for namespace in _dns_namespaces(body):
            if namespace != key[0]:
                pods += self.pods.get(namespace, {}).values()
        others = sorted(n for n in self._in_namespace.get(key[0], ()) if n != key[1])
        return View(
            body,
            dict(self._owned.get((key[0], uid), {})),
            frozenset(self._names.get(key[0], ())),
            tuple(pods),
            tuple(self.namespaces.values()),
            neighbours=len(others),
            neighbour_bodies=tuple((n, *self.topologies.entry((key[0], n))) for n in others),
            foreign_changes=self._changes.get(key[0], 0) - self._own_changes.get((key[0], uid), 0),
        )

    def policy_keys(self) -> Iterator[tuple[str, str]]:
        """(namespace, name) of every NetworkPolicy held."""
        return iter(list(self._owner_of))

    def policy_count(self, namespace: str | None = None) -> int:
        """Policies of the cluster, or of one namespace."""
        if namespace is not None:
            return len(self._names.get(namespace, ()))
        return len(self._owner_of)


def _dns_namespaces(body: Mapping[str, Any]) -> list[str]:
    """The namespaces a topology's DNS servers run in, as far as its namespaceSelector names them (by
    kubernetes.io/metadata.name; kube-system by default), for the DNS warning of the status."""
    spec = body.get("spec")
    dns = spec.get("dns") if isinstance(spec, dict) else None
    selector = (
        dns.get("namespaceSelector", {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}})
        if isinstance(dns, dict)
        else {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
    )
    labels = selector.get("matchLabels") if isinstance(selector, dict) else None
    name = labels.get("kubernetes.io/metadata.name") if isinstance(labels, dict) else None
    return [str(name)] if name else []


class Expectations:
    """What each topology last wanted: policy name -> digest of the desired object."""

    def __init__(self) -> None:
        self._wanted: dict[Key, dict[str, bytes]] = {}
        self._policies = 0  # kept as it changes: the metric is read after every reconcile

    def set(self, key: Key, digests: Mapping[str, bytes]) -> None:
        self._policies -= len(self._wanted.get(key, ()))
        self._wanted[key] = dict(digests)
        self._policies += len(digests)

    def forget(self, key: Key) -> None:
        self._policies -= len(self._wanted.pop(key, ()))

    def keys_to_reconcile(self, event: Mapping[str, Any]) -> list[tuple[Key, bool]]:
        """The topologies a NetworkPolicy event concerns, except where it is the echo of our own write, each
        with whether it is drift (a policy its owner wants, changed or deleted: urgent).

        A policy whose digest is what its owner wants, or the deletion of one its owner no longer wants,
        needs nothing; anything else (drift, a deleted policy, a foreign policy under a wanted name, an
        owner we have not reconciled yet) reconciles the candidates.
        """
        policy = event["object"]
        meta = policy.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        deleted = event.get("type") == "DELETED"
        keys = []
        for owner in sorted(candidate_owners(policy)):
            key = (namespace, owner)
            wanted = self._wanted.get(key)
            if wanted is None:
                keys.append((key, False))
            elif name not in wanted:
                continue  # not one of its policies (a stale one going, or a look-alike)
            elif not deleted and wanted[name] == managed_digest(policy):
                continue  # the echo of our own write
            else:
                keys.append((key, True))
        return keys

    def __len__(self) -> int:
        return len(self._wanted)

    def wanted_policies(self) -> int:
        return self._policies


def digests(policies: Iterable[Mapping[str, Any]]) -> dict[str, bytes]:
    return {str(p["metadata"]["name"]): managed_digest(p) for p in policies}
