"""Desired vs live: "in sync" only when the API server would store the two identically.

The property: for random mutations of a rendered policy, in_sync holds only when the evaluator finds the
mutated policy set's connectivity identical; any connectivity change is detected. The mutations include
the widening edits an attacker would make and the no-op spellings the API server erases (so the compare
is not trivially "always different", which would break zero writes).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apptopology.analysis.intent import synthesize
from apptopology.api.validation import InvalidTopology
from apptopology.evaluator import Evaluator
from apptopology.planner.compare import in_sync, managed_digest, stored_spec
from apptopology.planner.plan import desired_policies
from apptopology.render.validation import parse_topology
from strategies import topologies

Policy = dict[str, Any]


def _peers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for d, f in (("ingress", "from"), ("egress", "to")) for r in spec.get(d) or [] for p in r.get(f) or []]


def _rules(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for d in ("ingress", "egress") for r in spec.get(d) or []]


def _ports(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for r in _rules(spec) for p in r.get("ports") or []]


def _first(items: list[dict[str, Any]], change: Callable[[dict[str, Any]], None]) -> bool:
    if not items:
        return False
    change(items[0])
    return True


def _set_types(spec: dict[str, Any], types: list[str]) -> bool:
    spec["policyTypes"] = types
    return True


# Each mutation edits a spec in place and says whether it applied. Widening and narrowing edits first,
# then spellings the API server stores identically.
MUTATIONS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "peer gets namespaceSelector {}": lambda s: _first(
        [p for p in _peers(s) if "podSelector" in p and "namespaceSelector" not in p],
        lambda p: p.update(namespaceSelector={}),
    ),
    "peer gets podSelector {}": lambda s: _first(
        [p for p in _peers(s) if "namespaceSelector" in p and "podSelector" not in p],
        lambda p: p.update(podSelector={}),
    ),
    "peer loses podSelector": lambda s: _first(
        [p for p in _peers(s) if "podSelector" in p and "namespaceSelector" in p], lambda p: p.pop("podSelector")
    ),
    "extra peer": lambda s: _first(
        [r for r in _rules(s) if "from" in r or "to" in r],
        lambda r: r[("from" if "from" in r else "to")].append({"ipBlock": {"cidr": "0.0.0.0/0"}}),
    ),
    "extra allow-all rule": lambda s: (s.setdefault("ingress", []).append({}), True)[1],
    "extra egress rule": lambda s: (s.setdefault("egress", []).append({"ports": [{"port": 22}]}), True)[1],
    "except removed": lambda s: _first(
        [p["ipBlock"] for p in _peers(s) if "ipBlock" in p and p["ipBlock"].get("except")],
        lambda b: b.pop("except"),
    ),
    "policyTypes gains a direction": lambda s: (
        _set_types(s, ["Ingress", "Egress"]) if len(s["policyTypes"]) < 2 else False
    ),
    "policyTypes loses or switches a direction": lambda s: _set_types(
        s, ["Ingress"] if s["policyTypes"] != ["Ingress"] else ["Egress"]
    ),
    "port widened": lambda s: _first(
        [p for p in _ports(s) if isinstance(p.get("port"), int)], lambda p: p.update(endPort=65535)
    ),
    "protocol changed": lambda s: _first(
        _ports(s), lambda p: p.update(protocol="UDP" if p.get("protocol") == "TCP" else "TCP")
    ),
    "ports removed": lambda s: _first([r for r in _rules(s) if r.get("ports")], lambda r: r.pop("ports")),
    "rule peers removed": lambda s: _first(
        [r for r in _rules(s) if r.get("from") or r.get("to")], lambda r: r.pop("from", None) or r.pop("to", None)
    ),
    "policy selects every pod": lambda s: s["podSelector"] != {} and (s.update(podSelector={}), True)[1],
    "selector label changed": lambda s: _first(
        [p["podSelector"] for p in _peers(s) if p.get("podSelector", {}).get("matchLabels")],
        lambda sel: sel["matchLabels"].update({next(iter(sel["matchLabels"])): "other"}),
    ),
    # No-op spellings: stored identically, so the compare must call them in sync.
    "matchLabels {} added": lambda s: _first(
        [p["podSelector"] for p in _peers(s) if "podSelector" in p and "matchLabels" not in p["podSelector"]],
        lambda sel: sel.update(matchLabels={}),
    ),
    "protocol TCP spelled out": lambda s: _first(
        [p for p in _ports(s) if "protocol" not in p], lambda p: p.update(protocol="TCP")
    ),
    "protocol TCP left to the default": lambda s: _first(
        [p for p in _ports(s) if p.get("protocol") == "TCP"], lambda p: p.pop("protocol")
    ),
    "empty rule lists": lambda s: (s.setdefault("ingress", []), s.setdefault("egress", []), True)[2],
    "empty except": lambda s: _first(
        [p["ipBlock"] for p in _peers(s) if "ipBlock" in p and not p["ipBlock"].get("except")],
        lambda b: b.update({"except": []}),
    ),
}
NO_OPS = {
    "matchLabels {} added",
    "protocol TCP spelled out",
    "protocol TCP left to the default",
    "empty rule lists",
    "empty except",
}


def _connectivity(policies: list[Policy], doc: dict[str, Any]) -> dict[Any, Any]:
    inventory = synthesize(parse_topology(copy.deepcopy(doc)))
    evaluator = Evaluator(policies, inventory)
    return {(a, b): evaluator.allowed(a, b) for a in inventory.endpoints for b in inventory.endpoints}


def _desired(doc: dict[str, Any]) -> list[Policy]:
    body = copy.deepcopy(doc)
    body["metadata"].update(uid="u-1", generation=1)
    return desired_policies(body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topologies(), st.data())
def test_in_sync_only_when_connectivity_is_identical(doc: dict[str, Any], data: st.DataObject) -> None:
    try:
        desired = _desired(doc)
    except InvalidTopology:
        return
    if not desired:
        return
    index = data.draw(st.integers(0, len(desired) - 1), label="policy")
    name = data.draw(st.sampled_from(sorted(MUTATIONS)), label="mutation")
    live = copy.deepcopy(desired)
    if not MUTATIONS[name](live[index]["spec"]):
        return
    same = _connectivity(live, doc) == _connectivity(desired, doc)
    synced = in_sync(desired[index], live[index])
    if synced:
        assert same, f"{name}: compares equal but changes connectivity"
    if name in NO_OPS:
        assert synced, f"{name}: the API server stores this identically; it must not cause a write"


@pytest.mark.parametrize("name", sorted(set(MUTATIONS) - NO_OPS))
def test_every_widening_or_narrowing_edit_is_a_difference(name: str) -> None:
    """On a policy that has every feature (AND peers, ipBlock with except, ports), each edit is caught."""
    doc = {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": "t", "namespace": "home"},
        "spec": {
            "defaultDeny": {"egress": False},
            "tiers": [{"name": "db", "podSelector": {"matchLabels": {"app": "db"}}}],
            "flows": [
                {
                    "from": {"podSelector": {"matchLabels": {"app": "api"}}},
                    "to": {"tier": "db"},
                    "ports": [{"port": 5432}],
                },
                {
                    "from": {
                        "namespaceSelector": {"matchLabels": {"team": "ops"}},
                        "podSelector": {"matchLabels": {"app": "probe"}},
                    },
                    "to": {"tier": "db"},
                    "ports": [{"port": 9187}],
                },
                {
                    "from": {"namespaceSelector": {"matchLabels": {"team": "bi"}}},
                    "to": {"tier": "db"},
                    "ports": [{"port": 5433}],
                },
                {
                    "from": {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
                    "to": {"tier": "db"},
                    "ports": [{"port": 5434}],
                },
            ],
        },
    }
    desired = next(p for p in _desired(doc) if p["metadata"]["name"] == "t.tier-db")
    live = copy.deepcopy(desired)
    assert MUTATIONS[name](live["spec"]), f"{name} does not apply to the fixture"
    assert not in_sync(desired, live)


def test_stored_form_is_what_the_api_server_keeps() -> None:
    spec = {
        "podSelector": None,
        "policyTypes": None,
        "ingress": [
            {
                "from": [
                    {"podSelector": {"matchLabels": {}, "matchExpressions": []}, "namespaceSelector": {}},
                    {"ipBlock": {"cidr": "10.0.0.0/8", "except": []}},
                ],
                "ports": [{"port": 80, "endPort": None}],
            },
            {},
        ],
        "egress": [],
    }
    assert stored_spec(spec) == {
        "podSelector": {},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [{"podSelector": {}, "namespaceSelector": {}}, {"ipBlock": {"cidr": "10.0.0.0/8"}}],
                "ports": [{"port": 80, "protocol": "TCP"}],
            },
            {},
        ],
    }
    assert stored_spec({"egress": [{}]})["policyTypes"] == ["Ingress", "Egress"]


def test_metadata_and_owner_reference() -> None:
    desired = _desired(
        {
            "apiVersion": "apptopology.io/v1alpha1",
            "kind": "AppTopology",
            "metadata": {"name": "t", "namespace": "home"},
            "spec": {"tiers": [{"name": "a", "podSelector": {}}]},
        }
    )[0]
    live = copy.deepcopy(desired)
    live["metadata"]["labels"]["someone-else"] = "x"  # other keys are not ours
    live["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] = True  # a field we do not set
    assert in_sync(desired, live)
    for change in (
        lambda m: m["labels"].update({"apptopology.io/topology": "other"}),
        lambda m: m["annotations"].clear(),
        lambda m: m.pop("ownerReferences"),
        lambda m: m["ownerReferences"][0].update(controller=False),
    ):
        edited = copy.deepcopy(live)
        change(edited["metadata"])
        assert not in_sync(desired, edited)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topologies(), st.data())
def test_digest_equality_is_in_sync(doc: dict[str, Any], data: st.DataObject) -> None:
    """The cache keeps digests: equal digests must mean exactly what in_sync means."""
    try:
        desired = _desired(doc)
    except InvalidTopology:
        return
    if not desired:
        return
    index = data.draw(st.integers(0, len(desired) - 1), label="policy")
    live = copy.deepcopy(desired[index])
    name = data.draw(st.sampled_from(["none", *sorted(MUTATIONS)]), label="mutation")
    if name != "none":
        MUTATIONS[name](live["spec"])
    meta_change = data.draw(st.sampled_from(["none", "label", "foreign label", "annotation", "ref", "extra ref"]))
    meta = live["metadata"]
    if meta_change == "label":
        meta["labels"]["apptopology.io/topology"] = "other"
    elif meta_change == "foreign label":
        meta["labels"]["team"] = "x"
    elif meta_change == "annotation":
        meta["annotations"]["apptopology.io/description"] = "edited"
    elif meta_change == "ref":
        meta["ownerReferences"][0]["uid"] = "someone-else"
    elif meta_change == "extra ref":
        meta["ownerReferences"].append({"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "c"})
    assert (managed_digest(desired[index]) == managed_digest(live)) == in_sync(desired[index], live)
