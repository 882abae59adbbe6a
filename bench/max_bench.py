"""Maximum topologies on the real control plane: do they hold back a small one, and the memory?

    .venv/bin/python bench/max_bench.py                 # 20 maximum topologies (about 10 minutes)
    .venv/bin/python bench/max_bench.py --count 5 --size 32x256x8

On a fresh control plane of tests/controlplane/ with the operator under deploy/'s RBAC and its defaults
(16 workers), as in bench/operator_bench.py:

1. a small topology (3 tiers) in its own namespace, and ``--count`` topologies of ``--size`` (default
   20 of the CRD's maximum, 64 tiers, 512 flows of 32 ports: bench/cost_bench.py's generator), one per
   namespace, created one after another before the operator starts (each create of the largest takes
   the API server seconds: its schema and CEL rules; creating them while the operator works saturated it);
2. the operator starts: time until the small topology is Ready, then its edit latency (a port of one
   flow changed; time until its policy in the API server has it), one edit after another until every
   large topology is Ready; then five edits once all is idle;
3. one large topology replaced by another random one of the same size (every policy changes), timed,
   with the small one's edits going on;
4. a restart: time until the operator is healthy, then until every topology is reconciled again
   (the small one's edits meanwhile), and the writes after it (0 expected but for those edits).

The operator's RSS is sampled every 0.2 s throughout: the peak is what its 512 Mi limit must hold.
Prints a markdown table; asserts nothing.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "bench"))

from cost_bench import changed, topology  # noqa: E402
from harness import RUN_SH, ControlPlane, Operator, controlplane_or_skip  # noqa: E402
from kubernetes import client  # noqa: E402
from operator_bench import percentile, proc_stats, writes  # noqa: E402

SMALL_NS = "small"
EDIT_TIMEOUT = 600.0


def small(port: int) -> dict[str, Any]:
    tiers = ["web", "api", "db"]
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": "shop", "namespace": SMALL_NS},
        "spec": {
            "tiers": [{"name": t, "podSelector": {"matchLabels": {"app": t}}} for t in tiers],
            "flows": [
                {"from": {"anywhere": True}, "to": {"tier": "web"}, "ports": [{"port": 443}]},
                {"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": [{"port": port}]},
                {"from": {"tier": "api"}, "to": {"tier": "db"}, "ports": [{"port": 5432}]},
            ],
        },
    }


def high_water(pid: int) -> float:
    """The process's peak RSS so far (VmHWM), MiB: what a memory limit would have had to hold."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


class Sampler(threading.Thread):
    """The operator's peak RSS, sampled every 0.2 s (its process may be replaced by a restart)."""

    def __init__(self, operator: Operator):
        super().__init__(daemon=True)
        self.operator, self.peak, self.stopped = operator, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            proc = self.operator.proc
            if proc is None:
                continue
            try:
                self.peak = max(self.peak, proc_stats(proc.pid)[1])
            except (OSError, StopIteration, IndexError):
                continue

    def take(self) -> float:
        """The peak since the last take."""
        peak, self.peak = self.peak, 0.0
        return peak


