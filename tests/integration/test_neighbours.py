"""Several topologies in one namespace, with guardrails that start and stop applying (issue 20, finding 1):
whatever the operator writes for one topology never opens another topology's pods.

Judged from the live policies: each topology's intent is its spec as the guardrails narrow it (what it
enforces), and :func:`apptopology.analysis.namespace_interactions` lists every pair a topology's own pods
may not have but the namespace's policies together allow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from harness import Cluster, ControlPlane, Operator, wait_for
from kubernetes import client
from test_operator import wait_ready

from apptopology.analysis.namespace import Interaction, namespace_interactions
from apptopology.api.guardrail import parse_guardrail
from apptopology.render import guardrails
from apptopology.render.validation import parse_topology

pytestmark = pytest.mark.integration

STRICT = "apptopology.io/test-strict"


def topology(name: str, tiers: dict[str, str], flows: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": name},
        "spec": {
            "defaultDeny": {"scope": "Tiers"},
            "tiers": [{"name": t, "podSelector": {"matchLabels": {"app": app}}} for t, app in tiers.items()],
            "flows": flows,
            **spec,
        },
    }


def opened(
    cluster: Cluster, namespace: str, docs: list[dict[str, Any]], rails: list[dict[str, Any]], labels: dict[str, str]
) -> list[Interaction]:
    """The pairs some topology's pods may not have (as the guardrails narrow it) that the live policies allow."""
    parsed = [parse_guardrail(r) for r in rails]
    guarded = [
        guardrails.enforce(parse_topology({**d, "metadata": {**d["metadata"], "namespace": namespace}}), parsed, labels)
        for d in docs
    ]
    live = list(cluster.policies(namespace).values())
    return namespace_interactions([g.topology for g in guarded], live)


@contextlib.contextmanager
def guardrail(cp: ControlPlane, namespace: str, spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    custom = client.CustomObjectsApi(cp.api)
    body = {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "TopologyGuardrail",
        "metadata": {"name": f"strict-{namespace}"},
        "spec": {"namespaceSelector": {"matchLabels": {STRICT: namespace}}, **spec},
    }
    custom.create_cluster_custom_object("apptopology.io", "v1alpha1", "topologyguardrails", body)
    try:
        yield body
    finally:
        with contextlib.suppress(client.ApiException):
            custom.delete_cluster_custom_object(
                "apptopology.io", "v1alpha1", "topologyguardrails", body["metadata"]["name"]
            )


def label(cp: ControlPlane, namespace: str, value: str | None) -> dict[str, str]:
    core = client.CoreV1Api(cp.api)
    core.patch_namespace(namespace, {"metadata": {"labels": {STRICT: value}}})
    return dict(core.read_namespace(namespace).metadata.labels or {})


def test_raised_isolation_does_not_give_another_topologys_pods_dns(
    cluster: Cluster, controlplane: ControlPlane, running_operator: Operator, namespace: str
) -> None:
    """Finding 1: a guardrail requiring scope Namespace starts applying; a (DNS on) is raised to scope
    Namespace. Its DNS policy must not select b's pods, whose own topology denies them DNS."""
    a = topology("a", {"web": "a-web", "api": "a-api"}, [{"from": {"tier": "web"}, "to": {"tier": "api"}}])
    b = topology("b", {"db": "b-db"}, [{"from": {"anywhere": True}, "to": {"tier": "db"}, "ports": [{"port": 5432}]}])
    b["spec"]["dns"] = {"enabled": False}
    with guardrail(controlplane, namespace, {"requiredDefaultDeny": {"scope": "Namespace"}}) as rail:
        for doc in (a, b):
            cluster.create(doc, namespace)
            wait_ready(cluster, namespace, doc["metadata"]["name"])
        labels = label(controlplane, namespace, None)
        assert opened(cluster, namespace, [a, b], [rail], labels) == []
        labels = label(controlplane, namespace, namespace)  # the guardrail applies from now on
        for name in ("a", "b"):
            cond = wait_ready(cluster, namespace, name, status="False")
            assert cond["reason"] == "GuardrailViolation", cond
        wait_for(lambda: "a.default-deny" in cluster.policies(namespace), what="a raised to scope Namespace")
        found = opened(cluster, namespace, [a, b], [rail], labels)
        assert found == [], "\n".join(i.line() for i in found)
        labels = label(controlplane, namespace, None)  # and stops applying
        for name in ("a", "b"):
            wait_ready(cluster, namespace, name)
        wait_for(lambda: "a.default-deny" not in cluster.policies(namespace), what="a back to scope Tiers")
        assert opened(cluster, namespace, [a, b], [rail], labels) == []
