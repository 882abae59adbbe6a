"""The executor against a fake cluster: every path of a reconcile, and what stays in the namespace."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fake_cluster import FakeCluster

from apptopology.controller.reconciler import ApiError, Fenced, Reconciler
from apptopology.planner.transition import within

NS = "prod"


def topology(flows: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": "shop", "namespace": NS},
        "spec": {
            "tiers": [
                {"name": "web", "podSelector": {"matchLabels": {"app": "web"}}},
                {"name": "api", "podSelector": {"matchLabels": {"app": "api"}}},
                {"name": "db", "podSelector": {"matchLabels": {"app": "db"}}},
            ],
            "flows": copy.deepcopy(flows)
            if flows is not None
            else [
                {"from": {"anywhere": True}, "to": {"tier": "web"}, "ports": [{"port": 443}]},
                {"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": [{"port": 8080}]},
            ],
            **spec,
        },
    }


NEXT_FLOWS = [
    {"from": {"anywhere": True}, "to": {"tier": "web"}, "ports": [{"port": 443}]},
    {"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": [{"port": 8080}]},
    {"from": {"tier": "api"}, "to": {"tier": "db"}, "ports": [{"port": 5432}]},
    {"from": {"tier": "db"}, "to": {"ipBlock": {"cidr": "10.9.0.0/16"}}, "ports": [{"port": 443}]},
]


@pytest.fixture()
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture()
def reconciler(cluster: FakeCluster) -> Reconciler:
    return Reconciler(cluster, now=lambda: "2026-12-01T10:00:00Z", recheck_after=60)


def ready(cluster: FakeCluster) -> dict[str, Any]:
    status = cluster.topologies[(NS, "shop")]["status"]
    return dict(next(c for c in status["conditions"] if c["type"] == "Ready"))


def specs(cluster: FakeCluster) -> dict[str, dict[str, Any]]:
    return {n: p["spec"] for (ns, n), p in cluster.policies.items() if ns == NS}


def converged(cluster: FakeCluster, reconciler: Reconciler) -> dict[str, dict[str, Any]]:
    cluster.add_topology(topology())
    outcome = reconciler.reconcile(NS, "shop")
    assert not outcome.retry and ready(cluster)["status"] == "True"
    reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))  # the cache's view adds the tiers' status
    cluster.calls.clear()
    cluster.events.clear()
    return copy.deepcopy(specs(cluster))


def test_create_then_zero_writes(cluster: FakeCluster, reconciler: Reconciler) -> None:
    cluster.add_topology(topology())
    outcome = reconciler.reconcile(NS, "shop")
    assert not outcome.retry and outcome.requeue_after is None
    assert cluster.names(NS) == ["shop.allow-dns", "shop.default-deny", "shop.tier-api", "shop.tier-web"]
    assert (ready(cluster)["status"], ready(cluster)["reason"]) == ("True", "Reconciled")
    status = cluster.topologies[(NS, "shop")]["status"]
    assert status["policies"] == ["shop.default-deny", "shop.allow-dns", "shop.tier-web", "shop.tier-api"]
    assert status["observedGeneration"] == 1 and status["tierCount"] == 3
    assert cluster.events == [("Normal", "Applied", "NetworkPolicies: 4 created or updated, 0 deleted (generation 1)")]
    # A first revision is not dry-run (a refusal half way ends with nothing, as a dry-run refusal would).
    assert cluster.writes(dry_run=True) == []
    cluster.calls.clear()
    reconciler.reconcile(NS, "shop")
    assert cluster.writes() == [] and cluster.writes(dry_run=True) == []
    assert [v for v, _, _ in cluster.calls] == ["get", "list"]


def test_dry_run_refusal_writes_nothing(cluster: FakeCluster, reconciler: Reconciler) -> None:
    before = converged(cluster, reconciler)
    cluster.update_spec(NS, "shop", topology(NEXT_FLOWS)["spec"])
    refusal = ApiError(422, "Unprocessable Entity", 'NetworkPolicy "shop.tier-db" is invalid: spec.egress[0]...')
    cluster.refuse("apply", "shop.tier-db", refusal, dry_run=True)
    outcome = reconciler.reconcile(NS, "shop")
    assert cluster.writes() == [("status", "shop"), ("event", "shop")]
    assert specs(cluster) == before
    cond = ready(cluster)
    assert (cond["status"], cond["reason"], cond["observedGeneration"]) == ("False", "ApplyFailed", 2)
    assert (
        "shop.tier-db" in cond["message"] and "422" in cond["message"] and "Nothing of this revision" in cond["message"]
    )
    assert cluster.topologies[(NS, "shop")]["status"]["policies"] == sorted(before)
    assert cluster.events[0][:2] == ("Warning", "ApplyFailed")
    assert outcome.requeue_after == 60 and not outcome.retry


def test_quota_refusal_half_way_restores_the_old_revision(cluster: FakeCluster, reconciler: Reconciler) -> None:
    """Each dry run fits the quota on its own; the second real create does not: everything is put back."""
    before = converged(cluster, reconciler)
    cluster.quota = len(before) + 1
    spec = topology(NEXT_FLOWS)["spec"]
    spec["tiers"].append({"name": "cache", "podSelector": {"matchLabels": {"app": "cache"}}})
    spec["flows"].append({"from": {"tier": "api"}, "to": {"tier": "cache"}, "ports": [{"port": 6379}]})
    cluster.update_spec(NS, "shop", spec)  # two new policies: db and cache
    outcome = reconciler.reconcile(NS, "shop")
    assert any(v == "apply" for v, _ in cluster.writes())  # it did start writing
    assert specs(cluster) == before
    cond = ready(cluster)
    assert cond["reason"] == "ApplyFailed" and "exceeded quota" in cond["message"] and "restored" in cond["message"]
    assert outcome.requeue_after == 60


def test_transient_failure_half_way_restores_then_retries(cluster: FakeCluster, reconciler: Reconciler) -> None:
    before = converged(cluster, reconciler)
    cluster.update_spec(NS, "shop", topology(NEXT_FLOWS)["spec"])
    cluster.refuse("apply", "shop.tier-db", ApiError(503, "Service Unavailable"), dry_run=False, times=1)
    outcome = reconciler.reconcile(NS, "shop")
    assert outcome.retry
    assert specs(cluster) == before and ready(cluster)["reason"] == "ApplyFailed"
    outcome = reconciler.reconcile(NS, "shop")  # at once (the echo of the restore): the same state waits
    assert outcome.summary == "refused" and outcome.requeue_after is not None and outcome.requeue_after <= 5
    now = reconciler.clock()
    reconciler.clock = lambda: now + 5.5  # the transient cool-down has passed
    outcome = reconciler.reconcile(NS, "shop")
    assert not outcome.retry and ready(cluster)["status"] == "True"
    assert "shop.tier-db" in specs(cluster)


def test_when_restoring_fails_too_the_namespace_is_within_one_revision(
    cluster: FakeCluster, reconciler: Reconciler
) -> None:
    """The API server goes away half way: no restore possible. The write order still bounds what is open."""
    before = converged(cluster, reconciler)
    cluster.update_spec(NS, "shop", topology(NEXT_FLOWS)["spec"])
    done = [0]

    def outage(verb: str, name: str, dry: bool) -> ApiError | None:
        if verb in ("apply", "delete") and not dry:
            done[0] += 1
            if done[0] > 1:
                return ApiError(0, "ConnectionRefusedError")
        return None

    cluster.rules.append(outage)
    outcome = reconciler.reconcile(NS, "shop")
    assert outcome.retry
    after = {n: s for n, s in specs(cluster).items()}
    target = {n: s for n, s in _rendered(NEXT_FLOWS).items()}
    assert after != before
    assert within(after, before) or within(after, target)
    assert "Restoring the previous revision failed too" in ready(cluster)["message"]


def _rendered(flows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    other = FakeCluster()
    other.add_topology(topology(flows))
    Reconciler(other).reconcile(NS, "shop")
    return specs(other)


def test_name_conflict_writes_nothing(cluster: FakeCluster, reconciler: Reconciler) -> None:
    cluster.put_policy(
        {
            "metadata": {"name": "shop.tier-api", "namespace": NS, "labels": {"owner": "platform"}},
            "spec": {"podSelector": {"matchLabels": {"legacy": "true"}}, "policyTypes": ["Ingress"]},
        }
    )
    cluster.add_topology(topology())
    outcome = reconciler.reconcile(NS, "shop")
    assert [w for w in cluster.writes() if w[0] in ("apply", "delete")] == []
    assert cluster.names(NS) == ["shop.tier-api"]
    cond = ready(cluster)
    assert cond["reason"] == "NameConflict" and "shop.tier-api" in cond["message"]
    assert cluster.topologies[(NS, "shop")]["status"]["conflicts"] == ["shop.tier-api"]
    assert outcome.requeue_after == 60


def test_invalid_spec_keeps_policies_no_retry(cluster: FakeCluster, reconciler: Reconciler) -> None:
    before = converged(cluster, reconciler)
    spec = topology()["spec"]
    spec["flows"] = [{"from": {"tier": "web"}, "to": {"tier": "databse"}}]
    cluster.update_spec(NS, "shop", spec)
    outcome = reconciler.reconcile(NS, "shop")
    assert not outcome.retry and outcome.requeue_after is None
    assert specs(cluster) == before
    assert ready(cluster)["reason"] == "InvalidSpec" and cluster.events[0][:2] == ("Warning", "InvalidSpec")
    cluster.calls.clear()
    reconciler.reconcile(NS, "shop")  # the status write's own event: nothing more to do
    assert cluster.writes() == []


def test_errors_outside_writes(cluster: FakeCluster, reconciler: Reconciler) -> None:
    cluster.add_topology(topology())
    cluster.refuse("list", None, ApiError(500, "Internal Server Error"), times=1)
    assert reconciler.reconcile(NS, "shop").retry
    cluster.refuse("get", None, ApiError(403, "Forbidden"), times=1)
    outcome = reconciler.reconcile(NS, "shop")
    assert not outcome.retry and outcome.requeue_after == 60
    assert cluster.writes() == []
    assert not reconciler.reconcile(NS, "shop").retry  # both failures were one-off


def test_status_never_overwrites_a_newer_generation(cluster: FakeCluster, reconciler: Reconciler) -> None:
    """The spec changes between the read and the status write: the write is refused, the retry reports
    the newer generation."""
    converged(cluster, reconciler)
    cluster.update_spec(NS, "shop", topology(NEXT_FLOWS)["spec"])
    bumped = [False]

    def concurrent_edit(verb: str, name: str, dry: bool) -> ApiError | None:
        if verb == "status" and not bumped[0]:
            bumped[0] = True
            cluster.update_spec(NS, "shop", topology()["spec"])
        return None

    cluster.rules.append(concurrent_edit)
    assert reconciler.reconcile(NS, "shop").retry
    assert cluster.topologies[(NS, "shop")]["status"]["observedGeneration"] == 1
    assert not reconciler.reconcile(NS, "shop").retry
    assert cluster.topologies[(NS, "shop")]["status"]["observedGeneration"] == 3


def test_gone_topology_is_left_to_garbage_collection(cluster: FakeCluster, reconciler: Reconciler) -> None:
    assert reconciler.reconcile(NS, "missing").summary == "gone"
    assert [v for v, _, _ in cluster.calls] == ["get"]


def test_old_names_migrate(cluster: FakeCluster, reconciler: Reconciler) -> None:
    converged(cluster, reconciler)
    for key in list(cluster.policies):
        policy = cluster.policies.pop(key)
        policy["metadata"]["name"] = policy["metadata"]["name"].replace("shop.", "shop-", 1)
        cluster.policies[(NS, policy["metadata"]["name"])] = policy
    reconciler.reconcile(NS, "shop")
    assert cluster.names(NS) == ["shop.allow-dns", "shop.default-deny", "shop.tier-api", "shop.tier-web"]
    assert ready(cluster)["status"] == "True"
    deletes = [n for v, n in cluster.writes() if v == "delete"]
    applies = [n for v, n in cluster.writes() if v == "apply"]
    assert sorted(deletes) == ["shop-allow-dns", "shop-default-deny", "shop-tier-api", "shop-tier-web"]
    order = [n for v, n in cluster.writes() if v in ("apply", "delete")]
    assert order.index(deletes[0]) > max(order.index(a) for a in applies)


def _two_new_tiers(cluster: FakeCluster) -> None:
    spec = topology(NEXT_FLOWS)["spec"]
    spec["tiers"].append({"name": "cache", "podSelector": {"matchLabels": {"app": "cache"}}})
    spec["flows"].append({"from": {"tier": "api"}, "to": {"tier": "cache"}, "ports": [{"port": 6379}]})
    cluster.update_spec(NS, "shop", spec)


def test_a_failed_attempt_is_not_repeated_for_the_same_state(cluster: FakeCluster, reconciler: Reconciler) -> None:
    """The restore's own watch events must not start the same doomed attempt again (a write storm)."""
    before = converged(cluster, reconciler)
    cluster.quota = len(before) + 1
    _two_new_tiers(cluster)
    reconciler.reconcile(NS, "shop")
    cluster.calls.clear()
    for _ in range(3):  # the echoes of the restore, and of the status write
        outcome = reconciler.reconcile(NS, "shop")
    assert outcome.requeue_after is not None and 0 < outcome.requeue_after <= 60
    attempts = [n for v, n in cluster.writes() if v == "apply" and n == "shop.tier-cache"]
    assert attempts == []  # not even once more: our status write moved the resourceVersion, nothing else
    cluster.calls.clear()
    reconciler.reconcile(NS, "shop")
    assert cluster.writes() == []
    # Touching the topology (kubectl annotate: a new resourceVersion) is a user's way to try again now.
    cluster.topologies[(NS, "shop")]["metadata"]["resourceVersion"] = "touched"
    reconciler.reconcile(NS, "shop")
    assert any(v == "apply" for v, _ in cluster.writes())


