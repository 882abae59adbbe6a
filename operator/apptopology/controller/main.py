"""Start the operator: load credentials, build the controller, and hand control to Kopf."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

import kopf

from . import metrics
from .kube import Kube, load_config
from .leader import LeaderElector
from .reconciler import Reconciler
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
    access_interval: float = 5.0


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
    load_config(connections=options.workers + 4)  # the workers, the elector, facts and the seed
    from . import handlers  # registers the Kopf handlers

    kube = Kube()
    elector = None
    if options.leader_elect:
        namespace = options.lease_namespace or os.environ.get("POD_NAMESPACE")
        if not namespace:
            raise SystemExit("--leader-elect needs --lease-namespace or POD_NAMESPACE")
        identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        elector = LeaderElector(kube, namespace, options.lease_name, identity)
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
        metrics.serve(options.metrics_port)
    kopf.run(
        clusterwide=not options.namespaces,
        namespaces=options.namespaces,
        standalone=True,
        liveness_endpoint=options.liveness or None,
        memo=SharedMemo(),
    )
    return 0
