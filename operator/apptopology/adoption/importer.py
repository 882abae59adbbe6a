"""Import existing NetworkPolicies as an AppTopology per namespace, and prove the two equivalent.

The translation is exact by construction, rule by rule:

- every distinct pod selector of the policies is a tier (its pods are isolated in the union of the
  directions of the policies that select them, and allowed the union of their rules: a tier renders one
  policy with exactly that isolation and those rules);
- a rule is a union of (peer, port) grants, and each grant becomes (part of) a flow whose rendering gives
  the same grant in the same direction of the same tier. A grant between two tiers becomes a tier-to-tier
  flow only when the rendering of its other half is also in the input (or that tier does not isolate that
  direction); otherwise the peer is named by its selector, so the renderer adds nothing the input lacks;
- a rule without peers is ``anywhere`` (as a destination also ``cloudMetadata``, which ``anywhere``
  leaves out); ipBlocks are written canonically, and split where they have more exceptions than the API
  takes;
- DNS is ``dns`` when exactly the pods the renderer gives DNS to have those grants in the input;
- a namespace policy selecting every pod is the default-deny (scope Namespace), unless a flow would need
  pods of the namespace outside the tiers in an isolated direction, which scope Namespace refuses: then
  scope Tiers, with a tier of every pod.

Where the API cannot express a grant (a selector beyond its bounds, an IPv4-mapped IPv6 block, more
flows than it takes) the grant is left out, never widened, and a note says which input rule it was. Then
``verify`` judges the result against the input policies on a synthesized inventory (and a real one when
given): the report is either "equivalent" or every pair that differs, with the input rules behind it.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..analysis.intent import synthesize
from ..analysis.subject import merge_inventories, parse
from ..analysis.verify import Difference, verify
from ..api.spec import (
    MAX_EXCEPT,
    MAX_FLOWS,
    MAX_PORTS,
    MAX_TIERS,
    AppTopology,
    LabelSelector,
    Port,
    check_cidr,
    minimal_ports,
    plural,
)
from ..api.validation import InvalidTopology
from ..evaluator import Evaluator, External, Inventory, Namespace, Pod, PortSet
from ..render.validation import parse_topology
from .naming import EVERY_POD, base_name, canon, canonical_selector, selector_words, unique_names

DIRECTIONS = ("ingress", "egress")
PEER_FIELD = {"ingress": "from", "egress": "to"}
MAX_SOURCES_SHOWN = 6
ANYWHERE = {"anywhere": True}
CLOUD_METADATA = {"cloudMetadata": True}
PortKey = tuple[str, int, str, int] | None  # None: all ports and protocols
Atom = tuple[str, PortKey]  # (canonical peer, port)


@dataclass(frozen=True, order=True)
class RuleSource:
    """An input rule, spelled as the evaluator names rules (``production/api-policy egress[1]``)."""

    policy: str
    direction: str
    index: int

    def __str__(self) -> str:
        return f"{self.policy} {self.direction}[{self.index}]"


@dataclass(frozen=True)
class Note:
    """Something the reviewer should know. ``narrower``: part of ``source`` is left out of the topology."""

    source: str
    message: str
    narrower: bool = False

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


@dataclass(frozen=True)
class Mismatch:
    difference: Difference
    causes: tuple[Note, ...]


@dataclass(frozen=True)
class Check:
    """``verify`` of the topology against the input on one inventory."""

    inventory: str
    endpoints: int
    mismatches: tuple[Mismatch, ...]

    @property
    def wider(self) -> bool:
        """verify's "missing" is what the topology declares and the policies do not allow: here, wider."""
        return any(not m.difference.missing.is_empty for m in self.mismatches)


@dataclass
class Imported:
    """One namespace's result: the topology (as a manifest and parsed), what to know, and the proof."""

    namespace: str
    policies: int
    source_policies: tuple[Mapping[str, Any], ...] = ()
    document: dict[str, Any] | None = None
    topology: AppTopology | None = None
    notes: list[Note] = field(default_factory=list)
    error: str | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def equivalent(self) -> bool:
        return self.error is None and all(not c.mismatches for c in self.checks)

    @property
    def wider(self) -> bool:
        return any(c.wider for c in self.checks)


