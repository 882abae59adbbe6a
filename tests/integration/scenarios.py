"""Randomized write-path scenarios, seeded and reproducible, and what to expect of each (pure: no cluster).

A scenario is a pair of related revisions of one AppTopology (v1, then v2 made from v1 by a few random
edits: tier renames, scope and isolation flips, selector changes, tiers and flows added and dropped, DNS and
monitoring toggled, DryRun) plus what happens around the change:

- ``bystanders``: other policies of the namespace (a deny-all, an allow-all on a selector, ...), from the start;
- ``squat``: objects of someone else at names the operator may use: ``guards`` (every transient
  ``<topology>.guard-<hash>`` name for the selectors of both revisions) or ``names`` (v2's new names too);
- one ``event``: ``refusal`` (a ValidatingAdmissionPolicy refusing a feature of a policy v2 writes, or a
  ResourceQuota of NetworkPolicies one short), ``kill`` (SIGKILL when the operator's write count in the
  namespace reaches ``at``), ``edit`` (the topology edited to a third revision v3 at that write), ``leader``
  (two electing replicas: the leader SIGSTOPped at that write, the standby takes over and the topology is
  edited to v3, then SIGCONT), or none.

Drawn only when asked for (:data:`NEIGHBOUR_EVENTS`, issue 20): ``neighbour`` (a second AppTopology, NEIGHBOUR,
whose tiers may select the same pods and whose DNS may differ, while the topology changes to v2) and
``guardrail`` (a TopologyGuardrail that starts and stops applying as the namespace is labelled and
unlabelled, the edit to v2 before, between or after; a neighbour most of the time). :func:`namespace_renders`
is what the operator should hold for every topology at each moment.

:func:`generate` draws all of it from ``random.Random(seed)``: the seed is the whole scenario.
tests/integration/drive.py runs it on the control plane and judges it with tests/integration/judge.py.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
from dataclasses import dataclass, field
from typing import Any

from apptopology.api.guardrail import parse_guardrail
from apptopology.api.spec import AppTopology
from apptopology.api.validation import InvalidTopology
from apptopology.planner.plan import desired_policies
from apptopology.planner.transition import guard_name
from apptopology.render import guardrails
from apptopology.render.facts import OFFLINE, ClusterFacts
from apptopology.render.renderer import dns_grant, with_neighbours
from apptopology.render.validation import parse_spec

TOPOLOGY = "app"
TIER_NAMES = ["web", "api", "db", "cache", "queue", "front", "back"]
SELECTORS = [
    lambda t: {"matchLabels": {"app": t}},
    lambda t: {"matchLabels": {"app": t, "role": "server"}},
    lambda t: {"matchLabels": {"role": "backend"}},
    lambda t: {"matchExpressions": [{"key": "app", "operator": "In", "values": [t, "shared"]}]},
    lambda t: {"matchLabels": {"tier": t}},
]
PORTS = [
    {"port": 80},
    {"port": 443},
    {"port": 8080},
    {"port": 5432},
    {"port": 53, "protocol": "UDP"},
    {"port": 8000, "endPort": 8100},
    {"port": "http"},
    {"protocol": "UDP"},
]
CIDRS = [
    {"cidr": "0.0.0.0/0"},
    {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]},
    {"cidr": "10.0.0.0/8"},
    {"cidr": "203.0.113.0/24"},
]
EVENTS = ["none", "refusal", "kill", "edit", "leader"]
# Scenarios of several topologies and guardrails (issue 20), drawn only when asked for (``generate(seed,
# NEIGHBOUR_EVENTS)``), so the seeds of EVENTS keep drawing what they drew: ``neighbour`` (a second
# AppTopology in the namespace while the topology changes), ``guardrail`` (a TopologyGuardrail that starts and
# stops applying as the namespace is labelled and unlabelled, the topology changing before, between or after,
# a neighbour there most of the time).
NEIGHBOUR_EVENTS = ["neighbour", "guardrail"]
NEIGHBOUR = "nb"
RAIL_LABEL = "apptopology.io/judge"
RAILS: list[dict[str, Any]] = [
    {"requiredDefaultDeny": {"scope": "Namespace"}},
    {"requiredDefaultDeny": {"scope": "Namespace"}},
    {"requiredDefaultDeny": {"scope": "Namespace", "ingress": True, "egress": True}},
    {"requiredDefaultDeny": {"ingress": True, "egress": True}},
    {"requiredDefaultDeny": {"scope": "Namespace"}, "internetIngress": "Forbid"},
]


# Refusals ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Feature:
    """Something a rendered policy may contain, as a ValidatingAdmissionPolicy can refuse it."""

    kind: str  # "port", "cidr", "name", "label"
    direction: str  # "ingress" / "egress" ("" for name and label)
    value: str
    key: str = ""

    def describe(self) -> str:
        if self.kind in ("port", "cidr"):
            return f"{self.direction} {self.kind} {self.value}"
        if self.kind == "label":
            return f"podSelector {self.key}={self.value}"
        return f"the name {self.value}"

    def cel(self) -> str:
        """A CEL expression that holds for objects without the feature."""
        d = self.direction
        peers = "from" if d == "ingress" else "to"
        if self.kind == "port":
            return (
                f"!has(object.spec.{d}) || !object.spec.{d}.exists(r, has(r.ports) && "
                f"r.ports.exists(p, has(p.port) && string(p.port) == '{self.value}'))"
            )
        if self.kind == "cidr":
            return (
                f"!has(object.spec.{d}) || !object.spec.{d}.exists(r, has(r.{peers}) && "
                f"r.{peers}.exists(p, has(p.ipBlock) && p.ipBlock.cidr == '{self.value}'))"
            )
        if self.kind == "label":
            labels = "object.spec.podSelector.matchLabels"
            return f"!has({labels}) || !('{self.key}' in {labels}) || {labels}['{self.key}'] != '{self.value}'"
        return f"object.metadata.name != '{self.value}'"


def features(policy: dict[str, Any]) -> set[Feature]:
    spec = policy.get("spec") or {}
    out = {Feature("name", "", str(policy["metadata"]["name"]))}
    for key, value in ((spec.get("podSelector") or {}).get("matchLabels") or {}).items():
        out.add(Feature("label", "", str(value), str(key)))
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for rule in spec.get(direction) or []:
            for port in rule.get("ports") or []:
                if "port" in port:
                    out.add(Feature("port", direction, str(port["port"])))
            for peer in rule.get(peers) or []:
                if "ipBlock" in peer:
                    out.add(Feature("cidr", direction, str(peer["ipBlock"]["cidr"])))
    return out


def refusable(v1: dict[str, Any], v2: dict[str, Any], namespace: str = "judge") -> list[Feature]:
    """Features of what v2 writes (new or changed policies) that no v1 policy has: refusing one refuses v2 and
    never v1's restore. Sorted, so a seed picks the same one every time."""
    old, new = renders(v1, namespace), renders(v2, namespace)
    written = [p for n, p in sorted(new.items()) if n not in old or old[n]["spec"] != p["spec"]]
    present = set().union(*(features(p) for p in old.values())) if old else set()
    found = set().union(*(features(p) for p in written)) if written else set()
    return sorted(found - present, key=lambda f: (f.kind, f.direction, f.key, f.value))


