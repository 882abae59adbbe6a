"""What the e2e tests share: the cluster's tools (from `e2e/cluster.sh env`), kubectl and helm, probes with
`agnhost connect` from inside pods, the operator's audit trail, and `apptopology explain --cluster`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

E2E = Path(__file__).resolve().parent
ROOT = E2E.parent
OPERATOR_NS = "apptopology-system"
OPERATOR_SA = f"system:serviceaccount:{OPERATOR_NS}:apptopology-operator"


def cluster_env() -> dict[str, str] | None:
    out = subprocess.run(["bash", str(E2E / "cluster.sh"), "env"], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


class Failed(Exception):
    """A command the test needed failed: what ran, and what it said."""


@dataclass
class Cluster:
    env: dict[str, str]

    def _run(
        self, argv: Sequence[str], stdin: str | None, check: bool, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        environ = {**os.environ, "KUBECONFIG": self.env["KUBECONFIG"]}
        out = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, env=environ)
        if check and out.returncode != 0:
            raise Failed(f"{' '.join(argv[:8])}: exit {out.returncode}\n{out.stderr[-3000:]}")
        return out

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 180) -> str:
        return self._run([self.env["KUBECTL"], *args], stdin, check, timeout).stdout

    def kubectl_rc(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self._run([self.env["KUBECTL"], *args], None, False, timeout)

    def helm(self, *args: str, timeout: float = 300) -> str:
        return self._run([self.env["HELM"], *args], None, True, timeout).stdout

    def apply(self, objects: Iterable[dict[str, Any]] | str, *extra: str) -> None:
        text = objects if isinstance(objects, str) else yaml.safe_dump_all(list(objects))
        self.kubectl("apply", "-f", "-", *extra, stdin=text)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def wait_for(self, what: str, predicate: Any, timeout: float = 120, interval: float = 1.0) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
            except Failed as exc:
                last = exc
            if last and not isinstance(last, Failed):
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})"[:3000])

    # --- the operator ------------------------------------------------------------------------------------

    def operator_pods(self) -> list[dict[str, Any]]:
        pods = self.get("pods", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/name=apptopology")["items"]
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    def leader(self) -> str | None:
        lease = self.get("lease", "-n", OPERATOR_NS, "apptopology-operator")
        holder: str | None = lease["spec"].get("holderIdentity")
        return holder

    def wait_ready_topologies(self, namespaces: Iterable[str], timeout: float = 120) -> None:
        for ns in namespaces:
            self.kubectl(
                "wait",
                "-n",
                ns,
                "--for=jsonpath={.status.conditions[?(@.type=='Ready')].status}=True",
                "apptopologies",
                "--all",
                f"--timeout={int(timeout)}s",
                timeout=timeout + 10,
            )

    def policies(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every NetworkPolicy the operator owns: (namespace, name) -> (resourceVersion, spec)."""
        items = self.get("networkpolicies", "-A", "-l", "app.kubernetes.io/managed-by=apptopology-operator")["items"]
        return {
            (p["metadata"]["namespace"], p["metadata"]["name"]): {
                "resourceVersion": p["metadata"]["resourceVersion"],
                "spec": p["spec"],
            }
            for p in items
        }


# --- probes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """From a pod (namespace/name) to a target (pod IP, ClusterIP or DNS name) on a TCP port."""

    source: str
    target: str
    port: int
    via: str = "pod"  # pod | service | dns
    dest_pod: str = ""  # namespace/name of the pod that answers, for comparing with explain

    def __str__(self) -> str:
        return f"{self.source} -> {self.target}:{self.port} ({self.via}{' ' + self.dest_pod if self.dest_pod else ''})"


def probe(cluster: Cluster, p: Probe, timeout: str = "2s", attempts: int = 3) -> bool:
    """True if a TCP connection opens, False if it is refused or times out (blocked). A failure of kubectl
    itself, or of the name lookup, is retried and then raised: it says nothing about the policy."""
    ns, pod = p.source.split("/")
    last = ""
    for _ in range(attempts):
        out = cluster.kubectl_rc(
            "exec",
            "-n",
            ns,
            pod,
            "-c",
            "c8080",
            "--",
            "/agnhost",
            "connect",
            f"{p.target}:{p.port}",
            f"--timeout={timeout}",
        )
        if out.returncode == 0:
            return True
        if re.search(r"^(TIMEOUT|REFUSED)$", out.stderr, re.M):
            return False
        last = out.stderr.strip()
        time.sleep(1)
    raise Failed(f"probe {p}: {last}")