class CannotImport(ValueError):
    """A namespace the API cannot express even narrower (a tier's selector beyond its bounds, too many tiers):
    leaving a tier out would leave its pods open, which is wider."""


@dataclass
class _Tier:
    selector: dict[str, Any]
    policies: list[str] = field(default_factory=list)
    isolates: dict[str, bool] = field(default_factory=lambda: {"ingress": False, "egress": False})
    grants: dict[str, dict[Atom, set[RuleSource]]] = field(
        default_factory=lambda: {"ingress": defaultdict(set), "egress": defaultdict(set)}
    )
    name: str = ""


def _selector_problem(selector: Mapping[str, Any]) -> str | None:
    try:
        LabelSelector.model_validate(selector)
    except ValidationError as exc:
        return "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors()[:3])
    return None


def _port(raw: Mapping[str, Any]) -> tuple[PortKey, dict[str, Any]] | str:
    """A policy port as the model spells it, or why it cannot be."""
    data: dict[str, Any] = {"protocol": raw.get("protocol") or "TCP"}
    if raw.get("port") is not None:
        data["port"] = raw["port"]
        if raw.get("endPort") is not None and raw["endPort"] != raw["port"]:
            data["endPort"] = raw["endPort"]
    try:
        port = Port.model_validate(data)
    except ValidationError as exc:
        return "; ".join(str(e["msg"]) for e in exc.errors()[:2])
    out: dict[str, Any] = {} if port.port is None else {"port": port.port}
    if port.protocol != "TCP" or port.port is None:
        out["protocol"] = port.protocol
    if port.end_port is not None:
        out["endPort"] = port.end_port
    return port.key(), out


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _split(cidr: Network, excepts: list[Network]) -> list[tuple[Network, list[Network]]]:
    """``cidr`` minus ``excepts`` as blocks of at most MAX_EXCEPT exceptions each, the same addresses: halve
    the range until each half has few enough (an exception that is a whole half drops that half)."""
    if len(excepts) <= MAX_EXCEPT:
        return [(cidr, excepts)]
    out: list[tuple[Network, list[Network]]] = []
    for half in cidr.subnets(1):
        inside = [e for e in excepts if e.subnet_of(half)]  # type: ignore[arg-type]
        if half not in inside:
            out.extend(_split(half, inside))
    return out


def _ip_blocks(raw: Mapping[str, Any], source: str, notes: list[Note]) -> list[dict[str, Any]]:
    cidr = ipaddress.ip_network(raw["cidr"], strict=False)
    excepts = sorted({ipaddress.ip_network(e, strict=False) for e in raw.get("except") or []}, key=str)
    # An exception inside another says nothing more.
    excepts = [e for e in excepts if not any(o != e and e.subnet_of(o) for o in excepts)]  # type: ignore[arg-type]
    if str(cidr) != raw["cidr"] or len(excepts) != len(raw.get("except") or []):
        notes.append(Note(source, f"ipBlock {raw['cidr']} written canonically as {cidr} (the same addresses)"))
    blocks = _split(cidr, excepts)
    if len(blocks) > 1:
        notes.append(
            Note(
                source,
                f"ipBlock {cidr} has {len(excepts)} exceptions (the API takes {MAX_EXCEPT} per block): "
                f"written as {len(blocks)} blocks with the same addresses",
            )
        )
    out = []
    for block, inside in blocks:
        problem = check_cidr(str(block)) or next((check_cidr(str(e)) for e in inside if check_cidr(str(e))), None)
        if problem:
            notes.append(Note(source, f"left out: ipBlock {block}: {problem}", narrower=True))
            continue
        entry: dict[str, Any] = {"cidr": str(block)}
        if inside:
            entry["except"] = [str(e) for e in sorted(inside, key=lambda n: (int(n.network_address), n.prefixlen))]
        out.append({"ipBlock": entry})
    return out


