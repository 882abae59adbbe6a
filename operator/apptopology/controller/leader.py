"""Lease-based leader election (``coordination.k8s.io/v1``), the convention of every Kubernetes controller.

Replicas compete for one Lease. The holder renews it every ``retry_period``; the others watch it and
take it over only when it has not changed for ``lease_duration`` *by their own clock* (as client-go does:
no replica trusts another's clock). A holder that cannot renew for ``renew_deadline`` stops leading before
anyone else may start (renew_deadline < lease_duration). A holder that stops cleanly releases the lease,
so the standby takes over at its next try instead of after the lease duration.

Standbys keep watching (their cache stays warm); only the leader reconciles.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .reconciler import ApiError

log = logging.getLogger("apptopology")


class Leases(Protocol):
    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]: ...


def micro_time() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        leases: Leases,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self.leases, self.namespace, self.name, self.identity = leases, namespace, name, identity
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.clock = clock
        self.leading = False
        self._observed: tuple[Any, Any] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._renewed_at = 0.0

    def try_acquire_or_renew(self) -> bool:
        """One round: True when this replica holds the lease afterwards."""
        now = micro_time()
        lease = self.leases.get_lease(self.namespace, self.name)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, now, 0),
            }
            try:
                self.leases.create_lease(self.namespace, body)
            except ApiError as exc:
                if exc.status == 409:
                    return False  # someone else created it first
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"))
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and self.clock() < self._observed_at + duration:
            return False  # held by someone else, and alive as far as we can tell
        ours = holder == self.identity
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if ours else 1)
        acquired = str(spec["acquireTime"]) if ours and spec.get("acquireTime") else now
        body = {**lease, "spec": self._spec(acquired, now, transitions)}
        try:
            self.leases.replace_lease(self.namespace, self.name, body)  # resourceVersion: optimistic lock
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def _spec(self, acquired: str, renewed: str, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_duration),
            "acquireTime": acquired,
            "renewTime": renewed,
            "leaseTransitions": transitions,
        }

    def release(self) -> None:
        """Give the lease up (on a clean stop), so a standby need not wait for it to expire."""
        if not self.leading:
            return
        try:
            lease = self.leases.get_lease(self.namespace, self.name)
            if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": micro_time()}
                self.leases.replace_lease(self.namespace, self.name, {**lease, "spec": spec})
        except ApiError as exc:
            log.warning("could not release the leader lease: %s", exc.brief())
        self.leading = False

    def may_write(self) -> bool:
        """The fence every write of the reconciler passes (controller.kube.Kube's ``may_write``): this replica leads
        and renewed the lease less than ``renew_deadline`` ago, timed from *before* the renewal was sent.

        Others take over only after the lease has not changed for ``lease_duration`` by their own clocks,
        which start no earlier than our request, so until ``renew_deadline`` no other replica can lead: the
        gap of lease_duration - renew_deadline (5 s by default) absorbs a write already past this check and
        clocks that run at different rates. A replica paused longer (SIGSTOP, a long GC or swap) finds the
        deadline passed when it resumes and sends nothing, even before its elector notices the loss."""
        return self.leading and self.clock() - self._renewed_at < self.renew_deadline

    async def run(self, started: Callable[[], None], stopped: Callable[[], None]) -> None:
        """Compete forever; call ``started`` on becoming leader and ``stopped`` on losing it."""
        while True:
            attempt = self.clock()
            try:
                ok = await asyncio.to_thread(self.try_acquire_or_renew)
            except ApiError as exc:
                log.warning("leader election: %s", exc.brief())
                ok = False
            now = self.clock()
            if ok:
                self._renewed_at = attempt
                if not self.leading:
                    self.leading = True
                    log.info("became the leader (%s)", self.identity)
                    started()
            elif self.leading and now - self._renewed_at >= self.renew_deadline:
                self.leading = False
                log.warning("lost the leader lease (%s); standing by", self.identity)
                stopped()
            await asyncio.sleep(self.retry_period)