def test_restore_repairs_drift_of_the_previous_revision(cluster: FakeCluster, reconciler: Reconciler) -> None:
    """Restored as last applied (declared), not as found: a widening edit does not survive a failed change."""
    before = converged(cluster, reconciler)
    widened = cluster.policies[(NS, "shop.tier-api")]
    widened["spec"]["ingress"][0]["from"][0]["namespaceSelector"] = {}
    cluster.quota = len(before) + 1
    _two_new_tiers(cluster)
    reconciler.reconcile(NS, "shop")
    assert ready(cluster)["reason"] == "ApplyFailed"
    assert specs(cluster) == before


# The cache: in sync costs nothing; anything else asks the API server ---------------------------------


def test_in_sync_from_the_cache_makes_no_request(cluster: FakeCluster, reconciler: Reconciler) -> None:
    converged(cluster, reconciler)
    outcome = reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    assert outcome.summary == "in_sync" and cluster.calls == []


def test_a_cache_difference_is_checked_with_the_api_server(cluster: FakeCluster, reconciler: Reconciler) -> None:
    before = converged(cluster, reconciler)
    cluster.policies[(NS, "shop.tier-api")]["spec"]["ingress"][0]["from"][0]["namespaceSelector"] = {}
    outcome = reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    assert outcome.summary == "applied" and specs(cluster) == before
    assert [v for v, _, _ in cluster.calls][:1] == ["list"]