def _peer_endpoints(peer: Mapping[str, Any], source: str, notes: list[Note]) -> list[dict[str, Any]]:
    """A NetworkPolicyPeer as flow endpoints (an ipBlock may need several); none when it cannot be expressed."""
    if peer.get("ipBlock") is not None:
        return _ip_blocks(peer["ipBlock"], source, notes)
    endpoint: dict[str, Any] = {}
    for key in ("namespaceSelector", "podSelector"):
        if peer.get(key) is not None:
            selector = canonical_selector(peer[key])
            problem = _selector_problem(selector)
            if problem:
                notes.append(Note(source, f"left out: a peer's {key}: {problem}", narrower=True))
                return []
            endpoint[key] = selector
    return [endpoint]


DNS_PORTS = {("UDP", 1, "00053", 0), ("TCP", 1, "00053", 0), ("UDP", 2, "dns", 0), ("TCP", 2, "dns-tcp", 0)}


_Grants = dict[int, dict[str, dict[Atom, set[RuleSource]]]]  # per tier (by id), per direction


@dataclass
class _Flow:
    source: dict[str, Any]
    destination: dict[str, Any]
    ports: set[PortKey] = field(default_factory=set)
    sources: set[RuleSource] = field(default_factory=set)
    dns: bool = False


class _Builder:
    """The translation of one namespace's policies (see the module doc)."""

    def __init__(self, namespace: str, policies: Sequence[Mapping[str, Any]]) -> None:
        self.namespace = namespace
        self.notes: list[Note] = []
        self.tiers: dict[str, _Tier] = {}
        self.peers: dict[str, dict[str, Any]] = {}
        self.ports: dict[PortKey, dict[str, Any] | None] = {None: None}
        self.metadata_sources: set[RuleSource] = set()
        self.left_out: list[tuple[str, Mapping[str, Any]]] = []  # peers left out, for the proof's inventory
        for raw, parsed in zip(policies, parse(policies), strict=True):
            self._policy(raw, parsed.name, {"ingress": parsed.affects_ingress, "egress": parsed.affects_egress})
        if len(self.tiers) > MAX_TIERS:
            raise CannotImport(
                f"{len(self.tiers)} distinct pod selectors, and a topology has at most {MAX_TIERS} tiers: "
                "split the namespace's policies into several topologies"
            )
        everyone = canon({})
        names = unique_names(
            (
                key,
                EVERY_POD if key == everyone else base_name(selector_words(t.selector), "pods"),
                EVERY_POD if key == everyone else base_name(selector_words(t.selector, qualified=True), "pods"),
            )
            for key, t in self.tiers.items()
        )
        for key, tier in self.tiers.items():
            tier.name = names[key]

    def _peer(self, endpoint: dict[str, Any]) -> str:
        key = canon(endpoint)
        self.peers.setdefault(key, endpoint)
        return key

    def _policy(self, raw: Mapping[str, Any], name: str, affects: dict[str, bool]) -> None:
        ref = f"{self.namespace}/{name}"
        spec = raw.get("spec") or {}
        selector = canonical_selector(spec.get("podSelector"))
        problem = _selector_problem(selector)
        if problem:
            raise CannotImport(f"{ref} spec.podSelector: {problem}")
        tier = self.tiers.setdefault(canon(selector), _Tier(selector))
        tier.policies.append(name)
        for direction in DIRECTIONS:
            rules = spec.get(direction) or []
            if not affects[direction]:
                if rules:
                    self.notes.append(
                        Note(f"{ref} spec.{direction}", f"ignored by Kubernetes: no {direction.title()} in policyTypes")
                    )
                continue
            tier.isolates[direction] = True
            for i, rule in enumerate(rules):
                self._rule(tier, RuleSource(ref, direction, i), rule or {})

    def _rule(self, tier: _Tier, source: RuleSource, rule: Mapping[str, Any]) -> None:
        where = str(source)
        direction = source.direction
        ports: list[PortKey] = []
        for j, raw in enumerate(rule.get("ports") or []):
            converted = _port(raw)
            if isinstance(converted, str):
                self.notes.append(Note(where, f"left out: ports[{j}]: {converted}", narrower=True))
                continue
            self.ports[converted[0]] = converted[1]
            ports.append(converted[0])
        if rule.get("ports") and not ports:
            return
        peers = rule.get(PEER_FIELD[direction]) or []
        if peers:
            endpoints = []
            for j, peer in enumerate(peers):
                before = len(self.notes)
                endpoints += _peer_endpoints(peer, f"{where} peer {j}", self.notes)
                if any(n.narrower for n in self.notes[before:]):
                    self.left_out.append((f"{where} peer {j}", peer))
        else:
            endpoints = [ANYWHERE] + ([CLOUD_METADATA] if direction == "egress" else [])
            if direction == "egress":
                self.metadata_sources.add(source)
        for endpoint in endpoints:
            key = self._peer(endpoint)
            for port in ports or [None]:
                tier.grants[direction][(key, port)].add(source)

    # --- the topology ------------------------------------------------------------------------------------

    def build(self) -> tuple[dict[str, Any], list[Note]]:
        everyone = self.tiers.get(canon({}))
        if everyone is not None and any(everyone.isolates.values()):
            deny = dict(everyone.isolates)
            spec = self._spec("Namespace", deny)
            if spec is not None:
                return self._document(spec), self.notes
        return self._document(self._spec("Tiers", None) or {}), self.notes

    def _document(self, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "apptopology.io/v1alpha1",
            "kind": "AppTopology",
            "metadata": {"name": self.namespace, "namespace": self.namespace},
            "spec": spec,
        }

    def _spec(self, scope: str, deny: dict[str, bool] | None) -> dict[str, Any] | None:
        """The spec in ``scope``; None when scope Namespace cannot express these policies."""
        tiers = sorted(self.tiers.values(), key=lambda t: t.name)
        if deny is None:  # scope Tiers: the majority's isolation is the default, the rest per tier
            deny = {d: 2 * sum(t.isolates[d] for t in tiers) >= len(tiers) for d in DIRECTIONS}

        def isolated(tier: _Tier, direction: str) -> bool:
            return tier.isolates[direction] or (scope == "Namespace" and deny[direction])

        grants = {id(t): {d: dict(t.grants[d]) for d in DIRECTIONS} for t in tiers}
        dns, dns_notes = self._dns(tiers, isolated, grants)
        flows = self._flows(tiers, isolated, grants)
        if scope == "Namespace":
            for flow in flows:
                if (deny["ingress"] and set(flow.destination) == {"podSelector"}) or (
                    deny["egress"] and set(flow.source) == {"podSelector"}
                ):
                    return None
        notes = list(dns_notes)
        if len(flows) > MAX_FLOWS:
            for flow in flows[MAX_FLOWS:]:
                for source in sorted(flow.sources):
                    notes.append(Note(str(source), f"left out: more than {MAX_FLOWS} flows", narrower=True))
            flows = flows[:MAX_FLOWS]
        self.notes.extend(notes)
        out: dict[str, Any] = {"defaultDeny": {"scope": scope, **deny}}
        if dns is not None:
            out["dns"] = dns
        out["tiers"] = []
        for tier in tiers:
            entry: dict[str, Any] = {"name": tier.name, "podSelector": tier.selector}
            if scope == "Namespace":
                isolation = {d: True for d in DIRECTIONS if tier.isolates[d] and not deny[d]}
            else:
                isolation = {d: tier.isolates[d] for d in DIRECTIONS if tier.isolates[d] != deny[d]}
            if isolation:
                entry["isolation"] = isolation
            out["tiers"].append(entry)
        out["flows"] = [f for flow in flows for f in self._flow_entries(flow)]
        out["enforcement"] = "DryRun"
        return out

    def _dns(
        self,
        tiers: list[_Tier],
        isolated: Callable[[_Tier, str], bool],
        grants: _Grants,
    ) -> tuple[dict[str, Any] | None, list[Note]]:
        """``spec.dns`` when the pods the renderer gives DNS to (every pod isolated for egress by a tier, or by
        the namespace default-deny) all have the same DNS grants in the input; those grants are then taken
        out of the tiers. Otherwise DNS stays off, and its grants stay flows."""
        egress_tiers = [t for t in tiers if isolated(t, "egress")]
        if not egress_tiers:
            return None, []

        def dns_atoms(tier: _Tier) -> set[Atom]:
            return {
                a for a in grants[id(tier)]["egress"] if a[1] in DNS_PORTS and "namespaceSelector" in self.peers[a[0]]
            }

        everyone = self.tiers.get(canon({}))
        shared = dns_atoms(everyone) if everyone is not None and isolated(everyone, "egress") else set()
        common = set.intersection(*(dns_atoms(t) for t in egress_tiers)) | shared
        if not common:
            names = ", ".join(t.name for t in egress_tiers)
            return {"enabled": False}, [
                Note(
                    self.namespace,
                    f"DNS: tiers {names} are isolated for egress and the input gives them no common DNS rule: "
                    "dns.enabled false keeps it so (their DNS grants, if any, are flows)",
                )
            ]
        by_peer: dict[str, set[PortKey]] = defaultdict(set)
        for peer, port in common:
            by_peer[peer].add(port)
        peer = sorted(by_peer, key=lambda p: (-len(by_peer[p]), p))[0]
        ports = sorted(by_peer[peer], key=lambda k: k or ("", 0, "", 0))
        endpoint = self.peers[peer]
        taken = {(peer, p) for p in ports}
        sources: set[RuleSource] = set()
        for tier in tiers:
            for atom in taken & set(grants[id(tier)]["egress"]):
                sources |= grants[id(tier)]["egress"].pop(atom)
        dns = {
            "namespaceSelector": endpoint["namespaceSelector"],
            "podSelector": endpoint.get("podSelector", {}),
            "ports": [self.ports[p] for p in ports],
        }
        return dns, [Note(self.namespace, f"DNS recognised as spec.dns from {_sources_text(sources)}")]

    def _flows(self, tiers: list[_Tier], isolated: Callable[[_Tier, str], bool], grants: _Grants) -> list[_Flow]:
        by_selector = {canon({"podSelector": t.selector}): t for t in tiers}
        flows: dict[tuple[str, str], _Flow] = {}

        def add(source: dict[str, Any], destination: dict[str, Any], port: PortKey, why: set[RuleSource]) -> None:
            flow = flows.setdefault((canon(source), canon(destination)), _Flow(source, destination))
            flow.ports.add(port)
            flow.sources |= why

        paired: set[tuple[int, Atom]] = set()
        for tier in tiers:
            mine = {"tier": tier.name}
            for (peer, port), why in grants[id(tier)]["egress"].items():
                other = by_selector.get(peer)
                if other is not None and not isolated(other, "ingress"):
                    add(mine, {"tier": other.name}, port, why)
                    continue
                if other is not None:
                    back = (canon({"podSelector": tier.selector}), port)
                    if back in grants[id(other)]["ingress"]:
                        paired.add((id(other), back))
                        add(mine, {"tier": other.name}, port, why | grants[id(other)]["ingress"][back])
                        continue
                add(mine, self.peers[peer], port, why)
        for tier in tiers:
            mine = {"tier": tier.name}
            for (peer, port), why in grants[id(tier)]["ingress"].items():
                if (id(tier), (peer, port)) in paired:
                    continue
                other = by_selector.get(peer)
                if other is not None and not isolated(other, "egress"):
                    add({"tier": other.name}, mine, port, why)
                else:
                    add(self.peers[peer], mine, port, why)
        for flow in flows.values():
            flow.dns = bool(flow.ports) and all(p in DNS_PORTS for p in flow.ports)
        return sorted(flows.values(), key=_flow_order)

    def _flow_entries(self, flow: _Flow) -> list[dict[str, Any]]:
        """A flow as entries of spec.flows (several when it has more ports than one entry takes)."""
        ports: list[dict[str, Any]] = []
        if None not in flow.ports:
            models = minimal_ports([Port.model_validate(self.ports[p]) for p in flow.ports if p is not None])
            keys = {m.key() for m in models}
            ports = [self.ports[k] or {} for k in sorted(keys)]
        text = ("DNS; " if flow.dns else "") + f"imported from {_sources_text(flow.sources)}"
        if flow.destination == CLOUD_METADATA and flow.sources & self.metadata_sources:
            text = "the input allows every destination, the cloud metadata service too; " + text
            self.notes.append(
                Note(
                    _sources_text(flow.sources & self.metadata_sources),
                    "allows every destination, including the cloud instance metadata service (169.254.169.254, "
                    "fd00:ec2::254): imported as flows to anywhere and to cloudMetadata; remove the cloudMetadata "
                    "flow unless these pods need the node's cloud credentials",
                )
            )
        entries = []
        chunks = [ports[i : i + MAX_PORTS] for i in range(0, len(ports), MAX_PORTS)] or [[]]
        for chunk in chunks:
            entry: dict[str, Any] = {"from": flow.source, "to": flow.destination}
            if chunk:
                entry["ports"] = chunk
            entry["description"] = text[:512]
            entries.append(entry)
        return entries


