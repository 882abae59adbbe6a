"""Cluster facts: built from manifests by pure functions, rendered, and judged by the evaluator.

The fixtures (tests/cases/cluster-facts*.yaml) are what the API returns for a kubeadm-style cluster with
NodeLocal DNSCache and a dual-stack API server, and for OpenShift's DNS (pods on 5353 behind named target
ports). Renders with them are pinned in golden files; random topologies rendered with random facts must
allow exactly what the intent, given the same facts, declares.
"""

from __future__ import annotations

import copy
import io
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from apptopology.analysis.verify import verify
from apptopology.api.validation import InvalidTopology
from apptopology.cli import main
from apptopology.cli.documents import load_documents, load_topologies
from apptopology.cli.output import dump_yaml
from apptopology.evaluator import Evaluator, External, Inventory, Namespace, Pod
from apptopology.render.facts import (
    OFFLINE,
    APIEndpoint,
    ClusterFacts,
    DNSService,
    FactPort,
    cluster_facts,
    dns_service_facts,
    kube_api_facts,
    node_local_dns_facts,
    wanted_objects,
)
from apptopology.render.renderer import render, render_notes, resolve_dns
from apptopology.render.validation import parse_topology
from shared import ROOT
from strategies import cluster_facts_strategy, topologies

CASES = ROOT / "tests" / "cases"
GOLDEN = Path(__file__).parent / "golden" / "cluster"
UPDATE = os.environ.get("APPTOPOLOGY_UPDATE_GOLDEN") == "1"
FIXTURES = ["cluster-facts", "cluster-facts-openshift"]


def facts_of(name: str) -> ClusterFacts:
    return cluster_facts([d.data for d in load_documents([str(CASES / f"{name}.yaml")])])


def agent() -> Any:
    (topology,) = load_topologies([str(ROOT / "examples" / "cluster-services.yaml")])
    return topology


# --- building the facts ------------------------------------------------------------------------------------


def test_kubeadm_cluster_facts() -> None:
    facts = facts_of("cluster-facts")
    assert facts.in_cluster
    (dns,) = facts.dns_services
    # port 53 only: the metrics port of the Service is not DNS.
    assert dns == DNSService(
        "kube-system",
        "kube-dns",
        (("k8s-app", "kube-dns"),),
        (FactPort("UDP", 53), FactPort("TCP", 53)),
        (FactPort("UDP", 53), FactPort("TCP", 53)),
    )
    assert facts.node_local_dns and facts.node_local_dns_addresses == ("169.254.20.10", "10.96.0.10")
    # Ready endpoints on the slices' port, the ClusterIPs on the Service's; the not-ready 172.18.0.3 is out.
    assert facts.kube_api == (
        APIEndpoint("10.96.0.1", 443),
        APIEndpoint("172.18.0.2", 6443),
        APIEndpoint("fd00:10:96::1", 443),
        APIEndpoint("fd00:172:18::2", 6443),
    )


def test_openshift_dns_named_target_ports_resolve_through_the_endpoint_slices() -> None:
    facts = facts_of("cluster-facts-openshift")
    service = facts.dns_service("openshift-dns", "dns-default")
    assert service is not None and service.target_ports == (FactPort("UDP", 5353), FactPort("TCP", 5353))
    assert service.ports == (FactPort("UDP", 53), FactPort("TCP", 53))
    assert not facts.node_local_dns
    # Without the slices the name stays: a NetworkPolicy resolves it on the DNS pods.
    docs = [d.data for d in load_documents([str(CASES / "cluster-facts-openshift.yaml")])]
    alone = dns_service_facts(docs[0])
    assert alone is not None and alone.target_ports == (FactPort("UDP", "dns"), FactPort("TCP", "dns-tcp"))


@pytest.mark.parametrize(
    "spec",
    [
        {"ports": [{"port": 53, "protocol": "UDP"}]},  # no selector: endpoints managed by hand
        {"selector": {}, "ports": [{"port": 53}]},
        {"selector": {"k8s-app": "dns\n"}, "ports": [{"port": 53}]},  # not a label value
        {"selector": {"app": "dns"}, "ports": [{"port": 9153}]},  # no port 53
        {"selector": {"app": "dns"}, "ports": [{"port": 53, "targetPort": 70000}]},
        {"selector": {"app": "dns"}, "ports": [{"port": 53, "protocol": "ICMP"}]},
    ],
)
def test_a_service_that_cannot_be_a_dns_peer_is_left_out(spec: dict[str, Any]) -> None:
    service = {"kind": "Service", "metadata": {"namespace": "kube-system", "name": "kube-dns"}, "spec": spec}
    assert dns_service_facts(service) is None
    facts = cluster_facts([service])
    assert facts.dns_services == () and facts.problems
    assert facts.kube_api is None  # default/kubernetes not among the manifests: unknown, not empty


