"""Kopf wiring, and nothing else: settings, two indexes (the cache), and events to the work queue.

Only ``on.event`` handlers and indexes: no Kopf progress or diff-base annotations on AppTopologies, no
finalizers. Handlers return nothing, so Kopf stores nothing in the status. Kopf calls the event handlers
only once both indexes hold the initial listing, so no reconcile runs on a half-filled cache.
"""

from __future__ import annotations

from typing import Any

import kopf

from ..api.spec import API_GROUP, API_VERSION, PLURAL
from .cache import policy_index_entries
from .runtime import Controller, cached_body

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
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=API_GROUP)
    await _controller().start()


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    await _controller().stop()


@kopf.index(API_GROUP, API_VERSION, PLURAL)
def topologies(*, body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
    return {(namespace or "", name): cached_body(body)}


@kopf.index("networking.k8s.io", "v1", "networkpolicies")
def policies(*, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return policy_index_entries(body)


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def topology_event(*, event: kopf.RawEvent, **kwargs: Any) -> None:
    # Kopf passes each index under its function's name.
    _controller().bind(kwargs["topologies"], kwargs["policies"])
    _controller().topology_event(event)


@kopf.on.event("networking.k8s.io", "v1", "networkpolicies")
async def policy_event(*, event: kopf.RawEvent, **_: Any) -> None:
    _controller().policy_event(event)
