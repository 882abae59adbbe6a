"""Hypothesis strategies shared by the property tests: random but valid-looking AppTopology documents.

The generators cover every scope, isolation, endpoint kind (tiers, ipBlocks with except, anywhere, AND
peers), port form (numbers, ranges, names, protocols) and the DNS/monitoring variants.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

LABELS = st.sampled_from([{}, {"app": "a"}, {"app": "b"}, {"tier": "x"}, {"app": "a", "tier": "x"}])
EXPRESSIONS = st.sampled_from(
    [
        [],
        [{"key": "app", "operator": "In", "values": ["a", "b"]}],
        [{"key": "app", "operator": "NotIn", "values": ["a"]}],
        [{"key": "tier", "operator": "Exists"}],
        [{"key": "tier", "operator": "DoesNotExist"}],
    ]
)


@st.composite
def selectors(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    labels = draw(LABELS)
    if labels:
        out["matchLabels"] = labels
    expressions = draw(EXPRESSIONS)
    if expressions:
        out["matchExpressions"] = expressions
    return out


PORTS = st.lists(
    st.sampled_from(
        [
            {"port": 80},
            {"port": 443},
            {"port": 53, "protocol": "UDP"},
            {"port": 8000, "endPort": 8100},
            {"port": 8080, "endPort": 8080},
            {"port": "http"},
            {"port": "dns", "protocol": "UDP"},
            {"port": 3868, "protocol": "SCTP"},
            {"protocol": "UDP"},
            {"protocol": "TCP"},
        ]
    ),
    max_size=3,
)
CIDRS = st.sampled_from(
    [
        {"cidr": "0.0.0.0/0"},
        {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "192.168.0.0/16"]},
        {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]},
        {"cidr": "203.0.113.0/24"},
        {"cidr": "::/0", "except": ["fc00::/7"]},
    ]
)


@st.composite
def endpoints(draw: st.DrawFn, tiers: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(["tier", "tier", "ipBlock", "anywhere", "ns", "pod", "both", "metadata"]))
    if kind == "tier":
        return {"tier": draw(st.sampled_from(tiers))}
    if kind == "metadata":
        return {"cloudMetadata": True}
    if kind == "ipBlock":
        return {"ipBlock": draw(CIDRS)}
    if kind == "anywhere":
        return {"anywhere": True}
    out: dict[str, Any] = {}
    if kind in ("ns", "both"):
        out["namespaceSelector"] = draw(
            st.sampled_from(
                [{}, {"matchLabels": {"team": "ops"}}, {"matchLabels": {"kubernetes.io/metadata.name": "x"}}]
            )
        )
    if kind in ("pod", "both"):
        out["podSelector"] = draw(selectors())
    return out


OPS = {"matchLabels": {"team": "ops"}}


@st.composite
def topologies(draw: st.DrawFn, refusable: bool = False) -> dict[str, Any]:
    """Random topologies. Flows to (from) pods of the namespace by podSelector alone, which scope Namespace
    refuses in an isolated direction, get a namespaceSelector unless ``refusable``."""
    names = draw(st.lists(st.sampled_from(["web", "api", "db", "cache"]), min_size=1, max_size=3, unique=True))
    scope = draw(st.sampled_from(["Namespace", "Tiers"]))
    deny = {"scope": scope, "ingress": draw(st.booleans()), "egress": draw(st.booleans())}
    tiers = [{"name": n, "podSelector": draw(selectors())} for n in names]
    for tier in tiers:
        # Per-tier isolation; in scope Namespace a tier can only add to the default-deny's directions.
        isolation = {}
        for direction in ("ingress", "egress"):
            if (scope == "Tiers" or not deny[direction]) and draw(st.booleans()):
                isolation[direction] = draw(st.booleans())
        if isolation:
            tier["isolation"] = isolation
    flows = []
    for _ in range(draw(st.integers(0, 4))):
        src = draw(endpoints(names))
        dst = draw(endpoints(names))
        if "cloudMetadata" in src:  # a destination only
            src = {"tier": draw(st.sampled_from(names))}
        if "tier" not in src and "tier" not in dst:
            dst = {"tier": draw(st.sampled_from(names))}
        if not refusable and scope == "Namespace":
            for endpoint, direction in ((dst, "ingress"), (src, "egress")):
                if deny[direction] and "podSelector" in endpoint and "namespaceSelector" not in endpoint:
                    endpoint["namespaceSelector"] = OPS
        flow: dict[str, Any] = {"from": src, "to": dst}
        ports = draw(PORTS)
        if ports:
            flow["ports"] = ports
        flows.append(flow)
    spec: dict[str, Any] = {
        "defaultDeny": deny,
        "tiers": tiers,
        "flows": flows,
    }
    dns = draw(
        st.sampled_from(
            [
                None,
                {"enabled": False},
                {"podSelector": {}},
                {"ports": [{"port": "dns", "protocol": "UDP"}]},
                {"ports": [{"protocol": "UDP"}]},
            ]
        )
    )
    if dns is not None:
        spec["dns"] = dns
    if draw(st.booleans()):
        spec["monitoring"] = {
            "enabled": True,
            "namespaceSelector": {"matchLabels": {"name": "monitoring"}},
            "podSelector": draw(st.sampled_from([{}, {"matchLabels": {"app": "prometheus"}}])),
            "ports": [{"port": 9090}],
            "tiers": draw(st.sampled_from([None, names[:1]])),
        }
        if spec["monitoring"]["tiers"] is None:
            del spec["monitoring"]["tiers"]
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": "t", "namespace": "home"},
        "spec": spec,
    }
