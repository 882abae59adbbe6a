"""TopologyGuardrails: the model, the pure check, enforce (the narrowed topology the operator renders), the
CLI, and the generated CRD and admission policy.

The shared cases (tests/cases/guardrails.yaml) run here through the check and the CLI, and on the real API
server in tests/integration/test_guardrail_admission.py. The property tests judge enforce with the evaluator, which
reads only the rendered NetworkPolicies: the narrowed topology never allows a connection the original does
not, and what it allows keeps off forbidden ranges, the internet and unlisted namespaces.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apptopology.analysis.intent import Intent, synthesize
from apptopology.api import admission, crdgen
from apptopology.api.guardrail import (
    DEFAULT_INTERNAL_CIDRS,
    NAME_LABEL,
    InvalidGuardrail,
    TopologyGuardrail,
    parse_guardrail,
    parse_labels,
)
from apptopology.api.spec import (
    CLOUD_METADATA,
    DNS,
    AppTopologySpec,
    DefaultDeny,
    Endpoint,
    Flow,
    IPBlock,
    LabelSelector,
    Monitoring,
    NodeLocalDNS,
    ServiceRef,
    Tier,
    TierIsolation,
)
from apptopology.api.validation import InvalidTopology
from apptopology.cli import main
from apptopology.evaluator import Evaluator, External, Inventory, Namespace, Pod
from apptopology.render import guardrails as gr
from apptopology.render.facts import NODE_LOCAL_DNS_DEFAULT, OFFLINE, APIEndpoint, ClusterFacts
from apptopology.render.renderer import render
from apptopology.render.validation import parse_topology
from guardrail_strategies import guardrail_documents
from shared import ROOT, guardrail_cases
from shared import guardrail_documents as case_guardrail_documents
from strategies import cluster_facts_strategy, topologies

CASES = guardrail_cases()
CASE_GUARDRAILS = [parse_guardrail(d) for d in case_guardrail_documents()]


def guardrail(**spec: Any) -> TopologyGuardrail:
    spec.setdefault("namespaceSelector", {})
    return parse_guardrail(
        {"apiVersion": "apptopology.io/v1alpha1", "kind": "TopologyGuardrail", "metadata": {"name": "g"}, "spec": spec}
    )


def topology(**spec: Any) -> Any:
    spec.setdefault("tiers", [{"name": "api", "podSelector": {"matchLabels": {"app": "api"}}}])
    return parse_topology(
        {
            "apiVersion": "apptopology.io/v1alpha1",
            "kind": "AppTopology",
            "metadata": {"name": "t", "namespace": "home"},
            "spec": spec,
        }
    )


def found(violations: list[gr.Violation]) -> list[dict[str, str]]:
    return [{"guardrail": v.guardrail, "rule": v.rule, "path": v.path, "text": v.text} for v in violations]


# --- the shared cases --------------------------------------------------------------------------------------


def test_every_rule_has_a_refused_and_an_admitted_case() -> None:
    refused = {v["rule"] for c in CASES for v in c["violations"]}
    assert refused == set(gr.RULES)
    assert sum(not c["violations"] for c in CASES) >= 4


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_case_through_the_check(case: dict[str, Any]) -> None:
    violations = gr.check(parse_topology(case["document"]), CASE_GUARDRAILS, case["labels"])
    assert found(violations) == case["violations"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_case_through_the_cli(case: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topo = tmp_path / "shop.yaml"
    topo.write_text(yaml.safe_dump(case["document"]))
    rails = tmp_path / "guardrails.yaml"
    rails.write_text(yaml.safe_dump_all(case_guardrail_documents()))
    labels = ",".join(f"{k}={v}" for k, v in case["labels"].items())
    code = main(["validate", "-f", str(topo), "--guardrail", str(rails), "--namespace-labels", labels])
    out, err = capsys.readouterr()
    expected = [
        f"error: {topo}: document 0: {v['path']}: {v['text']} (TopologyGuardrail {v['guardrail']}: {v['rule']})"
        for v in case["violations"]
    ]
    # Each line ends with the line of the field in the file: "(line 12)".
    assert [re.sub(r" \(line \d+\)$", "", line) for line in err.splitlines()] == expected
    assert all(re.search(r" \(line \d+\)$", line) for line in err.splitlines())
    assert code == (1 if expected else 0)
    if not expected:
        assert out.startswith(f"OK: AppTopology {case['namespace']}/shop")


@pytest.mark.parametrize("case", [c for c in CASES if c["violations"]], ids=lambda c: c["id"])
def test_case_enforced_leaves_only_the_tiers_beyond_max_tiers(case: dict[str, Any]) -> None:
    original = parse_topology(case["document"])
    guarded = gr.enforce(original, CASE_GUARDRAILS, case["labels"])
    assert list(guarded.violations) == gr.check(original, CASE_GUARDRAILS, case["labels"])
    left = gr.check(guarded.topology, CASE_GUARDRAILS, case["labels"])
    assert found(left) == [v for v in case["violations"] if v["rule"] == "maxTiers"]
    assert connectivity_narrowed(original, guarded.topology) == []


# --- check: rules in detail -------------------------------------------------------------------------------


def test_a_guardrail_selecting_other_namespaces_does_not_apply() -> None:
    strict = guardrail(namespaceSelector={"matchLabels": {"tenancy": "shared"}}, maxFlows=0)
    t = topology(flows=[{"from": {"tier": "api"}, "to": {"tier": "api"}}])
    assert gr.check(t, [strict], {}) == []
    assert gr.check(t, [strict], {"tenancy": "dedicated"}) == []
    assert [v.rule for v in gr.check(t, [strict], {"tenancy": "shared"})] == ["maxFlows"]


def test_the_namespace_name_label_is_the_topologys_namespace() -> None:
    home_only = guardrail(namespaceSelector={"matchLabels": {NAME_LABEL: "home"}}, maxFlows=0)
    t = topology(flows=[{"from": {"tier": "api"}, "to": {"tier": "api"}}])
    assert [v.path for v in gr.check(t, [home_only], {})] == ["spec.flows[0]"]
    with pytest.raises(ValueError, match="namespace 'other'"):
        gr.check(t, [home_only], {NAME_LABEL: "other"})
    # A document without a namespace takes the one the labels name, else default (as kubectl would).
    loose = parse_topology({**t.model_dump(by_alias=True, exclude_none=True), "metadata": {"name": "t"}})
    assert gr.namespace_of(loose, {NAME_LABEL: "home"}) == "home"
    assert gr.namespace_of(loose) == "default"
    assert gr.check(loose, [home_only], {}) == []


def test_peer_namespace_must_be_pinned_by_name() -> None:
    rails = [guardrail(peerNamespaces={"allowed": ["monitoring"]})]

    def paths(selector: dict[str, Any]) -> list[str]:
        t = topology(flows=[{"from": {"namespaceSelector": selector}, "to": {"tier": "api"}}], dns={"enabled": False})
        return [v.path for v in gr.check(t, rails, {})]

    ok = "spec.flows[0].from.namespaceSelector"
    assert paths({"matchLabels": {NAME_LABEL: "monitoring"}}) == []
    assert paths({"matchLabels": {NAME_LABEL: "home"}}) == []
    assert paths({"matchLabels": {NAME_LABEL: "monitoring", "team": "ops"}}) == []  # AND only narrows
    assert paths({"matchExpressions": [{"key": NAME_LABEL, "operator": "In", "values": ["monitoring", "home"]}]}) == []
    assert paths({"matchLabels": {NAME_LABEL: "payments"}}) == [ok]
    assert paths({"matchLabels": {"name": "monitoring"}}) == [ok]
    assert paths({}) == [ok]
    assert paths({"matchExpressions": [{"key": NAME_LABEL, "operator": "NotIn", "values": ["x"]}]}) == [ok]
    assert paths({"matchExpressions": [{"key": NAME_LABEL, "operator": "Exists"}]}) == [ok]
    # Every pinned value must be allowed (stricter than the intersection, and simpler to state).
    assert paths(
        {
            "matchLabels": {NAME_LABEL: "monitoring"},
            "matchExpressions": [{"key": NAME_LABEL, "operator": "In", "values": ["monitoring", "payments"]}],
        }
    ) == [ok]


def test_no_peer_rule_without_peer_namespaces() -> None:
    t = topology(flows=[{"from": {"namespaceSelector": {}}, "to": {"tier": "api"}}])
    assert gr.check(t, [guardrail()], {}) == []


def test_forbidden_cidr_overlaps() -> None:
    rails = [guardrail(forbiddenCIDRs=[{"cidr": "10.1.0.0/16", "direction": "Egress"}])]

    def verdict(block: dict[str, Any], egress: bool = True) -> list[str]:
        flow = (
            {"from": {"tier": "api"}, "to": {"ipBlock": block}}
            if egress
            else {"from": {"ipBlock": block}, "to": {"tier": "api"}}
        )
        return [v.text for v in gr.check(topology(flows=[flow]), rails, {})]

    assert verdict({"cidr": "10.2.0.0/16"}) == []
    assert verdict({"cidr": "10.1.2.0/24"}) == ["10.1.2.0/24 is inside 10.1.0.0/16, forbidden for egress"]
    assert verdict({"cidr": "10.1.0.0/16"}) == ["10.1.0.0/16 is inside 10.1.0.0/16, forbidden for egress"]
    assert verdict({"cidr": "10.0.0.0/8"}) == [
        "10.0.0.0/8 includes 10.1.0.0/16, forbidden for egress: add it to except"
    ]
    assert verdict({"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}) == []
    assert verdict({"cidr": "10.0.0.0/8", "except": ["10.0.0.0/12"]}) == []
    # An except inside the forbidden range does not cover it.
    assert len(verdict({"cidr": "10.0.0.0/8", "except": ["10.1.2.0/24"]})) == 1
    assert verdict({"cidr": "::/0"}) == []
    assert verdict({"cidr": "10.0.0.0/8"}, egress=False) == []


def test_internal_cidrs_default_and_override() -> None:
    def verdict(cidr: str, **spec: Any) -> list[str]:
        t = topology(flows=[{"from": {"ipBlock": {"cidr": cidr}}, "to": {"tier": "api"}}])
        return [v.rule for v in gr.check(t, [guardrail(**{"internetIngress": "Forbid", **spec})], {})]

    assert guardrail().spec.internal() == DEFAULT_INTERNAL_CIDRS
    assert verdict("192.168.4.0/24") == []
    assert verdict("fd12::/16") == []
    assert verdict("100.64.1.0/24") == []
    assert verdict("8.8.8.0/24") == ["internetIngress"]
    assert verdict("10.0.0.0/7") == ["internetIngress"]  # wider than the internal range
    assert verdict("192.168.4.0/24", internalCIDRs=[]) == ["internetIngress"]
    assert verdict("8.8.8.0/24", internalCIDRs=["8.0.0.0/8"]) == []
    assert verdict("8.8.8.0/24", internetIngress="Allow") == []


def test_unknown_endpoint_kind_is_refused_by_every_endpoint_rule() -> None:
    """A kind the check does not know (added to the API later) fails closed."""

    class Future(Endpoint):
        magic: bool | None = None

    t = topology()
    odd = Future.model_construct(magic=True)
    flow = Flow.model_construct(from_=Endpoint(tier="api"), to=odd, ports=None, description=None)
    t = t.model_copy(update={"spec": t.spec.model_copy(update={"flows": [flow]})})
    rails = [
        guardrail(
            peerNamespaces={"allowed": ["kube-system"]},
            forbiddenCIDRs=[{"cidr": "169.254.169.254/32"}],
            internetIngress="Forbid",
        ),
    ]
    assert [(v.rule, v.path) for v in gr.check(t, rails, {})] == [
        ("peerNamespaces", "spec.flows[0].to.magic"),
        ("forbiddenCIDRs", "spec.flows[0].to.magic"),
    ]
    assert gr.enforce(t, rails, {}).topology.spec.flows == []


# The check knows these fields; a new one changes what a topology can open, so the check and the admission
# policy (api/admission.py) must learn it before this test may change. How each is judged:
# - enforcement: opens nothing by itself; judged the same either way (a DryRun topology shows what would be
#   refused, and switching it to Enforce is a change of spec, judged again);
# - tiers[].isolation: requiredDefaultDeny (a tier exempting itself is a violation at its isolation);
# - dns.discover / dns.service: peerNamespaces (the DNS Service's namespace, or every default one);
#   forbiddenCIDRs with cluster facts (the NodeLocal DNSCache addresses found), in the operator only;
# - dns.nodeLocal: forbiddenCIDRs (each address, for egress);
# - cloudMetadata: forbiddenCIDRs (its two addresses, for egress); kubeAPI: the kubeAPI rule alone.
KNOWN_FIELDS = {
    AppTopologySpec: {"default_deny", "dns", "monitoring", "tiers", "flows", "enforcement"},
    DefaultDeny: {"scope", "ingress", "egress"},
    DNS: {"enabled", "discover", "service", "node_local", "namespace_selector", "pod_selector", "ports"},
    ServiceRef: {"namespace", "name"},
    NodeLocalDNS: {"addresses"},
    Monitoring: {"enabled", "namespace_selector", "pod_selector", "ports", "tiers"},
    Tier: {"name", "pod_selector", "isolation"},
    TierIsolation: {"ingress", "egress"},
    Flow: {"from_", "to", "ports", "description"},
    Endpoint: {
        "tier",
        "ip_block",
        "anywhere",
        "cloud_metadata",
        "kube_api",
        "namespace_selector",
        "pod_selector",
    },
    IPBlock: {"cidr", "except_"},
}


@pytest.mark.parametrize("model", list(KNOWN_FIELDS), ids=lambda m: m.__name__)
def test_the_check_knows_every_field_that_can_open_traffic(model: type) -> None:
    assert set(model.model_fields) == KNOWN_FIELDS[model], (  # type: ignore[attr-defined]
        f"{model.__name__} changed: teach apptopology.render.guardrails and apptopology.api.admission the new fields"
    )


# --- enforce -----------------------------------------------------------------------------------------------


def test_enforce_without_violations_is_the_topology_itself() -> None:
    t = topology()
    assert gr.enforce(t, [guardrail(maxFlows=3)], {}) == gr.Guarded(t, (), ())


def test_enforce_narrows_each_part() -> None:
    t = topology(
        tiers=[{"name": n, "podSelector": {"matchLabels": {"app": n}}} for n in ("web", "api", "db")],
        defaultDeny={"scope": "Tiers", "egress": False},
        dns={"namespaceSelector": {"matchLabels": {"role": "dns"}}},
        monitoring={
            "enabled": True,
            "namespaceSelector": {"matchLabels": {NAME_LABEL: "monitoring"}},
            "ports": [{"port": 9090}],
        },
        flows=[
            {"from": {"tier": "web"}, "to": {"tier": "api"}},
            {"from": {"tier": "api"}, "to": {"tier": "db"}},
            {"from": {"tier": "web"}, "to": {"ipBlock": {"cidr": "0.0.0.0/0"}}},
            {"from": {"tier": "web"}, "to": {"tier": "web"}},
        ],
    )
    rails = [
        guardrail(
            maxTiers=2,
            maxFlows=3,
            peerNamespaces={"allowed": ["monitoring"]},
            forbiddenCIDRs=[{"cidr": "169.254.169.254/32"}],
            requiredDefaultDeny={"scope": "Namespace"},
        )
    ]
    guarded = gr.enforce(t, rails, {})
    spec = guarded.topology.spec
    assert guarded.dropped_flows == (1, 2, 3)  # 1: tier db beyond maxTiers, 2: forbidden, 3: beyond maxFlows
    assert spec.flows == [t.spec.flows[0]]
    assert spec.dns.enabled is False
    assert spec.monitoring.enabled and spec.monitoring.tiers == ["web", "api"]
    assert (spec.default_deny.scope, spec.default_deny.ingress, spec.default_deny.egress) == ("Namespace", True, True)
    assert spec.tiers == t.spec.tiers  # never removed: their pods stay isolated
    assert [v.rule for v in gr.check(guarded.topology, rails, {})] == ["maxTiers"]
    assert connectivity_narrowed(t, guarded.topology) == []


def test_monitoring_of_no_remaining_tier_is_turned_off() -> None:
    t = topology(
        tiers=[{"name": n, "podSelector": {"matchLabels": {"app": n}}} for n in ("web", "api")],
        monitoring={"enabled": True, "namespaceSelector": {}, "ports": [{"port": 9090}], "tiers": ["api"]},
    )
    spec = gr.enforce(t, [guardrail(maxTiers=1)], {}).topology.spec
    assert spec.monitoring.enabled is False


def test_enforce_clears_tier_exemptions() -> None:
    t = topology(
        tiers=[
            {"name": "web", "podSelector": {"matchLabels": {"app": "web"}}, "isolation": {"egress": False}},
            {"name": "db", "podSelector": {"matchLabels": {"app": "db"}}, "isolation": {"ingress": False}},
        ],
        defaultDeny={"scope": "Tiers"},
    )
    guarded = gr.enforce(t, [guardrail(requiredDefaultDeny={"ingress": False})], {})
    assert [v.path for v in guarded.violations] == ["spec.tiers[0].isolation.egress"]
    web, db = guarded.topology.spec.tiers
    assert web.isolation is None  # follows spec.defaultDeny.egress: true
    assert db.isolation == TierIsolation(ingress=False)  # ingress is not required: left as declared
    # Raising the scope to Namespace clears every exemption the default-deny now covers (the API refuses them).
    raised = gr.enforce(t, [guardrail(requiredDefaultDeny={"scope": "Namespace", "ingress": False})], {}).topology
    assert [tier.isolation for tier in raised.spec.tiers] == [None, None]
    assert parse_topology(raised.model_dump(by_alias=True, exclude_none=True)) == raised


def test_enforce_never_opens_a_pod_shared_with_a_tier_isolated_already() -> None:
    """web's pods are all db's too; db isolates ingress, web does not, so web's ingress flow holds for no pod.
    Raising web's isolation would make it hold for db's pods: it is left out instead."""
    t = topology(
        tiers=[
            {"name": "web", "podSelector": {"matchLabels": {"app": "shop"}}},
            {"name": "db", "podSelector": {}, "isolation": {"ingress": True}},
            {"name": "batch", "podSelector": {"matchLabels": {"app": "batch", "role": "x"}}},
        ],
        defaultDeny={"scope": "Tiers", "ingress": False},
        monitoring={"enabled": True, "namespaceSelector": {"matchLabels": {NAME_LABEL: "mon"}}, "ports": [{"port": 9}]},
        flows=[
            {"from": {"tier": "web"}, "to": {"tier": "web"}},
            {"from": {"ipBlock": {"cidr": "10.0.0.0/8"}}, "to": {"tier": "db"}},
        ],
    )
    guarded = gr.enforce(t, [guardrail(requiredDefaultDeny={})], {})
    assert guarded.dropped_flows == (0,)
    assert [n.path for n in guarded.notes] == ["spec.flows[0]", "spec.monitoring.tiers", "spec.monitoring.tiers"]
    assert "may also be in tier db" in guarded.notes[0].message
    assert guarded.topology.spec.monitoring.tiers == ["db"]
    assert connectivity_narrowed(t, guarded.topology) == []


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ({}, {"matchLabels": {"app": "x"}}, True),
        ({"matchLabels": {"app": "x"}}, {"matchLabels": {"app": "y"}}, False),
        (
            {"matchLabels": {"app": "x"}},
            {"matchExpressions": [{"key": "app", "operator": "In", "values": ["x"]}]},
            True,
        ),
        (
            {"matchLabels": {"app": "x"}},
            {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["x"]}]},
            False,
        ),
        ({"matchLabels": {"app": "x"}}, {"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, False),
        (
            {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["x"]}]},
            {"matchLabels": {"b": "c"}},
            True,
        ),
        (
            {"matchExpressions": [{"key": "app", "operator": "In", "values": ["x", "y"]}]},
            {"matchExpressions": [{"key": "app", "operator": "In", "values": ["y", "z"]}]},
            True,
        ),
        (
            {"matchExpressions": [{"key": "app", "operator": "In", "values": ["x", "y"]}]},
            {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["x", "y"]}]},
            False,
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists"}]},
            {"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]},
            False,
        ),
    ],
)
def test_may_overlap(a: dict[str, Any], b: dict[str, Any], overlap: bool) -> None:
    sa, sb = LabelSelector.model_validate(a), LabelSelector.model_validate(b)
    assert gr._may_overlap(sa, sb) is overlap
    assert gr._may_overlap(sb, sa) is overlap


def test_enforce_leaves_out_flows_raised_isolation_makes_dead() -> None:
    """Scope Tiers -> Namespace: pods of the namespace outside the tiers become isolated, so a flow to them by
    podSelector alone could never work (and the API refuses it): not rendered, with a note."""
    t = topology(
        defaultDeny={"scope": "Tiers"},
        dns={"namespaceSelector": None, "podSelector": {"matchLabels": {"app": "dns"}}},
        flows=[
            {"from": {"tier": "api"}, "to": {"tier": "api"}},
            {"from": {"tier": "api"}, "to": {"podSelector": {"matchLabels": {"app": "redis"}}}},
        ],
    )
    guarded = gr.enforce(t, [guardrail(requiredDefaultDeny={"scope": "Namespace"})], {})
    assert guarded.dropped_flows == (1,)
    assert [n.path for n in guarded.notes] == ["spec.flows[1]", "spec.dns.namespaceSelector"]
    assert guarded.topology.spec.dns.enabled is False
    # A topology the API takes (the dump drops the null selector, which DNS off makes moot).
    written = parse_topology(guarded.topology.model_dump(by_alias=True, exclude_none=True))
    assert render(written) == render(guarded.topology)
    assert connectivity_narrowed(t, guarded.topology) == []


NODE_LOCAL_FACTS = ClusterFacts(node_local_dns=True, node_local_dns_addresses=("169.254.20.10", "10.96.0.10"))


def test_node_local_addresses_given_and_discovered() -> None:
    rails = [guardrail(forbiddenCIDRs=[{"cidr": "10.96.0.0/12", "description": "services"}])]
    given = topology(dns={"nodeLocal": {"addresses": ["169.254.20.10", "10.96.0.10"]}})
    guarded = gr.enforce(given, rails, {})
    assert [v.path for v in guarded.violations] == ["spec.dns.nodeLocal.addresses[1]"]
    node_local = guarded.topology.spec.dns.node_local
    assert node_local is not None and node_local.addresses == ["169.254.20.10"]
    # All of them forbidden, with discover: no NodeLocal DNSCache at all (not the cluster's instead).
    only = topology(dns={"discover": True, "nodeLocal": {"addresses": ["10.96.0.10"]}})
    guarded = gr.enforce(only, rails, {}, NODE_LOCAL_FACTS)
    assert guarded.topology.spec.dns.node_local is None and not guarded.facts.node_local_dns
    assert "10.96.0.10" not in yaml.safe_dump(render(guarded.topology, guarded.facts))
    # Discovered: judged only with the facts (admission sees no cluster objects), and left out of them.
    discover = topology(dns={"discover": True})
    assert gr.check(discover, rails, {}) == []
    found_here = gr.check(discover, rails, {}, NODE_LOCAL_FACTS)
    assert [(v.path, v.text) for v in found_here] == [
        (
            "spec.dns.discover",
            "NodeLocal DNSCache 10.96.0.10, found in the cluster, is inside 10.96.0.0/12 (services), "
            "forbidden for egress",
        )
    ]
    guarded = gr.enforce(discover, rails, {}, NODE_LOCAL_FACTS)
    assert guarded.facts.node_local_dns_addresses == ("169.254.20.10",)
    assert guarded.topology == discover
    policies = yaml.safe_dump(render(guarded.topology, guarded.facts))
    assert "169.254.20.10/32" in policies and "10.96.0.10" not in policies
    # The default address, when the DaemonSet names none.
    default = ClusterFacts(node_local_dns=True)
    link_local = [guardrail(forbiddenCIDRs=[{"cidr": "169.254.0.0/16", "direction": "Egress"}])]
    guarded = gr.enforce(discover, link_local, {}, default)
    assert [v.path for v in guarded.violations] == ["spec.dns.discover"] and not guarded.facts.node_local_dns


def test_kube_api_is_judged_by_its_rule_only() -> None:
    t = topology(flows=[{"from": {"tier": "api"}, "to": {"kubeAPI": True}}], dns={"enabled": False})
    forbidden = guardrail(forbiddenCIDRs=[{"cidr": "0.0.0.0/0"}, {"cidr": "::/0"}], peerNamespaces={})
    assert gr.check(t, [forbidden], {}) == []
    refused = guardrail(kubeAPI="Forbid")
    assert [(v.rule, v.path) for v in gr.check(t, [refused], {})] == [("kubeAPI", "spec.flows[0].to.kubeAPI")]
    facts = ClusterFacts(kube_api=(APIEndpoint("10.96.0.1", 443),), in_cluster=True)
    guarded = gr.enforce(t, [refused], {}, facts)
    assert guarded.topology.spec.flows == [] and "10.96.0.1" not in yaml.safe_dump(render(guarded.topology, facts))


# --- property tests: enforce, judged by the evaluator ---------------------------------------------------------

FORGED = "forged"
ATTACKER_POD_LABELS = [
    {},
    {"app": "a"},
    {"app": "b"},
    {"tier": "x"},
    {"app": "a", "tier": "x"},
    {"k8s-app": "kube-dns"},
]
INTERNET = ["203.0.113.10", "198.51.100.7", "8.8.8.8", "2001:db8::10", "2606:4700::1"]


def inventory_for(topology: Any, rails: list[TopologyGuardrail], facts: ClusterFacts = OFFLINE) -> Inventory:
    """The synthesized inventory plus what a guardrail keeps out: pods in a namespace carrying every label
    the strategies select on except the name, addresses in each forbidden range, internet addresses, and
    the addresses the topology and the facts name (metadata, NodeLocal DNSCache, the API server)."""
    base = synthesize(topology, facts)
    namespaces = list(base.namespaces)
    if FORGED not in {n.name for n in namespaces}:
        namespaces.append(Namespace(FORGED, {"team": "ops", "name": "monitoring"}))
    pods = list(base.pods) + [Pod(FORGED, f"forged-{i}", labels) for i, labels in enumerate(ATTACKER_POD_LABELS)]
    externals = {e.address: e for e in base.externals}
    addresses = [*INTERNET, *(c.split("/")[0] for c in CLOUD_METADATA), *facts.node_local_dns_addresses]
    addresses += [NODE_LOCAL_DNS_DEFAULT, *(e.address for e in facts.kube_api or ())]
    if topology.spec.dns.node_local is not None:
        addresses += topology.spec.dns.node_local.addresses
    for rail in rails:
        for entry in rail.spec.forbidden_cidrs:
            net = ipaddress.ip_network(entry.cidr)
            addresses += [str(net.network_address), str(net.broadcast_address)]
    for address in addresses:
        ip = ipaddress.ip_address(address)
        externals.setdefault(f"{ip}/{ip.max_prefixlen}", External(f"{ip}/{ip.max_prefixlen}", f"{ip}"))
    return Inventory(tuple(namespaces), tuple(pods), tuple(externals.values()))


def connectivity_narrowed(
    original: Any,
    narrowed: Any,
    inventory: Inventory | None = None,
    facts: ClusterFacts = OFFLINE,
    narrowed_facts: ClusterFacts | None = None,
) -> list[str]:
    """Pairs the narrowed topology's policies (with its narrowed facts) allow more to than the original's
    (must be none)."""
    inventory = inventory or inventory_for(original, [], facts)
    before = Evaluator(render(original, facts), inventory)
    after = Evaluator(render(narrowed, facts if narrowed_facts is None else narrowed_facts), inventory)
    wider = []
    for src in inventory.endpoints:
        for dst in inventory.endpoints:
            extra = after.allowed(src, dst).difference(before.allowed(src, dst))
            if not extra.is_empty:
                wider.append(f"{src} -> {dst}: {extra}")
    return wider


def within(ext: External, cidr: str) -> bool:
    net = ipaddress.ip_network(cidr)
    return ext.network.version == net.version and ext.network.subnet_of(net)  # type: ignore[arg-type]


def guarantees_broken(
    narrowed: Any, rails: list[TopologyGuardrail], inventory: Inventory, facts: ClusterFacts = OFFLINE
) -> list[str]:
    """What the narrowed topology's policies allow against a guardrail's intent, in isolated directions.

    The API server's addresses are left out of the forbidden ranges: the kubeAPI rule alone judges them."""
    evaluator = Evaluator(render(narrowed, facts), inventory)
    intent = Intent(narrowed, facts)
    home = intent.namespace
    mine = [p for p in inventory.pods if p.namespace == home]
    api_server = {f"{e.address}/{ipaddress.ip_address(e.address).max_prefixlen}" for e in facts.kube_api or ()}
    problems = []
    for rail in rails:
        rules = rail.spec
        if rules.kube_api == "Forbid" and any(f.to.kube_api for f in narrowed.spec.flows):
            problems.append("a flow to the Kubernetes API is rendered")
        for pod in mine:
            egress, ingress = intent.isolated(pod, "egress"), intent.isolated(pod, "ingress")
            for ext in inventory.externals:
                for entry in rules.forbidden_cidrs if ext.address not in api_server else ():
                    inside = (
                        ext.network.subnet_of(ipaddress.ip_network(entry.cidr))
                        if ext.network.version == ipaddress.ip_network(entry.cidr).version
                        else False
                    )  # type: ignore[arg-type]
                    if not inside:
                        continue
                    if egress and entry.applies_to("Egress") and not evaluator.allowed(pod, ext).is_empty:
                        problems.append(f"{pod} reaches forbidden {ext}")
                    if ingress and entry.applies_to("Ingress") and not evaluator.allowed(ext, pod).is_empty:
                        problems.append(f"forbidden {ext} reaches {pod}")
                public = not any(within(ext, c) for c in rules.internal())
                if (
                    rules.internet_ingress == "Forbid"
                    and public
                    and ingress
                    and not evaluator.allowed(ext, pod).is_empty
                ):
                    problems.append(f"internet {ext} reaches {pod}")
            if rules.peer_namespaces is not None:
                allowed = {home, *rules.peer_namespaces.allowed}
                for other in inventory.pods:
                    if other.namespace in allowed:
                        continue
                    if egress and not evaluator.allowed(pod, other).is_empty:
                        problems.append(f"{pod} reaches unlisted {other}")
                    if ingress and not evaluator.allowed(other, pod).is_empty:
                        problems.append(f"unlisted {other} reaches {pod}")
            required = rules.required_default_deny
            covered = required is not None and (required.scope == "Namespace" or bool(intent.tiers_of(pod)))
            if covered and required and ((required.ingress and not ingress) or (required.egress and not egress)):
                problems.append(f"{pod} is not isolated as required")
    return problems


