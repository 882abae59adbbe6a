"""Every write the operator sends as a dry run changes nothing on the real API server (issue 17).

The operator's own client (:class:`apptopology.controller.kube.Kube`), under the operator's ServiceAccount and
deploy/'s RBAC, sends each verb with ``dry_run=True``; afterwards every policy of the namespace has the
resourceVersion and existence it had, and the judge, reading only the audit log, agrees that nothing
happened. The unit fake cannot see what the client puts on the wire, which is where the delete went wrong:
its query said ``dryRun=All`` and its DeleteOptions body, which the API server follows, did not.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from harness import RUN_SH, Cluster, ControlPlane
from judge import AuditLog, replay
from kubernetes import client, config

from apptopology.controller.kube import Kube

pytestmark = pytest.mark.integration

SPEC = {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"], "ingress": []}


def _policy(name: str, namespace: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "test"}},
        "spec": copy.deepcopy(spec or SPEC),
    }


@pytest.fixture(scope="module")
def operator_kube(controlplane: ControlPlane) -> Kube:
    """The operator's client with the operator's identity (a client certificate of its ServiceAccount)."""
    minted = subprocess.run(
        ["bash", str(RUN_SH), "sa-user", str(controlplane.dir), "apptopology-system", "apptopology-operator"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Kube(config.new_client_from_config(config_file=minted.stdout.strip().splitlines()[-1]))


def _snapshot(cluster: Cluster, namespace: str) -> dict[str, tuple[str, str]]:
    return {n: (p["metadata"]["uid"], p["metadata"]["resourceVersion"]) for n, p in cluster.policies(namespace).items()}


# verb -> the dry-run call, given (kube, namespace, the existing policy as stored)
VERBS: dict[str, Callable[[Kube, str, dict[str, Any]], object]] = {
    "create (a new name, no UID)": lambda kube, ns, live: kube.apply_policy(_policy("new", ns), None, dry_run=True),
    "apply updating an existing object (UID precondition)": lambda kube, ns, live: kube.apply_policy(
        _policy("existing", ns, {**SPEC, "ingress": [{}]}), live["metadata"]["uid"], dry_run=True
    ),
    "delete (UID precondition)": lambda kube, ns, live: kube.delete_policy(
        ns, "existing", live["metadata"]["uid"], dry_run=True
    ),
}


@pytest.mark.parametrize("verb", list(VERBS))
def test_a_dry_run_changes_nothing(
    cluster: Cluster, controlplane: ControlPlane, operator_kube: Kube, namespace: str, verb: str
) -> None:
    audit = AuditLog(controlplane.env["AUDIT_LOG"])
    audit.follow(namespace)
    operator_kube.apply_policy(_policy("existing", namespace), None)  # the operator's own object
    live = cluster.policies(namespace)["existing"]
    before = _snapshot(cluster, namespace)
    VERBS[verb](operator_kube, namespace, live)
    after = _snapshot(cluster, namespace)
    assert after == before, f"{verb} as a dry run changed the namespace: {before} -> {after}"
    # The judge, from the log alone: the request was logged as a dry run and did nothing.
    recorded = replay(audit.writes(namespace))
    dry = [w for w in recorded.writes if w.dry_run]
    assert len(dry) == 1 and dry[0].by_operator and dry[0].ok, [w.line() for w in recorded.writes]
    assert recorded.findings == [], [str(f) for f in recorded.findings]


def test_the_judge_sees_a_dry_run_that_wrote(cluster: Cluster, controlplane: ControlPlane, namespace: str) -> None:
    """The judge's own check can fail: a DeleteOptions body without dryRun under a dryRun=All query (what the
    client sent) deletes, and the audit log alone shows it (a new resourceVersion in a dry run's answer)."""
    audit = AuditLog(controlplane.env["AUDIT_LOG"])
    audit.follow(namespace)
    cluster.net.create_namespaced_network_policy(namespace, _policy("existing", namespace))
    net = client.NetworkingV1Api(controlplane.api)
    net.delete_namespaced_network_policy("existing", namespace, body=client.V1DeleteOptions(), dry_run="All")
    assert "existing" not in cluster.policies(namespace)  # the server followed the body
    recorded = replay(audit.writes(namespace))
    assert [f.kind for f in recorded.findings] == ["dry-run-wrote"], [str(f) for f in recorded.findings]
    assert recorded.end == {}  # replayed as the delete it was
