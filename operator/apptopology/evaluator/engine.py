"""Evaluate what a set of NetworkPolicies allows between pods and external endpoints.

Semantics (networking.k8s.io/v1 API reference):

* A connection src -> dst is allowed iff src's egress allows it AND dst's ingress
  allows it. External endpoints have no policies, so only the pod side decides.
* A pod is isolated in a direction iff some policy in its namespace selects it and
  lists that direction in policyTypes; a non-isolated direction allows everything.
  An isolated direction allows the union of what the rules of all selecting
  policies allow (policies are additive; none can deny).
* Named ports resolve against the destination pod's container ports (name and
  protocol must both match) and never match an external destination.
* ipBlock peers are, by default, also matched against pod IPs (when a pod has one).
  The reference says ipBlock is meant for cluster-external IPs and leaves its effect
  on pod IPs to the implementation (CNIs differ: Calico matches them, Cilium keeps
  CIDR rules for non-endpoints). Matching never under-reports reachability, which is
  the safer default for a verifier; `ip_block_matches_pods=False` models the other kind.
* An External CIDR stands for all of its addresses: it is split into regions that
  no ipBlock boundary crosses, and the answer is what holds for every region.
* Not modelled: traffic from a pod's own node (always allowed by the reference),
  host-network pods, and Service VIPs (policies act on pod IPs after translation).

How it stays fast: every endpoint is reduced to an "atom" -- a bitmask of the peer
clauses it matches plus the rule sets that govern it -- and atoms are interned, so a
matrix is computed once per pair of *classes* of equivalent endpoints. For inventory
pods the clause masks come from bitset evaluation of selectors over a label index
rather than from testing every selector against every pod, and each matrix row only
computes the destinations that per-clause bitsets say could receive anything.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Literal

from .inventory import Endpoint, External, Inventory, IPAddress, Pod
from .labels import LabelSelector
from .policy import Direction, NetworkPolicy, Peer, Rule, parse_policy
from .ports import PORT_MAX, PORT_MIN, PortSet, check_protocol

NamedPorts = frozenset[tuple[str, str, int]]

# Peer masks: bit 0 (_ANY) is set for every endpoint and is the mask of a rule with no
# from/to peers, so "matches all peers" needs no special case; clause c uses bit c + 1.
_ANY = 1


def _bit(clause: int) -> int:
    return 2 << clause


@dataclass(frozen=True, slots=True)
class PolicyRef:
    """A policy by identity, rendered like `shop/allow-web`."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class RuleRef:
    """A rule by position, rendered like `shop/allow-web ingress[0]`."""

    policy: PolicyRef
    direction: Direction
    index: int

    def __str__(self) -> str:
        return f"{self.policy} {self.direction}[{self.index}]"


Status = Literal["external", "not-isolated", "allowed", "denied"]