@dataclass
class Scenario:
    seed: int
    v1: dict[str, Any]  # specs
    v2: dict[str, Any]
    v3: dict[str, Any] | None = None  # the concurrent edit
    edits: list[str] = field(default_factory=list)  # what made v2 (and v3) out of v1
    bystanders: list[dict[str, Any]] = field(default_factory=list)  # NetworkPolicy objects (no namespace)
    squat: str = ""  # "", "guards", "names"
    event: str = "none"
    refusal: str = ""  # "vap", "quota-full" (no room for one more) or "quota-short" (one short of the peak)
    feature: Feature | None = None  # what the VAP refuses
    squatters: list[dict[str, Any]] = field(default_factory=list)  # NetworkPolicy objects (no namespace)
    at: float = 0.0  # where in the transition the kill / edit / stop comes: a fraction of its writes
    neighbour: dict[str, Any] | None = None  # the spec of a second AppTopology (NEIGHBOUR) in the namespace
    guardrail: dict[str, Any] | None = None  # a TopologyGuardrail's spec (its namespaceSelector is added)
    steps: list[str] = field(default_factory=list)  # "on", "off" (the guardrail applies / stops), "edit" (v2)

    def describe(self) -> str:
        parts = [f"seed {self.seed}", f"v2 = v1 + {', '.join(self.edits) or 'nothing'}"]
        if self.bystanders:
            parts.append(f"{len(self.bystanders)} bystander policies")
        if self.squat:
            parts.append(f"squatters at {self.squat}")
        if self.event == "refusal":
            parts.append(f"refusal by {self.refusal}" + (f" of {self.feature.describe()}" if self.feature else ""))
        elif self.event in NEIGHBOUR_EVENTS:
            parts.append("a neighbour topology" if self.neighbour is not None else "no neighbour")
            if self.guardrail is not None:
                parts.append(f"guardrail {json.dumps(self.guardrail, sort_keys=True)}; steps {', '.join(self.steps)}")
        elif self.event != "none":
            parts.append(f"{self.event} at {self.at:.2f} of the writes")
        return "; ".join(parts)


