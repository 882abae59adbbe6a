"""The running controller: events in, keys through the work queue, reconciles on worker threads.

Kopf is only the event source. Each event enqueues the key of the topology it concerns (a policy's
event: the topology that may own it); workers take keys from the queue and run the (blocking) reconcile
in a thread pool, at most one reconcile per key at a time, and act on the outcome: back off after a
transient failure, check again later when asked to, forget the backoff after a success.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..plan import candidate_owners
from .queue import WorkQueue
from .reconciler import Outcome, Reconciler

log = logging.getLogger("apptopology")

Key = tuple[str, str]  # (namespace, name) of an AppTopology


class Controller:
    def __init__(self, reconciler: Reconciler, workers: int = 8):
        self.reconciler = reconciler
        self.workers = workers
        self.queue: WorkQueue[Key] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.queue = WorkQueue()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="reconcile")
        self._tasks = [asyncio.create_task(self._work(), name=f"worker-{i}") for i in range(self.workers)]

    async def stop(self) -> None:
        if self.queue is not None:
            self.queue.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def topology_event(self, event: Mapping[str, Any]) -> None:
        if event.get("type") == "DELETED":
            return  # garbage collection removes its policies
        meta = event["object"]["metadata"]
        self._add((meta["namespace"], meta["name"]))

    def policy_event(self, event: Mapping[str, Any]) -> None:
        policy = event["object"]
        namespace = policy["metadata"]["namespace"]
        for name in sorted(candidate_owners(policy)):
            self._add((namespace, name))

    def _add(self, key: Key) -> None:
        if self.queue is not None:
            self.queue.add(key)

    async def _work(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            key, _waited = await self.queue.get()
            try:
                outcome = await loop.run_in_executor(self._pool, self.reconciler.reconcile, *key)
            except Exception:  # a bug, not an API error: log it and back off rather than die
                log.exception("%s/%s: reconcile crashed", *key)
                outcome = Outcome(retry=True, summary="crashed")
            finally:
                self.queue.done(key)
            if outcome.retry:
                delay = self.queue.add_rate_limited(key)
                log.info("%s/%s: retrying in %.1fs", key[0], key[1], delay)
            else:
                self.queue.forget(key)
                if outcome.requeue_after is not None:
                    self.queue.add_after(key, outcome.requeue_after)
