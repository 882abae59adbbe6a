"""The pure parts of the dataplane suite, without a dataplane: they run (and can fail) everywhere."""

from __future__ import annotations

from typing import Any

from harness import load_example
from kuberouter import KubeRouterModel, resolve_catch_all_named_ports, shared_chain_allows
from matrix import UNRELATED_PORT, probe_ports

from apptopology.analysis.intent import synthesize
from apptopology.evaluator import ContainerPort, Evaluator, External, Inventory, Namespace, Pod, parse_policies
from apptopology.render.validation import parse_topology


def policy(name: str, spec: dict[str, Any], namespace: str = "ns") -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}  # fmt: skip


def test_probe_ports_cover_declared_ports_their_neighbours_both_protocols_and_named_ports() -> None:
    topology = parse_topology(load_example("cross-namespace.yaml"))
    ports = probe_ports(topology, synthesize(topology))
    numbers = {p.port for p in ports}
    assert {8080, 8081, 6379, 6380, 6999, 7000, 7005, 7006, 53, 54, UNRELATED_PORT} <= numbers
    assert {(p.port, p.protocol) for p in ports} == {(n, proto) for n in numbers for proto in ("TCP", "UDP")}
    named = [p for p in ports if p.name]
    assert [p.name for p in named] == ["http"] and named[0].protocol == "TCP"


def test_named_port_rewrite_touches_only_egress_rules_without_peers() -> None:
    a = Pod("ns", "a", {"app": "a"}, ip="10.244.1.1", ports=(ContainerPort("http", 8080),))
    other = Pod("elsewhere", "b", {}, ip="10.244.1.2", ports=(ContainerPort("http", 9999),))
    inventory = Inventory((Namespace("ns"), Namespace("elsewhere")), (a, other))
    catch_all = {"ports": [{"port": "http"}, {"port": 443}]}
    to_pods = {"to": [{"podSelector": {}}], "ports": [{"port": "http"}]}
    nothing = {"ports": [{"port": "metrics"}]}
    spec = {"podSelector": {}, "policyTypes": ["Egress"], "egress": [catch_all, to_pods, nothing]}
    [rewritten] = resolve_catch_all_named_ports([policy("p", spec)], inventory)
    rules = rewritten["spec"]["egress"]
    assert rules[0]["ports"] == [{"port": 8080, "protocol": "TCP"}, {"port": 443}]  # resolved in ns only
    assert rules[1] == to_pods  # with peers, kube-router resolves on the destinations, as the API says
    assert len(rules) == 2  # a rule whose named port nobody declares allows nothing (not all ports)


def test_model_predicts_both_deviations_and_nothing_else() -> None:
    a = Pod("ns", "a", {"app": "a"}, ip="10.244.1.1", ports=(ContainerPort("http", 8080),))
    b = Pod("ns", "b", {"app": "b"}, ip="10.244.1.2", ports=(ContainerPort("http", 8080),))
    world = External("203.0.113.7/32")
    inventory = Inventory((Namespace("ns"),), (a, b), (world,))
    shared = policy("both", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                             "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": 8080}]}]})  # fmt: skip
    named = policy("named", {"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"],
                             "egress": [{"ports": [{"port": "http"}]}]})  # fmt: skip
    for policies, src, dst, deviation in (
        ([shared], a, b, "shared-chain"),
        ([named], a, world, "named-port-everywhere"),
    ):
        explain = Evaluator(parse_policies(policies), inventory)
        assert not explain.explain(src, dst, "TCP", 8080).allowed
        model = KubeRouterModel(policies, inventory, explain)
        assert model.allows(src, dst, "TCP", 8080) == (True, deviation)
        assert model.allows(src, dst, "TCP", 9090) == (False, None)
    # Where explain allows, the model does too and names no deviation.
    explain = Evaluator(parse_policies([named]), inventory)
    assert KubeRouterModel([named], inventory, explain).allows(a, b, "TCP", 8080) == (True, None)
    assert shared_chain_allows(explain.explain(a, b, "TCP", 8080))
