"""Hypothesis strategies for TopologyGuardrails that overlap what tests/strategies.py's topologies use: its
namespace selectors (``team: ops``, ``kubernetes.io/metadata.name: x``, ``{}``), the default DNS namespace
(kube-system), its CIDRs (0.0.0.0/0, 10.0.0.0/8 with except 10.1.0.0/16, 203.0.113.0/24, ::/0 except
fc00::/7), and ranges inside, around and beside them; and what tests/strategies.py's cluster facts and DNS
variants hold (NodeLocal DNSCache 169.254.20.10 and 10.96.0.10, API servers in 10.96.0.0/12 and 172.18.0.0/16,
DNS Services in kube-system, openshift-dns and dns)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

FORBIDDEN = [
    "169.254.169.254/32",
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.0/24",
    "10.2.0.0/16",
    "192.168.0.0/16",
    "203.0.113.0/24",
    "203.0.113.128/25",
    "fc00::/7",
    "fd00:ec2::254/128",
    "2001:db8::/32",
    "169.254.0.0/16",
    "10.96.0.0/12",
    "fd00::/8",
]
INTERNAL = [None, [], ["10.0.0.0/8"], ["203.0.113.0/24", "10.0.0.0/8"], ["0.0.0.0/0"]]
PEER_NAMESPACES = ["kube-system", "x", "monitoring", "ops", "openshift-dns", "dns"]


@st.composite
def guardrail_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A guardrail spec that selects every namespace (``{}``), with a random subset of the rules."""
    spec: dict[str, Any] = {"namespaceSelector": {}}
    peers = draw(st.one_of(st.none(), st.lists(st.sampled_from(PEER_NAMESPACES), unique=True, max_size=3)))
    if peers is not None:
        spec["peerNamespaces"] = {"allowed": peers} if peers else {}
    forbidden = draw(st.lists(st.sampled_from(FORBIDDEN), unique=True, max_size=3))
    if forbidden:
        spec["forbiddenCIDRs"] = [
            {"cidr": c, "direction": draw(st.sampled_from(["Both", "Egress", "Ingress"]))} for c in forbidden
        ]
    if draw(st.booleans()):
        spec["internetIngress"] = "Forbid"
        internal = draw(st.sampled_from(INTERNAL))
        if internal is not None:
            spec["internalCIDRs"] = internal
    deny = draw(
        st.sampled_from([None, {}, {"scope": "Namespace"}, {"ingress": False}, {"egress": False, "scope": "Namespace"}])
    )
    if deny is not None:
        spec["requiredDefaultDeny"] = deny
    if draw(st.booleans()):
        spec["kubeAPI"] = draw(st.sampled_from(["Allow", "Forbid"]))
    limit = draw(st.sampled_from([None, 1, 2]))
    if limit is not None:
        spec["maxTiers"] = limit
    limit = draw(st.sampled_from([None, 0, 1, 3]))
    if limit is not None:
        spec["maxFlows"] = limit
    return spec


@st.composite
def guardrail_documents(draw: st.DrawFn) -> list[dict[str, Any]]:
    """One or two guardrails (names g0, g1)."""
    specs = draw(st.lists(guardrail_specs(), min_size=1, max_size=2))
    return [
        {"apiVersion": "apptopology.io/v1alpha1", "kind": "TopologyGuardrail", "metadata": {"name": f"g{i}"}, "spec": s}
        for i, s in enumerate(specs)
    ]
