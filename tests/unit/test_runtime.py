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


def order(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    async def test() -> list[str]:
        controller = Controller(Reconciler(FakeCluster()))
        controller.queue = WorkQueue()
        for kind, obj in events:
            getattr(controller, f"{kind}_event")(obj)
        out = []
        while len(controller.queue):
            key, _ = await controller.queue.get()
            out.append(key[1])
            controller.queue.done(key)
        return out

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