def _parse(doc: dict[str, Any]) -> Any:
    try:
        return parse_topology(copy.deepcopy(doc))
    except InvalidTopology:
        return None


FACTS = st.one_of(st.just(OFFLINE), cluster_facts_strategy())


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topologies(cluster=True), guardrail_documents(), FACTS)
def test_enforced_topology_violates_nothing_but_max_tiers(
    doc: dict[str, Any], rail_docs: list[dict[str, Any]], facts: ClusterFacts
) -> None:
    original = _parse(doc)
    if original is None:
        return
    rails = [parse_guardrail(d) for d in rail_docs]
    guarded = gr.enforce(original, rails, {}, facts)
    assert list(guarded.violations) == gr.check(original, rails, {}, facts)
    left = gr.check(guarded.topology, rails, {}, guarded.facts)
    assert left == [v for v in guarded.violations if v.rule == "maxTiers"]
    # A fixpoint: enforcing again changes nothing more.
    again = gr.enforce(guarded.topology, rails, {}, guarded.facts)
    assert (again.topology, again.facts) == (guarded.topology, guarded.facts)
    # What the operator would write is a valid topology.
    assert parse_topology(guarded.topology.model_dump(by_alias=True, exclude_none=True)) == guarded.topology
    # Only violations and the notes' dead flows are left out.
    noted = {n.path for n in guarded.notes}
    for i in guarded.dropped_flows:
        assert f"spec.flows[{i}]" in noted or any(v.flow == i for v in guarded.violations) or rails_limit_tiers(rails)