def _flow_order(flow: _Flow) -> tuple[Any, ...]:
    def side(endpoint: Mapping[str, Any]) -> tuple[int, str]:
        return (0, str(endpoint["tier"])) if "tier" in endpoint else (1, canon(endpoint))

    return (*side(flow.destination if "tier" in flow.destination else flow.source), *side(flow.source))


def _sources_text(sources: Iterable[RuleSource]) -> str:
    ordered = [str(s) for s in sorted(set(sources))]
    shown = ", ".join(ordered[:MAX_SOURCES_SHOWN])
    more = len(ordered) - MAX_SOURCES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


# --- the proof ------------------------------------------------------------------------------------------


def _labels_for(raw: Mapping[str, Any] | None) -> dict[str, str]:
    """Labels a selector of the input selects (its matchLabels, a value for In and Exists): enough for the
    peers import leaves out, whose selectors are beyond the model's bounds, not beyond satisfying."""
    raw = raw or {}
    labels = {str(k): str(v) for k, v in (raw.get("matchLabels") or {}).items()}
    for expr in raw.get("matchExpressions") or []:
        if expr.get("operator") == "In" and expr.get("key") not in labels:
            labels[str(expr["key"])] = str((expr.get("values") or ["x"])[0])
        elif expr.get("operator") == "Exists" and expr.get("key") not in labels:
            labels[str(expr["key"])] = "x"
    return labels


