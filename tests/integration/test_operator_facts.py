"""The operator follows the cluster's facts: the DNS Service (dns.discover) and the API server's endpoints
(kubeAPI), read with namespaced Roles only, and re-rendered when they change."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import yaml
from harness import Cluster, ControlPlane, Operator, wait_for
from kubernetes import client
from test_cluster_facts import EXAMPLE, dns_objects, peers_on  # noqa: F401 (dns_objects is a fixture)
from test_operator import wait_ready

pytestmark = pytest.mark.integration


def agent_policy(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return cluster.policies(namespace)["platform-agent.tier-agent"]


def test_operator_renders_from_the_cluster_and_follows_changes(
    cluster: Cluster,
    controlplane: ControlPlane,
    running_operator: Operator,
    namespace: str,
    dns_objects: client.CoreV1Api,  # noqa: F811
) -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["spec"]["flows"] = [f for f in doc["spec"]["flows"] if "anywhere" not in f["to"]]
    cluster.create(doc, namespace)
    wait_ready(cluster, namespace, "platform-agent")
    dns = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
    # The DNS peer is the Service's (same selector as spec.dns's default here), and the status says so.
    wait_for(
        lambda: (
            "kube-system/kube-dns"
            in ((cluster.get(namespace, "platform-agent") or {}).get("status") or {}).get("dns", "")
        ),
        what="status.dns resolved from the kube-dns Service",
    )
    assert dns in peers_on(agent_policy(cluster, namespace), 53)
    assert {"ipBlock": {"cidr": "169.254.20.10/32"}} in peers_on(agent_policy(cluster, namespace), 53)  # NodeLocal

    # The API server gets another address: the policy follows (within the facts interval).
    discovery = client.DiscoveryV1Api(controlplane.api)
    extra = {
        "metadata": {"name": "kubernetes-extra", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.9.9.9"], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
    }
    discovery.create_namespaced_endpoint_slice("default", extra)
    try:
        wait_for(
            lambda: {"ipBlock": {"cidr": "10.9.9.9/32"}} in peers_on(agent_policy(cluster, namespace), 6443),
            what="the new API server address in the policy",
        )
    finally:
        with contextlib.suppress(client.ApiException):
            discovery.delete_namespaced_endpoint_slice("kubernetes-extra", "default")
    wait_for(
        lambda: {"ipBlock": {"cidr": "10.9.9.9/32"}} not in peers_on(agent_policy(cluster, namespace), 6443),
        what="the address gone again",
    )

    # The DNS pods move to 5353 (as OpenShift's do).
    current = dns_objects.read_namespaced_service("kube-dns", "kube-system")
    for port in current.spec.ports:
        if port.port == 53:
            port.target_port = 5353
    dns_objects.replace_namespaced_service("kube-dns", "kube-system", current)
    wait_for(lambda: dns in peers_on(agent_policy(cluster, namespace), 5353), what="DNS on 5353")
    wait_ready(cluster, namespace, "platform-agent")