def rails_limit_tiers(rails: list[TopologyGuardrail]) -> bool:
    return any(r.spec.max_tiers is not None for r in rails)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topologies(cluster=True), guardrail_documents(), FACTS)
def test_enforced_topology_never_allows_more_and_keeps_the_guarantees(
    doc: dict[str, Any], rail_docs: list[dict[str, Any]], facts: ClusterFacts
) -> None:
    original = _parse(doc)
    if original is None:
        return
    rails = [parse_guardrail(d) for d in rail_docs]
    guarded = gr.enforce(original, rails, {}, facts)
    inventory = inventory_for(original, rails, facts)
    assert connectivity_narrowed(original, guarded.topology, inventory, facts, guarded.facts) == []
    assert guarantees_broken(guarded.topology, rails, inventory, guarded.facts) == []


def test_the_guarantee_check_is_not_vacuous() -> None:
    """Rendering the original instead of the narrowed topology breaks each guarantee the checks watch."""
    t = topology(
        defaultDeny={"egress": False},
        flows=[
            {"from": {"tier": "api"}, "to": {"ipBlock": {"cidr": "0.0.0.0/0"}}},
            {"from": {"anywhere": True}, "to": {"tier": "api"}},
            {"from": {"namespaceSelector": {"matchLabels": {"team": "ops"}}}, "to": {"tier": "api"}},
        ],
    )
    rails = [
        guardrail(
            forbiddenCIDRs=[{"cidr": "169.254.169.254/32"}],
            internetIngress="Forbid",
            peerNamespaces={"allowed": ["kube-system"]},
            requiredDefaultDeny={},
        )
    ]
    inventory = inventory_for(t, rails)
    broken = " | ".join(guarantees_broken(t, rails, inventory))
    for fragment in ("internet", "unlisted", "not isolated as required"):
        assert fragment in broken
    egress_on = t.model_copy(update={"spec": t.spec.model_copy(update={"default_deny": DefaultDeny()})})
    assert "reaches forbidden" in " | ".join(guarantees_broken(egress_on, rails, inventory))
    assert guarantees_broken(gr.enforce(t, rails, {}).topology, rails, inventory) == []
    # And the narrowing check sees a wider topology.
    assert connectivity_narrowed(gr.enforce(t, rails, {}).topology, t, inventory)