def body(
    spec: dict[str, Any], namespace: str, uid: str = "judge", generation: int = 1, name: str = TOPOLOGY
) -> dict[str, Any]:
    """The AppTopology object of ``spec`` (what the API server holds, as far as rendering needs)."""
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "generation": generation},
        "spec": copy.deepcopy(spec),
    }


def renders(spec: dict[str, Any], namespace: str, uid: str = "judge") -> dict[str, dict[str, Any]]:
    """Name -> policy object the operator wants for ``spec`` (nothing in DryRun)."""
    if spec.get("enforcement") == "DryRun":
        return {}
    return {p["metadata"]["name"]: p for p in desired_policies(body(spec, namespace, uid))}


def guardrail_doc(spec: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The scenario's TopologyGuardrail: ``spec`` for the namespace when it carries RAIL_LABEL."""
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "TopologyGuardrail",
        "metadata": {"name": f"judge-{namespace}"},
        "spec": {"namespaceSelector": {"matchLabels": {RAIL_LABEL: namespace}}, **copy.deepcopy(spec)},
    }


@dataclass(frozen=True)
class Member:
    """A topology of the namespace as the operator enforces it at one moment: its spec (None: not there) and
    whether the guardrail applies to it (``on``: the operator has seen the namespace's label)."""

    name: str
    spec: dict[str, Any] | None
    uid: str
    on: bool = False


def _guarded(member: Member, rail: dict[str, Any] | None, namespace: str) -> guardrails.Guarded:
    assert member.spec is not None
    rails = [parse_guardrail(guardrail_doc(rail, namespace))] if rail is not None else []
    labels = {RAIL_LABEL: namespace} if member.on else {}
    return guardrails.enforce(parse_spec(member.name, namespace, member.spec), rails, labels)


def _enforced(member: Member) -> bool:
    return member.spec is not None and member.spec.get("enforcement") != "DryRun"


def intents(members: list[Member], rail: dict[str, Any] | None, namespace: str) -> list[AppTopology]:
    """What each enforced topology of ``members`` declares as the guardrail narrows it (its pods' own rules)."""
    return [_guarded(m, rail, namespace).topology for m in members if _enforced(m)]


def namespace_renders(
    members: list[Member], rail: dict[str, Any] | None, namespace: str
) -> dict[str, dict[str, dict[str, Any]]]:
    """Topology name -> the policies the operator wants for it when the namespace holds ``members``: each
    narrowed by the guardrail (when it applies to it), rendered beside the others' DNS grants, as the
    reconciler's guard does (nothing in DryRun)."""
    guarded = {m.name: _guarded(m, rail, namespace) for m in members if _enforced(m)}
    grants = {n: dns_grant(g.topology, g.facts) for n, g in guarded.items()}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for member in members:
        if member.spec is None:
            continue
        if member.name not in guarded:
            out[member.name] = {}
            continue
        g = guarded[member.name]
        others = [grant for n, grant in grants.items() if n != member.name]

        def guard(
            _t: AppTopology, _f: ClusterFacts, g: guardrails.Guarded = g, others: list[str | None] = others
        ) -> tuple[AppTopology, ClusterFacts, list[str]]:
            return g.topology, with_neighbours(g.topology, others, g.facts), []

        made = desired_policies(body(member.spec, namespace, member.uid, name=member.name), OFFLINE, guard)
        out[member.name] = {p["metadata"]["name"]: p for p in made}
    return out


def valid(spec: dict[str, Any]) -> bool:
    try:
        parse_spec(TOPOLOGY, "judge", spec)
        desired_policies(body(spec, "judge"))
    except InvalidTopology:
        return False
    return True


# Drawing ---------------------------------------------------------------------------------------------------


