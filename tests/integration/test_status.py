"""Status that explains, on the real API server: what each tier selects now, and what looks wrong.

Pods here are API objects only (no kubelet runs them): their labels, IPs and container ports are what the
operator reads.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from harness import OPERATOR_USER, Cluster, ControlPlane, Operator, wait_for
from kubernetes import client

pytestmark = pytest.mark.integration


def pod(name: str, labels: dict[str, str], ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/none:1", "ports": ports or []}]},
    }


TOPOLOGY = {
    "apiVersion": "apptopology.io/v1alpha1",
    "kind": "AppTopology",
    "metadata": {"name": "shop"},
    "spec": {
        "tiers": [
            {"name": "web", "podSelector": {"matchLabels": {"tier": "web"}}},
            {"name": "api", "podSelector": {"matchLabels": {"tier": "api"}}},
            {"name": "batch", "podSelector": {"matchLabels": {"tier": "batch"}}},
        ],
        "flows": [
            {"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": [{"port": "http"}]},
            {
                "from": {"namespaceSelector": {"matchLabels": {"team": "nobody"}}},
                "to": {"tier": "api"},
                "ports": [{"port": 9090}],
            },
        ],
    },
}


def status(cluster: Cluster, namespace: str) -> dict[str, Any]:
    obj = cluster.get(namespace, "shop")
    assert obj is not None
    return dict(obj.get("status") or {})


def tiers(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in status(cluster, namespace).get("tiers") or []}


def test_tiers_say_what_they_select_and_what_is_wrong(
    cluster: Cluster, controlplane: ControlPlane, running_operator: Operator, namespace: str
) -> None:
    core = client.CoreV1Api(controlplane.api)
    core.create_namespaced_pod(namespace, pod("web-1", {"tier": "web"}))
    core.create_namespaced_pod(namespace, pod("api-1", {"tier": "api"}, [{"name": "web", "containerPort": 8080}]))
    cluster.create(TOPOLOGY, namespace)
    found = wait_for(lambda: (t := tiers(cluster, namespace)) and t.get("web", {}).get("pods") == 1 and t, what="tiers")
    assert found["api"]["pods"] == 1 and found["batch"]["pods"] == 0
    warnings = " | ".join(w for t in found.values() for w in t.get("warnings") or [])
    assert "selects no pods" in warnings  # batch
    assert "named port http/TCP is declared by none of its pods" in warnings  # api declares "web", not "http"
    assert "matches no namespace" in warnings  # team=nobody
    top = status(cluster, namespace)
    # The fourth: this control plane runs no DNS pods, so every isolated pod would fail to resolve names.
    assert top["podCount"] == 2 and top["warningCount"] == 4, top
    assert top["warnings"] == ["spec.dns selects no pod: name resolution of every isolated pod will fail"]

    table = controlplane.kubectl("get", "topo", "-n", namespace, "shop").stdout.split()
    assert table[:7] == ["NAME", "READY", "TIERS", "POLICIES", "PODS", "WARNINGS", "AGE"]
    assert table[7:13] == ["shop", "True", "3", "4", "2", "4"]
    described = controlplane.kubectl("describe", "topo", "-n", namespace, "shop").stdout
    assert "selects no pods" in described and "Pods:" in described

    # A new pod in a tier: the summary changes, and so does the status.
    core.create_namespaced_pod(namespace, pod("batch-1", {"tier": "batch"}))
    wait_for(lambda: tiers(cluster, namespace)["batch"]["pods"] == 1, what="batch counted")
    assert status(cluster, namespace)["warningCount"] == 3

    # A pod's status changing (what a kubelet does all day) changes no summary: no status write.
    time.sleep(2)

    def status_writes() -> int:
        return sum(
            1
            for w in controlplane.audit_writes(OPERATOR_USER)
            if w["objectRef"].get("subresource") == "status" and w["objectRef"].get("namespace") == namespace
        )

    before = status_writes()
    api = core.read_namespaced_pod("api-1", namespace)
    api.status.pod_ip = None
    api.status.conditions = [{"type": "Ready", "status": "False"}]
    core.replace_namespaced_pod_status("api-1", namespace, api)
    time.sleep(3)
    assert status_writes() == before
