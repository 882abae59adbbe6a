"""Benchmark `apptopology import` and `apptopology suggest` end to end (subprocess: start-up included).

    .venv/bin/python bench/adoption_bench.py

Inputs are generated deterministically into a temporary directory:

(a) import: one namespace with N workloads, a default-deny, an allow-dns, and per workload a policy
    with three ingress rules (same-namespace pods on a named port, namespace AND pod peers on a range,
    a namespace by label) and two egress rules (pods on a named port, the internet but 10/8 on 443):
    the shape of tests/unit/evaluator's synthetic cluster. Timed: import, including verify.
(b) suggest: Hubble `-o jsonpb` lines between 40 workloads of 4 namespaces, DNS, external addresses,
    replies and node traffic. Timed: suggest of every namespace, and --against the suggestion.

Prints a markdown table. No assertion on timings: these are numbers for the notes.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "apptopology.cli"]


def policies(workloads: int) -> list[dict[str, Any]]:
    def netpol(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        meta = {"name": name, "namespace": "shop"}
        return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta, "spec": spec}

    out = [
        netpol("default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        netpol(
            "allow-dns",
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
                    }
                ],
            },
        ),
    ]
    for w in range(workloads):
        app = {"matchLabels": {"app": f"w{w}"}}
        out.append(
            netpol(
                f"w{w}",
                {
                    "podSelector": app,
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [
                        {
                            "from": [{"podSelector": {"matchLabels": {"app": f"w{(w - 1) % workloads}"}}}],
                            "ports": [{"port": "http"}],
                        },
                        {
                            "from": [
                                {
                                    "namespaceSelector": {"matchLabels": {"team": f"t{w % 7}"}},
                                    "podSelector": {
                                        "matchExpressions": [
                                            {"key": "tier", "operator": "In", "values": ["web", "api"]}
                                        ]
                                    },
                                }
                            ],
                            "ports": [{"port": 9000, "endPort": 9100}],
                        },
                        {
                            "from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
                            "ports": [{"port": 9090}],
                        },
                    ],
                    "egress": [
                        {
                            "to": [{"podSelector": {"matchLabels": {"app": f"w{(w + 1) % workloads}"}}}],
                            "ports": [{"port": "http"}],
                        },
                        {
                            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
                            "ports": [{"port": 443}],
                        },
                    ],
                },
            )
        )
    return out


def hubble(lines: int) -> list[str]:
    rng = random.Random(12)
    pods = [(f"ns{n}", f"w{w}") for n in range(4) for w in range(10)]
    dns = {
        "namespace": "kube-system",
        "labels": ["k8s:k8s-app=kube-dns"],
        "pod_name": "coredns-1",
        "workloads": [{"kind": "Deployment", "name": "coredns"}],
    }

    def pod(ns: str, app: str) -> dict[str, Any]:
        labels = [f"k8s:app={app}", "k8s:pod-template-hash=abc", f"k8s:io.kubernetes.pod.namespace={ns}"]
        return {
            "namespace": ns,
            "labels": labels,
            "pod_name": f"{app}-abc-{rng.randrange(5)}",
            "workloads": [{"kind": "Deployment", "name": app}],
        }

    out = []
    for i in range(lines):
        ns, app = rng.choice(pods)
        kind = rng.random()
        reply = kind < 0.3
        if kind < 0.5:
            ns2, app2 = pods[(pods.index((ns, app)) + rng.choice((1, 2))) % len(pods)]
            destination, proto, port, dip = pod(ns2, app2), "TCP", rng.choice((8080, 9090)), "10.0.0.2"
        elif kind < 0.8:
            destination, proto, port, dip = dns, "UDP", 53, "10.0.0.10"
        elif kind < 0.95:
            destination, proto, port, dip = (
                {"labels": ["reserved:world"]},
                "TCP",
                443,
                f"52.1.{rng.randrange(4)}.{rng.randrange(8)}",
            )
        else:
            destination, proto, port, dip = {"labels": ["reserved:host"]}, "TCP", 10250, "172.18.0.2"
        flow = {
            "time": f"2026-08-01T{10 + i // 360000 % 10:02d}:{i // 6000 % 60:02d}:{i // 100 % 60:02d}.000000000Z",
            "verdict": "FORWARDED",
            "IP": {"source": "10.0.0.1", "destination": dip, "ipVersion": "IPv4"},
            "l4": {proto: {"source_port": 40000 + i % 20000, "destination_port": port}},
            "source": pod(ns, app),
            "destination": destination,
            "Type": "L3_L4",
            "traffic_direction": "EGRESS",
            "is_reply": reply,
        }
        out.append(json.dumps({"flow": flow, "node_name": "kind-worker", "time": flow["time"]}))
    return out


def timed(argv: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run([*CLI, *argv], capture_output=True, text=True, check=False)
    return time.perf_counter() - start, done.returncode


def main() -> None:
    rows = ["| input | command | seconds | exit |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for workloads in (10, 30, 60):
            path = Path(tmp) / f"policies-{workloads}.json"
            items = policies(workloads)
            path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
            seconds, code = timed(["import", "-f", str(path)])
            rows.append(
                f"| {len(items)} NetworkPolicies, {workloads + 1} pod selectors | import | {seconds:.2f} | {code} |"
            )
        for lines in (10_000, 80_000):
            path = Path(tmp) / f"flows-{lines}.jsonl"
            path.write_text("\n".join(hubble(lines)) + "\n")
            seconds, code = timed(["suggest", "--flows", str(path)])
            rows.append(f"| {lines:,} Hubble flow lines, 40 workloads | suggest | {seconds:.2f} | {code} |")
            out = subprocess.run(
                [*CLI, "suggest", "--flows", str(path), "-n", "ns0"], capture_output=True, text=True, check=False
            )
            topology = Path(tmp) / "ns0.yaml"
            topology.write_text(out.stdout)
            seconds, code = timed(["suggest", "--flows", str(path), "--against", str(topology)])
            rows.append(f"| {lines:,} Hubble flow lines | suggest --against (ns0) | {seconds:.2f} | {code} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
