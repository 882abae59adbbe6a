"""The operator as users install it, on a kind cluster with real packets (e2e/README.md says what each
step proves). The steps build on each other and run in this order:

  baseline            every probe connects before any policy (servers, ClusterIPs and DNS work)
  previous release    0.1.0 installed with its own deploy/ (CRDs included, as it shipped), the topologies
  kustomize upgrade   to this checkout (crds/, then deploy/): zero NetworkPolicy writes, no pair opens
  restricted          2 replicas, 1 leader, UID 65532, read-only root, probes pass, restricted Pod Security
  kustomize uninstall `kubectl delete -k deploy/`: CRDs, topologies and policies stay; nothing opens
  chart               `helm install` of the previous image, `helm upgrade` to this one: zero writes
  packets = explain   every pair, through pod IPs, ClusterIPs and DNS names, as `explain --cluster` says
  drift, leader kill, removal on purpose, `helm uninstall`
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import workloads
from support import (
    E2E,
    OPERATOR_NS,
    OPERATOR_SA,
    ROOT,
    Cluster,
    Failed,
    Probe,
    explain_allows,
    explained,
    policy_writes,
    probe,
    probe_all,
    watching,
)

PREVIOUS_VERSION, PREVIOUS_COMMIT = next(
    line.split() for line in (E2E / "previous-release").read_text().splitlines() if not line.startswith("#")
)
RELEASE = "apptopology"
SETTLE = 20  # seconds to let a freshly started leader reconcile everything before counting its writes


class State:
    pod_ip: dict[str, str]
    service_ip: dict[str, str]
    expected: dict[Probe, bool]
    watched: dict[Probe, bool]
    topology_files: list[Path]


STATE = State()


def _diff(observed: dict[Probe, bool], expected: dict[Probe, bool]) -> list[str]:
    return [
        f"{p}: {'connects' if observed[p] else 'blocked'}, want {'open' if w else 'blocked'}"
        for p, w in expected.items()
        if observed[p] != w
    ]


def _operator_logs(cluster: Cluster) -> str:
    try:
        return cluster.kubectl(
            "logs", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/name=apptopology", "--tail=40", "--prefix", check=False
        )[-6000:]
    except Failed:
        return ""


def _wait_operator(cluster: Cluster, image: str) -> None:
    cluster.kubectl(
        "rollout", "status", "-n", OPERATOR_NS, "deployment/apptopology-operator", "--timeout=240s", timeout=260
    )

    def settled() -> bool:
        pods = cluster.operator_pods()
        images = {c["image"] for p in pods for c in p["spec"]["containers"]}
        ready = all(
            any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])) for p in pods
        )
        return (
            len(pods) == 2 and images == {image} and ready and cluster.leader() in {p["metadata"]["name"] for p in pods}
        )

    cluster.wait_for(f"2 ready replicas of {image}, one of them leading", settled, timeout=180)


def _no_writes(cluster: Cluster, since: float, what: str) -> None:
    writes = policy_writes(cluster, since)
    assert writes == [], f"{what}: NetworkPolicy writes recorded by the API server: {writes}\n{_operator_logs(cluster)}"


@pytest.fixture(scope="module", autouse=True)
def apps(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> None:
    workloads.deploy(cluster, cluster.env["AGNHOST_IMAGE"])
    STATE.pod_ip = workloads.pod_ips(cluster)
    STATE.service_ip = workloads.service_ips(cluster)
    STATE.expected = workloads.probes(STATE.pod_ip, STATE.service_ip)
    STATE.watched = workloads.watched(STATE.pod_ip)
    STATE.topology_files = workloads.write_topologies(tmp_path_factory.mktemp("topologies"))


def test_baseline_every_pair_connects_before_any_policy(cluster: Cluster) -> None:
    """Every server listens and every path works (pod IP, ClusterIP, DNS): a blocked probe later is the
    policy's doing."""
    observed = probe_all(cluster, list(STATE.expected))
    assert [str(p) for p, ok in observed.items() if not ok] == []


def test_previous_release_installed_with_its_own_deploy(cluster: Cluster, tmp_path: Path) -> None:
    old = tmp_path / "previous"
    old.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", PREVIOUS_COMMIT, "deploy", "crds"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    cluster.kubectl("apply", "-k", str(old / "deploy"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/apptopologies.apptopology.io", "--timeout=60s")
    _wait_operator(cluster, cluster.env["PREVIOUS_OPERATOR_IMAGE"])
    cluster.apply(workloads.topology_documents())
    cluster.wait_ready_topologies(workloads.TOPOLOGIES)
    observed = probe_all(cluster, list(STATE.expected))
    assert _diff(observed, STATE.expected) == []


