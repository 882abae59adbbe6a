"""The planner's fast paths give the answers of their definitions, and its work is bounded by a count.

The planner keeps indexes instead of rescanning (coverage by an index of peers and port ranges, a state
tracked one policy at a time, a linear check). Each is compared here with the plain definition it
replaces, on random policies built from small pools so that equal, covering and disjoint peers and
ports all occur: any difference would let the planner's check accept a state it should refuse.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apptopology.planner import transition as planner
from apptopology.planner.compare import stored_spec
from apptopology.planner.transition import (
    EVERYTHING,
    Move,
    _Facts,
    _Index,
    _peer_covers,
    _port_covers,
    _Tracker,
    atoms,
    check,
    planned,
    states,
    transition,
    within,
)
from apptopology.render.renderer import render
from apptopology.render.validation import parse_topology

SELECTORS = [{}, {"matchLabels": {"app": "a"}}, {"matchLabels": {"app": "b"}}]
NAMESPACES = [{}, {"matchLabels": {"team": "x"}}, {"matchLabels": {"team": "y"}}]
PEERS = [
    *({"podSelector": s} for s in SELECTORS),
    *({"namespaceSelector": n} for n in NAMESPACES),
    *({"namespaceSelector": n, "podSelector": s} for n in NAMESPACES for s in SELECTORS),
    {},
    {"ipBlock": {"cidr": "10.0.0.0/8"}},
    {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
]
PORTS = [
    {"port": 80, "protocol": "TCP"},
    {"port": 80, "endPort": 80, "protocol": "TCP"},
    {"port": 81, "protocol": "TCP"},
    {"port": 80, "endPort": 90, "protocol": "TCP"},
    {"port": 85, "endPort": 100, "protocol": "TCP"},
    {"port": 70, "endPort": 95, "protocol": "TCP"},
    {"port": 88, "endPort": 93, "protocol": "TCP"},
    {"port": 80, "protocol": "UDP"},
    {"port": "http", "protocol": "TCP"},
    {"protocol": "TCP"},
    {"protocol": "UDP"},
    {"protocol": "SCTP"},
]

rules = st.fixed_dictionaries(
    {},
    optional={
        "peers": st.lists(st.sampled_from(PEERS), max_size=3),
        "ports": st.lists(st.sampled_from(PORTS), max_size=3),
    },
)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    types = draw(st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]]))
    spec: dict[str, Any] = {"podSelector": draw(st.sampled_from(SELECTORS)), "policyTypes": types}
    for ptype, field, peers_field in (("Ingress", "ingress", "from"), ("Egress", "egress", "to")):
        found = draw(st.lists(rules, max_size=3))
        if found and (ptype in types or draw(st.booleans())):  # rules of an undeclared direction count for nothing
            spec[field] = [
                {
                    **({peers_field: r["peers"]} if r.get("peers") else {}),
                    **({"ports": r["ports"]} if r.get("ports") else {}),
                }
                for r in found
            ]
    return stored_spec(spec)


revisions = st.dictionaries(st.sampled_from(["p1", "p2", "p3", "p4"]), specs(), max_size=4)


def scanned(revision: dict[str, dict[str, Any]], atom: planner.Atom) -> bool:
    """The definition: an atom is granted when some atom of the revision covers it, pair by pair."""
    sel, direction, peer, port = atom
    granted = set().union(*(atoms(s) for s in revision.values())) if revision else set()
    return atom in granted or any(
        s in (sel, EVERYTHING) and d == direction and _peer_covers(p, peer) and _port_covers(q, port)
        for s, d, p, q in granted
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(revisions, specs())
def test_the_index_grants_exactly_what_a_scan_of_every_pair_grants(
    revision: dict[str, dict[str, Any]], other: dict[str, Any]
) -> None:
    index = _Index(revision.values())
    queried = atoms(other) | {(EVERYTHING, d, p, q) for _, d, p, q in atoms(other)}
    for atom in sorted(queried, key=str):
        assert index.grants(atom) == scanned(revision, atom), atom


def test_the_index_finds_the_wide_peers_and_ranges_that_cover() -> None:
    """One case per way of covering (the random test above also finds them; these keep them named)."""
    tier = json.dumps({"podSelector": {"matchLabels": {"app": "a"}}}, sort_keys=True, separators=(",", ":"))
    sel = json.dumps({}, sort_keys=True)

    def index(peer: dict[str, Any], port: dict[str, Any] | None) -> _Index:
        rule: dict[str, Any] = {"from": [peer]}
        if port is not None:
            rule["ports"] = [port]
        return _Index([stored_spec({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [rule]})])

    def port(p: dict[str, Any]) -> str:
        return json.dumps(
            stored_spec({"ingress": [{"ports": [p]}]})["ingress"][0]["ports"][0], sort_keys=True, separators=(",", ":")
        )

    p80 = port({"port": 80})
    assert index({"podSelector": {}}, None).grants((sel, "Ingress", tier, p80))
    assert index({"namespaceSelector": {}}, None).grants((sel, "Ingress", tier, p80))
    assert index({"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "a"}}}, None).grants(
        (sel, "Ingress", tier, p80)
    )
    assert not index({"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "b"}}}, None).grants(
        (sel, "Ingress", tier, p80)
    )
    assert index({"podSelector": {}}, {"port": 70, "endPort": 90}).grants((sel, "Ingress", tier, p80))
    # A range that starts earlier may reach further than the last one starting before the port.
    wide = _Index(
        [
            stored_spec(
                {
                    "podSelector": {},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"ports": [{"port": 70, "endPort": 95}, {"port": 80, "endPort": 90}]}],
                }
            )
        ]
    )
    assert wide.grants((sel, "Ingress", None, port({"port": 85, "endPort": 93})))
    assert not index({"podSelector": {}}, {"port": 81, "endPort": 90}).grants((sel, "Ingress", tier, p80))
    assert index({"podSelector": {}}, {"protocol": "TCP"}).grants((sel, "Ingress", tier, port({"port": "http"})))
    assert not index({"podSelector": {}}, {"protocol": "UDP"}).grants((sel, "Ingress", tier, p80))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(revisions, revisions, st.lists(st.tuples(st.sampled_from(["p1", "p2", "p3", "p5"]), st.none() | specs())))
def test_the_tracked_state_is_within_exactly_when_the_rebuilt_one_is(
    start: dict[str, dict[str, Any]], revision: dict[str, dict[str, Any]], steps: list[tuple[str, Any]]
) -> None:
    facts = _Facts()
    tracker = _Tracker(_Index(revision.values(), facts), facts, start)
    state = dict(start)
    assert tracker.within() == within(state, revision)
    for name, spec in steps:
        # A trial leaves the state as it was, and answers for the state after the move.
        after = {**state, name: spec} if spec is not None else {n: s for n, s in state.items() if n != name}
        assert tracker.fits(name, spec) == within(after, revision)
        assert tracker.state == state
        tracker.put(name, spec)
        state = after
        assert tracker.state == state
        assert tracker.within() == within(state, revision)


def defined_check(old: dict[str, Any], new: dict[str, Any], moves: list[Move]) -> bool:
    """check() as first written: every state rebuilt, every split tried."""
    seq = states(old, moves)
    if seq[-1] != new:
        return False
    in_old = [within(s, old) for s in seq]
    in_new = [within(s, new) for s in seq]
    return any(all(in_old[: k + 1]) and all(in_new[k:]) for k in range(len(seq)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(revisions, revisions, st.randoms(use_true_random=False))
def test_the_linear_check_agrees_with_its_definition(
    old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]], rng: Any
) -> None:
    moves = transition(old, new)
    assert check(old, new, moves) and defined_check(old, new, moves)
    # Reordered and truncated sequences: mostly wrong, and both must say so alike.
    for _ in range(3):
        shuffled = list(moves)
        rng.shuffle(shuffled)
        shuffled = shuffled[: rng.randint(0, len(shuffled))]
        assert check(old, new, shuffled) == defined_check(old, new, shuffled)


# The work bound -----------------------------------------------------------------------------------------


def rendered(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: stored_spec(p["spec"]) for p in render(parse_topology(doc))}


def topology(tiers: int, scope: str = "Namespace", moved: bool = False) -> dict[str, Any]:
    names = [f"t{i}" for i in range(tiers)]
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": "big", "namespace": "home"},
        "spec": {
            "defaultDeny": {"scope": scope},
            "tiers": [
                {"name": n, "podSelector": {"matchLabels": {"app": n, **({"moved": "yes"} if moved else {})}}}
                for n in names
            ],
            "flows": [
                {"from": {"tier": a}, "to": {"tier": b}, "ports": [{"port": 1000 + i}]}
                for i, (a, b) in enumerate(zip(names, names[1:] + names[:1], strict=True))
            ],
        },
    }


def test_over_its_work_budget_the_planner_uses_the_full_sequence(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every selector of scope Tiers moves: the midpoint needs a guard per selector. With too small a
    budget the same input gets the always-valid full sequence, the same every time, and it passes check."""
    old, new = rendered(topology(8, "Tiers")), rendered(topology(8, "Tiers", moved=True))
    roomy = planned(old, new, guard_base="big")
    assert roomy.way == "midpoint" and roomy.work > 0
    monkeypatch.setattr(planner, "WORK_BUDGET", roomy.work - 1)
    tight = planned(old, new, guard_base="big")
    assert tight.way == "full"
    assert check(old, new, tight.moves)
    assert planned(old, new, guard_base="big") == tight
    assert tight.moves != roomy.moves


def test_thousands_of_owned_policies_cost_a_bounded_number_of_steps() -> None:
    """Anyone who may create NetworkPolicies could copy the topology's owner reference onto thousands of
    them (each isolating pods the new revision leaves alone, so nothing shorter than a guard per selector
    is safe); the planner's work stays within its budget and its answer passes check."""
    new = rendered(topology(4, "Tiers"))
    junk = {
        f"junk-{i}": stored_spec(
            {
                "podSelector": {"matchLabels": {"junk": str(i)}},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"x": str(i)}}}]}],
            }
        )
        for i in range(1000)
    }
    old = {**new, **junk}
    result = planned(old, new, guard_base="big")
    assert result.way == "full" and result.work == planner.WORK_BUDGET
    assert check(old, new, result.moves)
    assert {m.name for m in result.moves if m.spec is None} >= set(junk)
