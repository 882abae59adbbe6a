"""Fail closed on the real API server: refused revisions, widening edits, name collisions, foreign look-alikes,
the migration from the old naming scheme (issue 7's scenarios).

Each test works in its own namespace, with the operator running under deploy/'s RBAC.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from harness import Cluster, ControlPlane, Operator, load_example, network_policy_admission, wait_for
from kubernetes import client
from test_operator import assert_policies_match, rendered, wait_ready

from apptopology.planner.compare import stored_spec

pytestmark = pytest.mark.integration

Snapshot = dict[str, tuple[str, dict[str, Any]]]


def snapshot(cluster: Cluster, namespace: str) -> Snapshot:
    """Name -> (resourceVersion, spec) of every policy: equal snapshots mean nothing was written."""
    return {n: (p["metadata"]["resourceVersion"], p["spec"]) for n, p in cluster.policies(namespace).items()}


def three_tier(cluster: Cluster, namespace: str) -> tuple[dict[str, Any], str]:
    doc = load_example("three-tier.yaml")
    uid = cluster.create(doc, namespace)["metadata"]["uid"]
    wait_ready(cluster, namespace, "shop")
    return doc, uid


def next_revision(doc: dict[str, Any]) -> dict[str, Any]:
    """A bigger revision: a new tier (a new policy) and the api's egress to the internet (a changed one)."""
    spec = copy.deepcopy(doc["spec"])
    spec["tiers"].append({"name": "cache", "podSelector": {"matchLabels": {"tier": "cache"}}})
    spec["flows"] += [
        {"from": {"tier": "api"}, "to": {"tier": "cache"}, "ports": [{"port": 6379}]},
        {"from": {"tier": "api"}, "to": {"ipBlock": {"cidr": "0.0.0.0/0"}}, "ports": [{"port": 443}]},
    ]
    return spec


def nudge(cp: ControlPlane, namespace: str) -> None:
    """A metadata-only change: a watch event without a new generation, so the operator looks again."""
    cp.kubectl("annotate", "--overwrite", "-n", namespace, "apptopology/shop", f"test/nudge={time.time()}")


def ready_failed(cluster: Cluster, namespace: str, generation: int) -> dict[str, Any]:
    return dict(
        wait_for(
            lambda: (c := cluster.ready(namespace, "shop", generation)) and c["status"] == "False" and c,
            what=f"Ready=False for generation {generation}",
        )
    )


# 1. A revision the API server refuses in part leaves the old revision whole ------------------------------


def admission_policy(cp: ControlPlane, namespace: str, name: str, validation: dict[str, Any]) -> None:
    """A ValidatingAdmissionPolicy on NetworkPolicy writes in ``namespace`` with one validation, and its binding."""
    manifests = network_policy_admission(name, namespace, validation["expression"], validation.get("message", ""))
    manifests[0]["spec"]["validations"] = [validation]  # as given: a messageExpression, say
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(manifests))


def _deny_internet_egress(cp: ControlPlane, namespace: str) -> Callable[[], None]:
    """A platform guardrail at admission (ValidatingAdmissionPolicy): no egress to 0.0.0.0/0."""
    name = f"no-internet-egress-{namespace}"
    expression = (
        "!has(object.spec.egress) || object.spec.egress.all(r, !has(r.to) || "
        "r.to.all(p, !has(p.ipBlock) || p.ipBlock.cidr != '0.0.0.0/0'))"
    )
    manifests = network_policy_admission(
        name, namespace, expression, "egress to 0.0.0.0/0 is not allowed in this cluster"
    )
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(manifests))
    # The API server loads admission policies asynchronously: wait until it refuses a probe.
    probe = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}],
        },
    }

    def refused() -> bool:
        dry = cp.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(probe), check=False)
        return dry.returncode != 0

    wait_for(refused, what="admission policy in effect")

    def lift() -> None:
        cp.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name)
        wait_for(lambda: not refused(), what="admission policy gone")

    return lift


def _quota(cp: ControlPlane, namespace: str, count: int) -> Callable[[], None]:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "netpols", "namespace": namespace},
        "spec": {"hard": {"count/networkpolicies.networking.k8s.io": str(count)}},
    }
    cp.kubectl("apply", "-f", "-", input=json.dumps(quota))
    core = client.CoreV1Api(cp.api)
    wait_for(
        lambda: (core.read_namespaced_resource_quota("netpols", namespace).status.used or {}).get(
            "count/networkpolicies.networking.k8s.io"
        ),
        what="quota usage computed",
    )
    return lambda: cp.kubectl("delete", "-n", namespace, "resourcequota", "netpols")