class Bench:
    def __init__(self, cp: ControlPlane, count: int, size: tuple[int, int, int]):
        self.cp, self.count, self.size = cp, count, size
        self.custom = client.CustomObjectsApi(cp.api)
        self.net = client.NetworkingV1Api(cp.api)
        self.core = client.CoreV1Api(cp.api)
        self.result: dict[str, Any] = {"count": count, "size": "x".join(map(str, size))}
        self.port = 8000
        self.create_seconds: list[float] = []  # each create request's time at the API server
        self.operator: Operator | None = None

    def create(self, doc: dict[str, Any]) -> None:
        """Create ``doc``; a server-side timeout (the CRD's CEL rules over the largest topology take the
        API server seconds) is retried, an AlreadyExists after it means the first attempt went through."""
        ns = doc["metadata"]["namespace"]
        for attempt in range(5):
            started = time.monotonic()
            try:
                self.custom.create_namespaced_custom_object("apptopology.io", "v1alpha1", ns, "apptopologies", doc)
            except client.ApiException as exc:
                if exc.status == 409 and attempt > 0:
                    return
                if exc.status not in (429, 500, 503, 504) or attempt == 4:
                    raise
                continue
            finally:
                self.create_seconds.append(time.monotonic() - started)
            return

    def large(self, i: int, seed: int = 0) -> dict[str, Any]:
        return topology(f"max{i:02d}", f"max-{i:02d}", *self.size, seed=seed + i)

    def ready(self, ns: str, name: str) -> bool:
        obj = self.custom.get_namespaced_custom_object("apptopology.io", "v1alpha1", ns, "apptopologies", name)
        status = obj.get("status") or {}
        cond = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)
        generation = obj["metadata"]["generation"]
        return bool(cond and cond["status"] == "True" and status.get("observedGeneration") == generation)

    def edit_small(self) -> float | None:
        """One edit of the small topology: seconds until its api policy has the new port."""
        self.port += 1
        port = self.port
        started = time.monotonic()
        self.custom.patch_namespaced_custom_object(
            "apptopology.io",
            "v1alpha1",
            SMALL_NS,
            "apptopologies",
            "shop",
            [{"op": "replace", "path": "/spec", "value": small(port)["spec"]}],
            _content_type="application/json-patch+json",
        )
        while time.monotonic() - started < EDIT_TIMEOUT:
            policy = json.loads(
                self.net.read_namespaced_network_policy("shop.tier-api", SMALL_NS, _preload_content=False).read()
            )
            ports = [p.get("port") for r in policy["spec"].get("ingress") or [] for p in r.get("ports") or []]
            if port in ports:
                return time.monotonic() - started
            time.sleep(0.02)
        return None

    def edits_until(self, done: threading.Event) -> list[float | None]:
        out = []
        while not done.is_set():
            out.append(self.edit_small())
            time.sleep(0.5)
        return out

    @staticmethod
    def latency(measured: list[float | None]) -> dict[str, Any]:
        values = [EDIT_TIMEOUT if t is None else t for t in measured] or [0.0]
        return {
            "edits": len(measured),
            "p50": statistics.median(values),
            "p99": percentile(values, 0.99),
            "max": max(values),
            "not_applied": sum(t is None for t in measured),
        }

    def while_edits(self, label: str, wait: Any) -> None:
        """Run ``wait`` (until its phase is over) while the small topology is edited again and again."""
        done = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            edits = pool.submit(self.edits_until, done)
            started = time.monotonic()
            try:
                wait()
            finally:
                done.set()
            self.result[f"{label}_seconds"] = time.monotonic() - started
            self.result[f"{label}_small_edits"] = self.latency(edits.result())

    def run(self) -> dict[str, Any]:
        cp = self.cp
        cp.kubectl("apply", "-k", str(ROOT / "crds"))
        cp.kubectl("apply", "-k", str(ROOT / "deploy"))
        cp.kubectl("wait", "--for=condition=Established", "crd/apptopologies.apptopology.io", "--timeout=60s")
        for ns in [SMALL_NS, *(f"max-{i:02d}" for i in range(self.count))]:
            self.core.create_namespace({"metadata": {"name": ns}})
        # Everything exists before the operator starts: creating maximum topologies while it works saturates
        # the API server (each write of such an object costs it seconds), and that is not what is measured.
        self.create(small(self.port))
        started = time.monotonic()
        for i in range(self.count):
            self.create(self.large(i))
        self.result["create_requests_seconds"] = time.monotonic() - started
        self.result["create_request_seconds"] = {
            "p50": statistics.median(self.create_seconds[1:]),
            "max": max(self.create_seconds[1:]),
            "requests": len(self.create_seconds) - 1,
        }
        operator = self.operator = Operator(cp, ["--workers", "16"])
        sampler = Sampler(operator)
        sampler.start()
        since = len(cp.audit_writes())
        started = time.monotonic()
        operator.start(300)
        deadline = time.monotonic() + EDIT_TIMEOUT
        while not self.ready(SMALL_NS, "shop") and time.monotonic() < deadline:
            time.sleep(0.2)
        self.result["small_ready_seconds"] = time.monotonic() - started

        def all_ready() -> None:
            while not all(self.ready(f"max-{i:02d}", f"max{i:02d}") for i in range(self.count)):
                time.sleep(1)

        self.while_edits("create", all_ready)
        self.result["create_seconds"] += self.result["small_ready_seconds"]
        real, _ = writes(cp, since)
        self.result["create_writes"] = sum(real.values())
        self.result["create_rss_peak_mib"] = sampler.take()
        assert operator.proc is not None
        self.result["cpu_after_create"] = proc_stats(operator.proc.pid)[0]
        self.result["small_idle"] = self.latency([self.edit_small() for _ in range(5)])

        def replaced() -> None:
            doc = changed(self.large(0), "swap", 0)
            self.custom.patch_namespaced_custom_object(
                "apptopology.io",
                "v1alpha1",
                "max-00",
                "apptopologies",
                "max00",
                [{"op": "replace", "path": "/spec", "value": doc["spec"]}],
                _content_type="application/json-patch+json",
            )
            time.sleep(1)
            while not self.ready("max-00", "max00"):
                time.sleep(0.2)

        self.while_edits("swap", replaced)
        self.result["swap_rss_peak_mib"] = sampler.take()
        assert operator.proc is not None
        self.result["rss_high_water_mib"] = high_water(operator.proc.pid)
        operator.stop()
        since = len(cp.audit_writes())
        started = time.monotonic()
        operator.start(300)
        self.result["restart_healthy_seconds"] = time.monotonic() - started

        def restarted() -> None:
            while True:
                try:
                    counts = operator.metrics()
                except OSError:
                    counts = {}
                if sum(v for k, v in counts.items() if k.startswith("apptopology_reconciles_total{")) >= self.count + 1:
                    return
                time.sleep(0.5)

        self.while_edits("restart", restarted)
        time.sleep(10)
        self.result["restart_writes"] = sum(  # the small topology's edits write, the rest should not
            1
            for e in cp.audit_writes()[since:]
            if e["objectRef"].get("resource") != "leases" and e["objectRef"].get("namespace") != SMALL_NS
        )
        self.result["restart_rss_peak_mib"] = sampler.take()
        assert operator.proc is not None
        self.result["rss_end_mib"] = proc_stats(operator.proc.pid)[1]
        self.result["restart_rss_high_water_mib"] = high_water(operator.proc.pid)
        sampler.stopped.set()
        operator.stop()
        return self.result