# --- the model ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({}, "spec.namespaceSelector", "required"),
        (
            {"namespaceSelector": {}, "forbiddenCIDRs": [{"cidr": "10.0.0.1/8"}]},
            "spec.forbiddenCIDRs[0].cidr",
            "beyond the prefix",
        ),
        (
            {"namespaceSelector": {}, "forbiddenCIDRs": [{"cidr": "2001:DB8::/32"}]},
            "spec.forbiddenCIDRs[0].cidr",
            "canonical",
        ),
        (
            {"namespaceSelector": {}, "forbiddenCIDRs": [{"cidr": "10.0.0.0/8", "direction": "Out"}]},
            "spec.forbiddenCIDRs[0].direction",
            "Both",
        ),
        ({"namespaceSelector": {}, "internalCIDRs": ["10.0.0.0/8", "x"]}, "spec.internalCIDRs[1]", "prefix length"),
        (
            {"namespaceSelector": {}, "peerNamespaces": {"allowed": ["a", "a"]}},
            "spec.peerNamespaces.allowed",
            "duplicate",
        ),
        (
            {"namespaceSelector": {}, "peerNamespaces": {"allowed": ["Kube_System"]}},
            "spec.peerNamespaces.allowed[0]",
            "pattern",
        ),
        ({"namespaceSelector": {}, "peerNamespaces": {"names": ["a"]}}, "spec.peerNamespaces.names", "unknown field"),
        ({"namespaceSelector": {}, "maxTiers": 0}, "spec.maxTiers", "greater than or equal to 1"),
        ({"namespaceSelector": {}, "maxFlows": 513}, "spec.maxFlows", "less than or equal to 512"),
        ({"namespaceSelector": {}, "maxFlows": "3"}, "spec.maxFlows", "integer"),
        ({"namespaceSelector": {}, "internetIngress": "Deny"}, "spec.internetIngress", "Allow or Forbid"),
        (
            {"namespaceSelector": {}, "requiredDefaultDeny": {"egress": "yes"}},
            "spec.requiredDefaultDeny.egress",
            "boolean",
        ),
        ({"namespaceSelector": {"matchLabels": {"a": "b\n"}}}, "spec.namespaceSelector.matchLabels", "label value"),
    ],
)
def test_invalid_guardrail_is_located(spec: dict[str, Any], path: str, fragment: str) -> None:
    doc = {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "TopologyGuardrail",
        "metadata": {"name": "g"},
        "spec": spec,
    }
    with pytest.raises(InvalidGuardrail) as info:
        parse_guardrail(doc)
    assert any(i.path == path and fragment in i.message for i in info.value.issues), info.value.issues


