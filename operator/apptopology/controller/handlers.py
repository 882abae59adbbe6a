"""Kopf wiring, and nothing else: settings, and watch events to the controller.

Only ``on.event`` handlers: no Kopf progress or diff-base annotations on AppTopologies, no finalizers, and
no Kopf indexes (their start-up barrier does not scale; the controller seeds its own cache). Handlers
return nothing, so Kopf stores nothing in the status.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kopf

from ..api.spec import API_GROUP, API_VERSION, PLURAL
from .runtime import Controller

IDLE_WORKER_SECONDS = 0.2


class RetryForever:
    """Backoffs for Kopf's requests (its LISTs and watches) that never run out. Kopf escalates a request that
    still fails after its backoffs, and an escalated watch stops the whole operator: a watch refused with
    403 (the operator's RBAC changed) then took every topology down with it, and each restart failed again.
    Retrying forever keeps the operator running; the controller probes what it may read, fails closed on
    what it may not, and says so (:meth:`apptopology.controller.runtime.Controller._check_access`). Each
    request iterates afresh, so a later failure starts from the short backoffs again."""

    def __iter__(self) -> Iterator[float]:
        yield from (1, 2, 5)
        while True:
            yield 10


controller: Controller | None = None  # set by apptopology.controller.main before Kopf starts


def _controller() -> Controller:
    assert controller is not None, "apptopology.controller.main sets the controller"
    return controller


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    # No CRD or namespace discovery watches: they would need cluster-wide read RBAC we do not otherwise use.
    settings.scanning.disabled = True
    settings.peering.standalone = True  # our own Lease election; Kopf's peering would pause all replicas
    settings.posting.enabled = False  # our own Events, from the reconciler, only when something happened
    # Watches are re-established every few minutes so a silently dead connection cannot stall us for long.
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 10
    settings.networking.error_backoffs = RetryForever()
    # Kopf lists each resource in one response by default; in pages (as our own seed does) the start-up
    # never holds every policy and pod of the cluster as one parsed body.
    settings.watching.chunk_size = 500
    # Kopf runs a task per object that had an event and keeps it for idle_timeout (5 s) in case another
    # comes. Our handlers only hand the event to the cache and queue, so waiting buys nothing; at a
    # restart every object of the initial listing had one worker alive at once (the RSS after a restart).
    settings.queueing.idle_timeout = IDLE_WORKER_SECONDS
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=API_GROUP)
    await _controller().start()


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    await _controller().stop()


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def topology_event(*, event: kopf.RawEvent, **_: Any) -> None:
    _controller().topology_event(event)


@kopf.on.event("networking.k8s.io", "v1", "networkpolicies")
async def policy_event(*, event: kopf.RawEvent, **_: Any) -> None:
    _controller().policy_event(event)


@kopf.on.event("", "v1", "pods")
async def pod_event(*, event: kopf.RawEvent, **_: Any) -> None:
    _controller().pod_event(event)


@kopf.on.event("", "v1", "namespaces")
async def namespace_event(*, event: kopf.RawEvent, **_: Any) -> None:
    _controller().namespace_event(event)


@kopf.on.event(API_GROUP, API_VERSION, "topologyguardrails")
async def guardrail_event(*, event: kopf.RawEvent, **_: Any) -> None:
    _controller().guardrail_event(event)
