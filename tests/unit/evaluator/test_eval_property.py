"""Property test: the evaluator agrees with a deliberately naive re-reading of the API reference.

The naive evaluator below works on the raw dicts, enumerates a small port universe and
every address of small External CIDRs, and shares no code with the engine beyond the
stdlib `ipaddress` module.
"""

from __future__ import annotations

import ipaddress
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

label_maps = st.dictionaries(
    st.sampled_from(sorted(LABELS)), st.sampled_from(("web", "api", "db", "fe", "be")), max_size=2
)


@st.composite
def selectors(draw: st.DrawFn, labels: dict[str, tuple[str, ...]] = LABELS) -> dict[str, Any]:
    keys = sorted(labels)
    out: dict[str, Any] = {}
    ml = draw(
        st.dictionaries(
            st.sampled_from(keys), st.sampled_from(sorted({v for vs in labels.values() for v in vs})), max_size=1
        )
    )
    if ml:
        out["matchLabels"] = ml
    exprs = []
    for _ in range(draw(st.integers(0, 2))):
        op = draw(st.sampled_from(("In", "NotIn", "Exists", "DoesNotExist")))
        key = draw(st.sampled_from(keys))
        e: dict[str, Any] = {"key": key, "operator": op}
        if op in ("In", "NotIn"):
            e["values"] = draw(st.lists(st.sampled_from(labels[key]), min_size=1, max_size=2, unique=True))
        exprs.append(e)
    if exprs:
        out["matchExpressions"] = exprs
    return out


@st.composite
def peers(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(("pod", "ns", "both", "ip")))
    if kind == "ip":
        cidr = draw(st.sampled_from(sorted(CIDRS)))
        block: dict[str, Any] = {"cidr": cidr}
        excepts = draw(st.lists(st.sampled_from(CIDRS[cidr]), unique=True)) if CIDRS[cidr] else []
        if excepts:
            block["except"] = excepts
        return {"ipBlock": block}
    out: dict[str, Any] = {}
    if kind in ("pod", "both"):
        out["podSelector"] = draw(selectors())
    if kind in ("ns", "both"):
        nsl = {**NS_LABELS, "kubernetes.io/metadata.name": NAMESPACES}
        out["namespaceSelector"] = draw(selectors(nsl))
    return out


@st.composite
def policy_ports(draw: st.DrawFn, focus: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    proto = draw(st.sampled_from((None, "TCP", "UDP", "SCTP")))
    if proto:
        out["protocol"] = proto
    kind = draw(st.sampled_from(("name", "name", "num") if focus else ("none", "num", "range", "name", "name")))
    if kind == "num":
        out["port"] = draw(st.sampled_from(PORTS))
    elif kind == "range":
        lo = draw(st.sampled_from((53, 80, 999, 1000, 1002)))
        out["port"], out["endPort"] = lo, draw(st.sampled_from([p for p in (53, 443, 1001, 1003, 8080) if p >= lo]))
    elif kind == "name":
        out["port"] = draw(st.sampled_from(PORT_NAMES))
    return out


@st.composite
def rules(draw: st.DrawFn, peer_key: str, focus: bool) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    mode = draw(st.sampled_from(("absent", "absent", "list") if focus else ("absent", "empty", "list", "list")))
    if mode == "empty":
        rule[peer_key] = []
    elif mode == "list":
        rule[peer_key] = draw(st.lists(peers(), min_size=1, max_size=2))
    pmode = draw(st.sampled_from(("list",) if focus else ("absent", "empty", "list", "list")))
    if pmode == "empty":
        rule["ports"] = []
    elif pmode == "list":
        rule["ports"] = draw(st.lists(policy_ports(focus), min_size=1, max_size=2))
    return rule


@st.composite
def policies(draw: st.DrawFn, index: int, focus: bool) -> dict[str, Any]:
    """A random policy; `focus` favours selecting every pod and named-port rules."""
    spec: dict[str, Any] = {}
    if draw(st.sampled_from((True, False, False, False) if focus else (True, False))):
        spec["podSelector"] = draw(selectors())
    types = draw(st.sampled_from((None, ["Ingress"], ["Egress"], ["Ingress", "Egress"])))
    if types:
        spec["policyTypes"] = types
    for direction, key in (("ingress", "from"), ("egress", "to")):
        mode = draw(st.sampled_from(("absent", "empty", "list", "list")))
        if mode == "empty":
            spec[direction] = []
        elif mode == "list":
            spec[direction] = draw(st.lists(rules(key, focus), min_size=1, max_size=2))
    ns = draw(st.sampled_from(NAMESPACES))
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"p{index}", "namespace": ns},
        "spec": spec,
    }


@st.composite
def scenarios(
    draw: st.DrawFn,
    focus: bool = False,
) -> tuple[list[dict[str, Any]], Inventory, list[tuple[Any, Ep]], dict[str, dict[str, str]]]:
    declared = draw(st.lists(st.sampled_from(NAMESPACES), unique=True))
    namespaces = [
        Namespace(
            n,
            draw(st.dictionaries(st.sampled_from(sorted(NS_LABELS)), st.sampled_from(("x", "y", "prod")), max_size=2)),
        )
        for n in declared
    ]
    ns_labels = {n: {"kubernetes.io/metadata.name": n} for n in NAMESPACES}
    for ns in namespaces:
        ns_labels[ns.name] = dict(ns.labels)
    pods: list[Pod] = []
    endpoints: list[tuple[Any, Ep]] = []
    for i in range(draw(st.integers(1, 5))):
        ns = draw(st.sampled_from(NAMESPACES))
        labels = draw(label_maps)
        ip = draw(st.sampled_from(POD_IPS))
        names = draw(st.lists(st.sampled_from(sorted(CONTAINER_PORTS)), unique=True, max_size=3))
        cports = tuple((n, *draw(st.sampled_from(CONTAINER_PORTS[n]))) for n in names)
        p = Pod(ns, f"p{i}", labels, ip=ip, ports=tuple(ContainerPort(n, num, pr) for n, num, pr in cports))
        pods.append(p)
        endpoints.append((p, Ep(ns, labels, (ip,), cports)))
    for addr in draw(st.lists(st.sampled_from(EXTERNALS), unique=True, max_size=2)):
        ext = External(addr)
        endpoints.append((ext, Ep(None, {}, tuple(str(a) for a in _addresses(addr)), ())))
    pols = [draw(policies(i, focus)) for i in range(draw(st.integers(0, 4)))]
    inv = Inventory(tuple(namespaces), tuple(pods), tuple(e for e, _ in endpoints if isinstance(e, External)))
    return pols, inv, endpoints, ns_labels


def _addresses(addr: str) -> list[Any]:
    net = ipaddress.ip_network(addr)
    return [net.network_address] if net.num_addresses == 1 else list(net)


# --------------------------------------------------------------------------- the property


@settings(max_examples=350, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_engine_agrees_with_naive_evaluator(scenario: Any) -> None:
    _check_against_naive(scenario)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(focus=True))
def test_engine_agrees_with_naive_evaluator_on_named_ports(scenario: Any) -> None:
    _check_against_naive(scenario)


def _check_against_naive(scenario: Any) -> None:
    pols, inv, endpoints, ns_labels = scenario
    direct = Evaluator(pols, inv)  # per-endpoint path
    matrix = Evaluator(pols, inv).matrix()  # bulk bitset path
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


@settings(max_examples=200, deadline=None)
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
            assert e.explain(*pair, "TCP", port).allowed == want
