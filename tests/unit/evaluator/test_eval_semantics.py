"""Hand-written NetworkPolicy v1 semantics cases, one per rule of the API reference."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from eval_helpers import netpol, pod, sel

from apptopology.evaluator import Evaluator, External, Inventory, Namespace, Pod, PortSet

ALL = PortSet.ALL
NONE = PortSet.NONE


def ev(policies: list[dict[str, Any]], *pods: Pod, namespaces: tuple[Namespace, ...] = ()) -> Evaluator:
    return Evaluator(policies, Inventory(namespaces, pods))


def ports(text: str) -> PortSet:
    return PortSet.parse(text)


# --------------------------------------------------------------------------- isolation & policyTypes

A = pod("shop/a", {"app": "a"})
B = pod("shop/b", {"app": "b"})
C = pod("other/c", {"app": "c"})


def test_no_policies_allows_everything() -> None:
    e = ev([], A, B)
    assert e.allowed(A, B) == ALL
    assert e.explain(A, B, "TCP", 80).reasons == (
        "egress: shop/a is not isolated for egress (no policy selecting it has policyType Egress)",
        "ingress: shop/b is not isolated for ingress (no policy selecting it has policyType Ingress)",
    )


def test_default_policy_types_ingress_only_without_egress_section() -> None:
    deny = netpol("deny", {"podSelector": {}}, "shop")  # no ingress, no policyTypes => Ingress
    e = ev([deny], A, B, C)
    assert e.allowed(A, B) == NONE  # b isolated for ingress with no rules
    assert e.allowed(B, C) == ALL  # egress of b not isolated; c not selected
    assert e.allowed(C, A) == NONE


def test_default_policy_types_with_egress_section_also_isolates_ingress() -> None:
    # The classic surprise: an "egress policy" without policyTypes also denies all ingress.
    p = netpol("eg", {"podSelector": sel(app="a"), "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]}, "shop")
    e = ev([p], A, B, C)
    assert e.allowed(A, C) == ports("UDP/53")
    assert e.allowed(B, A) == NONE
    assert e.policies[0].policy_types == ("Ingress", "Egress")


def test_empty_egress_list_does_not_default_egress() -> None:
    p = netpol("x", {"podSelector": sel(app="a"), "egress": []}, "shop")
    e = ev([p], A, B)
    assert e.policies[0].policy_types == ("Ingress",)
    assert e.allowed(A, B) == ALL
    assert e.allowed(B, A) == NONE


def test_egress_only_policy_does_not_isolate_ingress() -> None:
    p = netpol("eg", {"podSelector": sel(app="a"), "policyTypes": ["Egress"]}, "shop")
    e = ev([p], A, B)
    assert e.allowed(A, B) == NONE
    assert e.allowed(B, A) == ALL


def test_rules_of_a_direction_missing_from_policy_types_are_ignored() -> None:
    p = netpol(
        "in", {"podSelector": sel(app="a"), "policyTypes": ["Ingress"], "egress": [{"ports": [{"port": 1}]}]}, "shop"
    )
    e = ev([p], A, B)
    assert e.allowed(A, B) == ALL  # egress untouched
    assert e.allowed(B, A) == NONE  # ingress isolated, no ingress rules


def test_policy_only_selects_pods_in_its_own_namespace() -> None:
    p = netpol("deny", {"podSelector": {}}, "shop")
    e = ev([p], A, C)
    assert e.allowed(A, C) == ALL
    assert e.allowed(C, A) == NONE


# --------------------------------------------------------------------------- rules, from/to, ports


def test_empty_rule_allows_all() -> None:
    e = ev([netpol("all", {"podSelector": {}, "ingress": [{}]}, "shop")], A, B, C)
    assert e.allowed(C, A) == ALL


@pytest.mark.parametrize("rule", [{"from": []}, {"ports": []}, {"from": [], "ports": []}, {"from": None}])
def test_empty_from_and_ports_mean_everything(rule: dict[str, Any]) -> None:
    e = ev([netpol("p", {"podSelector": {}, "ingress": [rule]}, "shop")], A, B, C)
    assert e.allowed(C, A) == ALL


def test_empty_ingress_list_with_policy_type_denies_all() -> None:
    e = ev([netpol("p", {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}, "shop")], A, B)
    assert e.allowed(A, B) == NONE


def test_port_protocol_defaults_and_ranges() -> None:
    rule = {
        "ports": [
            {"port": 80},
            {"port": 8000, "endPort": 8080, "protocol": "TCP"},
            {"protocol": "UDP"},
            {"port": 9, "protocol": "SCTP"},
        ]
    }
    e = ev([netpol("p", {"podSelector": {}, "ingress": [rule]}, "shop")], A, B)
    got = e.allowed(A, B)
    assert got == ports("TCP/80, TCP/8000-8080, UDP/all, SCTP/9")
    assert str(got) == "TCP/80, TCP/8000-8080, UDP/all, SCTP/9"
    assert got.contains("TCP", 8080) and not got.contains("TCP", 8081) and not got.contains("SCTP", 80)


def test_rules_and_policies_are_additive() -> None:
    p1 = netpol(
        "p1", {"podSelector": sel(app="b"), "ingress": [{"ports": [{"port": 80}]}, {"ports": [{"port": 81}]}]}, "shop"
    )
    p2 = netpol(
        "p2",
        {"podSelector": {}, "ingress": [{"from": [{"podSelector": sel(app="a")}], "ports": [{"port": 82}]}]},
        "shop",
    )
    e = ev([p1, p2], A, B)
    assert e.allowed(A, B) == ports("TCP/80-82")
    assert e.allowed(B, B) == ports("TCP/80-81")
    v = e.explain(A, B, "TCP", 82)
    assert v.allowed and str(v.ingress) == "ingress: allowed by shop/p2 ingress[0]"
    v = e.explain(A, B, "TCP", 81)
    assert [str(r) for r in v.ingress.allowing_rules] == ["shop/p1 ingress[1]"]


def test_connection_needs_both_egress_and_ingress() -> None:
    eg = netpol(
        "eg",
        {"podSelector": sel(app="a"), "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 80, "endPort": 100}]}]},
        "shop",
    )
    ing = netpol("in", {"podSelector": sel(app="b"), "ingress": [{"ports": [{"port": 90, "endPort": 200}]}]}, "shop")
    e = ev([eg, ing], A, B)
    assert e.allowed(A, B) == ports("TCP/90-100")
    v = e.explain(A, B, "TCP", 85)
    assert not v.allowed and v.egress.allowed and not v.ingress.allowed
    assert v.ingress.isolating_policies[0].name == "in"


# --------------------------------------------------------------------------- peers

NS = (Namespace("front", {"team": "x"}), Namespace("back", {"team": "y"}))
FW = pod("front/web", {"app": "web"})
FO = pod("front/other", {"app": "other"})
BW = pod("back/web", {"app": "web"})
BO = pod("back/other", {"app": "other"})
DB = pod("back/db", {"app": "db"})
PEER_PODS = (FW, FO, BW, BO, DB)


def _db_from(peers: str) -> Evaluator:
    spec = yaml.safe_load(f"podSelector: {{matchLabels: {{app: db}}}}\ningress:\n- from:\n{peers}")
    return ev([netpol("db", spec, "back")], *PEER_PODS, namespaces=NS)


def _sources(e: Evaluator) -> set[str]:
    return {p.ref for p in PEER_PODS if e.allowed(p, DB)}


def test_namespace_and_pod_selector_in_one_peer_are_anded() -> None:
    e = _db_from("  - namespaceSelector: {matchLabels: {team: x}}\n    podSelector: {matchLabels: {app: web}}\n")
    assert _sources(e) == {"front/web"}


def test_namespace_and_pod_selector_in_two_peers_are_ored() -> None:
    e = _db_from("  - namespaceSelector: {matchLabels: {team: x}}\n  - podSelector: {matchLabels: {app: web}}\n")
    # all of "front", plus web in the policy's own namespace "back"
    assert _sources(e) == {"front/web", "front/other", "back/web"}


def test_pod_selector_alone_is_scoped_to_policy_namespace() -> None:
    e = _db_from("  - podSelector: {matchLabels: {app: web}}\n")
    assert _sources(e) == {"back/web"}


def test_empty_selectors() -> None:
    assert _sources(_db_from("  - podSelector: {}\n")) == {"back/web", "back/other", "back/db"}
    assert _sources(_db_from("  - namespaceSelector: {}\n")) == {p.ref for p in PEER_PODS}
    both = _sources(_db_from("  - namespaceSelector: {}\n    podSelector: {matchLabels: {app: web}}\n"))
    assert both == {"front/web", "back/web"}


def test_automatic_namespace_name_label_also_for_undeclared_namespaces() -> None:
    stray = pod("nowhere/x", {"app": "web"})
    e = ev(
        [
            netpol(
                "db",
                {
                    "podSelector": {},
                    "ingress": [{"from": [{"namespaceSelector": sel(**{"kubernetes.io/metadata.name": "nowhere"})}]}],
                },
                "back",
            )
        ],
        FW,
        DB,
        stray,
        namespaces=NS,
    )
    assert e.allowed(stray, DB) == ALL
    assert e.allowed(FW, DB) == NONE
    assert e.inventory.namespace("nowhere").labels == {"kubernetes.io/metadata.name": "nowhere"}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ({"key": "tier", "operator": "In", "values": ["fe", "be"]}, {"x/fe", "x/be"}),
        ({"key": "tier", "operator": "NotIn", "values": ["fe"]}, {"x/be", "x/none"}),  # lacking key matches
        ({"key": "tier", "operator": "Exists"}, {"x/fe", "x/be"}),
        ({"key": "tier", "operator": "DoesNotExist"}, {"x/none"}),
    ],
)
def test_match_expressions(expr: dict[str, Any], expected: set[str]) -> None:
    pods = (pod("x/fe", {"tier": "fe"}), pod("x/be", {"tier": "be"}), pod("x/none", {"app": "n"}))
    deny = netpol("deny", {"podSelector": {"matchExpressions": [expr]}}, "x")
    e = ev([deny], *pods)
    isolated = {p.ref for p in pods if e.allowed(pods[0], p) == NONE}
    assert isolated == expected


def test_match_labels_and_expressions_are_anded() -> None:
    pods = (pod("x/a", {"app": "a", "tier": "fe"}), pod("x/b", {"app": "a"}), pod("x/c", {"tier": "fe"}))
    selector = {"matchLabels": {"app": "a"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]}
    e = ev([netpol("deny", {"podSelector": selector}, "x")], *pods)
    assert [e.allowed(pods[1], p) == NONE for p in pods] == [True, False, False]


# --------------------------------------------------------------------------- named ports

WEB = pod("shop/web", {"app": "web"}, ports=(("http", 8080, "TCP"), ("dns", 53, "UDP"), ("metrics", 9090, "TCP")))
API = pod("shop/api", {"app": "api"}, ports=(("http", 8000, "TCP"),))


def test_named_port_resolves_on_destination_pod_for_ingress() -> None:
    p = netpol("p", {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}, {"port": "metrics"}]}]}, "shop")
    e = ev([p], WEB, API)
    assert e.allowed(API, WEB) == ports("TCP/8080, TCP/9090")
    assert e.allowed(WEB, API) == ports("TCP/8000")


def test_named_port_protocol_must_match() -> None:
    p = netpol("p", {"podSelector": {}, "ingress": [{"ports": [{"port": "dns"}]}]}, "shop")  # TCP by default
    e = ev([p], WEB, API)
    assert e.allowed(API, WEB) == NONE
    p = netpol("p", {"podSelector": {}, "ingress": [{"ports": [{"port": "dns", "protocol": "UDP"}]}]}, "shop")
    assert ev([p], WEB, API).allowed(API, WEB) == ports("UDP/53")


def test_named_port_in_egress_resolves_on_peer_and_never_matches_externals() -> None:
    p = netpol(
        "p",
        {"podSelector": sel(app="api"), "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "http"}]}]},
        "shop",
    )
    e = ev([p], WEB, API)
    assert e.allowed(API, WEB) == ports("TCP/8080")
    assert e.allowed(API, API) == ports("TCP/8000")
    assert e.allowed(API, External("198.51.100.1")) == NONE
    assert not e.explain(API, External("198.51.100.1"), "TCP", 8080).allowed


def test_unresolvable_named_port_allows_nothing() -> None:
    p = netpol("p", {"podSelector": {}, "ingress": [{"ports": [{"port": "grpc"}]}]}, "shop")
    assert ev([p], WEB, API).allowed(API, WEB) == NONE


# --------------------------------------------------------------------------- ipBlock and externals


def _ipblock_ev(block: dict[str, Any], *pods: Pod) -> Evaluator:
    target = pod("shop/t", {"app": "t"})
    p = netpol("p", {"podSelector": sel(app="t"), "ingress": [{"from": [{"ipBlock": block}]}]}, "shop")
    return Evaluator([p], Inventory((), (target, *pods)))


@pytest.mark.parametrize(
    ("block", "inside", "excepted", "outside"),
    [
        ({"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}, "192.168.2.9", "192.168.1.9", "10.0.0.1"),
        ({"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"]}, "2001:db8:2::1", "2001:db8:1::5", "2001:db9::1"),
    ],
)
def test_ip_block_with_except(block: dict[str, Any], inside: str, excepted: str, outside: str) -> None:
    e = _ipblock_ev(block)
    t = e.inventory.pods[0]
    assert e.allowed(External(inside), t) == ALL
    assert e.allowed(External(excepted), t) == NONE
    assert e.allowed(External(outside), t) == NONE


def test_ip_block_family_mismatch_never_matches() -> None:
    e = _ipblock_ev({"cidr": "0.0.0.0/0"})
    assert e.allowed(External("::ffff:10.0.0.1"), e.inventory.pods[0]) == NONE
    assert e.allowed(External("10.0.0.1"), e.inventory.pods[0]) == ALL


def test_ip_block_matches_pod_ips_but_not_pods_without_ip() -> None:
    with_ip = pod("x/ip", {"app": "s"}, ip="192.168.5.5")
    without = pod("x/noip", {"app": "s"})
    e = _ipblock_ev({"cidr": "192.168.0.0/16"}, with_ip, without)
    t = e.inventory.pods[0]
    assert e.allowed(with_ip, t) == ALL
    assert e.allowed(without, t) == NONE
    m = e.matrix()
    assert m[with_ip, t] == ALL and m[without, t] == NONE


def test_ip_block_matching_of_pod_ips_can_be_switched_off() -> None:
    with_ip = pod("x/ip", {"app": "s"}, ip="192.168.5.5")
    target = pod("shop/t", {"app": "t"})
    p = netpol("p", {"podSelector": sel(app="t"), "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}, "shop")
    e = Evaluator([p], Inventory((), (target, with_ip)), ip_block_matches_pods=False)
    assert e.allowed(with_ip, target) == NONE
    assert e.matrix()[with_ip, target] == NONE
    assert e.allowed(External("192.168.5.5"), target) == ALL


def test_external_endpoints_have_no_policies() -> None:
    ext = External("203.0.113.10", "partner")
    p = netpol(
        "p",
        {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": 443}]}]},
        "shop",
    )
    e = ev([p], A)
    assert e.allowed(ext, A) == ports("TCP/443")
    assert e.allowed(A, ext) == ALL  # a not isolated for egress; external has no ingress policy
    assert e.allowed(ext, External("198.51.100.1")) == ALL
    v = e.explain(ext, A, "TCP", 443)
    assert v.allowed and v.egress.status == "external"
    assert str(v) == (
        "ALLOWED partner -> shop/a TCP/443\n"
        "  egress: partner is not a pod; no egress policy applies\n"
        "  ingress: allowed by shop/p ingress[0]"
    )


def test_external_cidr_means_every_address() -> None:
    spec = {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [
            {"to": [{"ipBlock": {"cidr": "10.0.0.0/25"}}], "ports": [{"port": 443}]},
            {"to": [{"ipBlock": {"cidr": "10.0.0.128/25"}}], "ports": [{"port": 443}, {"port": 80}]},
            {"to": [{"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.64/26"]}}], "ports": [{"port": 22}]},
        ],
    }
    e = ev([netpol("p", spec, "shop")], A)
    # 443 is covered by two rules that each cover half of the /24: allowed for the whole block.
    assert e.allowed(A, External("10.0.0.0/24")) == ports("TCP/443")
    assert e.allowed(A, External("10.0.0.128/26")) == ports("TCP/22, TCP/80, TCP/443")
    v = e.explain(A, External("10.0.0.0/24", "lan"), "TCP", 22)
    assert not v.allowed and v.egress.denied_for == "10.0.0.64/26"
    assert e.allowed(A, External("10.0.0.0/23")) == NONE


def test_bare_ip_external_and_single_address_cidr_agree() -> None:
    p = netpol(
        "p",
        {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "10.1.0.0/16"}}]}]},
        "shop",
    )
    e = ev([p], A)
    assert e.allowed(A, External("10.1.2.3")) == e.allowed(A, External("10.1.2.3/32")) == ALL


# --------------------------------------------------------------------------- explain & matrix


def test_explain_denied_lists_isolating_policies() -> None:
    p1 = netpol("deny", {"podSelector": {}}, "shop")
    p2 = netpol("web", {"podSelector": sel(app="b"), "ingress": [{"from": [{"podSelector": sel(app="zzz")}]}]}, "shop")
    e = ev([p1, p2], A, B)
    v = e.explain(A, B, "UDP", 53)
    assert not v.allowed
    assert [str(p) for p in v.ingress.isolating_policies] == ["shop/deny", "shop/web"]
    assert (
        str(v.ingress)
        == "ingress: denied; shop/b is isolated for ingress by shop/deny, shop/web and no ingress rule matches"
    )
    assert [p.name for p in e.selecting_policies(B)] == ["deny", "web"]


def test_explain_rejects_bad_input() -> None:
    e = ev([], A, B)
    with pytest.raises(ValueError, match="protocol"):
        e.explain(A, B, "tcp", 80)
    with pytest.raises(ValueError, match="port"):
        e.explain(A, B, "TCP", 0)


def test_matrix_matches_allowed_and_groups_cover_all_pairs() -> None:
    pols = [
        netpol(
            "db",
            {
                "podSelector": sel(app="db"),
                "ingress": [{"from": [{"namespaceSelector": sel(team="x")}], "ports": [{"port": 5432}]}],
            },
            "back",
        ),
        netpol(
            "eg",
            {"podSelector": sel(app="web"), "policyTypes": ["Egress"], "egress": [{"to": [{"podSelector": {}}]}]},
            "front",
        ),
    ]
    ext = External("8.8.8.8", "dns")
    e = Evaluator(pols, Inventory(NS, PEER_PODS, (ext,)))
    m = e.matrix()
    endpoints = (*PEER_PODS, ext)
    assert len(m) == len(endpoints) ** 2 and set(m) == {(s, d) for s in endpoints for d in endpoints}
    for s in endpoints:
        for d in endpoints:
            assert m[s, d] == e.allowed(s, d), (s, d)
    assert sum(len(s) * len(d) for s, d, _ in m.groups()) == len(m)
    sparse = {(s, d): p for ss, dd, p in m.groups(include_denied=False) for s in ss for d in dd}
    assert sparse == {k: v for k, v in m.items() if v} and all(sparse.values())
    assert m[FO, DB] == ports("TCP/5432") and m[FW, DB] == NONE and m[FW, FO] == ALL and m[FW, ext] == NONE
    sub = e.matrix([FW], [DB, FO])
    assert dict(sub) == {(FW, DB): NONE, (FW, FO): ALL}