def _endpoint(rng: random.Random, tiers: list[str]) -> dict[str, Any]:
    kind = rng.choice(["tier", "tier", "tier", "ipBlock", "anywhere", "ns", "nspod"])
    if kind == "tier":
        return {"tier": rng.choice(tiers)}
    if kind == "ipBlock":
        return {"ipBlock": copy.deepcopy(rng.choice(CIDRS))}
    if kind == "anywhere":
        return {"anywhere": True}
    out: dict[str, Any] = {"namespaceSelector": rng.choice([{}, {"matchLabels": {"team": "ops"}}])}
    if kind == "nspod":
        out["podSelector"] = {"matchLabels": {"app": rng.choice(["probe", "client"])}}
    return out


def _flow(rng: random.Random, spec: dict[str, Any]) -> dict[str, Any]:
    tiers = [t["name"] for t in spec["tiers"]]
    src, dst = _endpoint(rng, tiers), _endpoint(rng, tiers)
    if "tier" not in src and "tier" not in dst:  # at least one side is a tier
        if rng.random() < 0.5:
            src = {"tier": rng.choice(tiers)}
        else:
            dst = {"tier": rng.choice(tiers)}
    flow: dict[str, Any] = {"from": src, "to": dst}
    ports = rng.sample(PORTS, rng.choice([0, 1, 1, 2]))
    if ports:
        flow["ports"] = copy.deepcopy(ports)
    return flow


def _tier(rng: random.Random, name: str, scope: str) -> dict[str, Any]:
    tier: dict[str, Any] = {"name": name, "podSelector": rng.choice(SELECTORS)(name)}
    if scope == "Tiers" and rng.random() < 0.3:
        tier["isolation"] = {rng.choice(["ingress", "egress"]): rng.random() < 0.5}
    return tier


def draw_topology(rng: random.Random) -> dict[str, Any]:
    scope = rng.choice(["Namespace", "Tiers"])
    spec: dict[str, Any] = {
        "defaultDeny": {"scope": scope, "ingress": rng.random() < 0.85, "egress": rng.random() < 0.7},
        "tiers": [_tier(rng, n, scope) for n in rng.sample(TIER_NAMES, rng.randint(1, 4))],
        "flows": [],
    }
    for _ in range(rng.randint(0, 4)):
        spec["flows"].append(_flow(rng, spec))
    if rng.random() < 0.2:
        spec["dns"] = {"enabled": False}
    if rng.random() < 0.2:
        spec["monitoring"] = {
            "enabled": True,
            "namespaceSelector": {"matchLabels": {"name": "monitoring"}},
            "ports": [{"port": 9090}],
        }
    return spec


def _rename(spec: dict[str, Any], old: str, new: str) -> None:
    for tier in spec["tiers"]:
        if tier["name"] == old:
            tier["name"] = new
    for flow in spec["flows"]:
        for side in ("from", "to"):
            if flow[side].get("tier") == old:
                flow[side]["tier"] = new
    monitoring = spec.get("monitoring") or {}
    if monitoring.get("tiers"):
        monitoring["tiers"] = [new if t == old else t for t in monitoring["tiers"]]


