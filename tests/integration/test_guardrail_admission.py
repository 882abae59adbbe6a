"""TopologyGuardrails at admission, on the real API server (the ValidatingAdmissionPolicy from deploy/).

Every guardrail of tests/cases/guardrails.yaml exists at once; each case's topology is created in its own
namespace with the case's labels, and the refusal must quote exactly the violations the pure check lists
(the first five of the guardrail that refused it, then how many more), or the topology must be admitted.
Random topologies against the same guardrails hold the CEL and the Python check to each other beyond the
written cases, the largest topologies the CRD admits stay within the API server's CEL cost limits, and a
topology admitted before a guardrail selected its namespace keeps its metadata editable.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from harness import Cluster, ControlPlane, wait_for
from hypothesis import HealthCheck, given, settings
from kubernetes import client

from apptopology.analysis.intent import satisfying_labels
from apptopology.api.guardrail import MAX_LISTED, NAME_LABEL, parse_guardrail
from apptopology.api.spec import AppTopology
from apptopology.api.validation import InvalidTopology
from apptopology.render import guardrails as gr
from apptopology.render.validation import parse_topology
from shared import guardrail_cases, guardrail_documents
from strategies import topologies

pytestmark = pytest.mark.integration

GROUP, VERSION = "apptopology.io", "v1alpha1"
REFUSAL = re.compile(r"denied request: TopologyGuardrail (\S+): (.*)$", re.S)

# Besides the cases' guardrails: one with the largest lists the CRD allows, for the cost tests, and one
# more for the random topologies. Each selects namespaces by a label of its own.
MAX_GUARDRAIL = {
    "apiVersion": "apptopology.io/v1alpha1",
    "kind": "TopologyGuardrail",
    "metadata": {"name": "max"},
    "spec": {
        "namespaceSelector": {"matchLabels": {"guard-max": "yes"}},
        "peerNamespaces": {"allowed": ["kube-system", *(f"ns{i}" for i in range(63))]},
        "forbiddenCIDRs": [{"cidr": f"10.{i}.0.0/16", "description": "x" * 100} for i in range(16)],
        "internetIngress": "Forbid",
        "internalCIDRs": [f"{i}.0.0.0/8" for i in range(1, 17)],
        "requiredDefaultDeny": {"scope": "Namespace"},
        "kubeAPI": "Forbid",
        "maxTiers": 64,
        "maxFlows": 512,
    },
}
RANDOM_GUARDRAIL = {
    "apiVersion": "apptopology.io/v1alpha1",
    "kind": "TopologyGuardrail",
    "metadata": {"name": "random"},
    "spec": {
        "namespaceSelector": {"matchExpressions": [{"key": "guard-random", "operator": "In", "values": ["yes"]}]},
        "peerNamespaces": {"allowed": ["x", "kube-system"]},
        "forbiddenCIDRs": [
            {"cidr": "10.1.0.0/16", "direction": "Ingress"},
            {"cidr": "192.168.0.0/16", "direction": "Egress", "description": "nodes"},
            {"cidr": "fc00::/7"},
        ],
        "internetIngress": "Forbid",
        "internalCIDRs": ["203.0.113.0/24", "10.0.0.0/8"],
        "requiredDefaultDeny": {"egress": False},
        "kubeAPI": "Forbid",
        "maxTiers": 2,
        "maxFlows": 3,
    },
}
ALL_GUARDRAILS = [*guardrail_documents(), MAX_GUARDRAIL, RANDOM_GUARDRAIL]
PARSED = [parse_guardrail(d) for d in ALL_GUARDRAILS]


def _probe_topology(namespace: str) -> dict[str, Any]:
    """A topology every guardrail here refuses (too many tiers and flows, anywhere both ways)."""
    tiers = [{"name": f"t{i}", "podSelector": {"matchLabels": {"app": f"t{i}"}}} for i in range(6)]
    flows = [{"from": {"anywhere": True}, "to": {"tier": "t0"}}] * 4 + [
        {"from": {"tier": "t0"}, "to": {"anywhere": True}}
    ] * 4
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AppTopology",
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {"defaultDeny": {"egress": False}, "tiers": tiers, "flows": flows},
    }


class Admission:
    """Creates topologies as an admin would (the Python client, so the refusal's message is exact)."""

    def __init__(self, cp: ControlPlane):
        self.cp = cp
        self.custom = client.CustomObjectsApi(cp.api)
        self.core = client.CoreV1Api(cp.api)

    def namespace(self, name: str, labels: dict[str, str]) -> None:
        """A namespace created with its labels at once (the policy reads namespaces from a cache)."""
        self.core.create_namespace({"metadata": {"name": name, "labels": labels}})

    def create(self, doc: dict[str, Any], dry_run: bool = False) -> str | None:
        """None when admitted, else the API server's message. A request that timed out (504: the machine
        loaded, the largest topologies' CEL taking longer than the request may) has no answer yet: asked
        again, up to three times."""
        for attempt in range(3):
            try:
                self.custom.create_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    doc["metadata"]["namespace"],
                    "apptopologies",
                    doc,
                    **({"dry_run": "All"} if dry_run else {}),
                )
            except client.ApiException as exc:
                if exc.status == 504 and dry_run and attempt < 2:  # a real create may have happened
                    continue
                return str(json.loads(exc.body)["message"])
            return None
        raise AssertionError("unreachable")

    def refuses(self, namespace: str, guardrail: str | None = None) -> bool:
        """Whether a guardrail (``guardrail``, or any) refuses the probe topology in ``namespace``."""
        message = self.create(_probe_topology(namespace), dry_run=True)
        match = REFUSAL.search(message or "")
        return match is not None and guardrail in (None, match.group(1))


