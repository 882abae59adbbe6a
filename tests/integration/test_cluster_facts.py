"""`apptopology render --cluster` on the real control plane: DNS discovery, NodeLocal DNSCache and the API
server's addresses come from the cluster's own objects, and follow them when they change."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import ROOT, ControlPlane
from kubernetes import client

from apptopology.render.facts import kube_api_facts

EXAMPLE = ROOT / "examples" / "cluster-services.yaml"


def render_cluster(cp: ControlPlane, path: Path) -> tuple[dict[str, Any], str]:
    """The agent tier's policy as `render --cluster` prints it, and stderr."""
    env = {**os.environ, "KUBECONFIG": cp.kubeconfig}
    result = subprocess.run(
        [sys.executable, "-m", "apptopology.cli", "render", "--cluster", "-f", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    policies = {p["metadata"]["name"]: p for p in yaml.safe_load_all(result.stdout) if p}
    return policies["platform-agent.tier-agent"], result.stderr


def peers_on(policy: dict[str, Any], port: int) -> list[dict[str, Any]]:
    return [
        peer
        for rule in policy["spec"]["egress"]
        if any(p.get("port") == port for p in rule.get("ports", []))
        for peer in rule["to"]
    ]


@pytest.fixture()
def dns_objects(controlplane: ControlPlane) -> Iterator[client.CoreV1Api]:
    core = client.CoreV1Api(controlplane.api)
    apps = client.AppsV1Api(controlplane.api)
    core.create_namespaced_service(
        "kube-system",
        {
            "metadata": {"name": "kube-dns", "labels": {"k8s-app": "kube-dns"}},
            "spec": {
                "selector": {"k8s-app": "kube-dns"},
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
                ],
            },
        },
    )
    labels = {"k8s-app": "node-local-dns"}
    apps.create_namespaced_daemon_set(
        "kube-system",
        {
            "metadata": {"name": "node-local-dns", "labels": labels},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {"name": "node-cache", "image": "node-cache", "args": ["-localip", "169.254.20.10"]}
                        ]
                    },
                },
            },
        },
    )
    try:
        yield core
    finally:
        with contextlib.suppress(client.ApiException):
            core.delete_namespaced_service("kube-dns", "kube-system")
        with contextlib.suppress(client.ApiException):
            apps.delete_namespaced_daemon_set("node-local-dns", "kube-system")


def test_render_cluster_follows_the_clusters_dns_and_api_server(
    controlplane: ControlPlane, dns_objects: client.CoreV1Api, tmp_path: Path
) -> None:
    # The example without its flow to anywhere on 443, which would absorb the API's ClusterIP on 443.
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["spec"]["flows"] = [f for f in doc["spec"]["flows"] if "anywhere" not in f["to"]]
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(doc))
    # What the cluster says about its API server, read here independently of the CLI.
    service = controlplane.api.sanitize_for_serialization(dns_objects.read_namespaced_service("kubernetes", "default"))
    slices = client.DiscoveryV1Api(controlplane.api).list_namespaced_endpoint_slice(
        "default", label_selector="kubernetes.io/service-name=kubernetes"
    )
    expected = kube_api_facts(service, controlplane.api.sanitize_for_serialization(slices)["items"])
    assert expected, "the control plane publishes its own endpoints"

    policy, stderr = render_cluster(controlplane, path)
    assert "kubeAPI" not in stderr and "discover" not in stderr, stderr
    for endpoint in expected:
        bits = 32 if ":" not in endpoint.address else 128
        assert {"ipBlock": {"cidr": f"{endpoint.address}/{bits}"}} in peers_on(policy, endpoint.port)
    dns = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
    assert dns in peers_on(policy, 53) and {"ipBlock": {"cidr": "169.254.20.10/32"}} in peers_on(policy, 53)
    assert not peers_on(policy, 9153)  # the metrics port of the DNS Service is not DNS

    # The DNS pods move to 5353 (as OpenShift's do): the next render follows.
    current = dns_objects.read_namespaced_service("kube-dns", "kube-system")
    for port in current.spec.ports:
        if port.port == 53:
            port.target_port = 5353
    dns_objects.replace_namespaced_service("kube-dns", "kube-system", current)
    policy, _ = render_cluster(controlplane, path)
    assert dns in peers_on(policy, 5353) and dns not in peers_on(policy, 53)
    assert {"ipBlock": {"cidr": "169.254.20.10/32"}} in peers_on(policy, 53)  # the node-local cache stays on 53
