"""Property test: the evaluator agrees with a deliberately naive re-reading of the API reference.

The naive evaluator below works on the raw dicts, enumerates a small port universe and
every address of small External CIDRs, and shares no code with the engine beyond the
stdlib `ipaddress` module.
"""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apptopology.evaluator import ContainerPort, Evaluator, External, Inventory, Namespace, Pod

PROTOS = ("TCP", "UDP", "SCTP")
PORTS = (1, 53, 80, 443, 999, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 8080, 9090, 65535)
NAMESPACES = ("a", "b", "c")
LABELS = {"app": ("web", "api", "db"), "tier": ("fe", "be")}
NS_LABELS = {"team": ("x", "y"), "env": ("prod",)}
POD_IPS = ("10.0.0.1", "10.0.0.2", "10.0.1.1", "192.168.0.2", "fd00::1", "fd00::1:1", None)
CONTAINER_PORTS = {  # name -> what it may stand for on a given pod (varies per pod, as in real clusters)
    "http": ((80, "TCP"), (8080, "TCP")),
    "dns": ((53, "UDP"), (53, "TCP")),
    "metrics": ((9090, "TCP"), (1003, "SCTP"), (1001, "UDP")),
}
EXTERNALS = ("192.168.0.1", "192.168.0.0/30", "10.0.0.2", "fd00::1:0/126", "8.8.8.8")
CIDRS = {  # cidr -> candidate excepts (strict subsets)
    "10.0.0.0/24": ("10.0.0.2/32", "10.0.0.0/31"),
    "10.0.0.0/8": ("10.0.1.0/24", "10.0.0.0/24"),
    "192.168.0.0/30": ("192.168.0.1/32", "192.168.0.2/31"),
    "192.168.0.2/31": ("192.168.0.3/32",),
    "0.0.0.0/0": ("10.0.0.0/8", "192.168.0.0/31"),
    "fd00::/64": ("fd00::1:0/127", "fd00::1/128"),
    "fd00::1:0/127": (),
    "::/0": ("fd00::/16",),
}
PORT_NAMES = ("http", "dns", "metrics", "nope")
EXPLAIN_PORTS = (53, 80, 1001, 1003, 8080)  # explain() is checked on a subset to keep the run short


# --------------------------------------------------------------------------- the naive evaluator


@dataclass(frozen=True)
class Ep:
    """A naive endpoint: a pod (ns set) or an external (ns None) with all of its addresses."""

    ns: str | None
    labels: dict[str, str]
    addrs: tuple[str | None, ...]
    ports: tuple[tuple[str, int, str], ...]


def naive_selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        present, value = e["key"] in labels, labels.get(e["key"])
        op = e["operator"]
        if op == "In" and not (present and value in e["values"]):
            return False
        if op == "NotIn" and present and value in e["values"]:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def naive_types(spec: dict[str, Any]) -> set[str]:
    if spec.get("policyTypes"):
        return set(spec["policyTypes"])
    return {"Ingress", "Egress"} if spec.get("egress") else {"Ingress"}


def naive_in_block(addr: str | None, block: dict[str, Any]) -> bool:
    if addr is None:
        return False
    ip = ipaddress.ip_address(addr)
    net = ipaddress.ip_network(block["cidr"])
    if ip.version != net.version or ip not in net:
        return False
    return not any(ip in ipaddress.ip_network(x) for x in block.get("except") or [])


def naive_peer(
    peer: dict[str, Any], policy_ns: str, ep: Ep, addr: str | None, ns_labels: dict[str, dict[str, str]]
) -> bool:
    if "ipBlock" in peer:
        return naive_in_block(addr, peer["ipBlock"])
    if ep.ns is None:
        return False
    if "namespaceSelector" in peer:
        if not naive_selects(peer["namespaceSelector"], ns_labels[ep.ns]):
            return False
        return "podSelector" not in peer or naive_selects(peer["podSelector"], ep.labels)
    return ep.ns == policy_ns and naive_selects(peer["podSelector"], ep.labels)


def naive_port(ports: list[dict[str, Any]] | None, dst: Ep, proto: str, port: int) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != proto:
            continue
        want = p.get("port")
        if want is None:
            return True
        if isinstance(want, str):
            if any(n == want and pr == proto and num == port for n, num, pr in dst.ports) and dst.ns is not None:
                return True
        elif want <= port <= p.get("endPort", want):
            return True
    return False


UNIVERSE = frozenset((proto, port) for proto in PROTOS for port in PORTS)