def test_not_a_guardrail() -> None:
    with pytest.raises(InvalidGuardrail, match="not a TopologyGuardrail"):
        parse_guardrail({"apiVersion": "apptopology.io/v1alpha1", "kind": "AppTopology"})
    with pytest.raises(InvalidGuardrail, match="mapping"):
        parse_guardrail([])


def test_defaults_restrict_nothing() -> None:
    spec = guardrail().spec
    assert (spec.peer_namespaces, spec.forbidden_cidrs, spec.internet_ingress) == (None, [], "Allow")
    assert (spec.required_default_deny, spec.max_tiers, spec.max_flows) == (None, None, None)
    assert gr.check(topology(flows=[{"from": {"anywhere": True}, "to": {"tier": "api"}}]), [guardrail()], {}) == []
    deny = guardrail(requiredDefaultDeny={}).spec.required_default_deny
    assert deny is not None and (deny.ingress, deny.egress, deny.scope) == (True, True, "Tiers")


@pytest.mark.parametrize(
    ("text", "labels"),
    [("", {}), ("a=b", {"a": "b"}), ("a=b, example.com/c=", {"a": "b", "example.com/c": ""}), ("a=b,a=b", {"a": "b"})],
)
def test_parse_labels(text: str, labels: dict[str, str]) -> None:
    assert parse_labels(text) == labels