def table(r: dict[str, Any]) -> str:
    def lat(d: dict[str, Any]) -> str:
        missed = f", {d['not_applied']} not applied in {EDIT_TIMEOUT:.0f} s" if d["not_applied"] else ""
        return f"{d['p50']:.2f} / {d['p99']:.2f} / {d['max']:.2f} s ({d['edits']} edits{missed})"

    rows = [
        (
            f"{r['count']} topologies of {r['size']} created (before the operator starts), per request p50 / max",
            f"{r['create_request_seconds']['p50']:.1f} / {r['create_request_seconds']['max']:.1f} s",
        ),
        ("operator started: the small topology Ready", f"{r['small_ready_seconds']:.1f} s"),
        ("  every topology Ready", f"{r['create_seconds']:.1f} s ({r['create_writes']} writes)"),
        ("  meanwhile, the small one's edits p50 / p99 / max", lat(r["create_small_edits"])),
        ("  peak RSS", f"{r['create_rss_peak_mib']:.0f} MiB"),
        ("  operator CPU seconds", f"{r['cpu_after_create']:.1f}"),
        ("small topology's edits, idle", lat(r["small_idle"])),
        ("one large topology replaced by another of the same size: Ready", f"{r['swap_seconds']:.1f} s"),
        ("  meanwhile, the small one's edits", lat(r["swap_small_edits"])),
        ("  peak RSS", f"{r['swap_rss_peak_mib']:.0f} MiB"),
        ("the operator's high-water RSS (VmHWM) until then", f"{r['rss_high_water_mib']:.0f} MiB"),
        (
            "restart: healthy; then every topology reconciled",
            f"{r['restart_healthy_seconds']:.1f} s; {r['restart_seconds']:.1f} s",
        ),
        ("  meanwhile, the small one's edits", lat(r["restart_small_edits"])),
        ("  writes other than the edits'", f"{r['restart_writes']}"),
        (
            "  peak RSS / high water / at the end",
            f"{r['restart_rss_peak_mib']:.0f} / {r['restart_rss_high_water_mib']:.0f} / {r['rss_end_mib']:.0f} MiB",
        ),
    ]
    return "\n".join(["| | |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20, help="large topologies, one per namespace")
    parser.add_argument("--size", default="64x512x32", help="TIERSxFLOWSxPORTS of each (default: the maximum)")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    args = parser.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="apptopology-max-") as tmp:
        cp = controlplane_or_skip(Path(tmp) / "cp")
        bench = Bench(cp, args.count, (size[0], size[1], size[2]))
        try:
            result = bench.run()
        except Exception:
            print(json.dumps(bench.result, indent=2), flush=True)  # what was measured before it failed
            raise
        finally:
            if bench.operator is not None:
                bench.operator.stop()
            subprocess.run(["bash", str(RUN_SH), "down", str(cp.dir)], capture_output=True, timeout=120)
    print(json.dumps(result, indent=2), flush=True)
    print(table(result))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