@pytest.mark.parametrize(
    ("refusal", "when"),
    [
        ("admission", "dry run"),
        ("quota already full", "dry run"),
        ("quota fits each dry run, not the revision", "half way"),
    ],
)
def test_refused_revision_leaves_the_old_one_whole(
    cluster: Cluster, controlplane: ControlPlane, running_operator: Operator, namespace: str, refusal: str, when: str
) -> None:
    doc, uid = three_tier(cluster, namespace)
    before = snapshot(cluster, namespace)
    if refusal == "admission":
        lift = _deny_internet_egress(controlplane, namespace)
        expected = "not allowed in this cluster"
    elif refusal == "quota already full":
        lift = _quota(controlplane, namespace, len(before))
        expected = "exceeded quota"
    else:
        lift = _quota(controlplane, namespace, len(before) + 1)  # the revision needs two new policies
        expected = "exceeded quota"
    spec = next_revision(doc)
    if refusal.startswith("quota fits"):
        spec["tiers"].append({"name": "queue", "podSelector": {"matchLabels": {"tier": "queue"}}})
        spec["flows"].append({"from": {"tier": "api"}, "to": {"tier": "queue"}, "ports": [{"port": 5672}]})
    generation = cluster.patch_spec(namespace, "shop", spec)["metadata"]["generation"]
    cond = ready_failed(cluster, namespace, generation)
    assert cond["reason"] == "ApplyFailed" and expected in cond["message"], cond
    if when == "dry run":
        assert "Nothing of this revision was written" in cond["message"]
        assert snapshot(cluster, namespace) == before  # not one write, not even a resourceVersion moved
    else:
        assert "restored" in cond["message"]
        after = cluster.policies(namespace)
        assert sorted(after) == sorted(before)
        assert {n: p["spec"] for n, p in after.items()} == {n: s for n, (_, s) in before.items()}
    obj = cluster.get(namespace, "shop")
    assert obj is not None and sorted(obj["status"]["policies"]) == sorted(before)
    time.sleep(1)  # nothing moves afterwards either (no retry storm on a permanent refusal)
    assert {n: s for n, (_, s) in snapshot(cluster, namespace).items()} == {n: s for n, (_, s) in before.items()}

    lift()
    nudge(controlplane, namespace)
    wait_ready(cluster, namespace, "shop")
    doc["spec"] = spec
    assert_policies_match(cluster, namespace, doc, uid)


# 2. Every widening edit is repaired ------------------------------------------------------------------

WIDENINGS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    # policy, JSON patch (on the stored object)
    "namespaceSelector {} added to a peer": (
        "shop.tier-api",
        [{"op": "add", "path": "/spec/ingress/0/from/0/namespaceSelector", "value": {}}],
    ),
    "peer selector emptied": (
        "shop.tier-database",
        [{"op": "replace", "path": "/spec/ingress/0/from/0/podSelector", "value": {}}],
    ),
    "extra peer": (
        "shop.tier-api",
        [{"op": "add", "path": "/spec/ingress/0/from/-", "value": {"ipBlock": {"cidr": "0.0.0.0/0"}}}],
    ),
    "extra allow-all rule": ("shop.tier-database", [{"op": "add", "path": "/spec/ingress/-", "value": {}}]),
    "allow-all egress on the default-deny": (
        "shop.default-deny",
        [{"op": "add", "path": "/spec/egress", "value": [{}]}],
    ),
    "except removed": ("shop.tier-frontend", [{"op": "remove", "path": "/spec/ingress/0/from/0/ipBlock/except"}]),
    "policyTypes loses Egress": (
        "shop.default-deny",
        [{"op": "replace", "path": "/spec/policyTypes", "value": ["Ingress"]}],
    ),
    "port range widened": ("shop.tier-api", [{"op": "add", "path": "/spec/ingress/0/ports/0/endPort", "value": 9000}]),
    "ports removed": ("shop.tier-database", [{"op": "remove", "path": "/spec/ingress/0/ports"}]),
}


def test_every_widening_edit_is_repaired(cluster: Cluster, running_operator: Operator, namespace: str) -> None:
    doc = load_example("three-tier.yaml")
    # An ipBlock with except on the frontend, so "except removed" has something to remove.
    doc["spec"]["flows"][0]["from"] = {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}
    uid = cluster.create(doc, namespace)["metadata"]["uid"]
    wait_ready(cluster, namespace, "shop")
    want = {n: stored_spec(p["spec"]) for n, p in rendered(doc, namespace).items()}
    times = {}
    for what, (name, patch) in WIDENINGS.items():
        cluster.net.patch_namespaced_network_policy(name, namespace, patch, _content_type="application/json-patch+json")
        edited = time.monotonic()
        wait_for(
            lambda n=name: stored_spec(cluster.policies(namespace)[n]["spec"]) == want[n],
            timeout=10,
            what=f"{what} repaired",
        )
        times[what] = time.monotonic() - edited
    assert_policies_match(cluster, namespace, doc, uid)
    print("repair times: " + ", ".join(f"{k}: {v:.2f}s" for k, v in times.items()))


