"""Policy parsing/validation, inventory building and the port-set algebra."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from eval_helpers import netpol
from hypothesis import given
from hypothesis import strategies as st

from apptopology.evaluator import (
    NAME_LABEL,
    ContainerPort,
    External,
    IntervalSet,
    Inventory,
    Namespace,
    Pod,
    PortSet,
    inventory_from_manifests,
    parse_policies,
    parse_policy,
)

# --------------------------------------------------------------------------- policies


def test_parse_compiles_everything_once() -> None:
    p = parse_policy(
        netpol(
            "p",
            {
                "podSelector": {"matchLabels": {"app": "db"}},
                "ingress": [
                    {
                        "from": [{"ipBlock": {"cidr": "10.0.0.1/8", "except": ["10.1.0.0/16"]}}],
                        "ports": [{"port": "http"}, {"port": 5432}, {"protocol": "UDP", "port": 1000, "endPort": 1010}],
                    }
                ],
            },
            "data",
        )
    )
    assert (p.ref, p.policy_types) == ("data/p", ("Ingress",))
    rule = p.ingress[0]
    assert str(rule.peers[0]) == "ipBlock 10.0.0.0/8 except 10.1.0.0/16"  # host bits masked like the API server
    assert rule.static_ports == PortSet.parse("TCP/5432, UDP/1000-1010")
    assert rule.named_ports == (("http", "TCP"),)


def test_missing_namespace_and_pod_selector_default() -> None:
    p = parse_policy({"kind": "NetworkPolicy", "metadata": {"name": "p"}, "spec": {}})
    assert p.namespace == "default" and p.pod_selector.is_empty and p.policy_types == ("Ingress",)


def test_parse_policies_filters_kinds_and_flattens_lists() -> None:
    docs: list[Any] = [
        None,
        {"kind": "Service", "metadata": {"name": "s"}},
        {"kind": "List", "items": [netpol("a", {}), netpol("b", {})]},
    ]
    assert [p.name for p in parse_policies(docs)] == ["a", "b"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"ingress": [{"form": []}]}, r"spec.ingress\[0\]: unknown field\(s\) \['form'\]"),
        ({"podSelecter": {}}, r"spec: unknown field"),
        ({"ingress": [{"from": [{}]}]}, r"spec.ingress\[0\].from\[0\]: must specify"),
        (
            {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
            r"ipBlock cannot be combined",
        ),
        ({"egress": [{"ports": [{"protocol": "tcp"}]}]}, r"spec.egress\[0\].ports\[0\].protocol: 'tcp'"),
        ({"egress": [{"ports": [{"port": "http", "endPort": 90}]}]}, r"endPort: not allowed with a named port"),
        ({"egress": [{"ports": [{"port": 90, "endPort": 80}]}]}, r"endPort: 80 must be an integer in 90..65535"),
        ({"egress": [{"ports": [{"endPort": 80}]}]}, r"endPort: requires a numeric port"),
        ({"egress": [{"ports": [{"port": "80"}]}]}, r"not a valid port name \(write numeric ports as integers"),
        ({"egress": [{"ports": [{"port": 0}]}]}, r"port: 0 must be in 1..65535"),
        ({"egress": [{"ports": [{"port": True}]}]}, r"port: True must be in"),
        ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]}, "strict subset"),
        ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]}]}, "strict subset"),
        ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0"}}]}]}, r"cidr: expected a CIDR"),
        ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.300/8"}}]}]}, r"invalid CIDR"),
        ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}, r"values: must be non-empty"),
        ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}}, "must be empty"),
        ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}}, "operator: 'Gt'"),
        ({"podSelector": {"matchLabels": {"version": 1}}}, r"matchLabels\['version'\]: key and value must be strings"),
        ({"policyTypes": ["ingress"]}, r"spec.policyTypes\[0\]"),
        ({"ingress": {"from": []}}, r"spec.ingress: expected a list"),
    ],
)
def test_malformed_policies_are_rejected_with_location(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_policy(netpol("bad", spec, "ns1"))
    assert str(info.value).startswith("NetworkPolicy ns1/bad: ")


def test_wrong_kind_version_or_name() -> None:
    with pytest.raises(ValueError, match="apiVersion"):
        parse_policy({**netpol("p", {}), "apiVersion": "projectcalico.org/v3"})
    with pytest.raises(ValueError, match="kind"):
        parse_policy({**netpol("p", {}), "kind": "GlobalNetworkPolicy"})
    with pytest.raises(ValueError, match=r"<unnamed>: metadata.name: required"):
        parse_policy({"kind": "NetworkPolicy", "spec": {}})


def test_evaluator_accepts_raw_dicts_and_reports_bad_ones() -> None:
    from apptopology.evaluator import Evaluator

    with pytest.raises(ValueError, match="NetworkPolicy default/x"):
        Evaluator([netpol("x", {"ingress": [{"from": [{}]}]})], Inventory())


# --------------------------------------------------------------------------- inventory

MANIFESTS = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
apiVersion: v1
kind: Pod
metadata: {name: debug, labels: {app: debug}}
spec:
  containers: [{name: c, ports: [{containerPort: 8080, name: http}]}]
status: {podIP: 10.1.2.3}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    metadata: {labels: {app: web}}
    spec:
      initContainers:
      - {name: sidecar, restartPolicy: Always, ports: [{containerPort: 15090, name: prom}]}
      - {name: init, ports: [{containerPort: 1}]}
      containers:
      - {name: web, ports: [{containerPort: 8080, name: http}, {containerPort: 53, name: dns, protocol: UDP}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: batch}
spec:
  jobTemplate:
    spec:
      template:
        metadata: {labels: {app: nightly}}
        spec: {containers: [{name: job}]}
---
kind: List
items:
- {apiVersion: apps/v1, kind: StatefulSet, metadata: {name: db, namespace: shop},
   spec: {template: {metadata: {labels: {app: db}}, spec: {containers: [{name: db}]}}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ignored-here}
"""