def test_a_stale_cache_never_causes_a_write(cluster: FakeCluster, reconciler: Reconciler) -> None:
    """The cache lags (a policy not seen yet): the API server's list decides, and it says in sync."""
    converged(cluster, reconciler)
    lagging = cluster.view(NS, "shop")
    del lagging.owned["shop.tier-web"]
    outcome = reconciler.reconcile(NS, "shop", lagging)
    assert outcome.summary == "in_sync"
    assert cluster.writes() == [] and cluster.writes(dry_run=True) == []


def test_the_echo_of_our_own_write_needs_no_reconcile(cluster: FakeCluster, reconciler: Reconciler) -> None:
    converged(cluster, reconciler)
    expect = reconciler.expectations
    ours = copy.deepcopy(cluster.policies[(NS, "shop.tier-api")])
    assert expect.keys_to_reconcile({"type": "MODIFIED", "object": ours}) == []
    drifted = copy.deepcopy(ours)
    drifted["spec"]["policyTypes"] = ["Ingress"]
    assert expect.keys_to_reconcile({"type": "MODIFIED", "object": drifted}) == [((NS, "shop"), True)]
    assert expect.keys_to_reconcile({"type": "DELETED", "object": ours}) == [((NS, "shop"), True)]
    stale = copy.deepcopy(ours)
    stale["metadata"]["name"] = "shop.tier-gone"
    assert expect.keys_to_reconcile({"type": "DELETED", "object": stale}) == []
    foreign = {"metadata": {"name": "shop.tier-api", "namespace": NS}, "spec": {"podSelector": {}}}
    assert expect.keys_to_reconcile({"type": "ADDED", "object": foreign}) == [((NS, "shop"), True)]
    unrelated = {"metadata": {"name": "other-policy", "namespace": NS}, "spec": {}}
    assert expect.keys_to_reconcile({"type": "ADDED", "object": unrelated}) == []


