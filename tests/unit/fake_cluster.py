"""An in-memory stand-in for the reconciler's ``Cluster`` (unit tests only; integration tests use a real
kube-apiserver).

It keeps what matters for the executor's logic: objects stored in the API server's form, UIDs and
preconditions, dry runs that store nothing, a count limit like a ResourceQuota, refusals and transient
failures injected per call, and a log of every request.

Never kinder than the real server: an apply without a UID onto an object someone else holds is what
server-side apply does with it, a merge (the object keeps its UID and owner and gains ours: adopted) unless a
field both set differs (409). What the fake cannot see is what the client puts on the wire (a dry-run
flag in the query but not in the DeleteOptions body deletes for real): tests/integration/test_dry_run.py
sends every dry-run verb through the real client to the real API server.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from apptopology.controller.cache import Cache, View
from apptopology.controller.reconciler import ApiError
from apptopology.planner.compare import stored_spec

Rule = Callable[[str, str, bool], ApiError | None]  # (verb, policy name, dry run) -> error to raise


@dataclass
class FakeCluster:
    topologies: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    policies: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    quota: int | None = None  # at most this many NetworkPolicies per namespace (like a ResourceQuota)
    rules: list[Rule] = field(default_factory=list)
    calls: list[tuple[str, str, bool]] = field(default_factory=list)  # (verb, name, dry run)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    # arranging ------------------------------------------------------------------------------------------

    def add_topology(self, body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        meta = body["metadata"]
        meta.setdefault("uid", f"topo-{next(self._ids)}")
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = str(next(self._ids))
        self.topologies[(meta["namespace"], meta["name"])] = body
        return body

    def update_spec(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        body = self.topologies[(namespace, name)]
        body["spec"] = copy.deepcopy(spec)
        body["metadata"]["generation"] += 1
        body["metadata"]["resourceVersion"] = str(next(self._ids))

    def put_policy(self, policy: dict[str, Any]) -> dict[str, Any]:
        """Create a policy as someone else would (no checks)."""
        stored = copy.deepcopy(policy)
        stored["spec"] = stored_spec(stored.get("spec"))
        stored["metadata"]["uid"] = f"np-{next(self._ids)}"
        self.policies[(stored["metadata"]["namespace"], stored["metadata"]["name"])] = stored
        return stored

    def refuse(
        self, verb: str, name: str | None, error: ApiError, dry_run: bool | None = None, times: int = -1
    ) -> None:
        """Fail matching calls (``name`` None: any policy; ``dry_run`` None: both) ``times`` times (-1: always)."""
        left = [times]

        def rule(v: str, n: str, dry: bool) -> ApiError | None:
            if v == verb and name in (None, n) and dry_run in (None, dry) and left[0] != 0:
                left[0] -= 1
                return error
            return None

        self.rules.append(rule)

    def writes(self, dry_run: bool = False) -> list[tuple[str, str]]:
        return [(v, n) for v, n, d in self.calls if d == dry_run and v in ("apply", "delete", "status", "event")]

    def names(self, namespace: str) -> list[str]:
        return sorted(n for ns, n in self.policies if ns == namespace)

    # the Cluster protocol ---------------------------------------------------------------------------

    def _check(self, verb: str, name: str, dry_run: bool) -> None:
        self.calls.append((verb, name, dry_run))
        for rule in self.rules:
            error = rule(verb, name, dry_run)
            if error is not None:
                raise error

    def get_topology(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._check("get", name, False)
        body = self.topologies.get((namespace, name))
        return copy.deepcopy(body) if body is not None else None

    def list_policies(self, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        self._check("list", label_selector or "", False)  # "": the whole namespace
        key, _, value = (label_selector or "").partition("=")
        return [
            copy.deepcopy(p)
            for (ns, _), p in sorted(self.policies.items())
            if ns == namespace and (not key or (p["metadata"].get("labels") or {}).get(key) == value)
        ]

    def get_policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._check("get_policy", name, False)
        policy = self.policies.get((namespace, name))
        return copy.deepcopy(policy) if policy is not None else None

    def apply_policy(self, body: Mapping[str, Any], uid: str | None, dry_run: bool = False) -> dict[str, Any]:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        self._check("apply", meta["name"], dry_run)
        live = self.policies.get(key)
        if uid is not None and (live is None or live["metadata"]["uid"] != uid):
            raise ApiError(409, "Conflict", f"Precondition failed: UID in precondition: {uid}")
        ours = live is not None and any(
            r.get("uid") == body["metadata"]["ownerReferences"][0]["uid"]
            for r in live["metadata"].get("ownerReferences") or []
        )
        if uid is None and live is not None and not ours:
            stored = _merged(live, body)  # what a non-forced server-side apply does with someone else's object
            if not dry_run:
                self.policies[key] = stored
            return copy.deepcopy(stored)
        if live is None and self.quota is not None and len(self.names(meta["namespace"])) >= self.quota:
            raise ApiError(403, "Forbidden", "exceeded quota: count/networkpolicies.networking.k8s.io")
        stored = copy.deepcopy(dict(body))
        stored["spec"] = stored_spec(stored["spec"])
        stored["metadata"]["uid"] = live["metadata"]["uid"] if live is not None else f"np-{next(self._ids)}"
        if not dry_run:
            self.policies[key] = stored
        return copy.deepcopy(stored)

    def delete_policy(self, namespace: str, name: str, uid: str | None, dry_run: bool = False) -> None:
        self._check("delete", name, dry_run)
        live = self.policies.get((namespace, name))
        if live is None:
            return
        if uid is not None and live["metadata"]["uid"] != uid:
            raise ApiError(409, "Conflict", "Precondition failed: UID")
        if not dry_run:
            del self.policies[(namespace, name)]

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str) -> None:
        self._check("status", name, False)
        body = self.topologies[(namespace, name)]
        if resource_version and body["metadata"]["resourceVersion"] != resource_version:
            raise ApiError(409, "Conflict", "the object has been modified")
        body["status"] = {**(body.get("status") or {}), **copy.deepcopy(dict(status))}
        body["metadata"]["resourceVersion"] = str(next(self._ids))

    def event(self, topology: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self._check("event", topology["metadata"]["name"], False)
        self.events.append((type_, reason, message))

    def view(self, namespace: str, name: str) -> View:
        """What the operator's cache would hold for the topology (built from this fake's objects)."""
        cache = Cache()
        for policy in self.policies.values():
            cache.put_policy(policy)
        for body in self.topologies.values():
            cache.put_topology(copy.deepcopy(body))
        return cache.view((namespace, name))


def _merged(live: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    """A non-forced server-side apply of ``body`` onto ``live``, which another manager wrote: 409 when a field
    both set differs; otherwise the union (labels, annotations and selector labels key by key, our
    ownerReference beside theirs, atomic lists as they are when equal or unset there), UID kept."""
    have, want = stored_spec(live.get("spec")), stored_spec(body.get("spec"))
    conflicts = []
    spec = copy.deepcopy(have)
    for field_name, value in want.items():
        if field_name == "podSelector":
            labels = dict((have.get("podSelector") or {}).get("matchLabels") or {})
            for k, v in (value.get("matchLabels") or {}).items():
                if labels.get(k, v) != v:
                    conflicts.append(f".spec.podSelector.matchLabels.{k}")
                labels[k] = v
            expressions = value.get("matchExpressions")
            if expressions and (have.get("podSelector") or {}).get("matchExpressions") not in (None, expressions):
                conflicts.append(".spec.podSelector.matchExpressions")
            selector = {**(have.get("podSelector") or {}), **({"matchLabels": labels} if labels else {})}
            if expressions:
                selector["matchExpressions"] = expressions
            spec["podSelector"] = selector
        elif field_name in have and have[field_name] != value:
            conflicts.append(f".spec.{field_name}")
        else:
            spec[field_name] = value
    meta = copy.deepcopy(dict(live["metadata"]))
    for part in ("labels", "annotations"):
        merged = dict(meta.get(part) or {})
        for k, v in (body["metadata"].get(part) or {}).items():
            if merged.get(k, v) != v:
                conflicts.append(f".metadata.{part}.{k}")
            merged[k] = v
        if merged:
            meta[part] = merged
    refs = list(meta.get("ownerReferences") or [])
    refs += [r for r in body["metadata"].get("ownerReferences") or [] if r not in refs]
    meta["ownerReferences"] = refs
    if conflicts:
        raise ApiError(409, "Conflict", f"Apply failed with {len(conflicts)} conflicts: {', '.join(conflicts)}")
    return {**copy.deepcopy(dict(live)), "metadata": meta, "spec": stored_spec(spec)}
