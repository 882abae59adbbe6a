"""The running controller: events in, keys through the work queue, reconciles on worker threads.

Kopf is only the event source. At start the cache (:mod:`apptopology.controller.cache`) is seeded by one
paged LIST of NetworkPolicies and of AppTopologies; then each event updates it and enqueues the key of the
topology it concerns, except the echo of our own writes. Workers take keys from the queue, snapshot the
cache for the key on the event loop, and run the (blocking) reconcile in a thread pool, at most one per
key at a time. Outcomes: back off after a transient failure, check again later when asked to, forget the
backoff after a success.

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

from ..api.guardrail import parse_guardrail
from ..api.validation import InvalidTopology
from ..render.facts import ClusterFacts, WantedObjects, describe_facts, wanted_objects
from ..render.validation import parse_spec
from . import metrics
from .cache import Cache, Key, View
from .leader import LeaderElector
from .queue import WorkQueue
from .reconciler import ApiError, Outcome, Reconciler

log = logging.getLogger("apptopology")


class Seeder(Protocol):
    """Reads everything the cache needs, page by page (the Kube module)."""

    def list_all(self, kind: str) -> Iterator[dict[str, Any]]: ...


class FactsSource(Protocol):
    """Reads the cluster facts (DNS Services, NodeLocal DNSCache, the API server's endpoints)."""

    def read_facts(self, wanted: WantedObjects) -> ClusterFacts: ...


class Controller:
    def __init__(
        self,
        reconciler: Reconciler,
        workers: int = 8,
        resync: float = 600.0,
        elector: LeaderElector | None = None,
        seeder: Seeder | None = None,
        facts: FactsSource | None = None,
        facts_interval: float = 30.0,
    ):
        self.reconciler = reconciler
        self.workers = workers
        self.resync = resync
        self.elector = elector
        self.seeder = seeder
        self.facts_source = facts
        self.facts_interval = facts_interval
        self.cache = Cache()
        self._guardrails: dict[str, dict[str, Any]] = {}  # name -> body, as the watch delivers them
        self.queue: WorkQueue[Key] | None = None
        self._active: asyncio.Event | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.seeder is not None:
            await asyncio.to_thread(self._seed)
        await self._refresh_facts()  # before any topology renders with them
        self.queue = WorkQueue()
        self._active = asyncio.Event()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="reconcile")
        self._tasks = [asyncio.create_task(self._work(), name=f"worker-{i}") for i in range(self.workers)]
        self._tasks.append(asyncio.create_task(self._resync(), name="resync"))
        self._tasks.append(asyncio.create_task(self._follow_facts(), name="facts"))
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

    def _seed(self) -> None:
        """One paged LIST of each kind before any reconcile, so that no decision is made on a half-filled
        cache (the events of Kopf's own initial listing then find it filled already)."""
        assert self.seeder is not None
        for body in self.seeder.list_all("networkpolicies"):
            self.cache.put_policy(body)
        for body in self.seeder.list_all("namespaces"):
            self.cache.put_namespace(body)
        for body in self.seeder.list_all("pods"):
            self.cache.put_pod(body)
        for body in self.seeder.list_all("apptopologies"):
            self.cache.put_topology(body)
        for body in self.seeder.list_all("topologyguardrails"):
            self._guardrails[str(body["metadata"]["name"])] = body
        self._apply_guardrails()
        log.info("cache seeded: %d topologies, %d policies", len(self.cache.topologies), self.cache.policy_count())

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

    def topology_event(self, event: Mapping[str, Any]) -> None:
        body = event["object"]
        meta = body["metadata"]
        bodies = self.cache.topologies
        key = (str(meta["namespace"]), str(meta["name"]))
        known = key in bodies
        # An edit of a topology we know goes ahead of new ones (it may close a flow), not the echo of our
        # own status patch (same generation).
        edited = known and bodies.generation(key) != meta.get("generation")
        deleted = event.get("type") == "DELETED"
        if deleted:
            self.cache.drop_topology(body)
        else:
            self.cache.put_topology(body)
        if not deleted and key in bodies.needing_facts and not self.reconciler.facts.in_cluster:
            # The first topology that needs cluster facts: read them now rather than at the next interval.
            self._tasks.append(asyncio.create_task(self._refresh_facts(), name="facts-now"))
        self._add(key, urgent=edited and not deleted)  # DELETED too: the reconcile forgets it

    def policy_event(self, event: Mapping[str, Any]) -> None:
        if event.get("type") == "DELETED":
            self.cache.drop_policy(event["object"])
        else:
            self.cache.put_policy(event["object"])
        for key, drift in self.reconciler.expectations.keys_to_reconcile(event):
            self._add(key, urgent=drift)  # drift of what we wrote may have widened it: repaired first

    def pod_event(self, event: Mapping[str, Any]) -> None:
        """Pods change what the tiers select: their topologies look again (only when labels, IP or ports
        changed, not for every status update a kubelet makes)."""
        pod = event["object"]
        changed = self.cache.drop_pod(pod) if event.get("type") == "DELETED" else self.cache.put_pod(pod)
        if changed:
            for key in self.cache.topologies_in(str((pod.get("metadata") or {}).get("namespace"))):
                self._add(key)

    def namespace_event(self, event: Mapping[str, Any]) -> None:
        """Namespace labels decide what namespaceSelectors match: every topology looks again (rare)."""
        body = event["object"]
        changed = self.cache.drop_namespace(body) if event.get("type") == "DELETED" else self.cache.put_namespace(body)
        if changed and self.queue is not None and self._active is not None and self._active.is_set():
            self.enqueue_all()

    def guardrail_event(self, event: Mapping[str, Any]) -> None:
        """A TopologyGuardrail changed: every topology it may select renders again (all of them: a guardrail
        selects namespaces by label)."""
        body = event["object"]
        name = str(body["metadata"]["name"])
        if event.get("type") == "DELETED":
            self._guardrails.pop(name, None)
        else:
            self._guardrails[name] = body
        if self._apply_guardrails() and self.queue is not None:
            self.enqueue_all()

    def _apply_guardrails(self) -> bool:
        """Parse the guardrails for the reconciler; True when what it enforces changed. An unreadable one
        fails closed: the reconciler then changes no topology until it is fixed or removed."""
        parsed, broken = [], []
        for name, body in sorted(self._guardrails.items()):
            try:
                parsed.append(parse_guardrail(body))
            except InvalidTopology as exc:
                broken.append(f"TopologyGuardrail {name}: {exc}")
        rails, errors = tuple(parsed), tuple(broken)
        changed = rails != self.reconciler.guardrails or errors != self.reconciler.guardrail_errors
        self.reconciler.guardrails, self.reconciler.guardrail_errors = rails, errors
        return changed

    def enqueue_all(self) -> None:
        for key in list(self.cache.topologies):
            self._add(key)

    def _add(self, key: Key, urgent: bool = False) -> None:
        if self.queue is not None:
            self.queue.add(key, urgent)
            metrics.QUEUE_DEPTH.set(len(self.queue))

    # work -----------------------------------------------------------------------------------------------

    def view(self, key: Key) -> View:
        """The cache's snapshot for ``key``, taken on the event loop (the cache changes only there)."""
        return self.cache.view(key)

    async def _work(self) -> None:
        assert self.queue is not None and self._active is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._active.wait()
            key, waited = await self.queue.get()
            metrics.QUEUE_DEPTH.set(len(self.queue))
            metrics.QUEUE_WAIT_SECONDS.observe(waited)
            try:
                view = self.view(key)
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
            metrics.TOPOLOGIES.set(len(self.cache.topologies))
            metrics.POLICIES.set(self.reconciler.expectations.wanted_policies())

    async def _refresh_facts(self) -> None:
        """Read the facts when some topology needs them; on a change, those topologies render again."""
        if self.facts_source is None:
            return
        needing = sorted(self.cache.topologies.needing_facts)
        if not needing:
            return
        topologies = []
        for key in needing:
            body = self.cache.topologies.get(key)
            try:
                if body is not None:
                    topologies.append(parse_spec(key[1], key[0], body.get("spec")))
            except InvalidTopology:
                continue
        try:
            facts = await asyncio.to_thread(self.facts_source.read_facts, wanted_objects(topologies))
        except ApiError as exc:
            log.warning("cluster facts not read: %s", exc.brief())
            return
        if facts != self.reconciler.facts:
            self.reconciler.facts = facts
            log.info("cluster facts: %s", "; ".join(describe_facts(facts)) or "none")
            for key in needing:
                self._add(key)

    async def _follow_facts(self) -> None:
        while True:
            await asyncio.sleep(self.facts_interval)
            if self._active is not None and self._active.is_set():
                await self._refresh_facts()

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync)
            if self._active is not None and self._active.is_set():
                self.enqueue_all()
