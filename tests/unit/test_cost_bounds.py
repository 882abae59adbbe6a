"""Large topologies cannot hold back the others: the heavy lane, and a reconcile that validates once."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from fake_cluster import FakeCluster

from apptopology.controller import runtime
from apptopology.controller.cache import weight
from apptopology.controller.reconciler import Outcome, Reconciler
from apptopology.controller.runtime import Controller
from apptopology.render import validation

NS = "prod"


def body(name: str, flows: int, ports: int = 1) -> dict[str, Any]:
    tiers = [{"name": "a", "podSelector": {"matchLabels": {"app": "a"}}}]
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": name, "namespace": NS, "generation": 1, "uid": f"uid-{name}"},
        "spec": {
            "tiers": tiers,
            "flows": [
                {"from": {"tier": "a"}, "to": {"tier": "a"}, "ports": [{"port": 1000 + i + p} for p in range(ports)]}
                for i in range(flows)
            ],
        },
    }


def test_weight_counts_tiers_and_the_flows_port_entries() -> None:
    assert weight(body("t", 3, 4)) == 1 + 3 * 4
    assert weight({"spec": {"tiers": [{}], "flows": [{}, {"ports": []}]}}) == 3  # a flow counts at least one
    assert weight({"spec": "garbage"}) == 0


class Blocking(Reconciler):
    """Reconciles of heavy topologies block until released; the rest return at once."""

    def __init__(self) -> None:
        super().__init__(FakeCluster())
        self.release = threading.Event()
        self.small_done = threading.Event()
        self.running = 0
        self.most = 0
        self.done: list[str] = []
        self._lock = threading.Lock()

    def reconcile(self, namespace: str, name: str, view: Any = None) -> Outcome:
        if name.startswith("heavy"):
            with self._lock:
                self.running += 1
                self.most = max(self.most, self.running)
            self.release.wait(30)
            with self._lock:
                self.running -= 1
        else:
            self.small_done.set()
        with self._lock:
            self.done.append(name)
        return Outcome(summary="in_sync")


def run(heavy_weight: int, monkeypatch: pytest.MonkeyPatch) -> tuple[bool, Blocking]:
    """Four heavy topologies queued before a small one, two workers, one heavy reconcile at a time:
    whether the small one was reconciled while the heavy ones were still running."""
    monkeypatch.setattr(runtime, "HEAVY_WEIGHT", heavy_weight)
    reconciler = Blocking()

    async def scenario() -> bool:
        controller = Controller(reconciler, workers=2, heavy_at_once=1)
        for i in range(4):
            controller.cache.put_topology(body(f"heavy-{i}", 20))
        controller.cache.put_topology(body("small", 1))
        await controller.start()
        try:
            served = await asyncio.to_thread(reconciler.small_done.wait, 3)
            reconciler.release.set()
            deadline = time.monotonic() + 30
            while len(reconciler.done) < 5 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            return served
        finally:
            reconciler.release.set()
            await controller.stop()

    return asyncio.run(scenario()), reconciler


def test_a_small_topology_is_reconciled_while_heavy_ones_run(monkeypatch: pytest.MonkeyPatch) -> None:
    served, reconciler = run(10, monkeypatch)
    assert served
    assert reconciler.most == 1  # one heavy reconcile at a time
    assert sorted(reconciler.done) == ["heavy-0", "heavy-1", "heavy-2", "heavy-3", "small"]


def test_without_the_heavy_lane_the_workers_are_all_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same queue with every topology ordinary: both workers block on heavy ones, the small one waits
    (what the lane prevents)."""
    served, reconciler = run(10**9, monkeypatch)
    assert not served
    assert reconciler.most == 2


def test_a_reconcile_validates_the_spec_once(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = FakeCluster()
    cluster.add_topology(body("shop", 3))
    reconciler = Reconciler(cluster, now=lambda: "2026-12-01T10:00:00Z", recheck_after=60)
    calls: list[str] = []
    real = validation.parse_topology

    def counting(doc: Any) -> Any:
        calls.append(doc["metadata"]["name"])
        return real(doc)

    monkeypatch.setattr(validation, "parse_topology", counting)
    reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))  # creates, then reports with the tiers' status
    assert calls == ["shop"]
    cluster.update_spec(NS, "shop", body("shop", 4)["spec"])
    calls.clear()
    reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    assert calls == ["shop"]
    # Outside a reconcile nothing is remembered.
    spec = cluster.topologies[(NS, "shop")]["spec"]
    validation.parse_spec("shop", NS, spec)
    validation.parse_spec("shop", NS, spec)
    assert calls == ["shop", "shop", "shop"]


def test_an_invalid_spec_stays_invalid_within_a_reconcile() -> None:
    spec = {"tiers": []}
    with validation.parsed_once():
        for _ in range(2):
            with pytest.raises(validation.InvalidTopology):
                validation.parse_spec("shop", NS, spec)


def test_isolation_of_a_topology_too_large_to_compare_is_not_evaluated() -> None:
    """Comparing the intent costs endpoints^2 x flows: past the bound the condition is Unknown, at once
    and without reading the namespace, instead of minutes of CPU."""
    cluster = FakeCluster()
    big = body("big", 0)
    big["spec"]["flows"] = [
        {
            "from": {
                "namespaceSelector": {"matchLabels": {"team": f"t{i}"}},
                "podSelector": {"matchLabels": {"app": "x"}},
            },
            "to": {"tier": "a"},
            "ports": [{"port": 443}],
        }
        for i in range(150)
    ]
    cluster.add_topology(big)
    cluster.add_topology(body("neighbour", 1))
    reconciler = Reconciler(cluster, now=lambda: "2026-12-01T10:00:00Z", recheck_after=60)
    reconciler.reconcile(NS, "neighbour", cluster.view(NS, "neighbour"))
    cluster.calls.clear()
    reconciler.reconcile(NS, "big", cluster.view(NS, "big"))
    status = cluster.topologies[(NS, "big")]["status"]
    isolated = next(c for c in status["conditions"] if c["type"] == "Isolated")
    assert (isolated["status"], isolated["reason"]) == ("Unknown", "NotEvaluated")
    assert "endpoints and 150 flows" in isolated["message"]
    assert ("list", "", False) not in cluster.calls


def test_named_ports_are_looked_up_once_per_tier_with_the_same_findings() -> None:
    from apptopology.analysis.diagnosis import diagnose
    from apptopology.evaluator import ContainerPort, Namespace, Pod
    from apptopology.render.validation import parse_topology

    doc = body("shop", 0)
    doc["spec"]["flows"] = [
        {"from": {"tier": "a"}, "to": {"tier": "a"}, "ports": [{"port": "web"}, {"port": "dns", "protocol": "UDP"}]},
        {"from": {"tier": "a"}, "to": {"tier": "a"}, "ports": [{"port": "web", "protocol": "UDP"}]},
    ]
    pods = [
        Pod(NS, "p1", {"app": "a"}, ports=(ContainerPort("web", 80),)),
        Pod(NS, "p2", {"app": "a"}, ports=(ContainerPort("dns", 53, "UDP"),)),
        Pod("elsewhere", "p3", {"app": "a"}, ports=(ContainerPort("web", 80, "UDP"),)),
    ]
    report = diagnose(parse_topology(doc), pods, [Namespace(NS)])
    notes = [n for t in report.tiers for n in t.warnings if "named port" in n]
    assert notes == ["spec.flows[1]: named port web/UDP is declared by none of its pods"]
