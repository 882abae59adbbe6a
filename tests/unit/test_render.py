"""Renderer: golden files for every example, structure rules, and determinism.

Connectivity (what the policies actually allow) is proven separately by evaluating them in
test_render_semantics.py; these tests pin down the shape users review and GitOps diffs.
"""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from apptopology.cli.documents import load_topologies
from apptopology.cli.output import dump_yaml
from apptopology.render.renderer import MANAGED_BY_LABEL, TOPOLOGY_LABEL, render
from apptopology.render.validation import parse_topology
from shared import EXAMPLES

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("APPTOPOLOGY_UPDATE_GOLDEN") == "1"


def rendered_text(path: Path) -> str:
    out = io.StringIO()
    policies = [p for t in load_topologies([str(path)]) for p in render(t)]
    dump_yaml(policies, out)
    return out.getvalue()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_golden(example: Path) -> None:
    golden = GOLDEN / f"{example.stem}.yaml"
    text = rendered_text(example)
    if UPDATE:
        golden.write_text(text)
    assert golden.exists(), f"missing golden file {golden.name}; run with APPTOPOLOGY_UPDATE_GOLDEN=1"
    assert text == golden.read_text()


def topo(**spec: Any) -> dict[str, Any]:
    spec.setdefault("tiers", [{"name": "web", "podSelector": {"matchLabels": {"app": "web"}}}])
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": "shop", "namespace": "prod"},
        "spec": spec,
    }


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in render(parse_topology(doc))}


TIERS = [
    {"name": "web", "podSelector": {"matchLabels": {"app": "web"}}},
    {"name": "api", "podSelector": {"matchLabels": {"app": "api"}}},
    {"name": "db", "podSelector": {"matchLabels": {"app": "db"}}},
]


def test_three_tier_policy_set() -> None:
    flows = [
        {"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": [{"port": 8080}]},
        {"from": {"tier": "api"}, "to": {"tier": "db"}, "ports": [{"port": 5432}]},
    ]
    policies = by_name(topo(tiers=TIERS, flows=flows))
    assert list(policies) == ["shop.default-deny", "shop.allow-dns", "shop.tier-web", "shop.tier-api", "shop.tier-db"]
    api = policies["shop.tier-api"]["spec"]
    assert api["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 8080, "protocol": "TCP"}]}
    ]
    assert api["egress"] == [
        {"to": [{"podSelector": {"matchLabels": {"app": "db"}}}], "ports": [{"port": 5432, "protocol": "TCP"}]}
    ]
    assert "egress" not in policies["shop.tier-db"]["spec"]
    assert "ingress" not in policies["shop.tier-web"]["spec"]


def test_namespace_and_pod_selector_share_one_peer() -> None:
    """The AND/OR trap: two peer entries would admit every pod of the namespace OR of matching namespaces."""
    flow = {
        "from": {"namespaceSelector": {"matchLabels": {"team": "ops"}}, "podSelector": {"matchLabels": {"app": "x"}}},
        "to": {"tier": "web"},
    }
    monitoring = {
        "enabled": True,
        "namespaceSelector": {"matchLabels": {"name": "monitoring"}},
        "podSelector": {"matchLabels": {"app": "prometheus"}},
        "ports": [{"port": 9090}],
    }
    policies = by_name(topo(flows=[flow], monitoring=monitoring))
    for policy in policies.values():
        for direction, field in (("ingress", "from"), ("egress", "to")):
            for rule in policy["spec"].get(direction, []):
                for peer in rule.get(field, []):
                    if "namespaceSelector" in peer:
                        assert "podSelector" in peer, peer  # every peer here declares both selectors
    web = policies["shop.tier-web"]["spec"]["ingress"]
    assert {
        "namespaceSelector": {"matchLabels": {"team": "ops"}},
        "podSelector": {"matchLabels": {"app": "x"}},
    } in web[0]["from"] + web[1]["from"]
    dns = policies["shop.allow-dns"]["spec"]["egress"][0]["to"]
    assert len(dns) == 1 and set(dns[0]) == {"namespaceSelector", "podSelector"}


