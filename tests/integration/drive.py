"""Run a scenario of tests/integration/scenarios.py on the control plane, then judge what the API server recorded.

The operator runs as in production (``apptopology run`` under its ServiceAccount and deploy/'s RBAC): the
suite's own replica, or two electing replicas for a leader change. Everything else is done as the admin:
the namespace, other people's policies (bystanders, squatters), the topology and its edits, the refusals.
Kill, edit and stop come at a write index: a thread follows the audit log and acts when the operator's
NetworkPolicy write count in the namespace reaches it (the real index, a few writes later at most, is
recorded).

:data:`KNOWN_FAILING` names the classes of scenario that fail on today's code (issue 17); a scenario in one
is not run by the CI test (tests/integration/test_random_scenarios.py) and is run by the soak
(tests/integration/soak.py, which reports it apart). Empty it as the fixes land.

Scenarios of several topologies and a guardrail (scenarios.NEIGHBOUR_EVENTS) run step by step, each settled
on the expected policies of every topology, and are judged per owner (each topology's policies within its
revisions, the other's as they are) and as a namespace (:class:`judge.Neighbourhood`: no pod opened beyond
its own topology's intent).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from harness import Cluster, ControlPlane, Operator, network_policy_admission, wait_for
from judge import (
    AuditLog,
    Combo,
    Finding,
    Judge,
    Neighbourhood,
    Objects,
    Revision,
    State,
    Write,
    end_state,
    live_agrees,
    replay,
)
from kubernetes import client
from scenarios import (
    NEIGHBOUR,
    NEIGHBOUR_EVENTS,
    RAIL_LABEL,
    TOPOLOGY,
    Member,
    Scenario,
    features,
    guardrail_doc,
    intents,
    namespace_renders,
    policy,
    renders,
)

from apptopology.planner.compare import stored_spec
from apptopology.planner.plan import Plan, plan

# Scenario classes that fail on today's code, each for one finding of issue 17, not run by the CI test. The
# lead empties this set as the fixes land; the CI test then runs (and judges) those scenarios too. Emptied so
# far: "dry-run-delete" (a dry run of a delete deleted) and "guard-squatter" (a squatter at a transient guard
# name was adopted and deleted, or blocked the change), fixed on main at 2c12e65; "leader-change" (one write of
# a paused old leader landed after the new leader's), closed on the API server by the optional leader fence
# (deploy/components/leader-fence), which the suite installs.
KNOWN_FAILING: frozenset[str] = frozenset()

LEASE_NAMESPACE = "apptopology-system"
ELECT = ["--leader-elect", "--lease-namespace", LEASE_NAMESPACE]
QUIET = 1.5  # seconds without an operator write in the namespace that end a scenario
CONVERGE = 60.0  # seconds a scenario may take to settle


@dataclass
class Env:
    cp: ControlPlane
    cluster: Cluster
    operator: Operator  # the suite's replica (stopped for a leader change, and started again)
    audit: AuditLog | None = None  # the scenario's own reader of the audit log (set by run())

    @property
    def log(self) -> AuditLog:
        assert self.audit is not None, "only within run()"
        return self.audit


@dataclass
class Outcome:
    scenario: Scenario
    namespace: str = ""
    classes: set[str] = field(default_factory=set)
    expected: str = ""
    states: int = 0
    writes: int = 0  # the operator's NetworkPolicy writes (dry runs included)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: bool = False
    seconds: float = 0.0
    resumed_at: int | None = None  # audit position at which a stopped old leader was let go on (SIGCONT)

    @property
    def failed(self) -> bool:
        return bool(self.findings)

    def report(self) -> str:
        head = (
            f"{self.scenario.describe()} [namespace {self.namespace}; expected end {self.expected}; "
            f"{self.states} states, {self.writes} operator writes; classes {sorted(self.classes) or '-'}]"
        )
        lines = [head, *(f"  note: {n}" for n in self.notes), *(f"  {f}" for f in self.findings[:12])]
        if len(self.findings) > 12:
            lines.append(f"  ... and {len(self.findings) - 12} more findings")
        return "\n".join(lines)


def classify(scenario: Scenario, first: Plan) -> set[str]:
    """The known-failure classes the scenario belongs to, from the plan of its change (v1 to v2) and the
    revisions' names. Later plans (after an edit, a restart, a new leader) start from a mixed state and may
    delete any policy of an earlier revision, or a guard, as a final write."""
    found = set()
    later = scenario.v3 is not None or scenario.event in ("kill", "leader")
    revisions = [scenario.v1, scenario.v2, *([scenario.v3] if scenario.v3 is not None else [])]
    names = [set(renders(v, "judge")) for v in revisions]
    enforced = [v.get("enforcement") != "DryRun" for v in revisions]  # DryRun removes without a dry run
    dropped = any(names[i] - names[k] for i in range(len(names)) for k in range(i + 1, len(names)) if enforced[k])
    dry_pass = bool(first.owned) and not first.dry_run and not first.conflicts
    if not first.conflicts and (
        (dry_pass and any(w.final and w.is_delete for w in first.writes))
        or (later and (dropped or any(w.is_delete for w in first.writes)))
    ):
        found.add("dry-run-delete")
    guards = {p["metadata"]["name"] for p in scenario.squatters if ".guard-" in p["metadata"]["name"]}
    if (
        guards
        and not first.conflicts
        and (later or scenario.event == "refusal" or any(w.name in guards for w in first.writes))
    ):
        found.add("guard-squatter")
    if scenario.event == "leader":
        found.add("leader-change")
    return found


def first_plan(scenario: Scenario) -> tuple[Plan, dict[str, dict[str, Any]]]:
    """The operator's plan from v1 (in place, beside the bystanders and squatters) to v2, and the policies it
    starts from: computed offline, the same plan the operator makes (the UIDs are stand-ins)."""
    live: dict[str, dict[str, Any]] = {}
    for i, obj in enumerate([*scenario.bystanders, *scenario.squatters]):
        live[obj["metadata"]["name"]] = {**obj, "metadata": {**obj["metadata"], "uid": f"theirs-{i}"}}
    for i, (name, obj) in enumerate(renders(scenario.v1, "judge", "judge").items()):
        live[name] = {**obj, "metadata": {**obj["metadata"], "uid": f"ours-{i}"}}
    body = {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": TOPOLOGY, "namespace": "judge", "uid": "judge", "generation": 2},
        "spec": copy.deepcopy(scenario.v2),
    }
    return plan(body, live.values(), live.keys()), live


def _requests(first: Plan) -> int:
    """How many NetworkPolicy requests the operator sends for ``first``: dry runs of the final writes (unless
    the topology owns nothing yet, or is DryRun), then the writes."""
    dry = 0 if not first.owned or first.dry_run or first.conflicts else sum(1 for w in first.writes if w.final)
    return dry + (0 if first.conflicts else len(first.writes))


# Arranging ------------------------------------------------------------------------------------------------


def _vap(env: Env, namespace: str, scenario: Scenario) -> Callable[[], None]:
    """A ValidatingAdmissionPolicy in ``namespace`` refusing the scenario's feature; returns its removal."""
    assert scenario.feature is not None
    name = f"judge-{namespace}"
    message = f"judge refuses {scenario.feature.describe()}"
    manifests = network_policy_admission(name, namespace, scenario.feature.cel(), message)
    env.cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(manifests))
    refused = next(p for p in renders(scenario.v2, namespace).values() if scenario.feature in features(p))
    if scenario.feature.kind != "name":  # under a name nobody holds: a dry-run create of v1's name is AlreadyExists
        refused = {**refused, "metadata": {**refused["metadata"], "name": "judge-probe-refused"}}
    harmless = policy("judge-probe-harmless", {"podSelector": {}, "policyTypes": ["Ingress"]})

    def probe(obj: dict[str, Any]) -> str:
        """'ok', 'refused' (by this policy: its message) or 'other' (anything else)."""
        doc = {**obj, "metadata": {"name": obj["metadata"]["name"], "namespace": namespace}}
        done = env.cp.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(doc), check=False)
        return "ok" if done.returncode == 0 else "refused" if message in done.stderr else "other"

    wait_for(
        lambda: probe(refused) == "refused" and probe(harmless) == "ok",
        timeout=30,
        what=f"VAP refusing {scenario.feature.describe()}",
    )

    def lift() -> None:
        env.cp.kubectl(
            "delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name, "--ignore-not-found"
        )

    return lift


