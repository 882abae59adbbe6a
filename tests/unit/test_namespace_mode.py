"""Several topologies in one namespace: NetworkPolicies add up, so one topology's policies can open what
another's intent denies. namespace_interactions finds those pairs and the rules responsible; verify runs it
by itself when topologies share a namespace, and with --namespace-mode also over other policies given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from apptopology.analysis.namespace import namespace_interactions
from apptopology.cli import main
from apptopology.cli.documents import load_topologies
from apptopology.render.renderer import render_all
from apptopology.render.validation import parse_topology
from shared import ROOT

EXAMPLES = ROOT / "examples"


def examples(*names: str) -> list[Any]:
    return [t for n in names for t in load_topologies([str(EXAMPLES / n)])]


def topology(name: str, scope: str, tiers: list[dict[str, Any]], flows: list[dict[str, Any]]) -> Any:
    return parse_topology(
        {
            "apiVersion": "apptopology.io/v1alpha1",
            "kind": "AppTopology",
            "metadata": {"name": name, "namespace": "prod"},
            "spec": {"defaultDeny": {"scope": scope}, "tiers": tiers, "flows": flows},
        }
    )


def test_a_scope_namespace_topology_is_widened_by_another_topologys_flows() -> None:
    """shop isolates every pod of production; orders (scope Tiers) lets its api in from two namespaces. For
    shop's intent those are openings, made by orders' policy; orders' own intent is not widened by shop."""
    group = examples("three-tier.yaml", "cross-namespace.yaml")
    found = namespace_interactions(group, render_all(group))
    assert {i.topology for i in found} == {"shop"}
    assert {i.destination for i in found} == {"api of orders"}
    assert {r for i in found for r in i.responsible} == {
        "production/orders.tier-api ingress[0]",
        "production/orders.tier-api ingress[1]",
    }
    assert found[0].line().startswith("shop: opened ")


def test_disjoint_scope_tiers_topologies_do_not_interact() -> None:
    a = topology(
        "a",
        "Tiers",
        [{"name": "web", "podSelector": {"matchLabels": {"app": "web"}}}],
        [{"from": {"anywhere": True}, "to": {"tier": "web"}, "ports": [{"port": 443}]}],
    )
    b = topology(
        "b",
        "Tiers",
        [{"name": "db", "podSelector": {"matchLabels": {"app": "db"}}}],
        [{"from": {"namespaceSelector": {}}, "to": {"tier": "db"}, "ports": [{"port": 5432}]}],
    )
    assert namespace_interactions([a, b], render_all([a, b])) == []


def test_overlapping_tiers_are_caught_and_attributed() -> None:
    """b's tier selects a's database pods too: b's flow from anywhere opens a's database."""
    a = topology(
        "a",
        "Tiers",
        [
            {"name": "api", "podSelector": {"matchLabels": {"app": "api"}}},
            {"name": "db", "podSelector": {"matchLabels": {"app": "db"}}},
        ],
        [{"from": {"tier": "api"}, "to": {"tier": "db"}, "ports": [{"port": 5432}]}],
    )
    b = topology(
        "b",
        "Tiers",
        [{"name": "backup", "podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}}],
        [{"from": {"anywhere": True}, "to": {"tier": "backup"}, "ports": [{"port": 873}]}],
    )
    found = namespace_interactions([a, b], render_all([a, b]))
    into_db = [i for i in found if i.topology == "a" and i.destination == "db of a"]
    assert into_db and all(str(i.ports) == "TCP/873" for i in into_db)
    assert {r for i in into_db for r in i.responsible} == {"prod/b.tier-backup ingress[0]"}


def test_other_policies_are_part_of_the_namespace() -> None:
    """The operator passes the live policies of the namespace: the topology's own, and a hand-written one."""
    (shop,) = examples("three-tier.yaml")
    extra = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "debug", "namespace": "production"},
        "spec": {"podSelector": {"matchLabels": {"tier": "database"}}, "ingress": [{}]},
    }
    assert namespace_interactions([shop], render_all([shop])) == []
    found = namespace_interactions([shop], [*render_all([shop]), extra])
    assert found and {r for i in found for r in i.responsible} == {"production/debug ingress[0]"}
    assert "database of shop" in {i.destination for i in found}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


def test_verify_checks_a_shared_namespace_by_itself(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(
        capsys, "verify", "-f", str(EXAMPLES / "three-tier.yaml"), "-f", str(EXAMPLES / "cross-namespace.yaml")
    )
    assert code == 1
    assert "OK: shop: the policies allow exactly" in out and "OK: orders: the policies allow exactly" in out
    assert "FAIL: namespace production: 3 pairs that a topology denies are allowed by shop, orders together" in out
    assert "(allowed by production/orders.tier-api ingress[0])" in out


def test_verify_namespace_mode_with_other_policies(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    other = tmp_path / "debug.yaml"
    other.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "debug", "namespace": "production"},
                "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]},
            }
        )
    )
    shop = str(EXAMPLES / "three-tier.yaml")
    code, out = run(capsys, "verify", "-f", shop, "--namespace-mode")
    assert code == 0 and "OK: namespace production: shop together allow nothing a topology denies" in out
    code, out = run(capsys, "verify", "-f", shop, "--namespace-mode", "--policies", str(other))
    assert code == 1 and "OK: shop: the policies allow exactly" in out  # the topology's own rendering is fine
    assert "allowed by production/debug egress[0]" in out
