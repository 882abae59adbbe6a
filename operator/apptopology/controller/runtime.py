"""The running controller: events in, keys through the work queue, reconciles on worker threads.

Kopf is only the event source and keeps the cache (two Kopf indexes: AppTopology bodies, and the digests
of owned NetworkPolicies). Each event enqueues the key of the topology it concerns, except the echo of
our own writes; workers take keys from the queue, snapshot the cache for the key on the event loop, and
run the (blocking) reconcile in a thread pool, at most one per key at a time. Outcomes: back off after a
transient failure, check again later when asked to, forget the backoff after a success.

Level-triggered safety net: every ``resync`` seconds every known topology is enqueued again; from the
cache, a topology in sync costs no request. With leader election, only the leader's workers run; a
standby's cache stays warm, and the new leader starts with a resync.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from . import metrics
from .cache import NAMES, Key, PolicyEntry, View
from .leader import LeaderElector
from .queue import WorkQueue
from .reconciler import Outcome, Reconciler

log = logging.getLogger("apptopology")

# Metadata a reconcile never reads: dropped from cached bodies (managedFields and kubectl's
# last-applied-configuration annotation are often larger than the spec).
_UNUSED_METADATA = ("managedFields", "annotations", "labels")


class Store(Protocol):
    """A Kopf index (key -> values of the objects under it), read-only."""

    def __contains__(self, key: object) -> bool: ...

    def __getitem__(self, key: Any) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


def cached_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the topology index keeps of a body."""
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k not in _UNUSED_METADATA}
    return {**body, "metadata": meta}


class Controller:
    def __init__(
        self,
        reconciler: Reconciler,
        workers: int = 8,
        resync: float = 600.0,
        elector: LeaderElector | None = None,
    ):
        self.reconciler = reconciler
        self.workers = workers
        self.resync = resync
        self.elector = elector
        self.queue: WorkQueue[Key] | None = None
        self.topologies: Store | None = None
        self.policies: Store | None = None
        self._active: asyncio.Event | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.queue = WorkQueue()
        self._active = asyncio.Event()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="reconcile")
        self._tasks = [asyncio.create_task(self._work(), name=f"worker-{i}") for i in range(self.workers)]
        self._tasks.append(asyncio.create_task(self._resync(), name="resync"))
        if self.elector is not None:
            self._tasks.append(asyncio.create_task(self.elector.run(self._lead, self._stand_by), name="elector"))
        else:
            self._lead()

    async def stop(self) -> None:
        if self.queue is not None:
            self.queue.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self.elector is not None:
            await asyncio.to_thread(self.elector.release)

    def _lead(self) -> None:
        assert self._active is not None
        self._active.set()
        metrics.LEADER.set(1)
        self.enqueue_all()  # whatever happened while we stood by

    def _stand_by(self) -> None:
        assert self._active is not None
        self._active.clear()
        metrics.LEADER.set(0)

    # events ---------------------------------------------------------------------------------------------

    def bind(self, topologies: Store, policies: Store) -> None:
        """The Kopf indexes (the same objects for the operator's lifetime)."""
        self.topologies, self.policies = topologies, policies

    def topology_event(self, event: Mapping[str, Any]) -> None:
        meta = event["object"]["metadata"]
        self._add((meta["namespace"], meta["name"]))  # DELETED too: the reconcile forgets it

    def policy_event(self, event: Mapping[str, Any]) -> None:
        for key in self.reconciler.expectations.keys_to_reconcile(event):
            self._add(key)

    def enqueue_all(self) -> None:
        for key in list(self.topologies or ()):
            self._add(key)

    def _add(self, key: Key) -> None:
        if self.queue is not None:
            self.queue.add(key)
            metrics.QUEUE_DEPTH.set(len(self.queue))

    # work -----------------------------------------------------------------------------------------------

    def view(self, key: Key) -> View:
        """The cache's snapshot for ``key``, taken on the event loop (the indexes change only there)."""
        body = None
        if self.topologies is not None and key in self.topologies:
            body = next(iter(self.topologies[key]), None)
        owned: dict[str, PolicyEntry] = {}
        names: frozenset[str] = frozenset()
        if body is not None and self.policies is not None:
            index_key = (key[0], body["metadata"].get("uid"))
            if index_key in self.policies:
                owned = {e.name: e for e in self.policies[index_key]}
            if (key[0], NAMES) in self.policies:
                names = frozenset(self.policies[(key[0], NAMES)])
        return View(body, owned, names)

    async def _work(self) -> None:
        assert self.queue is not None and self._active is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._active.wait()
            key, waited = await self.queue.get()
            metrics.QUEUE_DEPTH.set(len(self.queue))
            metrics.QUEUE_WAIT_SECONDS.observe(waited)
            try:
                view = self.view(key) if self.topologies is not None else None
                outcome = await loop.run_in_executor(self._pool, self.reconciler.reconcile, key[0], key[1], view)
            except Exception:  # a bug, not an API error: log it and back off rather than die
                log.exception("%s/%s: reconcile crashed", *key)
                outcome = Outcome(retry=True, summary="crashed")
            finally:
                self.queue.done(key)
            if outcome.retry:
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
                if outcome.requeue_after is not None:
                    self.queue.add_after(key, outcome.requeue_after)
            metrics.TOPOLOGIES.set(len(self.topologies or ()))
            metrics.POLICIES.set(self.reconciler.expectations.wanted_policies())

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync)
            if self._active is not None and self._active.is_set():
                self.enqueue_all()
