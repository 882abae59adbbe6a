"""The operator against a real kube-apiserver and kube-controller-manager (scenarios of issue 3).

Each test works in its own namespace. The operator runs as ``apptopology run`` under the RBAC from
deploy/, so a permission it lacks fails here, as it would in production.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import yaml
from harness import (
    OPERATOR_USER,
    ROOT,
    Cluster,
    ControlPlane,
    Operator,
    load_example,
    wait_for,
)
from kubernetes import client

from apptopology.planner.compare import stored_spec

pytestmark = pytest.mark.integration


def rendered(doc: dict[str, Any], namespace: str) -> dict[str, dict[str, Any]]:
    """What `apptopology render` prints for ``doc`` placed in ``namespace``: the CLI itself, as users run it."""
    doc = copy.deepcopy(doc)
    doc["metadata"]["namespace"] = namespace
    out = subprocess.run(
        [sys.executable, "-m", "apptopology.cli", "render", "-f", "-"],
        input=yaml.safe_dump(doc),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return {p["metadata"]["name"]: p for p in yaml.safe_load_all(out)}


def wait_ready(
    cluster: Cluster, namespace: str, name: str, status: str = "True", timeout: float = 30
) -> dict[str, Any]:
    cond = wait_for(
        lambda: (c := cluster.ready(namespace, name)) and c["status"] == status and c,
        timeout=timeout,
        what=f"{namespace}/{name} Ready={status}",
    )
    return dict(cond)


def assert_policies_match(cluster: Cluster, namespace: str, doc: dict[str, Any], uid: str) -> None:
    want = rendered(doc, namespace)
    live = cluster.policies(namespace)
    owned = {n: p for n, p in live.items() if any(r["uid"] == uid for r in p["metadata"].get("ownerReferences") or [])}
    assert sorted(owned) == sorted(want)
    for name, policy in want.items():
        got = owned[name]
        assert stored_spec(got["spec"]) == stored_spec(policy["spec"]), name
        for key, value in policy["metadata"]["labels"].items():
            assert got["metadata"]["labels"][key] == value
        refs = got["metadata"]["ownerReferences"]
        assert len(refs) == 1 and refs[0]["uid"] == uid and refs[0]["controller"] is True
        assert refs[0]["kind"] == "AppTopology"


# 1. CRD, examples, explain -------------------------------------------------------------------------


def test_crd_established_examples_accepted_and_explained(controlplane: ControlPlane, namespace: str) -> None:
    crd = controlplane.kubectl("get", "crd", "apptopologies.apptopology.io", "-o", "yaml").stdout
    conditions = {c["type"]: c["status"] for c in yaml.safe_load(crd)["status"]["conditions"]}
    assert conditions["Established"] == "True"
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            doc["metadata"]["namespace"] = namespace
            # Strict field validation, as `kubectl apply` does by default.
            controlplane.kubectl("create", "--validate=strict", "-f", "-", input=yaml.safe_dump(doc))
    listed = controlplane.kubectl("get", "topo", "-n", namespace, "-o", "name").stdout.split()
    assert len(listed) == len(list((ROOT / "examples").glob("*.yaml")))
    explained = controlplane.kubectl("explain", "apptopology.spec.flows").stdout
    assert "DESCRIPTION" in explained and "from" in explained and "ports" in explained
    assert "At least one side must be a tier" in explained or "tier" in explained
    explained = controlplane.kubectl("explain", "apptopology.spec.flows.from").stdout
    assert "namespaceSelector" in explained and "AND" in explained


def test_rendered_policies_pass_api_server_validation(controlplane: ControlPlane, namespace: str) -> None:
    """Every example's `apptopology render` output is accepted by the API server (server-side dry run)."""
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            policies = rendered(doc, namespace)
            assert policies, path.name
            result = controlplane.kubectl(
                "apply",
                "--dry-run=server",
                "--validate=strict",
                "-f",
                "-",
                input=yaml.safe_dump_all(list(policies.values())),
                check=False,
            )
            assert result.returncode == 0, f"{path.name}: {result.stderr}"


