"""Drift and revisions, watched with packets.

Drift: a generated policy edited by hand to open a forbidden pair; the packet goes through; the operator
puts the policy back and the packet is refused again. Revisions: the topology changes; old flows close,
new ones open, and while the operator moves from one revision to the other, probes running all along
never see a connection open that neither revision allows.

Policy names are never written here: the policy to edit is found in the cluster by what it selects.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from harness import load_example, wait_for
from kubernetes import client
from kuberouter import KubeRouterModel
from matrix import Case, Probe

from dataplane import Dataplane

INTERNET = "external/203-0-113-10"  # the "world" address explain synthesizes, outside every ipBlock here


@pytest.fixture()
def three_tier(dataplane: Dataplane) -> Iterator[Case]:
    """examples/three-tier.yaml reconciled and enforced, with its pods (and a revision's ports) in place."""
    case = Case(dataplane, "three-tier", load_example("three-tier.yaml"))
    case.build(also=[revision(case.doc)])
    generation = case.apply()
    wait_for(lambda: case.ready(generation), timeout=60, what="three-tier Ready")
    dataplane.settle()
    try:
        yield case
    finally:
        if dataplane.operator is None or dataplane.operator.proc is None:
            dataplane.start_operator()
        case.teardown()


def revision(doc: dict[str, Any]) -> dict[str, Any]:
    """The next revision of three-tier: the database moves to 5433, the API also serves 8443."""
    new = copy.deepcopy(doc)
    for flow in new["spec"]["flows"]:
        if flow["to"] == {"tier": "database"}:
            flow["ports"] = [{"port": 5433}]
        if flow["to"] == {"tier": "api"}:
            flow["ports"] = [{"port": 8080}, {"port": 8443}]
    return new


def tier_policy(case: Case, tier: str) -> str:
    """The name of the live policy the operator wrote for ``tier`` (found by its pod selector)."""
    selector = next(t["podSelector"] for t in case.doc["spec"]["tiers"] if t["name"] == tier)
    net = client.NetworkingV1Api(case.dp.api)
    raw = case.dp.k(net.list_namespaced_network_policy, case.home, _preload_content=False)
    names = [p["metadata"]["name"] for p in json.loads(raw.data)["items"] if p["spec"]["podSelector"] == selector]
    assert len(names) == 1, f"expected one policy selecting tier {tier}, found {names}"
    return str(names[0])


def sweep_and_check(case: Case) -> None:
    expected, evaluator, _, by_key = case.expectations()
    plan = case.plan(expected)
    results = case.dp.probe_all([(p.source, p.destination, p.port, p.protocol) for p, _ in plan])
    problems = case.check(plan, results, evaluator, by_key)
    assert not problems, "\n".join(problems)


def until_refused(dp: Dataplane, probe: Probe, timeout: float = 60) -> tuple[float, bool]:
    """Seconds until ``probe`` is refused, and whether it was ever seen open on the way."""
    start = time.monotonic()
    seen_open = False
    while time.monotonic() - start < timeout:
        result = dp.probe(probe.source, probe.destination, probe.port, probe.protocol)
        if not result.open:
            return time.monotonic() - start, seen_open
        seen_open = True
        time.sleep(0.005)
    raise AssertionError(f"{probe} still open after {timeout} s: the drift was not repaired")


def test_drift_opening_a_forbidden_pair_is_repaired(dataplane: Dataplane, three_tier: Case) -> None:
    dp, case = dataplane, three_tier
    api = f"{case.home}/tier-api"
    forbidden = Probe(INTERNET, api, 8080, "TCP")  # the API accepts only the frontend
    assert not dp.probe(forbidden.source, forbidden.destination, 8080).open
    assert dp.probe("node", api, 8080).open  # positive control
    name = tier_policy(case, "api")
    net = client.NetworkingV1Api(dp.api)
    opening = [{"op": "add", "path": "/spec/ingress/-",
                "value": {"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 8080}]}}]  # fmt: skip

    # With the operator stopped, the hand edit is in force: the packet goes through.
    dp.stop_operator()
    dp.k(net.patch_namespaced_network_policy, name, case.home, opening)
    dp.settle()
    assert dp.probe(forbidden.source, forbidden.destination, 8080).open, "the hand edit did not open the pair"
    # The operator starts, finds the drift and repairs it: refused again.
    dp.start_operator()
    repaired, _ = until_refused(dp, forbidden)
    print(f"drift repaired {repaired * 1000:.0f} ms after the restarted operator became healthy")

    # The same edit while the operator runs: the operator puts the policy back within seconds (the
    # packet may or may not go through meanwhile, depending on who is faster), and it is refused again.
    def spec() -> Any:
        raw = dp.k(net.read_namespaced_network_policy, name, case.home, _preload_content=False)
        return json.loads(raw.data)["spec"]

    repaired_spec = spec()
    edited = time.monotonic()
    dp.k(net.patch_namespaced_network_policy, name, case.home, opening)
    wait_for(lambda: spec() == repaired_spec, timeout=30, interval=0.01, what=f"the operator to repair {name}")
    print(f"live drift: policy repaired {(time.monotonic() - edited) * 1000:.0f} ms after the edit")
    dp.settle()
    sweep_and_check(case)


def test_revision_closes_old_flows_opens_new_ones_and_nothing_else(dataplane: Dataplane, three_tier: Case) -> None:
    dp, case = dataplane, three_tier
    sweep_and_check(case)
    # What each revision lets through (as kube-router enforces it), on every probed port of every pair.
    before = Case(dp, "before", case.doc)
    after = Case(dp, "after", revision(case.doc))
    for c in (before, after):
        c.keys, c.externals = case.keys, case.externals
    expected_old, explain_old, _, by_key = before.expectations()
    _, explain_new, _, _ = after.expectations()
    assert before.kube_router is not None and after.kube_router is not None
    old_model, new_model = before.kube_router, after.kube_router

    def allows(model: KubeRouterModel, p: Probe) -> bool:
        return model.allows(by_key[p.source], by_key[p.destination], p.protocol, p.port)[0]

    def mixable(p: Probe) -> bool:
        """Allowed by neither revision, but one revision's egress and the other's ingress would let it
        through: only an in-between state (some policies updated, others not) could open it."""
        src, dst = by_key[p.source], by_key[p.destination]
        a, b = (e.explain(src, dst, p.protocol, p.port) for e in (explain_old, explain_new))
        return (a.egress.allowed or b.egress.allowed) and (a.ingress.allowed or b.ingress.allowed)

    plan = [p for p, _ in before.plan(expected_old)]
    changing = [p for p in plan if allows(old_model, p) != allows(new_model, p)]
    opened = [p for p in changing if allows(new_model, p)]
    closed = [p for p in changing if not allows(new_model, p)]
    assert opened and closed, "the revision must both open and close something"
    pairs = {(p.source, p.destination) for p in changing}
    neither = [p for p in plan if not allows(old_model, p) and not allows(new_model, p)]
    in_between = [p for p in neither if mixable(p)]
    # Watched all along: every probe that changes, and every probe of the same pairs that neither allows.
    watched = changing + [p for p in neither if (p.source, p.destination) in pairs or p in in_between]
    print(
        f"revision: {len(opened)} probes must open, {len(closed)} must close; watching {len(watched)} "
        f"({len(in_between)} that only an in-between state could open)"
    )

    violations: list[str] = []
    rounds = 0
    start = time.monotonic()
    generation = case.revise(after.doc)
    followed: float | None = None
    while time.monotonic() - start < 60:
        results = dp.probe_all([(p.source, p.destination, p.port, p.protocol) for p in watched], workers=16)
        rounds += 1
        now = dict(zip(watched, (r.open for r in results), strict=True))
        violations += [f"round {rounds}: {p} open, allowed by neither revision" for p in neither if now.get(p)]
        if followed is None and all(now[p] == allows(new_model, p) for p in changing):
            followed = time.monotonic() - start
        if followed is not None and case.ready(generation):
            break
    assert followed is not None, "the new revision was not enforced within 60 s"
    print(f"revision enforced after {followed * 1000:.0f} ms; {rounds} rounds of {len(watched)} probes watched")
    assert not violations, "\n".join(violations)
    dp.settle()
    sweep_and_check(case)


def _mixing_revisions() -> tuple[dict[str, Any], dict[str, Any]]:
    """Two revisions of three-tier whose in-between states could open api -> frontend:443, which neither
    allows: the old one admits 443 into the frontend from anywhere, the new one lets the api reach
    anywhere on 443 instead. Tiers in reverse order, so a naive writer updates the api first."""
    old = load_example("three-tier.yaml")
    old["spec"]["tiers"].reverse()
    new = copy.deepcopy(old)
    for flow in new["spec"]["flows"]:
        if flow["to"] == {"tier": "frontend"}:
            flow["ports"] = [{"port": 80}]
    new["spec"]["flows"].append(
        {"from": {"tier": "api"}, "to": {"ipBlock": {"cidr": "0.0.0.0/0"}}, "ports": [{"port": 443}]}
    )
    return old, new


def test_revisions_that_could_mix_never_open_in_between(dataplane: Dataplane) -> None:
    """The safe write order on packets: back and forth between two revisions, api -> frontend:443 (allowed by
    neither, open in any state that holds the new api egress and the old frontend ingress) is watched all
    along and never seen open. (A writer applying policy after policy opened it in 1 of 10 trials.)"""
    old, new = _mixing_revisions()
    case = Case(dataplane, "mixing", old)
    case.build(also=[new])
    try:
        generation = case.apply()
        wait_for(lambda: case.ready(generation), timeout=60, what="first revision Ready")
        dataplane.settle()
        api, frontend = f"{case.home}/tier-api", f"{case.home}/tier-frontend"
        assert not dataplane.probe(api, frontend, 443).open
        assert dataplane.probe("node", frontend, 443).open  # positive control: the server answers
        rounds = 0
        for trial in range(10):
            generation = case.revise(new if trial % 2 == 0 else old)
            while not case.ready(generation):
                rounds += 1
                assert not dataplane.probe(api, frontend, 443).open, f"trial {trial}: open in between"
            dataplane.settle()
            assert not dataplane.probe(api, frontend, 443).open
        print(f"10 revisions, {rounds} probes of api -> frontend:443 while they were written: never open")
    finally:
        case.teardown()
