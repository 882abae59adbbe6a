"""Permissions lost at runtime: the operator keeps running, fails closed on what it may no longer read, says
so, and converges when the permission returns (issue 20, finding 5). The real API server's side is in
tests/integration/test_permissions.py."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fake_cluster import FakeCluster

from apptopology.controller.queue import WorkQueue
from apptopology.controller.reconciler import ApiError, Reconciler
from apptopology.controller.runtime import Controller

NS = "prod"
FORBIDDEN = ApiError(403, "Forbidden", 'cannot list resource "topologyguardrails"')


@dataclass
class Seeder:
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)

    def list_all(self, kind: str) -> Iterator[dict[str, Any]]:
        if kind in self.refused:
            raise FORBIDDEN
        yield from copy.deepcopy(self.objects.get(kind, []))

    def probe(self, kind: str) -> None:
        if kind in self.refused:
            raise FORBIDDEN


def guardrail(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "TopologyGuardrail",
        "metadata": {"name": name},
        "spec": {"namespaceSelector": {}, "forbiddenCIDRs": [{"cidr": "10.9.0.0/16"}]},
    }


def topology() -> dict[str, Any]:
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": "shop", "namespace": NS},
        "spec": {
            "tiers": [{"name": "api", "podSelector": {"matchLabels": {"app": "api"}}}],
            "flows": [{"from": {"tier": "api"}, "to": {"ipBlock": {"cidr": "10.9.0.0/16"}}}],
        },
    }


def ready(cluster: FakeCluster) -> dict[str, Any]:
    status = cluster.topologies[(NS, "shop")]["status"]
    return dict(next(c for c in status["conditions"] if c["type"] == "Ready"))


def test_guardrails_unreadable_at_start_and_at_runtime_fail_closed_then_converge() -> None:
    cluster = FakeCluster()
    body = cluster.add_topology(topology())
    seeder = Seeder({"apptopologies": [body], "topologyguardrails": [guardrail("old")]}, refused={"topologyguardrails"})
    reconciler = Reconciler(cluster, now=lambda: "2026-12-01T10:00:00Z")
    controller = Controller(reconciler, seeder=seeder)

    def reconcile() -> None:
        controller.cache.put_topology(copy.deepcopy(cluster.topologies[(NS, "shop")]))  # its watch event
        reconciler.reconcile(NS, "shop", controller.view((NS, "shop")))

    async def scenario() -> None:
        controller._seed()  # refused: the operator starts anyway
        assert set(reconciler.unreadable) == {"topologyguardrails"}
        controller.queue, controller._active = WorkQueue(), asyncio.Event()
        controller._active.set()  # leading
        reconcile()
        cond = ready(cluster)
        assert (cond["status"], cond["reason"]) == ("False", "GuardrailsUnreadable")
        assert "cannot list" in cond["message"] and cluster.names(NS) == []  # nothing written
        assert ("Warning", "GuardrailsUnreadable") in [(t, r) for t, r, _ in cluster.events]

        seeder.refused.clear()  # the permission returns; the guardrail "old" went meanwhile, "new" came
        seeder.objects["topologyguardrails"] = [guardrail("new")]
        await controller._check_access()
        assert reconciler.unreadable == {} and [g.metadata.name for g in reconciler.guardrails] == ["new"]
        assert len(controller.queue) == 1  # every topology looks again
        reconcile()
        cond = ready(cluster)
        assert cond["reason"] == "GuardrailViolation" and "new" in cond["message"]
        assert cluster.names(NS) and "10.9.0.0/16" not in str(cluster.policies)

        seeder.refused.add("topologyguardrails")  # lost again at runtime
        await controller._check_access()
        reconcile()
        assert ready(cluster)["reason"] == "GuardrailsUnreadable"

    asyncio.run(scenario())


def test_a_read_refused_in_a_reconcile_is_reported() -> None:
    cluster = FakeCluster()
    cluster.add_topology(topology())
    cluster.refuse("list", None, ApiError(403, "Forbidden", 'cannot list resource "networkpolicies"'))
    reconciler = Reconciler(cluster, now=lambda: "2026-12-01T10:00:00Z")
    outcome = reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    cond = ready(cluster)
    assert (cond["status"], cond["reason"]) == ("False", "PermissionDenied") and "networkpolicies" in cond["message"]
    assert outcome.summary == "forbidden" and not outcome.retry and cluster.names(NS) == []


def test_pods_that_cannot_be_read_are_a_warning() -> None:
    cluster = FakeCluster()
    cluster.add_topology(topology())
    reconciler = Reconciler(cluster, now=lambda: "2026-12-01T10:00:00Z")
    reconciler.unreadable = {"pods": "403 Forbidden: pods is forbidden"}
    reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    status = cluster.topologies[(NS, "shop")]["status"]
    assert ready(cluster)["status"] == "True"  # enforcement does not depend on pods
    assert any(w.startswith("pods cannot be read") for w in status["warnings"])


def test_kopf_never_gives_up_on_a_watch() -> None:
    import itertools

    from apptopology.controller.handlers import RetryForever

    backoffs = RetryForever()
    assert list(itertools.islice(backoffs, 6)) == [1, 2, 5, 10, 10, 10]
    assert list(itertools.islice(backoffs, 2)) == [1, 2]  # each request starts afresh