def test_a_first_revision_refused_half_way_leaves_nothing(cluster: FakeCluster, reconciler: Reconciler) -> None:
    cluster.add_topology(topology())
    cluster.refuse("apply", "shop.tier-web", ApiError(422, "Unprocessable Entity", "refused by admission"))
    outcome = reconciler.reconcile(NS, "shop")
    assert cluster.names(NS) == []
    assert any(v == "apply" for v, _ in cluster.writes()) and any(v == "delete" for v, _ in cluster.writes())
    cond = ready(cluster)
    assert cond["reason"] == "ApplyFailed" and "refused by admission" in cond["message"]
    assert cluster.topologies[(NS, "shop")]["status"]["policies"] == []
    assert outcome.requeue_after == 60


def test_changes_after_the_first_revision_are_dry_run(cluster: FakeCluster, reconciler: Reconciler) -> None:
    converged(cluster, reconciler)
    cluster.update_spec(NS, "shop", topology(NEXT_FLOWS)["spec"])
    reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    finals = sorted(n for v, n in cluster.writes() if v in ("apply", "delete"))
    assert sorted(n for v, n in cluster.writes(dry_run=True)) == sorted(set(finals))


def test_name_conflicts_come_from_the_cache_of_names(cluster: FakeCluster, reconciler: Reconciler) -> None:
    """With the cache, the namespace is not listed whole: a foreign policy is known by name."""
    cluster.put_policy({"metadata": {"name": "shop.tier-api", "namespace": NS}, "spec": {"podSelector": {}}})
    cluster.add_topology(topology())
    reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    assert ready(cluster)["reason"] == "NameConflict"
    assert cluster.names(NS) == ["shop.tier-api"]


