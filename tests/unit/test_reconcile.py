"""The reconcile planner: what gets applied, deleted, left alone, and when status is written."""

from __future__ import annotations

import copy
from typing import Any

from apptopology.plan import (
    REASON_CONFLICT,
    REASON_INVALID,
    REASON_RECONCILED,
    Owner,
    desired_policies,
    desired_status,
    plan,
    status_changed,
)

UID = "1111-2222"
NOW = "2026-11-26T10:00:00Z"
LATER = "2026-11-26T11:00:00Z"


def cr(
    flows: list[dict[str, Any]] | None = None, generation: int = 1, status: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {
            "name": "shop",
            "namespace": "prod",
            "uid": UID,
            "generation": generation,
            "labels": {"app.kubernetes.io/instance": "argo-app"},
        },
        "spec": {
            "tiers": [
                {"name": "web", "podSelector": {"matchLabels": {"app": "web"}}},
                {"name": "api", "podSelector": {"matchLabels": {"app": "api"}}},
            ],
            "flows": flows
            if flows is not None
            else [{"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": [{"port": 80}]}],
        },
    }
    if status is not None:
        body["status"] = status
    return body


def as_live(policy: dict[str, Any], uid: str = "np-uid") -> dict[str, Any]:
    """What the API server returns: server fields added, protocol defaulted, empty selectors kept."""
    live = copy.deepcopy(policy)
    live["metadata"].update({"uid": uid, "resourceVersion": "42", "generation": 1, "managedFields": []})
    live["metadata"]["labels"]["extra"] = "added-by-someone"
    return live


