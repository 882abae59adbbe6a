"""Prometheus metrics of the operator (``apptopology_*``), served on the metrics port.

Names follow the Prometheus conventions (units in the name, ``_total`` for counters). What an on-call
engineer asks first: is it leading, is it keeping up (queue depth and wait), does it fail (reconciles by
result), does it write (API writes by verb), is someone fighting it (drift repairs).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter(
    "apptopology_reconciles_total",
    "Reconciles by result: in_sync (nothing to write, decided from the cache), applied, "
    "invalid, conflict, refused (API server refused the revision), failed (transient error), gone.",
    ["result"],
)
RECONCILE_SECONDS = Histogram(
    "apptopology_reconcile_duration_seconds",
    "Time of one reconcile, from taking the key to the outcome.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
QUEUE_DEPTH = Gauge("apptopology_queue_depth", "Topologies waiting in the work queue.")
QUEUE_WAIT_SECONDS = Histogram(
    "apptopology_queue_wait_seconds",
    "Time a topology waited in the work queue before a worker took it.",
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TOPOLOGIES = Gauge("apptopology_managed_topologies", "AppTopologies the operator knows.")
POLICIES = Gauge("apptopology_managed_policies", "NetworkPolicies the topologies want.")
API_WRITES = Counter(
    "apptopology_api_writes_total",
    "Write requests to the API server by verb (create, apply, delete, status, event) and whether a dry run.",
    ["verb", "dry_run"],
)
DRIFT_REPAIRS = Counter(
    "apptopology_drift_repairs_total",
    "Reconciles that rewrote policies of an already applied generation (someone changed them).",
)
LEADER = Gauge("apptopology_leader", "1 while this replica holds the leader lease (or runs without election).")
FENCED_WRITES = Counter(
    "apptopology_fenced_writes_total",
    "Writes not sent because this replica could no longer prove it holds the leader lease.",
)


def serve(port: int, address: str = "0.0.0.0") -> None:
    start_http_server(port, addr=address)