def _quota(env: Env, namespace: str, hard: int) -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "judge-netpols", "namespace": namespace},
        "spec": {"hard": {"count/networkpolicies.networking.k8s.io": str(hard)}},
    }
    core = client.CoreV1Api(env.cp.api)
    core.create_namespaced_resource_quota(namespace, quota)
    wait_for(
        lambda: (core.read_namespaced_resource_quota("judge-netpols", namespace).status.used or {}).get(
            "count/networkpolicies.networking.k8s.io"
        ),
        what="quota usage computed",
    )


def _peak(live: dict[str, Any], first: Plan) -> int:
    names = set(live)
    peak = len(names)
    for write in first.writes:
        if write.is_delete:
            names.discard(write.name)
        else:
            names.add(write.name)
        peak = max(peak, len(names))
    return peak


class _Trigger:
    """Calls ``action`` once the operator's NetworkPolicy writes in the namespace reach ``count`` (from now)."""

    def __init__(self, env: Env, namespace: str, count: int, action: Callable[[], None]):
        self.log = AuditLog(env.log.path, from_end=True)
        self.log.follow(namespace)
        self.namespace, self.count, self.action = namespace, count, action
        self.fired_at: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            done = sum(1 for w in self.log.writes(self.namespace) if w.by_operator)
            if done >= self.count:
                self.action()
                self.fired_at = done
                return
            time.sleep(0.005)

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def _replicas(env: Env) -> Iterator[list[Operator]]:
    env.operator.stop()
    pair = [Operator(env.cp, ELECT, name=f"judge-replica-{x}", pod=f"apptopology-operator-{x}") for x in "ab"]
    try:
        for replica in pair:
            replica.start()
        wait_for(lambda: _leader(pair), timeout=30, what="a leader")
        yield pair
    finally:
        for replica in pair:
            if replica.proc is not None and replica.proc.poll() is None:
                os.kill(replica.proc.pid, signal.SIGCONT)
            replica.stop()
        env.cp.kubectl("delete", "lease", "-n", LEASE_NAMESPACE, "apptopology-operator", "--ignore-not-found")
        env.operator.start()


