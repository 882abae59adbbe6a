"""Connectivity, not text: rendered policies, evaluated, allow exactly what the topology declares.

The renderer and the intent (apptopology.analysis.intent) read a topology independently; the evaluator reads only
the rendered NetworkPolicies. Agreement on every pair of a synthesized inventory (tier pods, declared
peers, near misses, the rest of the world) for every example and for random topologies is the proof.
Mutation tests show the comparison is not vacuous: each classic mistake is caught.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from apptopology.analysis.intent import Intent, synthesize
from apptopology.analysis.verify import verify
from apptopology.api.spec import AppTopology
from apptopology.api.validation import InvalidTopology, model_issues
from apptopology.cli.documents import load_documents, load_topologies
from apptopology.evaluator import Evaluator, External, Inventory, Pod, PortSet
from apptopology.render.renderer import render
from apptopology.render.validation import parse_topology
from shared import ROOT, example_documents
from strategies import topologies


def differences(topology: AppTopology, policies: list[dict[str, Any]] | None = None) -> list[str]:
    found = verify(topology, policies if policies is not None else render(topology), None)
    return [line for d in found for line in d.lines()]


@pytest.mark.parametrize(("name", "doc"), example_documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_examples_allow_exactly_the_declared_connectivity(name: str, doc: dict[str, Any]) -> None:
    assert differences(parse_topology(doc)) == []


def shop(**spec: Any) -> AppTopology:
    spec.setdefault(
        "tiers",
        [
            {"name": "web", "podSelector": {"matchLabels": {"app": "web"}}},
            {"name": "api", "podSelector": {"matchLabels": {"app": "api"}}},
            {"name": "db", "podSelector": {"matchLabels": {"app": "db"}}},
        ],
    )
    spec.setdefault(
        "flows",
        [
            {"from": {"anywhere": True}, "to": {"tier": "web"}, "ports": [{"port": 443}]},
            {"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": [{"port": 8080}]},
            {"from": {"tier": "api"}, "to": {"tier": "db"}, "ports": [{"port": 5432}]},
            {
                "from": {
                    "namespaceSelector": {"matchLabels": {"team": "ops"}},
                    "podSelector": {"matchLabels": {"app": "probe"}},
                },
                "to": {"tier": "api"},
                "ports": [{"port": "metrics"}],
            },
        ],
    )
    return parse_topology(
        {
            "apiVersion": "apptopology.io/v1alpha1",
            "kind": "AppTopology",
            "metadata": {"name": "shop", "namespace": "prod"},
            "spec": spec,
        }
    )


def _policy(policies: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(p for p in policies if p["metadata"]["name"] == name)


def test_concrete_connectivity_of_three_tiers() -> None:
    topology = shop()
    inventory = synthesize(topology)
    evaluator = Evaluator(render(topology), inventory)
    pods = {p.name: p for p in inventory.pods}
    web, api, db = pods["tier-web"], pods["tier-api"], pods["tier-db"]
    assert evaluator.allowed(web, api) == PortSet.of("TCP", 8080)
    assert evaluator.allowed(api, db) == PortSet.of("TCP", 5432)
    assert evaluator.allowed(web, db).is_empty
    assert evaluator.allowed(db, api).is_empty
    internet = next(e for e in inventory.externals if "internet" in (e.name or ""))
    assert evaluator.allowed(internet, web) == PortSet.of("TCP", 443)
    assert evaluator.allowed(web, internet).is_empty
    probe = pods["flow3-from-pod"]
    metrics = next(cp.port for cp in api.ports if cp.name == "metrics")
    assert evaluator.allowed(probe, api) == PortSet.of("TCP", metrics)
    # The AND peer: the probe's labels in the wrong namespace, or the ops namespace without them: nothing.
    assert evaluator.allowed(pods["flow3-from-pod-wrong-namespace"], api).is_empty
    assert evaluator.allowed(pods["flow3-from-other-pod"], api).is_empty
    dns = pods["dns-pod"]
    for tier in (web, api, db):
        assert evaluator.allowed(tier, dns) == PortSet.of("UDP", 53).union(PortSet.of("TCP", 53))


def test_the_guides_three_tier_policies_are_exactly_the_guide_example() -> None:
    """examples/three-tier-guide.yaml says what the guide's hand-written policies do, nothing more or less;
    examples/three-tier.yaml differs in the database's egress and in DNS."""
    guide = [d.data for d in load_documents([str(ROOT / "tests/cases/guide-three-tier.yaml")])]
    (exact,) = load_topologies([str(ROOT / "examples/three-tier-guide.yaml")])
    assert differences(exact, copy.deepcopy(guide)) == []
    (ours,) = load_topologies([str(ROOT / "examples/three-tier.yaml")])
    found = differences(ours, copy.deepcopy(guide))
    assert any(line.startswith("shop: extra   database -> ") for line in found)
    assert any("TCP/53" in line and "missing" in line for line in found)
    # And the guide's database policy given Egress too (the mistake the override avoids) is caught.
    closed = copy.deepcopy(guide)
    closed[2]["spec"]["policyTypes"] = ["Ingress", "Egress"]
    assert any(line.startswith("shop-guide: missing database -> ") for line in differences(exact, closed))


