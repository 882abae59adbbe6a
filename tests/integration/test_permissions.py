"""Permissions lost at runtime (issue 20, finding 5), on the real API server with deploy/'s RBAC: the
operator keeps running, fails closed on what it may no longer read, says so (Ready, an Event, a metric),
and converges when the permission returns. The first version retried the refused watch, then exited, and
every restart failed in its first LIST, while topologies stayed Ready=True.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import pytest
from harness import ROOT, Cluster, ControlPlane, Operator, load_example, wait_for
from kubernetes import client
from test_operator import wait_ready
from truth import assert_truthful

pytestmark = pytest.mark.integration

ROLE = "apptopology-operator"
SECONDS = 30


@contextlib.contextmanager
def without(cp: ControlPlane, resource: str) -> Iterator[None]:
    """The operator's ClusterRole without its rule for ``resource``; deploy/ applied again afterwards."""
    rbac = client.RbacAuthorizationV1Api(cp.api)
    role = rbac.read_cluster_role(ROLE)
    role.rules = [r for r in role.rules if resource not in (r.resources or [])]
    rbac.replace_cluster_role(ROLE, role)
    try:
        yield
    finally:
        cp.kubectl("apply", "-k", str(ROOT / "deploy"))


def condition(cluster: Cluster, namespace: str, reason: str, name: str = "shop") -> dict[str, Any]:
    return dict(
        wait_for(
            lambda: (c := cluster.ready(namespace, name)) and c["reason"] == reason and c,
            timeout=SECONDS,
            what=f"{namespace}/{name} Ready reason {reason}",
        )
    )


def events(cp: ControlPlane, namespace: str, reason: str) -> list[Any]:
    items = client.CoreV1Api(cp.api).list_namespaced_event(namespace).items
    return [e for e in items if e.reason == reason]


def guardrail(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "TopologyGuardrail",
        "metadata": {"name": f"no-backoffice-{namespace}"},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "forbiddenCIDRs": [{"cidr": "10.9.0.0/16", "direction": "Egress"}],
        },
    }


def shop() -> dict[str, Any]:
    doc = load_example("three-tier.yaml")
    doc["spec"]["flows"].append(
        {"from": {"tier": "api"}, "to": {"ipBlock": {"cidr": "10.9.0.0/16"}}, "ports": [{"port": 443}]}
    )
    return doc


def backoffice(cluster: Cluster, namespace: str) -> bool:
    return "10.9.0.0/16" in str(cluster.policies(namespace)["shop.tier-api"]["spec"])


def test_guardrails_unreadable_at_runtime_fail_closed_and_converge(
    cluster: Cluster, controlplane: ControlPlane, running_operator: Operator, namespace: str
) -> None:
    doc = shop()
    cluster.create(doc, namespace)
    wait_ready(cluster, namespace, "shop")
    custom = client.CustomObjectsApi(controlplane.api)
    rail = guardrail(namespace)
    try:
        with without(controlplane, "topologyguardrails"):
            cond = condition(cluster, namespace, "GuardrailsUnreadable")
            assert cond["status"] == "False" and "topologyguardrails" in cond["message"], cond
            assert running_operator.healthy()
            assert running_operator.metrics()['apptopology_readable{resource="topologyguardrails"}'] == 0
            assert events(controlplane, namespace, "GuardrailsUnreadable")
            # An edit, and a guardrail the operator cannot see: nothing changes while it cannot read them.
            before = cluster.policies(namespace)
            spec = copy.deepcopy(doc["spec"])
            spec["flows"].append({"from": {"tier": "api"}, "to": {"ipBlock": {"cidr": "10.8.0.0/16"}}})
            cluster.patch_spec(namespace, "shop", spec)
            wait_for(
                lambda: (c := cluster.ready(namespace, "shop")) and c["reason"] == "GuardrailsUnreadable",
                what="the edit observed, and not applied",
            )
            custom.create_cluster_custom_object("apptopology.io", "v1alpha1", "topologyguardrails", rail)
            assert cluster.policies(namespace) == before
            assert_truthful(cluster, namespace)
        # The permission returns: the guardrail is enforced, the edit applied.
        cond = condition(cluster, namespace, "GuardrailViolation")
        assert rail["metadata"]["name"] in cond["message"]
        wait_for(lambda: not backoffice(cluster, namespace), what="the forbidden flow left out")
        assert "10.8.0.0/16" in str(cluster.policies(namespace)["shop.tier-api"]["spec"])
        assert running_operator.metrics()['apptopology_readable{resource="topologyguardrails"}'] == 1
    finally:
        with contextlib.suppress(client.ApiException):
            custom.delete_cluster_custom_object(
                "apptopology.io", "v1alpha1", "topologyguardrails", rail["metadata"]["name"]
            )
    wait_ready(cluster, namespace, "shop", timeout=SECONDS)


def test_a_restart_without_the_permission_starts_and_fails_closed(
    cluster: Cluster, controlplane: ControlPlane, running_operator: Operator, namespace: str
) -> None:
    cluster.create(shop(), namespace)
    wait_ready(cluster, namespace, "shop")
    running_operator.stop()
    with without(controlplane, "topologyguardrails"):
        running_operator.start()  # the first version failed here, in its first LIST
        condition(cluster, namespace, "GuardrailsUnreadable")
        assert running_operator.healthy()
    wait_ready(cluster, namespace, "shop", timeout=SECONDS)
    assert backoffice(cluster, namespace)
    assert_truthful(cluster, namespace)


def test_policies_unreadable_are_reported(
    cluster: Cluster, controlplane: ControlPlane, running_operator: Operator, namespace: str
) -> None:
    cluster.create(shop(), namespace)
    wait_ready(cluster, namespace, "shop")
    with without(controlplane, "networkpolicies"):
        cond = condition(cluster, namespace, "PermissionDenied")
        assert cond["status"] == "False" and "networkpolicies" in cond["message"], cond
        assert running_operator.healthy()
    wait_ready(cluster, namespace, "shop", timeout=SECONDS)
    assert_truthful(cluster, namespace)