def mutate(rng: random.Random, spec: dict[str, Any], dry: bool = True) -> tuple[dict[str, Any], str]:
    """One random edit of ``spec`` (a copy) and its name; ``dry``: switching to DryRun is one of them."""
    spec = copy.deepcopy(spec)
    tiers = [t["name"] for t in spec["tiers"]]
    free = [n for n in TIER_NAMES if n not in tiers]
    edit = rng.choice(
        [
            "rename tier",
            "rename tier",
            "flip scope",
            "flip isolation",
            "flip default deny",
            "change selector",
            "add tier",
            "drop tier",
            "add flow",
            "add flow",
            "drop flow",
            "change ports",
            "toggle dns",
            "toggle monitoring",
            *(["dry run"] if dry else []),
        ]
    )
    if edit == "rename tier" and free:
        _rename(spec, rng.choice(tiers), rng.choice(free))
    elif edit == "flip scope":
        deny = spec["defaultDeny"]
        deny["scope"] = "Tiers" if deny["scope"] == "Namespace" else "Namespace"
        if deny["scope"] == "Namespace":
            for tier in spec["tiers"]:
                tier.pop("isolation", None)
    elif edit == "flip isolation":
        tier = rng.choice(spec["tiers"])
        direction = rng.choice(["ingress", "egress"])
        iso = tier.setdefault("isolation", {})
        iso[direction] = not iso.get(direction, spec["defaultDeny"].get(direction, True))
    elif edit == "flip default deny":
        direction = rng.choice(["ingress", "egress"])
        spec["defaultDeny"][direction] = not spec["defaultDeny"].get(direction, True)
    elif edit == "change selector":
        tier = rng.choice(spec["tiers"])
        tier["podSelector"] = rng.choice(SELECTORS)(rng.choice([tier["name"], *TIER_NAMES]))
    elif edit == "add tier" and free:
        spec["tiers"].append(_tier(rng, rng.choice(free), spec["defaultDeny"]["scope"]))
        spec["flows"].append(_flow(rng, spec))
    elif edit == "drop tier" and len(tiers) > 1:
        gone = rng.choice(tiers)
        spec["tiers"] = [t for t in spec["tiers"] if t["name"] != gone]
        spec["flows"] = [f for f in spec["flows"] if gone not in (f["from"].get("tier"), f["to"].get("tier"))]
        if (spec.get("monitoring") or {}).get("tiers"):
            spec["monitoring"]["tiers"] = [t for t in spec["monitoring"]["tiers"] if t != gone] or None
    elif edit == "add flow":
        spec["flows"].append(_flow(rng, spec))
    elif edit == "drop flow" and spec["flows"]:
        spec["flows"].pop(rng.randrange(len(spec["flows"])))
    elif edit == "change ports" and spec["flows"]:
        flow = rng.choice(spec["flows"])
        ports = rng.sample(PORTS, rng.choice([0, 1, 2]))
        if ports:
            flow["ports"] = copy.deepcopy(ports)
        else:
            flow.pop("ports", None)
    elif edit == "toggle dns":
        if (spec.get("dns") or {}).get("enabled") is False:
            spec.pop("dns")
        else:
            spec["dns"] = {"enabled": False}
    elif edit == "toggle monitoring":
        if spec.get("monitoring"):
            spec.pop("monitoring")
        else:
            spec["monitoring"] = {
                "enabled": True,
                "namespaceSelector": {"matchLabels": {"name": "monitoring"}},
                "ports": [{"port": 9090}],
            }
    elif edit == "dry run":
        spec["enforcement"] = "DryRun"
    else:
        spec["flows"].append(_flow(rng, spec))
        edit = "add flow"
    if spec.get("monitoring", {}).get("tiers") is None and "monitoring" in spec:
        spec["monitoring"].pop("tiers", None)
    return spec, edit


def _revision(rng: random.Random, spec: dict[str, Any], edits: list[str], dry: bool = True) -> dict[str, Any]:
    """``spec`` plus 1-3 edits (valid, and different from ``spec`` in its render or mode)."""
    for _ in range(50):
        new = spec
        made = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            new, edit = mutate(rng, new, dry)
            made.append(edit)
        if "enforcement" in spec:
            new.pop("enforcement", None)  # one DryRun step at most, never DryRun to DryRun
        if valid(new) and _canon(renders(new, "judge")) != _canon(renders(spec, "judge")):
            edits.extend(made)
            return new
    raise RuntimeError("no valid revision found")  # pragma: no cover - 50 tries always find one


def _canon(policies: dict[str, dict[str, Any]]) -> str:
    return json.dumps({n: p["spec"] for n, p in policies.items()}, sort_keys=True)


BYSTANDERS = [
    ("deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    ("deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]}),
    (
        "allow-all-ingress",
        {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}], "policyTypes": ["Ingress"]},
    ),
    (
        "allow-ops",
        {
            "podSelector": {"matchLabels": {"role": "backend"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "ops"}}}]}],
            "policyTypes": ["Ingress"],
        },
    ),
    ("allow-egress-web", {"podSelector": {"matchLabels": {"app": "web"}}, "egress": [{}], "policyTypes": ["Egress"]}),
]


def squatter_spec(rng: random.Random) -> dict[str, Any]:
    """Someone else's policy: isolating (so deleting it opens pods) or allowing (so adopting it narrows)."""
    return copy.deepcopy(rng.choice(BYSTANDERS)[1])


def policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "labels": {"owner": "someone-else"}},
        "spec": copy.deepcopy(spec),
    }


def guard_names(*specs: dict[str, Any]) -> list[str]:
    """Every ``<topology>.guard-<hash>`` name a transition between these revisions may use."""
    names = set()
    for spec in specs:
        for p in renders({**spec, "enforcement": "Enforce"}, "judge").values():
            selector = json.dumps(p["spec"].get("podSelector") or {}, sort_keys=True, separators=(",", ":"))
            names.add(guard_name(TOPOLOGY, selector))
    return sorted(names)


