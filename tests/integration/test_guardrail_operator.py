"""A TopologyGuardrail that arrives after a topology was admitted: the operator stops enforcing what it
forbids (the safe direction), keeps enforcing the rest, says so in Ready, and gives it back when the
guardrail goes."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from harness import Cluster, ControlPlane, Operator, load_example, wait_for
from kubernetes import client
from test_operator import wait_ready

pytestmark = pytest.mark.integration


def has_cidr(policy: dict[str, Any], cidr: str) -> bool:
    return cidr in str(policy["spec"].get("egress") or [])


def test_a_new_guardrail_narrows_an_admitted_topology(
    cluster: Cluster, controlplane: ControlPlane, running_operator: Operator, namespace: str
) -> None:
    doc = load_example("three-tier.yaml")
    doc["spec"]["flows"].append(
        {"from": {"tier": "api"}, "to": {"ipBlock": {"cidr": "10.9.0.0/16"}}, "ports": [{"port": 443}]}
    )
    cluster.create(doc, namespace)
    wait_ready(cluster, namespace, "shop")
    before = cluster.policies(namespace)
    assert has_cidr(before["shop.tier-api"], "10.9.0.0/16")
    custom = client.CustomObjectsApi(controlplane.api)
    name = f"no-backoffice-{namespace}"
    rail = {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "TopologyGuardrail",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "forbiddenCIDRs": [{"cidr": "10.9.0.0/16", "direction": "Egress", "description": "the back office"}],
        },
    }
    custom.create_cluster_custom_object("apptopology.io", "v1alpha1", "topologyguardrails", rail)
    try:
        cond = wait_ready(cluster, namespace, "shop", status="False")
        assert cond["reason"] == "GuardrailViolation" and "spec.flows[3]" in cond["message"] and name in cond["message"]
        after = cluster.policies(namespace)
        assert not has_cidr(after["shop.tier-api"], "10.9.0.0/16")
        assert after["shop.tier-frontend"]["spec"] == before["shop.tier-frontend"]["spec"]  # the rest stays
    finally:
        with contextlib.suppress(client.ApiException):
            custom.delete_cluster_custom_object("apptopology.io", "v1alpha1", "topologyguardrails", name)
    wait_ready(cluster, namespace, "shop")
    wait_for(lambda: has_cidr(cluster.policies(namespace)["shop.tier-api"], "10.9.0.0/16"), what="flow back")