@pytest.fixture(scope="module")
def admission(controlplane: ControlPlane) -> Iterator[Admission]:
    """Every guardrail in the cluster, each seen by the admission policy before the tests start."""
    adm = Admission(controlplane)
    for doc in ALL_GUARDRAILS:
        adm.custom.create_cluster_custom_object(GROUP, VERSION, "topologyguardrails", doc)
    try:
        for doc, parsed in zip(ALL_GUARDRAILS, PARSED, strict=True):
            labels = satisfying_labels(parsed.spec.namespace_selector) or {}
            name = doc["metadata"]["name"]
            adm.namespace(f"gp-{name}", labels)
            wait_for(lambda name=name: adm.refuses(f"gp-{name}", name), timeout=30, what=f"guardrail {name} in force")
        yield adm
    finally:
        for doc in ALL_GUARDRAILS:
            adm.custom.delete_cluster_custom_object(GROUP, VERSION, "topologyguardrails", doc["metadata"]["name"])


def expected_refusal(topology: Any, labels: dict[str, str]) -> dict[str, str]:
    """Per guardrail that the topology violates, the refusal text the policy must give."""
    by_guardrail: dict[str, list[str]] = {}
    for v in gr.check(topology, PARSED, labels):
        by_guardrail.setdefault(v.guardrail, []).append(v.admission_text)
    out = {}
    for name, texts in by_guardrail.items():
        shown = "; ".join(texts[:MAX_LISTED])
        if len(texts) > MAX_LISTED:
            shown += f"; and {len(texts) - MAX_LISTED} more"
        out[name] = shown
    return out


def assert_agrees(message: str | None, expected: dict[str, str]) -> None:
    if not expected:
        assert message is None, f"refused, but the check finds nothing: {message}"
        return
    assert message is not None, f"admitted, but the check finds: {expected}"
    match = REFUSAL.search(message)
    assert match, message
    name, body = match.groups()
    assert name in expected, f"refused by {name}, the check says {sorted(expected)}: {message}"
    assert body == expected[name]


