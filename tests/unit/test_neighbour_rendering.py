"""Neighbour-safe rendering: whatever is rendered for one topology of a namespace (its policies, what a
guardrail adds to them: raised isolation, DNS, monitoring) never lets a pod of another topology, or a pod of
none, do anything its own topology (or the absence of one) would not allow.

Judged by :func:`apptopology.analysis.namespace_interactions` over everything rendered for the namespace,
each topology's intent being what it enforces (its spec as the guardrails narrow it). Tiers of two
topologies select disjoint pods here: a pod in tiers of two topologies is declared by both, a conflict the
operator reports (Isolated=False) and cannot resolve by rendering.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from apptopology.analysis.namespace import namespace_interactions
from apptopology.api.guardrail import parse_guardrail
from apptopology.api.spec import AppTopology
from apptopology.api.validation import InvalidTopology
from apptopology.render import guardrails
from apptopology.render.facts import OFFLINE, ClusterFacts
from apptopology.render.renderer import dns_grant, neighbours_note, render, render_all, with_neighbours
from apptopology.render.validation import parse_topology
from guardrail_strategies import guardrail_documents
from strategies import topologies

NS = "prod"
OWNER = "apptopology-test/topology"


def named(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """``doc`` as topology ``name`` of NS, its tiers selecting pods of its own (an extra label)."""
    doc = copy.deepcopy(doc)
    doc["metadata"] = {"name": name, "namespace": NS}
    for tier in doc["spec"]["tiers"]:
        tier["podSelector"].setdefault("matchLabels", {})[OWNER] = name
    return doc


def render_namespace(
    topologies: list[AppTopology], rails: list[dict[str, Any]], facts: ClusterFacts = OFFLINE
) -> tuple[list[AppTopology], list[dict[str, Any]]]:
    """What the operator enforces in a namespace: each topology narrowed by the guardrails, rendered beside
    the others (their DNS grants, as narrowed)."""
    parsed = [parse_guardrail(r) for r in rails]
    guarded = [guardrails.enforce(t, parsed, {}, facts) for t in topologies]
    grants = [dns_grant(g.topology, g.facts) for g in guarded]
    policies = []
    for i, g in enumerate(guarded):
        others = [grant for j, grant in enumerate(grants) if j != i]
        policies += render(g.topology, with_neighbours(g.topology, others, g.facts))
    return [g.topology for g in guarded], policies


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=topologies(),
    second=topologies(),
    rails=st.one_of(st.just([]), guardrail_documents(), guardrail_documents()),
)
def test_no_topology_opens_another_with_or_without_guardrails(
    first: dict[str, Any], second: dict[str, Any], rails: list[dict[str, Any]]
) -> None:
    try:
        pair = [parse_topology(named(first, "a")), parse_topology(named(second, "b"))]
    except InvalidTopology:
        assume(False)
        return
    enforced, policies = render_namespace(pair, rails)
    event("with guardrails" if rails else "without guardrails")
    event(f"scopes {'/'.join(t.spec.default_deny.scope for t in enforced)}")
    if any(
        t.spec.dns.enabled and t.spec.default_deny.scope == "Namespace" and t.spec.default_deny.egress for t in enforced
    ):
        withheld = not any(p["metadata"]["name"].endswith(".allow-dns") for p in policies)
        event("DNS per tier: a neighbour grants other DNS" if withheld else "DNS for every pod")
    found = namespace_interactions(enforced, policies)
    assert found == [], "\n".join(i.line() for i in found)


def doc(name: str, scope: str = "Tiers", **spec: Any) -> AppTopology:
    return parse_topology(
        named(
            {
                "apiVersion": "apptopology.io/v1alpha1",
                "kind": "AppTopology",
                "metadata": {},
                "spec": {
                    "defaultDeny": {"scope": scope},
                    "tiers": [{"name": "api", "podSelector": {"matchLabels": {"app": "api"}}}],
                    "flows": [{"from": {"anywhere": True}, "to": {"tier": "api"}, "ports": [{"port": 443}]}],
                    **spec,
                },
            },
            name,
        )
    )


REQUIRE_NAMESPACE = [
    {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "TopologyGuardrail",
        "metadata": {"name": "strict"},
        "spec": {"namespaceSelector": {}, "requiredDefaultDeny": {"scope": "Namespace"}},
    }
]


def test_finding_1_raised_isolation_keeps_dns_to_the_tiers_of_its_topology() -> None:
    """The issue's reproduction: both scope Tiers, b without DNS; a guardrail raises both to scope Namespace.
    a's DNS policy selecting every pod would give b's pods DNS: a allows DNS per tier instead."""
    a, b = doc("a"), doc("b", dns={"enabled": False})
    enforced, policies = render_namespace([a, b], REQUIRE_NAMESPACE)
    names = [p["metadata"]["name"] for p in policies]
    assert "a.default-deny" in names and "a.allow-dns" not in names
    assert any(
        "kube-dns" in str(r)
        for r in next(p for p in policies if p["metadata"]["name"] == "a.tier-api")["spec"]["egress"]
    )
    assert namespace_interactions(enforced, policies) == []
    note = neighbours_note(enforced[0], with_neighbours(enforced[0], [dns_grant(enforced[1])], OFFLINE))
    assert note is not None and "tiers' pods only" in note
    # Alone, or beside a topology granting the same DNS, a keeps its policy for every pod.
    assert "a.allow-dns" in [p["metadata"]["name"] for p in render_namespace([a], REQUIRE_NAMESPACE)[1]]
    _, shared = render_namespace([a, doc("c")], REQUIRE_NAMESPACE)
    assert {"a.allow-dns", "c.allow-dns"} <= {p["metadata"]["name"] for p in shared}


def test_a_neighbour_that_isolates_no_egress_changes_nothing() -> None:
    a = doc("a", "Namespace")
    b = doc("b", dns={"enabled": False}, defaultDeny={"scope": "Tiers", "egress": False})
    assert dns_grant(b) is None
    assert render_all([a, b]) == render(a) + render(b)


def test_the_cli_renders_a_namespace_as_the_operator_does() -> None:
    a, b = doc("a", "Namespace"), doc("b", dns={"enabled": False})
    names = [p["metadata"]["name"] for p in render_all([a, b])]
    assert "a.allow-dns" not in names and "a.default-deny" in names
    elsewhere = b.model_copy(update={"metadata": b.metadata.model_copy(update={"namespace": "other"})})
    assert "a.allow-dns" in [p["metadata"]["name"] for p in render_all([a, elsewhere])]


def test_the_operator_renders_beside_its_neighbours_and_follows_them() -> None:
    """The reconciler learns the neighbours from the cache's view. A neighbour whose DNS grant changes in a
    way that may flip a topology's DNS policy queues that topology (the controller asks after each
    reconcile); one granting the same DNS queues nothing (a namespace of 100 such topologies costs no
    re-render of each per creation)."""
    from fake_cluster import FakeCluster

    from apptopology.controller.reconciler import Reconciler

    def body(topology: AppTopology) -> dict[str, Any]:
        return {
            "apiVersion": "apptopology.io/v1alpha1",
            "kind": "AppTopology",
            "metadata": {"name": topology.metadata.name, "namespace": NS},
            "spec": topology.model_dump(by_alias=True, exclude_none=True)["spec"],
        }

    cluster = FakeCluster()
    reconciler = Reconciler(cluster, now=lambda: "2026-12-01T10:00:00Z")
    cluster.add_topology(body(doc("a", "Namespace")))
    reconciler.reconcile(NS, "a", cluster.view(NS, "a"))
    assert "a.allow-dns" in cluster.names(NS)
    assert reconciler.dependents(NS) == [(NS, "a")]
    reconciler.take_neighbour_changes()
    cluster.add_topology(body(doc("c", "Namespace")))  # the same DNS: nothing to do for a
    reconciler.reconcile(NS, "c", cluster.view(NS, "c"))
    assert reconciler.take_neighbour_changes() == []
    cluster.add_topology(body(doc("b", dns={"enabled": False})))
    reconciler.reconcile(NS, "b", cluster.view(NS, "b"))
    assert reconciler.take_neighbour_changes() == [(NS, "a"), (NS, "c")]
    reconciler.reconcile(NS, "a", cluster.view(NS, "a"))
    assert "a.allow-dns" not in cluster.names(NS)
    assert "kube-dns" in str(cluster.policies[(NS, "a.tier-api")]["spec"]["egress"])
    status = cluster.topologies[(NS, "a")]["status"]
    assert any("tiers' pods only" in w for w in status["warnings"]), status
    cluster.calls.clear()
    reconciler.reconcile(NS, "a", cluster.view(NS, "a"))
    assert cluster.calls == []  # in sync beside the same neighbours: rendered once, nothing asked
    del cluster.topologies[(NS, "b")]
    reconciler.reconcile(NS, "b", cluster.view(NS, "b"))  # gone
    assert reconciler.take_neighbour_changes() == [(NS, "a"), (NS, "c")]
    reconciler.reconcile(NS, "a", cluster.view(NS, "a"))
    assert "a.allow-dns" in cluster.names(NS)
    assert not any("tiers' pods only" in w for w in cluster.topologies[(NS, "a")]["status"].get("warnings") or [])
