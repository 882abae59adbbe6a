"""The reconcile planner: what is ours, what gets written (all or nothing), in which order."""

from __future__ import annotations

import copy
from typing import Any

from apptopology.planner.compare import stored_spec
from apptopology.planner.plan import Owner, candidate_owners, desired_policies, owned_by, plan, restore
from apptopology.planner.transition import Phase

UID = "1111-2222"


def cr(flows: list[dict[str, Any]] | None = None, generation: int = 1, **spec: Any) -> dict[str, Any]:
    return {
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
            **spec,
        },
    }


def as_live(policy: dict[str, Any], uid: str) -> dict[str, Any]:
    """What the API server returns: stored form, server fields, a label someone else added."""
    live = copy.deepcopy(policy)
    live["spec"] = stored_spec(live["spec"])
    live["metadata"].update({"uid": uid, "resourceVersion": "42", "generation": 1, "managedFields": []})
    live["metadata"]["labels"]["extra"] = "added-by-someone"
    return live


def in_sync_live(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [as_live(p, f"uid-{i}") for i, p in enumerate(desired_policies(body))]


def names(writes: Any) -> list[str]:
    return [w.name for w in writes]


def test_everything_created_on_empty_namespace_default_deny_first() -> None:
    body = cr()
    result = plan(body, [])
    assert names(result.writes) == ["shop.default-deny", "shop.allow-dns", "shop.tier-api", "shop.tier-web"]
    assert all(w.final and not w.is_delete for w in result.writes)
    for write in result.writes:
        assert write.body is not None
        meta = write.body["metadata"]
        assert meta["ownerReferences"] == [Owner.from_body(body).reference()]
        # Never the CR's own labels (Argo CD's tracking label would make Argo prune our policies).
        assert "app.kubernetes.io/instance" not in meta["labels"]


def test_in_sync_means_zero_writes() -> None:
    body = cr()
    result = plan(body, in_sync_live(body))
    assert result.writes == [] and result.conflicts == [] and result.invalid is None
    assert sorted(result.desired_names) == list(result.owned)


def test_drifted_spec_is_rewritten() -> None:
    body = cr()
    live = in_sync_live(body)
    live[3]["spec"]["ingress"][0]["from"][0]["namespaceSelector"] = {}  # widening: any namespace
    result = plan(body, live)
    assert [(w.name, w.final) for w in result.writes] == [("shop.tier-api", True)]


def test_drifted_labels_or_owner_reference_are_rewritten() -> None:
    body = cr()
    live = in_sync_live(body)
    del live[0]["metadata"]["labels"]["apptopology.io/topology"]
    live[1]["metadata"]["annotations"]["apptopology.io/description"] = "edited"
    live[2]["metadata"]["ownerReferences"].append({"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "y"})
    result = plan(body, live)
    assert sorted(names(result.writes)) == ["shop.allow-dns", "shop.default-deny"]


def test_rules_added_by_someone_else_are_taken_back() -> None:
    """An allow-all rule added to a policy that has no rules in that direction must not survive."""
    body = cr()
    live = in_sync_live(body)
    deny = live[0]
    assert deny["metadata"]["name"] == "shop.default-deny"
    deny["spec"]["ingress"] = [{}]
    result = plan(body, live)
    assert names(result.writes) == ["shop.default-deny"]
    # The apply owns the empty lists, so server-side apply removes the foreign rules.
    spec = result.writes[0].body["spec"]  # type: ignore[index]
    assert spec["ingress"] == [] and spec["egress"] == []


def test_deleted_policy_is_recreated() -> None:
    body = cr()
    live = in_sync_live(body)[:-1]
    assert names(plan(body, live).writes) == ["shop.tier-api"]


def test_ownership_is_the_controller_reference_only() -> None:
    body = cr()
    live = in_sync_live(body)
    stale = copy.deepcopy(live[2])
    stale["metadata"].update(name="shop.tier-old", uid="old-uid")
    # Our labels, but no reference: someone else's, never touched.
    lookalike = copy.deepcopy(live[2])
    lookalike["metadata"].update(name="shop.tier-lookalike", uid="f")
    del lookalike["metadata"]["ownerReferences"]
    # A reference to us that is not the controller: not ours either.
    not_controller = copy.deepcopy(live[2])
    not_controller["metadata"].update(name="shop.tier-shared", uid="s")
    not_controller["metadata"]["ownerReferences"][0]["controller"] = False
    other_owner = copy.deepcopy(live[2])
    other_owner["metadata"].update(name="other.tier-x", uid="o")
    other_owner["metadata"]["ownerReferences"][0]["uid"] = "another-topology"
    result = plan(body, [*live, stale, lookalike, not_controller, other_owner])
    assert [(w.name, w.is_delete) for w in result.writes] == [("shop.tier-old", True)]
    assert not owned_by(lookalike, UID) and not owned_by(not_controller, UID) and owned_by(stale, UID)
    # Candidates for event routing: by reference or label; the plan decides.
    assert candidate_owners(lookalike) == {"shop"}
    assert candidate_owners(other_owner) == {"other", "shop"}  # name prefix; reference and label say shop
    assert candidate_owners({"metadata": {"name": "plain-policy"}}) == set()


def test_name_conflict_writes_nothing_at_all() -> None:
    """All or nothing: a revision missing one of its policies could leave a namespace more open."""
    body = cr()
    live = in_sync_live(body)
    body["spec"]["flows"].append({"from": {"tier": "api"}, "to": {"tier": "web"}, "ports": [{"port": 9}]})
    foreign = {"metadata": {"name": "shop.tier-web", "uid": "foreign"}, "spec": {"podSelector": {}}}
    live = [p for p in live if p["metadata"]["name"] != "shop.tier-web"] + [foreign]
    result = plan(body, live)
    assert result.conflicts == ["shop.tier-web"]
    assert result.writes == []


def test_removing_a_flow_and_a_tier() -> None:
    body = cr()
    live = in_sync_live(body)
    body["spec"]["tiers"] = body["spec"]["tiers"][:1]
    body["spec"]["flows"] = []
    result = plan(body, live)
    assert sorted((w.name, w.is_delete) for w in result.writes) == [("shop.tier-api", True), ("shop.tier-web", True)]
    assert result.counts() == (0, 2)


def test_invalid_spec_fails_closed() -> None:
    body = cr()
    live = in_sync_live(body)
    body["spec"]["flows"] = [{"from": {"tier": "web"}, "to": {"tier": "databse"}}]
    result = plan(body, live)
    assert result.writes == [] and result.invalid is not None
    assert 'spec.flows[0].to.tier: unknown tier "databse"' in result.invalid
    assert sorted(result.owned) == sorted(p["metadata"]["name"] for p in live)


def test_old_names_are_migrated_new_ones_first() -> None:
    """Policies of the old `N-default-deny` / `N-tier-T` scheme, owned by UID, are replaced."""
    body = cr()
    old = in_sync_live(body)
    for policy in old:
        policy["metadata"]["name"] = policy["metadata"]["name"].replace("shop.", "shop-", 1)
    result = plan(body, old)
    creates = [w.name for w in result.writes if not w.is_delete]
    deletes = [w.name for w in result.writes if w.is_delete]
    assert creates == ["shop.default-deny", "shop.allow-dns", "shop.tier-api", "shop.tier-web"]
    assert sorted(deletes) == sorted(p["metadata"]["name"] for p in old)
    assert [w.is_delete for w in result.writes] == [False] * 4 + [True] * 4
    assert all(w.phase is Phase.RELEASE for w in result.writes if w.is_delete)


def test_restore_puts_back_what_was_read() -> None:
    body = cr()
    before = {p["metadata"]["name"]: p for p in in_sync_live(body)}
    # A failed attempt left: one policy deleted, one narrowed, one extra created.
    now = [copy.deepcopy(p) for n, p in before.items() if n != "shop.tier-web"]
    now[0]["spec"]["ingress"] = [{"from": [{"podSelector": {}}]}]
    extra = copy.deepcopy(now[1])
    extra["metadata"].update(name="shop.tier-new", uid="n")
    back = restore(body, before, [*now, extra])
    result = {w.name: w for w in back.writes}
    assert result["shop.tier-new"].is_delete
    assert result["shop.tier-web"].body is not None
    assert stored_spec(result["shop.tier-web"].body["spec"]) == before["shop.tier-web"]["spec"]
    assert stored_spec(result["shop.default-deny"].body["spec"]) == before["shop.default-deny"]["spec"]  # type: ignore[index]
    # Metadata restored too: our labels, our description, our reference; nothing of anyone else's.
    meta = result["shop.tier-web"].body["metadata"]
    assert "extra" not in meta["labels"] and meta["ownerReferences"] == [Owner.from_body(body).reference()]
    # Once restored, a restore plan is empty.
    again = restore(body, before, list(before.values()))
    assert again.writes == []


def test_guards_avoid_the_names_of_other_objects() -> None:
    """A policy someone else put at a guard's name is neither written nor deleted: plan() passes the names
    of everything that is not ours to the transition, and restore() does the same."""
    old = cr(defaultDeny={"scope": "Tiers"})
    new = copy.deepcopy(old)
    new["spec"]["tiers"][1]["podSelector"] = {"matchLabels": {"app": "api2"}}
    new["spec"]["flows"] = [{"from": {"tier": "api"}, "to": {"tier": "web"}}]
    live = in_sync_live(old)
    usual = {w.name for w in plan(new, live).writes if ".guard-" in w.name}
    assert usual
    name = sorted(usual)[0]
    squatter = {"metadata": {"name": name, "namespace": "prod", "uid": "theirs"}, "spec": {"podSelector": {}}}
    for result in (plan(new, [*live, squatter]), plan(new, live, other_names=[name])):
        assert not result.conflicts
        assert name not in {w.name for w in result.writes}
        assert {w.name for w in result.writes if ".guard-" in w.name}
    back = restore(new, {p["metadata"]["name"]: p for p in in_sync_live(new)}, [*live, squatter])
    assert name not in {w.name for w in back.writes}
    assert {w.name for w in back.writes if ".guard-" in w.name}
