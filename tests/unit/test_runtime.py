"""The controller's event routing: which events queue a topology, and which go ahead of the rest."""

from __future__ import annotations

import asyncio
from typing import Any

from fake_cluster import FakeCluster

from apptopology.controller.queue import WorkQueue
from apptopology.controller.reconciler import Reconciler
from apptopology.controller.runtime import Controller


def body(name: str, generation: int, uid: str | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "prod", "generation": generation, "uid": uid or f"uid-{name}"},
        "spec": {"tiers": [{"name": "api", "podSelector": {}}]},
    }


async def drain(queue: WorkQueue[tuple[str, str]]) -> list[str]:
    """The names of the keys waiting in ``queue``, in the order workers would take them."""
    out = []
    while len(queue):
        key, _ = await queue.get()
        out.append(key[1])
        queue.done(key)
    return out


def order(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    async def test() -> list[str]:
        controller = Controller(Reconciler(FakeCluster()))
        controller.queue = WorkQueue()
        for kind, obj in events:
            getattr(controller, f"{kind}_event")(obj)
        return await drain(controller.queue)

    return asyncio.run(test())


def test_an_edit_goes_ahead_of_a_burst_of_new_topologies() -> None:
    burst = [("topology", {"type": "ADDED", "object": body(f"t{i}", 1)}) for i in range(5)]
    # t3 is edited while the burst waits; t1's status-only update (same generation) changes nothing.
    edits = [
        ("topology", {"type": "MODIFIED", "object": body("t3", 2)}),
        ("topology", {"type": "MODIFIED", "object": body("t1", 1)}),
    ]
    assert order(burst + edits) == ["t3", "t0", "t1", "t2", "t4"]


def test_a_new_topology_and_a_deletion_are_ordinary() -> None:
    events = [
        ("topology", {"type": "ADDED", "object": body("a", 1)}),
        ("topology", {"type": "ADDED", "object": body("b", 1)}),
        ("topology", {"type": "DELETED", "object": body("b", 1)}),
        ("topology", {"type": "ADDED", "object": body("c", 1)}),
    ]
    assert order(events) == ["a", "b", "c"]


def policy_event(name: str, owner: str | None = None, namespace: str = "prod") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"np-{name}"}
    if owner is not None:
        meta["ownerReferences"] = [
            {"apiVersion": "apptopology.io/v1alpha1", "kind": "AppTopology", "name": owner, "uid": f"uid-{owner}"}
            | {"controller": True}
        ]
    return {"type": "ADDED", "object": {"metadata": meta, "spec": {"podSelector": {}, "ingress": [{}]}}}


def test_another_policy_of_the_namespace_queues_its_topologies_once_after_a_delay() -> None:
    """Isolated is re-evaluated within seconds of a tenant's policy, and a burst costs one pass each."""

    async def test() -> tuple[int, int, list[str]]:
        from apptopology.controller import runtime

        controller = Controller(Reconciler(FakeCluster()))
        controller.queue = WorkQueue()
        for name in ("shop", "billing"):
            controller.topology_event({"type": "ADDED", "object": body(name, 1)})
        await drain(controller.queue)  # the topologies' own first passes
        for i in range(50):  # a burst of foreign policies, and one of shop's own (its echo)
            controller.policy_event(policy_event(f"tenant-{i}"))
        controller.policy_event(policy_event("other-ns", namespace="elsewhere"))
        right_after = len(controller.queue)
        await asyncio.sleep(runtime.ISOLATION_DELAY + 0.2)
        out = await drain(controller.queue)
        return right_after, len(out), sorted(out)

    right_after, count, names = asyncio.run(test())
    assert right_after == 0 and count == 2 and names == ["billing", "shop"]


def test_a_topologys_own_policy_queues_only_its_neighbours() -> None:
    async def test() -> list[str]:
        from apptopology.controller import runtime

        controller = Controller(Reconciler(FakeCluster()))
        controller.queue = WorkQueue()
        for name in ("shop", "billing"):
            controller.topology_event({"type": "ADDED", "object": body(name, 1)})
        await drain(controller.queue)
        controller.reconciler.expectations.set(("prod", "shop"), {})  # shop wants nothing by that name
        controller.policy_event(policy_event("shop.tier-api", owner="shop"))
        await asyncio.sleep(runtime.ISOLATION_DELAY + 0.2)
        return await drain(controller.queue)

    assert asyncio.run(test()) == ["billing"]