def in_sync_live(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [as_live(p, f"uid-{i}") for i, p in enumerate(desired_policies(body))]


def test_everything_created_on_empty_namespace() -> None:
    body = cr()
    result = plan(body, [])
    assert [a.name for a in result.applies] == ["shop-default-deny", "shop-allow-dns", "shop-tier-web", "shop-tier-api"]
    assert all(a.existing_uid is None for a in result.applies)
    assert result.deletes == [] and result.conflicts == []
    for action in result.applies:
        meta = action.body["metadata"]
        assert meta["ownerReferences"] == [Owner.from_body(body).reference()]
        assert meta["ownerReferences"][0]["controller"] is True
        # Never the CR's own labels (Argo CD's tracking label would make Argo prune our policies).
        assert "app.kubernetes.io/instance" not in meta["labels"]


def test_in_sync_means_zero_writes() -> None:
    body = cr()
    result = plan(body, in_sync_live(body))
    assert result.writes == 0 and result.conflicts == []


def test_zero_writes_when_status_is_current() -> None:
    body = cr()
    live = in_sync_live(body)
    status = desired_status(body, plan(body, live), NOW)
    body["status"] = status
    again = desired_status(body, plan(body, live), LATER)
    assert not status_changed(body["status"], again)
    assert again["conditions"][0]["lastTransitionTime"] == NOW


def test_drifted_spec_is_reapplied_with_uid_precondition() -> None:
    body = cr()
    live = in_sync_live(body)
    live[3]["spec"]["ingress"][0]["ports"][0]["port"] = 81
    result = plan(body, live)
    assert [(a.name, a.existing_uid) for a in result.applies] == [("shop-tier-api", "uid-3")]


def test_drifted_labels_or_owner_reference_are_reapplied() -> None:
    body = cr()
    live = in_sync_live(body)
    del live[0]["metadata"]["labels"]["apptopology.io/topology"]
    live[1]["metadata"]["annotations"]["apptopology.io/description"] = "edited"
    live[2]["metadata"]["ownerReferences"][0]["name"] = "renamed"
    assert sorted(a.name for a in plan(body, live).applies) == ["shop-allow-dns", "shop-default-deny", "shop-tier-web"]


def test_rules_added_by_someone_else_are_taken_back() -> None:
    """An allow-all rule added to a policy that has no rules in that direction must not survive."""
    body = cr()
    live = in_sync_live(body)
    deny = live[0]
    assert deny["metadata"]["name"] == "shop-default-deny"
    deny["spec"]["ingress"] = [{}]
    result = plan(body, live)
    assert [a.name for a in result.applies] == ["shop-default-deny"]
    # The apply owns the empty lists, so server-side apply removes the foreign rules.
    assert result.applies[0].body["spec"]["ingress"] == [] and result.applies[0].body["spec"]["egress"] == []


def test_deleted_policy_is_recreated() -> None:
    body = cr()
    live = in_sync_live(body)[:-1]
    assert [a.name for a in plan(body, live).applies] == ["shop-tier-api"]


def test_stale_owned_policy_is_deleted_foreign_left_alone() -> None:
    body = cr()
    live = in_sync_live(body)
    stale = copy.deepcopy(live[2])
    stale["metadata"].update(name="shop-tier-old", uid="old-uid")
    foreign = {
        "metadata": {"name": "someone-elses", "uid": "f", "labels": {"apptopology.io/topology": "shop"}},
        "spec": {},
    }
    other_owner = copy.deepcopy(live[2])
    other_owner["metadata"].update(name="other-tier-x", uid="o")
    other_owner["metadata"]["ownerReferences"][0]["uid"] = "another-topology"
    result = plan(body, [*live, stale, foreign, other_owner])
    assert [(d.name, d.uid) for d in result.deletes] == [("shop-tier-old", "old-uid")]
    assert result.applies == []


def test_name_conflict_with_foreign_policy() -> None:
    body = cr()
    live = in_sync_live(body)
    foreign = {"metadata": {"name": "shop-tier-web", "uid": "foreign"}, "spec": {"podSelector": {}}}
    live = [p for p in live if p["metadata"]["name"] != "shop-tier-web"] + [foreign]
    result = plan(body, live)
    assert result.conflicts == ["shop-tier-web"]
    assert all(a.name != "shop-tier-web" for a in result.applies)
    assert all(d.name != "shop-tier-web" for d in result.deletes)
    status = desired_status(body, result, NOW)
    ready = status["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", REASON_CONFLICT)
    assert "shop-tier-web" in ready["message"]
    assert "shop-tier-web" not in status["policies"] and status["conflicts"] == ["shop-tier-web"]


def test_removing_a_flow_and_a_tier() -> None:
    body = cr()
    live = in_sync_live(body)
    body["spec"]["tiers"] = body["spec"]["tiers"][:1]
    body["spec"]["flows"] = []
    body["metadata"]["generation"] = 2
    result = plan(body, live)
    assert sorted(d.name for d in result.deletes) == ["shop-tier-api", "shop-tier-web"]
    assert result.applies == []
    assert desired_status(body, result, NOW)["observedGeneration"] == 2


def test_invalid_spec_fails_closed() -> None:
    body = cr()
    live = in_sync_live(body)
    previous = desired_status(body, plan(body, live), NOW)
    body["status"] = previous
    body["spec"]["flows"] = [{"from": {"tier": "web"}, "to": {"tier": "databse"}}]
    body["metadata"]["generation"] = 2
    result = plan(body, live)
    assert result.writes == 0 and result.applies == [] and result.deletes == []
    assert result.invalid is not None and 'spec.flows[0].to.tier: unknown tier "databse"' in result.invalid
    status = desired_status(body, result, LATER)
    ready = status["conditions"][0]
    assert (ready["status"], ready["reason"], ready["lastTransitionTime"]) == ("False", REASON_INVALID, LATER)
    assert status["policies"] == previous["policies"]
    assert status["observedGeneration"] == 2
    body["status"] = status
    # The status write triggers another event: nothing more to write, no retry loop.
    assert not status_changed(body["status"], desired_status(body, plan(body, live), "2030-01-01T00:00:00Z"))


def test_ready_status() -> None:
    body = cr(generation=3)
    status = desired_status(body, plan(body, []), NOW)
    assert status["observedGeneration"] == 3
    assert status["policies"] == ["shop-default-deny", "shop-allow-dns", "shop-tier-web", "shop-tier-api"]
    assert status["policyCount"] == 4 and status["tierCount"] == 2
    ready = status["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", REASON_RECONCILED)
    assert ready["lastTransitionTime"] == NOW


def test_transition_time_moves_only_on_status_change() -> None:
    body = cr()
    body["status"] = desired_status(body, plan(body, []), NOW)
    body["metadata"]["generation"] = 2
    later = desired_status(body, plan(body, []), LATER)
    assert later["conditions"][0]["lastTransitionTime"] == NOW
    assert status_changed(body["status"], later)  # observedGeneration moved
