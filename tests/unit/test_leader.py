"""Lease-based leader election against an in-memory Lease, with clocks the test controls."""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Mapping
from typing import Any

import pytest

from apptopology.controller.leader import LeaderElector
from apptopology.controller.reconciler import ApiError


class FakeLeases:
    """One namespace's Leases, with resourceVersion checks like the API server's."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self._rv = itertools.count(1)
        self.down = False

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.down:
            raise ApiError(0, "ConnectionRefusedError")
        lease = self.leases.get(name)
        return copy.deepcopy(lease) if lease else None

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if name in self.leases:
            raise ApiError(409, "Conflict", "already exists")
        lease = copy.deepcopy(dict(body))
        lease["metadata"]["resourceVersion"] = str(next(self._rv))
        self.leases[name] = lease
        return copy.deepcopy(lease)

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if self.down:
            raise ApiError(0, "ConnectionRefusedError")
        if self.leases[name]["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified")
        lease = copy.deepcopy(dict(body))
        lease["metadata"]["resourceVersion"] = str(next(self._rv))
        self.leases[name] = lease
        return copy.deepcopy(lease)

    def holder(self) -> str:
        return str(self.leases["op"]["spec"]["holderIdentity"])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(leases: FakeLeases, identity: str, clock: Clock) -> LeaderElector:
    return LeaderElector(leases, "system", "op", identity, clock=clock)


def test_first_replica_takes_the_lease_and_keeps_it() -> None:
    leases, clock = FakeLeases(), Clock()
    a, b = elector(leases, "a", clock), elector(leases, "b", clock)
    assert a.try_acquire_or_renew()
    assert leases.holder() == "a"
    for _ in range(20):  # a renews every 2 s; b never gets it
        clock.now += 2
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    assert leases.leases["op"]["spec"]["leaseTransitions"] == 0


def test_standby_takes_over_only_after_the_lease_duration_by_its_own_clock() -> None:
    leases, clock = FakeLeases(), Clock()
    a, b = elector(leases, "a", clock), elector(leases, "b", clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # b observes the record now
    # a dies (kill -9): no more renewals. b waits the lease duration from when it last saw a change.
    clock.now += 14
    assert not b.try_acquire_or_renew()
    clock.now += 1.5
    assert b.try_acquire_or_renew()
    assert leases.holder() == "b" and leases.leases["op"]["spec"]["leaseTransitions"] == 1


def test_a_released_lease_is_taken_at_the_next_try() -> None:
    leases, clock = FakeLeases(), Clock()
    a, b = elector(leases, "a", clock), elector(leases, "b", clock)
    assert a.try_acquire_or_renew()
    a.leading = True
    assert not b.try_acquire_or_renew()
    a.release()
    assert not a.leading and leases.holder() == ""
    assert b.try_acquire_or_renew()


def test_two_replicas_racing_for_an_expired_lease_one_wins() -> None:
    leases, clock = FakeLeases(), Clock()
    a, b, c = (elector(leases, i, clock) for i in "abc")
    assert a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    c.try_acquire_or_renew()
    clock.now += 16
    lease_before = copy.deepcopy(leases.leases["op"])
    assert b.try_acquire_or_renew()
    # c read the lease before b's write: its replace carries the old resourceVersion and loses.
    original = leases.get_lease
    leases.get_lease = lambda ns, name: copy.deepcopy(lease_before)  # type: ignore[method-assign]
    assert not c.try_acquire_or_renew()
    leases.get_lease = original  # type: ignore[method-assign]
    assert leases.holder() == "b"


def test_invalid_timings_are_refused() -> None:
    with pytest.raises(ValueError):
        LeaderElector(FakeLeases(), "s", "op", "a", lease_duration=5, renew_deadline=10)


def test_run_starts_and_stops_leading() -> None:
    """The loop: leads while it can renew, stands by after renew_deadline without a renewal."""

    async def scenario() -> list[str]:
        leases = FakeLeases()
        e = LeaderElector(leases, "system", "op", "a", lease_duration=0.6, renew_deadline=0.3, retry_period=0.05)
        calls: list[str] = []
        task = asyncio.create_task(e.run(lambda: calls.append("started"), lambda: calls.append("stopped")))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if calls:
                break
        leases.down = True  # the API server goes away: renewals fail
        for _ in range(200):
            await asyncio.sleep(0.02)
            if "stopped" in calls:
                break
        task.cancel()
        return calls

    assert asyncio.run(scenario()) == ["started", "stopped"]