def test_inventory_from_manifests() -> None:
    inv = inventory_from_manifests(yaml.safe_load_all(MANIFESTS), externals=[External("1.1.1.1", "dns")])
    pods = {p.ref: p for p in inv.pods}
    assert set(pods) == {"default/debug", "shop/web", "batch/nightly", "shop/db"}
    assert pods["default/debug"].ip == "10.1.2.3" and pods["default/debug"].workload is None
    web = pods["shop/web"]
    assert web.workload == "Deployment/web" and web.ip is None and web.labels == {"app": "web"}
    assert web.named_ports == {("http", "TCP", 8080), ("dns", "UDP", 53), ("prom", "TCP", 15090)}
    assert pods["batch/nightly"].workload == "CronJob/nightly"
    assert pods["shop/db"].workload == "StatefulSet/db"
    assert {ns.name: dict(ns.labels) for ns in inv.namespaces} == {
        "shop": {"team": "a", NAME_LABEL: "shop"},
        "default": {NAME_LABEL: "default"},
        "batch": {NAME_LABEL: "batch"},
    }
    assert inv.externals[0].ref == "dns"


def test_inventory_skips_objects_whose_controller_is_present() -> None:
    def obj(kind: str, name: str, owner: tuple[str, str] | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "namespace": "shop", "labels": {"app": "web"}}
        if owner:
            meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
        tpl = {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}}
        return {"kind": kind, "metadata": meta, "spec": tpl if kind != "Pod" else {"containers": []}}

    dump = [
        obj("Deployment", "web"),
        obj("ReplicaSet", "web-5d4f", ("Deployment", "web")),
        obj("Pod", "web-5d4f-abcde", ("ReplicaSet", "web-5d4f")),
        obj("Pod", "orphan-1", ("ReplicaSet", "gone")),
    ]
    assert [p.ref for p in inventory_from_manifests(dump).pods] == ["shop/web", "shop/orphan-1"]


