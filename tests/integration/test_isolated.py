"""The Isolated condition on the real API server, one test per verdict (issue 20, findings 2 and 3).

Isolated says whether other NetworkPolicies of the namespace open this topology's pods beyond what it
declares. It is judged on the policies as a LIST returns them (items without kind: the first version judged
an empty namespace), and follows any other policy of the namespace within seconds, not at the next resync.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from harness import Cluster, ControlPlane, Operator, load_example, wait_for
from kubernetes import client
from test_operator import wait_ready
from truth import assert_truthful

pytestmark = pytest.mark.integration

SECONDS = 15  # "within seconds": the operator queues the namespace's topologies 1 s after a policy event


def isolated(cluster: Cluster, namespace: str, name: str = "shop") -> dict[str, Any] | None:
    obj = cluster.get(namespace, name)
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Isolated"), None)


def wait_isolated(
    cluster: Cluster, namespace: str, status: str, name: str = "shop", timeout: float = SECONDS
) -> dict[str, Any]:
    return dict(
        wait_for(
            lambda: (c := isolated(cluster, namespace, name)) and c["status"] == status and c,
            timeout=timeout,
            what=f"{namespace}/{name} Isolated={status}",
        )
    )


def tenant_policy(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name}, "spec": spec}


def create_policy(cp: ControlPlane, namespace: str, name: str, spec: dict[str, Any]) -> None:
    client.NetworkingV1Api(cp.api).create_namespaced_network_policy(namespace, tenant_policy(namespace, name, spec))


DENY_ALL = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
ALLOW_ALL_TO_API = {"podSelector": {"matchLabels": {"tier": "api"}}, "policyTypes": ["Ingress"], "ingress": [{}]}


def test_alone(cluster: Cluster, running_operator: Operator, namespace: str) -> None:
    cluster.create(load_example("three-tier.yaml"), namespace)
    wait_ready(cluster, namespace, "shop")
    cond = wait_isolated(cluster, namespace, "True")
    assert cond["reason"] == "Alone"
    assert_truthful(cluster, namespace)


def test_a_benign_foreign_deny_is_still_alone(
    cluster: Cluster, controlplane: ControlPlane, running_operator: Operator, namespace: str
) -> None:
    """The tenant's deny-all opens nothing. (The first version judged the topology against an empty list
    of policies and reported 90 pairs opened.)"""
    create_policy(controlplane, namespace, "tenant-deny-all", DENY_ALL)
    cluster.create(load_example("three-tier.yaml"), namespace)
    wait_ready(cluster, namespace, "shop")
    cond = wait_isolated(cluster, namespace, "True")
    assert cond["reason"] == "Alone", cond


def test_a_foreign_allow_all_is_named_within_seconds_and_its_removal_too(
    cluster: Cluster, controlplane: ControlPlane, running_operator: Operator, namespace: str
) -> None:
    cluster.create(load_example("three-tier.yaml"), namespace)
    wait_ready(cluster, namespace, "shop")
    wait_isolated(cluster, namespace, "True")
    create_policy(controlplane, namespace, "tenant-deny-all", DENY_ALL)
    time.sleep(3)
    assert (isolated(cluster, namespace) or {}).get("reason") == "Alone"
    created = time.monotonic()
    create_policy(controlplane, namespace, "tenant-allow-api", ALLOW_ALL_TO_API)
    cond = wait_isolated(cluster, namespace, "False")
    print(f"OpenedByOthers {time.monotonic() - created:.1f}s after the tenant's policy")
    assert cond["reason"] == "OpenedByOthers"
    # The pair (from anywhere to the api tier, which admits only the frontend) and the policy responsible.
    assert "-> api: all" in cond["message"] and f"{namespace}/tenant-allow-api ingress[0]" in cond["message"], cond
    client.NetworkingV1Api(controlplane.api).delete_namespaced_network_policy("tenant-allow-api", namespace)
    assert wait_isolated(cluster, namespace, "True")["reason"] == "Alone"


def test_another_topologys_policy_opening_a_pod(cluster: Cluster, running_operator: Operator, namespace: str) -> None:
    cluster.create(load_example("three-tier.yaml"), namespace)
    wait_ready(cluster, namespace, "shop")
    wait_isolated(cluster, namespace, "True")
    # ops's only tier selects shop's database pods and lets anyone in on 22.
    ops = {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": "ops"},
        "spec": {
            "tiers": [{"name": "ssh", "podSelector": {"matchLabels": {"tier": "database"}}}],
            "flows": [{"from": {"anywhere": True}, "to": {"tier": "ssh"}, "ports": [{"port": 22}]}],
        },
    }
    cluster.create(ops, namespace)
    wait_ready(cluster, namespace, "ops")
    cond = wait_isolated(cluster, namespace, "False")
    assert cond["reason"] == "OpenedByOthers"
    assert "-> database: TCP/22" in cond["message"] and f"{namespace}/ops.tier-ssh" in cond["message"], cond


def test_a_restart_re_evaluates_and_writes_nothing_when_nothing_changed(
    cluster: Cluster, controlplane: ControlPlane, running_operator: Operator, namespace: str
) -> None:
    doc = load_example("three-tier.yaml")
    cluster.create(doc, namespace)
    other = copy.deepcopy(doc)
    other["metadata"]["name"] = "billing"
    for tier in other["spec"]["tiers"]:  # pods of its own
        tier["podSelector"]["matchLabels"]["tier"] = "billing-" + tier["name"]
    cluster.create(other, namespace)
    for name in ("shop", "billing"):
        wait_ready(cluster, namespace, name)
        wait_isolated(cluster, namespace, "True", name)
    # A tenant's policy while the operator is down: the stored verdict is stale, the restart sees it.
    running_operator.stop()
    create_policy(controlplane, namespace, "tenant-allow-api", ALLOW_ALL_TO_API)
    running_operator.start()
    assert "tenant-allow-api" in wait_isolated(cluster, namespace, "False")["message"]
    assert (isolated(cluster, namespace, "billing") or {}).get("reason") == "Alone"
    time.sleep(3)
    # Nothing changes across a second restart: every topology is judged again, and nothing is written.
    running_operator.stop()
    before = len(controlplane.audit_writes())
    running_operator.start()
    time.sleep(8)
    writes = [w for w in controlplane.audit_writes()[before:] if w["objectRef"].get("namespace") == namespace]
    assert writes == [], [(w["verb"], w["objectRef"].get("resource"), w["objectRef"].get("name")) for w in writes]
