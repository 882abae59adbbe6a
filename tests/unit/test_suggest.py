"""apptopology suggest: observed flows -> an AppTopology, evidence on every flow, nothing dropped silently;
--against: which observed flows a topology would deny. The Hubble fixture follows flow.proto's field names
as `hubble observe -o jsonpb` prints them, with noise: replies (marked and unmarked), an L7 record, a lost
events record, node traffic, an unknown identity, ICMP and a dropped flow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apptopology.adoption.flows import FlowError, read_flows
from apptopology.adoption.suggest import audit, suggest
from apptopology.analysis.intent import synthesize
from apptopology.analysis.subject import merge_inventories
from apptopology.analysis.verify import verify
from apptopology.cli import main
from apptopology.evaluator import Evaluator, External, Pod
from apptopology.render.renderer import render
from apptopology.render.validation import parse_topology

ROOT = Path(__file__).resolve().parents[2]
HUBBLE = ROOT / "tests" / "cases" / "hubble-flows.jsonl"


def shop() -> Any:
    result = suggest(read_flows(HUBBLE.read_text().splitlines()), ["shop"])
    (suggested,) = result.topologies
    return result, suggested


def test_hubble_flows_suggest_a_topology_with_evidence() -> None:
    result, suggested = shop()
    assert suggested.error is None
    spec = suggested.document["spec"]
    tiers = {t["name"]: t["podSelector"]["matchLabels"] for t in spec["tiers"]}
    # Grouped by workload; selectors by identifying labels, never pod-template-hash or versions.
    assert tiers == {
        "api": {"app.kubernetes.io/name": "api"},
        "frontend": {"app": "frontend"},
        "postgres": {"app": "postgres"},
    }
    flows = {(json.dumps(f["from"], sort_keys=True), json.dumps(f["to"], sort_keys=True)): f for f in spec["flows"]}
    fe_api = flows[('{"tier": "frontend"}', '{"tier": "api"}')]
    assert fe_api["ports"] == [{"port": 8080}]
    assert fe_api["description"].startswith("observed 2 times, first 2026-08-01T10:03:00")
    assert ('{"tier": "api"}', '{"kubeAPI": true}') in flows
    external = flows[('{"tier": "api"}', '{"ipBlock": {"cidr": "52.1.2.3/32"}}')]
    assert "payments.example.com" in external["description"]
    # DNS lookups are dns, not flows; replies are not flows (the reply ports 40001, 40002, 40100 are absent).
    assert spec["dns"]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert {p["protocol"] for p in spec["dns"]["ports"]} == {"UDP", "TCP"}
    assert not [f for f in spec["flows"] if any(p.get("port", 0) >= 40000 for p in f.get("ports", []))]
    assert result.replies == 3
    # Noise is listed with a reason, and the dropped flow is not suggested.
    reasons = " | ".join(str(u) for u in result.unplaced)
    assert "node traffic" in reasons and "neither a pod" in reasons and "ICMP" in reasons
    assert [d.flow for d in result.denied] == ["shop/Deployment/frontend -> shop/StatefulSet/postgres TCP/5432"]
    assert ('{"tier": "frontend"}', '{"tier": "postgres"}') not in flows
    assert spec["defaultDeny"] == {"scope": "Namespace", "ingress": True, "egress": True}
    assert spec["enforcement"] == "DryRun"


def test_the_suggestion_allows_what_was_observed_and_denies_what_was_not() -> None:
    _, suggested = shop()
    results = audit(suggested.topology, read_flows(HUBBLE.read_text().splitlines()))
    denied = [r.flow for r in results if r.allowed is False]
    assert denied == ["shop/Deployment/frontend -> shop/StatefulSet/postgres TCP/5432"]
    assert sum(r.allowed is True for r in results) == 10


def test_aggregated_external_addresses() -> None:
    result = suggest(read_flows(HUBBLE.read_text().splitlines()), ["shop"], (24, 64))
    cidrs = [f["to"]["ipBlock"]["cidr"] for f in result.topologies[0].document["spec"]["flows"] if "ipBlock" in f["to"]]
    assert cidrs == ["52.1.2.0/24"]


def own(source: dict[str, Any], destination: dict[str, Any], port: int, protocol: str = "TCP", **extra: Any) -> str:
    return json.dumps({"source": source, "destination": destination, "port": port, "protocol": protocol, **extra})


def test_own_format_and_errors() -> None:
    web = {"namespace": "a", "labels": {"app": "web"}}
    lines = [
        own(
            web,
            {"namespace": "b", "labels": {"app": "db"}, "workload": "StatefulSet/db"},
            5432,
            count=4,
            time="2026-01-01T00:00:00Z",
        ),
        own({"ip": "198.51.100.7"}, web, 443),
        own(web, {"node": True}, 10250),
        own({"namespace": "a", "labels": {}}, web, 80),
        own(web, {"ip": "198.51.100.8"}, 80, reply=True),
    ]
    result = suggest(read_flows(lines))
    by_ns = {t.namespace: t for t in result.topologies}
    assert set(by_ns) == {"a", "b"}
    a = by_ns["a"].document["spec"]
    assert {
        "from": {"tier": "web"},
        "to": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "b"}},
            "podSelector": {"matchLabels": {"app": "db"}},
        },
        "ports": [{"port": 5432}],
        "description": "observed 4 times, first 2026-01-01T00:00:00Z, last 2026-01-01T00:00:00Z",
    } in a["flows"]
    assert a["dns"] == {"enabled": False}
    assert any(f["to"] == {"tier": "db"} for f in by_ns["b"].document["spec"]["flows"])
    assert len(result.unplaced) == 2 and result.replies == 1
    with pytest.raises(FlowError, match="line 1: not JSON"):
        list(read_flows(["{nope"]))
    with pytest.raises(FlowError, match="line 2: port"):
        list(read_flows(["", own(web, web, 0)]))


def test_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["suggest", "--flows", str(HUBBLE), "-n", "shop"]) == 0
    out, err = capsys.readouterr()
    topology = parse_topology(next(iter(__import__("yaml").safe_load_all(out))))
    assert topology.metadata.namespace == "shop" and "not placed (listed, not suggested) (3)" in err
    suggested = tmp_path / "shop.yaml"
    suggested.write_text(out)
    assert main(["suggest", "--flows", str(HUBBLE), "--against", str(suggested)]) == 1
    out, _ = capsys.readouterr()
    assert "would deny 1 of 15 observed flows" in out and "frontend -> shop/StatefulSet/postgres" in out
    assert main(["suggest", "--flows", str(HUBBLE), "--against", str(ROOT / "examples" / "three-tier.yaml")]) == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text("[1]\n")
    assert main(["suggest", "--flows", str(bad)]) == 2
    assert "line 1: expected a JSON object" in capsys.readouterr().err


# --- round trip: flows generated from a topology's allowed pairs suggest an equivalent topology ----------

NAMES = ["web", "api", "db", "cache"]
PORTS = [80, 443, 5432, 6379, 8080]


@st.composite
def plain_topologies(draw: st.DrawFn) -> dict[str, Any]:
    """Topologies whose connectivity finite flows can show: tiers by one label, numeric ports, exact
    external addresses, kube-dns (as traffic shows it: the lookups of every pod)."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    flows = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["tiers", "tiers", "in", "out", "peer"]))
        a, b = draw(st.sampled_from(names)), draw(st.sampled_from(names))
        ports = [{"port": p} for p in draw(st.lists(st.sampled_from(PORTS), min_size=1, max_size=2, unique=True))]
        if kind == "tiers":
            flows.append({"from": {"tier": a}, "to": {"tier": b}, "ports": ports})
        elif kind == "in":
            flows.append({"from": {"ipBlock": {"cidr": "198.51.100.7/32"}}, "to": {"tier": b}, "ports": ports})
        elif kind == "out":
            flows.append({"from": {"tier": a}, "to": {"ipBlock": {"cidr": "203.0.113.9/32"}}, "ports": ports})
        else:
            peer = {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "other"}},
                "podSelector": {"matchLabels": {"app": "peer"}},
            }
            flows.append({"from": {"tier": a}, "to": peer, "ports": ports})
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": "home", "namespace": "home"},
        "spec": {
            "dns": {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
            "tiers": [{"name": n, "podSelector": {"matchLabels": {"app": n}}} for n in names],
            "flows": flows,
        },
    }


