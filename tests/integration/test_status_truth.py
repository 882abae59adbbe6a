"""Status never claims more than the last write proved (issue 20): one topology walked through every path
of the write path, its status compared with the live policies after every step (tests/integration/truth.py
says what each claim must show). The paths of findings 1-5 check the same after their own steps."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import pytest
from harness import Cluster, ControlPlane, Operator, load_example, wait_for
from kubernetes import client
from test_fail_closed import _deny_internet_egress, _quota, next_revision
from truth import assert_truthful

pytestmark = pytest.mark.integration


def settle(cluster: Cluster, namespace: str, reason: str, status: str | None = None) -> dict[str, Any]:
    """Wait until Ready reflects the current generation with ``reason``."""
    return dict(
        wait_for(
            lambda: (
                (c := cluster.ready(namespace, "shop"))
                and c["reason"] == reason
                and (status is None or c["status"] == status)
                and c
            ),
            what=f"Ready reason {reason}",
        )
    )


def test_status_is_true_after_every_step_of_the_write_path(
    cluster: Cluster, controlplane: ControlPlane, running_operator: Operator, namespace: str
) -> None:
    doc = load_example("three-tier.yaml")
    cluster.create(doc, namespace)
    steps: list[tuple[str, Callable[[], Any], str]] = []
    v2 = next_revision(doc)
    dry = {**copy.deepcopy(doc["spec"]), "enforcement": "DryRun"}
    lifts: list[Callable[[], Any]] = []

    def refuse_by_admission() -> None:
        lifts.append(_deny_internet_egress(controlplane, namespace))
        cluster.patch_spec(namespace, "shop", v2)

    def lift() -> None:
        while lifts:
            lifts.pop()()
        controlplane.kubectl(
            "annotate", "--overwrite", "-n", namespace, "apptopology/shop", f"test/retry={time.time()}"
        )

    def quota_half_way() -> None:
        lifts.append(_quota(controlplane, namespace, len(cluster.policies(namespace)) + 1))
        spec = copy.deepcopy(v2)  # two new policies where the quota has room for one
        for tier, port in (("queue", 5672), ("mail", 25)):
            spec["tiers"].append({"name": tier, "podSelector": {"matchLabels": {"tier": tier}}})
            spec["flows"].append({"from": {"tier": "api"}, "to": {"tier": tier}, "ports": [{"port": port}]})
        cluster.patch_spec(namespace, "shop", spec)

    def conflict() -> None:
        squat = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "shop.tier-web"}}
        squat["spec"] = {"podSelector": {"matchLabels": {"tier": "web"}}, "policyTypes": ["Ingress"]}
        client.NetworkingV1Api(controlplane.api).create_namespaced_network_policy(namespace, squat)
        spec = copy.deepcopy(doc["spec"])
        spec["tiers"].append({"name": "web", "podSelector": {"matchLabels": {"tier": "web"}}})
        spec["flows"].append({"from": {"tier": "frontend"}, "to": {"tier": "web"}, "ports": [{"port": 80}]})
        cluster.patch_spec(namespace, "shop", spec)

    steps = [
        ("created", lambda: None, "Reconciled"),
        ("refused at the dry run", refuse_by_admission, "ApplyFailed"),
        ("refusal lifted", lift, "Reconciled"),
        ("refused half way, restored", quota_half_way, "ApplyFailed"),
        ("quota lifted", lift, "Reconciled"),
        ("name held by someone else", conflict, "NameConflict"),
        ("DryRun", lambda: cluster.patch_spec(namespace, "shop", dry), "DryRun"),
        ("Enforce again", lambda: cluster.patch_spec(namespace, "shop", v2), "Reconciled"),
    ]
    try:
        for what, step, reason in steps:
            step()
            settle(cluster, namespace, reason)
            try:
                assert_truthful(cluster, namespace)
            except AssertionError as exc:
                raise AssertionError(f"after {what}: {exc}") from None
    finally:
        while lifts:
            lifts.pop()()