def test_upgrade_with_kustomize_writes_no_policy_and_opens_nothing(cluster: Cluster) -> None:
    before = cluster.policies()
    since = time.time()
    with watching(cluster, STATE.watched) as watch:
        cluster.kubectl("apply", "-k", str(ROOT / "crds"))
        cluster.kubectl("apply", "-k", str(ROOT / "deploy"))
        _wait_operator(cluster, cluster.env["OPERATOR_IMAGE"])
        time.sleep(SETTLE)
    assert watch.wrong == [], f"pairs flipped during the upgrade: {watch.wrong}"
    assert watch.rounds >= 3, watch.errors
    _no_writes(cluster, since, "kustomize upgrade")
    assert cluster.policies() == before


def test_operator_runs_restricted_two_replicas_one_leader(cluster: Cluster) -> None:
    namespace = cluster.get("namespace", OPERATOR_NS)["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = cluster.operator_pods()
    assert len(pods) == 2
    names = {p["metadata"]["name"] for p in pods}
    assert cluster.leader() in names
    leaders = 0
    for pod in pods:
        name = pod["metadata"]["name"]
        assert all(s["ready"] and s["restartCount"] == 0 for s in pod["status"]["containerStatuses"]), pod["status"]
        uid = cluster.kubectl("exec", "-n", OPERATOR_NS, name, "--", "id", "-u").strip()
        assert uid == "65532"
        readonly = cluster.kubectl_rc("exec", "-n", OPERATOR_NS, name, "--", "touch", "/opt/apptopology/x")
        assert readonly.returncode != 0 and "Read-only file system" in readonly.stderr
        metrics = cluster.kubectl("get", "--raw", f"/api/v1/namespaces/{OPERATOR_NS}/pods/{name}:8081/proxy/metrics")
        leaders += sum(
            int(float(line.split()[-1])) for line in metrics.splitlines() if line.startswith("apptopology_leader")
        )
        created = pod["metadata"]["creationTimestamp"]
        ready = next(c["lastTransitionTime"] for c in pod["status"]["conditions"] if c["type"] == "Ready")
        print(f"{name}: created {created}, ready {ready}")
    assert leaders == 1


def test_kustomize_uninstall_keeps_crds_topologies_and_policies(cluster: Cluster) -> None:
    before = cluster.policies()
    since = time.time()
    with watching(cluster, STATE.watched) as watch:
        cluster.kubectl("delete", "-k", str(ROOT / "deploy"), "--wait=true", timeout=300)
        time.sleep(5)
    assert watch.wrong == []
    assert cluster.get("crd", "apptopologies.apptopology.io")["metadata"]["name"]
    assert len(cluster.get("apptopologies", "-A")["items"]) == len(workloads.TOPOLOGIES)
    assert cluster.policies() == before
    _no_writes(cluster, since, "kubectl delete -k deploy/")


def _helm_install(cluster: Cluster, *values: str, upgrade: bool = False) -> None:
    # Without values, `helm upgrade` reuses the release's (here: the previous image's tag); the chart's
    # defaults are what an upgrade to this version means.
    verb = ["upgrade", "--reset-values"] if upgrade else ["install"]
    cluster.helm(
        *verb, RELEASE, str(ROOT / "charts" / "apptopology"), "-n", OPERATOR_NS, "--wait", "--timeout=240s", *values
    )


def test_chart_install_and_upgrade_write_no_policy_and_open_nothing(cluster: Cluster) -> None:
    # The namespace with its Pod Security labels first (Helm does not own the namespace it installs into).
    cluster.kubectl("apply", "-f", str(ROOT / "deploy" / "namespace.yaml"))
    before = cluster.policies()
    since = time.time()
    previous_tag = cluster.env["PREVIOUS_OPERATOR_IMAGE"].rsplit(":", 1)[1]
    with watching(cluster, STATE.watched) as watch:
        _helm_install(cluster, "--set", f"image.tag={previous_tag}")
        _wait_operator(cluster, cluster.env["PREVIOUS_OPERATOR_IMAGE"])
        time.sleep(SETTLE)
        _no_writes(cluster, since, f"helm install of {previous_tag} (taking over existing policies)")
        since = time.time()
        _helm_install(cluster, upgrade=True)
        _wait_operator(cluster, cluster.env["OPERATOR_IMAGE"])
        time.sleep(SETTLE)
    assert watch.wrong == [], f"pairs flipped during install or upgrade: {watch.wrong}"
    _no_writes(cluster, since, "helm upgrade")
    assert cluster.policies() == before


def test_packets_match_explain_on_the_clusters_inventory(cluster: Cluster) -> None:
    """Every pair, through the pod's IP, its Service's ClusterIP and its DNS name: what the cluster lets
    through is what `apptopology explain --cluster` says the topologies allow, and what MATRIX expects."""
    allows = explain_allows(cluster, STATE.topology_files)
    observed = probe_all(cluster, list(STATE.expected))
    disagree = [
        f"{p}: packets say {'open' if observed[p] else 'blocked'}, explain says "
        f"{'open' if explained(allows, p.source, p.dest_pod, p.port) else 'blocked'}"
        for p in observed
        if observed[p] != explained(allows, p.source, p.dest_pod, p.port)
    ]
    assert disagree == []
    assert _diff(observed, STATE.expected) == []


def _shop_policy(cluster: Cluster, tier: str) -> dict[str, Any]:
    for policy in cluster.get("networkpolicies", "-n", "shop")["items"]:
        if policy["spec"]["podSelector"].get("matchLabels") == {"tier": tier}:
            return dict(policy)
    raise AssertionError(f"no policy selects tier={tier} in shop")


def test_drift_is_repaired_on_packets(cluster: Cluster) -> None:
    """Someone opens the database to everything: the operator puts its policy back, and the packets that the
    edit let through are blocked again."""
    pair = Probe("shop/frontend", STATE.pod_ip["shop/database"], 5432, "pod", "shop/database")
    original = _shop_policy(cluster, "database")
    name = original["metadata"]["name"]
    cluster.kubectl(
        "patch",
        "networkpolicy",
        "-n",
        "shop",
        name,
        "--type=json",
        "-p",
        '[{"op": "replace", "path": "/spec/ingress", "value": [{}]}]',
    )
    cluster.wait_for(
        "the operator to restore the database policy",
        lambda: _shop_policy(cluster, "database")["spec"] == original["spec"],
        timeout=90,
    )
    cluster.wait_for("frontend -> database:5432 blocked again", lambda: not probe(cluster, pair), timeout=60)
    writes = [w for w in policy_writes(cluster, 0) if w["object"] == f"shop/{name}" and w["user"] == OPERATOR_SA]
    assert writes, "the repair is the operator's write"


def test_leader_killed_during_a_change(cluster: Cluster) -> None:
    """The leader is killed (no grace, its Lease still held) and a flow is added at once: the standby takes
    the Lease when it expires and enforces the change; no pair that must stay blocked opens meanwhile."""
    docs = workloads.topology_documents()
    shop = next(d for d in docs if d["metadata"]["namespace"] == "shop")
    shop["spec"]["flows"].append({"from": {"tier": "frontend"}, "to": {"tier": "database"}, "ports": [{"port": 9090}]})
    new_pair = Probe("shop/frontend", STATE.pod_ip["shop/database"], 9090, "pod", "shop/database")
    assert not probe(cluster, new_pair)
    leader = cluster.leader()
    assert leader
    try:
        with watching(cluster, {p: w for p, w in STATE.watched.items() if not w}) as watch:
            cluster.kubectl("delete", "pod", "-n", OPERATOR_NS, leader, "--grace-period=0", "--force", "--wait=false")
            cluster.apply([shop])
            cluster.wait_for("the new flow to be enforced", lambda: probe(cluster, new_pair), timeout=120)
            cluster.wait_for("another leader", lambda: cluster.leader() not in (None, leader), timeout=60)
        assert watch.wrong == []
        cluster.wait_ready_topologies(["shop"])
    finally:
        # Back as it was: the flow's packets are blocked again.
        cluster.apply([d for d in workloads.topology_documents() if d["metadata"]["namespace"] == "shop"])
    cluster.wait_for("the removed flow to be blocked", lambda: not probe(cluster, new_pair), timeout=120)


def test_removing_a_topology_on_purpose_removes_its_policies(cluster: Cluster) -> None:
    pair = Probe("monitoring/grafana", STATE.pod_ip["billing/app"], 9090, "pod", "billing/app")
    assert not probe(cluster, pair)
    cluster.kubectl("delete", "-n", "billing", "apptopology/monitoring", "--wait=true")
    cluster.wait_for("billing's policies to go", lambda: not cluster.get("networkpolicies", "-n", "billing")["items"])
    cluster.wait_for("billing open again", lambda: probe(cluster, pair), timeout=60)
    cluster.apply([d for d in workloads.topology_documents() if d["metadata"]["namespace"] == "billing"])
    cluster.wait_ready_topologies(["billing"])
    cluster.wait_for("billing isolated again", lambda: not probe(cluster, pair), timeout=60)


def test_helm_uninstall_keeps_crds_topologies_and_policies(cluster: Cluster) -> None:
    before = cluster.policies()
    since = time.time()
    with watching(cluster, STATE.watched) as watch:
        cluster.helm("uninstall", RELEASE, "-n", OPERATOR_NS, "--wait")
        cluster.wait_for("the operator's pods to go", lambda: not cluster.operator_pods(), timeout=120)
        time.sleep(5)
    assert watch.wrong == []
    assert {c["metadata"]["name"] for c in cluster.get("crd")["items"]} >= {
        "apptopologies.apptopology.io",
        "topologyguardrails.apptopology.io",
    }
    assert len(cluster.get("apptopologies", "-A")["items"]) == len(workloads.TOPOLOGIES)
    assert cluster.policies() == before
    _no_writes(cluster, since, "helm uninstall")
    observed = probe_all(cluster, list(STATE.expected))
    assert _diff(observed, STATE.expected) == []
