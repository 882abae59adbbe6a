"""Two replicas with Lease leader election on the real API server: kill -9 the leader during a burst.

The standby must take over within the lease duration and converge with no duplicates, no orphans and no
extra writes (every policy written once, every status once); a clean stop hands over at once; after the
failover, nothing is written. Both replicas serve their metrics.
"""

from __future__ import annotations

import copy
import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from harness import (
    OPERATOR_NAMESPACE,
    SUMMARY,
    WRITE_VERBS,
    Cluster,
    ControlPlane,
    Operator,
    load_example,
    pod_kubeconfig,
    wait_for,
)
from kubernetes import client, config
from test_operator import assert_policies_match, wait_ready

from apptopology.controller.kube import LEADER_FENCE, Kube
from apptopology.controller.reconciler import MAX_ISOLATION_POLICIES, ApiError

pytestmark = pytest.mark.integration

LEASE_NS = "apptopology-system"
ARGS = ["--leader-elect", "--lease-namespace", LEASE_NS]


@pytest.fixture()
def replicas(controlplane: ControlPlane, operator: Operator) -> Iterator[list[Operator]]:
    """Two electing replicas; the suite's own (non-electing) operator is stopped meanwhile."""
    operator.stop()
    pair = [Operator(controlplane, ARGS, name=f"replica-{x}", pod=f"apptopology-operator-{x}") for x in "ab"]
    for replica in pair:
        replica.start()
    yield pair
    for replica in pair:
        replica.stop()
    controlplane.kubectl("delete", "lease", "-n", LEASE_NS, "apptopology-operator", "--ignore-not-found")


def leader(replicas: list[Operator]) -> Operator | None:
    found = []
    for replica in replicas:
        if replica.proc is not None and replica.proc.poll() is None:
            try:
                if replica.metrics().get("apptopology_leader") == 1:
                    found.append(replica)
            except OSError:
                pass
    assert len(found) <= 1, "two leaders at once"
    return found[0] if found else None


def writes(cp: ControlPlane, since: int, namespace: str) -> list[tuple[str, str, str]]:
    """(verb, resource, name) of the operators' real (not dry-run) writes in ``namespace`` since audit entry
    ``since`` (earlier tests' namespaces may still be going away, and the new leader tidies them up)."""
    out = []
    for entry in cp.audit_writes()[since:]:
        if entry["objectRef"].get("namespace") != namespace:
            continue
        if "dryRun=All" in entry.get("requestURI", "") or entry["objectRef"].get("resource") == "leases":
            continue
        if (entry.get("responseStatus") or {}).get("code", 200) >= 400:
            continue  # did not happen (a request cut off by kill -9 is logged with its failure)
        ref = entry["objectRef"]
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        out.append((entry["verb"], resource, ref.get("name", "")))
    return out


