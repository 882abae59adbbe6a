"""Memory of the operator's cache, measured with tracemalloc: pods (for status.tiers), NetworkPolicy digests,
AppTopology bodies.

    .venv/bin/python bench/cache_memory.py                    # 10,000 pods, 7,000 policies, 1,000 topologies
    .venv/bin/python bench/cache_memory.py --pods 100000

Objects are generated as the API server returns them (realistic labels, container ports, managedFields), fed
to the cache as watch events would, and the traced memory the cache holds afterwards is printed per kind.
Topology bodies are kept packed (compressed JSON): as parsed dicts one was about 18 KB.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from operator_bench import topology  # noqa: E402

from apptopology.controller.cache import Cache  # noqa: E402
from apptopology.planner.plan import desired_policies  # noqa: E402
from apptopology.render.validation import parse_topology  # noqa: E402

MANAGED_FIELDS = [{"manager": "kubelet", "operation": "Update", "fieldsV1": {"f:status": {"f:podIP": {}}}}] * 3


def pod(i: int, namespace: str) -> dict[str, Any]:
    app = f"app-{i % 50}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{app}-{i:06d}-x7k2p",
            "namespace": namespace,
            "uid": f"uid-{i}",
            "labels": {
                "app": app,
                "app.kubernetes.io/name": app,
                "app.kubernetes.io/part-of": "shop",
                "tier": ("web", "api", "worker", "cache", "db")[i % 5],
                "pod-template-hash": f"{i % 997:08x}",
            },
            "managedFields": MANAGED_FIELDS,
        },
        "spec": {
            "containers": [
                {"name": "main", "image": "registry.invalid/app:1", "ports": [{"name": "http", "containerPort": 8080}]},
                {
                    "name": "sidecar",
                    "image": "registry.invalid/proxy:1",
                    "ports": [{"name": "metrics", "containerPort": 9090}],
                },
            ]
        },
        "status": {"phase": "Running", "podIP": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"},
    }


def status(name: str) -> dict[str, Any]:
    """A status of the shape the operator writes for these topologies (copied from a real run)."""
    tiers = ("web", "api", "worker", "cache", "db")
    condition = {"status": "True", "observedGeneration": 1, "lastTransitionTime": "2026-12-01T15:15:06Z"}
    return {
        "observedGeneration": 1,
        "conditions": [
            {"type": "Ready", "reason": "Reconciled", "message": "7 NetworkPolicies in sync", **condition},
            {"type": "Isolated", "reason": "Alone", "message": "No other NetworkPolicy ...", **condition},
        ],
        "policies": [f"{name}.default-deny", f"{name}.allow-dns", *(f"{name}.tier-{t}" for t in tiers)],
        "policyCount": 7,
        "tierCount": 5,
        "conflicts": [],
        "enforcement": "Enforce",
        "tiers": [{"name": t, "pods": 0, "warnings": [f"selects no pods ({{app={name},tier={t}}})"]} for t in tiers],
        "podCount": 0,
        "warningCount": 7,
        "warnings": ["spec.dns selects no pod: name resolution of every isolated pod will fail"],
    }


def traced(fn: Any) -> int:
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    fn()
    gc.collect()
    return int(tracemalloc.get_traced_memory()[0] - before)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--topologies", type=int, default=1_000)
    parser.add_argument("--namespaces", type=int, default=100)
    args = parser.parse_args()
    tracemalloc.start()
    cache = Cache()
    namespaces = [f"bench-{i:03d}" for i in range(args.namespaces)]
    docs = [topology(f"t{i:05d}", namespaces[i % len(namespaces)]) for i in range(args.topologies)]
    policies = []
    for i, doc in enumerate(docs):
        body = {
            **doc,
            "metadata": {**doc["metadata"], "uid": f"t-{i}", "generation": 1, "managedFields": MANAGED_FIELDS},
        }
        parse_topology(doc)
        policies += desired_policies(body)
    sizes = {
        "namespaces": traced(
            lambda: [cache.put_namespace({"metadata": {"name": n, "labels": {"team": n}}}) for n in namespaces]
        ),
        "pods": traced(lambda: [cache.put_pod(pod(i, namespaces[i % len(namespaces)])) for i in range(args.pods)]),
        "policies": traced(lambda: [cache.put_policy(p) for p in policies]),
        # As a watch event delivers them: parsed from JSON (nothing shared with the generator), with status.
        "topologies": traced(
            lambda: [
                cache.put_topology(
                    json.loads(
                        json.dumps(
                            {
                                **d,
                                "metadata": {**d["metadata"], "uid": f"t-{i}", "managedFields": MANAGED_FIELDS},
                                "status": status(d["metadata"]["name"]),
                            }
                        )
                    )
                )
                for i, d in enumerate(docs)
            ]
        ),
    }
    counts = {
        "namespaces": len(namespaces),
        "pods": args.pods,
        "policies": len(policies),
        "topologies": len(docs),
    }
    print("| cache | objects | traced memory | per object |")
    print("|---|---|---|---|")
    for kind, size in sizes.items():
        print(f"| {kind} | {counts[kind]:,} | {size / 2**20:.1f} MiB | {size / max(1, counts[kind]):.0f} B |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
