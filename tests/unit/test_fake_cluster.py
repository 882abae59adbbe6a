"""The unit fake is never kinder than the real API server (issue 17).

An apply without a UID is, in the real client, a create: it fails on whatever holds the name, ours or not
(a server-side apply without a precondition would merge into someone else's object and adopt it). The fake
does the same, so a unit test cannot pass on a write the real server would refuse, and a squatter at a
transient guard name is neither adopted nor deleted (the planner chooses another name).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fake_cluster import FakeCluster

from apptopology.controller.reconciler import ApiError, Reconciler
from apptopology.planner.plan import desired_policies
from apptopology.planner.transition import guard_name

NS = "prod"
OWNER = {
    "apiVersion": "apptopology.io/v1alpha1",
    "kind": "AppTopology",
    "name": "shop",
    "uid": "u1",
    "controller": True,
}


def ours(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": NS, "labels": {"a": "1"}, "ownerReferences": [OWNER]},
        "spec": spec,
    }


def theirs(cluster: FakeCluster, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return cluster.put_policy({"metadata": {"name": name, "namespace": NS, "labels": {"team": "x"}}, "spec": spec})


@pytest.mark.parametrize("dry_run", [False, True])
def test_an_apply_without_a_uid_is_a_create_and_never_lands_on_what_holds_the_name(dry_run: bool) -> None:
    cluster = FakeCluster()
    squatter = theirs(cluster, "shop.guard-1", {"podSelector": {}, "policyTypes": ["Ingress"]})
    with pytest.raises(ApiError) as refused:
        cluster.apply_policy(ours("shop.guard-1", {"podSelector": {}, "policyTypes": ["Ingress"]}), None, dry_run)
    assert refused.value.status == 409
    assert cluster.policies[(NS, "shop.guard-1")] == squatter


def _shop(selector: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": "shop", "namespace": NS},
        "spec": {
            "defaultDeny": {"scope": "Tiers"},
            "tiers": [
                {"name": "web", "podSelector": {"matchLabels": {"app": "web"}}},
                {"name": "api", "podSelector": selector},
            ],
            "flows": [{"from": {"tier": "web"}, "to": {"tier": "api"}}],
        },
    }


def test_a_squatter_at_a_guard_name_is_neither_adopted_nor_deleted() -> None:
    """The api tier's selector changes in scope Tiers: the old selector's isolation is held by a guard. Someone
    else's rule-less policy already sits at that guard's name, with the same selector."""
    cluster = FakeCluster()
    reconciler = Reconciler(cluster, now=lambda: "2026-12-01T10:00:00Z", recheck_after=60)
    old_selector = {"matchLabels": {"app": "api"}}
    cluster.add_topology(_shop(old_selector))
    reconciler.reconcile(NS, "shop")
    body = cluster.topologies[(NS, "shop")]
    old = {p["metadata"]["name"]: p for p in desired_policies(body)}
    guard = guard_name(
        "shop", json.dumps(old["shop.tier-api"]["spec"]["podSelector"], sort_keys=True, separators=(",", ":"))
    )
    squatter = theirs(
        cluster, guard, {"podSelector": copy.deepcopy(old_selector), "policyTypes": ["Ingress", "Egress"]}
    )
    cluster.update_spec(NS, "shop", _shop({"matchLabels": {"app": "api2"}})["spec"])
    reconciler.reconcile(NS, "shop")
    assert ("apply", guard) not in cluster.writes(), "the operator wrote to someone else's object"
    assert cluster.policies.get((NS, guard), {}).get("metadata", {}).get("uid") == squatter["metadata"]["uid"]