def witnesses(namespace: str, left_out: Sequence[tuple[str, Mapping[str, Any]]]) -> Inventory:
    """An endpoint for each peer left out, so that verify shows the pairs it leaves out."""
    namespaces: list[Namespace] = []
    pods: list[Pod] = []
    externals: list[External] = []
    for n, (name, peer) in enumerate(left_out):
        if peer.get("ipBlock") is not None:
            net = ipaddress.ip_network(peer["ipBlock"]["cidr"], strict=False)
            address = net.network_address + (1 if net.num_addresses > 2 else 0)
            externals.append(External(f"{address}/{address.max_prefixlen}", f"{address} (peer of {name})"))
            continue
        home = namespace
        if peer.get("namespaceSelector") is not None:
            home = f"apptopology-left-out-{n}"
            namespaces.append(Namespace(home, _labels_for(peer["namespaceSelector"])))
        pods.append(Pod(home, f"left-out-peer-{n}", _labels_for(peer.get("podSelector"))))
    return Inventory(tuple(namespaces), tuple(pods), tuple(externals))


def _probes(ports: PortSet) -> list[tuple[str, int]]:
    return [(protocol, next(iter(intervals))[0]) for protocol, intervals in ports.items()]


def _check(
    topology: AppTopology,
    policies: Sequence[Mapping[str, Any]],
    inventory: Inventory,
    label: str,
    notes: Sequence[Note],
) -> Check:
    differences = verify(topology, policies, inventory)
    evaluator = Evaluator(parse(policies), inventory)
    narrower = [n for n in notes if n.narrower]
    mismatches = []
    for difference in differences:
        causes: dict[Note, None] = {}
        # verify's "extra": what the input policies allow and the topology does not (it is narrower there).
        if difference.endpoints is not None and not difference.extra.is_empty:
            source, destination = difference.endpoints
            for protocol, port in _probes(difference.extra):
                verdict = evaluator.explain(source, destination, protocol, port)
                for rule in (*verdict.egress.allowing_rules, *verdict.ingress.allowing_rules):
                    for note in narrower:
                        if note.source.startswith(str(rule)):
                            causes[note] = None
        mismatches.append(Mismatch(difference, tuple(causes)))
    return Check(label, len(inventory.endpoints), tuple(mismatches))


