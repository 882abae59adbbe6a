"""apptopology import: NetworkPolicies -> AppTopology, proved equivalent by verify (or narrower, and said so).

Equivalence is judged three ways: verify (the topology's independent intent against the input policies) on
the synthesized inventory, on real inventories (the evaluator property test's random clusters), and the
evaluator on the rendered topology against the input.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from apptopology.adoption.importer import by_namespace, import_namespace, report_lines
from apptopology.analysis.intent import synthesize
from apptopology.analysis.subject import merge_inventories, synthesize_from_policies
from apptopology.cli import main
from apptopology.cli.documents import load_documents
from apptopology.evaluator import Evaluator, Inventory
from apptopology.render.renderer import render
from apptopology.render.validation import parse_topology
from strategies import topologies

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit" / "evaluator"))
from test_eval_property import scenarios  # noqa: E402


def netpol(name: str, spec: dict[str, Any], namespace: str = "shop") -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def sel(**labels: str) -> dict[str, Any]:
    return {"matchLabels": labels}


def same_connectivity(a: list[dict[str, Any]], b: list[dict[str, Any]], inventory: Inventory) -> bool:
    endpoints = list(inventory.endpoints)
    left = Evaluator(a, inventory).matrix(endpoints, endpoints)
    right = Evaluator(b, inventory).matrix(endpoints, endpoints)
    return all(left[s, d] == right[s, d] for s in endpoints for d in endpoints if s != d)


def import_one(policies: list[dict[str, Any]], inventory: Inventory | None = None) -> Any:
    (namespace, group), *rest = by_namespace(policies).items()
    assert not rest
    return import_namespace(namespace, group, inventory)


def assert_exact(policies: list[dict[str, Any]], inventory: Inventory | None = None) -> Any:
    result = import_one(policies, inventory)
    report = "\n".join(report_lines(result))
    assert result.equivalent, report
    assert not [n for n in result.notes if n.narrower], report
    rendered = render(result.topology)
    witness = merge_inventories([synthesize(result.topology), synthesize_from_policies(policies)])
    assert same_connectivity(rendered, policies, witness), report
    if inventory is not None:
        assert same_connectivity(rendered, policies, inventory), report
    return result


# --- the guide ------------------------------------------------------------------------------------------

GUIDE = [d.data for d in load_documents([str(ROOT / "tests" / "cases" / "guide-policies.yaml")])]


def test_guide_three_tier_imports_as_the_guide_example() -> None:
    policies = [d.data for d in load_documents([str(ROOT / "tests" / "cases" / "guide-three-tier.yaml")])]
    result = assert_exact(policies)
    spec = result.document["spec"]
    assert spec["defaultDeny"] == {"scope": "Tiers", "ingress": True, "egress": True}
    assert [t["name"] for t in spec["tiers"]] == ["api", "database", "frontend"]
    assert spec["tiers"][1]["isolation"] == {"egress": False}
    # DNS recognised, and every flow between tiers is one tier-to-tier flow.
    assert spec["dns"]["ports"] == [{"port": 53, "protocol": "UDP"}]
    pairs = {(f["from"].get("tier"), f["to"].get("tier")) for f in spec["flows"]}
    assert pairs == {("frontend", "api"), ("api", "database"), (None, "frontend")}
    # Identical in connectivity to the hand-written example of the same pattern.
    example = next(d.data for d in load_documents([str(ROOT / "examples" / "three-tier-guide.yaml")]))
    inventory = merge_inventories([synthesize(parse_topology(example)), synthesize(result.topology)])
    assert same_connectivity(render(parse_topology(example)), render(result.topology), inventory)


@pytest.mark.parametrize("index", range(len(GUIDE)), ids=[str(d["metadata"]["name"]) for d in GUIDE])
def test_each_guide_policy_imports_exactly(index: int) -> None:
    assert_exact([GUIDE[index]])


def test_all_guide_policies_of_a_namespace_import_exactly() -> None:
    production = [p for p in GUIDE if p["metadata"].get("namespace") == "production"]
    result = assert_exact(production)
    assert result.document["spec"]["dns"]["podSelector"] == sel(**{"k8s-app": "kube-dns"})


def test_namespace_isolation_becomes_a_default_deny_and_one_tier_flow() -> None:
    isolation = next(p for p in GUIDE if p["metadata"]["name"] == "namespace-isolation")
    spec = assert_exact([isolation]).document["spec"]
    assert spec["defaultDeny"] == {"scope": "Namespace", "ingress": True, "egress": True}
    assert spec["tiers"] == [{"name": "all", "podSelector": {}}]
    assert [(f["from"], f["to"]) for f in spec["flows"]] == [({"tier": "all"}, {"tier": "all"})]
    assert spec["dns"]["namespaceSelector"] == sel(**{"kubernetes.io/metadata.name": "kube-system"})


# --- property tests -------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topologies())
def test_rendered_random_topologies_import_back_equivalent(doc: dict[str, Any]) -> None:
    policies = render(parse_topology(doc))
    if policies:
        assert_exact(policies)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_random_policy_sets_import_equivalent_on_their_cluster(scenario: Any) -> None:
    """The evaluator property test's upstream-style policy sets (absent and empty lists, AND and OR peers,
    named ports, ranges, ipBlocks with except, several namespaces), judged on their own random cluster."""
    policies, inventory, _, _ = scenario
    for namespace, group in by_namespace(policies).items():
        result = import_namespace(namespace, group, inventory)
        assert result.equivalent, "\n".join(report_lines(result))
        assert same_connectivity(render(result.topology), group, inventory)


# --- hand-written sets ----------------------------------------------------------------------------------


def test_overlapping_selectors_and_allow_all_rules() -> None:
    policies = [
        netpol("deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        netpol("web", {"podSelector": sel(app="web"), "ingress": [{}]}),  # allow-all ingress, default types
        netpol(
            "web-canary",
            {
                "podSelector": sel(app="web", track="canary"),
                "policyTypes": ["Egress"],
                "egress": [{}],  # allow-all egress: every destination, the metadata service too
            },
        ),
        netpol(
            "tracked",
            {
                "podSelector": {"matchExpressions": [{"key": "track", "operator": "Exists"}]},
                "ingress": [{"from": [{"podSelector": sel(app="web")}], "ports": [{"port": 8080}]}],
            },
        ),
    ]
    inventory = Inventory(
        pods=tuple(
            __import__("apptopology.evaluator", fromlist=["Pod"]).Pod("shop", name, labels)
            for name, labels in (
                ("web", {"app": "web"}),
                ("canary", {"app": "web", "track": "canary"}),
                ("batch", {"track": "stable"}),
                ("other", {}),
            )
        )
    )
    result = assert_exact(policies, inventory)
    spec = result.document["spec"]
    # tracked accepts web, which the default-deny isolates for egress without that half: scope Tiers.
    assert spec["defaultDeny"]["scope"] == "Tiers"
    destinations = [f["to"] for f in spec["flows"] if f["from"] == {"tier": "web-canary"}]
    assert {"cloudMetadata": True} in destinations and {"anywhere": True} in destinations
    assert any("metadata service" in n.message for n in result.notes)


def test_half_of_a_flow_stays_a_half() -> None:
    """api may send to db, but db does not accept api: a tier-to-tier flow would open it."""
    policies = [
        netpol(
            "api",
            {
                "podSelector": sel(app="api"),
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"podSelector": sel(app="db")}]}],
            },
        ),
        netpol("db", {"podSelector": sel(app="db"), "ingress": []}),
    ]
    spec = assert_exact(policies).document["spec"]
    assert spec["flows"][0]["from"] == {"tier": "api"} and spec["flows"][0]["to"] == {"podSelector": sel(app="db")}


def test_default_deny_with_a_half_flow_falls_back_to_scope_tiers() -> None:
    policies = [
        netpol("deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        netpol(
            "api",
            {
                "podSelector": sel(app="api"),
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"podSelector": sel(app="x")}]}],
            },
        ),
    ]
    spec = assert_exact(policies).document["spec"]
    assert spec["defaultDeny"]["scope"] == "Tiers"
    assert {"name": "all", "podSelector": {}} in spec["tiers"]


def test_ipblocks_are_canonical_and_split_beyond_the_except_bound() -> None:
    excepts = [f"10.{i}.0.0/16" for i in range(40)]
    policies = [
        netpol(
            "egress",
            {
                "podSelector": sel(app="a"),
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {"ipBlock": {"cidr": "10.0.0.0/8", "except": excepts}},
                            {"ipBlock": {"cidr": "192.168.1.7/16"}},
                        ]
                    }
                ],
            },
        )
    ]
    result = assert_exact(policies)
    blocks = [f["to"]["ipBlock"] for f in result.document["spec"]["flows"] if "ipBlock" in f["to"]]
    assert {"cidr": "192.168.0.0/16"} in blocks
    assert all(len(b.get("except", [])) <= 32 for b in blocks) and len(blocks) > 2


def test_ports_named_ranges_and_whole_protocols() -> None:
    ports = [{"port": "http"}, {"port": 8000, "endPort": 8100}, {"protocol": "UDP"}, {"port": 3868, "protocol": "SCTP"}]
    policies = [
        netpol(
            "p",
            {
                "podSelector": sel(app="a"),
                "ingress": [
                    {"from": [{"namespaceSelector": sel(team="x"), "podSelector": sel(app="b")}], "ports": ports}
                ],
            },
        )
    ]
    flow = assert_exact(policies).document["spec"]["flows"][0]
    assert flow["from"] == {"namespaceSelector": sel(team="x"), "podSelector": sel(app="b")}
    assert {"port": "http"} in flow["ports"] and {"port": 8000, "endPort": 8100} in flow["ports"]


def test_rules_of_a_direction_not_in_policy_types_are_noted() -> None:
    policies = [netpol("p", {"podSelector": sel(app="a"), "policyTypes": ["Ingress"], "egress": [{}]})]
    result = assert_exact(policies)
    assert any("ignored by Kubernetes" in n.message for n in result.notes)


def test_what_cannot_be_expressed_is_left_out_and_the_pairs_are_listed() -> None:
    labels = {f"k{i}": "v" for i in range(33)}  # a peer beyond the model's 32 matchLabels
    policies = [
        netpol(
            "web",
            {
                "podSelector": sel(app="web"),
                "ingress": [
                    {"from": [{"podSelector": {"matchLabels": labels}}], "ports": [{"port": 80}]},
                    {"from": [{"ipBlock": {"cidr": "::ffff:10.0.0.0/104"}}]},
                    {"from": [{"podSelector": sel(app="ok")}]},
                ],
            },
        )
    ]
    result = import_one(policies)
    assert not result.equivalent and not result.wider
    report = "\n".join(report_lines(result))
    assert "NOT equivalent on the synthesized inventory" in report
    assert "only the policies allow shop/left-out-peer-0 -> web: TCP/80" in report
    assert "because shop/web ingress[0] peer 0: left out" in report
    assert "because shop/web ingress[1] peer 0: left out: ipBlock" in report
    # What could be expressed is there.
    assert {"podSelector": sel(app="ok")} in [f["from"] for f in result.document["spec"]["flows"]]


def test_a_tier_beyond_the_bounds_is_not_imported_at_all() -> None:
    labels = {f"k{i}": "v" for i in range(33)}
    result = import_one([netpol("p", {"podSelector": {"matchLabels": labels}})])
    assert result.document is None and "cannot import namespace shop" in str(result.error)
    many = [netpol(f"p{i}", {"podSelector": sel(app=f"a{i}")}) for i in range(65)]
    assert "at most 64 tiers" in str(import_one(many).error)


def test_tier_names_are_readable_and_stable() -> None:
    policies = [
        netpol("a", {"podSelector": sel(**{"app.kubernetes.io/name": "shop", "app.kubernetes.io/component": "api"})}),
        netpol("b", {"podSelector": sel(app="api")}),
        netpol("c", {"podSelector": sel(tier="api")}),
        netpol("d", {"podSelector": {"matchExpressions": [{"key": "env", "operator": "In", "values": ["b", "a"]}]}}),
    ]
    names = [t["name"] for t in import_one(policies).document["spec"]["tiers"]]
    assert names == ["a-or-b", "app-api", "shop-api", "tier-api"]
    assert [t["name"] for t in import_one(policies[::-1]).document["spec"]["tiers"]] == names


# --- the command ----------------------------------------------------------------------------------------


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_a_valid_topology_and_says_equivalent(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["import", "-f", str(ROOT / "tests" / "cases" / "guide-three-tier.yaml")], capsys)
    assert code == 0, err
    assert "equivalent on the synthesized inventory" in err
    assert out.startswith("# Imported by apptopology import from 3 NetworkPolicies of namespace production")
    docs = list(yaml.safe_load_all(io.StringIO(out)))
    topology = parse_topology(docs[0])
    assert topology.spec.enforcement == "DryRun"


def test_cli_exit_codes_and_inventory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    narrower = tmp_path / "narrower.yaml"
    narrower.write_text(
        yaml.safe_dump(
            netpol(
                "p",
                {"podSelector": sel(app="a"), "ingress": [{"from": [{"ipBlock": {"cidr": "::ffff:10.0.0.0/104"}}]}]},
            )
        )
    )
    code, out, err = run(["import", "-f", str(narrower)], capsys)
    assert code == 1 and "NOT equivalent" in err and "kind: AppTopology" in out
    code, _, err = run(
        [
            "import",
            "-f",
            str(ROOT / "tests" / "cases" / "guide-three-tier.yaml"),
            "--inventory",
            str(ROOT / "tests" / "cases" / "inventory-production.yaml"),
        ],
        capsys,
    )
    assert code == 0 and "equivalent on the given inventory" in err
    assert run(["import"], capsys)[0] == 2
    assert run(["import", "-f", str(ROOT / "examples" / "three-tier.yaml")], capsys)[0] == 2  # no policies
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(netpol("p", {"podSelector": sel(app="a"), "ingress": [{"form": []}]})))
    code, out, err = run(["import", "-f", str(bad)], capsys)
    assert code == 2 and out == "" and "unknown field" in err and "Traceback" not in err
    two = tmp_path / "two.yaml"
    two.write_text(yaml.safe_dump_all([netpol("p", {}, "a"), netpol("p", {}, "b")]))
    assert run(["import", "-f", str(two), "--name", "x"], capsys)[0] == 2
    code, out, _ = run(["import", "-f", str(two), "-n", "b", "--name", "x"], capsys)
    assert code == 0 and "namespace: b" in out and "name: x" in out


def test_cli_never_prints_a_wider_topology(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import apptopology.adoption.importer as importer

    real = importer._Builder._flows

    def widen(self: Any, *args: Any) -> Any:  # a broken translation: every grant opens everything
        flows = real(self, *args)
        for flow in flows:
            flow.ports = {None}
        return flows

    monkeypatch.setattr(importer._Builder, "_flows", widen)
    code, out, err = run(["import", "-f", str(ROOT / "tests" / "cases" / "guide-three-tier.yaml")], capsys)
    assert code == 1 and out == "" and "WIDER" in err and "only the topology allows" in err