# spec.enforcement: DryRun ----------------------------------------------------------------------------


def _dry(spec: dict[str, Any]) -> dict[str, Any]:
    return {**spec, "enforcement": "DryRun"}


def test_dry_run_writes_no_policy_and_says_what_it_would_apply(cluster: FakeCluster, reconciler: Reconciler) -> None:
    doc = topology()
    doc["spec"] = _dry(doc["spec"])
    cluster.add_topology(doc)
    reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    assert cluster.names(NS) == [] and not [w for w in cluster.writes() if w[0] in ("apply", "delete")]
    asked = sorted(n for v, n in cluster.writes(dry_run=True) if v == "apply")
    assert asked == ["shop.allow-dns", "shop.default-deny", "shop.tier-api", "shop.tier-web"]
    cond = ready(cluster)
    assert (cond["status"], cond["reason"]) == ("False", "DryRun") and "would be applied" in cond["message"]
    status = cluster.topologies[(NS, "shop")]["status"]
    assert status["enforcement"] == "DryRun" and sorted(status["dryRun"]["wouldApply"]) == asked
    cluster.calls.clear()
    assert reconciler.reconcile(NS, "shop", cluster.view(NS, "shop")).summary == "in_sync"
    assert cluster.calls == []  # asked once per revision


def test_switching_to_dry_run_removes_the_policies_and_back_applies_them(
    cluster: FakeCluster, reconciler: Reconciler
) -> None:
    before = converged(cluster, reconciler)
    cluster.update_spec(NS, "shop", _dry(topology()["spec"]))
    reconciler.reconcile(NS, "shop")
    assert cluster.names(NS) == []
    assert ("Warning", "EnforcementStopped") in [(t, r) for t, r, _ in cluster.events]
    assert ready(cluster)["reason"] == "DryRun"
    cluster.update_spec(NS, "shop", topology()["spec"])
    reconciler.reconcile(NS, "shop")
    assert specs(cluster) == before and ready(cluster)["reason"] == "Reconciled"
    status = cluster.topologies[(NS, "shop")]["status"]
    assert status["enforcement"] == "Enforce" and status.get("dryRun") is None