def test_leader_killed_during_a_burst(
    cluster: Cluster, controlplane: ControlPlane, replicas: list[Operator], namespace: str
) -> None:
    first = wait_for(lambda: leader(replicas), timeout=30, what="a leader")
    standby = next(r for r in replicas if r is not first)
    assert standby.metrics().get("apptopology_leader") == 0
    since = len(controlplane.audit_writes())
    doc = load_example("three-tier.yaml")
    uids: dict[str, str] = {}
    killed_at = 0.0
    for i in range(40):
        item = copy.deepcopy(doc)
        item["metadata"]["name"] = f"app-{i:02d}"
        uids[item["metadata"]["name"]] = cluster.create(item, namespace)["metadata"]["uid"]
        if i == 15:
            first.stop(signal.SIGKILL)
            killed_at = time.monotonic()
    wait_for(lambda: leader(replicas) is standby, timeout=40, what="the standby leading")
    takeover = time.monotonic() - killed_at
    for name in uids:
        wait_ready(cluster, namespace, name, timeout=120)
    converged = time.monotonic() - killed_at
    policies = cluster.policies(namespace)
    assert len(policies) == 40 * 5  # no duplicates, nothing missing
    for name, uid in uids.items():
        item = copy.deepcopy(doc)
        item["metadata"]["name"] = name
        assert_policies_match(cluster, namespace, item, uid)  # each policy owned by its topology only
    done = writes(controlplane, since, namespace)
    policy_writes = [w for w in done if w[1] == "networkpolicies"]
    status_writes = [w for w in done if w[1] == "apptopologies/status"]
    assert all(verb in ("create", "patch") for verb, _, _ in policy_writes)  # no deletes: nothing orphaned or redone
    # Every policy (and status) written exactly once. A write cut off by kill -9 is logged with a failure (504) but may
    # or may not have happened: such a policy counts as written by it, or once more by the new leader.
    written = [n for _, _, n in policy_writes]
    cut_off = {
        e["objectRef"].get("name")
        for e in controlplane.audit_writes()[since:]
        if e["objectRef"].get("resource") == "networkpolicies"
        and (e.get("responseStatus") or {}).get("code", 200) >= 500
    }
    assert all(written.count(n) <= 1 for n in written), (
        f"written twice: {sorted({n for n in written if written.count(n) > 1})}"
    )
    assert set(policies) - set(written) <= cut_off, f"never written: {sorted(set(policies) - set(written) - cut_off)}"
    assert set(written) <= set(policies)
    statuses = [n for _, _, n in status_writes]
    status_cut_off = {
        e["objectRef"].get("name")
        for e in controlplane.audit_writes()[since:]
        if e["objectRef"].get("subresource") == "status" and (e.get("responseStatus") or {}).get("code", 200) >= 500
    }
    # Each status once, or twice for the first topologies: the namespace then passes the number of policies
    # the Isolated condition evaluates, and it turns Unknown (NotEvaluated) for them too.
    assert all(statuses.count(n) <= 2 for n in statuses), {n: statuses.count(n) for n in statuses}
    assert sum(statuses.count(n) == 2 for n in set(statuses)) <= MAX_ISOLATION_POLICIES // 5 + 1
    assert set(uids) - set(statuses) <= status_cut_off
    print(f"takeover {takeover:.1f}s after kill -9, all 40 Ready {converged:.1f}s after it")

    # After the failover, in sync: the new leader writes nothing more.
    time.sleep(3)
    idle = len(controlplane.audit_writes())
    time.sleep(5)
    assert writes(controlplane, idle, namespace) == []
    metrics = standby.metrics()
    assert metrics['apptopology_reconciles_total{result="applied"}'] >= 1
    assert metrics["apptopology_managed_topologies"] >= 40


def test_clean_stop_hands_over_at_once_and_writes_nothing(
    cluster: Cluster, controlplane: ControlPlane, replicas: list[Operator], namespace: str
) -> None:
    first = wait_for(lambda: leader(replicas), timeout=30, what="a leader")
    standby = next(r for r in replicas if r is not first)
    for example in ("three-tier.yaml", "cross-namespace.yaml"):
        cluster.create(load_example(example), namespace)
    for name in ("shop", "orders"):
        wait_ready(cluster, namespace, name)
    time.sleep(2)
    since = len(controlplane.audit_writes())
    stopped = time.monotonic()
    first.stop()  # SIGTERM: the leader releases its lease
    wait_for(lambda: leader(replicas) is standby, timeout=10, interval=0.1, what="handover")
    handover = time.monotonic() - stopped
    time.sleep(5)  # the new leader's resync of everything: from the cache, in sync
    assert writes(controlplane, since, namespace) == []
    print(f"clean handover {handover:.1f}s")