def import_namespace(
    namespace: str,
    policies: Sequence[Mapping[str, Any]],
    inventory: Inventory | None = None,
    name: str | None = None,
) -> Imported:
    """The AppTopology for one namespace's ``policies`` and its proof: ``verify`` on a synthesized inventory
    (the topology's and the policies' own), and on ``inventory`` when given."""
    result = Imported(namespace, len(policies), tuple(policies))
    try:
        builder = _Builder(namespace, policies)
        document, notes = builder.build()
        left_out = witnesses(namespace, builder.left_out)
    except CannotImport as exc:
        result.error = f"cannot import namespace {namespace}: {exc}"
        return result
    if name is not None:
        document["metadata"]["name"] = name
    result.notes = notes
    try:
        topology = parse_topology(document)
    except InvalidTopology as exc:  # a bug of the translation: say so rather than print something wrong
        result.error = f"namespace {namespace}: the imported topology is not valid: " + "; ".join(
            str(i) for i in exc.issues
        )
        return result
    result.document, result.topology = document, topology
    # The topology names every tier and peer the translation kept; the witnesses those it left out.
    synthesized = merge_inventories([synthesize(topology), left_out])
    result.checks.append(_check(topology, policies, synthesized, "synthesized", notes))
    if inventory is not None:
        result.checks.append(_check(topology, policies, inventory, "given", notes))
    return result


