"""The operator's API module reuses its connections: every call gives its connection back, including the
ones whose answer nobody reads (status, events, deletes). A leaked one costs a new TLS handshake on both
sides for the next request; at 1,000 topologies that was most of the operator's time in the profile."""

from __future__ import annotations

from typing import Any

from harness import ControlPlane
from kubernetes import client

from apptopology.controller.kube import Kube


def connections_opened(api: client.ApiClient) -> int:
    pools = api.rest_client.pool_manager.pools
    return sum(pools[key].num_connections for key in list(pools.keys()))


def test_every_call_gives_its_connection_back(controlplane: ControlPlane, namespace: str) -> None:
    api = client.ApiClient(controlplane.api.configuration)
    kube = Kube(api)
    topology: dict[str, Any] = {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": {"tiers": [{"name": "api", "podSelector": {"matchLabels": {"app": "api"}}}]},
    }
    created = client.CustomObjectsApi(controlplane.api).create_namespaced_custom_object(
        "apptopology.io", "v1alpha1", namespace, "apptopologies", topology
    )
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": namespace},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
    for i in range(5):
        kube.get_topology(namespace, "shop")
        kube.patch_status(namespace, "shop", {"observedGeneration": i}, "")
        kube.event(created, "Normal", "Applied", f"test {i}")
        live = kube.apply_policy(policy, None, dry_run=True)
        live = kube.apply_policy(policy, None)
        kube.list_policies(namespace)
        kube.get_policy(namespace, "p")
        kube.delete_policy(namespace, "p", str(live["metadata"]["uid"]))
        kube.delete_policy(namespace, "p", str(live["metadata"]["uid"]))  # already gone: 404, ignored
        kube.get_topology(namespace, "missing")  # 404
    assert connections_opened(api) == 1
