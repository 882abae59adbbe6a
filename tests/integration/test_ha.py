"""Two replicas with Lease leader election on the real API server: kill -9 the leader during a burst.

The standby must take over within the lease duration and converge with no duplicates, no orphans and no
extra writes (every policy written once, every status once); a clean stop hands over at once; after the
failover, nothing is written. Both replicas serve their metrics.
"""

from __future__ import annotations

import copy
import signal
import time
from collections.abc import Iterator

import pytest
from harness import Cluster, ControlPlane, Operator, load_example, wait_for
from test_operator import assert_policies_match, wait_ready

from apptopology.controller.reconciler import MAX_ISOLATION_POLICIES

pytestmark = pytest.mark.integration

LEASE_NS = "apptopology-system"
ARGS = ["--leader-elect", "--lease-namespace", LEASE_NS]


@pytest.fixture()
def replicas(controlplane: ControlPlane, operator: Operator) -> Iterator[list[Operator]]:
    """Two electing replicas; the suite's own (non-electing) operator is stopped meanwhile."""
    operator.stop()
    pair = [Operator(controlplane, ARGS, name="replica-a"), Operator(controlplane, ARGS, name="replica-b")]
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
    assert all(verb == "patch" for verb, _, _ in policy_writes)  # no deletes: nothing orphaned or redone
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