def test_inventory_validation() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        Inventory((), (Pod("a", "x"), Pod("a", "x")))
    with pytest.raises(ValueError, match="invalid ip"):
        Pod("a", "x", ip="10.0.0.999")
    with pytest.raises(ValueError, match="invalid IP/CIDR"):
        External("nope")
    with pytest.raises(ValueError, match="container port"):
        ContainerPort("http", 70000)
    with pytest.raises(ValueError, match="strings"):
        inventory_from_manifests([{"kind": "Pod", "metadata": {"name": "p", "labels": {"v": 1}}}])


def test_namespace_name_label_is_forced_and_endpoints_hashable() -> None:
    assert Namespace("a", {NAME_LABEL: "spoofed"}).labels[NAME_LABEL] == "a"
    p1, p2 = Pod("a", "x", {"k": "v"}), Pod("a", "x", {"k": "v"})
    assert p1 == p2 and hash(p1) == hash(p2) and len({p1, p2, External("1.2.3.4")}) == 2


# --------------------------------------------------------------------------- port sets


def test_port_set_rendering_and_parse_round_trip() -> None:
    for text in ["all", "none", "TCP/80", "TCP/8000-8080", "UDP/53", "TCP/80, UDP/all, SCTP/1-2"]:
        assert str(PortSet.parse(text)) == text
    assert str(PortSet.of("TCP", 80) | PortSet.of("TCP", 81, 90)) == "TCP/80-90"
    assert PortSet.parse("TCP, UDP, SCTP") == PortSet.ALL
    assert PortSet.ALL - PortSet.of("TCP") == PortSet.parse("UDP/all, SCTP/all")
    assert str(PortSet.ALL - PortSet.of("UDP", 53)) == "TCP/all, UDP/1-52, UDP/54-65535, SCTP/all"
    assert ("TCP", 80) in PortSet.of("TCP", 80) and ("UDP", 80) not in PortSet.of("TCP", 80)
    with pytest.raises(ValueError):
        PortSet.parse("ICMP/1")
    with pytest.raises(ValueError):
        PortSet.of("TCP", 0)


def test_interval_set_basics() -> None:
    s = IntervalSet([(10, 20), 21, (5, 6), (30, 40)])
    assert s.intervals == ((5, 6), (10, 21), (30, 40)) and len(s) == 2 + 12 + 11
    assert str(s) == "5-6,10-21,30-40" and 21 in s and 22 not in s
    assert s.complement().complement() == s
    assert str(IntervalSet([(1, 65535)])) == "all"
    with pytest.raises(ValueError):
        IntervalSet([(5, 4)])
    with pytest.raises(AttributeError):
        s.intervals = ()


_ranges = st.lists(st.tuples(st.integers(1, 60), st.integers(0, 8)).map(lambda t: (t[0], t[0] + t[1])), max_size=5)


def _points(ranges: list[tuple[int, int]]) -> set[int]:
    return {p for lo, hi in ranges for p in range(lo, hi + 1)}


@given(_ranges, _ranges)
def test_interval_set_algebra_matches_python_sets(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> None:
    x, y = IntervalSet(a), IntervalSet(b)
    universe = range(1, 80)
    assert {p for p in universe if p in x | y} == _points(a) | _points(b)
    assert {p for p in universe if p in x & y} == _points(a) & _points(b)
    assert {p for p in universe if p in x - y} == _points(a) - _points(b)
    assert len(x) == len(_points(a))
    assert (x | y) == IntervalSet(a + b)  # canonical form: equal sets compare equal
    pa = PortSet({"TCP": x, "UDP": y})
    pb = PortSet({"UDP": x})
    assert (pa & pb) == PortSet({"UDP": x & y})
    assert (pa | pb) - pa == PortSet({"UDP": x - y})
