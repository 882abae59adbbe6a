"""Start the operator: load credentials, build the controller, and hand control to Kopf."""

from __future__ import annotations

import logging
import os
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import kopf
from kubernetes import client
from kubernetes.config import ConfigException

from .. import __version__
from . import metrics
from .kube import Kube, load_config, use_kubeconfig
from .leader import LeaderElector
from .reconciler import ApiError, Reconciler
from .runtime import Controller


@dataclass(frozen=True)
class Options:
    namespaces: list[str]
    liveness: str | None = None
    verbose: bool = False
    workers: int = 16
    resync: float = 600.0
    metrics_port: int | None = None
    leader_elect: bool = False
    lease_namespace: str | None = None
    lease_name: str = "apptopology-operator"
    facts_interval: float = 30.0
    kubeconfig: str | None = None
    context: str | None = None
    access_interval: float = 5.0


class StartupError(Exception):
    """Why the operator cannot start, in one line for whoever runs it (no traceback: nothing is broken
    in the operator, something around it is)."""


def _free(flag: str, host: str, port: int) -> None:
    """Refuse a port another process listens on now, before anything starts (Kopf would fail on it later,
    inside its event loop, with a traceback)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartupError(f"{flag}: cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _ports(options: Options) -> None:
    liveness = urlsplit(options.liveness) if options.liveness else None
    live_port = None
    if liveness is not None:
        try:
            live_port = liveness.port or 80
        except ValueError as exc:
            raise StartupError(f"--liveness {options.liveness}: {exc}") from None
        _free(f"--liveness {options.liveness}", liveness.hostname or "0.0.0.0", live_port)
    if options.metrics_port is not None:
        if options.metrics_port == live_port:
            raise StartupError(f"--metrics-port {options.metrics_port}: the liveness endpoint uses it too")
        _free(f"--metrics-port {options.metrics_port}", "0.0.0.0", options.metrics_port)


def _reachable(kube: Kube) -> None:
    """One request before starting: an API server that cannot be reached, refuses the credentials, or
    lacks the CRD is said in one line. Other refusals (403 to a namespaced operator) are left to the run."""
    host = client.Configuration.get_default_copy().host
    pool = logging.getLogger("urllib3.connectionpool")
    level = pool.level
    pool.setLevel(logging.ERROR)  # its retry warnings would bury the one line that says what is wrong
    try:
        next(iter(kube.list_all("apptopologies", page=1)), None)
    except ApiError as exc:
        if exc.status == 0:
            cause = re.search(r"\[Errno -?\d+\] [^'\")]+", exc.message)
            detail = cause.group(0) if cause else exc.message[:200]
            raise StartupError(f"the API server {host} cannot be reached: {detail}") from None
        if exc.status == 401:
            raise StartupError(f"the API server {host} refused the kubeconfig's credentials (401)") from None
        if exc.status == 404:
            raise StartupError(
                f"the API server {host} has no AppTopology API: install the CRDs (kubectl apply -k crds/)"
            ) from None
    finally:
        pool.setLevel(level)


class SharedMemo(kopf.Memo):
    """The operator's memo, shared rather than copied: Kopf shallow-copies ``kopf.run(memo=...)`` for every
    object it watches and keeps the copy while the object exists (about 100 B each: 8 MB at 10,000
    topologies, 80,000 objects). Our handlers use no memo."""

    def __copy__(self) -> SharedMemo:
        return self


def _memory_profile_on_signal(path: str) -> None:
    """APPTOPOLOGY_TRACEMALLOC=FILE: trace allocations; SIGUSR1 writes the top allocation sites to FILE
    (for finding where the memory goes, e.g. bench/operator_bench.py --tracemalloc)."""
    import signal
    import tracemalloc

    tracemalloc.start(6)

    def dump(*_: object) -> None:
        snapshot = tracemalloc.take_snapshot()
        lines = [f"total traced: {sum(s.size for s in snapshot.statistics('filename')) / 2**20:.1f} MiB"]
        for stat in snapshot.statistics("lineno")[:40]:
            lines.append(f"{stat.size / 2**20:8.2f} MiB {stat.count:9d} {stat.traceback[0]}")
        lines.append("-- the largest, by whole traceback (who holds it)")
        for stat in snapshot.statistics("traceback")[:8]:
            lines.append(f"{stat.size / 2**20:8.2f} MiB {stat.count:9d}")
            lines.extend(f"    {frame}" for frame in stat.traceback)
        lines.append("-- by file")
        for stat in snapshot.statistics("filename")[:25]:
            lines.append(f"{stat.size / 2**20:8.2f} MiB {stat.traceback[0].filename}")
        with open(path, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")

    signal.signal(signal.SIGUSR1, dump)


def run_operator(options: Options) -> int:
    """Run until stopped. All namespaces unless ``options.namespaces`` limits the watch."""
    logging.basicConfig(
        level=logging.DEBUG if options.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not options.verbose:
        # Kopf logs "Handler ... succeeded" for every watch event; our own reconcile lines say what changed.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if os.environ.get("APPTOPOLOGY_TRACEMALLOC"):
        _memory_profile_on_signal(os.environ["APPTOPOLOGY_TRACEMALLOC"])
    namespace = options.lease_namespace or os.environ.get("POD_NAMESPACE")
    if options.leader_elect and not namespace:
        raise StartupError("--leader-elect needs --lease-namespace or POD_NAMESPACE")
    _ports(options)
    use_kubeconfig(options.kubeconfig, options.context)
    try:
        load_config(connections=options.workers + 4)  # the workers, the elector, facts and the seed
    except (ConfigException, OSError) as exc:
        given = [f"--{f} {v}" for f, v in (("kubeconfig", options.kubeconfig), ("context", options.context)) if v]
        where = ", ".join(given) or "no usable kubeconfig or in-cluster config"
        raise StartupError(f"{where}: {exc}") from None
    from . import handlers  # registers the Kopf handlers

    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    # Which replica sent a request, in the API server's audit log (both share one ServiceAccount).
    agent = f"apptopology-operator/{__version__} ({identity})"
    elector = None
    if options.leader_elect:
        assert namespace is not None
        leases = Kube()  # unfenced: the elector renews the Lease that fences everything else
        leases.api.user_agent = agent
        elector = LeaderElector(leases, namespace, options.lease_name, identity)
    kube = Kube(may_write=elector.may_write if elector is not None else None)
    kube.api.user_agent = agent
    _reachable(kube)
    handlers.controller = Controller(
        Reconciler(kube),
        workers=options.workers,
        resync=options.resync,
        elector=elector,
        seeder=kube,
        facts=kube,
        facts_interval=options.facts_interval,
        access_interval=options.access_interval,
    )
    if options.metrics_port is not None:
        try:
            metrics.serve(options.metrics_port)
        except OSError as exc:
            raise StartupError(f"--metrics-port {options.metrics_port}: {exc.strerror or exc}") from None
    kopf.run(
        clusterwide=not options.namespaces,
        namespaces=options.namespaces,
        standalone=True,
        liveness_endpoint=options.liveness or None,
        memo=SharedMemo(),
    )
    return 0