def _leader(replicas: list[Operator]) -> Operator | None:
    for replica in replicas:
        if replica.proc is not None and replica.proc.poll() is None:
            with contextlib.suppress(OSError):
                if replica.metrics().get("apptopology_leader") == 1:
                    return replica
    return None


def _settle(env: Env, namespace: str, generation: int, ready: bool = False) -> None:
    """See :func:`_settle_or`; ``ready``: also Ready=True (a change expected to go through may first fail and
    be retried after a cool-down)."""
    _settle_or(env, namespace, generation, lambda: False, ready)


def _settle_or(env: Env, namespace: str, generation: int, done: Callable[[], bool], ready: bool = False) -> None:
    """Until ``done()``, or the topology's status reflects ``generation`` (``ready``: with Ready=True) and the
    operator has written no policy in the namespace for QUIET seconds."""
    count, changed = -1, time.monotonic()

    def settled() -> bool:
        nonlocal count, changed
        if done():
            return True
        now = _count(env, namespace)
        if now != count:
            count, changed = now, time.monotonic()
        condition = env.cluster.ready(namespace, TOPOLOGY, generation)
        observed = condition is not None and (not ready or condition.get("status") == "True")
        return observed and time.monotonic() - changed >= QUIET

    wait_for(settled, timeout=CONVERGE, interval=0.05, what=f"generation {generation} settled")


# Running --------------------------------------------------------------------------------------------------