def _tail_audit(cp: ControlPlane, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Audit entries written since byte ``offset`` (complete lines only), and the new offset."""
    with open(cp.env["AUDIT_LOG"], "rb") as log:
        log.seek(offset)
        data = log.read()
    complete = data[: data.rfind(b"\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line], offset + len(complete)


def _by(replica: Operator, namespace: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The completed write requests ``replica`` sent in ``namespace`` (its user agent names its process)."""
    assert replica.proc is not None
    mark = f"({replica.pod})" if replica.pod else f"-{replica.proc.pid})"
    return [
        e
        for e in entries
        if e.get("stage") == "ResponseComplete"
        and e.get("verb") in WRITE_VERBS
        and e["objectRef"].get("namespace") == namespace
        and mark in e.get("userAgent", "")
    ]


def _tiers(count: int, suffix: str = "") -> dict[str, Any]:
    """Scope Tiers with ``count`` tiers in a chain: every selector change moves isolation (guards), so a
    revision takes many writes."""
    tiers = [{"name": f"t{i:02d}", "podSelector": {"matchLabels": {"tier": f"t{i:02d}{suffix}"}}} for i in range(count)]
    flows = [{"from": {"tier": f"t{i:02d}"}, "to": {"tier": f"t{i + 1:02d}"}} for i in range(count - 1)]
    return {"defaultDeny": {"scope": "Tiers"}, "tiers": tiers, "flows": flows}


def test_a_paused_leader_sends_nothing_after_it_resumes(
    cluster: Cluster, controlplane: ControlPlane, replicas: list[Operator], namespace: str
) -> None:
    """Issue 17, finding 4: a leader paused in the middle of a plan (SIGSTOP past the lease duration) kept
    writing that plan when it resumed, interleaved with the new leader's writes for the same names (121
    requests). Every write now passes the lease fence right before the socket, and the one request a pause
    can catch between that check and the socket is refused by the API server (the optional leader fence,
    deploy/components/leader-fence, which the suite installs: the pod is not the Lease's holder). After SIGCONT
    the server accepts nothing from the old leader (audit log)."""
    first = wait_for(lambda: leader(replicas), timeout=30, what="a leader")
    standby = next(r for r in replicas if r is not first)
    assert first.proc is not None
    doc = {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": "chain"},
        "spec": _tiers(30),
    }
    uid = cluster.create(doc, namespace)["metadata"]["uid"]
    wait_ready(cluster, namespace, "chain", timeout=120)
    _, offset = _tail_audit(controlplane, 0)
    for attempt in range(5):  # until the pause lands in the middle of a plan's real writes
        spec = _tiers(30, suffix=f"-v{attempt + 2}")
        cluster.patch_spec(namespace, "chain", spec)
        seen: list[dict[str, Any]] = []
        while True:
            entries, offset = _tail_audit(controlplane, offset)
            seen += [e for e in _by(first, namespace, entries) if "dryRun" not in e.get("requestURI", "")]
            if any(e["objectRef"].get("resource") == "networkpolicies" for e in seen):
                first.proc.send_signal(signal.SIGSTOP)
                break
            time.sleep(0.002)
        time.sleep(0.5)
        entries, offset = _tail_audit(controlplane, offset)
        if not any(e["objectRef"].get("subresource") == "status" for e in _by(first, namespace, entries) + seen):
            break  # paused before it finished (a finished plan ends with its status)
        first.proc.send_signal(signal.SIGCONT)
        wait_ready(cluster, namespace, "chain", timeout=120)
        _, offset = _tail_audit(controlplane, offset)
    else:
        pytest.fail("every plan finished before the pause: the test proves nothing")
    try:
        wait_for(lambda: leader([standby]) is standby, timeout=40, what="the standby leading")
        final = _tiers(30, suffix="-final")
        generation = cluster.patch_spec(namespace, "chain", final)["metadata"]["generation"]
        wait_for(
            lambda: (c := cluster.ready(namespace, "chain", generation)) and c["status"] == "True",
            timeout=120,
            what="the new leader applying the next revision",
        )
        _, offset = _tail_audit(controlplane, offset)
    finally:
        first.proc.send_signal(signal.SIGCONT)
    time.sleep(8)  # the resumed process runs its pending writes (if it were not fenced) and its elector
    entries, offset = _tail_audit(controlplane, offset)
    late = _by(first, namespace, entries)
    accepted = [e for e in late if e.get("responseStatus", {}).get("code", 0) < 300]
    assert accepted == [], [(e["verb"], e["objectRef"].get("name"), e["objectRef"].get("subresource")) for e in late]
    # The one request a pause can catch between the client's check and the socket reaches the server, which
    # refuses it; nothing is sent after it.
    assert len(late) <= 1, [(e["verb"], e["objectRef"].get("name"), e["responseStatus"]) for e in late]
    if late:
        SUMMARY.append(f"paused leader: its one late request was refused by the server ({late[0]['verb']})")
    assert first.metrics().get("apptopology_fenced_writes_total", 0) >= 1
    assert leader(replicas) is standby
    doc["spec"] = final
    assert_policies_match(cluster, namespace, doc, uid)


def test_the_api_server_refuses_writes_from_a_pod_that_does_not_hold_the_lease(
    cluster: Cluster, controlplane: ControlPlane, namespace: str
) -> None:
    """The optional leader fence (deploy/components/leader-fence, a ValidatingAdmissionPolicy whose parameter is
    the Lease): a NetworkPolicy or status write from an operator pod is admitted only while that pod holds the
    Lease, dry runs included. The client's own check cannot close the window between the check and the socket;
    this does, on the server."""
    pods = {
        x: Kube(config.new_client_from_config(pod_kubeconfig(controlplane, f"apptopology-operator-{x}"))) for x in "ab"
    }
    leases = client.CoordinationV1Api(controlplane.api)
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "fenced", "namespace": namespace},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
    # No Lease (before the first election): nothing to fence, and nobody's writes are refused (the API server
    # looks the parameter up before the match conditions: a Deny there refused every user's writes).
    cluster.kube.apply_policy({**policy, "metadata": {**policy["metadata"], "name": "before"}}, None)
    pods["a"].apply_policy(policy, None, dry_run=True)
    lease = {
        "metadata": {"name": "apptopology-operator"},
        "spec": {"holderIdentity": "apptopology-operator-b", "leaseDurationSeconds": 15},
    }
    leases.create_namespaced_lease(OPERATOR_NAMESPACE, lease)
    try:
        # The API server reads the Lease through a watch: wait until it has this one.
        wait_for(
            lambda: _admitted(lambda: pods["b"].apply_policy(policy, None, dry_run=True)), what="the fence's Lease"
        )
        for dry_run in (True, False):
            with pytest.raises(ApiError) as refused:
                pods["a"].apply_policy(policy, None, dry_run=dry_run)
            assert refused.value.transient and LEADER_FENCE in refused.value.message, refused.value
        assert "fenced" not in cluster.policies(namespace)
        live = pods["b"].apply_policy(policy, None)  # the holder writes
        for attempt in (
            lambda: pods["a"].apply_policy(
                {**policy, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}, live["metadata"]["uid"]
            ),
            lambda: pods["a"].delete_policy(namespace, "fenced", live["metadata"]["uid"]),
        ):
            with pytest.raises(ApiError, match=LEADER_FENCE):
                attempt()
        after = cluster.policies(namespace)["fenced"]
        assert after["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
        # The Lease changes hands: a takes over, b is refused.
        leases.patch_namespaced_lease(
            "apptopology-operator", OPERATOR_NAMESPACE, {"spec": {"holderIdentity": "apptopology-operator-a"}}
        )
        wait_for(
            lambda: _admitted(
                lambda: pods["a"].delete_policy(namespace, "fenced", live["metadata"]["uid"], dry_run=True)
            ),
            what="the new holder",
        )
        with pytest.raises(ApiError, match=LEADER_FENCE):
            pods["b"].delete_policy(namespace, "fenced", live["metadata"]["uid"])
        pods["a"].delete_policy(namespace, "fenced", live["metadata"]["uid"])
        assert "fenced" not in cluster.policies(namespace)
        cluster.kube.apply_policy({**policy, "metadata": {**policy["metadata"], "name": "admin"}}, None)  # not fenced
    finally:
        leases.delete_namespaced_lease("apptopology-operator", OPERATOR_NAMESPACE)


def _admitted(write: Any) -> bool:
    try:
        write()
    except ApiError as exc:
        if LEADER_FENCE in exc.message:
            return False
        raise
    return True