def probe_all(cluster: Cluster, probes: Sequence[Probe], workers: int = 6) -> dict[Probe, bool]:
    with ThreadPoolExecutor(workers) as pool:
        return dict(zip(probes, pool.map(lambda p: probe(cluster, p), probes), strict=True))


@dataclass
class Watch:
    """Probes in a loop, in the background, while something happens: every result that differs from what
    it must be is kept, with its time."""

    cluster: Cluster
    expected: dict[Probe, bool]
    wrong: list[tuple[float, Probe, bool]] = field(default_factory=list)
    rounds: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            for p, want in self.expected.items():
                try:
                    got = probe(self.cluster, p, timeout="1s", attempts=1)
                except Failed as exc:
                    self.errors.append(str(exc))
                    continue
                if got != want:
                    self.wrong.append((time.time(), p, got))
            self.rounds += 1


@contextmanager
def watching(cluster: Cluster, expected: dict[Probe, bool]) -> Iterator[Watch]:
    watch = Watch(cluster, expected)
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    try:
        yield watch
    finally:
        watch._stop.set()
        thread.join(timeout=60)


# --- the API server's audit trail ----------------------------------------------------------------------


def policy_writes(cluster: Cluster, since: float, until: float | None = None) -> list[dict[str, Any]]:
    """NetworkPolicy writes (create, update, patch, delete; dry runs excluded) the API server recorded in
    [since, until], by anyone. A deleted namespace is emptied with a deletecollection of every kind: in the
    operator's own namespace, which holds no NetworkPolicy, that is not a write to one."""
    path = Path(cluster.env["AUDIT_LOG"])
    found = []
    for line in path.read_text().splitlines() if path.exists() else []:
        event = json.loads(line)
        if event.get("stage") != "ResponseComplete" or "dryRun" in event.get("requestURI", ""):
            continue
        ref = event["objectRef"]
        if event["verb"] == "deletecollection" and ref.get("namespace") == OPERATOR_NS:
            continue  # the namespace controller emptying the operator's deleted namespace: it holds no policy
        stamp = _epoch(event["stageTimestamp"])
        if stamp < since or (until is not None and stamp > until):
            continue
        found.append(
            {
                "verb": event["verb"],
                "user": event["user"]["username"],
                "object": f"{event['objectRef'].get('namespace')}/{event['objectRef'].get('name')}",
                "code": event.get("responseStatus", {}).get("code"),
                "time": event["stageTimestamp"],
            }
        )
    return found


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# --- apptopology explain --cluster -------------------------------------------------------------------------

_PORT = re.compile(r"(TCP|UDP|SCTP)/(\d+)(?:-(\d+))?")


def explain_allows(cluster: Cluster, files: Sequence[Path]) -> dict[tuple[str, str], str]:
    """`apptopology explain --cluster -o json`: (from, to) -> the ports the declared topologies allow."""
    argv = [str(Path(sys.executable).parent / "apptopology"), "explain", "--cluster", "-o", "json"]
    for f in files:
        argv += ["-f", str(f)]
    environ = {**os.environ, "KUBECONFIG": cluster.env["KUBECONFIG"]}
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=environ)
    if out.returncode != 0:
        raise Failed(f"apptopology explain --cluster: {out.stderr[-2000:]}")
    return {(row["from"], row["to"]): row["ports"] for row in json.loads(out.stdout)}


def explained(allows: dict[tuple[str, str], str], source: str, dest: str, port: int) -> bool:
    ports = allows.get((source, dest))
    if ports is None:
        return False
    if ports == "all":
        return True
    return any(proto == "TCP" and int(low) <= port <= int(high or low) for proto, low, high in _PORT.findall(ports))