@dataclass(frozen=True, slots=True)
class DirectionVerdict:
    """Why one direction (src egress or dst ingress) allows or denies a connection.

    `endpoint` is the side whose policies govern this direction (src for egress, dst for
    ingress). `denied_for` names the address range left denied when the peer is an
    External CIDR that is only partly allowed.
    """

    direction: Direction
    endpoint: str
    status: Status
    allowing_rules: tuple[RuleRef, ...] = ()
    isolating_policies: tuple[PolicyRef, ...] = ()
    denied_for: str | None = None

    @property
    def allowed(self) -> bool:
        return self.status != "denied"

    def __str__(self) -> str:
        d = self.direction
        if self.status == "external":
            return f"{d}: {self.endpoint} is not a pod; no {d} policy applies"
        if self.status == "not-isolated":
            return f"{d}: {self.endpoint} is not isolated for {d} (no policy selecting it has policyType {d.title()})"
        if self.status == "allowed":
            return f"{d}: allowed by {', '.join(map(str, self.allowing_rules))}"
        by = ", ".join(map(str, self.isolating_policies))
        tail = f" (for {self.denied_for})" if self.denied_for else ""
        return f"{d}: denied{tail}; {self.endpoint} is isolated for {d} by {by} and no {d} rule matches"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer of Evaluator.explain(): allowed iff both directions allow, with why for each."""

    source: str
    destination: str
    protocol: str
    port: int
    egress: DirectionVerdict
    ingress: DirectionVerdict

    @property
    def allowed(self) -> bool:
        return self.egress.allowed and self.ingress.allowed

    @property
    def reasons(self) -> tuple[str, str]:
        return str(self.egress), str(self.ingress)

    def __str__(self) -> str:
        head = "ALLOWED" if self.allowed else "DENIED"
        return "\n  ".join((f"{head} {self.source} -> {self.destination} {self.protocol}/{self.port}", *self.reasons))


@dataclass(frozen=True, slots=True, eq=False)
class _Atom:
    """An endpoint (or one region of an External CIDR) reduced to what policies can see.

    `*_sig` index Evaluator._sigs (the governing rule set); -1 means not isolated.
    """

    peer_mask: int
    named: NamedPorts | None
    in_sig: int
    eg_sig: int
    in_policies: tuple[int, ...]
    eg_policies: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Sig:
    """A distinct governing rule set (all rules of the policies isolating an endpoint in one direction)."""

    rules: tuple[int, ...]
    relevant: int  # union of the rules' clause masks: the only peer bits that matter
    named: bool  # whether any rule has named ports (then the destination's ports matter)


@dataclass(frozen=True, slots=True)
class _CRule:
    """A rule with its peers compiled to a clause mask (_ANY if it has no from/to)."""

    ref: RuleRef
    rule: Rule
    mask: int


class ConnectivityMatrix(Mapping[tuple[Endpoint, Endpoint], PortSet]):
    """(src, dst) -> allowed PortSet for every source/destination pair.

    Fully evaluated at construction, but stored per pair of endpoint *classes* (endpoints
    policies cannot tell apart) and sparsely, so 5,000 x 5,000 pairs need neither 25M
    entries nor 25M computations. A class pair missing from its row is ALL when the source
    is not isolated for egress and the destination not for ingress, and NONE otherwise.
    `groups()` exposes the classes, which is what summaries should iterate.
    """

    def __init__(
        self,
        sources: tuple[Endpoint, ...],
        destinations: tuple[Endpoint, ...],
        src_class: dict[Endpoint, int],
        dst_class: dict[Endpoint, int],
        rows: list[dict[int, PortSet]],
        open_egress: list[bool],
        open_ingress: list[bool],
    ) -> None:
        self.sources = sources
        self.destinations = destinations
        self._src_class = src_class
        self._dst_class = dst_class
        self._rows = rows
        self._open_eg = open_egress
        self._open_in = open_ingress

    def _get(self, si: int, di: int) -> PortSet:
        hit = self._rows[si].get(di)
        if hit is not None:
            return hit
        return PortSet.ALL if self._open_eg[si] and self._open_in[di] else PortSet.NONE

    def __getitem__(self, key: tuple[Endpoint, Endpoint]) -> PortSet:
        src, dst = key
        return self._get(self._src_class[src], self._dst_class[dst])

    def __iter__(self) -> Iterator[tuple[Endpoint, Endpoint]]:
        return ((s, d) for s in self.sources for d in self.destinations)

    def __len__(self) -> int:
        return len(self.sources) * len(self.destinations)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        return key[0] in self._src_class and key[1] in self._dst_class

    def groups(
        self, include_denied: bool = True
    ) -> Iterator[tuple[tuple[Endpoint, ...], tuple[Endpoint, ...], PortSet]]:
        """(sources, destinations, ports) per class pair; every pair in the product shares `ports`.

        With include_denied=False only pairs with something allowed are produced, in time
        proportional to their number rather than to the size of the matrix.
        """
        srcs = _members(self._src_class)
        dsts = _members(self._dst_class)
        open_in = [di for di, is_open in enumerate(self._open_in) if is_open]
        for si, row in enumerate(self._rows):
            if include_denied:
                for di in range(len(dsts)):
                    yield srcs[si], dsts[di], self._get(si, di)
                continue
            for di, ports in row.items():
                yield srcs[si], dsts[di], ports
            if self._open_eg[si]:
                for di in open_in:
                    if di not in row:
                        yield srcs[si], dsts[di], PortSet.ALL

    @property
    def class_counts(self) -> tuple[int, int]:
        """(source classes, destination classes): the size of the evaluated matrix."""
        return len(self._rows), len(self._open_in)


class _Pruner:
    """Bitsets over destination classes that narrow each row to the pairs worth computing.

    Pairs where neither side is isolated are ALL and left implicit (see ConnectivityMatrix).
    Otherwise something can be allowed only if (the destination's ingress is open, or one of
    its ingress rules' clauses matches the source) and (the source's egress is open, or one
    of its egress rules' clauses matches the destination). Both tests are ORs of per-clause
    bitsets, so a row costs time in its candidates rather than in its length.
    """

    def __init__(self, ev: Evaluator, dsts: list[tuple[_Atom, ...]]) -> None:
        self._ev = ev
        self.open_in = [all(a.in_sig < 0 for a in d) for d in dsts]
        has_clause: dict[int, list[int]] = defaultdict(list)  # clause bit -> dst classes whose peer matches it
        in_clause: dict[int, list[int]] = defaultdict(list)  # clause bit -> dst classes whose ingress rules use it
        for j, d in enumerate(dsts):
            for atom in d:
                for c in _iter_bits(atom.peer_mask):
                    has_clause[c].append(j)
                if atom.in_sig >= 0:
                    for c in _iter_bits(ev._relevant(atom.in_sig)):
                        in_clause[c].append(j)
        self._has = {c: _to_bits(js) for c, js in has_clause.items()}
        self._in = {c: _to_bits(js) for c, js in in_clause.items()}
        self._open_in_bits = _to_bits(j for j, is_open in enumerate(self.open_in) if is_open)
        self._cache: dict[tuple[tuple[int, int], ...], int] = {}

    def candidates(self, src: tuple[_Atom, ...]) -> int:
        key = tuple((a.peer_mask, a.eg_sig) for a in src)
        hit = self._cache.get(key)
        if hit is None:
            bits = 0
            for atom in src:
                for c in _iter_bits(atom.peer_mask):
                    bits |= self._in.get(c, 0)
            if not all(a.eg_sig < 0 for a in src):
                bits |= self._open_in_bits
                reach = 0
                for atom in src:
                    for c in _iter_bits(self._ev._relevant(atom.eg_sig)):
                        reach |= self._has.get(c, 0)
                bits &= reach
            hit = self._cache[key] = bits
        return hit


def _members(classes: dict[Endpoint, int]) -> list[tuple[Endpoint, ...]]:
    out: list[list[Endpoint]] = [[] for _ in range(max(classes.values(), default=-1) + 1)]
    for ep, ci in classes.items():
        out[ci].append(ep)
    return [tuple(m) for m in out]


class Evaluator:
    """Answers "what may src send to dst?" for parsed (or raw) policies over an inventory.

    Results are exact per the NetworkPolicy v1 reference; see the module docstring for
    the two implementation-defined corners (ipBlock vs pod IPs, External CIDRs).
    """

    def __init__(
        self,
        policies: Iterable[NetworkPolicy | Mapping[str, Any]],
        inventory: Inventory,
        *,
        ip_block_matches_pods: bool = True,
    ) -> None:
        self.ip_block_matches_pods = ip_block_matches_pods
        self.policies: tuple[NetworkPolicy, ...] = tuple(
            p if isinstance(p, NetworkPolicy) else parse_policy(p) for p in policies
        )
        self.inventory = inventory
        self._clauses: list[tuple[str, Peer]] = []  # (policy namespace, peer)
        self._rules: list[_CRule] = []
        self._policy_rules: list[tuple[tuple[int, ...], tuple[int, ...]]] = []  # (ingress, egress) rule ids
        self._by_ns: dict[str, list[int]] = defaultdict(list)
        self._sigs: list[_Sig] = []
        self._sig_ids: dict[tuple[int, ...], int] = {}
        self._atoms: dict[Pod, _Atom] = {}
        self._atom_intern: dict[tuple[Any, ...], _Atom] = {}
        self._ext_atoms: dict[External, tuple[tuple[str | None, _Atom], ...]] = {}
        self._rule_port_cache: dict[tuple[int, NamedPorts | None], PortSet] = {}
        self._dir_cache: dict[tuple[int, int, NamedPorts | None], PortSet] = {}
        self._portsets: dict[PortSet, PortSet] = {PortSet.ALL: PortSet.ALL, PortSet.NONE: PortSet.NONE}
        self._meet_cache: dict[tuple[int, int], PortSet] = {}
        self._bulk_done = False
        self._compile()

    # ------------------------------------------------------------------ compilation

    def _compile(self) -> None:
        clause_ids: dict[tuple[str, Peer], int] = {}
        for pi, pol in enumerate(self.policies):
            self._by_ns[pol.namespace].append(pi)
            per_dir: list[tuple[int, ...]] = []
            directions: tuple[tuple[Direction, tuple[Rule, ...], bool], ...] = (
                ("ingress", pol.ingress, pol.affects_ingress),
                ("egress", pol.egress, pol.affects_egress),
            )
            for direction, rules, active in directions:
                ids: list[int] = []
                for ri, rule in enumerate(rules if active else ()):
                    mask = 0 if rule.peers else _ANY
                    for peer in rule.peers:
                        # Only a podSelector-only peer depends on the policy's namespace.
                        scoped = peer.namespace_selector is None and peer.ip_block is None
                        key = (pol.namespace if scoped else "", peer)
                        if key not in clause_ids:
                            clause_ids[key] = len(self._clauses)
                            self._clauses.append(key)
                        mask |= _bit(clause_ids[key])
                    ref = RuleRef(PolicyRef(pol.namespace, pol.name), direction, ri)
                    ids.append(len(self._rules))
                    self._rules.append(_CRule(ref, rule, mask))
                per_dir.append(tuple(ids))
            self._policy_rules.append((per_dir[0], per_dir[1]))
        self._ip_clauses = [c for c, (_, peer) in enumerate(self._clauses) if peer.ip_block is not None]

    def _sig(self, rules: tuple[int, ...]) -> int:
        sid = self._sig_ids.get(rules)
        if sid is None:
            relevant = 0
            for r in rules:
                relevant |= self._rules[r].mask
            named = any(self._rules[r].rule.named_ports for r in rules)
            sid = self._sig_ids[rules] = len(self._sigs)
            self._sigs.append(_Sig(rules, relevant, named))
        return sid

    def _atom(self, peer_mask: int, named: NamedPorts | None, selecting: Iterable[int]) -> _Atom:
        sel = tuple(selecting)
        key = (peer_mask, named, sel)
        atom = self._atom_intern.get(key)
        if atom is None:
            in_p = tuple(pi for pi in sel if self.policies[pi].affects_ingress)
            eg_p = tuple(pi for pi in sel if self.policies[pi].affects_egress)
            in_sig = self._sig(tuple(chain.from_iterable(self._policy_rules[pi][0] for pi in in_p))) if in_p else -1
            eg_sig = self._sig(tuple(chain.from_iterable(self._policy_rules[pi][1] for pi in eg_p))) if eg_p else -1
            atom = self._atom_intern[key] = _Atom(peer_mask, named, in_sig, eg_sig, in_p, eg_p)
        return atom

    # ------------------------------------------------------------------ endpoints -> atoms

    def _pod_atom(self, pod: Pod) -> _Atom:
        atom = self._atoms.get(pod)
        if atom is None:
            ns_labels = self.inventory.namespace(pod.namespace).labels
            selecting = [
                pi for pi in self._by_ns.get(pod.namespace, ()) if self.policies[pi].pod_selector.matches(pod.labels)
            ]
            mask = _ANY
            for cid, (ns, peer) in enumerate(self._clauses):
                if _peer_matches_pod(ns, peer, pod, ns_labels, self.ip_block_matches_pods):
                    mask |= _bit(cid)
            atom = self._atoms[pod] = self._atom(mask, pod.named_ports, selecting)
        return atom

    def _external_atoms(self, ext: External) -> tuple[tuple[str | None, _Atom], ...]:
        """Split an External CIDR into regions no ipBlock boundary crosses; one atom per region."""
        cached = self._ext_atoms.get(ext)
        if cached is not None:
            return cached
        net = ext.network
        lo, hi = int(net.network_address), int(net.broadcast_address)
        cuts = {lo}
        for cid in self._ip_clauses:
            block = self._clauses[cid][1].ip_block
            assert block is not None
            for n in (block.cidr, *block.excepts):
                if n.version == net.version:
                    a, b = int(n.network_address), int(n.broadcast_address)
                    if lo < a <= hi:
                        cuts.add(a)
                    if lo <= b < hi:
                        cuts.add(b + 1)
        starts = sorted(cuts)
        make = type(net.network_address)
        out: list[tuple[str | None, _Atom]] = []
        for i, a in enumerate(starts):
            b = starts[i + 1] - 1 if i + 1 < len(starts) else hi
            addr: IPAddress = make(a)
            mask = _ANY
            for cid in self._ip_clauses:
                block = self._clauses[cid][1].ip_block
                if block is not None and block.contains(addr):
                    mask |= _bit(cid)
            span = None if len(starts) == 1 else _span(addr, make(b))
            out.append((span, self._atom(mask, None, ())))
        result = self._ext_atoms[ext] = tuple(out)
        return result

    def _endpoint_atoms(self, ep: Endpoint) -> tuple[tuple[str | None, _Atom], ...]:
        if isinstance(ep, Pod):
            return ((None, self._pod_atom(ep)),)
        return self._external_atoms(ep)

    def _ensure_bulk(self) -> None:
        """Compute atoms for all inventory pods at once with bitset selector evaluation."""
        if self._bulk_done:
            return
        self._bulk_done = True
        pods = [p for p in self.inventory.pods if p not in self._atoms]
        if not pods:
            return
        idx = _BitIndex(pods, self.inventory)
        clause_lists: list[list[int]] = [[0] for _ in pods]  # bit 0: _ANY
        for cid, (ns, peer) in enumerate(self._clauses):
            if peer.ip_block is not None and not self.ip_block_matches_pods:
                continue
            for i in _iter_bits(idx.peer_bits(ns, peer)):
                clause_lists[i].append(cid + 1)
        selecting: list[list[int]] = [[] for _ in pods]
        for pi, pol in enumerate(self.policies):
            for i in _iter_bits(idx.pods(pol.pod_selector) & idx.ns_pods(pol.namespace)):
                selecting[i].append(pi)
        for i, pod in enumerate(pods):
            self._atoms[pod] = self._atom(_to_bits(clause_lists[i]), pod.named_ports, selecting[i])

    # ------------------------------------------------------------------ port computation

    def _canon(self, ps: PortSet) -> PortSet:
        return self._portsets.setdefault(ps, ps)

    def _rule_ports(self, rid: int, named: NamedPorts | None) -> PortSet:
        rule = self._rules[rid].rule
        if not rule.named_ports:
            return rule.static_ports
        key = (rid, named)
        hit = self._rule_port_cache.get(key)
        if hit is None:
            hit = self._rule_port_cache[key] = rule.ports_for(named)
        return hit

    def _dir_ports(self, sig: int, peer_mask: int, dst_named: NamedPorts | None) -> PortSet:
        """Ports allowed by rule set `sig` towards/from a peer with `peer_mask` (dst ports `dst_named`)."""
        if sig < 0:
            return PortSet.ALL
        s = self._sigs[sig]
        key = (sig, peer_mask & s.relevant, dst_named if s.named else None)
        hit = self._dir_cache.get(key)
        if hit is None:
            acc = PortSet.NONE
            for rid in s.rules:
                cr = self._rules[rid]
                if cr.mask & peer_mask:
                    acc = acc | self._rule_ports(rid, dst_named)
            hit = self._dir_cache[key] = self._canon(acc)
        return hit

    def _meet(self, a: PortSet, b: PortSet) -> PortSet:
        key = (id(a), id(b))
        hit = self._meet_cache.get(key)
        if hit is None:
            hit = self._meet_cache[key] = self._canon(a & b)
        return hit

    def _pair(self, src: Sequence[_Atom], dst: Sequence[_Atom]) -> PortSet:
        result = PortSet.ALL
        for sa in src:
            for da in dst:
                e = self._dir_ports(sa.eg_sig, da.peer_mask, da.named)
                i = self._dir_ports(da.in_sig, sa.peer_mask, da.named)
                result = self._meet(result, self._meet(e, i))
        return result

    # ------------------------------------------------------------------ public API

    def allowed(self, src: Endpoint, dst: Endpoint) -> PortSet:
        """Every (protocol, port) on which src may open a connection to dst."""
        s = [a for _, a in self._endpoint_atoms(src)]
        d = [a for _, a in self._endpoint_atoms(dst)]
        return self._pair(s, d)

    def matrix(
        self, sources: Iterable[Endpoint] | None = None, destinations: Iterable[Endpoint] | None = None
    ) -> ConnectivityMatrix:
        """allowed() for every pair; defaults to all inventory pods and externals on both sides."""
        self._ensure_bulk()
        srcs = tuple(dict.fromkeys(self.inventory.endpoints if sources is None else sources))
        dsts = tuple(dict.fromkeys(self.inventory.endpoints if destinations is None else destinations))
        src_class, src_reps = self._classify(srcs, lambda a: (a.eg_sig, a.peer_mask))
        dst_class, dst_reps = self._classify(dsts, lambda a: (a.in_sig, a.peer_mask, a.named))
        prune = _Pruner(self, dst_reps)
        rows = [self._row(s, dst_reps, prune) for s in src_reps]
        open_eg = [all(a.eg_sig < 0 for a in s) for s in src_reps]
        return ConnectivityMatrix(srcs, dsts, src_class, dst_class, rows, open_eg, prune.open_in)

    def _relevant(self, sig: int) -> int:
        return self._sigs[sig].relevant if sig >= 0 else 0

    def _classify(
        self, endpoints: tuple[Endpoint, ...], key: Callable[[_Atom], Hashable]
    ) -> tuple[dict[Endpoint, int], list[tuple[_Atom, ...]]]:
        """Group endpoints that no policy can tell apart in this role (source or destination)."""
        classes: dict[Endpoint, int] = {}
        reps: list[tuple[_Atom, ...]] = []
        seen: dict[tuple[Hashable, ...], int] = {}
        for ep in endpoints:
            atoms = tuple(a for _, a in self._endpoint_atoms(ep))
            k = tuple(key(a) for a in atoms)
            ci = seen.get(k)
            if ci is None:
                ci = seen[k] = len(reps)
                reps.append(atoms)
            classes[ep] = ci
        return classes, reps

    def _row(self, src: tuple[_Atom, ...], dsts: list[tuple[_Atom, ...]], prune: _Pruner) -> dict[int, PortSet]:
        """One matrix row: the non-empty results among the destinations that could match."""
        row: dict[int, PortSet] = {}
        none = PortSet.NONE
        sa = src[0]
        for j in _iter_bits(prune.candidates(src)):
            d = dsts[j]
            if len(d) == 1 and len(src) == 1:
                da = d[0]
                i = self._dir_ports(da.in_sig, sa.peer_mask, da.named)
                ps = i if i is none else self._meet(self._dir_ports(sa.eg_sig, da.peer_mask, da.named), i)
            else:
                ps = self._pair(src, d)
            if ps is not none:
                row[j] = ps
        return row

    def explain(self, src: Endpoint, dst: Endpoint, protocol: str, port: int) -> Verdict:
        """Allowed or not on one (protocol, port), with the rules/policies responsible per direction."""
        check_protocol(protocol)
        if isinstance(port, bool) or not isinstance(port, int) or not PORT_MIN <= port <= PORT_MAX:
            raise ValueError(f"port must be an integer in {PORT_MIN}..{PORT_MAX}, got {port!r}")
        s_atoms, d_atoms = self._endpoint_atoms(src), self._endpoint_atoms(dst)
        egress = self._explain_dir("egress", src, d_atoms, protocol, port)
        ingress = self._explain_dir("ingress", dst, s_atoms, protocol, port)
        return Verdict(_name(src), _name(dst), protocol, port, egress, ingress)

    def _explain_dir(
        self,
        direction: Direction,
        governed: Endpoint,
        peers: tuple[tuple[str | None, _Atom], ...],
        protocol: str,
        port: int,
    ) -> DirectionVerdict:
        name = _name(governed)
        if not isinstance(governed, Pod):
            return DirectionVerdict(direction, name, "external")
        atom = self._pod_atom(governed)
        sig = atom.in_sig if direction == "ingress" else atom.eg_sig
        if sig < 0:
            return DirectionVerdict(direction, name, "not-isolated")
        isolating = tuple(
            PolicyRef(self.policies[pi].namespace, self.policies[pi].name)
            for pi in (atom.in_policies if direction == "ingress" else atom.eg_policies)
        )
        allowing: dict[RuleRef, None] = {}
        denied_for: str | None = None
        denied = False
        for span, peer in peers:
            # Named ports resolve on the destination: the peer for egress, the governed pod for ingress.
            named = peer.named if direction == "egress" else atom.named
            hits = [
                self._rules[rid].ref
                for rid in self._sigs[sig].rules
                if self._rules[rid].mask & peer.peer_mask and self._rule_ports(rid, named).contains(protocol, port)
            ]
            allowing.update(dict.fromkeys(hits))
            if not hits and not denied:
                denied, denied_for = True, span
        if denied:
            return DirectionVerdict(direction, name, "denied", tuple(allowing), isolating, denied_for)
        return DirectionVerdict(direction, name, "allowed", tuple(allowing), isolating)

    def selecting_policies(self, pod: Pod) -> tuple[NetworkPolicy, ...]:
        """Policies whose podSelector selects `pod` (each affects ingress, egress or both)."""
        atom = self._pod_atom(pod)
        return tuple(self.policies[pi] for pi in sorted({*atom.in_policies, *atom.eg_policies}))


def _span(first: IPAddress, last: IPAddress) -> str:
    """Render an address range as a CIDR when it is exactly one, else as first-last."""
    nets = list(ipaddress.summarize_address_range(first, last))
    return str(nets[0]) if len(nets) == 1 else f"{first}-{last}"


def _name(ep: Endpoint) -> str:
    return ep.ref


def _peer_matches_pod(
    namespace: str, peer: Peer, pod: Pod, ns_labels: Mapping[str, str], ip_block_matches_pods: bool
) -> bool:
    """Single-pod peer matching: the readable reference the bitset path must agree with."""
    if peer.ip_block is not None:
        return ip_block_matches_pods and pod.address is not None and peer.ip_block.contains(pod.address)
    if peer.namespace_selector is None:
        assert peer.pod_selector is not None
        return pod.namespace == namespace and peer.pod_selector.matches(pod.labels)
    if not peer.namespace_selector.matches(ns_labels):
        return False
    return peer.pod_selector is None or peer.pod_selector.matches(pod.labels)


# ---------------------------------------------------------------------- bitsets


def _to_bits(indices: Iterable[int]) -> int:
    buf = bytearray()
    for i in indices:
        byte = i >> 3
        if byte >= len(buf):
            buf.extend(bytes(byte - len(buf) + 1))
        buf[byte] |= 1 << (i & 7)
    return int.from_bytes(buf, "little")


def _iter_bits(bits: int) -> Iterator[int]:
    text = bin(bits)[:1:-1]  # least significant bit first
    i = text.find("1")
    while i >= 0:
        yield i
        i = text.find("1", i + 1)


class _BitIndex:
    """Label indexes over pods and namespaces so that a selector evaluates to a bitset in a few ops."""

    def __init__(self, pods: Sequence[Pod], inventory: Inventory) -> None:
        self.full = (1 << len(pods)) - 1
        kv: dict[tuple[str, str], list[int]] = defaultdict(list)
        keys: dict[str, list[int]] = defaultdict(list)
        by_ns: dict[str, list[int]] = defaultdict(list)
        addrs: dict[int, list[tuple[int, int]]] = defaultdict(list)
        self.address: list[IPAddress | None] = [pod.address for pod in pods]
        for i, pod in enumerate(pods):
            by_ns[pod.namespace].append(i)
            for k, v in pod.labels.items():
                kv[(k, v)].append(i)
                keys[k].append(i)
            if pod.address is not None:
                addrs[pod.address.version].append((int(pod.address), i))
        self.kv = {k: _to_bits(v) for k, v in kv.items()}
        self.keys = {k: _to_bits(v) for k, v in keys.items()}
        self._ns_pods = {ns: _to_bits(v) for ns, v in by_ns.items()}
        self.addrs = {ver: sorted(v) for ver, v in addrs.items()}
        self.namespaces = list(inventory.namespaces)
        ns_kv: dict[tuple[str, str], list[int]] = defaultdict(list)
        ns_keys: dict[str, list[int]] = defaultdict(list)
        for j, ns in enumerate(self.namespaces):
            for k, v in ns.labels.items():
                ns_kv[(k, v)].append(j)
                ns_keys[k].append(j)
        self.ns_full = (1 << len(self.namespaces)) - 1
        self.ns_kv = {k: _to_bits(v) for k, v in ns_kv.items()}
        self.ns_keys = {k: _to_bits(v) for k, v in ns_keys.items()}
        self._pod_cache: dict[LabelSelector, int] = {}
        self._ns_cache: dict[LabelSelector, int] = {}

    def ns_pods(self, namespace: str) -> int:
        return self._ns_pods.get(namespace, 0)

    def pods(self, sel: LabelSelector) -> int:
        hit = self._pod_cache.get(sel)
        if hit is None:
            hit = self._pod_cache[sel] = _eval(sel, self.kv, self.keys, self.full)
        return hit

    def pods_in_namespaces(self, sel: LabelSelector) -> int:
        hit = self._ns_cache.get(sel)
        if hit is None:
            bits = 0
            for j in _iter_bits(_eval(sel, self.ns_kv, self.ns_keys, self.ns_full)):
                bits |= self.ns_pods(self.namespaces[j].name)
            hit = self._ns_cache[sel] = bits
        return hit

    def peer_bits(self, namespace: str, peer: Peer) -> int:
        if peer.ip_block is not None:
            # Pods inside the cidr form a contiguous run of the address-sorted pool.
            block = peer.ip_block
            pool = self.addrs.get(block.cidr.version, [])
            lo = bisect.bisect_left(pool, (int(block.cidr.network_address),))
            hi = bisect.bisect_left(pool, (int(block.cidr.broadcast_address) + 1,))
            return _to_bits(i for _, i in pool[lo:hi] if block.contains(self.address[i]))  # type: ignore[arg-type]
        if peer.namespace_selector is None:
            assert peer.pod_selector is not None
            return self.pods(peer.pod_selector) & self.ns_pods(namespace)
        bits = self.pods_in_namespaces(peer.namespace_selector)
        if peer.pod_selector is not None:
            bits &= self.pods(peer.pod_selector)
        return bits


def _eval(sel: LabelSelector, kv: dict[tuple[str, str], int], keys: dict[str, int], full: int) -> int:
    bits = full
    for k, v in sel.match_labels:
        bits &= kv.get((k, v), 0)
    for req in sel.requirements:
        if req.operator in ("In", "NotIn"):
            hit = 0
            for v in req.values:
                hit |= kv.get((req.key, v), 0)
            bits &= hit if req.operator == "In" else full & ~hit
        elif req.operator == "Exists":
            bits &= keys.get(req.key, 0)
        else:
            bits &= full & ~keys.get(req.key, 0)
    return bits