# 3. Names that collided under the old scheme --------------------------------------------------------


def test_topologies_whose_old_names_collided_are_all_ready(
    cluster: Cluster, running_operator: Operator, namespace: str
) -> None:
    """`a` with tier `default-deny` rendered `a-tier-default-deny`, which was exactly `a-tier`'s default-deny."""
    a = {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": "a"},
        "spec": {
            "defaultDeny": {"scope": "Tiers"},
            "tiers": [{"name": "default-deny", "podSelector": {"matchLabels": {"app": "x"}}}],
        },
    }
    a_tier = {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": "a-tier"},
        "spec": {"tiers": [{"name": "web", "podSelector": {"matchLabels": {"app": "web"}}}]},
    }
    uids = {d["metadata"]["name"]: cluster.create(d, namespace)["metadata"]["uid"] for d in (a, a_tier)}
    for d in (a, a_tier):
        wait_ready(cluster, namespace, d["metadata"]["name"])
        assert_policies_match(cluster, namespace, d, uids[d["metadata"]["name"]])
    assert {"a.tier-default-deny", "a-tier.default-deny"} <= set(cluster.policies(namespace))


# 4. A foreign policy carrying our labels is never touched --------------------------------------------


def test_foreign_policy_with_our_labels_is_untouched(
    cluster: Cluster, running_operator: Operator, namespace: str
) -> None:
    lookalike = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": "shop.tier-legacy",  # our naming, our labels, but no ownerReference: not ours
            "labels": {"app.kubernetes.io/managed-by": "apptopology-operator", "apptopology.io/topology": "shop"},
        },
        "spec": {"podSelector": {"matchLabels": {"legacy": "true"}}, "policyTypes": ["Ingress"], "ingress": [{}]},
    }
    cluster.net.create_namespaced_network_policy(namespace, lookalike)
    before = cluster.policies(namespace)["shop.tier-legacy"]["metadata"]["resourceVersion"]
    doc, _ = three_tier(cluster, namespace)
    spec = next_revision(doc)
    generation = cluster.patch_spec(namespace, "shop", spec)["metadata"]["generation"]
    wait_for(lambda: cluster.ready(namespace, "shop", generation), what="second revision")
    cluster.delete(namespace, "shop")
    wait_for(lambda: set(cluster.policies(namespace)) == {"shop.tier-legacy"}, timeout=60, what="GC of ours only")
    assert cluster.policies(namespace)["shop.tier-legacy"]["metadata"]["resourceVersion"] == before


# 5. Policies under the old names are migrated -------------------------------------------------------


def test_old_names_migrate_new_policies_first(
    cluster: Cluster, controlplane: ControlPlane, running_operator: Operator, namespace: str
) -> None:
    running_operator.stop()
    doc = load_example("three-tier.yaml")
    created = cluster.create(doc, namespace)
    owner = {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "name": "shop",
        "uid": created["metadata"]["uid"],
        "controller": True,
    }
    # What the previous operator version left: the same policies under `shop-...` names, owned by UID.
    for name, policy in rendered(doc, namespace).items():
        policy["metadata"]["name"] = name.replace("shop.", "shop-", 1)
        policy["metadata"]["ownerReferences"] = [owner]
        cluster.net.create_namespaced_network_policy(namespace, policy)
    writes_before = len(controlplane.audit_writes())
    running_operator.start()
    wait_ready(cluster, namespace, "shop")
    wait_for(lambda: not any(n.startswith("shop-") for n in cluster.policies(namespace)), what="old names deleted")
    assert_policies_match(cluster, namespace, doc, created["metadata"]["uid"])
    writes = [
        (w["verb"], w["objectRef"].get("name"))
        for w in controlplane.audit_writes()[writes_before:]
        if w["objectRef"].get("resource") == "networkpolicies" and not _dry_run(w)
    ]
    creates = [i for i, (verb, name) in enumerate(writes) if verb in ("create", "patch") and name.startswith("shop.")]
    deletes = [i for i, (verb, name) in enumerate(writes) if verb == "delete"]
    assert len(creates) == 5 and len(deletes) == 5 and max(creates) < min(deletes), writes


def _dry_run(entry: dict[str, Any]) -> bool:
    return "dryRun=All" in entry.get("requestURI", "")