# --- the shared cases ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", guardrail_cases(), ids=lambda c: c["id"])
def test_case_at_admission(admission: Admission, case: dict[str, Any]) -> None:
    admission.namespace(case["namespace"], case["labels"])
    message = admission.create(copy.deepcopy(case["document"]))
    # The case's own list, in the check's words (the unit tests compare that list with the check).
    by_guardrail: dict[str, list[str]] = {}
    for v in case["violations"]:
        by_guardrail.setdefault(v["guardrail"], []).append(f"{v['path']}: {v['text']} ({v['rule']})")
    expected = {
        name: "; ".join(texts[:MAX_LISTED])
        + (f"; and {len(texts) - MAX_LISTED} more" if len(texts) > MAX_LISTED else "")
        for name, texts in by_guardrail.items()
    }
    assert_agrees(message, expected)
    if message is not None:
        assert "is forbidden" in message  # reason Forbidden (403), not Invalid


def test_every_guardrail_is_seen_and_only_where_it_selects(admission: Admission) -> None:
    admission.namespace("gc-unlabelled", {})
    assert not admission.refuses("gc-unlabelled")
    for doc in ALL_GUARDRAILS:
        assert admission.refuses(f"gp-{doc['metadata']['name']}", doc["metadata"]["name"])


# --- random topologies: the CEL and the Python check agree -------------------------------------------------

RANDOM_NAMESPACES = {
    "gr-shared": {"tenancy": "shared"},
    "gr-strict": {"tenancy": "strict"},
    "gr-random": {"guard-random": "yes", "cloud": "aws"},
    "gr-levels": {"guard-level": "gold", "guard-team": "a"},
}


@pytest.fixture(scope="module")
def random_namespaces(admission: Admission) -> Admission:
    for name, labels in RANDOM_NAMESPACES.items():
        admission.namespace(name, labels)
    return admission


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=topologies(cluster=True))
def test_random_topologies_refused_exactly_when_the_check_says(
    random_namespaces: Admission, doc: dict[str, Any]
) -> None:
    for namespace, labels in RANDOM_NAMESPACES.items():
        placed = copy.deepcopy(doc)
        placed["metadata"]["namespace"] = namespace
        try:
            topology = parse_topology(copy.deepcopy(placed))
        except InvalidTopology:
            return  # the CRD refuses these for their own reasons
        message = random_namespaces.create(placed, dry_run=True)
        assert_agrees(message, expected_refusal(topology, {**labels, NAME_LABEL: namespace}))


# --- cost: the largest topologies the CRD admits -----------------------------------------------------------


def _largest(name: str, namespace: str, flow: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AppTopology",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "dns": {"namespaceSelector": {"matchLabels": {NAME_LABEL: "kube-system"}}},
            "tiers": [{"name": f"t{i}", "podSelector": {"matchLabels": {"app": f"t{i}"}}} for i in range(64)],
            "flows": [copy.deepcopy(flow) for _ in range(512)],
            **spec,
        },
    }


# Every NodeLocal DNSCache address the CRD allows, each inside a forbidden range of MAX_GUARDRAIL.
NODE_LOCAL = {"addresses": [f"10.{i}.0.10" for i in range(8)]}


COST_CASES = {
    # 512 flows x 16 forbidden ranges x 32 except entries, none of which covers them: the most work there is.
    "cidr-refused": {
        "from": {"tier": "t0"},
        "to": {"ipBlock": {"cidr": "0.0.0.0/0", "except": [f"11.{j}.0.0/16" for j in range(32)]}},
    },
    # The same work, all excepted (the last except entries cover the forbidden ranges): admitted.
    "cidr-admitted": {
        "from": {"tier": "t0"},
        "to": {
            "ipBlock": {
                "cidr": "0.0.0.0/0",
                "except": [f"11.{j}.0.0/16" for j in range(16)] + [f"10.{j}.0.0/16" for j in range(16)],
            }
        },
    },
    # 512 flows x 16 expressions x 32 names (the request is then near the API server's 3 MiB), all allowed.
    "peers-admitted": {
        "from": {"tier": "t0"},
        "to": {
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": NAME_LABEL, "operator": "In", "values": [f"ns{(k + j) % 63}" for k in range(32)]}
                    for j in range(16)
                ]
            }
        },
    },
    "internet-refused": {
        "from": {"ipBlock": {"cidr": "203.0.113.0/24", "except": [f"203.0.113.{4 * j}/30" for j in range(32)]}},
        "to": {"tier": "t0"},
    },
    # 512 flows to anywhere, each including all 16 forbidden ranges.
    "anywhere-refused": {"from": {"tier": "t0"}, "to": {"anywhere": True}},
    # 512 flows to the metadata service, judged against 16 ranges, none of which holds it.
    "metadata-admitted": {"from": {"tier": "t0"}, "to": {"cloudMetadata": True}, "ports": [{"port": 80}]},
    "kube-api-refused": {"from": {"tier": "t0"}, "to": {"kubeAPI": True}},
}
# More of the spec for some: every tier exempting itself both ways (scope Tiers), all NodeLocal addresses.
COST_SPECS: dict[str, dict[str, Any]] = {
    "anywhere-refused": {
        "dns": {"namespaceSelector": {"matchLabels": {NAME_LABEL: "kube-system"}}, "nodeLocal": NODE_LOCAL},
    },
    "kube-api-refused": {
        "defaultDeny": {"scope": "Tiers"},
        "tiers": [
            {
                "name": f"t{i}",
                "podSelector": {"matchLabels": {"app": f"t{i}"}},
                "isolation": {"ingress": False, "egress": False},
            }
            for i in range(64)
        ],
    },
}


