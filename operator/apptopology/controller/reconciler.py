"""The executor: read the topology and its policies, carry out the plan, report status.

All or nothing per revision. Every final write of a plan is first sent as a server-side dry run
(``dryRun=All``), so the API server's validation, admission and quota speak before anything changes; a
refusal writes nothing. If a real write still fails half way, the owned policies read at the start are
put back (in the same safe order) and Ready=False/ApplyFailed says what was refused. Whatever happens, the
write order of :mod:`apptopology.planner.transition` means the namespace never allows more than the old or the new
revision, even if the process dies between two writes.

Fresh state: a reconcile always reads the topology itself (never an event's copy, which may be older),
and writes status with the resourceVersion it read as a precondition, so an older observedGeneration can
never overwrite a newer one.

The cluster is reached only through :class:`Cluster` (implemented by :mod:`apptopology.controller.kube`,
faked in the unit tests).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..analysis.diagnosis import Denied, denied_connections, diagnose
from ..analysis.intent import synthesize
from ..analysis.namespace import namespace_interactions
from ..api.guardrail import TopologyGuardrail
from ..api.spec import AppTopology
from ..api.status import ConditionType, Reason, ready_status, set_condition, status_changed
from ..api.validation import InvalidTopology
from ..planner.plan import Guard, Owner, Plan, Write, desired_policies, desired_with_notes, owned_by, plan, restore
from ..render import guardrails
from ..render.facts import OFFLINE, ClusterFacts
from ..render.renderer import TOPOLOGY_LABEL, resolve_dns
from ..render.validation import parse_spec
from . import metrics
from .cache import Expectations, Key, View, digests, pack, unpack

log = logging.getLogger("apptopology")

MAX_MESSAGE = 1000  # characters of an API server message quoted in status and events
TRANSIENT_COOL_DOWN = 5.0  # seconds an attempt that failed half way is not repeated for the same state


class ApiError(Exception):
    """A refused or failed API request. ``status`` 0: no HTTP answer (connection, timeout)."""

    def __init__(self, status: int, reason: str, message: str = ""):
        self.status, self.reason, self.message = status, reason, message
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")

    @property
    def transient(self) -> bool:
        """Worth retrying as is: conflicts (someone wrote in between), throttling, server and network errors."""
        return self.status in (0, 409, 429) or self.status >= 500

    def brief(self) -> str:
        return str(self)[:MAX_MESSAGE]


class Cluster(Protocol):
    """The API calls a reconcile makes (each one request)."""

    def get_topology(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list_policies(self, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]: ...

    def get_policy(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def apply_policy(self, body: Mapping[str, Any], uid: str | None, dry_run: bool = False) -> dict[str, Any]:
        """``uid`` set: forced server-side apply of that object only (409 if the name holds another);
        None: create, which fails (409 AlreadyExists) if anything holds the name: never adopt."""
        ...

    def delete_policy(self, namespace: str, name: str, uid: str, dry_run: bool = False) -> None:
        """Delete the object with ``uid`` only; an object already gone is not an error."""
        ...

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str) -> str:
        """Merge-patch the status over ``resource_version`` (a precondition); the new resourceVersion."""
        ...

    def event(self, topology: Mapping[str, Any], type_: str, reason: str, message: str) -> None: ...


class Fenced(Exception):
    """This replica may not write: it no longer holds the leader lease (or cannot prove it does).

    Raised by the API module in place of sending a write (see controller.kube.Kube's ``may_write``). It is
    not an ApiError, so it passes every handler of the write path and ends the reconcile at once: no
    restore, no status, no event. The write order leaves every prefix of a plan within the old or the new
    revision, and the new leader plans from live state.
    """


@dataclass(frozen=True)
class Outcome:
    """What the work queue does next with the key."""

    retry: bool = False  # a transient failure: back off and try again
    requeue_after: float | None = None  # check again later even without an event
    summary: str = ""


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


MAX_ISOLATION_POLICIES = 50  # evaluating the Isolated condition costs about policies x endpoints
_ALONE = "No other NetworkPolicy of the namespace opens anything of this topology's pods."

_SUMMARY = {
    Reason.DRY_RUN: "dry_run",
    Reason.GUARDRAIL_VIOLATION: "applied",
    Reason.RECONCILED: "applied",
    Reason.INVALID_SPEC: "invalid",
    Reason.NAME_CONFLICT: "conflict",
    Reason.APPLY_FAILED: "refused",
}


@dataclass(frozen=True)
class _Rendered:
    """What a topology's revision rendered to, as the cache compares it (digests, not the policies), and
    what it was rendered from: the facts and guardrails objects (replaced whole, never mutated, so
    identity is their version) and the namespace's labels when guardrails apply."""

    uid: str
    generation: int
    facts: ClusterFacts
    rails: tuple[TopologyGuardrail, ...]
    labels: Mapping[str, str] | None
    wanted: dict[str, bytes]
    names: list[str]
    left_out: list[str]

    def renders(self, uid: str, generation: int, facts: ClusterFacts, rails: tuple[TopologyGuardrail, ...]) -> bool:
        return self.uid == uid and self.generation == generation and self.facts is facts and self.rails is rails


@dataclass
class _Refused:
    """An attempt that failed half way: the same state is not tried again before ``until``.

    The same state: the owned policies as they were (``owned``), and the topology as the user left it, at
    the resourceVersion the attempt read or the one our own status report of the failure gave it
    (``versions``): the report is not a user's change, but it moved the resourceVersion, which let the
    same doomed attempt run once more."""

    versions: set[str]
    owned: str
    until: float

    def holds(self, body: Mapping[str, Any], owned: str, now: float) -> bool:
        return (
            str(body["metadata"].get("resourceVersion")) in self.versions and owned == self.owned and now < self.until
        )


class Reconciler:
    """One reconcile of one topology at a time per key (the queue guarantees it).

    Two small memories per topology, both only to serve the write path: the last revision applied whole
    (its spec, compact), so a failed attempt restores the previous revision *as declared*, repairing
    drift on the way, rather than as found; and the attempt that last failed half way, so the events of
    our own restore do not start the same doomed attempt again at once.
    """

    def __init__(
        self,
        cluster: Cluster,
        now: Callable[[], str] = utc_now,
        recheck_after: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        expectations: Expectations | None = None,
    ):
        self.cluster = cluster
        self.now = now
        self.recheck_after = recheck_after
        self.clock = clock
        self.expectations = expectations if expectations is not None else Expectations()
        # key -> (uid, generation, packed spec): bodies are decoded per reconcile, so a reference would keep
        # a whole parsed spec alive per topology.
        self._last_good: dict[Key, tuple[str, int, bytes]] = {}
        self._refused: dict[Key, _Refused] = {}
        # DryRun: the (generation, digests, pods) last asked about and evaluated
        self._dry_ok: dict[Key, tuple[int, dict[str, bytes], int]] = {}
        self._isolation_at: dict[Key, float] = {}  # when the Isolated condition was last evaluated
        # The last render per topology: a resync or an echo of a topology in sync renders nothing again.
        self._rendered: dict[Key, _Rendered] = {}
        self._local = threading.local()  # the view of the reconcile running on this thread
        # What rendering knows about the cluster (DNS Services, the API server's addresses), kept current by
        # the controller; replaced whole, never mutated, so a reconcile reads one consistent value.
        self.facts: ClusterFacts = OFFLINE
        # The platform's TopologyGuardrails (parsed), likewise replaced whole by the controller.
        self.guardrails: tuple[TopologyGuardrail, ...] = ()
        self.guardrail_errors: tuple[str, ...] = ()  # guardrails that cannot be read: no topology changes

    def reconcile(self, namespace: str, name: str, view: View | None = None) -> Outcome:
        """Reconcile one topology. With ``view`` (the cache's snapshot), a topology in sync costs no
        request at all; without it, the topology is read from the API server."""
        started = self.clock()
        self._local.view = view
        try:
            outcome = self._reconcile(namespace, name, view)
        except Fenced:
            log.info("%s/%s: abandoned: this replica no longer leads", namespace, name)
            outcome = Outcome(summary="fenced")  # the leader has it now; we enqueue everything when we lead again
        except ApiError as exc:
            if exc.transient:
                log.warning("%s/%s: will retry: %s", namespace, name, exc.brief())
                outcome = Outcome(retry=True, summary="failed")
            else:
                log.error("%s/%s: %s", namespace, name, exc.brief())
                outcome = Outcome(requeue_after=self.recheck_after, summary="failed")
        metrics.RECONCILES.labels(outcome.summary).inc()
        metrics.RECONCILE_SECONDS.observe(self.clock() - started)
        return outcome

    def _reconcile(self, namespace: str, name: str, view: View | None) -> Outcome:
        key = (namespace, name)
        body = view.body if view is not None else self.cluster.get_topology(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self.expectations.forget(key)
            self._last_good.pop(key, None)
            self._refused.pop(key, None)
            self._rendered.pop(key, None)
            self._isolation_at.pop(key, None)
            return Outcome(summary="gone")  # garbage collection removes its policies
        if view is not None:
            fast = self._in_sync(body, view)
            if fast is not None:
                return fast
        if self.guardrail_errors:
            # Fail closed: which namespaces an unreadable guardrail selects is unknown, so nothing changes.
            return self._report(
                body,
                Reason.GUARDRAIL_VIOLATION,
                "No change is applied while a TopologyGuardrail cannot be read: " + "; ".join(self.guardrail_errors),
                sorted(view.owned) if view is not None else [],
                requeue=True,
            )
        live, others = self._live(namespace, name, view)
        guard = self._guard(body)
        result = plan(body, live, others, self.facts, guard)
        if result.invalid is not None:
            return self._report(body, Reason.INVALID_SPEC, result.invalid, list(result.owned))
        self.expectations.set(key, digests(result.desired))
        if result.conflicts:
            return self._report(
                body,
                Reason.NAME_CONFLICT,
                f"NetworkPolicy {', '.join(result.conflicts)} already exists and is not owned by this "
                "AppTopology; left untouched, and nothing of this revision was written. Delete or rename "
                "the other policy.",
                list(result.owned),
                conflicts=result.conflicts,
                requeue=True,
            )
        if result.dry_run:
            return self._dry_run_mode(body, result)
        self._dry_ok.pop(key, None)
        if result.writes:
            owned = _owned_digest(result)
            earlier = self._refused.get(key)
            if earlier is not None and earlier.holds(body, owned, self.clock()):
                return Outcome(requeue_after=earlier.until - self.clock(), summary="refused")
            # A first revision (nothing of the topology exists yet) is not dry-run: if the API server refuses
            # a policy half way, the ones written are deleted again, which ends where a dry-run refusal
            # would (nothing), and the write order keeps every moment within the new revision or the empty
            # old one. It halves the requests of a topology's creation.
            refused = self._dry_run(namespace, result) if result.owned else None
            if refused is not None:
                write, exc = refused
                message = (
                    f"The API server refused NetworkPolicy {write.name}: {exc.brief()}. Nothing of this revision "
                    f"was written; the {len(result.owned)} policies of the previous one stay as they were."
                )
                return self._report(body, Reason.APPLY_FAILED, message, list(result.owned), requeue=True)
            failure = self._write(namespace, result.writes, _uids(result.owned.values()))
            if failure is not None:
                pause = TRANSIENT_COOL_DOWN if failure[1].transient else self.recheck_after
                version = str(body["metadata"].get("resourceVersion"))
                self._refused[key] = _Refused({version}, owned, self.clock() + pause)
                return self._restore(body, result, *failure)
            applied, deleted = result.counts()
            if _observed(body):
                metrics.DRIFT_REPAIRS.inc()
            log.info("%s/%s: %d applied, %d deleted (%d writes)", namespace, name, applied, deleted, len(result.writes))
            self._event(
                body,
                "Normal",
                "Applied",
                f"NetworkPolicies: {applied} created or updated, {deleted} deleted "
                f"(generation {Owner.from_body(body).generation})",
            )
        return self._reconciled(body, result.desired_names, "applied" if result.writes else "in_sync", result.left_out)

    def _dry_run_mode(self, body: dict[str, Any], result: Plan) -> Outcome:
        """spec.enforcement DryRun: remove what this topology enforced (if it did), ask the API server about
        every policy it would apply, write none, and say so in status."""
        meta = body["metadata"]
        namespace, key = meta["namespace"], (meta["namespace"], meta["name"])
        self.expectations.set(key, {})  # no policy wanted: events of our removals need nothing
        if result.writes:
            failure = self._write(namespace, result.writes, _uids(result.owned.values()))
            if failure is not None:
                write, exc = failure
                message = f"Removing NetworkPolicy {write.name} for the dry run failed: {exc.brief()}."
                return self._report(body, Reason.APPLY_FAILED, message, list(result.owned), retry=True)
            self._event(
                body,
                "Warning",
                "EnforcementStopped",
                f"spec.enforcement is DryRun: {len(result.owned)} NetworkPolicies removed; this topology no "
                "longer restricts the namespace",
            )
        for policy in result.desired:
            try:
                self.cluster.apply_policy(policy, None, dry_run=True)
            except ApiError as exc:
                if exc.transient:
                    raise
                message = (
                    f"Dry run: the API server would refuse NetworkPolicy {policy['metadata']['name']}: {exc.brief()}."
                )
                return self._report(body, Reason.APPLY_FAILED, message, [], requeue=True)
        self._dry_ok[key] = (Owner.from_body(body).generation, digests(result.desired), self._pods_seen())
        names = result.desired_names
        dry: dict[str, Any] = {"wouldApply": names}
        denied = self._denied(namespace, result)
        if denied is not None:
            dry["deniedConnections"] = {"count": denied.count, "examples": list(denied.examples) or None}
        count = f"; {denied.count} connections between its running pods would be denied" if denied else ""
        message = f"Dry run: {len(names)} NetworkPolicies would be applied{count}, none is enforced"
        return self._report(body, Reason.DRY_RUN, message, [], extra={"dryRun": dry})

    def _pods_seen(self) -> int:
        """A cheap fingerprint of the pods the cache showed this reconcile (a change re-evaluates a dry run)."""
        view: View | None = getattr(self._local, "view", None)
        return hash(view.pods) if view is not None else 0

    def _denied(self, namespace: str, result: Plan) -> Denied | None:
        """Connections between the namespace's running pods (from the cache) that enforcing would deny:
        the namespace's policies now, against the same plus the topology's. None without a cache."""
        view: View | None = getattr(self._local, "view", None)
        if view is None:
            return None
        before = self.cluster.list_policies(namespace)
        return denied_connections(before, [*before, *result.desired], view.pods, view.namespaces, namespace)

    def _live(self, namespace: str, name: str, view: View | None) -> tuple[list[dict[str, Any]], set[str]]:
        """The policies to plan from, read from the API server, and names of other policies that exist.

        Without a cache: the whole namespace. With one: only the policies labelled for this topology
        (a large namespace is not read for every change), plus any the cache says it owns that lost the
        label, and the cache's names of the namespace's other policies, for name conflicts.
        """
        if view is None:
            return self.cluster.list_policies(namespace), set()
        live = self.cluster.list_policies(namespace, label_selector=f"{TOPOLOGY_LABEL}={name}")
        listed = {str(p["metadata"]["name"]) for p in live}
        for missing in sorted(set(view.owned) - listed):
            policy = self.cluster.get_policy(namespace, missing)
            if policy is not None:
                live.append(policy)
                listed.add(missing)
        return live, set(view.names) - listed

    def _in_sync(self, body: dict[str, Any], view: View) -> Outcome | None:
        """The cache's answer: an Outcome when everything owned is exactly what is wanted, None when the
        API server must be asked (something differs, or the spec is invalid)."""
        rendered = self._render(body)
        if rendered is None:
            return None
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        wanted = rendered.wanted
        if (body.get("spec") or {}).get("enforcement") == "DryRun":
            # In sync when nothing is enforced and this revision was already asked about.
            if view.owned or self._dry_ok.get(key) != (Owner.from_body(body).generation, wanted, hash(view.pods)):
                return None
            return Outcome(summary="in_sync")
        self.expectations.set(key, wanted)
        if wanted != {n: e.digest for n, e in view.owned.items()}:
            return None
        return self._reconciled(body, rendered.names, "in_sync", rendered.left_out)

    def _render(self, body: dict[str, Any]) -> _Rendered | None:
        """The revision's digests, rendered once per (revision, facts, guardrails, namespace labels); None
        when the spec is invalid."""
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        uid, generation = _uid(body), Owner.from_body(body).generation
        facts, rails = self.facts, self.guardrails  # read before rendering: a change meanwhile renders again
        labels = self._namespace_labels(body) if rails else None
        last = self._rendered.get(key)
        if last is not None and last.renders(uid, generation, facts, rails) and last.labels == labels:
            return last
        try:
            desired, left_out = desired_with_notes(body, facts, self._guard(body))
        except InvalidTopology:
            return None
        names = [str(p["metadata"]["name"]) for p in desired]
        rendered = _Rendered(uid, generation, facts, rails, labels, digests(desired), names, left_out)
        if generation:  # the API server always sets it; without one a revision cannot be told apart
            self._rendered[key] = rendered
        return rendered

    def _reconciled(self, body: dict[str, Any], names: list[str], summary: str, left_out: list[str]) -> Outcome:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        self._refused.pop(key, None)
        generation = Owner.from_body(body).generation
        last = self._last_good.get(key)
        if last is None or last[:2] != (_uid(body), generation) or not generation:
            self._last_good[key] = (_uid(body), generation, pack(body.get("spec")))
        isolated = self._isolation(body, fresh=summary == "applied")
        if left_out:
            # Enforced, narrower than declared: what the guardrails allow; Ready says what was left out.
            shown = "; ".join(left_out[:5]) + (f"; and {len(left_out) - 5} more" if len(left_out) > 5 else "")
            message = f"{len(names)} NetworkPolicies in sync, without what guardrails forbid: {shown}"
            outcome = self._report(body, Reason.GUARDRAIL_VIOLATION, message[:MAX_MESSAGE], names, conditions=isolated)
        else:
            outcome = self._report(
                body, Reason.RECONCILED, f"{len(names)} NetworkPolicies in sync", names, conditions=isolated
            )
        return Outcome(summary=summary) if not outcome.retry else outcome

    def _guard(self, body: Mapping[str, Any]) -> Guard | None:
        """The guardrails of the topology's namespace, bound for the planner (None: none applies)."""
        rails = self.guardrails
        if not rails:
            return None
        labels = self._namespace_labels(body)
        chosen = guardrails.applicable(rails, labels)
        if not chosen:
            return None

        def narrow(topology: AppTopology, facts: ClusterFacts) -> tuple[AppTopology, ClusterFacts, list[str]]:
            guarded = guardrails.enforce(topology, chosen, labels, facts)
            return (
                guarded.topology,
                guarded.facts,
                [f"{v.path}: {v.message}" for v in guarded.violations] + [str(n) for n in guarded.notes],
            )

        return narrow

    def _namespace_labels(self, body: Mapping[str, Any]) -> dict[str, str]:
        """The labels of the topology's namespace, from the cache (its name label without one)."""
        view: View | None = getattr(self._local, "view", None)
        namespace = str(body["metadata"]["namespace"])
        labels: dict[str, str] = {"kubernetes.io/metadata.name": namespace}
        for ns in view.namespaces if view is not None else ():
            if ns.name == namespace:
                labels = dict(ns.labels)
        return labels

    def _dry_run(self, namespace: str, result: Plan) -> tuple[Write, ApiError] | None:
        """Ask the API server about every final write; the first refusal, or None. Transient errors raise."""
        uids = _uids(result.owned.values())
        for write in result.writes:
            if write.final:
                try:
                    self._one(namespace, write, uids, dry_run=True)
                except ApiError as exc:
                    if exc.transient:
                        raise
                    return write, exc
        return None

    def _write(self, namespace: str, writes: Iterable[Write], uids: dict[str, str]) -> tuple[Write, ApiError] | None:
        for write in writes:
            try:
                self._one(namespace, write, uids, dry_run=False)
            except ApiError as exc:
                return write, exc
        return None

    def _one(self, namespace: str, write: Write, uids: dict[str, str], dry_run: bool) -> None:
        if write.body is None:
            # Only what this topology owns (read at the start) or created in this attempt is ever deleted,
            # so the UID is known; the precondition makes the delete miss anything else under the name.
            self.cluster.delete_policy(namespace, write.name, uids[write.name], dry_run=dry_run)
            if not dry_run:
                uids.pop(write.name, None)
            return
        stored = self.cluster.apply_policy(write.body, uids.get(write.name), dry_run=dry_run)
        if not dry_run:
            uids[write.name] = str(stored["metadata"]["uid"])

    def _restore(self, body: dict[str, Any], result: Plan, write: Write, exc: ApiError) -> Outcome:
        """Put back the previous revision (as last applied, else as read at the start); report what was
        refused, and whether restoring worked."""
        namespace = body["metadata"]["namespace"]
        what = f"Writing NetworkPolicy {write.name} failed: {exc.brief()}."
        try:
            back = restore(body, self._previous(body, result), self.cluster.list_policies(namespace))
            failure = self._write(namespace, back.writes, _uids(back.owned.values()))
        except ApiError as again:
            failure = (write, again)
        if failure is None:
            message = f"{what} The previous revision was restored ({len(result.owned)} policies)."
            log.warning("%s/%s: %s", namespace, body["metadata"]["name"], message)
            return self._report(
                body, Reason.APPLY_FAILED, message, list(result.owned), retry=exc.transient, requeue=True
            )
        # Restoring failed too (the API server is likely unavailable). The write order still guarantees the
        # namespace allows no more than the old or the new revision; the retry finishes the job.
        message = f"{what} Restoring the previous revision failed too: {failure[1].brief()}. Retrying."
        log.error("%s/%s: %s", namespace, body["metadata"]["name"], message)
        try:
            existing = [
                n for n, p in _by_name(self.cluster.list_policies(namespace)).items() if owned_by(p, _uid(body))
            ]
            return self._report(body, Reason.APPLY_FAILED, message, existing, retry=True)
        except ApiError:
            return Outcome(retry=True, summary=message)

    def _isolation(
        self, body: dict[str, Any], fresh: bool
    ) -> list[tuple[ConditionType, Literal["True", "False", "Unknown"], Reason, str]]:
        """The Isolated condition: whether other policies of the namespace open this topology's pods beyond
        its intent. Without other topologies or policies there, it is known at once; otherwise it is
        evaluated over the namespace's policies (a LIST) after this topology's own writes, and then once per
        recheck period (5 minutes), so other topologies' changes show within that period."""
        view: View | None = getattr(self._local, "view", None)
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if view is None:
            return []
        others = set(view.names) - set(view.owned)
        if not view.neighbours and not others:
            return [(ConditionType.ISOLATED, "True", Reason.ALONE, _ALONE)]
        last = self._isolation_at.get(key)
        if last is None:
            # First sight (a new topology, or every topology after a restart): a restart must not rewrite
            # statuses, so the stored condition stands until the next period unless this reconcile wrote.
            self._isolation_at[key] = self.clock()
            if not fresh:
                return []
        elif not fresh and self.clock() - last < self.recheck_after:
            return []  # keep the condition as it is
        if len(view.names) > MAX_ISOLATION_POLICIES:
            # Known from the cache, without a LIST: reading a namespace of 700 policies after every write
            # slowed the 10,000-topology burst to under one reconcile a second.
            return self._not_evaluated(key, len(view.names))
        try:
            topology = parse_spec(meta["name"], meta["namespace"], body.get("spec"))
            policies = self.cluster.list_policies(meta["namespace"])
            if len(policies) > MAX_ISOLATION_POLICIES:
                return self._not_evaluated(key, len(policies))
            # This topology's own synthesized inventory (its tiers, peers, near misses, the world) is what
            # another policy could open; the other topologies' inventories would multiply the cost.
            inventory = synthesize(topology, self.facts)
            found = namespace_interactions([topology], policies, inventory, self.facts)
        except (InvalidTopology, ApiError) as exc:
            log.debug("%s/%s: isolation not evaluated: %s", key[0], key[1], exc)
            return []
        self._isolation_at[key] = self.clock()
        if not found:
            return [(ConditionType.ISOLATED, "True", Reason.ALONE, _ALONE)]
        shown = "; ".join(i.line() for i in found[:3])
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        return [
            (
                ConditionType.ISOLATED,
                "False",
                Reason.OPENED_BY_OTHERS,
                f"{len(found)} pairs: {shown}{more}"[:MAX_MESSAGE],
            )
        ]

    def _not_evaluated(
        self, key: tuple[str, str], count: int
    ) -> list[tuple[ConditionType, Literal["True", "False", "Unknown"], Reason, str]]:
        self._isolation_at[key] = self.clock()
        message = (
            f"{count} NetworkPolicies in the namespace, more than {MAX_ISOLATION_POLICIES}: not evaluated here "
            "(apptopology verify --namespace-mode answers it offline)."
        )
        return [(ConditionType.ISOLATED, "Unknown", Reason.NOT_EVALUATED, message)]

    def _diagnosis(self, body: dict[str, Any]) -> dict[str, Any]:
        """The status fields that say what the topology selects now and what looks wrong (from the cache;
        nothing without one)."""
        view: View | None = getattr(self._local, "view", None)
        if view is None:
            return {}
        meta = body["metadata"]
        try:
            topology = parse_spec(meta["name"], meta["namespace"], body.get("spec"))
        except InvalidTopology:
            return {"tiers": None, "podCount": None, "warningCount": None, "warnings": None}
        report = diagnose(topology, view.pods, view.namespaces)
        dns = resolve_dns(topology, self.facts) if topology.spec.dns.discover else None
        return {
            "dns": dns.text() if dns is not None else None,
            "tiers": [t.to_status() for t in report.tiers],
            "podCount": report.pods,
            "warningCount": report.warning_count,
            "warnings": list(report.warnings) or None,
        }

    def _event(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Events are for humans and best effort: a refused event (a terminating namespace) fails nothing."""
        try:
            self.cluster.event(body, type_, reason, message)
        except ApiError as exc:
            log.debug("%s/%s: event not posted: %s", body["metadata"]["namespace"], body["metadata"]["name"], exc)

    def _previous(self, body: dict[str, Any], result: Plan) -> dict[str, dict[str, Any]]:
        """The previous revision's policies: rendered from the spec last applied whole, when known (and
        still rendering), else the owned policies read at the start of this attempt."""
        last = self._last_good.get((body["metadata"]["namespace"], body["metadata"]["name"]))
        if last is not None and last[0] == _uid(body):
            try:
                previous = desired_policies({**body, "spec": unpack(last[2])}, self.facts, self._guard(body))
                return {p["metadata"]["name"]: p for p in previous}
            except InvalidTopology:  # a spec once valid can only stop rendering after an upgrade
                pass
        return result.owned

    def _report(
        self,
        body: dict[str, Any],
        reason: Reason,
        message: str,
        policies: list[str],
        conflicts: list[str] | None = None,
        requeue: bool = False,
        retry: bool = False,
        extra: Mapping[str, Any] | None = None,
        conditions: Sequence[tuple[ConditionType, Literal["True", "False", "Unknown"], Reason, str]] = (),
    ) -> Outcome:
        """Write the status if it changed (Warning event then too, for anything but success)."""
        meta = body["metadata"]
        spec = body.get("spec")
        tiers = spec.get("tiers") if isinstance(spec, dict) else None
        status = ready_status(
            body.get("status"),
            generation=int(meta.get("generation") or 0),
            reason=reason,
            message=message,
            policies=policies,
            conflicts=conflicts or [],
            tier_count=len(tiers) if isinstance(tiers, list) else 0,
            now=self.now(),
            extra={**_mode(body), **(extra or {})},
        )
        status.update(self._diagnosis(body))
        for type_, value, why, text in conditions:
            status["conditions"] = set_condition(
                status["conditions"], type_, value, why, text, int(meta.get("generation") or 0), self.now()
            )
        if status_changed(body.get("status"), status):
            version = str(meta.get("resourceVersion", ""))
            written = self.cluster.patch_status(meta["namespace"], meta["name"], status, version)
            refused = self._refused.get((meta["namespace"], meta["name"]))
            if refused is not None and version in refused.versions:
                refused.versions.add(written)  # our own report: still the state that failed
            if reason is not Reason.RECONCILED:
                self._event(body, "Warning", reason.value, message)
                log.warning("%s/%s: %s: %s", meta["namespace"], meta["name"], reason.value, message)
        return Outcome(
            retry=retry,
            requeue_after=self.recheck_after if requeue and not retry else None,
            summary=_SUMMARY[reason],
        )


def _mode(body: Mapping[str, Any]) -> dict[str, Any]:
    """The status fields of the enforcement mode (a merge patch: None removes dry-run leftovers)."""
    spec = body.get("spec")
    mode = spec.get("enforcement") if isinstance(spec, dict) else None
    return {"enforcement": mode or "Enforce", **({} if mode == "DryRun" else {"dryRun": None})}


def _observed(body: Mapping[str, Any]) -> bool:
    """Whether the current generation was already applied (so writes now repair drift)."""
    status = body.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    generation = body["metadata"].get("generation")
    return bool(ready and ready.get("status") == "True" and status.get("observedGeneration") == generation)


def _owned_digest(result: Plan) -> str:
    """The owned policies an attempt started from (a failed one is not repeated from the same)."""
    state = sorted((n, p.get("spec")) for n, p in result.owned.items())
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def _by_name(policies: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(p["metadata"]["name"]): p for p in policies}


def _uid(body: Mapping[str, Any]) -> str:
    return str(body["metadata"]["uid"])


def _uids(policies: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    return {str(p["metadata"]["name"]): str(p["metadata"].get("uid", "")) for p in policies}
