"""The running controller: events in, keys through the work queue, reconciles on worker threads.

Kopf is only the event source. At start the cache (:mod:`apptopology.controller.cache`) is seeded by one
paged LIST of NetworkPolicies and of AppTopologies; then each event updates it and enqueues the key of the
topology it concerns, except the echo of our own writes. Workers take keys from the queue, snapshot the
cache for the key on the event loop, and run the (blocking) reconcile in a thread pool, at most one per
key at a time. Outcomes: back off after a transient failure, check again later when asked to, forget the
backoff after a success.

Large topologies (:data:`HEAVY_WEIGHT`) take the heavy lane: a worker hands such a key over and goes
back to the queue, and at most ``heavy_at_once`` of them reconcile at a time. The largest topology the
CRD admits takes seconds of CPU and tens of MB to reconcile; without the lane, enough of them would
occupy every worker (an edit of any other topology waiting behind them) and their memory would add up
past the operator's limit. Every other key still has all the workers.

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
from .cache import Cache, Key, View, controller_name
from .leader import LeaderElector
from .queue import WorkQueue
from .reconciler import MAX_ISOLATION_POLICIES, ApiError, Outcome, Reconciler

log = logging.getLogger("apptopology")

# A topology heavier than this (cache.weight: tiers plus the flows' port entries) reconciles in the heavy
# lane. 32 tiers and 256 flows of 8 ports weigh 2,080 and take 0.3 to 0.5 s of CPU per change; 64 tiers
# and 512 flows of 32 ports weigh 16,448 and take 1-3 s (bench/README.md).
HEAVY_WEIGHT = 2_000
ISOLATION_DELAY = 1.0  # seconds from another policy's event to its namespace's topologies looking again


class Seeder(Protocol):
    """Reads everything the cache needs, page by page (the Kube module)."""

    def list_all(self, kind: str) -> Iterator[dict[str, Any]]: ...

    def probe(self, kind: str) -> None:
        """A cheap LIST of ``kind``; raises ApiError when it is refused."""
        ...


# What the operator watches and reads; each may become unreadable at runtime (RBAC changed).
KINDS = ("networkpolicies", "namespaces", "pods", "apptopologies", "topologyguardrails")


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
        heavy_at_once: int = 2,
        access_interval: float = 5.0,
    ):
        self.reconciler = reconciler
        self.workers = workers
        self.resync = resync
        self.elector = elector
        self.seeder = seeder
        self.facts_source = facts
        self.facts_interval = facts_interval
        self.access_interval = access_interval
        self.cache = Cache()
        # Kinds the operator may no longer read (kind -> the refusal), and while one is read again whole,
        # the keys its events touched meanwhile (those are current whatever the reading saw).
        self.unreadable: dict[str, str] = {}
        self._rereading: dict[str, set[object]] = {}
        self._guardrails: dict[str, dict[str, Any]] = {}  # name -> body, as the watch delivers them
        self.queue: WorkQueue[Key] | None = None
        self._active: asyncio.Event | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.heavy_at_once = heavy_at_once
        self._heavy: asyncio.Semaphore | None = None
        self._heavy_tasks: set[asyncio.Task[None]] = set()

    # lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.seeder is not None:
            await asyncio.to_thread(self._seed)
        await self._refresh_facts()  # before any topology renders with them
        self.queue = WorkQueue()
        self._active = asyncio.Event()
        self._heavy = asyncio.Semaphore(self.heavy_at_once)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="reconcile")
        self._tasks = [asyncio.create_task(self._work(), name=f"worker-{i}") for i in range(self.workers)]
        self._tasks.append(asyncio.create_task(self._resync(), name="resync"))
        self._tasks.append(asyncio.create_task(self._follow_facts(), name="facts"))
        if self.seeder is not None:
            self._tasks.append(asyncio.create_task(self._follow_access(), name="access"))
        if self.elector is not None:
            self._tasks.append(asyncio.create_task(self.elector.run(self._lead, self._stand_by), name="elector"))
        else:
            self._lead()

    async def stop(self) -> None:
        if self.queue is not None:
            self.queue.close()
        tasks = [*self._tasks, *self._heavy_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self.elector is not None:
            await asyncio.to_thread(self.elector.release)

    def _seed(self) -> None:
        """One paged LIST of each kind before any reconcile, so that no decision is made on a half-filled
        cache (the events of Kopf's own initial listing then find it filled already)."""
        assert self.seeder is not None
        for kind in KINDS:
            try:
                for body in self.seeder.list_all(kind):
                    self._put(kind, body)
            except ApiError as exc:
                if exc.status not in (401, 403):
                    raise
                # Refused (the operator's RBAC): start anyway, failing closed on what depends on it.
                self.unreadable[kind] = exc.brief()
                log.error("cannot read %s: %s", kind, exc.brief())
        self._apply_guardrails()
        self._publish_access()
        log.info("cache seeded: %d topologies, %d policies", len(self.cache.topologies), self.cache.policy_count())

    # what may be read -------------------------------------------------------------------------------------

    def _put(self, kind: str, body: Mapping[str, Any]) -> None:
        if kind == "networkpolicies":
            self.cache.put_policy(body)
        elif kind == "namespaces":
            self.cache.put_namespace(body)
        elif kind == "pods":
            self.cache.put_pod(body)
        elif kind == "apptopologies":
            self.cache.put_topology(body)
        else:
            self._guardrails[str(body["metadata"]["name"])] = dict(body)

    def _touched(self, kind: str, body: Mapping[str, Any]) -> None:
        """An event of ``kind`` while it is read again whole: its object is current, whatever the reading saw."""
        touched = self._rereading.get(kind)
        if touched is not None:
            touched.add(_key(kind, body))

    def _held(self, kind: str) -> set[object]:
        """The keys of ``kind`` the operator holds now."""
        if kind == "networkpolicies":
            return set(self.cache.policy_keys())
        if kind == "namespaces":
            return set(self.cache.namespaces)
        if kind == "pods":
            return {(ns, name) for ns, pods in self.cache.pods.items() for name in pods}
        if kind == "apptopologies":
            return set(self.cache.topologies)
        return set(self._guardrails)

    def _drop(self, kind: str, key: object) -> None:
        if kind == "topologyguardrails":
            self._guardrails.pop(str(key), None)
            return
        if kind == "namespaces":
            self.cache.drop_namespace({"metadata": {"name": key}})
            return
        assert isinstance(key, tuple)
        stub = {"metadata": {"namespace": key[0], "name": key[1]}}
        if kind == "networkpolicies":
            self.cache.drop_policy(stub)
        elif kind == "pods":
            self.cache.drop_pod(stub)
        else:
            self.topology_event({"type": "DELETED", "object": stub})  # the reconcile forgets it

    async def _reread(self, kind: str) -> None:
        """Read ``kind`` again whole after it was refused: the watch missed what changed meanwhile, deletions
        included (Kopf's own listing when its watch recovers only adds). Pages are read on a thread and
        applied here, on the event loop, like events."""
        assert self.seeder is not None
        held = self._held(kind)
        seen: set[object] = set()
        self._rereading[kind] = set()
        pages = self.seeder.list_all(kind)
        try:
            while (body := await asyncio.to_thread(next, pages, None)) is not None:
                seen.add(_key(kind, body))
                self._put(kind, body)
            for key in held - seen - self._rereading[kind]:
                self._drop(kind, key)
        finally:
            del self._rereading[kind]

    async def _check_access(self) -> None:
        """Probe every kind; a refusal fails closed on what depends on it, and is said (log, metric, status);
        a kind readable again is read again whole, and every topology looks again."""
        assert self.seeder is not None
        before = dict(self.unreadable)
        for kind in KINDS:
            try:
                await asyncio.to_thread(self.seeder.probe, kind)
                if kind in self.unreadable:
                    await self._reread(kind)
                    del self.unreadable[kind]
                    log.info("%s can be read again", kind)
            except ApiError as exc:
                if exc.status in (401, 403):
                    if kind not in self.unreadable:
                        log.error("cannot read %s: %s", kind, exc.brief())
                    self.unreadable[kind] = exc.brief()
        if self.unreadable != before:
            if "topologyguardrails" not in self.unreadable:
                self._apply_guardrails()
            self._publish_access()
            if self.queue is not None and self._active is not None and self._active.is_set():
                self.enqueue_all()

    def _publish_access(self) -> None:
        self.reconciler.unreadable = dict(self.unreadable)
        for kind in KINDS:
            metrics.READABLE.labels(kind).set(0 if kind in self.unreadable else 1)

    async def _follow_access(self) -> None:
        while True:
            await asyncio.sleep(self.access_interval)
            await self._check_access()

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
        self._touched("apptopologies", body)
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
        policy = event["object"]
        self._touched("networkpolicies", policy)
        if event.get("type") == "DELETED":
            self.cache.drop_policy(policy)
        else:
            self.cache.put_policy(policy)
        routed = self.reconciler.expectations.keys_to_reconcile(event)
        for key, drift in routed:
            self._add(key, urgent=drift)  # drift of what we wrote may have widened it: repaired first
        self._isolation_changed(policy, {key for key, _ in routed})

    def _isolation_changed(self, policy: Mapping[str, Any], routed: set[Key]) -> None:
        """Any other policy of a namespace may open its topologies' pods: they look again (the Isolated
        condition) after ISOLATION_DELAY, one timer per topology, so a burst of events costs one evaluation
        each. Not the owner of the policy (its own write is evaluated when it writes, its drift is routed
        already), and not where the condition is not evaluated anyway (more policies than it reads)."""
        meta = policy.get("metadata") or {}
        namespace = str(meta.get("namespace"))
        if self.queue is None or self.cache.policy_count(namespace) > MAX_ISOLATION_POLICIES + 1:
            return  # (+1: the count crossing the limit changes the condition too)
        owner = controller_name(policy)
        for key in self.cache.topologies_in(namespace):
            if key not in routed and key[1] != owner:
                self.queue.add_after(key, ISOLATION_DELAY)

    def pod_event(self, event: Mapping[str, Any]) -> None:
        """Pods change what the tiers select: their topologies look again (only when labels, IP or ports
        changed, not for every status update a kubelet makes)."""
        pod = event["object"]
        self._touched("pods", pod)
        changed = self.cache.drop_pod(pod) if event.get("type") == "DELETED" else self.cache.put_pod(pod)
        if changed:
            for key in self.cache.topologies_in(str((pod.get("metadata") or {}).get("namespace"))):
                self._add(key)

    def namespace_event(self, event: Mapping[str, Any]) -> None:
        """Namespace labels decide what namespaceSelectors match: every topology looks again (rare)."""
        body = event["object"]
        self._touched("namespaces", body)
        changed = self.cache.drop_namespace(body) if event.get("type") == "DELETED" else self.cache.put_namespace(body)
        if changed and self.queue is not None and self._active is not None and self._active.is_set():
            self.enqueue_all()

    def guardrail_event(self, event: Mapping[str, Any]) -> None:
        """A TopologyGuardrail changed: every topology it may select renders again (all of them: a guardrail
        selects namespaces by label)."""
        body = event["object"]
        name = str(body["metadata"]["name"])
        self._touched("topologyguardrails", body)
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
        while True:
            await self._active.wait()
            key, waited = await self.queue.get()
            metrics.QUEUE_DEPTH.set(len(self.queue))
            metrics.QUEUE_WAIT_SECONDS.observe(waited)
            if self.cache.topologies.weight(key) > HEAVY_WEIGHT:
                task = asyncio.create_task(self._heavy_pass(key), name=f"heavy-{key[0]}/{key[1]}")
                self._heavy_tasks.add(task)
                task.add_done_callback(self._heavy_tasks.discard)
                continue  # the key stays taken (never handed out twice) until the heavy lane is done
            await self._pass(key)

    async def _heavy_pass(self, key: Key) -> None:
        assert self._heavy is not None and self._active is not None
        async with self._heavy:
            await self._active.wait()
            await self._pass(key)  # the view is taken now, not when the key was handed over

    async def _pass(self, key: Key) -> None:
        """One reconcile of ``key`` (taken from the queue) on the thread pool, and what its outcome asks."""
        assert self.queue is not None
        loop = asyncio.get_running_loop()
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
        for other in self.reconciler.take_neighbour_changes():
            # A neighbour's DNS changed: a DNS policy for every pod may now open its pods (urgent).
            self._add(other, urgent=True)
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
                for other in self.reconciler.dependents(key[0]):  # their neighbour's DNS may have changed
                    self._add(other)

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


def _key(kind: str, body: Mapping[str, Any]) -> object:
    meta = body.get("metadata") or {}
    if kind in ("namespaces", "topologyguardrails"):
        return str(meta.get("name"))
    return (str(meta.get("namespace")), str(meta.get("name")))