def test_node_local_dns_arguments() -> None:
    def ds(args: list[str], labels: dict[str, str] | None = None, namespace: str = "kube-system") -> dict[str, Any]:
        return {
            "kind": "DaemonSet",
            "metadata": {"namespace": namespace, "labels": labels or {"k8s-app": "node-local-dns"}},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "args": args}]}}},
        }

    assert node_local_dns_facts([ds(["-localip=169.254.20.10", "-conf", "x"])]) == (True, ("169.254.20.10",))
    assert node_local_dns_facts([ds(["--localip", "169.254.20.11,010.0.0.1,fd00::a"])]) == (
        True,
        ("169.254.20.11", "fd00::a"),  # not an address (leading zero): left out
    )
    assert node_local_dns_facts([ds([])]) == (True, ())
    assert node_local_dns_facts([ds([], {"k8s-app": "other"}), ds([], namespace="elsewhere")]) == (False, ())


def test_kube_api_facts_skip_what_is_not_an_address() -> None:
    slices = [
        {
            "endpoints": [{"addresses": ["10.0.0.1", "api.example.com", "::ffff:10.0.0.2"]}],
            "ports": [{"port": 6443}, {"port": 0}],
        }
    ]
    service = {"spec": {"clusterIP": "None", "ports": [{"port": 443}]}}
    assert kube_api_facts(service, slices) == (APIEndpoint("10.0.0.1", 6443),)


def test_wanted_objects_follow_the_topologies() -> None:
    doc = agent().model_dump(by_alias=True, exclude_none=True)
    doc["spec"]["dns"]["service"] = {"namespace": "dns", "name": "coredns"}
    wanted = wanted_objects([parse_topology(doc)])
    assert wanted.dns_services == (("dns", "coredns"), ("kube-system", "kube-dns"), ("openshift-dns", "dns-default"))
    assert wanted.kube_api == ("default", "kubernetes")


# --- rendering with them -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", FIXTURES)
def test_golden_with_cluster_facts(fixture: str) -> None:
    out = io.StringIO()
    dump_yaml(render(agent(), facts_of(fixture)), out)
    golden = GOLDEN / f"cluster-services.{fixture}.yaml"
    if UPDATE:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(out.getvalue())
    assert out.getvalue() == golden.read_text()


@pytest.mark.parametrize("fixture", FIXTURES)
def test_examples_with_cluster_facts_allow_exactly_their_intent(fixture: str) -> None:
    facts = facts_of(fixture)
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for topology in load_topologies([str(path)]):
            assert verify(topology, render(topology, facts), None, facts) == [], path.name


def test_offline_kube_api_fails_closed_and_says_so() -> None:
    topology = agent()
    policies = render(topology)
    egress = policies[0]["spec"]["egress"]
    assert not any("6443" in str(rule) or "10.96.0.1" in str(rule) for rule in egress)
    text = policies[0]["metadata"]["annotations"]["apptopology.io/description"]
    assert "reach the Kubernetes API (not resolved without the cluster: no rule, fail closed)" in text
    notes = {n.path: n.message for n in render_notes(topology, OFFLINE)}
    assert notes["spec.flows[0].to.kubeAPI"].startswith("the Kubernetes API's addresses are not resolved")
    assert "render --cluster" in notes["spec.dns.discover"]
    # Known to have no endpoints: still no rule, a different note; resolved: no note.
    empty = ClusterFacts(kube_api=(), in_cluster=True)
    assert (
        "no endpoints found" in {n.path: n.message for n in render_notes(topology, empty)}["spec.flows[0].to.kubeAPI"]
    )
    assert "spec.flows[0].to.kubeAPI" not in {n.path for n in render_notes(topology, facts_of("cluster-facts"))}


def test_evaluated_kube_api_and_dns_with_facts() -> None:
    facts = facts_of("cluster-facts-openshift")
    topology = agent()
    agent_pod = Pod("platform", "agent", {"app": "agent"})
    dns_pod = Pod("openshift-dns", "dns", {"dns.operator.openshift.io/daemonset-dns": "default"})
    kube_dns = Pod("kube-system", "kube-dns", {"k8s-app": "kube-dns"})
    apis = [External(f"10.0.0.{n}/32") for n in (11, 12, 13, 14)]
    inventory = Inventory(
        (Namespace("openshift-dns"), Namespace("kube-system")), (agent_pod, dns_pod, kube_dns), tuple(apis)
    )
    evaluator = Evaluator(render(topology, facts), inventory)
    # 443 goes anywhere (pods too); DNS to the discovered pods on 5353; the static kube-dns peer is replaced.
    assert str(evaluator.allowed(agent_pod, dns_pod)) == "TCP/443, TCP/5353, UDP/5353"
    assert str(evaluator.allowed(agent_pod, kube_dns)) == "TCP/443"
    assert [str(evaluator.allowed(agent_pod, a)) for a in apis] == ["TCP/443, TCP/6443"] * 3 + ["TCP/443"]
    assert verify(topology, render(topology, facts), inventory, facts) == []