def test_operator_pod_passes_restricted_pod_security(controlplane: ControlPlane) -> None:
    """deploy/ labels its namespace `enforce: restricted`; the ReplicaSet controller's pod got past it."""
    core = client.CoreV1Api(controlplane.api)
    selector = "app.kubernetes.io/name=apptopology,app.kubernetes.io/component=operator"
    pods = wait_for(
        lambda: core.list_namespaced_pod("apptopology-system", label_selector=selector).items,
        timeout=60,
        what="the operator Deployment's pod (created only if restricted Pod Security admits it)",
    )
    spec = pods[0].spec
    assert spec.security_context.run_as_non_root is True
    assert spec.containers[0].security_context.read_only_root_filesystem is True


# 2. Admission ---------------------------------------------------------------------------------------


def test_invalid_inputs_rejected_at_admission(controlplane: ControlPlane, namespace: str) -> None:
    from shared import invalid_cases

    not_caught = []
    for case in invalid_cases():
        if case["admission"] in ("none",):
            continue
        doc = copy.deepcopy(case["document"])
        doc["metadata"]["namespace"] = namespace
        doc["metadata"]["name"] = case["id"]
        result = controlplane.kubectl("create", "--validate=strict", "-f", "-", input=yaml.safe_dump(doc), check=False)
        if case["admission"] == "operator":
            if result.returncode != 0:
                not_caught.append(f"{case['id']}: expected to pass admission, got {result.stderr}")
            continue
        if result.returncode == 0:
            not_caught.append(f"{case['id']}: accepted by the API server")
            continue
        # The API server names the field: spec.flows[1].to.tier style paths, or the field name.
        leaf = case["path"].split(".")[-1].split("[")[0]
        if leaf not in result.stderr and case["path"].split("[")[0] not in result.stderr:
            not_caught.append(f"{case['id']}: message does not name {case['path']}: {result.stderr}")
    assert not not_caught, "\n".join(not_caught)


# 3. Create ------------------------------------------------------------------------------------------


def test_create(cluster: Cluster, running_operator: Operator, namespace: str) -> None:
    doc = load_example("three-tier.yaml")
    created = cluster.create(doc, namespace)
    ready = wait_ready(cluster, namespace, "shop")
    assert ready["reason"] == "Reconciled"
    obj = cluster.get(namespace, "shop")
    assert obj is not None
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert obj["status"]["policies"] == list(rendered(doc, namespace))
    assert_policies_match(cluster, namespace, doc, created["metadata"]["uid"])
    assert "finalizers" not in obj["metadata"]
    table = cluster.cp.kubectl("get", "topo", "-n", namespace).stdout.split()
    header = ["NAME", "READY", "TIERS", "POLICIES", "PODS", "WARNINGS", "AGE"]
    assert table[:7] == header and table[7:11] == ["shop", "True", "3", "5"]
    for policy in cluster.policies(namespace).values():
        assert "app.kubernetes.io/instance" not in policy["metadata"]["labels"]


# 4. Update ------------------------------------------------------------------------------------------


def test_update_add_flow_remove_tier(cluster: Cluster, running_operator: Operator, namespace: str) -> None:
    doc = load_example("three-tier.yaml")
    uid = cluster.create(doc, namespace)["metadata"]["uid"]
    wait_ready(cluster, namespace, "shop")

    spec = copy.deepcopy(doc["spec"])
    spec["flows"].append({"from": {"tier": "api"}, "to": {"tier": "frontend"}, "ports": [{"port": 9000}]})
    gen = cluster.patch_spec(namespace, "shop", spec)["metadata"]["generation"]
    wait_for(lambda: cluster.ready(namespace, "shop", gen), what="generation 2 observed")
    doc["spec"] = spec
    assert_policies_match(cluster, namespace, doc, uid)

    spec = copy.deepcopy(spec)
    spec["tiers"] = [t for t in spec["tiers"] if t["name"] != "database"]
    spec["flows"] = [f for f in spec["flows"] if f["to"].get("tier") != "database"]
    gen = cluster.patch_spec(namespace, "shop", spec)["metadata"]["generation"]
    wait_for(lambda: cluster.ready(namespace, "shop", gen), what="generation 3 observed")
    doc["spec"] = spec
    assert "shop.tier-database" not in cluster.policies(namespace)
    assert_policies_match(cluster, namespace, doc, uid)