def _peer(endpoint: Any) -> dict[str, Any]:
    if isinstance(endpoint, External):
        return {"ip": str(endpoint.network.network_address)}
    return {"namespace": endpoint.namespace, "labels": dict(endpoint.labels)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_topologies())
def test_flows_of_a_topology_suggest_it_back(doc: dict[str, Any]) -> None:
    original = parse_topology(doc)
    inventory = synthesize(original)
    policies = render(original)
    endpoints = [e for e in inventory.endpoints if not (isinstance(e, Pod) and not e.labels)]
    matrix = Evaluator(policies, inventory).matrix(endpoints, endpoints)
    lines = []
    for source in endpoints:
        for destination in endpoints:
            if source == destination or not any(
                isinstance(e, Pod) and e.namespace == "home" for e in (source, destination)
            ):
                continue
            for protocol, intervals in matrix[source, destination].items():
                for low, high in intervals:
                    for port in range(low, min(high, low + 3) + 1):
                        lines.append(own(_peer(source), _peer(destination), port, protocol))
    result = suggest(read_flows(lines), ["home"])
    suggested = result.topologies[0].topology
    assert suggested is not None, result.topologies[0].error
    both = merge_inventories([inventory, synthesize(suggested)])
    assert verify(suggested, policies, both) == []
    assert verify(original, render(suggested), both) == []