def run(scenario: Scenario, env: Env, skip: frozenset[str] = frozenset()) -> Outcome:
    """Run ``scenario`` and judge it; ``skip``: known-failure classes not to run (the outcome says skipped)."""
    started = time.monotonic()
    out = Outcome(scenario)
    first, live = first_plan(scenario)
    out.classes = classify(scenario, first)
    if out.classes & skip:
        out.skipped = True
        return out
    # A reader of its own, from the end of the log as it is now (before the namespace exists): scenarios can
    # run side by side (tests/integration/soak.py --parallel).
    env = dataclasses.replace(env, audit=AuditLog(env.cp.env["AUDIT_LOG"], from_end=True))
    namespace = out.namespace = f"j{scenario.seed % 100000}-{uuid.uuid4().hex[:5]}"
    core = client.CoreV1Api(env.cp.api)
    core.create_namespace({"metadata": {"name": namespace}})
    env.log.follow(namespace)
    try:
        with contextlib.ExitStack() as stack:
            if scenario.event in NEIGHBOUR_EVENTS:
                out.findings += _neighbourhood(env, namespace, scenario, out, stack)
                return out
            replicas = stack.enter_context(_replicas(env)) if scenario.event == "leader" else None
            for bystander in scenario.bystanders:
                env.cluster.net.create_namespaced_network_policy(namespace, bystander)
            doc = {"apiVersion": "apptopology.io/v1alpha1", "kind": "AppTopology", "metadata": {"name": TOPOLOGY}}
            uid = env.cluster.create({**doc, "spec": scenario.v1}, namespace)["metadata"]["uid"]
            _settle(env, namespace, 1, ready=True)
            for squatter in scenario.squatters:
                env.cluster.net.create_namespaced_network_policy(namespace, squatter)
            refused = _refusal(env, namespace, scenario, first, live, out, stack)
            out.expected = _expected(scenario, first, refused)
            try:
                _change(env, namespace, scenario, first, out, replicas, refused)
            except AssertionError as exc:  # judge what happened all the same
                out.findings.append(Finding("stuck", str(exc).splitlines()[0][:500]))
            out.findings += _judge(env, namespace, scenario, uid, out, refused)
    except AssertionError as exc:
        out.findings.append(Finding("stuck", str(exc).splitlines()[0][:500]))
    finally:
        env.log.forget(namespace)
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(namespace)
        out.seconds = time.monotonic() - started
    return out


def _refusal(
    env: Env,
    namespace: str,
    scenario: Scenario,
    first: Plan,
    live: dict[str, Any],
    out: Outcome,
    stack: contextlib.ExitStack,
) -> bool:
    """Set up the scenario's refusal, if any; whether v2 will be refused."""
    if scenario.event != "refusal" or first.conflicts:
        return False
    if scenario.refusal == "vap":
        stack.callback(_vap(env, namespace, scenario))
        return True
    if scenario.refusal == "quota-full" and any(not w.is_delete and w.name not in live for w in first.writes):
        _quota(env, namespace, len(live))
        return True
    if scenario.refusal == "quota-short" and _peak(live, first) > len(live):
        _quota(env, namespace, _peak(live, first) - 1)
        return True
    out.notes.append(f"{scenario.refusal}: the change creates nothing; no refusal")
    return False


