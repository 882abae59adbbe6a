"""Hypothesis strategies shared by the property tests: random but valid-looking AppTopology documents.

The generators cover every scope, isolation, endpoint kind (tiers, ipBlocks with except, anywhere, AND
peers), port form (numbers, ranges, names, protocols) and the DNS/monitoring variants.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from apptopology.render.facts import APIEndpoint, ClusterFacts, DNSService, FactPort

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
DISCOVERY = st.sampled_from(
    [
        {"discover": True},
        {"discover": True, "service": {"namespace": "dns", "name": "coredns"}},
        {"discover": True, "nodeLocal": {"addresses": ["169.254.20.10"]}},
        {"nodeLocal": {"addresses": ["169.254.20.10", "fd00::10"]}},
        {},
    ]
)


@st.composite
def cluster_facts_strategy(draw: st.DrawFn) -> ClusterFacts:
    """Facts as a cluster may give them: DNS Services (numeric or named target ports, 5353), NodeLocal
    DNSCache with or without its addresses, API server addresses on several ports, or none known."""
    services = draw(
        st.lists(
            st.sampled_from(
                [
                    DNSService(
                        "kube-system",
                        "kube-dns",
                        (("k8s-app", "kube-dns"),),
                        (FactPort("UDP", 53), FactPort("TCP", 53)),
                        (FactPort("UDP", 53), FactPort("TCP", 53)),
                    ),
                    DNSService(
                        "openshift-dns",
                        "dns-default",
                        (("dns.operator.openshift.io/daemonset-dns", "default"),),
                        (FactPort("UDP", 5353), FactPort("TCP", "dns-tcp")),
                        (FactPort("UDP", 53), FactPort("TCP", 53)),
                    ),
                    DNSService("dns", "coredns", (("app", "a"),), (FactPort("UDP", 1053),), (FactPort("UDP", 53),)),
                    DNSService(
                        "kube-system",
                        "kube-dns",
                        (("k8s-app", "kube-dns"),),
                        (FactPort("UDP", 8053), FactPort("TCP", "dns-tcp")),
                        (FactPort("UDP", 53), FactPort("TCP", 53)),
                    ),
                ]
            ),
            max_size=2,
            unique=True,
        )
    )
    node_local = draw(st.sampled_from([(False, ()), (True, ()), (True, ("169.254.20.10", "10.96.0.10"))]))
    kube_api = draw(
        st.sampled_from(
            [
                None,
                (),
                (APIEndpoint("10.96.0.1", 443), APIEndpoint("172.18.0.2", 6443)),
                (APIEndpoint("172.18.0.2", 6443), APIEndpoint("172.18.0.2", 443), APIEndpoint("fd00::2", 6443)),
            ]
        )
    )
    return ClusterFacts(tuple(services), node_local[0], node_local[1], kube_api, in_cluster=kube_api is not None)


@st.composite
def topologies(draw: st.DrawFn, refusable: bool = False, cluster: bool = False) -> dict[str, Any]:
    """Random topologies. Flows to (from) pods of the namespace by podSelector alone, which scope Namespace
    refuses in an isolated direction, get a namespaceSelector unless ``refusable``. ``cluster``: also what
    cluster facts resolve (dns.discover, nodeLocal, kubeAPI flows)."""
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
    if cluster:
        spec["dns"] = {**(dns or {}), **draw(DISCOVERY)}
        for _ in range(draw(st.integers(0, 2))):
            spec["flows"].append({"from": {"tier": draw(st.sampled_from(names))}, "to": {"kubeAPI": True}})
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
