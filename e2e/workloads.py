"""The applications the e2e suite protects: agnhost pods for the guide's patterns, their Services, and the
AppTopologies (the examples of the guide, moved to their own namespaces), with every probe and what it must
find. Every pod listens on TCP 80, 5432, 8080 and 9090 (one `agnhost netexec` container each)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from support import ROOT, Cluster, Probe

PORTS = (80, 5432, 8080, 9090)

NAMESPACES: dict[str, dict[str, str]] = {
    "shop": {},  # Pattern 1, three tiers (examples/three-tier-guide.yaml)
    "tenant": {},  # Pattern 2, namespace isolation (examples/namespace-isolation.yaml)
    "billing": {},  # Pattern 3, monitoring scraped from another namespace (examples/allow-monitoring.yaml)
    "monitoring": {"name": "monitoring"},  # Prometheus, and a pod that is not Prometheus
    "outsider": {},  # no topology: a stranger, with a pod that looks like Prometheus
}

PODS: dict[str, dict[str, str]] = {
    "shop/frontend": {"tier": "frontend"},
    "shop/api": {"tier": "api"},
    "shop/database": {"tier": "database"},
    "shop/stray": {"app": "stray"},  # in the namespace, in no tier: scope Tiers leaves it open
    "tenant/a1": {"app": "a1"},
    "tenant/a2": {"app": "a2"},
    "billing/app": {"app": "billing"},
    "monitoring/prometheus": {"app": "prometheus"},
    "monitoring/grafana": {"app": "grafana"},
    "outsider/prober": {"app": "prometheus"},
}

SERVICES: dict[str, int] = {"shop/api": 8080, "shop/database": 5432, "tenant/a2": 8080, "billing/app": 9090}

TOPOLOGIES = {
    "shop": ROOT / "examples" / "three-tier-guide.yaml",
    "tenant": ROOT / "examples" / "namespace-isolation.yaml",
    "billing": ROOT / "examples" / "allow-monitoring.yaml",
}


def topology_documents() -> list[dict[str, Any]]:
    docs = []
    for namespace, path in TOPOLOGIES.items():
        (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
        doc["metadata"]["namespace"] = namespace
        docs.append(doc)
    return docs


def write_topologies(directory: Path) -> list[Path]:
    """The topologies as applied, for `apptopology explain -f`."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for doc in topology_documents():
        path = directory / f"{doc['metadata']['namespace']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        paths.append(path)
    return paths


def objects(agnhost: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, labels in NAMESPACES.items():
        out.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
    for key, labels in PODS.items():
        namespace, name = key.split("/")
        containers = [
            {
                "name": f"c{port}",
                "image": agnhost,
                "imagePullPolicy": "IfNotPresent",
                "args": ["netexec", f"--http-port={port}", "--udp-port=-1"],
                "ports": [{"containerPort": port, "protocol": "TCP"}],
                "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 2},
            }
            for port in PORTS
        ]
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "spec": {"containers": containers, "terminationGracePeriodSeconds": 1},
            }
        )
    for key, port in SERVICES.items():
        namespace, name = key.split("/")
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"selector": PODS[key], "ports": [{"port": port, "targetPort": port, "protocol": "TCP"}]},
            }
        )
    return out


def deploy(cluster: Cluster, agnhost: str) -> None:
    cluster.apply(objects(agnhost))
    for namespace in NAMESPACES:
        cluster.kubectl(
            "wait", "-n", namespace, "--for=condition=Ready", "pods", "--all", "--timeout=180s", timeout=200
        )


def pod_ips(cluster: Cluster) -> dict[str, str]:
    ips = {}
    for namespace in NAMESPACES:
        for pod in cluster.get("pods", "-n", namespace)["items"]:
            ips[f"{namespace}/{pod['metadata']['name']}"] = pod["status"]["podIP"]
    return ips


def service_ips(cluster: Cluster) -> dict[str, str]:
    ips = {}
    for key in SERVICES:
        namespace, name = key.split("/")
        ips[key] = cluster.get("service", "-n", namespace, name)["spec"]["clusterIP"]
    return ips


# (source, destination pod, port, must it connect once the topologies are enforced). Every row is probed
# through the pod's IP; rows whose destination has a Service also through its ClusterIP and its DNS name.
MATRIX: list[tuple[str, str, int, bool]] = [
    # Pattern 1: frontend -> api -> database, nothing else between the tiers.
    ("shop/frontend", "shop/api", 8080, True),
    ("shop/frontend", "shop/api", 9090, False),
    ("shop/api", "shop/database", 5432, True),
    ("shop/frontend", "shop/database", 5432, False),
    ("shop/database", "shop/api", 8080, False),
    ("shop/api", "shop/frontend", 80, False),
    ("outsider/prober", "shop/frontend", 80, True),  # from 0.0.0.0/0 to the frontend on 80 and 443
    ("outsider/prober", "shop/frontend", 8080, False),
    ("outsider/prober", "shop/api", 8080, False),
    ("shop/stray", "shop/api", 8080, False),
    ("shop/database", "outsider/prober", 8080, True),  # the database's egress stays open (the guide's choice)
    ("shop/frontend", "outsider/prober", 8080, False),
    ("outsider/prober", "shop/stray", 8080, True),  # scope Tiers: a pod outside the tiers is left alone
    # Pattern 2: only the namespace itself, and DNS.
    ("tenant/a1", "tenant/a2", 8080, True),
    ("tenant/a2", "tenant/a1", 5432, True),
    ("outsider/prober", "tenant/a2", 8080, False),
    ("tenant/a1", "outsider/prober", 8080, False),
    ("tenant/a1", "shop/stray", 8080, False),
    # Pattern 3: Prometheus of the monitoring namespace scrapes 9090, and only that.
    ("monitoring/prometheus", "billing/app", 9090, True),
    ("monitoring/prometheus", "billing/app", 8080, False),
    ("monitoring/grafana", "billing/app", 9090, False),  # the right namespace, not Prometheus
    ("outsider/prober", "billing/app", 9090, False),  # looks like Prometheus, the wrong namespace
    ("billing/app", "outsider/prober", 8080, True),  # egress is not isolated
]


def probes(pod_ip: dict[str, str], service_ip: dict[str, str]) -> dict[Probe, bool]:
    out = {}
    for source, dest, port, allowed in MATRIX:
        out[Probe(source, pod_ip[dest], port, "pod", dest)] = allowed
        if SERVICES.get(dest) == port:
            namespace, name = dest.split("/")
            out[Probe(source, service_ip[dest], port, "service", dest)] = allowed
            out[Probe(source, f"{name}.{namespace}.svc.cluster.local", port, "dns", dest)] = allowed
    return out


# Every pair by its pod IP, probed in a loop while the operator is upgraded, removed or killed.
def watched(pod_ip: dict[str, str]) -> dict[Probe, bool]:
    return {Probe(s, pod_ip[d], port, "pod", d): allowed for s, d, port, allowed in MATRIX}