def _change(
    env: Env,
    namespace: str,
    scenario: Scenario,
    first: Plan,
    out: Outcome,
    replicas: list[Operator] | None,
    refused: bool,
) -> None:
    """Edit the topology to v2, with the scenario's kill, edit or leader stop at its write index; settle."""
    total = max(1, _requests(first))
    index = max(1, math.ceil(scenario.at * total))
    stopped = _leader(replicas) if replicas is not None else None
    edited: list[int] = []

    def act() -> None:
        if scenario.event == "kill":
            env.operator.stop(signal.SIGKILL)
        elif scenario.event == "edit" and scenario.v3 is not None:
            edited.append(env.cluster.patch_spec(namespace, TOPOLOGY, scenario.v3)["metadata"]["generation"])
        elif stopped is not None and stopped.proc is not None:
            os.kill(stopped.proc.pid, signal.SIGSTOP)

    acting = scenario.event in ("kill", "edit", "leader") and not first.conflicts
    action = act if acting else None
    trigger = _Trigger(env, namespace, index, action) if action is not None else None
    generation = env.cluster.patch_spec(namespace, TOPOLOGY, scenario.v2)["metadata"]["generation"]
    if trigger is not None:
        with contextlib.suppress(AssertionError):
            _settle_or(env, namespace, generation, lambda: trigger.fired_at is not None)
        trigger.cancel()
        generation = edited[-1] if edited else generation
        if trigger.fired_at is not None:
            out.notes.append(f"{scenario.event} at operator write {trigger.fired_at} (asked {index} of {total})")
        else:
            out.notes.append(f"{scenario.event}: the transition ended before write {index}; nothing done")
    if scenario.event == "kill" and env.operator.proc is None:
        env.operator.start()
    if stopped is not None and replicas is not None:
        fired = trigger is not None and trigger.fired_at is not None
        if fired:
            other = next(r for r in replicas if r is not stopped)
            wait_for(lambda: _leader([other]), timeout=40, what="the standby leading")
            _settle(env, namespace, generation)
        if scenario.v3 is not None:  # the new leader changes the topology again
            generation = env.cluster.patch_spec(namespace, TOPOLOGY, scenario.v3)["metadata"]["generation"]
            _settle(env, namespace, generation)
        if fired and stopped.proc is not None:
            out.resumed_at = len(env.log.writes(namespace))
            os.kill(stopped.proc.pid, signal.SIGCONT)
            time.sleep(3)  # the old leader's reconcile, if it goes on writing, does so now
    _settle(env, namespace, generation, ready=out.expected in ("v2", "v3") and not refused)


def _count(env: Env, namespace: str) -> int:
    return sum(1 for w in env.log.writes(namespace) if w.by_operator)


def _expected(scenario: Scenario, first: Plan, refused: bool) -> str:
    if first.conflicts:
        return "v1"
    if scenario.v3 is not None:
        return "v3"
    if refused:
        return "v1"
    if scenario.v2.get("enforcement") == "DryRun":
        return "nothing"
    return "v2"


def _judge(env: Env, namespace: str, scenario: Scenario, uid: str, out: Outcome, refused: bool) -> list[Finding]:
    live, listed_at = _read_live(env, namespace)  # first: every write it saw is in the log by now (blocking)
    writes: list[Write] = env.log.writes(namespace)
    result = replay(writes)
    out.states = len(result.states)
    out.writes = sum(1 for w in writes if w.by_operator)
    specs = {"v1": scenario.v1, "v2": scenario.v2, **({"v3": scenario.v3} if scenario.v3 else {})}
    revisions = [Revision("nothing", {})] + [Revision(k, renders(v, namespace, uid)) for k, v in specs.items()]
    if out.expected == "v1" and not refused:
        chain = [0, 1]
    elif refused:
        chain = [0, 1, 2, 1]
    else:
        chain = list(range(len(revisions)))
    seen = [o for s in result.states for o in s.objects.values()]
    bodies = [{"metadata": {"name": TOPOLOGY}, "spec": {**v, "enforcement": "Enforce"}} for v in specs.values()]
    judge = Judge(namespace, bodies, revisions, seen)
    findings = list(result.findings) + live_agrees(result, live, listed_at)
    if out.resumed_at is not None:
        # The new leader had settled before the old one went on: any policy write now is the old leader's (or a
        # repair of what it wrote). A fenced leader sends none after losing the Lease.
        late = [w.line() for w in writes[out.resumed_at :] if w.by_operator and w.ok]  # a refused one wrote nothing
        if late:
            findings.append(Finding("fence", f"{len(late)} operator writes after the old leader resumed: {late[:6]}"))
    findings += judge.judge(result.states, chain)
    expected = {"nothing": {}, "v1": revisions[1].policies, "v2": revisions[2].policies}
    if scenario.v3 is not None:
        expected["v3"] = revisions[3].policies
    findings += end_state(result, uid, expected[out.expected], out.expected)
    return findings