def naive_direction(
    direction: str,
    policies: list[dict[str, Any]],
    governed: Ep,
    peer: Ep,
    peer_addr: str | None,
    dst: Ep,
    ns_labels: dict[str, dict[str, str]],
) -> set[tuple[str, int]]:
    """The (protocol, port) pairs `governed` lets through in `direction` with `peer` at `peer_addr`."""
    if governed.ns is None:
        return set(UNIVERSE)
    kind, key = ("Ingress", "from") if direction == "ingress" else ("Egress", "to")
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == governed.ns
        and naive_selects(p["spec"].get("podSelector") or {}, governed.labels)
        and kind in naive_types(p["spec"])
    ]
    if not selecting:
        return set(UNIVERSE)
    out: set[tuple[str, int]] = set()
    for p in selecting:
        for rule in p["spec"].get(direction) or []:
            peers = rule.get(key)
            if not peers or any(naive_peer(x, p["metadata"]["namespace"], peer, peer_addr, ns_labels) for x in peers):
                out |= {(pr, po) for pr, po in UNIVERSE if naive_port(rule.get("ports"), dst, pr, po)}
    return out


def naive_allowed(
    policies: list[dict[str, Any]], src: Ep, dst: Ep, ns_labels: dict[str, dict[str, str]]
) -> set[tuple[str, int]]:
    """Egress of src AND ingress of dst, for every address pair (all addresses of an External CIDR)."""
    out = set(UNIVERSE)
    for s_addr in src.addrs:
        for d_addr in dst.addrs:
            out &= naive_direction("egress", policies, src, dst, d_addr, dst, ns_labels)
            out &= naive_direction("ingress", policies, dst, src, s_addr, dst, ns_labels)
    return out


# --------------------------------------------------------------------------- strategies

# Strategies are built once from finite menus: composing new strategy objects inside every
# draw makes Hypothesis spend most of the time budget on strategy construction.


