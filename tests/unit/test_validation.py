"""Validation: every invalid input is refused with its field path; every example is accepted."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apptopology.api.spec import (
    LABEL_KEY,
    LABEL_VALUE,
    MAX_LABEL_PREFIX,
    AppTopology,
    check_cidr,
    check_label_key,
    check_label_value,
    check_port_name,
)
from apptopology.api.validation import MAX_ISSUES, InvalidTopology
from apptopology.render.validation import parse_topology
from shared import example_documents, go_pattern, invalid_cases


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


@pytest.mark.parametrize("port", [True, 1.5, [80], "080", "8080"])
def test_port_types(port: Any) -> None:
    with pytest.raises(InvalidTopology):
        parse_topology(base(flows=[{"from": {"anywhere": True}, "to": {"tier": "api"}, "ports": [{"port": port}]}]))


@pytest.mark.parametrize("port", [1, 65535, "http", "metrics", "a1", "h2c-web"])
def test_valid_ports(port: Any) -> None:
    parse_topology(base(flows=[{"from": {"anywhere": True}, "to": {"tier": "api"}, "ports": [{"port": port}]}]))


@pytest.mark.parametrize(
    ("entry", "k8s"),
    [
        ({"protocol": "UDP"}, {"protocol": "UDP"}),
        ({"protocol": "SCTP"}, {"protocol": "SCTP"}),
        # As in NetworkPolicy: the protocol defaults to TCP, and the API server drops a null port.
        ({}, {"protocol": "TCP"}),
        ({"port": None, "protocol": "UDP"}, {"protocol": "UDP"}),
    ],
)
def test_protocol_only_ports(entry: dict[str, Any], k8s: dict[str, Any]) -> None:
    t = parse_topology(base(flows=[{"from": {"anywhere": True}, "to": {"tier": "api"}, "ports": [entry]}]))
    port = t.spec.flows[0].ports[0]  # type: ignore[index]
    assert port.port is None and port.whole_protocol and port.to_k8s() == k8s
    assert port.label() == f"{k8s['protocol']}/all"


def test_end_port_needs_a_port() -> None:
    with pytest.raises(InvalidTopology) as info:
        parse_topology(
            base(
                flows=[
                    {"from": {"anywhere": True}, "to": {"tier": "api"}, "ports": [{"protocol": "UDP", "endPort": 9}]}
                ]
            )
        )
    assert [(i.path, i.message) for i in info.value.issues] == [
        ("spec.flows[0].ports[0].endPort", "requires a port (the first port of the range)")
    ]


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


# --- parity with the API server's rules --------------------------------------------------------------------
# The Python checks give the messages; the CRD's patterns and CEL rules say the same to the API server. Go's
# regexp ``$`` is the end of the text (Python's also matches before a final newline): go_pattern() is Go's.

_LABEL_CHARS = "aZ09-_./\n é"


def _go_fullmatch(pattern: str, value: str) -> bool:
    return re.search(go_pattern(pattern), value) is not None


@settings(max_examples=500, deadline=None)
@given(st.text(_LABEL_CHARS, max_size=70))
def test_label_value_check_is_the_crd_pattern(value: str) -> None:
    assert (check_label_value(value) is None) == _go_fullmatch(LABEL_VALUE, value)


_keys = st.one_of(
    st.text(_LABEL_CHARS, max_size=70),
    st.builds(lambda p, n: f"{p}/{n}", st.text("ab9.-", min_size=0, max_size=260), st.text("aZ9-_.", max_size=65)),
)


@settings(max_examples=500, deadline=None)
@given(_keys)
def test_label_key_check_is_the_crd_pattern_and_prefix_bound(key: str) -> None:
    crd_ok = _go_fullmatch(LABEL_KEY, key) and key.find("/") <= MAX_LABEL_PREFIX
    assert (check_label_key(key) is None) == crd_ok, key


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("app", True),
        ("example.com/app", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("a" * 253 + "/b", True),
        ("a" * 254 + "/b", False),
        ("app\n", False),
        ("/app", False),
        ("a/b/c", False),
        ("Example.com/app", False),
        ("example..com/app", False),
        ("app/", False),
        ("-app", False),
        ("app_", False),
        ("my.app_name-1", True),
    ],
)
def test_label_keys(key: str, ok: bool) -> None:
    assert (check_label_key(key) is None) is ok


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("http", True),
        ("h2c-web", True),
        ("a" * 15, True),
        ("a" * 16, False),
        ("http\n", False),
        ("-http", False),
        ("http-", False),
        ("ht--tp", False),
        ("8-0", False),
        ("HTTP", False),
        ("80", False),
    ],
)
def test_port_names(name: str, ok: bool) -> None:
    assert (check_port_name(name) is None) is ok


# What kube-apiserver v1.37 refuses for a NetworkPolicy ipBlock (StrictIPCIDRValidation, on by default), as
# observed on the real API server; and non-canonical IPv6, which it only warns about and this API refuses.
@pytest.mark.parametrize(
    ("cidr", "problem"),
    [
        ("10.0.0.0/8", None),
        ("0.0.0.0/0", None),
        ("::/0", None),
        ("2001:db8::/32", None),
        ("1.2.3.4/32", None),
        ("::a00:0/104", None),
        ("10.0.0.1/8", "bits set beyond the prefix length: write 10.0.0.0/8"),
        ("010.0.0.0/8", "leading zeros"),
        ("10.0.0.0/08", "leading zeros"),
        ("10.0.0.0/+8", "leading zeros"),
        ("::ffff:10.0.0.0/104", "IPv4-mapped"),
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("fe80::%eth0/64", "zone"),
        ("10.0.0.0/33", "longer than 32"),
        ("10.0.0.0", "needs a prefix length"),
        (" 10.0.0.0/8", "not a valid CIDR"),
        ("10.0.0.0/8\n", "leading zeros"),
        ("2001:DB8::/32", "canonical form: write 2001:db8::/32"),
        ("2001:0db8::/32", "canonical form: write 2001:db8::/32"),
        ("::10.0.0.0/104", "canonical form: write ::a00:0/104"),
    ],
)
def test_cidrs(cidr: str, problem: str | None) -> None:
    found = check_cidr(cidr)
    assert (found is None) if problem is None else (found is not None and problem in found), found


@pytest.mark.parametrize(
    ("cidr", "excepts", "ok"),
    [
        ("10.0.0.0/8", ["10.1.0.0/16"], True),
        ("10.0.0.0/8", ["10.0.0.0/8"], False),
        ("10.0.0.0/8", ["10.0.0.0/9", "10.128.0.0/9"], True),
        ("10.0.0.0/8", ["11.0.0.0/16"], False),
        ("::/0", ["10.0.0.0/8"], False),
        ("10.0.0.0/8", ["10.1.0.1/16"], False),
    ],
)
def test_except_is_a_strict_subset(cidr: str, excepts: list[str], ok: bool) -> None:
    doc = base(flows=[{"from": {"ipBlock": {"cidr": cidr, "except": excepts}}, "to": {"tier": "api"}}])
    if ok:
        parse_topology(doc)
    else:
        with pytest.raises(InvalidTopology):
            parse_topology(doc)


def test_integral_numbers_are_ports_as_for_the_api_server() -> None:
    """The API server takes the JSON number 80.0 (and 1e2) as the integer port; so does the model."""
    flows = [{"from": {"anywhere": True}, "to": {"tier": "api"}, "ports": [{"port": 80.0, "endPort": 1e2}]}]
    port = parse_topology(base(flows=flows)).spec.flows[0].ports[0]  # type: ignore[index]
    assert (port.port, port.end_port) == (80, 100) and isinstance(port.port, int)
    with pytest.raises(InvalidTopology):
        parse_topology(base(flows=[{**flows[0], "ports": [{"port": 80.5}]}]))


def test_one_null_dns_selector_is_fine_both_are_not() -> None:
    parse_topology(base(dns={"podSelector": None}))
    parse_topology(base(dns={"namespaceSelector": None}, defaultDeny={"scope": "Tiers"}))
    with pytest.raises(InvalidTopology) as info:
        parse_topology(base(dns={"podSelector": None, "namespaceSelector": None}))
    assert info.value.issues[0].path == "spec.dns"


def test_messages_quote_input_truncated() -> None:
    doc = base(flows=[{"from": {"ipBlock": {"cidr": "1" * 10_000}}, "to": {"tier": "api"}}])
    doc["spec"]["tiers"][0]["podSelector"] = {"matchLabels": {"k" * 100_000: "v" * 100_000}}
    doc["spec"]["defaultDeny"] = {"scope": "x" * 100_000}
    with pytest.raises(InvalidTopology) as info:
        parse_topology(doc)
    assert all(len(str(i)) < 400 for i in info.value.issues), [len(str(i)) for i in info.value.issues]


def test_issues_per_document_are_capped() -> None:
    doc = base(flows=[{"from": {"tier": f"nope{i}"}, "to": {"tier": "api"}} for i in range(500)])
    with pytest.raises(InvalidTopology) as info:
        parse_topology(doc)
    assert len(info.value.issues) == MAX_ISSUES + 1
    assert "480 more problems" in info.value.issues[-1].message