def test_a_dry_run_refusal_is_reported(cluster: FakeCluster, reconciler: Reconciler) -> None:
    doc = topology()
    doc["spec"] = _dry(doc["spec"])
    cluster.add_topology(doc)
    cluster.refuse("apply", "shop.tier-api", ApiError(422, "Unprocessable Entity", "denied by policy"), dry_run=True)
    reconciler.reconcile(NS, "shop")
    cond = ready(cluster)
    assert (
        cond["reason"] == "ApplyFailed" and "would refuse" in cond["message"] and "denied by policy" in cond["message"]
    )


def test_isolated_says_when_another_topology_opens_its_pods(cluster: FakeCluster, reconciler: Reconciler) -> None:
    converged(cluster, reconciler)
    view = cluster.view(NS, "shop")
    reconciler.reconcile(NS, "shop", view)
    isolated = next(c for c in cluster.topologies[(NS, "shop")]["status"]["conditions"] if c["type"] == "Isolated")
    assert (isolated["status"], isolated["reason"]) == ("True", "Alone")
    # A second topology whose tier selects every pod of the namespace and lets anyone in on 22.
    other = topology([{"from": {"anywhere": True}, "to": {"tier": "everyone"}, "ports": [{"port": 22}]}])
    other["metadata"]["name"] = "ops"
    other["spec"]["tiers"] = [{"name": "everyone", "podSelector": {}}]
    cluster.add_topology(other)
    reconciler.reconcile(NS, "ops", cluster.view(NS, "ops"))
    cluster.update_spec(NS, "shop", {**topology()["spec"], "flows": topology()["spec"]["flows"][:1]})
    reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))  # a change: evaluated afresh
    isolated = next(c for c in cluster.topologies[(NS, "shop")]["status"]["conditions"] if c["type"] == "Isolated")
    assert (isolated["status"], isolated["reason"]) == ("False", "OpenedByOthers")
    assert "TCP/22" in isolated["message"] and "ops.tier-everyone" in isolated["message"]
    ready_condition = ready(cluster)
    assert ready_condition["status"] == "True"  # Ready is about this topology's own policies


def test_dry_run_counts_the_connections_enforcing_would_deny(cluster: FakeCluster, reconciler: Reconciler) -> None:
    import dataclasses

    from apptopology.evaluator import ContainerPort, Namespace, Pod

    doc = topology()
    doc["spec"] = _dry(doc["spec"])
    cluster.add_topology(doc)
    pods = (
        Pod(NS, "web-1", {"app": "web"}, ip="10.0.0.1", ports=(ContainerPort("http", 443),)),
        Pod(NS, "api-1", {"app": "api"}, ip="10.0.0.2", ports=(ContainerPort("http", 8080),)),
    )
    view = dataclasses.replace(
        cluster.view(NS, "shop"), pods=pods, namespaces=(Namespace(NS, {"kubernetes.io/metadata.name": NS}),)
    )
    reconciler.reconcile(NS, "shop", view)
    dry = cluster.topologies[(NS, "shop")]["status"]["dryRun"]
    # Today (no policy) everything is open; enforced, web may reach api on 8080 only: both directions lose.
    assert dry["deniedConnections"]["count"] == 2
    assert any("prod/api-1 -> prod/web-1" in e for e in dry["deniedConnections"]["examples"])
    assert "2 connections between its running pods would be denied" in ready(cluster)["message"]


