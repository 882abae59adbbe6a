"""kube-router 2.1.0's two deviations from the NetworkPolicy API, each in its smallest form (kuberouter.py).

Hand-written policies, no operator involved: each test shows explain's answer (the API's), the packet, and
the model's prediction, and a control variant where kube-router is right. If an upgrade of kube-router
fixes a deviation, its test fails and says to remove the deviation from the model: the probe matrix
must never excuse what the dataplane no longer does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kuberouter import KubeRouterModel

from apptopology.evaluator import ContainerPort as CP
from apptopology.evaluator import Evaluator, External, Inventory, Namespace, Pod, parse_policies
from dataplane import Dataplane, Port

FIXED = "kube-router no longer shows this deviation: remove it from kuberouter.py (and the README's Findings)"


@pytest.fixture()
def space(dataplane: Dataplane) -> Iterator[str]:
    """A namespace of its own; its pods, external clients and policies are removed afterwards."""
    name = "finding"
    dataplane.ensure_namespace(name, {})
    before = set(dataplane.endpoints)
    yield name
    net = client.NetworkingV1Api(dataplane.api)
    for policy in dataplane.k(net.list_namespaced_network_policy, name).items:
        dataplane.k(net.delete_namespaced_network_policy, policy.metadata.name, name)
    dataplane.remove(set(dataplane.endpoints) - before)
    dataplane.settle()


def apply(dp: Dataplane, namespace: str, *policies: dict[str, Any]) -> list[dict[str, Any]]:
    net = client.NetworkingV1Api(dp.api)
    out = []
    for spec in policies:
        body = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", **spec}
        body["metadata"] = {**body["metadata"], "namespace": namespace}
        dp.k(net.create_namespaced_network_policy, namespace, body)
        out.append(body)
    dp.settle()
    return out


def pod(dp: Dataplane, namespace: str, name: str) -> Pod:
    e = dp.endpoint(f"{namespace}/{name}")
    return Pod(namespace, name, e.labels, ip=e.ip, ports=tuple(CP(p.name, p.port, p.protocol) for p in e.ports))


def test_shared_chain_one_policy_selecting_both_ends(dataplane: Dataplane, space: str) -> None:
    """One policy of both types selects a and b, admits ingress on 8080 and allows no egress at all.

    API: a's egress is isolated with no egress rule, so a -> b is denied. kube-router: a's firewall chain
    runs the policy's single chain, whose ingress rule (from the namespace's pods to the policy's pods on
    8080) matches a -> b, so a's egress passes. Split into two policies, one per direction, it is refused.
    """
    dp = dataplane
    ports = [Port(8080), Port(9090)]
    dp.add_pods([(space, "a", {"app": "a"}, ports), (space, "b", {"app": "b"}, ports)])
    both: dict[str, Any] = {
        "metadata": {"name": "both-directions"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": 8080}]}],
        },
    }
    policies = apply(dp, space, both)
    inventory = Inventory((Namespace(space),), (pod(dp, space, "a"), pod(dp, space, "b")))
    evaluator = Evaluator(parse_policies(policies), inventory)
    a, b = inventory.pods
    assert not evaluator.explain(a, b, "TCP", 8080).allowed
    assert KubeRouterModel(policies, inventory, evaluator).allows(a, b, "TCP", 8080) == (True, "shared-chain")
    assert dp.probe(f"{space}/a", f"{space}/b", 8080).open, FIXED
    assert not dp.probe(f"{space}/a", f"{space}/b", 9090).open  # no rule on 9090 in either direction
    assert dp.probe("node", f"{space}/b", 9090).open  # positive control: the server is there

    # The same rules as two policies, one per direction: kube-router agrees with the API.
    net = client.NetworkingV1Api(dp.api)
    dp.k(net.delete_namespaced_network_policy, "both-directions", space)
    ingress = {**both, "metadata": {"name": "ingress"}, "spec": {**both["spec"], "policyTypes": ["Ingress"]}}
    egress = {"metadata": {"name": "egress"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
    split = apply(dp, space, ingress, egress)
    evaluator = Evaluator(parse_policies(split), inventory)
    assert KubeRouterModel(split, inventory, evaluator).allows(a, b, "TCP", 8080) == (False, None)
    result = dp.probe(f"{space}/a", f"{space}/b", 8080)
    assert not result.open and result.outcome == "refused"


def test_named_port_in_an_egress_rule_without_peers_reaches_everything(dataplane: Dataplane, space: str) -> None:
    """a may reach "any destination" on the named port http; a's namespace declares http as 8080.

    API: a named port only matches a destination pod that declares it, so the client outside the cluster
    (which declares nothing) is not reachable on 8080. kube-router resolves http on the namespace's pods
    and allows TCP/8080 to every address.
    """
    dp = dataplane
    dp.add_pods([(space, "a", {"app": "a"}, [Port(8080, "TCP", "http"), Port(9090)])])
    outside = dp.add_external("finding-outside", "203.0.113.77", [Port(8080), Port(9090)])
    policies = apply(
        dp,
        space,
        {
            "metadata": {"name": "named-port-anywhere"},
            "spec": {
                "podSelector": {"matchLabels": {"app": "a"}},
                "policyTypes": ["Egress"],
                "egress": [{"ports": [{"port": "http"}]}],
            },
        },
    )
    a = pod(dp, space, "a")
    world = External("203.0.113.77/32")
    inventory = Inventory((Namespace(space),), (a,), (world,))
    evaluator = Evaluator(parse_policies(policies), inventory)
    assert not evaluator.explain(a, world, "TCP", 8080).allowed
    model = KubeRouterModel(policies, inventory, evaluator)
    assert model.allows(a, world, "TCP", 8080) == (True, "named-port-everywhere")
    assert model.allows(a, world, "TCP", 9090) == (False, None)
    assert dp.probe(f"{space}/a", outside.key, 8080).open, FIXED
    assert not dp.probe(f"{space}/a", outside.key, 9090).open
    assert dp.probe("node", outside.key, 9090).open  # positive control