@pytest.mark.parametrize("name", list(COST_CASES))
def test_largest_topologies_stay_within_the_cel_cost_limits(admission: Admission, name: str) -> None:
    doc = _largest(name, "gp-max", COST_CASES[name], **COST_SPECS.get(name, {}))
    # The model, not parse_topology: these are too large to render (the annotation limit), not to admit.
    topology = AppTopology.model_validate(copy.deepcopy(doc))
    expected = expected_refusal(topology, {"guard-max": "yes", NAME_LABEL: "gp-max"})
    assert bool(expected) == name.endswith("-refused")
    message = admission.create(doc, dry_run=True)
    assert message is None or "cost" not in message, message
    assert_agrees(message, expected)


# --- topologies admitted before a guardrail selected their namespace ---------------------------------------


def test_metadata_of_an_earlier_topology_stays_editable(admission: Admission, cluster: Cluster) -> None:
    namespace = "gc-late"
    admission.namespace(namespace, {})
    doc = _probe_topology(namespace)
    doc["metadata"]["name"] = "shop"
    assert admission.create(doc) is None
    admission.core.patch_namespace(namespace, {"metadata": {"labels": {"tenancy": "shared"}}})
    wait_for(lambda: admission.refuses(namespace), timeout=30, what="the guardrail to select gc-late")
    custom = admission.custom
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "apptopologies", "shop", {"metadata": {"annotations": {"a": "b"}}}
    )
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "apptopologies", "shop", {"status": {"tierCount": 6}}
    )
    with pytest.raises(client.ApiException) as refused:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "apptopologies", "shop", {"spec": {"flows": []}}
        )
    message = json.loads(refused.value.body)["message"]
    assert "TopologyGuardrail tenants: spec.tiers[4]" in message  # still too many tiers: a changed spec is judged whole
    stored = cluster.get(namespace, "shop")
    assert stored is not None and stored["metadata"]["annotations"] == {"a": "b"} and len(stored["spec"]["flows"]) == 8


def test_policy_objects_are_the_committed_ones(controlplane: ControlPlane) -> None:
    """What deploy/ installed is what the generator writes (the API server kept every expression)."""
    from apptopology.api import admission as generator

    live = yaml.safe_load(
        controlplane.kubectl("get", "validatingadmissionpolicy", generator.POLICY_NAME, "-o", "yaml").stdout
    )
    assert live["spec"]["variables"] == generator.policy()["spec"]["variables"]
    assert live["spec"]["validations"] == generator.policy()["spec"]["validations"]
    status = wait_for(
        lambda: (
            yaml.safe_load(
                controlplane.kubectl("get", "validatingadmissionpolicy", generator.POLICY_NAME, "-o", "yaml").stdout
            )
            .get("status", {})
            .get("observedGeneration")
        ),
        what="the policy's status",
    )
    assert status == live["metadata"]["generation"]
