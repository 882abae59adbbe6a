"""DryRun and Enforce as two real states, and a refused attempt that is not repeated (issue 20, findings 4
and 6), on the real API server.

- Entering DryRun forgets the revision enforced before: a refusal on the way back to Enforce ends with
  nothing enforced (as in DryRun), never with the older revision, and status says so.
- A refused attempt is not repeated for the same state before its cool-down, even when the API server's
  message differs each time (our own status write must not count as a change of the topology).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from harness import Cluster, ControlPlane, Operator, load_example, wait_for
from test_fail_closed import _deny_internet_egress, _dry_run, _quota, admission_policy, next_revision
from test_operator import wait_ready
from truth import assert_truthful

pytestmark = pytest.mark.integration


def owned(cluster: Cluster, namespace: str, uid: str) -> dict[str, dict[str, Any]]:
    return {
        n: p
        for n, p in cluster.policies(namespace).items()
        if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])
    }


def ready(cluster: Cluster, namespace: str, generation: int, status: str) -> dict[str, Any]:
    return dict(
        wait_for(
            lambda: (c := cluster.ready(namespace, "shop", generation)) and c["status"] == status and c,
            what=f"Ready={status} for generation {generation}",
        )
    )


@pytest.mark.parametrize("refusal", ["quota", "admission"])
def test_a_refusal_on_the_way_out_of_dry_run_leaves_nothing_enforced(
    cluster: Cluster, controlplane: ControlPlane, running_operator: Operator, namespace: str, refusal: str
) -> None:
    """Finding 4: Enforce v1, DryRun, Enforce v2 refused half way. The first version put v1 back (the last
    revision applied, from before the dry run) or, when the refusal also refused v1, stuck between."""
    doc = load_example("three-tier.yaml")
    uid = cluster.create(doc, namespace)["metadata"]["uid"]
    wait_ready(cluster, namespace, "shop")
    assert len(owned(cluster, namespace, uid)) == 5
    dry = copy.deepcopy(doc["spec"])
    dry["enforcement"] = "DryRun"
    generation = cluster.patch_spec(namespace, "shop", dry)["metadata"]["generation"]
    ready(cluster, namespace, generation, "False")
    wait_for(lambda: owned(cluster, namespace, uid) == {}, what="the dry run enforces nothing")
    assert_truthful(cluster, namespace)
    # The quota has room for the first two writes only; admission refuses v2's api egress to 0.0.0.0/0.
    lift: Callable[[], Any] = (
        _quota(controlplane, namespace, 2) if refusal == "quota" else _deny_internet_egress(controlplane, namespace)
    )
    try:
        v2 = next_revision(doc)
        generation = cluster.patch_spec(namespace, "shop", v2)["metadata"]["generation"]
        cond = ready(cluster, namespace, generation, "False")
        assert cond["reason"] == "ApplyFailed", cond
        time.sleep(2)  # whatever the operator does after the refusal
        assert owned(cluster, namespace, uid) == {}, sorted(owned(cluster, namespace, uid))
        obj = cluster.get(namespace, "shop")
        assert obj is not None and (obj["status"].get("policies") or []) == [], obj["status"]
        cond = cluster.ready(namespace, "shop")
        assert cond is not None and "nothing is enforced" in cond["message"], cond
        assert_truthful(cluster, namespace)
    finally:
        lift()


def _refuse_cache_policies_with_a_varying_message(cp: ControlPlane, namespace: str) -> Callable[[], None]:
    """A platform rule that refuses real (not dry-run) writes of `*.tier-cache`, quoting the object's UID:
    a refusal half way whose message differs at every attempt."""
    name = f"no-cache-{namespace}"
    validation = {
        "expression": "request.dryRun == true || !object.metadata.name.endsWith('.tier-cache')",
        "messageExpression": "'no cache tier here (object ' + string(object.metadata.uid) + ')'",
    }
    admission_policy(cp, namespace, name, validation)
    probe = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "probe.tier-cache", "namespace": namespace},
        "spec": {"podSelector": {}},
    }

    def refused() -> bool:
        created = cp.kubectl("create", "-f", "-", input=json.dumps(probe), check=False)
        if created.returncode == 0:
            cp.kubectl("delete", "-n", namespace, "networkpolicy", "probe.tier-cache")
        return created.returncode != 0

    wait_for(refused, what="admission policy in effect")

    def lift() -> None:
        cp.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name)

    return lift


def test_a_refused_attempt_is_not_repeated_when_the_message_changes(
    cluster: Cluster, controlplane: ControlPlane, running_operator: Operator, namespace: str
) -> None:
    """Finding 6: a refusal half way whose message differs each time. Each attempt wrote a new status (a new
    resourceVersion), which made the next event look like a change of the topology: the cool-down never
    held (140 attempts in 20 s were seen)."""
    doc = load_example("three-tier.yaml")
    uid = cluster.create(doc, namespace)["metadata"]["uid"]
    wait_ready(cluster, namespace, "shop")
    before = {n: p["spec"] for n, p in owned(cluster, namespace, uid).items()}
    lift = _refuse_cache_policies_with_a_varying_message(controlplane, namespace)
    try:
        start = len(controlplane.audit_writes())
        generation = cluster.patch_spec(namespace, "shop", next_revision(doc))["metadata"]["generation"]
        cond = ready(cluster, namespace, generation, "False")
        assert cond["reason"] == "ApplyFailed" and "no cache tier here" in cond["message"], cond
        time.sleep(10)
        writes = [
            w
            for w in controlplane.audit_writes()[start:]
            if w["objectRef"].get("resource") == "networkpolicies"
            and w["objectRef"].get("namespace") == namespace
            and not _dry_run(w)
        ]
        attempts = [w for w in writes if (w["objectRef"].get("name") or "").endswith(".tier-cache")]
        print(f"{len(attempts)} attempts, {len(writes)} policy writes in 10 s after the refusal")
        assert len(attempts) == 1, [(w["verb"], w["objectRef"].get("name")) for w in writes]
        assert {n: p["spec"] for n, p in owned(cluster, namespace, uid).items()} == before
        assert_truthful(cluster, namespace)
    finally:
        lift()
