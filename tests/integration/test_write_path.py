"""Issue 17's findings on the real API server, with the operator under deploy/'s RBAC: dry runs that are
dry, objects the operator never owned, and what the server recorded (its audit log).

Each test failed on the code before the fix; the reason is in its docstring.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from harness import OPERATOR_USER, Cluster, ControlPlane, Operator, load_example, wait_for
from kubernetes import client
from test_fail_closed import _deny_internet_egress, ready_failed, snapshot
from test_operator import assert_policies_match, wait_ready

from apptopology.controller.kube import Kube
from apptopology.controller.reconciler import ApiError
from apptopology.planner.plan import desired_policies, plan
from apptopology.planner.transition import guard_name

pytestmark = pytest.mark.integration


def _policy(name: str, namespace: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": {"owner": "someone-else"}},
        "spec": spec or {"podSelector": {"matchLabels": {"team": "other"}}, "policyTypes": ["Ingress"]},
    }


def test_a_create_never_merges_into_an_object_that_holds_the_name(controlplane: ControlPlane, namespace: str) -> None:
    """A name the plan believes free is created, never applied: an apply without the UID precondition merged
    into whatever held the name (and added our ownerReference, so a later release deleted it)."""
    kube = Kube(controlplane.api)
    theirs = kube.apply_policy(_policy("p", namespace), None)
    mine = copy.deepcopy(_policy("p", namespace))
    mine["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "apptopology"}
    for dry_run in (True, False):
        with pytest.raises(ApiError) as refused:
            kube.apply_policy(mine, None, dry_run=dry_run)
        assert refused.value.status == 409
    after = kube.get_policy(namespace, "p")
    assert after is not None and after["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"]
    # And an update carries the UID it expects: a stale one misses the object now under the name.
    with pytest.raises(ApiError) as missed:
        kube.apply_policy(mine, "00000000-0000-0000-0000-000000000000")
    assert missed.value.status == 409
    with pytest.raises(ApiError) as missed:
        kube.delete_policy(namespace, "p", "00000000-0000-0000-0000-000000000000")
    assert missed.value.status == 409
    assert kube.get_policy(namespace, "p") is not None


def _rename_with_a_refused_flow(doc: dict[str, Any]) -> dict[str, Any]:
    """Tier frontend renamed web (same selector), its flow to the api dropped, and the api's egress to the
    internet, which the platform's admission policy refuses."""
    spec = copy.deepcopy(doc["spec"])
    spec["tiers"][0]["name"] = "web"
    spec["flows"] = [f for f in spec["flows"] if f["from"].get("tier") != "frontend"]
    for flow in spec["flows"]:
        if flow["to"].get("tier") == "frontend":
            flow["to"]["tier"] = "web"
    spec["flows"].append({"from": {"tier": "api"}, "to": {"ipBlock": {"cidr": "0.0.0.0/0"}}, "ports": [{"port": 443}]})
    return spec


def test_a_refused_rename_leaves_the_namespace_exactly_as_it_was(
    cluster: Cluster, controlplane: ControlPlane, running_operator: Operator, namespace: str
) -> None:
    """Issue 17, finding 1: the dry-run pass deleted the renamed tier's old policy (the dry-run delete was a
    real one) before the API server refused a later write, so the tier's pods were selected by no policy at
    all (open both ways), while status said nothing was written, and retries never put it back."""
    doc = load_example("three-tier.yaml")
    doc["spec"]["defaultDeny"] = {"scope": "Tiers"}
    uid = cluster.create(doc, namespace)["metadata"]["uid"]
    wait_ready(cluster, namespace, "shop")
    before = snapshot(cluster, namespace)
    spec = _rename_with_a_refused_flow(doc)

    # The premise, from the planner itself: a delete is dry-run before the write the server refuses.
    body = {**doc, "metadata": {**doc["metadata"], "namespace": namespace, "uid": uid, "generation": 1}}
    finals = [w for w in plan({**body, "spec": spec}, desired_policies(body)).writes if w.final]
    first_delete = next(i for i, w in enumerate(finals) if w.is_delete)
    refused = next(i for i, w in enumerate(finals) if w.body and "0.0.0.0/0" in json.dumps(w.body["spec"]["egress"]))
    assert first_delete < refused, [(w.name, w.is_delete) for w in finals]

    lift = _deny_internet_egress(controlplane, namespace)
    since = len(controlplane.audit_writes())
    generation = cluster.patch_spec(namespace, "shop", spec)["metadata"]["generation"]
    cond = ready_failed(cluster, namespace, generation)
    assert "Nothing of this revision was written" in cond["message"], cond
    assert snapshot(cluster, namespace) == before  # not one write: every resourceVersion where it was
    real = [
        e
        for e in controlplane.audit_writes()[since:]
        if e["objectRef"].get("resource") == "networkpolicies"
        and e["objectRef"].get("namespace") == namespace
        and "dryRun" not in e.get("requestURI", "")
        and (e.get("responseStatus") or {}).get("code", 200) < 400
    ]
    assert real == [], [(e["verb"], e["objectRef"].get("name"), e.get("requestURI")) for e in real]

    lift()
    controlplane.kubectl("annotate", "--overwrite", "-n", namespace, "apptopology/shop", "test/nudge=1")
    wait_ready(cluster, namespace, "shop")
    doc["spec"] = spec
    assert_policies_match(cluster, namespace, doc, uid)