@pytest.mark.parametrize("scope", ["Namespace", "Tiers"])
@pytest.mark.parametrize("ingress", [True, False])
@pytest.mark.parametrize("egress", [True, False])
def test_scope_and_isolation_combinations(scope: str, ingress: bool, egress: bool) -> None:
    flows = [
        {"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": [{"port": 8080}]},
        {"from": {"anywhere": True}, "to": {"tier": "web"}, "ports": [{"port": 443}]},
    ]
    doc = topo(tiers=TIERS, flows=flows, defaultDeny={"scope": scope, "ingress": ingress, "egress": egress})
    policies = by_name(doc)
    types = [t for t, on in (("Ingress", ingress), ("Egress", egress)) if on]
    if not types:
        assert policies == {}
        return
    assert ("shop.default-deny" in policies) == (scope == "Namespace")
    assert ("shop.allow-dns" in policies) == (scope == "Namespace" and egress)
    for name, policy in policies.items():
        spec = policy["spec"]
        assert spec["policyTypes"] == (["Egress"] if name == "shop.allow-dns" else types)
        # Only isolated directions carry rules: a rule in the other direction would isolate it.
        if not ingress:
            assert "ingress" not in spec
        if not egress:
            assert "egress" not in spec
    if scope == "Tiers":
        # Every tier carries its own isolation (db has no flows, still isolated).
        assert {"shop.tier-web", "shop.tier-api", "shop.tier-db"} <= set(policies)
        if egress:
            for tier in ("web", "api", "db"):
                dns_rules = [r for r in policies[f"shop.tier-{tier}"]["spec"]["egress"] if "to" in r]
                assert any("namespaceSelector" in p for r in dns_rules for p in r["to"])
    else:
        assert "shop.tier-db" not in policies  # no rules, and the namespace default-deny isolates it
        assert policies["shop.default-deny"]["spec"] == {"podSelector": {}, "policyTypes": types}


def test_per_tier_isolation_in_scope_tiers() -> None:
    tiers = [
        TIERS[0],
        {**TIERS[1], "isolation": {"egress": False}},
        {**TIERS[2], "isolation": {"ingress": False, "egress": False}},
    ]
    flows = [
        {"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": [{"port": 8080}]},
        {"from": {"tier": "api"}, "to": {"tier": "db"}, "ports": [{"port": 5432}]},
    ]
    policies = by_name(topo(tiers=tiers, flows=flows, defaultDeny={"scope": "Tiers"}))
    # db isolates nothing: no policy (any policy selecting it would isolate it); api: ingress only, and its
    # flow to db is no rule (its egress is open).
    assert list(policies) == ["shop.tier-web", "shop.tier-api"]
    api = policies["shop.tier-api"]
    assert api["spec"] == {
        "podSelector": {"matchLabels": {"app": "api"}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 8080, "protocol": "TCP"}]}
        ],
    }
    assert "isolate ingress; accept tier web" in api["metadata"]["annotations"]["apptopology.io/description"]
    web = policies["shop.tier-web"]["spec"]
    assert web["policyTypes"] == ["Ingress", "Egress"] and len(web["egress"]) == 2  # api, and DNS


def test_per_tier_isolation_adds_to_the_namespace_default_deny() -> None:
    """Scope Namespace, egress open: a tier isolated for egress carries its isolation and DNS itself."""
    tiers = [TIERS[0], {**TIERS[1], "isolation": {"egress": True}}, TIERS[2]]
    flows = [{"from": {"tier": "api"}, "to": {"tier": "db"}, "ports": [{"port": 5432}]}]
    policies = by_name(topo(tiers=tiers, flows=flows, defaultDeny={"egress": False}))
    assert list(policies) == ["shop.default-deny", "shop.tier-api", "shop.tier-db"]
    assert policies["shop.default-deny"]["spec"]["policyTypes"] == ["Ingress"]
    api = policies["shop.tier-api"]
    assert api["spec"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in api["spec"]
    assert [r["to"][0] for r in api["spec"]["egress"]] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        },
        {"podSelector": {"matchLabels": {"app": "db"}}},
    ]
    text = api["metadata"]["annotations"]["apptopology.io/description"]
    assert text.startswith("Topology shop, tier api: isolate egress; reach tier db on TCP/5432; reach DNS")
    # An added isolation without any rule still needs its policy.
    policies = by_name(topo(tiers=tiers, flows=[], defaultDeny={"egress": False}, dns={"enabled": False}))
    assert policies["shop.tier-api"]["spec"] == {
        "podSelector": {"matchLabels": {"app": "api"}},
        "policyTypes": ["Ingress", "Egress"],
    }


def test_rules_are_merged_and_deduplicated() -> None:
    flows = [
        {"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": [{"port": 8080}, {"port": 8080}]},
        {"from": {"tier": "db"}, "to": {"tier": "api"}, "ports": [{"port": 8080}]},
        {"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": [{"port": 8080}]},
        {"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": [{"port": 9000}]},
    ]
    api = by_name(topo(tiers=TIERS, flows=flows))["shop.tier-api"]["spec"]["ingress"]
    # web has {8080, 9000}, db has {8080}: two rules, one per distinct port set, no duplicate port.
    assert len(api) == 2
    for rule in api:
        keys = [json.dumps(p, sort_keys=True) for p in rule["ports"]]
        assert len(keys) == len(set(keys))