# Several topologies and a guardrail (issue 20) ------------------------------------------------------------


@dataclass(frozen=True)
class Moment:
    """What the namespace holds after a step: the topology's spec and whether the guardrail applies."""

    label: str
    spec: dict[str, Any]
    on: bool


def _neighbourhood(
    env: Env, namespace: str, scenario: Scenario, out: Outcome, stack: contextlib.ExitStack
) -> list[Finding]:
    """A ``neighbour`` or ``guardrail`` scenario: the guardrail (selecting the namespace by a label it does not
    carry yet), the neighbour, the topology at v1; then each step (label the namespace, unlabel it, edit to
    v2), each settled (the operator's policies are the expected render of every topology, and it is quiet).
    Then the judge: each topology's states within its chain of revisions (its own policies, the other's as
    they are), and no state opening a pod beyond its own topology's intent (:class:`judge.Neighbourhood`)."""
    for bystander in scenario.bystanders:
        env.cluster.net.create_namespaced_network_policy(namespace, bystander)
    custom = client.CustomObjectsApi(env.cp.api)
    if scenario.guardrail is not None:
        rail = guardrail_doc(scenario.guardrail, namespace)
        custom.create_cluster_custom_object("apptopology.io", "v1alpha1", "topologyguardrails", rail)

        def unrail() -> None:
            with contextlib.suppress(client.ApiException):
                custom.delete_cluster_custom_object(
                    "apptopology.io", "v1alpha1", "topologyguardrails", rail["metadata"]["name"]
                )

        stack.callback(unrail)
    doc = {"apiVersion": "apptopology.io/v1alpha1", "kind": "AppTopology"}
    uids: dict[str, str] = {}
    nb = scenario.neighbour
    if nb is not None:
        uids[NEIGHBOUR] = env.cluster.create({**doc, "metadata": {"name": NEIGHBOUR}, "spec": nb}, namespace)[
            "metadata"
        ]["uid"]
        _settle_to(env, namespace, _expected_of(scenario, namespace, uids, None, False))
    uids[TOPOLOGY] = env.cluster.create({**doc, "metadata": {"name": TOPOLOGY}, "spec": scenario.v1}, namespace)[
        "metadata"
    ]["uid"]
    moments = [Moment("v1", scenario.v1, False)]
    marks: list[int] = []  # the writes logged when each step had settled
    try:
        _settle_to(env, namespace, _expected_of(scenario, namespace, uids, moments[-1].spec, False))
        marks.append(len(env.log.writes(namespace)))
        core = client.CoreV1Api(env.cp.api)
        for step in scenario.steps:
            now = moments[-1]
            if step == "edit":
                try:
                    env.cluster.patch_spec(namespace, TOPOLOGY, scenario.v2)
                    moments.append(Moment("v2", scenario.v2, now.on))
                except client.ApiException as exc:
                    out.notes.append(f"the edit to v2 was refused ({exc.status}): {str(exc.body)[:200]}")
                    continue
            else:
                on = step == "on"
                core.patch_namespace(namespace, {"metadata": {"labels": {RAIL_LABEL: namespace if on else None}}})
                moments.append(Moment(now.label, now.spec, on))
            _settle_to(env, namespace, _expected_of(scenario, namespace, uids, moments[-1].spec, moments[-1].on))
            marks.append(len(env.log.writes(namespace)))
    except AssertionError as exc:  # judge what happened all the same
        out.findings.append(Finding("stuck", str(exc).splitlines()[0][:500]))
    out.expected = moments[-1].label + ("+rail" if moments[-1].on else "")
    return _judge_neighbourhood(env, namespace, scenario, uids, moments, marks, out)


def _members(
    scenario: Scenario, uids: dict[str, str], spec: dict[str, Any] | None, on: bool, neighbour_on: bool | None = None
) -> list[Member]:
    members = [Member(TOPOLOGY, spec, uids.get(TOPOLOGY, ""), on)]
    if scenario.neighbour is not None:
        members.append(
            Member(NEIGHBOUR, scenario.neighbour, uids[NEIGHBOUR], on if neighbour_on is None else neighbour_on)
        )
    return members


