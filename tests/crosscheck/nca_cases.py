"""Cross-check cases: every example topology, ~30 seeded random policy sets, and pinned special cases.

A case is a list of NetworkPolicy manifests plus an inventory. `deviations` lists the pairs where
nca 2.1.0 is known to answer differently from the NetworkPolicy reference, each with what the
reference says (which our evaluator must produce), what nca says, and the FINDINGS.md entry that
explains it. Everything else must agree exactly.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from apptopology.analysis.intent import synthesize
from apptopology.evaluator import ContainerPort, External, Inventory, Namespace, Pod
from apptopology.render.renderer import render
from apptopology.render.validation import parse_topology
from shared import example_documents

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Deviation:
    """A documented disagreement on one pair: ours follows the reference, nca does not."""

    ours: str  # PortSet text, e.g. "TCP/80" or "none"
    nca: str
    finding: str  # FINDINGS.md anchor, e.g. "F2"


@dataclass(frozen=True)
class Case:
    name: str
    policies: list[Manifest]
    inventory: Inventory
    deviations: Mapping[tuple[str, str], Deviation] = field(default_factory=dict)
    about: str = ""
    nca_policies: list[Manifest] | None = None
    """What nca is given when it rejects `policies` although the API server accepts them (F2, F5): the
    same policies rewritten into the form the API server stores, which must mean the same thing."""
    nca_rejects: str | None = None
    """The error nca 2.1.0 prints for `policies` (asserted, so a fixed nca shows up)."""


# --------------------------------------------------------------------------- examples


def example_cases() -> list[Case]:
    cases = []
    for name, doc in example_documents():
        topology = parse_topology(doc)
        policies = render(topology)
        for p in policies:
            p.setdefault("metadata", {}).setdefault("namespace", topology.metadata.namespace or "default")
        cases.append(Case(f"example:{name}", policies, synthesize(topology), about="rendered example"))
    return cases


# --------------------------------------------------------------------------- random cases

NAMESPACES = ("a", "b", "c")
NS_LABELS = {"team": ("x", "y"), "env": ("prod",)}
POD_LABELS = {"app": ("web", "api", "db"), "tier": ("fe", "be")}
CONTAINER_PORTS = {
    "http": (80, "TCP"),
    "web": (8080, "TCP"),
    "dns": (53, "UDP"),
    "metrics": (9090, "TCP"),
    "sig": (3868, "SCTP"),
}
PORT_NAMES = (*CONTAINER_PORTS, "nope")
POD_IPS = (
    "10.0.0.5",
    "10.0.0.6",
    "10.0.1.7",
    "10.1.2.3",
    "192.168.0.2",
    "172.16.5.4",
    "fd00::5",
    "fd00::1:5",
)
EXTERNALS = ("8.8.8.8/32", "192.168.0.1/32", "192.168.0.0/30", "10.0.0.200/32", "172.16.9.9/32", "2001:db8::7/128")
CIDRS: dict[str, tuple[str, ...]] = {  # cidr -> candidate excepts (strict subsets)
    "10.0.0.0/8": ("10.0.1.0/24", "10.1.0.0/16"),
    "10.0.0.0/24": ("10.0.0.192/26", "10.0.0.5/32"),
    "192.168.0.0/30": ("192.168.0.1/32",),
    "172.16.0.0/12": ("172.16.5.0/24",),
    "0.0.0.0/0": ("10.0.0.0/8", "192.168.0.0/16"),
    "fd00::/64": ("fd00::1:0/112",),
    "::/0": ("fd00::/8",),
}
NUMERIC_PORTS = (53, 80, 443, 3868, 5432, 8080, 9090)


def _selector(rng: random.Random, labels: Mapping[str, tuple[str, ...]], *, set_based: bool = True) -> Manifest:
    """{} , matchLabels, or matchExpressions (set_based) over the given label universe."""
    roll = rng.random()
    if roll < 0.2:
        return {}
    keys = sorted(labels)
    if roll < 0.65 or not set_based:
        chosen = rng.sample(keys, rng.randint(1, min(2, len(keys))))
        return {"matchLabels": {k: rng.choice(labels[k]) for k in chosen}}
    key = rng.choice(keys)
    op = rng.choice(("In", "NotIn", "Exists", "DoesNotExist"))
    expr: Manifest = {"key": key, "operator": op}
    if op in ("In", "NotIn"):
        expr["values"] = sorted(rng.sample(labels[key], rng.randint(1, len(labels[key]))))
    return {"matchExpressions": [expr]}


def _peer(rng: random.Random) -> Manifest:
    kind = rng.choice(("pod", "ns", "both", "both", "ip"))
    if kind == "ip":
        cidr = rng.choice(sorted(CIDRS))
        block: Manifest = {"cidr": cidr}
        excepts = [e for e in CIDRS[cidr] if rng.random() < 0.5]
        if excepts:
            block["except"] = excepts
        return {"ipBlock": block}
    peer: Manifest = {}
    if kind in ("ns", "both"):
        peer["namespaceSelector"] = _selector(rng, {**NS_LABELS, "kubernetes.io/metadata.name": NAMESPACES})
    if kind in ("pod", "both"):
        # nca evaluates Exists/DoesNotExist in a podSelector only inside the policy's own namespace
        # (FINDINGS.md F3), so next to a namespaceSelector the random cases use value-based selectors;
        # the special case `f3-exists-across-namespaces` pins that difference down.
        peer["podSelector"] = _selector(rng, POD_LABELS, set_based=kind == "pod")
    return peer


def _ports(rng: random.Random) -> list[Manifest]:
    out: list[Manifest] = []
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.35:
            entry: Manifest = {"port": rng.choice(NUMERIC_PORTS)}
        elif roll < 0.5:
            lo = rng.choice(NUMERIC_PORTS)
            entry = {"port": lo, "endPort": lo + rng.choice((0, 1, 100, 1000))}
        elif roll < 0.8:
            name = rng.choice(PORT_NAMES)
            entry = {"port": name}
            if name in CONTAINER_PORTS and rng.random() < 0.7:
                entry["protocol"] = CONTAINER_PORTS[name][1]
            elif rng.random() < 0.3:
                entry["protocol"] = rng.choice(("TCP", "UDP"))
            out.append(entry)
            continue
        else:
            entry = {}
        entry["protocol"] = rng.choice(("TCP", "TCP", "UDP", "SCTP"))
        out.append(entry)
    return out


def _rule(rng: random.Random, peer_key: str) -> Manifest:
    rule: Manifest = {}
    if rng.random() < 0.85:
        rule[peer_key] = [_peer(rng) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.75:
        rule["ports"] = _ports(rng)
    return rule


def _policy(rng: random.Random, index: int) -> Manifest:
    spec: Manifest = {"podSelector": _selector(rng, POD_LABELS)}
    types = rng.choice((["Ingress"], ["Egress"], ["Egress"], ["Ingress", "Egress"], ["Ingress", "Egress"], None))
    if types is None:
        # Defaulting: Ingress always, Egress only with a non-empty egress list (an empty one is
        # the F1 special case).
        spec["ingress"] = [_rule(rng, "from") for _ in range(rng.randint(0, 2))]
        if rng.random() < 0.5:
            spec["egress"] = [_rule(rng, "to") for _ in range(rng.randint(1, 2))]
    else:
        spec["policyTypes"] = types
        if "Ingress" in types:
            spec["ingress"] = [_rule(rng, "from") for _ in range(rng.randint(0, 2))]
        if "Egress" in types:
            spec["egress"] = [_rule(rng, "to") for _ in range(rng.randint(0, 2))]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"p{index}", "namespace": rng.choice(NAMESPACES)},
        "spec": spec,
    }


def _inventory(rng: random.Random) -> Inventory:
    namespaces = []
    for ns in NAMESPACES:
        labels = {k: rng.choice(v) for k, v in NS_LABELS.items() if rng.random() < 0.6}
        namespaces.append(Namespace(ns, labels))
    ips = list(POD_IPS)
    rng.shuffle(ips)
    pods = []
    for ns in NAMESPACES:
        for i in range(rng.randint(2, 3)):
            labels = {k: rng.choice(v) for k, v in POD_LABELS.items() if rng.random() < 0.7}
            names = sorted(rng.sample(sorted(CONTAINER_PORTS), rng.randint(0, 3)))
            ports = [ContainerPort(n, *CONTAINER_PORTS[n]) for n in names]
            if rng.random() < 0.3:
                ports.append(ContainerPort(None, 7000, "TCP"))  # unnamed: irrelevant to named-port rules
            ip = ips.pop() if ips and rng.random() < 0.6 else None
            pods.append(Pod(ns, f"{ns}-pod{i}", labels, ip=ip, ports=tuple(ports)))
    externals = tuple(External(e) for e in EXTERNALS)
    return Inventory(tuple(namespaces), tuple(pods), externals)


def random_case(seed: int) -> Case:
    rng = random.Random(seed)
    inventory = _inventory(rng)
    policies = [_policy(rng, i) for i in range(rng.randint(1, 4))]
    if rng.random() < 0.4:
        # A namespace-wide default deny makes the other policies' rules the only way in or out.
        types = rng.choice((["Ingress"], ["Egress"], ["Ingress", "Egress"]))
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "default-deny", "namespace": rng.choice(NAMESPACES)},
                "spec": {"podSelector": {}, "policyTypes": types},
            }
        )
    return Case(f"random:{seed}", policies, inventory, about="seeded random policies and inventory")


def random_cases(count: int = 30) -> list[Case]:
    return [random_case(seed) for seed in range(count)]


# --------------------------------------------------------------------------- pinned special cases


def _np(name: str, namespace: str, spec: Manifest) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def _base_inventory() -> Inventory:
    """Two namespaces; pods named so that AND/OR peers, named ports and IPs are all distinguishable."""
    web_ports = (ContainerPort("http", 8080), ContainerPort("dns", 53, "UDP"))
    return Inventory(
        (Namespace("shop", {"team": "x"}), Namespace("ops", {"team": "y"})),
        (
            Pod("shop", "web", {"app": "web"}, ip="10.0.0.5", ports=web_ports),
            Pod("shop", "api", {"app": "api"}, ip="10.0.0.6", ports=(ContainerPort("http", 9090),)),
            Pod("shop", "db", {"app": "db"}, ip="10.0.1.7"),
            Pod("ops", "api", {"app": "api"}, ports=(ContainerPort("http", 8081),)),
            Pod("ops", "tool", {}),
        ),
        (External("8.8.8.8/32"), External("10.0.0.200/32"), External("2001:db8::7/128")),
    )


def special_cases() -> list[Case]:
    inv = _base_inventory()
    cases: list[Case] = []

    cases.append(
        Case(
            "and-vs-or-peers",
            [
                _np(
                    "and",
                    "shop",
                    {
                        "podSelector": {"matchLabels": {"app": "web"}},
                        "policyTypes": ["Ingress"],
                        "ingress": [
                            {
                                "from": [
                                    {
                                        "namespaceSelector": {"matchLabels": {"team": "y"}},
                                        "podSelector": {"matchLabels": {"app": "api"}},
                                    }
                                ],
                                "ports": [{"port": 80}],
                            }
                        ],
                    },
                ),
                _np(
                    "or",
                    "shop",
                    {
                        "podSelector": {"matchLabels": {"app": "db"}},
                        "policyTypes": ["Ingress"],
                        "ingress": [
                            {
                                "from": [
                                    {"namespaceSelector": {"matchLabels": {"team": "y"}}},
                                    {"podSelector": {"matchLabels": {"app": "api"}}},
                                ],
                                "ports": [{"port": 5432}],
                            }
                        ],
                    },
                ),
            ],
            inv,
            about="one peer with both selectors (AND) vs two peers (OR)",
        )
    )

    cases.append(
        Case(
            "ipblock-except-and-egress-only",
            [
                _np(
                    "egress-only",
                    "shop",
                    {
                        "podSelector": {"matchLabels": {"app": "web"}},
                        "policyTypes": ["Egress"],
                        "egress": [
                            {
                                "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "192.168.0.0/16"]}}],
                                "ports": [{"port": 443}, {"port": 1000, "endPort": 2000, "protocol": "UDP"}],
                            },
                            {"to": [{"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.128/25"]}}]},
                        ],
                    },
                ),
            ],
            inv,
            about="ipBlock with except, endPort, an egress-only policy (ingress stays open)",
        )
    )

    cases.append(
        Case(
            "named-ports-both-directions",
            [
                _np(
                    "named",
                    "shop",
                    {
                        "podSelector": {},
                        "policyTypes": ["Ingress", "Egress"],
                        "ingress": [{"ports": [{"port": "http"}, {"port": "dns", "protocol": "UDP"}]}],
                        "egress": [
                            {"to": [{"namespaceSelector": {}}], "ports": [{"port": "http"}]},
                            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": "http"}, {"port": 53}]},
                        ],
                    },
                ),
            ],
            inv,
            about="named ports resolve on the destination pod (per pod), never on an ipBlock",
        )
    )

    cases.append(
        Case(
            "multiple-policies-additive",
            [
                _np("deny-all", "shop", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
                _np(
                    "web-in",
                    "shop",
                    {
                        "podSelector": {"matchLabels": {"app": "web"}},
                        "ingress": [{"ports": [{"port": 80}, {"protocol": "SCTP"}]}],
                    },
                ),
                _np(
                    "web-in-more",
                    "shop",
                    {
                        "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
                        "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": 8000, "endPort": 8100}]}],
                    },
                ),
                _np(
                    "api-out",
                    "shop",
                    {
                        "podSelector": {"matchLabels": {"app": "api"}},
                        "policyTypes": ["Egress"],
                        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}]}],
                    },
                ),
            ],
            inv,
            about="default deny plus several additive policies on the same pods",
        )
    )

    # F1: `egress: []` without policyTypes. The API server defaults policyTypes to Egress only when
    # the egress list is non-empty; nca treats the mere presence of the key as "affects egress".
    f1_inv = _base_inventory()
    f1 = Case(
        "f1-empty-egress-list-without-policytypes",
        [_np("ingress-only", "ops", {"podSelector": {"matchLabels": {"app": "api"}}, "ingress": [{}], "egress": []})],
        f1_inv,
        deviations=_f1_deviations(f1_inv),
        about="policyTypes defaulting with an empty egress list",
    )
    cases.append(f1)

    # F3: podSelector with Exists next to a namespaceSelector: the pods of *other* namespaces count.
    cases.append(
        Case(
            "f3-exists-across-namespaces",
            [
                _np(
                    "from-ops-api",
                    "shop",
                    {
                        "podSelector": {"matchLabels": {"app": "db"}},
                        "policyTypes": ["Ingress"],
                        "ingress": [
                            {
                                "from": [
                                    {
                                        "namespaceSelector": {"matchLabels": {"team": "y"}},
                                        "podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
                                    }
                                ],
                                "ports": [{"port": 5432}],
                            }
                        ],
                    },
                ),
            ],
            inv,
            deviations={("ops/api", "shop/db"): Deviation(ours="TCP/5432", nca="none", finding="F3")},
            about="set-based podSelector inside a cross-namespace peer",
        )
    )

    # F4: an empty label value in a namespaceSelector. `team: ""` requires the key with an empty
    # value; `team NotIn [""]` also holds where the key is absent. nca reads a missing namespace label
    # as "" and gets both wrong.
    f4_inv = Inventory(
        (Namespace("shop", {"team": "x"}), Namespace("dev"), Namespace("blank", {"team": ""})),
        (
            Pod("shop", "web", {"app": "web"}),
            Pod("shop", "db", {"app": "db"}),
            Pod("dev", "tool", {}),
            Pod("blank", "tool", {}),
        ),
        (External("8.8.8.8/32"),),
    )
    cases.append(
        Case(
            "f4-empty-label-value-in-namespace-selector",
            [
                _np(
                    "web-from-blank-team",
                    "shop",
                    {
                        "podSelector": {"matchLabels": {"app": "web"}},
                        "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": ""}}}]}],
                    },
                ),
                _np(
                    "db-from-nonblank-team",
                    "shop",
                    {
                        "podSelector": {"matchLabels": {"app": "db"}},
                        "policyTypes": ["Ingress"],
                        "ingress": [
                            {
                                "from": [
                                    {
                                        "namespaceSelector": {
                                            "matchExpressions": [{"key": "team", "operator": "NotIn", "values": [""]}]
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                ),
            ],
            f4_inv,
            deviations={
                ("dev/tool", "shop/web"): Deviation(ours="none", nca="all", finding="F4"),
                ("dev/tool", "shop/db"): Deviation(ours="all", nca="none", finding="F4"),
            },
            about="matchLabels / NotIn with an empty label value against a namespace without the key",
        )
    )

    # F2: ingress rules in a policy whose policyTypes is [Egress]. The API server accepts (and keeps)
    # them; they have no effect. nca refuses the policy, so it is given the policy without them.
    f2_policy = _np(
        "egress-only-with-stray-ingress",
        "shop",
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Egress"],
            "ingress": [{"ports": [{"port": 80}]}],
            "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}],
        },
    )
    f2_nca = copy.deepcopy(f2_policy)
    del f2_nca["spec"]["ingress"]
    cases.append(
        Case(
            "f2-rules-for-a-direction-not-in-policytypes",
            [f2_policy],
            inv,
            about="ingress rules under policyTypes [Egress] are inert",
            nca_policies=[f2_nca],
            nca_rejects='A NetworkPolicy with ingress field but no "Ingress" in its policyTypes',
        )
    )

    # F5: no spec.podSelector. The field is optional and defaults to the empty selector (all pods of
    # the namespace); nca requires it, so it is given the defaulted form.
    f5_policy = _np("no-pod-selector", "ops", {"policyTypes": ["Ingress"], "ingress": [{"ports": [{"port": 8081}]}]})
    f5_nca = copy.deepcopy(f5_policy)
    f5_nca["spec"]["podSelector"] = {}
    cases.append(
        Case(
            "f5-pod-selector-omitted",
            [f5_policy],
            inv,
            about="an omitted podSelector selects every pod of the namespace",
            nca_policies=[f5_nca],
            nca_rejects="spec must have podSelector entry",
        )
    )
    return cases


def _f1_deviations(inv: Inventory) -> dict[tuple[str, str], Deviation]:
    """ops/api keeps open egress per the reference; nca isolates it for egress (nothing allowed out)."""
    out: dict[tuple[str, str], Deviation] = {}
    for pod in inv.pods:
        if pod.ref != "ops/api":
            out[("ops/api", pod.ref)] = Deviation(ours="all", nca="none", finding="F1")
    for ext in inv.externals:
        out[("ops/api", ext.address)] = Deviation(ours="all", nca="none", finding="F1")
    return out


def all_cases() -> list[Case]:
    return [*example_cases(), *random_cases(), *special_cases()]