def test_all_ports_absorbs_specific_ports_and_anywhere_absorbs_peers() -> None:
    flows = [
        {"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": [{"port": 8080}]},
        {"from": {"tier": "web"}, "to": {"tier": "api"}},
        {"from": {"anywhere": True}, "to": {"tier": "db"}, "ports": [{"port": 1}]},
        {"from": {"tier": "api"}, "to": {"tier": "db"}, "ports": [{"port": 1}]},
    ]
    policies = by_name(topo(tiers=TIERS, flows=flows))
    assert policies["shop.tier-api"]["spec"]["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}
    ]
    assert policies["shop.tier-db"]["spec"]["ingress"] == [{"ports": [{"port": 1, "protocol": "TCP"}]}]


def test_protocol_only_port_absorbs_narrower_ports_of_its_protocol() -> None:
    flows = [
        {"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": [{"port": 53, "protocol": "UDP"}, {"port": 80}]},
        {
            "from": {"tier": "web"},
            "to": {"tier": "api"},
            "ports": [{"protocol": "UDP"}, {"port": "dns", "protocol": "UDP"}],
        },
        {"from": {"tier": "db"}, "to": {"tier": "api"}, "ports": [{"port": 53, "protocol": "UDP"}]},
    ]
    policies = by_name(topo(tiers=TIERS, flows=flows))
    # web: all of UDP absorbs UDP/53 and the named UDP port, not TCP/80; db keeps its one port.
    assert policies["shop.tier-api"]["spec"]["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
            "ports": [{"port": 80, "protocol": "TCP"}, {"protocol": "UDP"}],
        },
        {"from": [{"podSelector": {"matchLabels": {"app": "db"}}}], "ports": [{"port": 53, "protocol": "UDP"}]},
    ]
    assert policies["shop.tier-web"]["spec"]["egress"][0]["ports"] == [
        {"port": 80, "protocol": "TCP"},
        {"protocol": "UDP"},
    ]
    text = policies["shop.tier-api"]["metadata"]["annotations"]["apptopology.io/description"]
    assert "accept tier web on UDP/all;" in text and "UDP/dns" not in text


def test_every_protocol_is_not_all_ports() -> None:
    """TCP, UDP and SCTP each whole stay three entries: no ``ports`` would also admit other protocols (ICMP)."""
    ports = [{"protocol": "TCP"}, {"protocol": "UDP"}, {"protocol": "SCTP"}]
    policies = by_name(topo(tiers=TIERS, flows=[{"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": ports}]))
    assert policies["shop.tier-api"]["spec"]["ingress"][0]["ports"] == [
        {"protocol": "SCTP"},
        {"protocol": "TCP"},
        {"protocol": "UDP"},
    ]


def test_protocol_only_dns_ports() -> None:
    policies = by_name(topo(tiers=TIERS, dns={"ports": [{"protocol": "UDP"}, {"port": 53, "protocol": "UDP"}]}))
    assert policies["shop.allow-dns"]["spec"]["egress"][0]["ports"] == [{"protocol": "UDP"}]


ANYWHERE_EGRESS = [
    {"namespaceSelector": {}},
    {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}},
    {"ipBlock": {"cidr": "::/0", "except": ["fd00:ec2::254/128"]}},
]
METADATA_PEERS = [{"ipBlock": {"cidr": "169.254.169.254/32"}}, {"ipBlock": {"cidr": "fd00:ec2::254/128"}}]


def test_anywhere_egress_leaves_out_the_cloud_metadata_service() -> None:
    flows = [
        {"from": {"tier": "web"}, "to": {"anywhere": True}, "ports": [{"port": 443}]},
        {"from": {"anywhere": True}, "to": {"tier": "web"}, "ports": [{"port": 443}]},
    ]
    web = by_name(topo(tiers=TIERS, flows=flows, dns={"enabled": False}))["shop.tier-web"]
    assert web["spec"]["egress"] == [{"to": ANYWHERE_EGRESS, "ports": [{"port": 443, "protocol": "TCP"}]}]
    assert web["spec"]["ingress"] == [{"ports": [{"port": 443, "protocol": "TCP"}]}]  # any source, as before
    text = web["metadata"]["annotations"]["apptopology.io/description"]
    assert "reach anywhere except the cloud metadata service (169.254.169.254/32, fd00:ec2::254/128) on TCP/443" in text


