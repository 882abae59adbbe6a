"""The operator at cluster scale, side by side with a raw server-side-apply loop, in one run.

    .venv/bin/python bench/operator_bench.py                    # 100 and 1,000 topologies
    .venv/bin/python bench/operator_bench.py --sizes 10000      # 10,000 (about half an hour)
    .venv/bin/python bench/operator_bench.py --sizes 100 --tracemalloc  # where the memory goes

For each size, on a fresh control plane of tests/controlplane/ (operator under deploy/'s RBAC, as in the
integration suite), topologies of 5 tiers and 6 flows plus monitoring (7 policies each) in 100
namespaces:

- raw: the same pre-rendered policies applied by 8 threads with server-side apply, into namespaces of
  their own (deleted again before the operator starts): the floor;
- operator: all topologies created at once by 8 threads; time until every one is Ready with its
  policies, and its writes (audit log: real and dry-run, by verb);
- one spec change -> changed policy in the API server, 20 times right after the burst was created (while
  the operator still works through it), then 20 times idle: p50 / p99 / max;
- the operator's CPU seconds and RSS after convergence; a restart: writes after it (0 expected), cold
  start time (every topology reconciled once more) and RSS.

Prints a markdown table and, with --json, writes the numbers. Asserts nothing.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from harness import RUN_SH, ControlPlane, Operator, controlplane_or_skip  # noqa: E402
from kubernetes import client  # noqa: E402

from apptopology.render.renderer import render  # noqa: E402
from apptopology.render.validation import parse_topology  # noqa: E402

NAMESPACES = 100
THREADS = 8
CHANGES = 20
CHANGE_TIMEOUT = 600.0
IDLE_SETTLE = 40.0


def topology(name: str, namespace: str) -> dict[str, Any]:
    tiers = ["web", "api", "worker", "cache", "db"]
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "tiers": [{"name": t, "podSelector": {"matchLabels": {"app": name, "tier": t}}} for t in tiers],
            "flows": [
                {"from": {"anywhere": True}, "to": {"tier": "web"}, "ports": [{"port": 443}]},
                {"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": [{"port": 8080}]},
                {"from": {"tier": "api"}, "to": {"tier": "worker"}, "ports": [{"port": 9000}]},
                {"from": {"tier": "api"}, "to": {"tier": "cache"}, "ports": [{"port": 6379}]},
                {"from": {"tier": "api"}, "to": {"tier": "db"}, "ports": [{"port": 5432}]},
                {"from": {"tier": "worker"}, "to": {"tier": "db"}, "ports": [{"port": 5432}]},
            ],
            "monitoring": {
                "enabled": True,
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "ports": [{"port": 9090}],
            },
        },
    }


def names(size: int) -> list[tuple[str, str]]:
    """(namespace, name) of every topology: spread evenly over the namespaces."""
    return [(f"bench-{i % NAMESPACES:03d}", f"t{i:05d}") for i in range(size)]


def parallel(fn: Any, items: list[Any], threads: int = THREADS) -> float:
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for future in concurrent.futures.as_completed([pool.submit(fn, item) for item in items]):
            future.result()
    return time.monotonic() - started


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds, RSS MiB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS")
    )
    return cpu, rss / 1024


def writes(cp: ControlPlane, since: int) -> tuple[dict[str, int], int]:
    """Real writes by verb/resource, and dry runs, by the operator since audit entry ``since``."""
    real: dict[str, int] = {}
    dry = 0
    for entry in cp.audit_writes()[since:]:
        ref = entry["objectRef"]
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        if resource == "leases":
            continue
        if "dryRun=All" in entry.get("requestURI", ""):
            dry += 1
            continue
        key = f"{entry['verb']} {resource}"
        real[key] = real.get(key, 0) + 1
    return real, dry


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Bench:
    def __init__(self, cp: ControlPlane, size: int):
        self.cp, self.size = cp, size
        self.custom = client.CustomObjectsApi(cp.api)
        self.net = client.NetworkingV1Api(cp.api)
        self.core = client.CoreV1Api(cp.api)
        self.keys = names(size)
        self.result: dict[str, Any] = {"topologies": size, "policies": size * 7}

    def namespaces(self, prefix: str) -> None:
        for i in range(NAMESPACES):
            self.core.create_namespace({"metadata": {"name": f"{prefix}-{i:03d}"}})

    def raw_loop(self) -> None:
        self.namespaces("raw")
        policies = []
        for ns, name in self.keys:
            doc = topology(name, ns.replace("bench", "raw"))
            policies += render(parse_topology(doc))

        def apply(policy: dict[str, Any]) -> None:
            meta = policy["metadata"]
            self.net.patch_namespaced_network_policy(
                meta["name"],
                meta["namespace"],
                policy,
                field_manager="bench-raw",
                force=True,
                _content_type="application/apply-patch+yaml",
                _preload_content=False,
            )

        self.result["raw_seconds"] = parallel(apply, policies)
        for i in range(NAMESPACES):
            self.core.delete_namespace(f"raw-{i:03d}")
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            left = [n for n in self.core.list_namespace().items if n.metadata.name.startswith("raw-")]
            if not left:
                break
            time.sleep(2)

    def ready_count(self) -> tuple[int, int]:
        """(topologies Ready for their generation, total)."""
        items = json.loads(
            self.custom.list_cluster_custom_object(
                "apptopology.io", "v1alpha1", "apptopologies", _preload_content=False
            ).read()
        )["items"]
        ready = 0
        for obj in items:
            status = obj.get("status") or {}
            cond = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)
            if cond and cond["status"] == "True" and status.get("observedGeneration") == obj["metadata"]["generation"]:
                ready += 1
        return ready, len(items)

    @staticmethod
    def applied(operator: Operator) -> float:
        try:
            counts = operator.metrics()
        except OSError:
            return 0.0
        return counts.get('apptopology_reconciles_total{result="applied"}', 0.0)

    def change(self, ns: str, name: str, port: int) -> float | None:
        """Patch the web->api port; seconds until the api tier's policy has it (None: not in 10 minutes)."""
        doc = topology(name, ns)
        doc["spec"]["flows"][1]["ports"] = [{"port": port}]
        started = time.monotonic()
        self.custom.patch_namespaced_custom_object(
            "apptopology.io",
            "v1alpha1",
            ns,
            "apptopologies",
            name,
            [{"op": "replace", "path": "/spec", "value": doc["spec"]}],
            _content_type="application/json-patch+json",
        )
        while True:
            try:
                policy = json.loads(
                    self.net.read_namespaced_network_policy(f"{name}.tier-api", ns, _preload_content=False).read()
                )
            except client.ApiException as exc:
                if exc.status != 404:  # during the burst the topology may not have been created yet
                    raise
                policy = {"spec": {}}
            ports = [p.get("port") for r in policy["spec"].get("ingress") or [] for p in r.get("ports") or []]
            if port in ports:
                return time.monotonic() - started
            if time.monotonic() - started > CHANGE_TIMEOUT:
                return None
            time.sleep(0.01)

    def changes(self, label: str, port: int, picks: list[tuple[str, str]]) -> None:
        measured = [self.change(ns, name, port) for ns, name in picks]
        latencies = [CHANGE_TIMEOUT if t is None else t for t in measured]  # a timeout counts as its limit
        self.result[f"change_{label}"] = {
            "p50": statistics.median(latencies),
            "p99": percentile(latencies, 0.99),
            "max": max(latencies),
            "timed_out": sum(t is None for t in measured),
        }

    def run(self, tracemalloc: bool, profile: str | None = None, workers: int = 8) -> dict[str, Any]:
        self.cp.kubectl("apply", "-k", str(ROOT / "crds"))  # the CRDs are installed apart from deploy/
        self.cp.kubectl("apply", "-k", str(ROOT / "deploy"))
        self.cp.kubectl("wait", "--for=condition=Established", "crd/apptopologies.apptopology.io", "--timeout=60s")
        self.raw_loop()
        self.namespaces("bench")
        env_file = self.cp.dir / "tracemalloc.txt"
        if tracemalloc:
            os.environ["APPTOPOLOGY_TRACEMALLOC"] = str(env_file)
        operator = Operator(self.cp, ["--workers", str(workers)])
        self.result["workers"] = workers
        start_timeout = 600 if tracemalloc else 60  # tracing every allocation slows the start a lot
        operator.start(start_timeout)
        since = len(self.cp.audit_writes())
        docs = [topology(name, ns) for ns, name in self.keys]

        def create(doc: dict[str, Any]) -> None:
            ns = doc["metadata"]["namespace"]
            self.custom.create_namespaced_custom_object("apptopology.io", "v1alpha1", ns, "apptopologies", doc)

        spy = None
        if profile:  # py-spy (pip install py-spy): collapsed stacks of the operator during the burst
            assert operator.proc is not None
            spy = subprocess.Popen(
                ["py-spy", "record", "--format", "raw", "-r", "50", "-o", profile, "-p", str(operator.proc.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        started = time.monotonic()
        self.result["create_seconds"] = parallel(create, docs)
        # During the burst: changes while the operator still works through it (an edit goes ahead of the
        # topologies still waiting to be created, through the queue's urgent lane).
        picks = [self.keys[i * (self.size // CHANGES)] for i in range(CHANGES)]
        during = threading.Thread(target=self.changes, args=("during_burst", 8081, picks))
        during.start()
        while True:
            # Listing every topology is itself load on the API server the operator shares (at 10,000 it is
            # tens of MB a time): list only once the operator's own count says each was applied.
            if self.applied(operator) >= self.size:
                ready, total = self.ready_count()
                if ready == total == self.size:
                    break
            time.sleep(0.5)
        self.result["operator_seconds"] = time.monotonic() - started
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        during.join()
        real, dry = writes(self.cp, since)  # the burst's, and the 20 changes made during it
        self.result["writes"] = real
        self.result["writes_total"] = sum(real.values())
        self.result["dry_runs"] = dry
        # Right after the burst: every topology present and Ready; whatever the burst left queued (the
        # echoes of thousands of writes) must not delay a user's change.
        self.changes("after_burst", 8083, picks)
        assert operator.proc is not None
        cpu, rss = proc_stats(operator.proc.pid)
        self.result["operator_cpu_seconds"] = cpu
        self.result["rss_mib"] = rss
        time.sleep(5)
        self.changes("idle", 8082, picks)
        time.sleep(IDLE_SETTLE)  # whether the RSS settles once the queue is idle (it barely does: live memory)
        self.result["rss_idle_mib"] = proc_stats(operator.proc.pid)[1]
        if tracemalloc:
            os.kill(operator.proc.pid, signal.SIGUSR1)
            time.sleep(5)
            self.result["tracemalloc"] = env_file.read_text() if env_file.exists() else "(no snapshot)"
        # Restart: cold start, writes after it.
        time.sleep(5)
        operator.stop()
        since = len(self.cp.audit_writes())
        started = time.monotonic()
        operator.start(start_timeout)
        target = self.size
        while True:
            try:
                counts = operator.metrics()
            except OSError:
                counts = {}
            done = sum(v for k, v in counts.items() if k.startswith("apptopology_reconciles_total{"))
            if done >= target:
                break
            time.sleep(0.5)
        self.result["cold_start_seconds"] = time.monotonic() - started
        time.sleep(10)
        real, _ = writes(self.cp, since)
        self.result["writes_after_restart"] = sum(real.values())
        _, rss = proc_stats(operator.proc.pid)
        self.result["rss_after_restart_mib"] = rss
        time.sleep(IDLE_SETTLE)
        self.result["rss_after_restart_idle_mib"] = proc_stats(operator.proc.pid)[1]
        if tracemalloc:
            os.kill(operator.proc.pid, signal.SIGUSR1)
            time.sleep(10)
            self.result["tracemalloc_after_restart"] = env_file.read_text() if env_file.exists() else "(none)"
        operator.stop()
        return self.result


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        ("topologies / policies", lambda r: f"{r['topologies']:,} / {r['policies']:,}"),
        ("raw SSA loop (8 threads)", lambda r: f"{r['raw_seconds']:.1f} s"),
        (
            "operator: all Ready with their policies",
            lambda r: f"{r['operator_seconds']:.1f} s ({r['operator_seconds'] / r['raw_seconds']:.2f}x raw)",
        ),
        ("writes during convergence (dry runs)", lambda r: f"{r['writes_total']:,} ({r['dry_runs']:,})"),
        ("operator CPU seconds", lambda r: f"{r['operator_cpu_seconds']:.1f}"),
        ("change during the burst p50 / p99 / max", lambda r: _lat(r.get("change_during_burst"))),
        ("change right after the burst p50 / p99 / max", lambda r: _lat(r.get("change_after_burst"))),
        ("change, idle p50 / p99 / max", lambda r: _lat(r.get("change_idle"))),
        (
            "RSS after convergence / after restart",
            lambda r: f"{r['rss_mib']:.0f} / {r['rss_after_restart_mib']:.0f} MiB",
        ),
        (
            "RSS idle 40 s later: after convergence / after restart",
            lambda r: f"{r.get('rss_idle_mib', 0):.0f} / {r.get('rss_after_restart_idle_mib', 0):.0f} MiB",
        ),
        ("cold start after restart", lambda r: f"{r['cold_start_seconds']:.1f} s"),
        ("writes after restart", lambda r: f"{r['writes_after_restart']}"),
    ]
    head = "| | " + " | ".join(f"{r['topologies']:,}" for r in results) + " |"
    sep = "|---|" + "---|" * len(results)
    lines = [head, sep]
    for label, fn in rows:
        lines.append(f"| {label} | " + " | ".join(fn(r) for r in results) + " |")
    return "\n".join(lines)


def _lat(d: dict[str, float] | None) -> str:
    if d is None:
        return "n/a"
    timed_out = f" ({d['timed_out']:.0f} not applied in {CHANGE_TIMEOUT:.0f} s)" if d.get("timed_out") else ""
    return f"{d['p50']:.2f} / {d['p99']:.2f} / {d['max']:.2f} s{timed_out}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000", help="comma-separated topology counts")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    parser.add_argument("--tracemalloc", action="store_true", help="trace the operator's allocations")
    parser.add_argument("--profile", metavar="FILE", help="py-spy collapsed stacks of the operator during the burst")
    parser.add_argument("--workers", type=int, default=16, help="the operator's --workers (default 16)")
    args = parser.parse_args()
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="apptopology-bench-") as tmp:
            cp = controlplane_or_skip(Path(tmp) / "cp")
            try:
                result = Bench(cp, size).run(args.tracemalloc, args.profile, args.workers)
            finally:
                subprocess.run(["bash", str(RUN_SH), "down", str(cp.dir)], capture_output=True, timeout=120)
        traces = {k: result.pop(k) for k in ("tracemalloc", "tracemalloc_after_restart") if k in result}
        print(yaml.safe_dump(result, sort_keys=False), flush=True)
        for label, text in traces.items():
            print(f"--- {label}\n{text}", flush=True)
        results.append(result)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