def test_a_pod_in_two_tiers_is_isolated_by_either_and_gets_the_isolating_tiers_flows() -> None:
    """web is isolated for egress and api is not; a pod in both is isolated (one selecting policy isolates)
    and only web's egress flows reach it: api's flows are no rules, since api's own pods are open."""
    topology = shop(
        defaultDeny={"scope": "Tiers"},
        tiers=[
            {"name": "web", "podSelector": {"matchLabels": {"app": "web"}}},
            {"name": "api", "podSelector": {"matchLabels": {"role": "api"}}, "isolation": {"egress": False}},
        ],
        flows=[
            {"from": {"tier": "web"}, "to": {"ipBlock": {"cidr": "203.0.113.0/24"}}, "ports": [{"port": 443}]},
            {"from": {"tier": "api"}, "to": {"ipBlock": {"cidr": "203.0.113.0/24"}}, "ports": [{"port": 80}]},
        ],
    )
    both = Pod("prod", "both", {"app": "web", "role": "api"})
    api_only = Pod("prod", "api-only", {"role": "api"})
    inventory = Inventory((), (both, api_only), (External("203.0.113.7/32"),))
    evaluator = Evaluator(render(topology), inventory)
    outside = inventory.externals[0]
    assert evaluator.allowed(both, outside) == PortSet.of("TCP", 443)
    assert evaluator.allowed(api_only, outside).is_all
    assert verify(topology, render(topology), inventory) == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topologies(refusable=True))
def test_refused_same_namespace_peers_are_exactly_the_flows_that_could_never_work(doc: dict[str, Any]) -> None:
    """The refusal and the intent agree: a flow to (from) pods of the namespace by podSelector alone is refused
    in scope Namespace exactly when, for those pods (in no tier), the intent allows nothing of it; when it is
    accepted, the intent allows the declared ports to them."""
    try:
        model = AppTopology.model_validate(copy.deepcopy(doc))
    except ValueError:
        return
    refused = {i.path for i in model_issues(model)}
    intent = Intent(model)
    inventory = synthesize(model)
    for i, flow in enumerate(model.spec.flows):
        for side, peer, other in (("to", flow.to, flow.from_), ("from", flow.from_, flow.to)):
            if peer.pod_selector is None or peer.namespace_selector is not None:
                continue
            loose = [p for p in inventory.pods if intent.matches(peer, p, inventory) and not intent.tiers_of(p)]
            # The tier side's pods in that tier only: a pod in several tiers follows the isolating ones.
            partners = [e for e in inventory.pods if intent.tiers_of(e) == [other.tier]]
            pairs = [(q, p) if side == "to" else (p, q) for p in loose for q in partners if q != p]
            if f"spec.flows[{i}].{side}.podSelector" in refused:
                assert all(intent.allowed(a, b, inventory).is_empty for a, b in pairs)
            else:
                for a, b in pairs:
                    declared = Intent.ports(flow.ports, b)
                    assert declared.difference(intent.allowed(a, b, inventory)).is_empty


def test_same_namespace_peer_refusal_messages() -> None:
    flows = [
        {"from": {"tier": "api"}, "to": {"podSelector": {"matchLabels": {"app": "redis"}}}},
        {"from": {"podSelector": {"matchLabels": {"app": "job"}}}, "to": {"tier": "api"}},
        {"from": {"tier": "api"}, "to": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "x"}}}},
    ]
    with pytest.raises(InvalidTopology) as info:
        shop(flows=flows)
    issues = {i.path: i.message for i in info.value.issues}
    assert set(issues) == {"spec.flows[0].to.podSelector", "spec.flows[1].from.podSelector"}
    assert issues["spec.flows[0].to.podSelector"].startswith(
        "pods {app=redis} of this namespace are isolated for ingress by this topology's own default-deny"
    )
    assert "tiers: [{name: NAME, podSelector: {matchLabels: {app: redis}}}]" in issues["spec.flows[0].to.podSelector"]
    assert "spec.defaultDeny.scope: Tiers" in issues["spec.flows[1].from.podSelector"]
    # Where the direction is open, or in scope Tiers, the peer is not isolated by the topology: accepted.
    shop(flows=flows[:1], defaultDeny={"ingress": False})
    shop(flows=flows[1:2], defaultDeny={"egress": False})
    shop(flows=flows, defaultDeny={"scope": "Tiers"})
    with pytest.raises(InvalidTopology) as info:
        shop(dns={"namespaceSelector": None})
    assert [i.path for i in info.value.issues] == ["spec.dns.namespaceSelector"]
    shop(dns={"namespaceSelector": None}, defaultDeny={"ingress": False})


