"""The operator's cache: bodies, names and owned digests stay consistent through puts, moves and drops."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from apptopology.controller.cache import Cache, Expectations
from apptopology.planner.compare import managed_digest


def policy(name: str, owner: str | None, ns: str = "prod", spec: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": f"uid-{name}"}
    if owner:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apptopology.io/v1alpha1",
                "kind": "AppTopology",
                "name": "shop",
                "uid": owner,
                "controller": True,
            }
        ]
    return {"metadata": meta, "spec": spec or {"podSelector": {}}}


def topology(uid: str = "t-1") -> dict[str, Any]:
    return {
        "metadata": {
            "name": "shop",
            "namespace": "prod",
            "uid": uid,
            "managedFields": [{"big": "x"}],
            "labels": {"a": "b"},
        },
        "spec": {"tiers": []},
    }


def test_owned_names_and_digests_follow_every_event() -> None:
    cache = Cache()
    cache.put_topology(topology())
    ours = policy("shop.tier-a", "t-1")
    cache.put_policy(ours)
    cache.put_policy(policy("other", None))
    view = cache.view(("prod", "shop"))
    assert set(view.owned) == {"shop.tier-a"} and view.owned["shop.tier-a"].digest == managed_digest(ours)
    assert view.names == {"shop.tier-a", "other"}
    assert "managedFields" not in view.body["metadata"] and "labels" not in view.body["metadata"]  # type: ignore[index]
    # The policy loses its owner reference (someone edited it): no longer ours, still a name.
    cache.put_policy(policy("shop.tier-a", None))
    view = cache.view(("prod", "shop"))
    assert view.owned == {} and "shop.tier-a" in view.names
    cache.drop_policy(policy("shop.tier-a", None))
    cache.drop_policy(policy("never-seen", None))  # unknown: nothing happens
    assert cache.view(("prod", "shop")).names == {"other"}
    assert cache.policy_count() == 1


def test_views_are_snapshots() -> None:
    cache = Cache()
    cache.put_topology(topology())
    cache.put_policy(policy("shop.tier-a", "t-1"))
    view = cache.view(("prod", "shop"))
    cache.put_policy(policy("shop.tier-b", "t-1"))
    assert set(view.owned) == {"shop.tier-a"}
    cache.drop_topology(topology())
    assert cache.view(("prod", "shop")).body is None


def test_bodies_are_kept_packed_and_read_as_fresh_copies() -> None:
    cache = Cache()
    body = topology()
    body["status"] = {"conditions": [{"type": "Ready", "status": "True"}], "policies": ["shop.tier-a"]}
    cache.put_topology(body)
    first, second = cache.view(("prod", "shop")).body, cache.view(("prod", "shop")).body
    assert first == second == {**body, "metadata": {"name": "shop", "namespace": "prod", "uid": "t-1"}}
    assert first is not second  # a reconcile on another thread owns what it read
    first["spec"]["tiers"].append("changed")
    assert cache.view(("prod", "shop")).body == second
    assert len(cache.topologies) == 1 and ("prod", "shop") in cache.topologies
    assert cache.topologies.generation(("prod", "shop")) is None  # this body has none
    cache.put_topology({**body, "metadata": {**body["metadata"], "generation": 3}})
    assert cache.topologies.generation(("prod", "shop")) == 3
    cache.drop_topology(body)
    assert cache.topologies.generation(("prod", "shop")) is None


def test_which_topologies_need_cluster_facts_follows_their_edits() -> None:
    cache = Cache()
    plain, discovering = topology("t-1"), topology("t-2")
    discovering["metadata"]["name"] = "dns"
    discovering["spec"] = {"tiers": [], "dns": {"discover": True}}
    cache.put_topology(plain)
    cache.put_topology(discovering)
    assert cache.topologies.needing_facts == {("prod", "dns")}
    discovering["spec"] = {"tiers": []}
    cache.put_topology(discovering)  # edited: no longer
    assert cache.topologies.needing_facts == set()
    discovering["spec"] = {"tiers": [], "flows": [{"from": {"tier": "a"}, "to": {"kubeAPI": True}}]}
    cache.put_topology(discovering)
    assert cache.topologies.needing_facts == {("prod", "dns")}
    cache.drop_topology(discovering)
    assert cache.topologies.needing_facts == set()


def test_a_view_counts_the_other_topologies_of_its_namespace() -> None:
    cache = Cache()
    cache.put_topology(topology("t-1"))
    assert cache.view(("prod", "shop")).neighbours == 0
    other = topology("t-2")
    other["metadata"]["name"] = "billing"
    cache.put_topology(other)
    assert cache.view(("prod", "shop")).neighbours == 1
    cache.drop_topology(other)
    assert cache.view(("prod", "shop")).neighbours == 0


@given(st.lists(st.tuples(st.booleans(), st.sampled_from("abc"), st.integers(0, 4)), max_size=30))
def test_the_wanted_policies_count_follows_sets_and_forgets(ops: list[tuple[bool, str, int]]) -> None:
    expect, model = Expectations(), dict[tuple[str, str], int]()
    for is_set, name, n in ops:
        key = ("prod", name)
        if is_set:
            digests = {f"{name}.p{i}": b"d" for i in range(n)}
            expect.set(key, digests)
            model[key] = n
        else:
            expect.forget(key)
            model.pop(key, None)
        assert expect.wanted_policies() == sum(model.values())


def test_a_view_counts_the_events_of_policies_it_does_not_own() -> None:
    cache = Cache()
    cache.put_policy(policy("before", None))  # before any topology: nothing to count
    cache.put_topology(topology("t-1"))
    start = cache.view(("prod", "shop")).foreign_changes
    cache.put_policy(policy("shop.tier-a", "t-1"))  # its own write: not foreign
    cache.drop_policy(policy("shop.tier-a", "t-1"))
    assert cache.view(("prod", "shop")).foreign_changes == start
    cache.put_policy(policy("allow-all", None))  # a tenant's policy, then an edit and its deletion
    cache.put_policy(policy("allow-all", None, spec={"podSelector": {}, "ingress": [{}]}))
    cache.drop_policy(policy("allow-all", None))
    cache.put_policy(policy("billing.tier-a", "t-2"))  # another topology's
    assert cache.view(("prod", "shop")).foreign_changes == start + 4
    cache.put_policy(policy("elsewhere", None, ns="other"))
    assert cache.view(("prod", "shop")).foreign_changes == start + 4
    assert cache.policy_count("prod") == 2 and cache.policy_count() == 3