def test_cloud_metadata_only_where_named() -> None:
    flows = [
        {"from": {"tier": "web"}, "to": {"anywhere": True}},
        {"from": {"tier": "api"}, "to": {"cloudMetadata": True}, "ports": [{"port": 80}]},
        {"from": {"tier": "db"}, "to": {"anywhere": True}, "ports": [{"port": 80}]},
        {"from": {"tier": "db"}, "to": {"cloudMetadata": True}, "ports": [{"port": 80}]},
    ]
    policies = by_name(topo(tiers=TIERS, flows=flows, dns={"enabled": False}))
    assert policies["shop.tier-web"]["spec"]["egress"] == [{"to": ANYWHERE_EGRESS}]
    assert policies["shop.tier-api"]["spec"]["egress"] == [
        {"to": METADATA_PEERS, "ports": [{"port": 80, "protocol": "TCP"}]}
    ]
    # Both on the same ports: one rule, anywhere's three peers and the metadata addresses.
    assert policies["shop.tier-db"]["spec"]["egress"] == [
        {"to": ANYWHERE_EGRESS + METADATA_PEERS, "ports": [{"port": 80, "protocol": "TCP"}]}
    ]


def test_anywhere_egress_absorbs_the_peers_inside_it_only() -> None:
    inside = [{"tier": "api"}, {"namespaceSelector": {}}, {"ipBlock": {"cidr": "10.0.0.0/8"}}]
    inside.append({"ipBlock": {"cidr": "169.254.0.0/16", "except": ["169.254.169.0/24"]}})
    outside = [{"ipBlock": {"cidr": "169.254.0.0/16"}}, {"ipBlock": {"cidr": "fd00::/8"}}, {"cloudMetadata": True}]
    flows = [
        {"from": {"tier": "web"}, "to": to, "ports": [{"port": 80}]} for to in [{"anywhere": True}, *inside, *outside]
    ]
    (rule,) = by_name(topo(tiers=TIERS, flows=flows, dns={"enabled": False}))["shop.tier-web"]["spec"]["egress"]
    assert rule["to"] == [
        *ANYWHERE_EGRESS,
        {"ipBlock": {"cidr": "169.254.0.0/16"}},
        {"ipBlock": {"cidr": "169.254.169.254/32"}},
        {"ipBlock": {"cidr": "fd00::/8"}},
        {"ipBlock": {"cidr": "fd00:ec2::254/128"}},
    ]


def test_labels_names_annotation() -> None:
    flows = [{"from": {"tier": "web"}, "to": {"tier": "web"}, "description": "peers talk"}]
    for policy in render(parse_topology(topo(flows=flows))):
        meta = policy["metadata"]
        assert meta["labels"] == {MANAGED_BY_LABEL: "apptopology-operator", TOPOLOGY_LABEL: "shop"}
        assert meta["name"].startswith("shop.") and len(meta["name"]) <= 253
        assert meta["namespace"] == "prod"
        assert meta["annotations"]["apptopology.io/description"].startswith("Topology shop")
    web = by_name(topo(flows=flows))["shop.tier-web"]
    assert "peers talk" in web["metadata"]["annotations"]["apptopology.io/description"]


def test_output_is_deterministic_and_independent_of_map_order() -> None:
    doc = yaml.safe_load((EXAMPLES[0].parent / "cross-namespace.yaml").read_text())
    first = json.dumps(render(parse_topology(doc)))
    labels = doc["spec"]["tiers"][0]["podSelector"]["matchLabels"]
    labels["zz"] = "1"
    labels["aa"] = "2"
    shuffled = dict(random.Random(7).sample(sorted(labels.items()), len(labels)))
    doc["spec"]["tiers"][0]["podSelector"]["matchLabels"] = shuffled
    a = json.dumps(render(parse_topology(doc)))
    doc["spec"]["tiers"][0]["podSelector"]["matchLabels"] = dict(sorted(labels.items()))
    b = json.dumps(render(parse_topology(doc)))
    assert a == b and a != first
    assert json.dumps(render(parse_topology(doc))) == b


def test_egress_only_topology_has_no_ingress_anywhere() -> None:
    doc = topo(defaultDeny={"ingress": False}, flows=[{"from": {"anywhere": True}, "to": {"tier": "web"}}])
    for policy in by_name(doc).values():
        assert "Ingress" not in policy["spec"]["policyTypes"]
        assert "ingress" not in policy["spec"]


def test_monitoring_only_on_listed_tiers() -> None:
    mon = {"enabled": True, "namespaceSelector": {}, "ports": [{"port": 9100}], "tiers": ["api"]}
    policies = by_name(topo(tiers=TIERS, monitoring=mon))
    assert "shop.tier-api" in policies and "shop.tier-web" not in policies
    assert policies["shop.tier-api"]["spec"]["ingress"] == [
        {"from": [{"namespaceSelector": {}}], "ports": [{"port": 9100, "protocol": "TCP"}]}
    ]


def test_dns_disabled() -> None:
    assert "shop.allow-dns" not in by_name(topo(dns={"enabled": False}))