def by_namespace(policies: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """NetworkPolicy manifests grouped by namespace (``default`` when unset), other kinds skipped."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for policy in policies:
        if isinstance(policy, dict) and policy.get("kind") == "NetworkPolicy":
            namespace = str((policy.get("metadata") or {}).get("namespace") or "default")
            out[namespace].append(policy)
    return dict(sorted(out.items()))


def _summary(topology: AppTopology) -> str:
    spec = topology.spec
    parts = [plural(len(spec.tiers), "tier"), plural(len(spec.flows), "flow"), f"scope {spec.default_deny.scope}"]
    if spec.dns.enabled and any(spec.isolates(t, "egress") for t in spec.tiers):
        parts.append("dns")
    return ", ".join(parts)


def report_lines(result: Imported, limit: int | None = 200) -> list[str]:
    """The import report of one namespace: what was made, what to know, and verify's verdict per inventory
    (every differing pair, up to ``limit``, with the input rules that could not be expressed)."""
    head = f"import: namespace {result.namespace}: {plural(result.policies, 'NetworkPolicy', 'NetworkPolicies')}"
    if result.error is not None:
        return [f"{head}: error: {result.error}"]
    assert result.topology is not None
    topology = result.topology
    lines = [f"{head} -> AppTopology {result.namespace}/{topology.metadata.name} ({_summary(topology)})"]
    lines += [f"  note: {n}" for n in result.notes if not n.narrower]
    lines += [f"  left out (narrower): {n}" for n in result.notes if n.narrower]
    for check in result.checks:
        where = f"the {check.inventory} inventory ({check.endpoints} endpoints)"
        if not check.mismatches:
            lines.append(f"  equivalent on {where}: the topology allows exactly what the policies allow")
            continue
        if check.wider:
            lines.append(
                f"  error: WIDER on {where}: the topology would allow what the policies do not (a bug of import; "
                "please report it): not printed"
            )
        else:
            pairs = plural(len(check.mismatches), "pair differs", "pairs differ")
            lines.append(f"  NOT equivalent on {where}: {pairs}; the topology is narrower")
        shown = check.mismatches if limit is None else check.mismatches[:limit]
        for mismatch in shown:
            d = mismatch.difference
            if not d.extra.is_empty:
                lines.append(f"    only the policies allow {d.source} -> {d.destination}: {d.extra}")
            if not d.missing.is_empty:
                lines.append(f"    only the topology allows {d.source} -> {d.destination}: {d.missing}")
            lines += [f"      because {cause}" for cause in mismatch.causes]
        if len(shown) < len(check.mismatches):
            more = plural(len(check.mismatches) - len(shown), "more pair", "more pairs")
            lines.append(f"    ... and {more} (--all-pairs lists them)")
    return lines