def test_a_policy_at_a_guards_name_is_never_adopted_nor_blocks_a_change(
    cluster: Cluster, controlplane: ControlPlane, running_operator: Operator, namespace: str
) -> None:
    """Issue 17, finding 2: anyone who may create a NetworkPolicy could put one at ``<topology>.guard-<hash>``.
    Identical to the guard, the operator's apply merged into it, took it over and deleted it at release;
    different, the apply got 409 and the topology retried forever, narrowing changes included."""
    doc = load_example("three-tier.yaml")
    doc["spec"]["defaultDeny"] = {"scope": "Tiers"}
    doc["spec"]["flows"] = [{"from": {"tier": "frontend"}, "to": {"tier": "api"}}]
    uid = cluster.create(doc, namespace)["metadata"]["uid"]
    wait_ready(cluster, namespace, "shop")
    spec = copy.deepcopy(doc["spec"])
    spec["tiers"][1]["podSelector"] = {"matchLabels": {"tier": "api-v2"}}  # its isolation moves: a guard
    spec["flows"] = [{"from": {"tier": "api"}, "to": {"tier": "frontend"}}]
    net = client.NetworkingV1Api(controlplane.api)
    squatters: dict[str, str] = {}
    for i, tier in enumerate(("frontend", "api", "api-v2", "database")):
        selector = json.dumps({"matchLabels": {"tier": tier}}, sort_keys=True, separators=(",", ":"))
        name = guard_name("shop", selector)
        # One identical to what the guard would be (the merge case), the others different (the 409 case).
        guard = {"podSelector": {"matchLabels": {"tier": tier}}, "policyTypes": ["Ingress", "Egress"]}
        body = _policy(name, namespace, guard if i % 2 else None)
        squatters[name] = net.create_namespaced_network_policy(namespace, body).metadata.resource_version
    since = len(controlplane.audit_writes())
    generation = cluster.patch_spec(namespace, "shop", spec)["metadata"]["generation"]
    wait_for(
        lambda: (c := cluster.ready(namespace, "shop", generation)) and c["status"] == "True",
        timeout=60,
        what="the change applied despite the squatters",
    )
    guards = [
        e["objectRef"].get("name")
        for e in controlplane.audit_writes(OPERATOR_USER)[since:]
        if e["objectRef"].get("namespace") == namespace and ".guard-" in (e["objectRef"].get("name") or "")
    ]
    assert guards, "the change needed no guard: the test proves nothing"
    assert not set(guards) & set(squatters)  # never a request, dry run or not, at a name someone else holds
    live = cluster.policies(namespace)
    for name, version in squatters.items():
        assert live[name]["metadata"]["resourceVersion"] == version
        assert not live[name]["metadata"].get("ownerReferences")
    doc["spec"] = spec
    assert_policies_match(cluster, namespace, doc, uid)
    assert not [n for n in live if ".guard-" in n and n not in squatters]  # our guards released


def test_an_object_created_then_applied_holds_exactly_what_was_applied(
    controlplane: ControlPlane, namespace: str
) -> None:
    """Creating (POST) records a field manager with operation Update, and server-side apply never removes a
    field another manager entry still owns. Every field of a NetworkPolicy that can shrink between
    revisions must be atomic, or a rule or a selector key would outlive the revision that dropped it (a
    selector key that stays selects fewer pods: isolation lost). Judged on the real server."""
    kube = Kube(controlplane.api)
    first = _policy(
        "p",
        namespace,
        {
            "podSelector": {
                "matchLabels": {"tier": "api", "team": "a"},
                "matchExpressions": [{"key": "x", "operator": "Exists"}],
            },
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"a": "1", "b": "2"}}}], "ports": [{"port": 80}]},
                {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.2.0.0/16"]}}]},
            ],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"n": "1", "m": "2"}}}]}],
        },
    )
    first["metadata"]["annotations"] = {"a": "1", "b": "2"}
    live = kube.apply_policy(first, None)
    second = _policy(
        "p",
        namespace,
        {
            "podSelector": {"matchLabels": {"tier": "api"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}],
            "egress": [],
        },
    )
    second["metadata"]["annotations"] = {"a": "1"}
    kube.apply_policy(second, live["metadata"]["uid"])
    after = kube.get_policy(namespace, "p")
    assert after is not None
    spec = after["spec"]
    assert spec["podSelector"] == {"matchLabels": {"tier": "api"}}
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["ingress"] == [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}]
    assert not spec.get("egress")