def _expected_of(
    scenario: Scenario, namespace: str, uids: dict[str, str], spec: dict[str, Any] | None, on: bool
) -> dict[str, Objects]:
    """Topology UID -> the policies the operator should hold for it."""
    made = namespace_renders(_members(scenario, uids, spec, on), scenario.guardrail, namespace)
    return {uids[name]: policies for name, policies in made.items()}


def _settle_to(env: Env, namespace: str, expected: dict[str, Objects]) -> None:
    """Until every topology's owned policies are its expected render, and the operator has written no policy
    in the namespace for QUIET seconds."""
    want = {uid: {n: stored_spec(p.get("spec")) for n, p in objs.items()} for uid, objs in expected.items()}
    count, changed = -1, time.monotonic()

    def settled() -> bool:
        nonlocal count, changed
        now = _count(env, namespace)
        if now != count:
            count, changed = now, time.monotonic()
        live = env.cluster.policies(namespace).values()
        for uid, specs in want.items():
            have = {p["metadata"]["name"]: stored_spec(p.get("spec")) for p in live if _owned_by(p, uid)}
            if have != specs:
                return False
        return time.monotonic() - changed >= QUIET

    wait_for(settled, timeout=CONVERGE, interval=0.1, what=f"the policies of {sorted(want)} as expected")


def _owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(r.get("uid") == uid for r in (obj.get("metadata") or {}).get("ownerReferences") or [])


def _judge_neighbourhood(
    env: Env,
    namespace: str,
    scenario: Scenario,
    uids: dict[str, str],
    moments: list[Moment],
    marks: list[int],
    out: Outcome,
) -> list[Finding]:
    live, listed_at = _read_live(env, namespace)
    writes: list[Write] = env.log.writes(namespace)
    result = replay(writes)
    out.states = len(result.states)
    out.writes = sum(1 for w in writes if w.by_operator)
    rail = scenario.guardrail
    specs = [scenario.v1, *([scenario.v2] if any(m.label == "v2" for m in moments) else [])]
    nb = scenario.neighbour

    def tag(label: str, on: bool) -> str:
        return label + ("+rail" if on else "")

    # The topology: nothing, then each moment; rendered beside the neighbour as the guardrail applies to it
    # (or, the operator's view of the neighbour lagging, not).
    mine = [Revision("nothing", {})]
    for m in moments:
        made = [
            namespace_renders(_members(scenario, uids, m.spec, m.on, n_on), rail, namespace)[TOPOLOGY]
            for n_on in ([m.on, not m.on] if nb is not None else [m.on])
        ]
        mine.append(Revision(tag(m.label, m.on), made[0], tuple(made[1:])))
    seen = [o for s in result.states for o in s.objects.values()]
    bodies = [{"metadata": {"name": TOPOLOGY}, "spec": {**v, "enforcement": "Enforce"}} for v in specs]
    if nb is not None:
        bodies.append({"metadata": {"name": NEIGHBOUR}, "spec": nb})
    judge = Judge(namespace, bodies, mine, seen, owner_uid=uids[TOPOLOGY])
    findings = list(result.findings) + live_agrees(result, live, listed_at)
    findings += judge.judge(result.states)
    hints: list[tuple[int, int]] = [(p, 0) for p in judge.positions]
    final = _expected_of(scenario, namespace, uids, moments[-1].spec, moments[-1].on)
    others = [u for u in uids.values() if u != uids[TOPOLOGY]]
    findings += end_state(result, uids[TOPOLOGY], final[uids[TOPOLOGY]], out.expected, also=others)
    # The neighbour: nothing, alone, then beside each moment (beside any revision of the topology: the
    # operator renders it beside the topology's grant as its cache has it).
    theirs: list[Revision] = [Revision("nothing", {})]
    if nb is not None:
        alone = namespace_renders(_members(scenario, uids, None, False), rail, namespace)[NEIGHBOUR]
        theirs.append(Revision("alone", alone))
        for m in moments:
            made = [
                namespace_renders(_members(scenario, uids, s, m.on), rail, namespace)[NEIGHBOUR]
                for s in [m.spec, *(s for s in [None, *specs] if s is not m.spec)]
            ]
            theirs.append(Revision(f"{NEIGHBOUR} beside {tag(m.label, m.on)}", made[0], tuple(made[1:])))
        neighbour = Judge(namespace, bodies, theirs, seen, owner_uid=uids[NEIGHBOUR])
        neighbour.inventory, neighbour.pairs = judge.inventory, judge.pairs  # one inventory for every check
        findings += [Finding(f.kind, f"{NEIGHBOUR}: {f.message}") for f in neighbour.judge(result.states)]
        hints = [(a, b) for (a, _), b in zip(hints, neighbour.positions, strict=True)]
        findings += end_state(result, uids[NEIGHBOUR], final[uids[NEIGHBOUR]], f"{NEIGHBOUR}'s", also=[uids[TOPOLOGY]])
    # No state opens a pod beyond its own topology's intent: each combination of the two's revisions.
    combos: dict[tuple[int, int], Combo] = {}
    for t, revision in enumerate(mine):
        moment = moments[t - 1] if t else None
        for n in range(len(theirs)):
            n_moment = moments[n - 2] if n >= 2 else None
            members = [
                Member(TOPOLOGY, moment.spec if moment else None, uids[TOPOLOGY], bool(moment and moment.on)),
                *(
                    [Member(NEIGHBOUR, nb, uids[NEIGHBOUR], bool(n_moment and n_moment.on))]
                    if nb is not None and n
                    else []
                ),
            ]
            everyone = namespace_renders(members, rail, namespace)
            label = f"{revision.label} with {theirs[n].label if nb is not None else 'no neighbour'}"
            policies = {name: p for objs in everyone.values() for name, p in objs.items()}
            combos[(t, n)] = Combo(label, tuple(intents(members, rail, namespace)), policies)
    # A state is judged by the intents of the revisions each topology's judge finds holding it, or of the one
    # it was at just before (a topology's transition is judged against its old intent as well as its new: a
    # neighbour raised by a guardrail may isolate before the other topology drops a DNS policy for every pod,
    # a window in which its pods keep only what they had).
    holding = _candidates(judge, result.states, marks)
    theirs_holding = _candidates(neighbour, result.states, marks) if nb is not None else [{0} for _ in result.states]
    allowed = [{(t, n) for t in a for n in b} for a, b in zip(holding, theirs_holding, strict=True)]
    findings += Neighbourhood(judge, combos).judge_states(result.states, hints, allowed)
    return findings