@pytest.mark.parametrize(
    ("text", "fragment"), [("a", "KEY=VALUE"), ("a=b,a=c", "twice"), ("-a=b", "label key"), ("a=b c", "label value")]
)
def test_parse_labels_refuses(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_labels(text)


# --- the CLI -----------------------------------------------------------------------------------------------


def _files(tmp_path: Path, topo: dict[str, Any], rails: list[dict[str, Any]]) -> tuple[str, str]:
    t, g = tmp_path / "t.yaml", tmp_path / "g.yaml"
    t.write_text(yaml.safe_dump(topo))
    g.write_text(yaml.safe_dump_all(rails))
    return str(t), str(g)


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t, g = _files(tmp_path, CASES[0]["document"], case_guardrail_documents())
    assert main(["validate", "-f", t, "--namespace-labels", "a=b"]) == 2
    assert "goes with --guardrail" in capsys.readouterr().err
    assert main(["validate", "-f", t, "--guardrail", g, "--namespace-labels", "a"]) == 2
    assert "--namespace-labels: 'a' is not KEY=VALUE" in capsys.readouterr().err
    assert main(["validate", "-f", t, "--guardrail", g, "--namespace-labels", f"{NAME_LABEL}=elsewhere"]) == 2
    assert "the topology is in 'gc-compliant'" in capsys.readouterr().err


def test_cli_invalid_guardrail_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = copy.deepcopy(case_guardrail_documents())
    bad[1]["spec"]["forbiddenCIDRs"] = [{"cidr": "10.0.0.1/8"}]
    bad.append(copy.deepcopy(bad[0]))
    t, g = _files(tmp_path, CASES[0]["document"], bad)
    assert main(["validate", "-f", t, "--guardrail", g]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"error: {g}: document 1: spec.forbiddenCIDRs[0].cidr: cidr '10.0.0.1/8' has bits set")
    assert err[1] == f"error: {g}: TopologyGuardrail tenants given twice"
    assert "Traceback" not in "\n".join(err)


def test_cli_says_which_guardrails_applied(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t, g = _files(tmp_path, CASES[0]["document"], case_guardrail_documents())
    assert main(["validate", "-f", t, "--guardrail", g, "--namespace-labels", "tenancy=shared,cloud=aws"]) == 0
    assert (
        capsys.readouterr().out
        == "OK: AppTopology gc-compliant/shop (3 tiers, 5 flows; guardrails: metadata, tenants)\n"
    )
    assert main(["validate", "-f", t, "--guardrail", g]) == 0
    assert capsys.readouterr().out.endswith("; no guardrail applies)\n")
    assert main(["validate", "-f", t]) == 0
    assert capsys.readouterr().out == "OK: AppTopology gc-compliant/shop (3 tiers, 5 flows)\n"


# --- generated files ---------------------------------------------------------------------------------------


def test_committed_crds_and_admission_policy_are_the_generated_ones() -> None:
    assert crdgen.main(["--check"]) == 0
    assert (ROOT / crdgen.GUARDRAIL.path).read_text() == crdgen.render(crdgen.GUARDRAIL)
    assert admission.main(["--check", str(ROOT / admission.DEFAULT_PATH)]) == 0


def test_check_modes_catch_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "crd.yaml"
    stale.write_text(crdgen.render(crdgen.GUARDRAIL).replace("maxItems: 16", "maxItems: 17", 1))
    assert crdgen.main(["--kind", "TopologyGuardrail", "--check", str(stale)]) == 1
    stale.write_text(crdgen.render(crdgen.GUARDRAIL))
    assert crdgen.main(["--kind", "TopologyGuardrail", "--check", str(stale)]) == 0
    stale.write_text(admission.render().replace("Forbidden", "Invalid"))
    assert admission.main(["--check", str(stale)]) == 1
    assert admission.main(["--check", str(tmp_path / "missing.yaml")]) == 1


def test_guardrail_crd_shape() -> None:
    crd = crdgen.crd(crdgen.GUARDRAIL)
    assert crd["metadata"]["name"] == "topologyguardrails.apptopology.io"
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"]["kind"] == "TopologyGuardrail"
    version = crd["spec"]["versions"][0]
    assert "subresources" not in version
    schema = version["schema"]["openAPIV3Schema"]

    def undocumented(node: dict[str, Any], path: str) -> list[str]:
        out = []
        for name, sub in node.get("properties", {}).items():
            if name not in ("apiVersion", "kind", "metadata") and not sub.get("description"):
                out.append(f"{path}.{name}")
            out += undocumented(sub, f"{path}.{name}")
            if "items" in sub:
                out += undocumented(sub["items"], f"{path}.{name}[]")
        return out

    assert undocumented(schema, "") == []
    spec = schema["properties"]["spec"]
    assert spec["required"] == ["namespaceSelector"]
    assert spec["properties"]["peerNamespaces"]["properties"]["allowed"]["x-kubernetes-list-type"] == "set"
    assert spec["properties"]["internetIngress"]["default"] == "Allow"


def test_admission_policy_shape() -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / admission.DEFAULT_PATH).read_text()) if d]
    policy, binding = docs
    assert policy["spec"]["paramKind"] == {"apiVersion": "apptopology.io/v1alpha1", "kind": "TopologyGuardrail"}
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert policy["spec"]["matchConstraints"]["resourceRules"][0]["resources"] == ["apptopologies"]
    assert binding["spec"]["paramRef"] == {"selector": {}, "parameterNotFoundAction": "Allow"}
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert "matchResources" not in binding["spec"]
    names = [v["name"] for v in policy["spec"]["variables"]]
    assert len(names) == len(set(names))
    text = yaml.safe_dump(policy)
    for rule in gr.RULES:
        assert f"({rule})" in text
    for cidr in DEFAULT_INTERNAL_CIDRS:
        assert f"'{cidr}'" in text


