"""An in-memory stand-in for the reconciler's ``Cluster`` (unit tests only; integration tests use a real
kube-apiserver).

It keeps what matters for the executor's logic: objects stored in the API server's form, UIDs and
preconditions, dry runs that store nothing, a count limit like a ResourceQuota, refusals and transient
failures injected per call, and a log of every request.

Never kinder than the real server: an apply without a UID is what the real client sends for it, a create,
which fails on any object holding the name. What the fake cannot see is what the client puts on the wire
(a dry-run flag in the query but not in a DeleteOptions body deletes for real):
tests/integration/test_dry_run.py sends every dry-run verb through the real client to the real API server.
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
        # As the API server answers a LIST: the items carry no kind or apiVersion (only the list does).
        return [
            {k: v for k, v in copy.deepcopy(p).items() if k not in ("kind", "apiVersion")}
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
        if uid is None and live is not None:  # a create (the real client POSTs): never merges into what exists
            raise ApiError(409, "AlreadyExists", f'networkpolicies.networking.k8s.io "{meta["name"]}" already exists')
        if live is None and self.quota is not None and len(self.names(meta["namespace"])) >= self.quota:
            raise ApiError(403, "Forbidden", "exceeded quota: count/networkpolicies.networking.k8s.io")
        stored = copy.deepcopy(dict(body))
        stored["spec"] = stored_spec(stored["spec"])
        stored["metadata"]["uid"] = live["metadata"]["uid"] if live is not None else f"np-{next(self._ids)}"
        if not dry_run:
            self.policies[key] = stored
        return copy.deepcopy(stored)

    def delete_policy(self, namespace: str, name: str, uid: str, dry_run: bool = False) -> None:
        self._check("delete", name, dry_run)
        live = self.policies.get((namespace, name))
        if live is None:
            return
        if live["metadata"]["uid"] != uid:
            raise ApiError(409, "Conflict", "Precondition failed: UID")
        if not dry_run:
            del self.policies[(namespace, name)]

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str) -> str:
        self._check("status", name, False)
        body = self.topologies[(namespace, name)]
        if resource_version and body["metadata"]["resourceVersion"] != resource_version:
            raise ApiError(409, "Conflict", "the object has been modified")
        body["status"] = {**(body.get("status") or {}), **copy.deepcopy(dict(status))}
        body["metadata"]["resourceVersion"] = str(next(self._ids))
        return str(body["metadata"]["resourceVersion"])

    def event(self, topology: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self._check("event", topology["metadata"]["name"], False)
        self.events.append((type_, reason, message))

    def view(self, namespace: str, name: str) -> View:
        """What the operator's cache would hold for the topology (built from this fake's objects)."""
        cache = Cache()
        for body in self.topologies.values():
            cache.put_topology(copy.deepcopy(body))
        for policy in self.policies.values():  # after the topologies: counted as the events a cache sees
            cache.put_policy(policy)
        return cache.view((namespace, name))