def test_guardrails_leave_out_what_they_forbid_and_say_so(cluster: FakeCluster, reconciler: Reconciler) -> None:
    from apptopology.api.guardrail import parse_guardrail

    cluster.add_topology(topology(NEXT_FLOWS))  # flows[3]: db -> 10.9.0.0/16 on 443
    reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    allowed = specs(cluster)
    assert any("10.9.0.0/16" in str(r) for r in allowed["shop.tier-db"].get("egress", []))
    rail = {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "TopologyGuardrail",
        "metadata": {"name": "no-backoffice"},
        "spec": {"namespaceSelector": {}, "forbiddenCIDRs": [{"cidr": "10.9.0.0/16", "direction": "Egress"}]},
    }
    reconciler.guardrails = (parse_guardrail(rail),)
    reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    assert not any("10.9.0.0/16" in str(r) for r in specs(cluster)["shop.tier-db"].get("egress", []))
    assert specs(cluster)["shop.tier-api"] == allowed["shop.tier-api"]  # the rest stays enforced
    cond = ready(cluster)
    assert (cond["status"], cond["reason"]) == ("False", "GuardrailViolation")
    assert "spec.flows[3]" in cond["message"] and "no-backoffice" in cond["message"]
    cluster.calls.clear()
    reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    assert cluster.calls == []  # in sync with the guarded rendering: no request
    # A guardrail that cannot be read: fail closed, nothing changes.
    reconciler.guardrails, reconciler.guardrail_errors = (), ("TopologyGuardrail broken: spec: invalid",)
    reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    assert not any("10.9.0.0/16" in str(r) for r in specs(cluster)["shop.tier-db"].get("egress", []))
    assert "cannot be read" in ready(cluster)["message"]


def test_isolated_is_not_evaluated_in_a_large_namespace_without_reading_it(
    cluster: FakeCluster, reconciler: Reconciler
) -> None:
    from apptopology.controller.reconciler import MAX_ISOLATION_POLICIES

    for i in range(MAX_ISOLATION_POLICIES + 1):
        cluster.policies[(NS, f"other-{i}")] = {"metadata": {"name": f"other-{i}", "namespace": NS}, "spec": {}}
    cluster.add_topology(topology())
    reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    isolated = next(c for c in cluster.topologies[(NS, "shop")]["status"]["conditions"] if c["type"] == "Isolated")
    assert (isolated["status"], isolated["reason"]) == ("Unknown", "NotEvaluated")
    assert ("list", "", False) not in cluster.calls  # the namespace was not read: the cache knew its size


def test_a_revision_renders_once_until_its_facts_guardrails_or_spec_change(
    cluster: FakeCluster, reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from apptopology.api.guardrail import parse_guardrail
    from apptopology.controller import reconciler as module

    renders = []
    real = module.desired_with_notes

    def counting(*args: Any, **kwargs: Any) -> Any:
        renders.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "desired_with_notes", counting)
    converged(cluster, reconciler)
    reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    renders.clear()
    for _ in range(3):  # resyncs, echoes: nothing changed
        reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    assert renders == [] and cluster.writes() == []
    reconciler.facts = dataclasses.replace(reconciler.facts)  # new facts (equal or not): rendered again
    reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    assert len(renders) == 1
    rail = {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "TopologyGuardrail",
        "metadata": {"name": "cap"},
        "spec": {"namespaceSelector": {"matchLabels": {"team": "a"}}, "maxTiers": 64},
    }
    reconciler.guardrails = (parse_guardrail(rail),)
    reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    assert len(renders) == 2
    reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    assert len(renders) == 2  # same guardrails, same namespace labels
    cluster.update_spec(NS, "shop", {**topology()["spec"], "flows": topology()["spec"]["flows"][:1]})
    reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    assert len(renders) >= 3 and cluster.writes() != []  # the new revision is rendered and written


