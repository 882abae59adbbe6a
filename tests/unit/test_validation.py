"""Validation: every invalid input is refused with its field path; every example is accepted."""

from __future__ import annotations

from typing import Any

import pytest

from apptopology.api.spec import AppTopology
from apptopology.api.validation import InvalidTopology, parse_topology
from shared import example_documents, invalid_cases


@pytest.mark.parametrize(("name", "doc"), example_documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_examples_are_valid(name: str, doc: dict[str, Any]) -> None:
    assert isinstance(parse_topology(doc), AppTopology)


@pytest.mark.parametrize("case", invalid_cases(), ids=lambda c: c["id"])
def test_invalid_case_reports_path_and_message(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidTopology) as info:
        parse_topology(case["document"])
    found = [(i.path, i.message) for i in info.value.issues]
    assert any(path == case["path"] and case["message"] in message for path, message in found), found


def base(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": {"tiers": [{"name": "api", "podSelector": {}}], **spec},
    }


def test_defaults_match_the_documented_api() -> None:
    t = parse_topology(base())
    assert (t.spec.default_deny.scope, t.spec.default_deny.ingress, t.spec.default_deny.egress) == (
        "Namespace",
        True,
        True,
    )
    assert t.spec.dns.enabled
    assert t.spec.dns.namespace_selector is not None
    assert t.spec.dns.namespace_selector.to_k8s() == {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
    assert t.spec.dns.pod_selector is not None
    assert t.spec.dns.pod_selector.to_k8s() == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert [(p.port, p.protocol) for p in t.spec.dns.ports] == [(53, "UDP"), (53, "TCP")]
    assert not t.spec.monitoring.enabled
    assert t.spec.flows == []


def test_all_issues_of_a_document_are_reported_at_once() -> None:
    doc = base(flowz=[], flows=[{"from": {"tier": "nope"}, "to": {"tier": "api"}, "ports": [{"port": 0}]}])
    with pytest.raises(InvalidTopology) as info:
        parse_topology(doc)
    paths = {i.path for i in info.value.issues}
    assert {"spec.flowz", "spec.flows[0].from.tier", "spec.flows[0].ports[0].port"} <= paths


@pytest.mark.parametrize("port", [True, 1.5, None, [80], "080", "8080"])
def test_port_types(port: Any) -> None:
    with pytest.raises(InvalidTopology):
        parse_topology(base(flows=[{"from": {"anywhere": True}, "to": {"tier": "api"}, "ports": [{"port": port}]}]))


@pytest.mark.parametrize("port", [1, 65535, "http", "metrics", "a1", "h2c-web"])
def test_valid_ports(port: Any) -> None:
    parse_topology(base(flows=[{"from": {"anywhere": True}, "to": {"tier": "api"}, "ports": [{"port": port}]}]))


@pytest.mark.parametrize("cidr", ["10.0.0.0/8", "10.1.2.3/32", "2001:db8::/32", "::/0", "0.0.0.0/0"])
def test_valid_cidrs(cidr: str) -> None:
    parse_topology(base(flows=[{"from": {"ipBlock": {"cidr": cidr}}, "to": {"tier": "api"}}]))


def test_topology_name_must_be_a_dns_label() -> None:
    doc = base()
    doc["metadata"]["name"] = "x" * 64
    with pytest.raises(InvalidTopology) as info:
        parse_topology(doc)
    assert info.value.issues[0].path == "metadata.name"


def test_both_selectors_form_one_peer_endpoint() -> None:
    flow = {
        "from": {"namespaceSelector": {"matchLabels": {"a": "b"}}, "podSelector": {"matchLabels": {"c": "d"}}},
        "to": {"tier": "api"},
    }
    t = parse_topology(base(flows=[flow]))
    assert t.spec.flows[0].from_.namespace_selector is not None
    assert t.spec.flows[0].from_.pod_selector is not None