# 5. Drift -------------------------------------------------------------------------------------------


def test_drift_repaired(cluster: Cluster, running_operator: Operator, namespace: str) -> None:
    doc = load_example("three-tier.yaml")
    uid = cluster.create(doc, namespace)["metadata"]["uid"]
    wait_ready(cluster, namespace, "shop")
    want = rendered(doc, namespace)["shop.tier-api"]["spec"]

    cluster.net.patch_namespaced_network_policy(
        "shop.tier-api",
        namespace,
        [{"op": "replace", "path": "/spec/ingress/0/ports/0/port", "value": 1}],
        _content_type="application/json-patch+json",
    )
    started = time.monotonic()
    wait_for(
        lambda: stored_spec(cluster.policies(namespace)["shop.tier-api"]["spec"]) == stored_spec(want),
        timeout=10,
        what="edited policy restored",
    )
    edit_repair = time.monotonic() - started

    # An allow-all rule slipped into the default-deny policy (no rules of its own) is taken back too.
    cluster.net.patch_namespaced_network_policy(
        "shop.default-deny",
        namespace,
        {"spec": {"egress": [{}], "ingress": [{}]}},
        _content_type="application/merge-patch+json",
    )
    wait_for(
        lambda: (
            not cluster.policies(namespace)["shop.default-deny"]["spec"].get("egress")
            and not cluster.policies(namespace)["shop.default-deny"]["spec"].get("ingress")
        ),
        timeout=10,
        what="foreign allow-all rules removed from the default-deny policy",
    )

    cluster.net.delete_namespaced_network_policy("shop.tier-database", namespace)
    started = time.monotonic()
    wait_for(lambda: "shop.tier-database" in cluster.policies(namespace), timeout=10, what="deleted policy restored")
    delete_repair = time.monotonic() - started
    assert_policies_match(cluster, namespace, doc, uid)
    print(f"drift repaired in {edit_repair:.2f}s (edit), {delete_repair:.2f}s (delete)")


# 6. Name conflict -----------------------------------------------------------------------------------


def test_foreign_policy_with_clashing_name_untouched(
    cluster: Cluster, running_operator: Operator, namespace: str
) -> None:
    """A policy of someone else's under a name the topology needs: left alone, and nothing of the revision
    is written (all or nothing: a revision without one of its policies could leave pods more open)."""
    foreign = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "shop.tier-api", "labels": {"owner": "platform-team"}},
        "spec": {"podSelector": {"matchLabels": {"legacy": "true"}}, "policyTypes": ["Ingress"]},
    }
    before = cluster.net.create_namespaced_network_policy(namespace, foreign, _preload_content=False)
    before_rv = yaml.safe_load(before.read())["metadata"]["resourceVersion"]
    cluster.create(load_example("three-tier.yaml"), namespace)
    ready = wait_ready(cluster, namespace, "shop", status="False")
    assert ready["reason"] == "NameConflict" and "shop.tier-api" in ready["message"]
    policies = cluster.policies(namespace)
    assert policies["shop.tier-api"]["metadata"]["resourceVersion"] == before_rv
    assert "ownerReferences" not in policies["shop.tier-api"]["metadata"]
    assert sorted(policies) == ["shop.tier-api"]
    obj = cluster.get(namespace, "shop")
    assert obj is not None and obj["status"]["conflicts"] == ["shop.tier-api"] and obj["status"]["policies"] == []
    # Once the other policy is gone, the topology is applied: the deletion's event reaches it by name.
    cluster.net.delete_namespaced_network_policy("shop.tier-api", namespace)
    wait_ready(cluster, namespace, "shop")
    assert len(cluster.policies(namespace)) == 5


# 7. Delete: garbage collection ----------------------------------------------------------------------