GUARDED_FLOWS = [{"from": {"tier": "api"}, "to": {"tier": "web"}}]


def _guarded_change(cluster: FakeCluster, reconciler: Reconciler) -> dict[str, Any]:
    """Scope Tiers, then the api tier's selector changes: the transition needs a guard (see test_transition)."""
    cluster.add_topology(topology([{"from": {"tier": "web"}, "to": {"tier": "api"}}], defaultDeny={"scope": "Tiers"}))
    assert not reconciler.reconcile(NS, "shop").retry
    spec = topology(GUARDED_FLOWS, defaultDeny={"scope": "Tiers"})["spec"]
    spec["tiers"][1]["podSelector"] = {"matchLabels": {"app": "api2"}}
    return spec


def test_a_policy_at_a_guards_name_is_never_adopted_nor_blocks_the_change(
    cluster: FakeCluster, reconciler: Reconciler
) -> None:
    """Issue 17, finding 2: someone's policy at ``<topology>.guard-<hash>`` was merged into (our ownerReference
    added) and later deleted by the release phase, or stalled every change with a 409. The guard now goes to
    a name nobody holds; the foreign policy is never written."""
    from apptopology.planner.transition import guard_name

    spec = _guarded_change(cluster, reconciler)
    squatters = []
    for selector in ({"app": "api"}, {"app": "api2"}, {"app": "web"}, {"app": "db"}):
        name = guard_name("shop", json.dumps({"matchLabels": selector}, sort_keys=True, separators=(",", ":")))
        squatters.append(
            cluster.put_policy(
                {"metadata": {"name": name, "namespace": NS}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
            )
        )
    cluster.update_spec(NS, "shop", spec)
    cluster.calls.clear()
    outcome = reconciler.reconcile(NS, "shop", cluster.view(NS, "shop"))
    assert not outcome.retry and ready(cluster)["status"] == "True", ready(cluster)
    assert any(".guard-" in name for verb, name in cluster.writes() if verb == "apply")  # a guard was needed
    for squatter in squatters:
        name = squatter["metadata"]["name"]
        assert cluster.policies[(NS, name)] == squatter  # untouched
        assert all(n != name for _, n in cluster.writes()) and all(n != name for _, n in cluster.writes(True))
    assert not [
        n
        for n in cluster.names(NS)
        if ".guard-" in n and (NS, n) not in {(NS, s["metadata"]["name"]) for s in squatters}
    ]


def test_a_replica_that_lost_the_lease_abandons_its_plan_at_the_next_write(
    cluster: FakeCluster, reconciler: Reconciler
) -> None:
    """Issue 17, finding 4: after losing the lease a running reconcile kept writing. The API module raises
    Fenced instead of sending a write (tests/unit/test_kube_config.py); it ends the reconcile at once: no
    restore, no status, no event."""
    spec = _guarded_change(cluster, reconciler)
    before = specs(cluster)
    cluster.update_spec(NS, "shop", spec)
    leading = [True]
    sent: list[tuple[str, str]] = []

    def lose_lease_after_three(verb: str, name: str, dry_run: bool) -> ApiError | None:
        if verb in ("apply", "delete", "status", "event") and not dry_run:
            if not leading[0]:
                raise Fenced("not the leader")
            sent.append((verb, name))
            leading[0] = len(sent) < 3
        return None

    cluster.rules.append(lose_lease_after_three)
    cluster.calls.clear()
    outcome = reconciler.reconcile(NS, "shop")
    assert outcome.summary == "fenced" and not outcome.retry and outcome.requeue_after is None
    assert len(sent) == 3 and specs(cluster) != before  # stopped in the middle, and stayed there
    assert all(verb in ("apply", "delete") for verb, _ in sent)
    assert len([c for c in cluster.calls if not c[2] and c[0] in ("apply", "delete", "status", "event")]) == 4
    cluster.rules.remove(lose_lease_after_three)  # leading again: the next reconcile finishes from live state
    assert not reconciler.reconcile(NS, "shop").retry and ready(cluster)["status"] == "True"
    assert not [n for n in cluster.names(NS) if ".guard-" in n]