def test_discovery_falls_back_to_spec_dns_when_no_service_is_found() -> None:
    topology = agent()
    facts = ClusterFacts(kube_api=(), in_cluster=True)
    resolved = resolve_dns(topology, facts)
    assert resolved.source == "spec.dns" and resolved.note is not None and "found in the cluster" in resolved.note
    assert [p["spec"] for p in render(topology, facts)] == [p["spec"] for p in render(topology)]


def test_explicit_node_local_addresses_render_without_the_cluster() -> None:
    doc = agent().model_dump(by_alias=True, exclude_none=True)
    doc["spec"]["dns"] = {"nodeLocal": {"addresses": ["169.254.20.10", "fd00::10"]}}
    policies = render(parse_topology(doc))
    dns_rules = [r for r in policies[0]["spec"]["egress"] if {"ipBlock": {"cidr": "fd00::10/128"}} in r["to"]]
    assert dns_rules == [
        {
            "to": [
                {"ipBlock": {"cidr": "169.254.20.10/32"}},
                {"ipBlock": {"cidr": "fd00::10/128"}},
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                },
            ],
            "ports": [{"port": 53, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
        }
    ]


@pytest.mark.parametrize(
    ("dns", "path", "message"),
    [
        ({"service": {"namespace": "kube-system", "name": "kube-dns"}}, "spec.dns.service", "only with discover"),
        ({"nodeLocal": {"addresses": ["169.254.020.10"]}}, "spec.dns.nodeLocal.addresses[0]", "not an IP address"),
        ({"nodeLocal": {"addresses": ["FD00::10"]}}, "spec.dns.nodeLocal.addresses[0]", "write fd00::10"),
        ({"nodeLocal": {"addresses": []}}, "spec.dns.nodeLocal.addresses", "at least 1"),
    ],
)
def test_dns_discovery_fields_are_validated(dns: dict[str, Any], path: str, message: str) -> None:
    doc = agent().model_dump(by_alias=True, exclude_none=True)
    doc["spec"]["dns"] = dns
    with pytest.raises(InvalidTopology) as info:
        parse_topology(doc)
    assert [(i.path, message in i.message) for i in info.value.issues] == [(path, True)]


@pytest.mark.parametrize(
    ("flow", "path", "message"),
    [
        ({"from": {"kubeAPI": True}, "to": {"tier": "agent"}}, "spec.flows[3].from.kubeAPI", "destination only"),
        (
            {"from": {"tier": "agent"}, "to": {"kubeAPI": True}, "ports": [{"port": 443}]},
            "spec.flows[3].ports",
            "no ports",
        ),
        ({"from": {"tier": "agent"}, "to": {"kubeAPI": False}}, "spec.flows[3].to", "kubeAPI must be true"),
    ],
)
def test_kube_api_endpoint_is_validated(flow: dict[str, Any], path: str, message: str) -> None:
    doc = agent().model_dump(by_alias=True, exclude_none=True)
    doc["spec"]["flows"].append(flow)
    with pytest.raises(InvalidTopology) as info:
        parse_topology(doc)
    assert [(i.path, message in i.message) for i in info.value.issues] == [(path, True)]


def test_cli_render_warns_on_stderr_and_keeps_stdout_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(ROOT / "examples" / "cluster-services.yaml")]) == 0
    out, err = capsys.readouterr()
    assert "warning:" not in out and out.startswith("---")
    assert (
        "warning: AppTopology platform/platform-agent: spec.flows[0].to.kubeAPI: the Kubernetes API's addresses "
        "are not resolved without the cluster: no rule, fail closed" in err
    )


# --- random topologies, random facts -----------------------------------------------------------------------


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topologies(cluster=True), cluster_facts_strategy())
def test_random_topologies_with_random_facts_render_to_exactly_their_intent(
    doc: dict[str, Any], facts: ClusterFacts
) -> None:
    try:
        topology = parse_topology(copy.deepcopy(doc))
    except InvalidTopology:
        return
    found = verify(topology, render(topology, facts), None, facts)
    assert [line for d in found for line in d.lines()] == []


def test_offline_is_the_default() -> None:
    assert ClusterFacts() == OFFLINE and not OFFLINE.in_cluster and OFFLINE.kube_api is None


def test_cli_render_cluster_without_a_cluster_is_a_clean_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["render", "--cluster", "-f", str(ROOT / "examples" / "cluster-services.yaml")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: reading the cluster: ") and "Traceback" not in err