def _candidates(judge: Judge, states: list[State], marks: list[int]) -> list[set[int]]:
    """Per state: the revisions holding it, and those the topology was settled at before and after the step
    whose writes the state is among (``marks``: the number of writes logged when each step had settled), so
    that either topology's old or new intent judges the states of a step."""
    seqs = [s.write.seq if s.write is not None else -1 for s in states]

    def settled_at(mark: int | None) -> set[int]:
        """The revisions the topology's policies are exactly at in the last state before ``mark``, and the one
        the judge's chain placed that state in."""
        last = max((j for j in range(len(states)) if seqs[j] < mark), default=None) if mark is not None else None
        if last is None:
            return set()
        return judge.exactly(states[last]) | ({judge.positions[last]} if judge.positions[last] >= 0 else set())

    out = []
    for k, state in enumerate(states):
        start = max((m for m in marks if m <= seqs[k]), default=None)
        end = min((m for m in marks if m > seqs[k]), default=None)
        found = judge.holding(state) | settled_at(start) | settled_at(end)
        out.append(set().union(*(judge.alike(r) for r in found)) if found else found)
    return out


def _read_live(env: Env, namespace: str) -> tuple[list[dict[str, Any]], int]:
    """The namespace's policies and the resourceVersion of the LIST that read them."""
    response = env.cluster.net.list_namespaced_network_policy(namespace, _preload_content=False)
    data = json.loads(response.read())
    return list(data.get("items") or []), int(data["metadata"]["resourceVersion"])
