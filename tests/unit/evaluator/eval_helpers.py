"""Small builders shared by the evaluator tests (not collected: no test_ prefix)."""

from __future__ import annotations

from typing import Any

from apptopology.evaluator import ContainerPort, Pod


def netpol(name: str, spec: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def pod(
    ref: str, labels: dict[str, str] | None = None, ip: str | None = None, ports: tuple[tuple[str, int, str], ...] = ()
) -> Pod:
    """pod("ns/name", {...}, ip, (("http", 8080, "TCP"),))."""
    ns, name = ref.split("/")
    return Pod(ns, name, labels or {}, ip=ip, ports=tuple(ContainerPort(n, p, proto) for n, p, proto in ports))


def sel(**labels: str) -> dict[str, Any]:
    return {"matchLabels": labels}


def synthetic_cluster(
    namespaces: int, workloads: int, replicas: int, policies: int
) -> tuple[list[dict[str, Any]], Any]:
    """A deterministic app-like cluster: per namespace a default-deny plus per-workload policies.

    Policies mix same-namespace podSelectors, namespace+pod ANDed peers, namespace-label peers,
    named ports, port ranges and an ipBlock with except, as generated policies would.
    """
    from apptopology.evaluator import ContainerPort, External, Inventory, Namespace, Pod

    tiers = ("web", "api", "db", "cache", "worker")
    nss, pods, pols = [], [], []
    n_ip = 0
    for n in range(namespaces):
        ns = f"ns{n}"
        nss.append(Namespace(ns, {"team": f"t{n % 7}"}))
        for w in range(workloads):
            for r in range(replicas):
                n_ip += 1
                pods.append(
                    Pod(
                        ns,
                        f"w{w}-{r}",
                        {"app": f"w{w}", "tier": tiers[w % len(tiers)]},
                        ip=f"10.{n_ip >> 16 & 255}.{n_ip >> 8 & 255}.{n_ip & 255}",
                        ports=(ContainerPort("http", 8080 + w % 3), ContainerPort("dns", 53, "UDP")),
                        workload=f"Deployment/w{w}",
                    )
                )
        for k in range(policies):
            if k == 0:
                spec: dict[str, Any] = {
                    "podSelector": {},
                    "policyTypes": ["Ingress", "Egress"],
                    "egress": [
                        {
                            "to": [{"namespaceSelector": sel(team="t0"), "podSelector": sel(app="w0")}],
                            "ports": [{"port": "dns", "protocol": "UDP"}],
                        }
                    ],
                }
            else:
                w = (k - 1) % workloads
                spec = {
                    "podSelector": sel(app=f"w{w}"),
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [
                        {"from": [{"podSelector": sel(app=f"w{(w - 2) % workloads}")}], "ports": [{"port": "http"}]},
                        {
                            "from": [
                                {
                                    "namespaceSelector": sel(
                                        **{"kubernetes.io/metadata.name": f"ns{(n + k) % namespaces}"}
                                    ),
                                    "podSelector": {
                                        "matchExpressions": [
                                            {"key": "tier", "operator": "In", "values": ["web", "api"]}
                                        ]
                                    },
                                }
                            ],
                            "ports": [{"port": 9000, "endPort": 9100}],
                        },
                        {"from": [{"namespaceSelector": sel(team=f"t{k % 7}")}], "ports": [{"port": 9090}]},
                    ],
                    "egress": [
                        {"to": [{"podSelector": sel(app=f"w{(w + 2) % workloads}")}], "ports": [{"port": "http"}]},
                        {
                            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
                            "ports": [{"port": 443}],
                        },
                    ],
                }
            pols.append(netpol(f"p{k}", spec, ns))
    externals = (External("0.0.0.0/0", "internet"), External("203.0.113.7", "partner"))
    return pols, Inventory(tuple(nss), tuple(pods), externals)
