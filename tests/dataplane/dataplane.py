"""A one-node Kubernetes dataplane in network namespaces: kube-router enforces NetworkPolicies on real packets.

    node netns  <prefix>-node   the control plane (tests/controlplane/run.sh, on that namespace's
                                loopback), kube-router (firewall only), the operator; node IP on a bridge
    pod netns   <prefix>-<n>    eth0 with the pod's /32, a veth to the node, a default route via the
                                node; a server answering on the pod's container ports
    external    <prefix>-<n>    the same, for a client outside the cluster (an ipBlock address)

Pod traffic is routed through the node (no bridge between pods), so every pod-to-pod packet crosses the
node's FORWARD chain, where kube-router's per-pod firewall chains apply. Nothing is connected to the
host's network namespace: kube-router rewrites the node namespace's whole filter table, never the host's,
and teardown (``ip netns del``) takes veths, routes, rules and ipsets with it.

There is no kubelet: Pod objects are bound to the Node and their status is written as a kubelet and a
CNI plugin would (Running, podIP, hostIP), which is all kube-router reads.

Everything the harness starts is recorded in ``DIR/state.json``, so ``down`` can clean up after a
crashed run or a different process (the human script, ``dataplane.sh``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import netns
from harness import ROOT, RUN_SH, ControlPlane, Operator, wait_for
from kubernetes import client, config
from netns import InNamespace, NetnsError, Protocol, Result

HERE: Final = Path(__file__).resolve().parent
BUILD_SH: Final = HERE / "build.sh"
SERVER_PY: Final = HERE / "server.py"
DEPLOY: Final = ROOT / "deploy"

NODE_NAME: Final = "dataplane-node"
NODE_IP: Final = "10.244.0.1"
POD_NETWORK: Final = ipaddress.ip_network("10.244.0.0/16")
FIRST_POD_IP: Final = ipaddress.ip_address("10.244.1.1")
SERVICE_CIDR: Final = "10.0.0.0/24"  # tests/controlplane/run.sh's --service-cluster-ip-range
OPERATOR_PORT: Final = 18080  # liveness, inside the node namespace (run.sh's ports are ephemeral, >= 32768)
BARRIER_NAMESPACE: Final = "apptopology-dataplane"
BARRIER_POD: Final = "barrier"
UDP_SOURCE_PORTS: Final = range(50000, 60000)
NETNS_EXEC: Final = ("ip", "netns", "exec")
IMAGE: Final = "example.invalid/none:0"  # never pulled: there is no kubelet

# The node's NoExecute taints appear once the kubelet-less node stops "heartbeating" (~50 s): never evict.
TOLERATIONS: Final = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
]


class DataplaneError(RuntimeError):
    """Something the dataplane could not do; the message is meant for the person running it."""


@dataclass(frozen=True)
class Port:
    """A container port: the server listens on it, the Pod object declares it (named ports resolve here)."""

    port: int
    protocol: Protocol = "TCP"
    name: str | None = None


@dataclass
class Endpoint:
    """A pod, or a client outside the cluster, each in its own network namespace with a server."""

    key: str  # "NAMESPACE/NAME" for pods, "external/NAME" for outside clients
    netns: str
    ip: str
    ifname: str  # the node's end of the veth
    ports: list[Port]
    pod: bool = True
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split("/", 1)[1]

    @staticmethod
    def load(raw: dict[str, Any]) -> Endpoint:
        return Endpoint(**{**raw, "ports": [Port(**p) for p in raw["ports"]]})


# Processes we start are identified by pid and start time, so a recycled pid is never signalled.


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), or None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # ours: reap it
        return None
    return fields[19]


def _alive(proc: dict[str, Any]) -> bool:
    return _start_time(int(proc["pid"])) == str(proc["start"])


def _stop(proc: dict[str, Any], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; only if the pid is still the process we started."""
    if not _alive(proc):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(proc["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(proc) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(proc):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(proc["pid"]), signal.SIGKILL)


def _record(pid: int) -> dict[str, Any]:
    return {"pid": pid, "start": _start_time(pid)}


class NodeOperator(Operator):
    """``apptopology run`` as in the integration suite (its ServiceAccount, deploy/ RBAC), but inside the
    node namespace, where the API server listens; detached, so the human script can leave it running."""

    def __init__(self, cp: ControlPlane, node: InNamespace):
        super().__init__(cp)
        self.node = node
        self.port = OPERATOR_PORT
        self.url = f"http://127.0.0.1:{self.port}/healthz"

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*NETNS_EXEC, self.node.name, sys.executable, "-m", "apptopology.cli", "run", "--liveness", self.url],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                start_new_session=True,
            )
        wait_for(self.healthy, timeout=60, what="operator liveness endpoint")

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.logs()}")
        return self.node.call(_http_ok, self.url)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