@given(st.sampled_from(CASES))
def test_admission_text_is_path_text_rule(case: dict[str, Any]) -> None:
    for v in gr.check(parse_topology(case["document"]), CASE_GUARDRAILS, case["labels"]):
        assert v.admission_text == f"{v.path}: {v.text} ({v.rule})"
        assert "; " not in v.text  # the refusal separates violations with "; "
        assert str(v) == f"{v.path}: {v.text} (TopologyGuardrail {v.guardrail}: {v.rule})"


# --- the docs ----------------------------------------------------------------------------------------------


def test_docs_guardrail_and_output_are_real(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    section = (ROOT / "docs" / "guardrails.md").read_text()
    block = section[section.index("```yaml\n") + 8 : section.index("```", section.index("```yaml\n") + 8)]
    example = ROOT / "examples" / "guardrails" / "tenants.yaml"
    assert yaml.safe_load(block) == yaml.safe_load(example.read_text())
    console = section[section.index("```console\n") + 11 :]
    lines = console[: console.index("```")].splitlines()
    command = lines[0].removeprefix("$ apptopology ").split()
    assert command[:1] == ["validate"]
    monkeypatch.chdir(ROOT)
    code = main(command)
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert err == [line for line in lines[1:] if line.startswith("error: ")]


def test_guardrails_may_be_any_iterable() -> None:
    t = topology(defaultDeny={"egress": False}, flows=[{"from": {"tier": "api"}, "to": {"tier": "api"}}] * 2)
    rails = [guardrail(maxFlows=1, requiredDefaultDeny={}), guardrail(maxTiers=1)]
    guarded = gr.enforce(t, iter(rails), {})
    assert guarded == gr.enforce(t, rails, {})
    assert guarded.dropped_flows == (1,) and guarded.topology.spec.default_deny.egress


def test_admission_refuses_unknown_endpoint_kinds_in_the_same_words() -> None:
    assert admission._CANNOT_JUDGE == gr.CANNOT_JUDGE
    known = yaml.safe_load(admission._KNOWN_ENDPOINT_KEYS)
    aliases = {Endpoint.model_fields[n].alias or n for n in gr._ENDPOINT_FIELDS}
    assert set(known) == aliases
    assert admission.render().count(gr.CANNOT_JUDGE) >= 3
