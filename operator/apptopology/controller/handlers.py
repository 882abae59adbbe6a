"""Kopf wiring: watch AppTopologies and the NetworkPolicies they own, and reconcile on every event.

Level-triggered by design: handlers are ``on.event`` watchers that recompute the whole desired state and
execute the plan from :mod:`apptopology.reconcile`. That means no Kopf progress or diff-base annotations,
no finalizers, and a reconcile with nothing to change makes zero writes, including after a restart.
Handlers return nothing, so Kopf stores nothing in the status.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from typing import Any, cast

import kopf
import urllib3.exceptions

from ..api.spec import API_GROUP, API_VERSION, KIND, PLURAL
from ..plan import Owner, desired_status, plan, status_changed
from ..render import MANAGED_BY_LABEL, MANAGED_BY_VALUE, TOPOLOGY_LABEL
from .kube import ApiException, Kube

log = logging.getLogger("apptopology")

# Transient failures are retried inside the handler: Kopf does not retry event handlers.
RETRY_DELAYS = (0.5, 1, 2, 4, 8, 16)
PERMANENT_STATUSES = {400, 403, 404, 422}

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()
_kube: Kube | None = None


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube()
    return _kube


def _lock(namespace: str, name: str) -> threading.Lock:
    """One reconcile per topology at a time (its own events and its policies' events race otherwise)."""
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.Lock())


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Transient(Exception):
    """A failure worth retrying: conflicts, throttling, server errors, broken connections."""


def reconcile(api: Kube, body: dict[str, Any]) -> None:
    """Bring one AppTopology's policies and status in line with its spec, writing only differences."""
    owner = Owner.from_body(body)
    result = plan(body, api.list_policies(owner.namespace))
    failure = None
    try:
        for action in result.applies:
            api.apply_policy(action)
        for delete in result.deletes:
            api.delete_policy(owner.namespace, delete)
    except ApiException as exc:
        if exc.status not in PERMANENT_STATUSES:
            raise Transient(f"{exc.status} {exc.reason}") from exc
        failure = f"API server refused a NetworkPolicy write: {exc.status} {exc.reason}: {exc.body or ''}"[:1000]
    status = desired_status(body, result, _now(), failure)
    if status_changed(body.get("status"), status):
        api.patch_status(owner.namespace, owner.name, status)
        ready = status["conditions"][0]
        if ready["status"] != "True":
            kopf.warn(kopf.Body(cast(kopf.RawBody, body)), reason=ready["reason"], message=ready["message"])
        log.info(
            "%s/%s: %d applied, %d deleted, Ready=%s (%s)",
            owner.namespace,
            owner.name,
            len(result.applies),
            len(result.deletes),
            ready["status"],
            ready["reason"],
        )
    elif result.writes:
        log.info(
            "%s/%s: %d applied, %d deleted",
            owner.namespace,
            owner.name,
            len(result.applies),
            len(result.deletes),
        )


def reconcile_with_retries(namespace: str, name: str, body: dict[str, Any] | None) -> None:
    """Reconcile under the topology's lock; refetch and retry on transient failures."""
    with _lock(namespace, name):
        for attempt, delay in enumerate((*RETRY_DELAYS, None)):
            try:
                current = body if body is not None and attempt == 0 else kube().get_topology(namespace, name)
                if current is None or current["metadata"].get("deletionTimestamp"):
                    return  # gone or going: garbage collection removes its policies
                reconcile(kube(), current)
                return
            except (Transient, urllib3.exceptions.HTTPError, ApiException) as exc:
                if isinstance(exc, ApiException) and exc.status in PERMANENT_STATUSES:
                    log.error("%s/%s: %s %s", namespace, name, exc.status, exc.reason)
                    return
                if delay is None:
                    log.error("%s/%s: giving up after %d attempts: %s", namespace, name, attempt + 1, exc)
                    return
                log.warning("%s/%s: retrying in %ss: %s", namespace, name, delay, exc)
                time.sleep(delay)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Kopf settings, chosen for a level-triggered operator with least privilege."""
    # No CRD or namespace discovery watches: they would need cluster-wide read RBAC we do not otherwise use.
    settings.scanning.disabled = True
    # One replica with a Recreate strategy: no peering objects to create or watch.
    settings.peering.standalone = True
    # Only warnings become Kubernetes Events (an Event per info log line would be a write per reconcile).
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "apptopology-operator"
    # Watches are re-established every few minutes so a silently dead connection cannot stall us for long.
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 10
    # Event handlers store no progress; keep any Kopf bookkeeping off our own objects' annotations anyway.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=API_GROUP)
    settings.execution.max_workers = 8


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
def topology_event(event: kopf.RawEvent, **_: Any) -> None:
    """Any change to an AppTopology (including the initial listing on start) triggers a reconcile."""
    if event.get("type") == "DELETED":
        return
    obj = cast(dict[str, Any], event["object"])
    meta = obj["metadata"]
    reconcile_with_retries(meta["namespace"], meta["name"], obj)


def _owner_name(policy: dict[str, Any]) -> str | None:
    meta = policy.get("metadata", {})
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(f"{API_GROUP}/") and ref.get("controller"):
            return str(ref["name"])
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE and labels.get(TOPOLOGY_LABEL):
        return str(labels[TOPOLOGY_LABEL])
    return None


def _is_managed(body: kopf.Body, **_: Any) -> bool:
    return _owner_name(dict(body)) is not None


@kopf.on.event("networking.k8s.io", "v1", "networkpolicies", when=_is_managed)
def policy_event(event: kopf.RawEvent, **_: Any) -> None:
    """Drift repair: a change to or deletion of an owned policy reconciles its owner."""
    obj = cast(dict[str, Any], event["object"])
    name = _owner_name(obj)
    if name is not None:
        reconcile_with_retries(obj["metadata"]["namespace"], name, None)
