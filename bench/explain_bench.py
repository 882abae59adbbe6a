"""Benchmark `apptopology explain` end to end and in-process, side by side with nca.

    .venv/bin/python bench/explain_bench.py            # full sizes (see README.md for timings)
    .venv/bin/python bench/explain_bench.py --quick    # small sizes, a minute or so
    .venv/bin/python bench/explain_bench.py --no-nca   # skip network-config-analyzer

Scenarios (all inputs are generated deterministically into a temporary directory):

(a) topology: AppTopologies with 200 tiers and 2,000 flows in total (tier->tier flows with ports,
    some namespace+pod peers in the other topologies' namespaces, some ipBlock peers). One AppTopology
    may hold at most 64 tiers and 512 flows (the CRD's limits), so they are split over 4 documents of
    50 tiers and 500 flows in one file. Timed: `apptopology explain -f big-topology.yaml -o json` as
    a subprocess (interpreter start and imports included), and in-process validate / render /
    synthesize / matrix.
(b) cluster: 5,000 pods (50 namespaces x 10 deployments x 10 replicas, realistic labels, named
    container ports, pod IPs, ReplicaSet owners) and 1,000 NetworkPolicies (20 per namespace).
    Timed: `apptopology explain -f policies.yaml --inventory pods.yaml --inventory namespaces.yaml
    -o json` and the in-process inventory load and matrix.
(c) the same inputs through `nca --connectivity ... -o txt_no_fw_rules` (nca's pair-by-pair
    output, the closest to our JSON), with a time limit per run.

Prints a markdown table. No assertion on timings: these are numbers for the notes.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "crosscheck"))

from nca_tool import NcaUnavailable, locate_nca, nca_command, write_inputs  # noqa: E402

from apptopology.analysis.explain import matrix as analysis_matrix  # noqa: E402
from apptopology.analysis.intent import synthesize  # noqa: E402
from apptopology.analysis.subject import merge_inventories, subject  # noqa: E402
from apptopology.evaluator import Evaluator, inventory_from_manifests, parse_policies  # noqa: E402
from apptopology.render.renderer import render  # noqa: E402
from apptopology.render.validation import parse_topology  # noqa: E402

T = TypeVar("T")
Manifest = dict[str, Any]
MEMORY_LIMIT = 16 << 30  # address-space cap for each subprocess (the machine has 24 GiB)


# --------------------------------------------------------------------------- generators


def topology_documents(tiers: int, flows: int, per_topology: int = 50, seed: int = 1) -> list[Manifest]:
    """`tiers` tiers and `flows` flows over ceil(tiers / per_topology) AppTopologies (deterministic)."""
    rng = random.Random(seed)
    count = -(-tiers // per_topology)
    docs = []
    ports = [80, 443, 8080, 8443, 9090, 5432, 6379, 11211]
    for t in range(count):
        n_tiers = min(per_topology, tiers - t * per_topology)
        n_flows = flows // count + (1 if t < flows % count else 0)
        ns = f"app-{t}"
        names = [f"svc-{i:03d}" for i in range(n_tiers)]
        tier_docs = [{"name": name, "podSelector": {"matchLabels": {"app": name, "part-of": ns}}} for name in names]
        flow_docs: list[Manifest] = []
        pairs = [(a, b) for a in names for b in names if a != b]
        rng.shuffle(pairs)
        n_ns = n_flows * 6 // 100
        n_ip = n_flows * 6 // 100
        for a, b in pairs[: n_flows - n_ns - n_ip]:
            chosen = rng.sample(ports, rng.randint(1, 2))
            flow_ports: list[Manifest] = [{"port": p} for p in chosen]
            if rng.random() < 0.1:
                flow_ports.append({"port": "http"})
            if rng.random() < 0.05:
                flow_ports.append({"port": 30000, "endPort": 30100, "protocol": "UDP"})
            flow_docs.append({"from": {"tier": a}, "to": {"tier": b}, "ports": flow_ports})
        for i in range(n_ns):
            other = f"app-{(t + 1 + i % max(count - 1, 1)) % count}"
            flow_docs.append(
                {
                    "from": {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": other}},
                        "podSelector": {"matchLabels": {"app": f"svc-{i % per_topology:03d}"}},
                    },
                    "to": {"tier": names[(i * 7) % n_tiers]},
                    "ports": [{"port": 8080}],
                }
            )
        for i in range(n_ip):
            cidr = f"10.{100 + t}.{i}.0/24"
            if i % 3 == 0:
                endpoint = {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "192.168.0.0/16"]}}
            else:
                endpoint = {"ipBlock": {"cidr": cidr, "except": [f"10.{100 + t}.{i}.128/25"]}}
            if i % 2:
                flow = {"from": endpoint, "to": {"tier": names[i % n_tiers]}, "ports": [{"port": 443}]}
            else:
                flow = {"from": {"tier": names[i % n_tiers]}, "to": endpoint, "ports": [{"port": 443}]}
            flow_docs.append(flow)
        docs.append(
            {
                "apiVersion": "apptopology.io/v1alpha1",
                "kind": "AppTopology",
                "metadata": {"name": f"big-{t}", "namespace": ns},
                "spec": {"tiers": tier_docs, "flows": flow_docs},
            }
        )
    return docs


APPS = (
    ("frontend", "web", "http", 8080),
    ("api", "backend", "http", 8080),
    ("auth", "backend", "grpc", 9000),
    ("search", "backend", "http", 9200),
    ("worker", "backend", "metrics", 9102),
    ("postgres", "data", "postgres", 5432),
    ("redis", "data", "redis", 6379),
    ("kafka", "data", "kafka", 9092),
    ("metrics", "ops", "http", 9090),
    ("batch", "ops", "metrics", 9102),
)


def cluster_manifests(
    pods: int, namespaces: int, policies: int, seed: int = 2
) -> tuple[list[Manifest], list[Manifest], list[Manifest]]:
    """(namespaces, pods, policies): deployments of 10 replicas over `namespaces` namespaces."""
    rng = random.Random(seed)
    ns_docs: list[Manifest] = []
    pod_docs: list[Manifest] = []
    per_ns = pods // namespaces
    replicas = 10
    template_hash = ""
    for n in range(namespaces):
        ns = f"team{n % 10}-svc{n:02d}"
        ns_docs.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": ns,
                    "labels": {
                        "kubernetes.io/metadata.name": ns,
                        "team": f"team{n % 10}",
                        "env": "prod" if n % 3 else "staging",
                        **({"monitoring": "enabled"} if n % 2 == 0 else {}),
                    },
                },
            }
        )
        for i in range(per_ns):
            app, tier, port_name, port = APPS[(i // replicas) % len(APPS)]
            deployment = f"{app}-{(i // replicas) // len(APPS)}" if per_ns > len(APPS) * replicas else app
            if i % replicas == 0:
                template_hash = f"{rng.getrandbits(32):08x}"
            labels = {
                "app": app,
                "app.kubernetes.io/name": app,
                "app.kubernetes.io/part-of": ns,
                "tier": tier,
                "version": "v2" if (i // replicas) % 4 == 3 else "v1",
                "pod-template-hash": template_hash,
            }
            ip = ipaddress.ip_address("10.64.0.0") + n * 256 + i + 1
            pod_docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": f"{deployment}-{template_hash}-{i % replicas:05d}",
                        "namespace": ns,
                        "labels": labels,
                        "ownerReferences": [
                            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{deployment}-{template_hash}"}
                        ],
                    },
                    "spec": {
                        "containers": [
                            {
                                "name": app,
                                "image": app,
                                "ports": [
                                    {"name": port_name, "containerPort": port, "protocol": "TCP"},
                                    {"name": "health", "containerPort": 8086, "protocol": "TCP"},
                                ],
                            }
                        ]
                    },
                    "status": {"podIP": str(ip)},
                }
            )
    ns_docs.append(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "kube-system", "labels": {"kubernetes.io/metadata.name": "kube-system"}},
        }
    )
    names = [d["metadata"]["name"] for d in ns_docs[:-1]]
    policy_docs: list[Manifest] = []
    per_ns_policies = policies // namespaces
    for n, ns in enumerate(names):
        made: list[Manifest] = []

        def np(name: str, spec: Manifest, made: list[Manifest] = made, ns: str = ns) -> None:
            made.append(
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "NetworkPolicy",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": spec,
                }
            )

        np("default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
        np(
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
        )
        k = 0
        while len(made) < per_ns_policies:
            app, tier, port_name, port = APPS[k % len(APPS)]
            caller = APPS[(k + 1) % len(APPS)][0]
            kind = k % 6
            if kind == 0:
                np(
                    f"{app}-ingress-{k}",
                    {
                        "podSelector": {"matchLabels": {"app": app}},
                        "policyTypes": ["Ingress"],
                        "ingress": [
                            {
                                "from": [{"podSelector": {"matchLabels": {"app": caller}}}],
                                "ports": [{"port": port_name}],
                            }
                        ],
                    },
                )
            elif kind == 1:
                team = f"team{(n + k) % 10}"
                np(
                    f"{app}-from-{team}-{k}",
                    {
                        "podSelector": {"matchLabels": {"app": app}},
                        "policyTypes": ["Ingress"],
                        "ingress": [
                            {
                                "from": [
                                    {
                                        "namespaceSelector": {"matchLabels": {"team": team, "env": "prod"}},
                                        "podSelector": {
                                            "matchExpressions": [
                                                {"key": "tier", "operator": "In", "values": ["web", "backend"]}
                                            ]
                                        },
                                    }
                                ],
                                "ports": [{"port": port}],
                            }
                        ],
                    },
                )
            elif kind == 2:
                np(
                    f"{app}-egress-{k}",
                    {
                        "podSelector": {"matchLabels": {"tier": tier}},
                        "policyTypes": ["Egress"],
                        "egress": [
                            {
                                "to": [{"podSelector": {"matchLabels": {"tier": "data"}}}],
                                "ports": [{"port": 5432}, {"port": 6379}, {"port": 9092}],
                            }
                        ],
                    },
                )
            elif kind == 3:
                np(
                    f"{app}-internet-{k}",
                    {
                        "podSelector": {"matchLabels": {"app": app}},
                        "policyTypes": ["Egress"],
                        "egress": [
                            {
                                "to": [
                                    {
                                        "ipBlock": {
                                            "cidr": "0.0.0.0/0",
                                            "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
                                        }
                                    }
                                ],
                                "ports": [{"port": 443}],
                            }
                        ],
                    },
                )
            elif kind == 4:
                np(
                    f"{app}-monitoring-{k}",
                    {
                        "podSelector": {"matchLabels": {"app": app}},
                        "policyTypes": ["Ingress"],
                        "ingress": [
                            {
                                "from": [
                                    {
                                        "namespaceSelector": {"matchLabels": {"monitoring": "enabled"}},
                                        "podSelector": {"matchLabels": {"app": "metrics"}},
                                    }
                                ],
                                "ports": [{"port": "metrics"}, {"port": 9090}],
                            }
                        ],
                    },
                )
            else:
                np(
                    f"{app}-v2-canary-{k}",
                    {
                        "podSelector": {
                            "matchLabels": {"app": app},
                            "matchExpressions": [{"key": "version", "operator": "NotIn", "values": ["v1"]}],
                        },
                        "policyTypes": ["Ingress", "Egress"],
                        "ingress": [{"from": [{"ipBlock": {"cidr": "10.64.0.0/16", "except": ["10.64.0.0/24"]}}]}],
                        "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": 8080, "endPort": 8090}]}],
                    },
                )
            k += 1
        policy_docs.extend(made)
    return ns_docs, pod_docs, policy_docs


# --------------------------------------------------------------------------- measuring


@dataclass
class Run:
    seconds: float | None  # None: did not finish
    note: str = ""

    def cell(self) -> str:
        if self.seconds is None:
            return self.note
        return f"{self.seconds:.2f} s" + (f" ({self.note})" if self.note else "")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_command(cmd: Sequence[str], out: Path, timeout: float, cwd: Path | None = None) -> Run:
    start = time.perf_counter()
    with out.open("wb") as fh:
        try:
            proc = subprocess.run(
                list(cmd),
                stdout=fh,
                stderr=subprocess.PIPE,
                timeout=timeout,
                check=False,
                cwd=cwd,
                preexec_fn=_limit_memory,
            )
        except subprocess.TimeoutExpired:
            return Run(None, f"> {timeout / 60:.0f} min (limit)")
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return Run(None, f"failed after {elapsed:.1f} s (exit {proc.returncode}: {tail[0][:120]})")
    size = out.stat().st_size
    return Run(elapsed, f"{size / 1e6:.1f} MB output")


def apptopology_exe() -> str:
    candidate = Path(sys.executable).parent / "apptopology"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("apptopology")
    if not found:
        raise SystemExit("apptopology is not installed in this interpreter's environment")
    return found


def dump(docs: Sequence[Any], path: Path) -> None:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    with path.open("w") as fh:
        yaml.dump_all(list(docs), fh, Dumper=dumper, sort_keys=False, explicit_start=True)


def load(path: Path) -> list[Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open() as fh:
        return [d for d in yaml.load_all(fh, Loader=loader) if d is not None]


# --------------------------------------------------------------------------- scenarios


@dataclass
class Row:
    scenario: str
    step: str
    ours: str
    nca: str = ""
    speedup: str = ""


def scenario_topology(args: argparse.Namespace, work: Path, nca: str | None, rows: list[Row]) -> None:
    label = f"(a) {args.tiers} tiers, {args.flows} flows"
    path = work / "big-topology.yaml"
    docs = topology_documents(args.tiers, args.flows)
    dump(docs, path)

    cli = run_command([apptopology_exe(), "explain", "-f", str(path), "-o", "json"], work / "a.json", args.timeout)
    if cli.seconds is not None:
        cells = json.loads((work / "a.json").read_text())
        cli.note += f", {len(cells)} pairs"

    raw = load(path)
    topologies, t_validate = timed(lambda: [parse_topology(d) for d in raw])
    policies, t_render = timed(lambda: [p for t in topologies for p in render(t)])
    inventory, t_synth = timed(lambda: merge_inventories([synthesize(t) for t in topologies]))
    subj = subject(raw, None)
    allowed_pairs, t_matrix = timed(lambda: sum(1 for _ in analysis_matrix(subj).allowed()))
    _, t_eval = timed(lambda: Evaluator(parse_policies(policies), inventory).matrix())

    rows.append(Row(label, "`apptopology explain -o json` (subprocess, end to end)", cli.cell()))
    rows.append(Row(label, "in-process: validate (parse_topology)", f"{t_validate:.2f} s"))
    rows.append(Row(label, f"in-process: render ({len(policies)} NetworkPolicies)", f"{t_render:.2f} s"))
    rows.append(
        Row(
            label,
            f"in-process: synthesize ({len(inventory.pods)} pods, {len(inventory.externals)} externals)",
            f"{t_synth:.2f} s",
        )
    )
    rows.append(Row(label, f"in-process: explain matrix ({allowed_pairs} allowed pairs)", f"{t_matrix:.2f} s"))
    rows.append(Row(label, "in-process: Evaluator + full matrix() (all endpoints both ways)", f"{t_eval:.2f} s"))

    if nca is not None:
        ndir = work / "nca-a"
        paths = write_inputs(ndir, policies, inventory)
        run = run_command(nca_command(nca, *paths), ndir / "out.txt", args.nca_timeout, cwd=ndir)
        rows.append(
            Row(label, "`nca --connectivity -o txt_no_fw_rules` (subprocess)", "", run.cell(), _speedup(cli, run))
        )


def scenario_cluster(args: argparse.Namespace, work: Path, nca: str | None, rows: list[Row]) -> None:
    label = f"(b) {args.pods} pods, {args.policies} NetworkPolicies"
    ns_docs, pod_docs, policy_docs = cluster_manifests(args.pods, args.namespaces, args.policies)
    pol_path, pod_path, ns_path = work / "policies.yaml", work / "pods.yaml", work / "namespaces.yaml"
    dump(policy_docs, pol_path)
    dump(pod_docs, pod_path)
    dump(ns_docs, ns_path)

    cmd = [apptopology_exe(), "explain", "-f", str(pol_path), "--inventory", str(pod_path), "--inventory",
           str(ns_path), "-o", "json"]  # fmt: skip
    cli = run_command(cmd, work / "b.json", args.timeout)

    manifests, t_load = timed(lambda: load(pod_path) + load(ns_path))
    inventory, t_inv = timed(lambda: inventory_from_manifests(manifests))
    policies, t_parse = timed(lambda: parse_policies(load(pol_path)))
    evaluator, t_compile = timed(lambda: Evaluator(policies, inventory))
    matrix, t_matrix = timed(evaluator.matrix)
    classes = matrix.class_counts
    pairs = len(matrix)
    rows.append(Row(label, "`apptopology explain -o json` (subprocess, end to end)", cli.cell()))
    rows.append(Row(label, "in-process: YAML load of pods + namespaces", f"{t_load:.2f} s"))
    rows.append(Row(label, "in-process: inventory_from_manifests", f"{t_inv:.2f} s"))
    rows.append(Row(label, "in-process: load + parse policies", f"{t_parse:.2f} s"))
    rows.append(
        Row(
            label,
            f"in-process: Evaluator + matrix() ({pairs:,} pairs, {classes[0]}x{classes[1]} classes)",
            f"{t_compile + t_matrix:.2f} s",
        )
    )
    total = t_load + t_inv + t_parse + t_compile + t_matrix
    rows.append(Row(label, "in-process total: YAML load -> inventory -> policies -> matrix", f"{total:.2f} s"))
    if nca is not None:
        ndir = work / "nca-b"
        ndir.mkdir(exist_ok=True)
        run = run_command(nca_command(nca, pol_path, pod_path, ns_path), ndir / "out.txt", args.nca_timeout, cwd=ndir)
        speedup = _speedup(cli, run)
        if cli.seconds is None and run.seconds is not None:
            speedup = f"CLI n/a; {run.seconds / total:.0f}x vs in-process total"
        rows.append(Row(label, "`nca --connectivity -o txt_no_fw_rules` (subprocess)", "", run.cell(), speedup))


def _speedup(ours: Run, theirs: Run) -> str:
    if ours.seconds is None:
        return "n/a"
    if theirs.seconds is None:
        return f"nca did not finish: {theirs.note}"
    return f"{theirs.seconds / ours.seconds:.1f}x"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--no-nca", action="store_true", help="do not run network-config-analyzer")
    parser.add_argument("--nca", help="path of the nca executable (default: $APPTOPOLOGY_NCA or setup-nca.sh)")
    parser.add_argument("--nca-timeout", type=float, default=1200, help="seconds per nca run (default 1200)")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per apptopology run (default 1200)")
    parser.add_argument("--only", choices=["a", "b"], help="run one scenario")
    parser.add_argument("--workdir", type=Path, help="keep generated inputs and outputs here (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.quick:
        args.tiers, args.flows, args.pods, args.namespaces, args.policies = 50, 500, 500, 10, 100
        args.nca_timeout = min(args.nca_timeout, 300)
    else:
        args.tiers, args.flows, args.pods, args.namespaces, args.policies = 200, 2000, 5000, 50, 1000

    nca: str | None = None
    if not args.no_nca:
        try:
            nca = args.nca or locate_nca()
        except NcaUnavailable as exc:
            print(f"nca unavailable, skipping it: {exc}", file=sys.stderr)

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="apptopology-bench-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.only in (None, "a"):
            scenario_topology(args, work, nca, rows)
        if args.only in (None, "b"):
            scenario_cluster(args, work, nca, rows)

    print(f"\nmachine: {os.cpu_count()} cores, Python {sys.version.split()[0]}\n")
    print("| scenario | step | apptopology | nca | nca / apptopology |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.scenario} | {r.step} | {r.ours} | {r.nca} | {r.speedup} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