class Dataplane:
    """The node, its pods and the processes around them; see the module docstring."""

    def __init__(self, directory: Path):
        self.dir = directory.resolve()
        self.state_file = self.dir / "state.json"
        self.state: dict[str, Any] = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        self._lock = threading.Lock()
        self._udp_ports: dict[str, Iterator[int]] = {}
        self._node: InNamespace | None = None
        self._api: client.ApiClient | None = None
        self.operator: NodeOperator | None = None

    # State -----------------------------------------------------------------------------------------

    def _save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True))
        tmp.replace(self.state_file)

    @property
    def prefix(self) -> str:
        return str(self.state["prefix"])

    @property
    def node_netns(self) -> str:
        return f"{self.prefix}-node"

    @property
    def cp_dir(self) -> Path:
        return self.dir / "cp"

    @property
    def endpoints(self) -> dict[str, Endpoint]:
        return {k: Endpoint.load(v) for k, v in self.state.get("endpoints", {}).items()}

    def endpoint(self, key: str) -> Endpoint:
        found = self.state.get("endpoints", {}).get(key)
        if found is None:
            known = ", ".join(sorted(self.state.get("endpoints", {}))) or "none"
            raise DataplaneError(f"no pod or external client {key!r} (known: {known})")
        return Endpoint.load(found)

    @property
    def env(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in (self.cp_dir / "env").read_text().splitlines() if "=" in line)

    # Up and down -----------------------------------------------------------------------------------

    def up(self, operator: bool = True) -> None:
        """Node namespace, control plane inside it, deploy/ applied, Node object, kube-router, operator."""
        if self.state.get("prefix"):
            raise DataplaneError(f"{self.dir} already holds a dataplane: run `down` first")
        reason = netns.unavailable()
        if reason:
            raise DataplaneError(f"network namespaces are not usable here: {reason}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state = {"prefix": f"atp{uuid.uuid4().hex[:5]}", "next_ip": 0, "endpoints": {}, "processes": {}}
        self._save()
        kube_router = self._build()
        self._make_node()
        self._controlplane()
        self._node_object()
        self._kube_router(kube_router)
        self._barrier_setup()
        if operator:
            self.start_operator()

    def down(self) -> list[str]:
        """Stop everything recorded in the state file and remove it; returns what went wrong (best effort)."""
        problems: list[str] = []
        if self.operator is not None:
            self.operator.stop()
        for proc in self.state.get("processes", {}).values():
            _stop(proc)
        if self._node is not None:
            self._node.close()
        if self.cp_dir.exists():
            done = subprocess.run(
                [*NETNS_EXEC, self.node_netns, "bash", str(RUN_SH), "down", str(self.cp_dir)]
                if netns.exists(self.node_netns)
                else ["bash", str(RUN_SH), "down", str(self.cp_dir)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                problems.append(f"control plane: {done.stderr.strip()[-500:]}")
        for endpoint in self.endpoints.values():
            problems += self._delete_netns(endpoint.netns)
        if self.state.get("prefix"):
            problems += self._delete_netns(self.node_netns)
        self.state = {}
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()
        return problems

    @staticmethod
    def _delete_netns(name: str) -> list[str]:
        netns.forget(name)
        try:
            netns.delete(name)
        except NetnsError as exc:
            return [str(exc)]
        return []

    def _build(self) -> Path:
        done = subprocess.run(["bash", str(BUILD_SH)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise DataplaneError(f"building kube-router failed:\n{done.stderr[-3000:]}")
        return Path(done.stdout.strip().splitlines()[-1]) / "kube-router"

    def _make_node(self) -> None:
        node = self.node_netns
        netns.ip("netns", "add", node)
        netns.ip("link", "set", "lo", "up", netns=node)
        netns.sysctl(
            node,
            {
                "net.ipv4.ip_forward": 1,
                # kube-router REJECTs with ICMP port-unreachable; unlimited ICMP errors make every blocked
                # probe fail at once (refused) instead of timing out after the default rate limit.
                "net.ipv4.icmp_ratelimit": 0,
                "net.ipv4.icmp_msgs_per_sec": 1000000,
                "net.ipv4.icmp_msgs_burst": 1000000,
                # Thousands of short probe connections: don't keep their conntrack entries for minutes.
                "net.netfilter.nf_conntrack_tcp_timeout_time_wait": 5,
            },
        )
        # The node's address lives on an empty bridge (this kernel has no dummy links); pods are routed.
        netns.ip("link", "add", "node0", "type", "bridge", netns=node)
        netns.ip("addr", "add", f"{NODE_IP}/32", "dev", "node0", netns=node)
        netns.ip("link", "set", "node0", "up", netns=node)
        self._node = InNamespace(node)

    @property
    def node(self) -> InNamespace:
        if self._node is None:
            if not netns.exists(self.node_netns):
                raise DataplaneError(f"the node namespace {self.node_netns} is gone: run `down`, then `up`")
            self._node = InNamespace(self.node_netns)
        return self._node

    def _controlplane(self) -> None:
        done = subprocess.run(
            [*NETNS_EXEC, self.node_netns, "bash", str(RUN_SH), "up", str(self.cp_dir)],
            capture_output=True,
            text=True,
            check=False,
            timeout=3600,
        )
        if done.returncode != 0:
            raise DataplaneError(f"the control plane did not start:\n{done.stderr[-4000:]}")
        self.kubectl("apply", "-k", str(ROOT / "crds"))  # the CRDs are installed apart from deploy/
        self.kubectl("apply", "-k", str(DEPLOY))
        self.kubectl("wait", "--for=condition=Established", "crd/apptopologies.apptopology.io", "--timeout=60s")

    @property
    def api(self) -> client.ApiClient:
        """An admin client; call it only through ``self.k`` (its sockets must open in the node namespace)."""
        if self._api is None:
            self._api = config.new_client_from_config(config_file=self.env["KUBECONFIG"])  # type: ignore[no-untyped-call]
        return self._api

    def k(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run an API call (a bound method of a kubernetes client API) in the node namespace."""
        return self.node.call(fn, *args, **kwargs)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = self.env
        done = subprocess.run(
            [*NETNS_EXEC, self.node_netns, env["KUBECTL"], "--kubeconfig", env["KUBECONFIG"], *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            raise DataplaneError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done

    def controlplane(self) -> ControlPlane:
        """The control plane as the integration harness knows it (for its Operator and helpers)."""
        return ControlPlane(self.cp_dir, self.env, self.api)

    def _node_object(self) -> None:
        now = _now()
        self.k(
            self.core.create_node,
            {"metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME}},
             "spec": {"podCIDR": str(POD_NETWORK), "podCIDRs": [str(POD_NETWORK)]}},
        )  # fmt: skip
        status = {
            "addresses": [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": NODE_NAME}],
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "stand-in node",
                 "lastHeartbeatTime": now, "lastTransitionTime": now},
            ],
        }  # fmt: skip
        self.k(self.core.patch_node_status, NODE_NAME, {"status": status})

    def _kube_router_flags(self) -> list[str]:
        return [
            f"--kubeconfig={self.env['KUBECONFIG']}",
            f"--hostname-override={NODE_NAME}",
            "--run-firewall=true",  # the NetworkPolicy controller only: no BGP routing, no service proxy
            "--run-router=false",
            "--run-service-proxy=false",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--health-port=0",
            "--metrics-port=0",
            "-v=1",  # logs "sync iptables took" after each sync: the first one means ready
        ]

    def _kube_router(self, binary: Path) -> None:
        log_path = self.dir / "kube-router.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [*NETNS_EXEC, self.node_netns, str(binary), *self._kube_router_flags()],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.state["processes"]["kube-router"] = _record(proc.pid)
        self._save()

        def synced() -> bool:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise DataplaneError(f"kube-router exited with {proc.returncode}:\n{tail}")
            return "sync iptables took" in log_path.read_text(errors="replace")

        wait_for(synced, timeout=60, interval=0.1, what="kube-router's first firewall sync")

    def start_operator(self) -> None:
        self.operator = NodeOperator(self.controlplane(), self.node)
        self.operator.start()
        assert self.operator.proc is not None
        self.state["processes"]["operator"] = _record(self.operator.proc.pid)
        self._save()

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop()
        self.state["processes"].pop("operator", None)
        self._save()

    # Namespaces, pods, external clients ------------------------------------------------------------

    def ensure_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        """The namespace exists with exactly these labels (plus the name label the API server adds);
        ``labels=None`` leaves an existing namespace's labels alone."""
        wanted = {**(labels or {}), "kubernetes.io/metadata.name": name}
        try:
            self.k(self.core.read_namespace, name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            self.k(self.core.create_namespace, {"metadata": {"name": name, "labels": wanted}})
            return
        if labels is None:
            return
        self.k(self.core.patch_namespace, name, [{"op": "add", "path": "/metadata/labels", "value": wanted}])

    def _allocate_ip(self, avoid: set[str]) -> str:
        with self._lock:
            while True:
                n = self.state["next_ip"]
                self.state["next_ip"] = n + 1
                address = str(FIRST_POD_IP + n)
                if ipaddress.ip_address(address) not in POD_NETWORK:
                    raise DataplaneError("pod network exhausted")
                if address not in avoid:
                    return address

    def _taken(self) -> set[str]:
        return {NODE_IP, *(e["ip"] for e in self.state.get("endpoints", {}).values())}

    def add_pods(self, pods: Sequence[tuple[str, str, dict[str, str], list[Port]]], avoid: Iterable[str] = ()) -> None:
        """Pods (namespace, name, labels, container ports), each in its own namespace with its server,
        as Pod objects bound to the node and marked Running with their IPs."""
        avoid = set(avoid) | self._taken()
        created = []
        for namespace, name, labels, ports in pods:
            address = self._allocate_ip(avoid)
            created.append(self._endpoint(f"{namespace}/{name}", address, ports, pod=True, labels=labels))
        for endpoint in created:
            self.k(self.core.create_namespaced_pod, endpoint.namespace, self._pod_manifest(endpoint))
        for endpoint in created:
            self._set_running(endpoint.namespace, endpoint.name, endpoint.ip)

    def add_external(self, name: str, address: str, ports: list[Port]) -> Endpoint:
        """A client outside the cluster at ``address`` (an ipBlock's address), with a server of its own."""
        if address in self._taken() or ipaddress.ip_address(address) in POD_NETWORK:
            raise DataplaneError(f"external address {address} collides with the node or the pod network")
        return self._endpoint(f"external/{name}", address, ports, pod=False, labels={})

    def _endpoint(self, key: str, address: str, ports: list[Port], pod: bool, labels: dict[str, str]) -> Endpoint:
        if key in self.state["endpoints"]:
            raise DataplaneError(f"{key} exists already")
        with self._lock:
            index = self.state.setdefault("next_netns", 0)
            self.state["next_netns"] = index + 1
        endpoint = Endpoint(key, f"{self.prefix}-{index}", address, f"v{index}", ports, pod, dict(labels))
        self.state["endpoints"][key] = asdict(endpoint)
        self._save()  # recorded before it exists, so `down` removes a half-made one too
        self._wire(endpoint)
        self._serve(endpoint)
        return endpoint

    def _wire(self, e: Endpoint) -> None:
        node = self.node_netns
        netns.ip("netns", "add", e.netns)
        # Created inside the node namespace with its peer moved straight into the pod's: the pair never
        # exists in the host namespace.
        netns.ip("link", "add", e.ifname, "type", "veth", "peer", "name", "eth0", "netns", e.netns, netns=node)
        for args in (
            ("link", "set", "lo", "up"),
            ("addr", "add", f"{e.ip}/32", "dev", "eth0"),
            ("link", "set", "eth0", "up"),
            ("route", "add", NODE_IP, "dev", "eth0", "scope", "link"),
            ("route", "add", "default", "via", NODE_IP, "dev", "eth0"),
        ):
            netns.ip(*args, netns=e.netns)
        netns.ip("link", "set", e.ifname, "up", netns=node)
        netns.ip("route", "add", f"{e.ip}/32", "dev", e.ifname, netns=node)

    def _serve(self, e: Endpoint) -> None:
        tcp = ",".join(str(p.port) for p in e.ports if p.protocol == "TCP")
        udp = ",".join(str(p.port) for p in e.ports if p.protocol == "UDP")
        with open(self.dir / "servers.log", "ab") as log:
            proc = subprocess.Popen(
                [*NETNS_EXEC, e.netns, sys.executable, "-I", "-S", str(SERVER_PY), e.key, "--tcp", tcp, "--udp", udp],
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )
        self.state["processes"][f"server {e.key}"] = _record(proc.pid)
        self._save()
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        proc.stdout.close()
        if line != "ready":
            raise DataplaneError(f"the server of {e.key} did not start: {line or 'no output'}")

    def _pod_manifest(self, e: Endpoint) -> dict[str, Any]:
        ports = [
            {"containerPort": p.port, "protocol": p.protocol, **({"name": p.name} if p.name else {})} for p in e.ports
        ]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": e.name, "namespace": e.namespace, "labels": e.labels},
            "spec": {
                "nodeName": NODE_NAME,
                "containers": [{"name": "server", "image": IMAGE, "ports": ports}],
                "tolerations": TOLERATIONS,
                "terminationGracePeriodSeconds": 0,
            },
        }

    def _set_running(self, namespace: str, name: str, address: str) -> None:
        """The status a kubelet and a CNI plugin would report: all kube-router reads of a pod."""
        now = _now()
        conditions = [
            {"type": t, "status": "True", "lastTransitionTime": now}
            for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ]
        status = {
            "phase": "Running",
            "hostIP": NODE_IP,
            "hostIPs": [{"ip": NODE_IP}],
            "podIP": address,
            "podIPs": [{"ip": address}],
            "startTime": now,
            "conditions": conditions,
            "containerStatuses": [
                {"name": "server", "image": IMAGE, "imageID": "", "ready": True, "restartCount": 0,
                 "started": True, "state": {"running": {"startedAt": now}}},
            ],
        }  # fmt: skip
        self.k(self.core.patch_namespaced_pod_status, name, namespace, {"status": status})

    def relabel(self, key: str, labels: dict[str, str]) -> None:
        """Replace a pod's labels (in the API; the namespace and server stay)."""
        e = self.endpoint(key)
        self.k(
            self.core.patch_namespaced_pod,
            e.name,
            e.namespace,
            [{"op": "add", "path": "/metadata/labels", "value": labels}],
        )
        self.state["endpoints"][key]["labels"] = dict(labels)
        self._save()

    def remove(self, keys: Iterable[str]) -> None:
        """Delete pods (Pod object at once: there is no kubelet to wait for) and external clients."""
        keys = list(keys)
        for key in keys:
            e = self.endpoint(key)
            if e.pod:
                with contextlib.suppress(client.ApiException):
                    self.k(self.core.delete_namespaced_pod, e.name, e.namespace, grace_period_seconds=0)
        for key in keys:
            e = self.endpoint(key)
            proc = self.state["processes"].pop(f"server {key}", None)
            if proc:
                _stop(proc)
            self._delete_netns(e.netns)
            del self.state["endpoints"][key]
            self._save()

    # Probes ----------------------------------------------------------------------------------------

    def _udp_source(self, netns_name: str, busy: set[int]) -> int:
        with self._lock:
            ports = self._udp_ports.setdefault(netns_name, itertools.cycle(UDP_SOURCE_PORTS))
            return next(p for p in ports if p not in busy)

    def probe(self, source: str, destination: str, port: int, protocol: Protocol = "TCP") -> Result:
        """A real connection from ``source`` (a pod or external client, or ``node``) to ``destination``."""
        dst = self.endpoint(destination)
        if source == "node":
            where, busy = self.node_netns, set()
        else:
            src = self.endpoint(source)
            where, busy = src.netns, {p.port for p in src.ports if p.protocol == "UDP"}
        sport = self._udp_source(where, busy) if protocol == "UDP" else 0
        return netns.connect(where, dst.ip, port, protocol, expect=dst.key, source_port=sport)

    def probe_all(self, probes: Sequence[tuple[str, str, int, Protocol]], workers: int = 8) -> list[Result]:
        """Many probes in parallel threads; results in the order given."""
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe") as pool:
            return list(pool.map(lambda p: self.probe(*p), probes))

    # Knowing kube-router has caught up ---------------------------------------------------------------

    def _barrier_setup(self) -> None:
        self.ensure_namespace(BARRIER_NAMESPACE, {"apptopology.io/dataplane": "barrier"})
        address = self._allocate_ip(self._taken())
        self.state["barrier"] = {"ip": address, "n": 0}
        self._save()
        manifest = {
            "metadata": {"name": BARRIER_POD, "namespace": BARRIER_NAMESPACE, "labels": {"barrier": "0"}},
            "spec": {"nodeName": NODE_NAME, "containers": [{"name": "none", "image": IMAGE}],
                     "tolerations": TOLERATIONS, "terminationGracePeriodSeconds": 0},
        }  # fmt: skip
        self.k(self.core.create_namespaced_pod, BARRIER_NAMESPACE, manifest)
        self._set_running(BARRIER_NAMESPACE, BARRIER_POD, address)

    def iptables(self) -> str:
        """The node's filter table as kube-router left it."""
        return netns.run_in(self.node_netns, ["iptables-save", "-t", "filter"])

    def settle(self, timeout: float = 30) -> None:
        """Return once kube-router's rules reflect every Pod and NetworkPolicy change made before the call.

        Each resource type reaches kube-router as one ordered watch stream, and every sync rebuilds the
        rules from its caches. So: relabel a barrier pod (pod stream) and create a policy selecting the
        new label (policy stream); when the rules show that policy applied to that pod, the sync that
        wrote them saw every earlier pod and policy event.
        """
        barrier = self.state["barrier"]
        n = barrier["n"] + 1
        label = str(n)
        net = client.NetworkingV1Api(self.api)
        self.k(
            self.core.patch_namespaced_pod, BARRIER_POD, BARRIER_NAMESPACE, {"metadata": {"labels": {"barrier": label}}}
        )
        name = f"barrier-{n}"
        policy = {
            "metadata": {"name": name, "namespace": BARRIER_NAMESPACE},
            "spec": {"podSelector": {"matchLabels": {"barrier": label}}, "policyTypes": ["Ingress"]},
        }
        self.k(net.create_namespaced_network_policy, BARRIER_NAMESPACE, policy)
        if n > 1:
            with contextlib.suppress(client.ApiException):
                self.k(net.delete_namespaced_network_policy, f"barrier-{n - 1}", BARRIER_NAMESPACE)
        barrier["n"] = n
        self._save()
        marker = f'"run through nw policy {name}"'
        wait_for(lambda: marker in self.iptables(), timeout=timeout, interval=0.02, what=f"kube-router to apply {name}")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