def test_delete_garbage_collects(cluster: Cluster, running_operator: Operator, namespace: str) -> None:
    cluster.create(load_example("three-tier.yaml"), namespace)
    wait_ready(cluster, namespace, "shop")
    assert len(cluster.policies(namespace)) == 5
    cluster.delete(namespace, "shop")
    wait_for(lambda: cluster.get(namespace, "shop") is None, timeout=10, what="AppTopology gone (no finalizer)")
    wait_for(lambda: cluster.policies(namespace) == {}, timeout=60, what="policies garbage-collected")


# 8. Restart in sync: zero writes --------------------------------------------------------------------


def test_restart_in_sync_makes_zero_writes(
    cluster: Cluster, controlplane: ControlPlane, running_operator: Operator, namespace: str
) -> None:
    for example in ("three-tier.yaml", "cross-namespace.yaml", "external-internet.yaml"):
        cluster.create(load_example(example), namespace)
    for name in ("shop", "orders", "edge"):
        wait_ready(cluster, namespace, name)
    # Namespaces of earlier tests still terminating would make the operator chase policies the namespace
    # controller deletes (a write, refused): wait until the whole cluster is settled, then claim zero.
    core = client.CoreV1Api(controlplane.api)
    wait_for(
        lambda: all(ns.status.phase != "Terminating" for ns in core.list_namespace().items),
        timeout=120,
        what="no namespace terminating",
    )
    time.sleep(2)  # let the events caused by our own writes settle
    running_operator.stop()
    before = len(controlplane.audit_writes())
    # The counter works: creating those topologies' policies and statuses were writes by the operator.
    assert before >= 5 + 3 + 1 + 3, "the audit log does not show the operator's earlier writes"
    running_operator.start()
    time.sleep(8)  # initial listing of every AppTopology and policy, and a reconcile of each
    writes = controlplane.audit_writes()[before:]
    summary = [(w["verb"], w["objectRef"].get("resource"), w["objectRef"].get("name")) for w in writes]
    print(f"writes by {OPERATOR_USER} after restart in sync: {len(writes)} {summary}")
    assert writes == [], summary


# 9. kill -9 during a burst ----------------------------------------------------------------------------


def test_kill_during_burst_converges(cluster: Cluster, running_operator: Operator, namespace: str) -> None:
    doc = load_example("three-tier.yaml")
    uids = {}
    for i in range(50):
        item = copy.deepcopy(doc)
        item["metadata"]["name"] = f"app-{i:02d}"
        uids[item["metadata"]["name"]] = cluster.create(item, namespace)["metadata"]["uid"]
        if i == 20:
            running_operator.stop(signal.SIGKILL)
    running_operator.start()
    started = time.monotonic()
    for name in uids:
        wait_ready(cluster, namespace, name, timeout=120)
    print(f"50 topologies converged {time.monotonic() - started:.1f}s after the restart")
    policies = cluster.policies(namespace)
    assert len(policies) == 50 * 5
    for name, uid in uids.items():
        item = copy.deepcopy(doc)
        item["metadata"]["name"] = name
        assert_policies_match(cluster, namespace, item, uid)


# 10. Several topologies and namespaces ---------------------------------------------------------------


def test_two_topologies_one_namespace_and_same_name_in_two(
    cluster: Cluster, controlplane: ControlPlane, running_operator: Operator, namespace: str
) -> None:
    shop = load_example("three-tier.yaml")
    orders = load_example("cross-namespace.yaml")
    shop_uid = cluster.create(shop, namespace)["metadata"]["uid"]
    orders_uid = cluster.create(orders, namespace)["metadata"]["uid"]
    other = f"{namespace}-b"
    client.CoreV1Api(controlplane.api).create_namespace({"metadata": {"name": other}})
    other_uid = cluster.create(shop, other)["metadata"]["uid"]
    for ns, name in ((namespace, "shop"), (namespace, "orders"), (other, "shop")):
        wait_ready(cluster, ns, name)
    assert_policies_match(cluster, namespace, shop, shop_uid)
    assert_policies_match(cluster, namespace, orders, orders_uid)
    assert_policies_match(cluster, other, shop, other_uid)

    # Deleting one topology leaves the other's policies alone.
    cluster.delete(namespace, "orders")
    wait_for(lambda: not any(n.startswith("orders-") for n in cluster.policies(namespace)), timeout=60, what="GC")
    assert_policies_match(cluster, namespace, shop, shop_uid)

    # A namespace deleted with its topologies goes away completely (no finalizer holds it).
    client.CoreV1Api(controlplane.api).delete_namespace(other)
    wait_for(lambda: _namespace_gone(controlplane, other), timeout=90, what=f"namespace {other} deleted")
    assert_policies_match(cluster, namespace, shop, shop_uid)