def _expressions(labels: dict[str, tuple[str, ...]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key, values in sorted(labels.items()):
        subsets = [[v] for v in values] + [list(c) for c in itertools.combinations(values, 2)]
        for op in ("In", "NotIn"):
            out += [{"key": key, "operator": op, "values": sub} for sub in subsets]
        out += [{"key": key, "operator": "Exists"}, {"key": key, "operator": "DoesNotExist"}]
    return out


def _selector(pair: tuple[str, str] | None, exprs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if pair:
        out["matchLabels"] = dict([pair])
    if exprs:
        out["matchExpressions"] = exprs
    return out


def _selectors(labels: dict[str, tuple[str, ...]]) -> st.SearchStrategy[dict[str, Any]]:
    every_value = sorted({v for vs in labels.values() for v in vs})
    pairs = [(k, v) for k in sorted(labels) for v in every_value]
    return st.builds(
        _selector, st.none() | st.sampled_from(pairs), st.lists(st.sampled_from(_expressions(labels)), max_size=2)
    )


POD_SELECTORS = _selectors(LABELS)
NS_SELECTORS = _selectors({**NS_LABELS, "kubernetes.io/metadata.name": NAMESPACES})
IP_BLOCKS = [
    {"cidr": cidr, **({"except": list(sub)} if sub else {})}
    for cidr, excepts in CIDRS.items()
    for n in range(len(excepts) + 1)
    for sub in itertools.combinations(excepts, n)
]
PEERS = st.one_of(
    POD_SELECTORS.map(lambda s: {"podSelector": s}),
    NS_SELECTORS.map(lambda s: {"namespaceSelector": s}),
    st.builds(lambda p, n: {"podSelector": p, "namespaceSelector": n}, POD_SELECTORS, NS_SELECTORS),
    st.sampled_from(IP_BLOCKS).map(lambda b: {"ipBlock": b}),
)
_RANGES = [(lo, hi) for lo in (53, 80, 999, 1000, 1002) for hi in (53, 443, 1001, 1003, 8080) if hi >= lo]
_PORT_SPECS: list[dict[str, Any]] = [
    {},
    *({"port": p} for p in PORTS),
    *({"port": lo, "endPort": hi} for lo, hi in _RANGES),
    *({"port": name} for name in PORT_NAMES),
]
_PROTOCOL_SPECS: list[dict[str, Any]] = [{}, {"protocol": "TCP"}, {"protocol": "UDP"}, {"protocol": "SCTP"}]
POLICY_PORTS = st.builds(lambda a, b: {**a, **b}, st.sampled_from(_PROTOCOL_SPECS), st.sampled_from(_PORT_SPECS))
NAMED_POLICY_PORTS = st.builds(  # mostly named ports, for the named-port focused run
    lambda a, b: {**a, **b},
    st.sampled_from(_PROTOCOL_SPECS),
    st.sampled_from([{"port": n} for n in PORT_NAMES] * 3 + [{"port": 80}, {"port": 1001}]),
)


def _absent_empty_or(strategy: st.SearchStrategy[Any], weights: tuple[int, int, int]) -> st.SearchStrategy[Any]:
    """None (field absent), [] or a non-empty list, drawn with the given weights."""
    options = {"absent": st.none(), "empty": st.just([]), "list": st.lists(strategy, min_size=1, max_size=2)}
    menu = ["absent"] * weights[0] + ["empty"] * weights[1] + ["list"] * weights[2]
    return st.sampled_from(menu).flatmap(options.__getitem__)


def _rule(peer_key: str, peers: list[Any] | None, ports: list[Any] | None) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    if peers is not None:
        rule[peer_key] = peers
    if ports is not None:
        rule["ports"] = ports
    return rule


def _rules(peer_key: str, focus: bool) -> st.SearchStrategy[dict[str, Any]]:
    if focus:  # few peers, always ports, mostly named
        return st.builds(
            _rule,
            st.just(peer_key),
            _absent_empty_or(PEERS, (2, 0, 1)),
            st.lists(NAMED_POLICY_PORTS, min_size=1, max_size=2),
        )
    return st.builds(
        _rule, st.just(peer_key), _absent_empty_or(PEERS, (1, 1, 2)), _absent_empty_or(POLICY_PORTS, (1, 1, 2))
    )


def _spec(selector: dict[str, Any] | None, types: list[str] | None, ingress: Any, egress: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for key, value in (("podSelector", selector), ("policyTypes", types), ("ingress", ingress), ("egress", egress)):
        if value is not None:
            spec[key] = value
    return spec


def _maybe(strategy: st.SearchStrategy[Any], absent_weight: int) -> st.SearchStrategy[Any]:
    options = {False: st.none(), True: strategy}
    return st.sampled_from([False] * absent_weight + [True]).flatmap(options.__getitem__)


def _specs(focus: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Random policy specs; `focus` favours selecting every pod and named-port rules."""
    return st.builds(
        _spec,
        _maybe(POD_SELECTORS, absent_weight=3 if focus else 1),
        st.sampled_from((None, ["Ingress"], ["Egress"], ["Ingress", "Egress"])),
        _absent_empty_or(_rules("from", focus), (1, 1, 2)),
        _absent_empty_or(_rules("to", focus), (1, 1, 2)),
    )


SPECS = {False: _specs(False), True: _specs(True)}
NS_LABEL_MAPS = st.dictionaries(st.sampled_from(sorted(NS_LABELS)), st.sampled_from(("x", "y", "prod")), max_size=2)
POD_LABEL_MAPS = st.dictionaries(
    st.sampled_from(sorted(LABELS)), st.sampled_from(("web", "api", "db", "fe", "be")), max_size=2
)
CONTAINER_PORT_CHOICES = {name: st.sampled_from(choices) for name, choices in CONTAINER_PORTS.items()}


@st.composite
def scenarios(
    draw: st.DrawFn,
    focus: bool = False,
) -> tuple[list[dict[str, Any]], Inventory, list[tuple[Any, Ep]], dict[str, dict[str, str]]]:
    declared = draw(st.lists(st.sampled_from(NAMESPACES), unique=True))
    namespaces = [Namespace(n, draw(NS_LABEL_MAPS)) for n in declared]
    ns_labels = {n: {"kubernetes.io/metadata.name": n} for n in NAMESPACES}
    for declared_ns in namespaces:
        ns_labels[declared_ns.name] = dict(declared_ns.labels)
    pods: list[Pod] = []
    endpoints: list[tuple[Any, Ep]] = []
    for i in range(draw(st.integers(1, 5))):
        ns = draw(st.sampled_from(NAMESPACES))
        labels = draw(POD_LABEL_MAPS)
        ip = draw(st.sampled_from(POD_IPS))
        names = draw(st.lists(st.sampled_from(sorted(CONTAINER_PORTS)), unique=True, max_size=3))
        cports = tuple((n, *draw(CONTAINER_PORT_CHOICES[n])) for n in names)
        p = Pod(ns, f"p{i}", labels, ip=ip, ports=tuple(ContainerPort(n, num, pr) for n, num, pr in cports))
        pods.append(p)
        endpoints.append((p, Ep(ns, labels, (ip,), cports)))
    for addr in draw(st.lists(st.sampled_from(EXTERNALS), unique=True, max_size=2)):
        ext = External(addr)
        endpoints.append((ext, Ep(None, {}, tuple(str(a) for a in _addresses(addr)), ())))
    pols = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": f"p{i}", "namespace": draw(st.sampled_from(NAMESPACES))},
            "spec": draw(SPECS[focus]),
        }
        for i in range(draw(st.integers(0, 4)))
    ]
    inv = Inventory(tuple(namespaces), tuple(pods), tuple(e for e, _ in endpoints if isinstance(e, External)))
    return pols, inv, endpoints, ns_labels


def _addresses(addr: str) -> list[Any]:
    net = ipaddress.ip_network(addr)
    return [net.network_address] if net.num_addresses == 1 else list(net)


# --------------------------------------------------------------------------- the property


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_engine_agrees_with_naive_evaluator(scenario: Any) -> None:
    _check_against_naive(scenario)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(focus=True))
def test_engine_agrees_with_naive_evaluator_on_named_ports(scenario: Any) -> None:
    _check_against_naive(scenario)


def _check_against_naive(scenario: Any) -> None:
    pols, inv, endpoints, ns_labels = scenario
    direct = Evaluator(pols, inv)  # per-endpoint path
    matrix = Evaluator(pols, inv).matrix()  # bulk bitset path
    allowed_pairs = {(s, d): p for ss, dd, p in matrix.groups(include_denied=False) for s in ss for d in dd}
    assert allowed_pairs == {k: v for k, v in matrix.items() if v}
    for src, nsrc in endpoints:
        for dst, ndst in endpoints:
            got = direct.allowed(src, dst)
            assert matrix[src, dst] == got, (src, dst)
            want = naive_allowed(pols, nsrc, ndst, ns_labels)
            assert {pp for pp in UNIVERSE if got.contains(*pp)} == want, (src, dst, str(got))
            for proto in PROTOS:
                for port in EXPLAIN_PORTS:
                    verdict = direct.explain(src, dst, proto, port)
                    assert verdict.allowed == ((proto, port) in want), (src, dst, proto, port)


# --------------------------------------------------------------------------- ipBlock / External CIDR focus

_BASES = {4: ipaddress.ip_network("10.0.0.0/28"), 6: ipaddress.ip_network("fd00::/124")}


@st.composite
def subnets(draw: st.DrawFn, within: Any, strict: bool = False) -> Any:
    """A random subnet of `within` (strictly smaller if `strict`)."""
    extra = draw(st.integers(1 if strict else 0, within.max_prefixlen - within.prefixlen))
    return draw(st.sampled_from(list(within.subnets(prefixlen_diff=extra))))


@st.composite
def ip_blocks(draw: st.DrawFn, version: int) -> dict[str, Any]:
    cidr = draw(subnets(_BASES[version]))
    block: dict[str, Any] = {"cidr": str(cidr)}
    if cidr.prefixlen < cidr.max_prefixlen:
        excepts = draw(st.lists(subnets(cidr, strict=True), max_size=2))
        if excepts:
            block["except"] = [str(e) for e in excepts]
    return block


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from((4, 6)).flatmap(
        lambda v: st.tuples(
            st.lists(st.tuples(ip_blocks(v), st.sampled_from((80, 443))), min_size=1, max_size=4),
            subnets(_BASES[v]),
        )
    )
)
def test_external_cidrs_are_judged_address_by_address(case: Any) -> None:
    blocks, ext_net = case
    rules = [{"to": [{"ipBlock": b}], "ports": [{"port": port}]} for b, port in blocks]
    egress = {"podSelector": {}, "policyTypes": ["Egress"], "egress": rules}
    ingress = {"podSelector": {}, "ingress": [{"from": r["to"], "ports": r["ports"]} for r in rules]}
    me = Pod("ns", "me")
    ext = External(str(ext_net))
    for spec, pair in ((egress, (me, ext)), (ingress, (ext, me))):
        pol = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": spec,
        }
        e = Evaluator([pol], Inventory((), (me,), (ext,)))
        got = e.allowed(*pair)
        assert e.matrix()[pair] == got
        for port in (80, 443, 8080):
            want = all(
                any(p == port and naive_in_block(str(a), b) for b, p in blocks) for a in _addresses(str(ext_net))
            )
            assert got.contains("TCP", port) == want, (blocks, str(ext_net), port, str(got))
            assert e.explain(pair[0], pair[1], "TCP", port).allowed == want