def generate(seed: int, events: tuple[str, ...] = tuple(EVENTS)) -> Scenario:
    """The scenario of ``seed`` (the same seed gives the same scenario, whatever else ran before)."""
    rng = random.Random(seed)
    for _ in range(100):
        v1 = draw_topology(rng)
        if valid(v1):
            break
    edits: list[str] = []
    v2 = _revision(rng, v1, edits)
    scenario = Scenario(seed, v1, v2, edits=edits)
    for _ in range(rng.choice([0, 0, 1, 2])):
        name, spec = rng.choice(BYSTANDERS)
        scenario.bystanders.append(policy(f"bystander-{name}-{len(scenario.bystanders)}", spec))
    dry = v2.get("enforcement") == "DryRun"
    scenario.squat = rng.choice(["", "", "", "guards", "guards", "names"])
    choices = [e for e in events if not (dry and e in ("refusal", "edit"))]
    if scenario.squat == "names":
        choices = [e for e in choices if e in ("none", "kill")] or [e for e in choices if e in NEIGHBOUR_EVENTS]
    weights = {"none": 3, "refusal": 3, "kill": 3, "edit": 2, "leader": 1, "neighbour": 3, "guardrail": 4}
    scenario.event = rng.choices(choices, [weights[c] for c in choices])[0] if choices else "none"
    scenario.at = rng.random()
    if scenario.event in NEIGHBOUR_EVENTS:
        return _neighbourly(rng, scenario)
    if scenario.event == "refusal":
        scenario.refusal = rng.choice(["vap", "vap", "quota-full", "quota-short"])
        if scenario.refusal == "vap":
            found = refusable(v1, v2)
            if found:
                scenario.feature = rng.choice(found)
            else:
                scenario.event, scenario.refusal = "none", ""
    if scenario.event == "edit" or (scenario.event == "leader" and not dry):
        more: list[str] = []
        scenario.v3 = _revision(rng, v2, more, dry=False)
        scenario.edits.append("then " + ", ".join(more))
    if scenario.squat:
        names = guard_names(v1, v2, *([scenario.v3] if scenario.v3 else []))
        if scenario.squat == "names":
            old = renders(v1, "judge")
            names += sorted(n for n in renders({**v2, "enforcement": "Enforce"}, "judge") if n not in old)
        scenario.squatters = [policy(n, squatter_spec(rng)) for n in names]
    return scenario


def _neighbourly(rng: random.Random, scenario: Scenario) -> Scenario:
    """The rest of a ``neighbour`` or ``guardrail`` scenario: a neighbour whose tiers may share selectors (and
    pods) with the topology's and whose DNS may differ; a guardrail and the order of its flips and the edit
    (an edit while it applies only when v2 obeys it, else admission refuses the edit)."""
    scenario.squat, scenario.squatters = "", []
    if scenario.event == "neighbour" or rng.random() < 0.8:
        for _ in range(100):
            spec = draw_topology(rng)
            if rng.random() < 0.5:  # a tier selecting what one of the topology's tiers selects
                spec["tiers"][0]["podSelector"] = copy.deepcopy(rng.choice(scenario.v1["tiers"])["podSelector"])
            if rng.random() < 0.4:
                spec["dns"] = {"enabled": False}
            if rng.random() < 0.4:  # the finding-1 shape: both scope Tiers
                spec["defaultDeny"]["scope"] = "Tiers"
            if valid(spec):
                scenario.neighbour = spec
                break
    if scenario.event == "neighbour":
        scenario.steps = ["edit"]
        return scenario
    scenario.guardrail = copy.deepcopy(rng.choice(RAILS))
    orders = [["edit", "on", "off"], ["on", "edit", "off"], ["on", "off", "edit"]]
    rail = [parse_guardrail(guardrail_doc(scenario.guardrail, "judge"))]
    if guardrails.check(parse_spec(TOPOLOGY, "judge", scenario.v2), rail, {RAIL_LABEL: "judge"}):
        orders.remove(["on", "edit", "off"])
    scenario.steps = rng.choice(orders)
    return scenario


def to_dict(scenario: Scenario) -> dict[str, Any]:
    """The scenario as plain data (tests/integration/findings.yaml keeps failing scenarios this way, so a
    change of the generator does not change them)."""
    out = dataclasses.asdict(scenario)
    if scenario.feature is None:
        out.pop("feature")
    return {k: v for k, v in out.items() if v not in (None, [], "")}


def from_dict(data: dict[str, Any]) -> Scenario:
    data = copy.deepcopy(data)
    feature = data.pop("feature", None)
    return Scenario(**data, feature=Feature(**feature) if feature else None)