def _namespace_gone(cp: ControlPlane, name: str) -> bool:
    try:
        client.CoreV1Api(cp.api).read_namespace(name)
    except client.ApiException as exc:
        return exc.status == 404
    return False


# 11. Invalid spec on a valid topology: fail closed ---------------------------------------------------


def test_invalid_spec_keeps_previous_policies(cluster: Cluster, running_operator: Operator, namespace: str) -> None:
    doc = load_example("three-tier.yaml")
    cluster.create(doc, namespace)
    wait_ready(cluster, namespace, "shop")
    before = {n: (p["metadata"]["resourceVersion"], p["spec"]) for n, p in cluster.policies(namespace).items()}

    from shared import invalid_cases

    # Passes the CRD but not the operator's checks (tests/cases/invalid.yaml: admission operator): the
    # rendered policy's description annotation would be over the API server's 256 KiB.
    (case,) = [c for c in invalid_cases() if c["id"] == "description-annotation-too-large"]
    spec = copy.deepcopy(case["document"]["spec"])
    gen = cluster.patch_spec(namespace, "shop", spec)["metadata"]["generation"]
    ready = wait_for(
        lambda: (c := cluster.ready(namespace, "shop", gen)) and c["status"] == "False" and c, what="InvalidSpec"
    )
    assert ready["reason"] == "InvalidSpec"
    assert "spec.flows" in ready["message"] and "256 KiB" in ready["message"]
    time.sleep(2)
    after = {n: (p["metadata"]["resourceVersion"], p["spec"]) for n, p in cluster.policies(namespace).items()}
    assert after == before
    events = client.CoreV1Api(cluster.cp.api).list_namespaced_event(namespace, _preload_content=False)
    reasons = [(e.get("type"), e.get("reason")) for e in yaml.safe_load(events.read())["items"]]
    assert ("Warning", "InvalidSpec") in reasons


# explain --cluster (issue 4's live inventory) ---------------------------------------------------------


def test_explain_reads_the_live_cluster(controlplane: ControlPlane, namespace: str) -> None:
    """Pods group under their Deployment; the answer matches the offline one for the same labels."""
    doc = load_example("three-tier.yaml")
    doc["metadata"]["namespace"] = namespace
    for tier in ("frontend", "api", "database"):
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": tier, "namespace": namespace},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"tier": tier}},
                "template": {
                    "metadata": {"labels": {"tier": tier}},
                    "spec": {"containers": [{"name": "c", "image": "registry.invalid/none:1"}]},
                },
            },
        }
        controlplane.kubectl("apply", "-f", "-", input=yaml.safe_dump(deployment))
    wait_for(
        lambda: len(client.CoreV1Api(controlplane.api).list_namespaced_pod(namespace).items) == 6,
        timeout=60,
        what="pods created by the deployments",
    )
    result = subprocess.run(
        [sys.executable, "-m", "apptopology.cli", "explain", "-f", "-", "--cluster", "-o", "json"],
        input=yaml.safe_dump(doc),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "KUBECONFIG": controlplane.kubeconfig},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    cells = {(c["from"], c["to"]): c["ports"] for c in json.loads(result.stdout)}
    frontend, api, database = (f"{namespace}/Deployment/{t}" for t in ("frontend", "api", "database"))
    assert cells[(frontend, api)] == "TCP/8080"
    assert cells[(api, database)] == "TCP/5432"
    assert (frontend, database) not in cells
