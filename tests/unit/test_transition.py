"""The write order between two revisions never opens more than either (checked with the evaluator).

The planner's own check is syntactic; these tests judge its sequences semantically, with the independent
evaluator, on inventories synthesized from both revisions (and from foreign policies in the namespace):
every intermediate state allows a subset of the old revision, up to some point, and a subset of the new
one from there on. A naive order fails the same judge, so the test can fail.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apptopology.analysis.intent import synthesize
from apptopology.analysis.subject import merge_inventories
from apptopology.api.validation import InvalidTopology
from apptopology.evaluator import Evaluator, Inventory, PortSet
from apptopology.planner.compare import stored_spec
from apptopology.planner.transition import Move, Phase, check, states, transition
from apptopology.render.renderer import render
from apptopology.render.validation import parse_topology
from strategies import topologies

NS = "home"
Connectivity = dict[tuple[Any, Any], PortSet]


def specs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: stored_spec(p["spec"]) for p in render(parse_topology(doc))}


def doc(name: str = "t", **spec: Any) -> dict[str, Any]:
    spec.setdefault(
        "tiers",
        [
            {"name": "web", "podSelector": {"matchLabels": {"app": "web"}}},
            {"name": "api", "podSelector": {"matchLabels": {"app": "api"}}},
            {"name": "db", "podSelector": {"matchLabels": {"app": "db"}}},
        ],
    )
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


def connectivity(policies: Mapping[str, dict[str, Any]], inventory: Inventory) -> Connectivity:
    objects = [{"metadata": {"name": n, "namespace": NS}, "spec": s} for n, s in policies.items()]
    evaluator = Evaluator(objects, inventory)
    return {(a, b): evaluator.allowed(a, b) for a in inventory.endpoints for b in inventory.endpoints if a != b}


def subset(small: Connectivity, big: Connectivity) -> bool:
    return all(ports.difference(big[key]).is_empty for key, ports in small.items())


def safe(
    old: dict[str, dict[str, Any]],
    new: dict[str, dict[str, Any]],
    moves: Sequence[Move],
    inventory: Inventory,
    foreign: Mapping[str, dict[str, Any]] | None = None,
) -> bool:
    """The semantic judge: within old up to a split, within new from there on, ending exactly at new."""
    foreign = dict(foreign or {})
    seq = states(old, moves)
    if seq[-1] != new:
        return False
    before = connectivity({**foreign, **old}, inventory)
    after = connectivity({**foreign, **new}, inventory)
    conn = [connectivity({**foreign, **s}, inventory) for s in seq]
    in_old = [subset(c, before) for c in conn]
    in_new = [subset(c, after) for c in conn]
    return any(all(in_old[: k + 1]) and all(in_new[k:]) for k in range(len(seq)))


def inventory_of(*docs: dict[str, Any]) -> Inventory:
    return merge_inventories([synthesize(parse_topology(copy.deepcopy(d))) for d in docs])


# The attack from the issue: old ingress to db from anywhere stays while the new egress of api opens. ---

OLD = doc(
    flows=[
        {"from": {"anywhere": True}, "to": {"tier": "db"}, "ports": [{"port": 5432}]},
        {"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": [{"port": 8080}]},
    ]
)
NEW = doc(
    flows=[
        {"from": {"tier": "api"}, "to": {"ipBlock": {"cidr": "0.0.0.0/0"}}, "ports": [{"port": 5432}]},
        {"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": [{"port": 8080}]},
    ]
)


def naive(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]], order: list[str]) -> list[Move]:
    """Apply every new policy in ``order``, then delete the stale ones: the write path before this module."""
    moves = [Move(n, new[n], Phase.GRANT, True) for n in order if n in new and old.get(n) != new[n]]
    return moves + [Move(n, None, Phase.RELEASE, True) for n in old if n not in new]


def test_the_naive_order_opens_traffic_neither_revision_allows() -> None:
    """api reaches db on 5432 for a moment: the new api egress plus the old db ingress. The judge sees it."""
    old, new = specs(OLD), specs(NEW)
    inventory = inventory_of(OLD, NEW)
    bad = naive(old, new, ["t.tier-api", "t.tier-db", "t.tier-web", "t.default-deny", "t.allow-dns"])
    assert not safe(old, new, bad, inventory)
    assert not check(old, new, bad)  # the planner's own check rejects it too


def test_the_planned_order_never_does() -> None:
    old, new = specs(OLD), specs(NEW)
    moves = transition(old, new, guard_base="t")
    assert check(old, new, moves)
    assert safe(old, new, moves, inventory_of(OLD, NEW))
    # db's ingress is revoked before api's egress is granted.
    order = [(m.name, m.phase) for m in moves]
    assert order.index(("t.tier-db", Phase.REVOKE)) < order.index(("t.tier-api", Phase.GRANT))


# Write counts of the common changes --------------------------------------------------------------------


def test_creation_under_a_namespace_default_deny_writes_each_policy_once() -> None:
    new = specs(doc(flows=[{"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": [{"port": 80}]}]))
    moves = transition({}, new, guard_base="t")
    assert sorted(m.name for m in moves) == sorted(new)
    assert moves[0].name == "t.default-deny"  # isolation before any allow rule
    assert all(m.final for m in moves)


def test_creation_in_scope_tiers_isolates_every_tier_first() -> None:
    d = doc(defaultDeny={"scope": "Tiers"}, flows=[{"from": {"tier": "web"}, "to": {"tier": "api"}}])
    new = specs(d)
    moves = transition({}, new, guard_base="t")
    isolate = [m for m in moves if m.phase is Phase.ISOLATE]
    assert sorted(m.name for m in isolate) == sorted(new)
    assert all(not (m.spec or {}).get("ingress") and not (m.spec or {}).get("egress") for m in isolate)
    assert safe({}, new, moves, inventory_of(d))
    assert len(moves) == 2 * len(new)


def test_drift_repair_is_one_write() -> None:
    new = specs(OLD)
    drifted = copy.deepcopy(new)
    drifted["t.tier-api"]["ingress"][0]["from"][0]["namespaceSelector"] = {}
    moves = transition(drifted, new, guard_base="t")
    assert [(m.name, m.final) for m in moves] == [("t.tier-api", True)]


def test_adding_a_flow_writes_the_two_tiers_once() -> None:
    old = specs(OLD)
    more = copy.deepcopy(OLD)
    more["spec"]["flows"].append({"from": {"tier": "api"}, "to": {"tier": "db"}, "ports": [{"port": 6379}]})
    moves = transition(old, specs(more), guard_base="t")
    assert sorted(m.name for m in moves) == ["t.tier-api", "t.tier-db"]


def test_removing_a_flow_only_narrows() -> None:
    fewer = copy.deepcopy(OLD)
    fewer["spec"]["flows"] = fewer["spec"]["flows"][1:]
    moves = transition(specs(OLD), specs(fewer), guard_base="t")
    assert [(m.name, m.spec) for m in moves] == [("t.tier-db", None)]  # db has no rules left


def test_rename_of_every_policy_creates_then_deletes_with_no_gap() -> None:
    """The old naming scheme's policies are replaced: new ones first, old ones deleted last."""
    new = specs(OLD)
    old = {n.replace("t.", "t-", 1): s for n, s in new.items()}
    moves = transition(old, new, guard_base="t")
    assert [m.spec is None for m in moves] == [False] * len(new) + [True] * len(old)
    assert safe(old, new, moves, inventory_of(OLD))