def test_anywhere_egress_is_every_destination_but_the_metadata_service() -> None:
    """Evaluated: web reaches pods of any namespace and any address, never 169.254.169.254 or fd00:ec2::254;
    api names the metadata service (GKE: its DNS on 169.254.169.254:53) and reaches it on that port only."""
    topology = shop(
        flows=[
            {"from": {"tier": "web"}, "to": {"anywhere": True}},
            {"from": {"tier": "api"}, "to": {"cloudMetadata": True}, "ports": [{"port": 53, "protocol": "UDP"}]},
        ],
        dns={"enabled": False},
        defaultDeny={"ingress": False},
    )
    far = Pod("elsewhere", "far", {"x": "y"}, ip="10.1.2.3")
    externals = tuple(External(a) for a in ("169.254.169.254/32", "fd00:ec2::254/128", "169.254.169.253/32"))
    web, api = Pod("prod", "web", {"app": "web"}), Pod("prod", "api", {"app": "api"})
    inventory = Inventory((), (web, api, far), (*externals, External("0.0.0.0/0"), External("::/0")))
    evaluator = Evaluator(render(topology), inventory)
    metadata4, metadata6, neighbour = externals
    assert evaluator.allowed(web, far).is_all and evaluator.allowed(web, neighbour).is_all
    assert evaluator.allowed(web, metadata4).is_empty and evaluator.allowed(web, metadata6).is_empty
    assert evaluator.allowed(api, metadata4) == PortSet.of("UDP", 53)
    assert evaluator.allowed(api, neighbour).is_empty
    assert verify(topology, render(topology), inventory) == []
    # The classic mistake, egress to anywhere as a rule without `to`, is caught on the synthesized inventory.
    policies = render(topology)
    _policy(policies, "shop.tier-web")["spec"]["egress"] = [{}]
    found = differences(topology, policies)
    assert found and all("extra" in line and "cloud metadata" in line for line in found), found


# Mutations: each classic mistake must be reported by verify. ----------------------------------------


def test_and_peer_split_into_or_is_caught() -> None:
    topology = shop()
    policies = render(topology)
    rule = _policy(policies, "shop.tier-api")["spec"]["ingress"]
    for r in rule:
        split = []
        for peer in r.get("from", []):
            if "namespaceSelector" in peer and "podSelector" in peer:
                split += [{"namespaceSelector": peer["namespaceSelector"]}, {"podSelector": peer["podSelector"]}]
            else:
                split.append(peer)
        r["from"] = split
    assert any("extra" in line for line in differences(topology, policies))


def test_missing_dns_is_caught() -> None:
    topology = shop()
    policies = [p for p in render(topology) if p["metadata"]["name"] != "shop.allow-dns"]
    found = differences(topology, policies)
    assert found and all("missing" in line for line in found)
    assert any("dns-pod" in line for line in found)


def test_egress_rule_in_non_isolated_direction_is_caught() -> None:
    """An egress rule on a pod whose egress the topology leaves open would isolate it: connectivity lost."""
    topology = shop(defaultDeny={"egress": False})
    policies = render(topology)
    api = _policy(policies, "shop.tier-api")
    api["spec"]["policyTypes"] = ["Ingress", "Egress"]
    api["spec"]["egress"] = [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]}]
    assert any("missing" in line for line in differences(topology, policies))


def test_wider_port_is_caught() -> None:
    topology = shop()
    policies = render(topology)
    # Widening db's ingress alone changes nothing (api's egress still only reaches 5432); web's ingress
    # from anywhere is what the internet sees.
    _policy(policies, "shop.tier-db")["spec"]["ingress"][0]["ports"][0]["endPort"] = 5440
    assert differences(topology, policies) == []
    _policy(policies, "shop.tier-web")["spec"]["ingress"][0]["ports"][0]["endPort"] = 450
    assert any("extra" in line and "TCP/444-450" in line for line in differences(topology, policies))


def test_missing_default_deny_is_caught() -> None:
    topology = shop()
    policies = [p for p in render(topology) if p["metadata"]["name"] != "shop.default-deny"]
    assert any("unlabelled" in line for line in differences(topology, policies))


# Random topologies (tests/strategies.py) -----------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topologies())
def test_random_topologies_render_to_exactly_their_intent(doc: dict[str, Any]) -> None:
    try:
        topology = parse_topology(copy.deepcopy(doc))
    except InvalidTopology:
        return  # the strategy can build a few invalid combinations; validation is tested elsewhere
    assert differences(topology) == []


@settings(max_examples=60, deadline=None)
@given(topologies())
def test_intent_is_symmetric_in_its_directions(doc: dict[str, Any]) -> None:
    """allowed == egress AND ingress, and non-isolated sides never restrict (sanity of the intent itself)."""
    try:
        topology = parse_topology(copy.deepcopy(doc))
    except InvalidTopology:
        return
    inventory = synthesize(topology)
    intent = Intent(topology)
    for src in inventory.endpoints:
        for dst in inventory.endpoints:
            both = intent.allowed(src, dst, inventory)
            assert both == intent.egress(src, dst, inventory).intersection(intent.ingress(src, dst, inventory))
            if isinstance(src, External) and isinstance(dst, External | Pod) and not intent.isolated(dst, "ingress"):
                assert both.is_all