def test_no_change_no_moves() -> None:
    assert transition(specs(OLD), specs(OLD)) == []


def test_metadata_only_rewrite_is_one_write() -> None:
    moves = transition(specs(OLD), specs(OLD), rewrite=["t.tier-web"])
    assert [(m.name, m.final) for m in moves] == [("t.tier-web", True)]


def test_selector_change_in_scope_tiers_uses_a_guard() -> None:
    """The api tier's selector changes and its policy's isolation moves with it: a guard holds the old one."""
    old_doc = doc(defaultDeny={"scope": "Tiers"}, flows=[{"from": {"tier": "web"}, "to": {"tier": "api"}}])
    new_doc = copy.deepcopy(old_doc)
    new_doc["spec"]["tiers"][1]["podSelector"] = {"matchLabels": {"app": "api2"}}
    new_doc["spec"]["flows"] = [{"from": {"tier": "api"}, "to": {"tier": "web"}}]
    old, new = specs(old_doc), specs(new_doc)
    moves = transition(old, new, guard_base="t")
    assert check(old, new, moves)
    assert safe(old, new, moves, inventory_of(old_doc, new_doc))
    guards = {m.name for m in moves if ".guard-" in m.name}
    assert guards, [(m.name, m.phase) for m in moves]
    for guard in guards:
        mine = [m for m in moves if m.name == guard]
        assert mine[0].phase is Phase.ISOLATE and mine[0].spec is not None and not mine[0].final
        assert mine[-1].phase is Phase.RELEASE and mine[-1].spec is None


# Random pairs of revisions, with foreign policies of another topology in the namespace ----------------


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topologies(), topologies(), st.one_of(st.none(), topologies()))
def test_random_changes_never_open_more_than_either_revision(
    a: dict[str, Any], b: dict[str, Any], other: dict[str, Any] | None
) -> None:
    try:
        old, new = specs(a), specs(b)
        foreign_doc = copy.deepcopy(other) if other is not None else None
        if foreign_doc is not None:
            foreign_doc["metadata"]["name"] = "other"
        foreign = specs(foreign_doc) if foreign_doc is not None else {}
    except InvalidTopology:
        return
    moves = transition(old, new, guard_base="t")
    assert check(old, new, moves)
    docs = [a, b] + ([foreign_doc] if foreign_doc is not None else [])
    assert safe(old, new, moves, inventory_of(*docs), foreign)
    # Every final object is written exactly once, and only final objects are dry-run.
    finals = [m.name for m in moves if m.final]
    assert len(finals) == len(set(finals))
    changed = {n for n in set(old) | set(new) if old.get(n) != new.get(n)}
    assert set(finals) == changed


def test_a_guard_never_takes_a_name_another_object_holds() -> None:
    """Anyone may create a NetworkPolicy at a guard's usual name: the guard goes to the next free name, the
    sequence is as safe, and the same names taken give the same sequence (a replan reuses its guards)."""
    old_doc = doc(defaultDeny={"scope": "Tiers"}, flows=[{"from": {"tier": "web"}, "to": {"tier": "api"}}])
    new_doc = copy.deepcopy(old_doc)
    new_doc["spec"]["tiers"][1]["podSelector"] = {"matchLabels": {"app": "api2"}}
    new_doc["spec"]["flows"] = [{"from": {"tier": "api"}, "to": {"tier": "web"}}]
    old, new = specs(old_doc), specs(new_doc)
    usual = {m.name for m in transition(old, new, guard_base="t") if ".guard-" in m.name}
    squatted = sorted(usual)[0]
    taken = {squatted, f"{squatted}-2"}
    moves = transition(old, new, guard_base="t", taken=taken)
    assert moves == transition(old, new, guard_base="t", taken=taken)
    written = {m.name for m in moves}
    assert not written & taken
    assert f"{squatted}-3" in written
    assert check(old, new, moves)
    assert safe(old, new, moves, inventory_of(old_doc, new_doc))
