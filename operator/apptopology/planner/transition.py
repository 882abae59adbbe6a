"""The order of writes from one revision's policies to the next that never opens more than either.

NetworkPolicies are additive and a connection needs both its egress and its ingress half, so writing a
revision policy by policy can open, for a moment, traffic that neither revision allows: the old
revision's ingress rule of the database is still there while the new revision's egress rule of the api
already is. This module orders the writes so that at **every** moment the namespace allows a subset of
the old revision (first) and then a subset of the new one, never anything else:

1. **isolate**: every pod that either revision isolates gets isolated before any allow rule moves
   (new policies are created without rules; temporary rule-less *guard* policies where no policy of
   either revision can hold the isolation);
2. **revoke**: rules only the old revision has are removed (policies narrowed, or deleted when their
   isolation is held elsewhere);
3. **grant**: the new revision's policies are written as they are meant to be;
4. **release**: policies of the old revision and guards are deleted.

The states between 2 and 3 allow only what both revisions allow (a moment of fail-closed, never of
fail-open). Most changes need far fewer writes: a policy whose change only widens is written once in
step 3; one that only narrows, once in step 2; a new revision created from nothing under a namespace-wide
default-deny is written once per policy.

The argument is syntactic and sound. A state S allows a subset of revision R when every isolation
(selector, direction) of R is held in S by a policy with the same selector or ``podSelector: {}``, and
every allow *atom* of S (selector, direction, peer, port) is granted in R by a policy whose selector,
peer and port are the same or wider (``{}`` selector, any peer, all ports). Then a pod isolated in R is
isolated in S and S grants it nothing R does not, and a pod not isolated in R is open in R anyway. The
same holds with any other policies of the namespace added to both. :func:`check` verifies every
intermediate state of a sequence that way; the planner falls back to the always-valid full sequence if
its shortcut ever fails that check.

**Cost.** Let P be the number of policies of both revisions (with guards), A the allow atoms of a policy
(peers x ports of its rules; up to 512 flows x 32 ports for the CRD's largest topology) and M the moves.
Each policy's atoms are computed once; "is this atom granted" is answered by an index of the revision
(exact atom, then the few peers that can cover it, then a binary search over its port ranges) in
O(log A), once per distinct atom; a state is tracked one policy at a time (:class:`_Tracker`), so a move
costs the size of the moved policy, not of the state. Hence :func:`check` is O(M A log A), :func:`_direct`
and :func:`_full` are linear, and the midpoint shortcut adds O(P^2) steps (at each step of
:func:`_keeping` the pending moves are tried in order, each trial O(1) after its policy was first seen;
:func:`_midpoint` restores isolations one at a time). Those steps are counted against
:data:`WORK_BUDGET`; past it the full sequence is used, so the result depends on the input alone and the
time is bounded whatever the owned policies are. The CRD's largest topology plans in well under a second
(numbers in bench/README.md).

Pure: specs are plain dicts in stored form (:func:`apptopology.planner.compare.stored_spec`).
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from .compare import stored_spec

Spec = dict[str, Any]
Selector = str  # canonical JSON of a stored label selector
Isolation = tuple[Selector, str]  # (pod selector, "Ingress" | "Egress")
Atom = tuple[Selector, str, str | None, str | None]  # (selector, direction, peer or None=any, port or None=all)

EVERYTHING = json.dumps({}, sort_keys=True)
_DIRECTIONS = (("Ingress", "ingress", "from"), ("Egress", "egress", "to"))


class Phase(IntEnum):
    ISOLATE = 1
    REVOKE = 2
    GRANT = 3
    RELEASE = 4


@dataclass(frozen=True)
class Move:
    """Put policy ``name`` into shape ``spec`` (None: delete it). ``final``: the revision's own object."""

    name: str
    spec: Spec | None
    phase: Phase
    final: bool


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))  # json.dumps' output, without its set-up


def _canon(obj: Any) -> str:
    return _ENCODER.encode(obj)


def _parsed(text: str, memo: dict[str, Any]) -> Any:
    """A canonical peer or port, decoded once per ``memo`` (so shared: read only)."""
    out = memo.get(text)
    if out is None:
        out = memo[text] = json.loads(text)
    return out


def _types(spec: Mapping[str, Any]) -> list[str]:
    return list(spec.get("policyTypes") or [])


def isolation(spec: Mapping[str, Any]) -> set[Isolation]:
    sel = _canon(spec.get("podSelector") or {})
    return {(sel, t) for t in _types(spec)}


def atoms(spec: Mapping[str, Any], ports_memo: dict[Any, str] | None = None) -> set[Atom]:
    """Every (selector, direction, peer, port) the policy allows; rules in undeclared directions count for
    nothing (the API ignores them). ``ports_memo`` keeps the canonical form of ports seen before."""
    sel = _canon(spec.get("podSelector") or {})
    memo = {} if ports_memo is None else ports_memo
    out: set[Atom] = set()
    for ptype, field, peers_field in _DIRECTIONS:
        if ptype not in _types(spec):
            continue
        for rule in spec.get(field) or []:
            peers: list[str | None] = [_canon(p) for p in rule.get(peers_field) or []] or [None]
            ports: list[str | None] = [_canon_port(p, memo) for p in rule.get("ports") or []] or [None]
            out.update((sel, ptype, peer, port) for peer in peers for port in ports)
    return out


def _canon_port(port: Any, memo: dict[Any, str]) -> str:
    """``_canon(port)``, looked up by the entry's keys, value types and values when they are all scalars
    (as every stored port is; the same keys in another order only miss): a port repeats across the
    policies of both revisions and their shapes."""
    try:
        values = tuple(port.values())
        key = (tuple(port), values, tuple(map(type, values)))
        hit = memo.get(key)
    except (AttributeError, TypeError):  # not a mapping of scalars
        return _canon(port)
    if hit is None:
        hit = memo[key] = _canon(port)
    return hit


def _peer_covers(big: str | None, small: str | None) -> bool:
    """Whether peer ``big`` admits everything peer ``small`` admits (None: any peer). Sound, not complete:
    selectors are compared for equality or ``{}``, ipBlocks for equality."""
    if big is None or big == small:
        return True
    if small is None:
        return False
    b, s = json.loads(big), json.loads(small)
    if "ipBlock" in b or "ipBlock" in s:
        return False
    # Namespaces: absent = the policy's own namespace; {} = every namespace (which includes it).
    ns_ok = b.get("namespaceSelector") == {} or b.get("namespaceSelector") == s.get("namespaceSelector")
    # Pods: absent (with a namespaceSelector) or {} = every pod of those namespaces.
    pod_ok = b.get("podSelector", {}) == {} or b.get("podSelector") == s.get("podSelector")
    return bool(ns_ok and pod_ok)


def _port_covers(big: str | None, small: str | None) -> bool:
    """Whether port entry ``big`` admits every port ``small`` admits (None: all ports and protocols)."""
    if big is None or big == small:
        return True
    if small is None:
        return False
    b, s = json.loads(big), json.loads(small)
    if b.get("protocol") != s.get("protocol"):
        return False
    if "port" not in b:
        return True  # every port of the protocol
    if not isinstance(b["port"], int) or not isinstance(s.get("port"), int):
        return False  # named ports: only the same name (handled by equality above)
    return bool(b["port"] <= s["port"] and s.get("endPort", s["port"]) <= b.get("endPort", b["port"]))


class _Facts:
    """What each spec isolates and allows, computed once per spec object during one planning call.

    Specs are never mutated while planning, and the memo holds every spec it has seen, so an ``id`` is
    never reused for another spec while the memo lives."""

    def __init__(self) -> None:
        self._memo: dict[int, tuple[Mapping[str, Any], frozenset[Isolation], frozenset[Atom]]] = {}
        self._ports: dict[Any, str] = {}

    def _of(self, spec: Mapping[str, Any]) -> tuple[Mapping[str, Any], frozenset[Isolation], frozenset[Atom]]:
        hit = self._memo.get(id(spec))
        if hit is None or hit[0] is not spec:
            hit = self._memo[id(spec)] = (spec, frozenset(isolation(spec)), frozenset(atoms(spec, self._ports)))
        return hit

    def isolation(self, spec: Mapping[str, Any] | None) -> frozenset[Isolation]:
        return self._of(spec)[1] if spec is not None else frozenset()

    def atoms(self, spec: Mapping[str, Any] | None) -> frozenset[Atom]:
        return self._of(spec)[2] if spec is not None else frozenset()


class _Ports:
    """The ports granted to one (selector, direction, peer), for :func:`_port_covers` questions in
    O(log n): exact entries, then (built on the first question they answer) whole protocols and numeric
    ranges sorted by their start, with the furthest end reached so far."""

    def __init__(self, parsed: dict[str, Any]) -> None:
        self.parsed = parsed
        self.exact: set[str | None] = set()
        self._wide: tuple[set[Any], dict[Any, tuple[list[int], list[int]]]] | None = None

    def add(self, port: str | None) -> None:
        self.exact.add(port)
        self._wide = None

    def _index(self) -> tuple[set[Any], dict[Any, tuple[list[int], list[int]]]]:
        whole: set[Any] = set()  # protocols of entries without a port
        ranges: dict[Any, list[tuple[int, int]]] = {}
        for port in self.exact:
            if port is None:
                continue  # all ports: answered before the index is needed
            b = _parsed(port, self.parsed)
            if "port" not in b:
                whole.add(b.get("protocol"))
            elif isinstance(b["port"], int) and isinstance(b.get("endPort", b["port"]), int):
                ranges.setdefault(b.get("protocol"), []).append((b["port"], b.get("endPort", b["port"])))
        by_start = {}
        for protocol, found in ranges.items():
            found.sort()
            furthest, ends = -(2**63), []
            for _, end in found:
                furthest = max(furthest, end)
                ends.append(furthest)
            by_start[protocol] = ([start for start, _ in found], ends)
        return whole, by_start

    def covers(self, port: str | None) -> bool:
        if None in self.exact or port in self.exact:
            return True
        if port is None:
            return False
        if self._wide is None:
            self._wide = self._index()
        whole, by_start = self._wide
        s = _parsed(port, self.parsed)
        protocol = s.get("protocol")
        if protocol in whole:
            return True
        if not isinstance(s.get("port"), int):
            return False
        starts, ends = by_start.get(protocol, ([], []))
        # The ranges starting at or before the port's first; the furthest they reach must be its last.
        i = bisect.bisect_right(starts, s["port"])
        return bool(i > 0 and ends[i - 1] >= s.get("endPort", s["port"]))


class _Grants:
    """The (peer, port) pairs granted to one (selector, direction), indexed by the peers that can cover
    a given peer under :func:`_peer_covers`: any peer, the same peer, and the two kinds of wide peers
    (every namespace; every pod of a namespace selection). Same answers as scanning every pair."""

    def __init__(self, parsed: dict[str, Any]) -> None:
        self.parsed = parsed
        self.peers: dict[str | None, _Ports] = {}
        self._any_namespace: dict[str, list[str]] = {}  # pod selector ("*": any pod) -> peers
        self._any_pod: dict[str | None, list[str]] = {}  # namespace selector (None: own) -> peers

    def add(self, peer: str | None, port: str | None) -> None:
        ports = self.peers.get(peer)
        if ports is None:
            ports = self.peers[peer] = _Ports(self.parsed)
            if peer is not None:
                b = _parsed(peer, self.parsed)
                if "ipBlock" not in b:
                    any_pod = b.get("podSelector", {}) == {}
                    if b.get("namespaceSelector") == {}:
                        key = "*" if any_pod else _canon(b.get("podSelector"))
                        self._any_namespace.setdefault(key, []).append(peer)
                    if any_pod:
                        ns = b.get("namespaceSelector")
                        self._any_pod.setdefault(None if ns is None else _canon(ns), []).append(peer)
        ports.add(port)

    def covers(self, peer: str | None, port: str | None) -> bool:
        candidates: list[str | None] = [None, peer]
        if peer is not None:
            s = _parsed(peer, self.parsed)
            if "ipBlock" not in s and self._any_namespace:
                candidates += self._any_namespace.get("*", [])
                if "podSelector" in s:
                    candidates += self._any_namespace.get(_canon(s["podSelector"]), [])
            if "ipBlock" not in s and self._any_pod:
                ns = s.get("namespaceSelector")
                candidates += self._any_pod.get(None if ns is None else _canon(ns), [])
        return any((ports := self.peers.get(p)) is not None and ports.covers(port) for p in candidates)


class _Index:
    """What a set of policies isolates and allows, for coverage questions (answers memoized)."""

    def __init__(self, specs: Iterable[Mapping[str, Any]], facts: _Facts | None = None):
        facts = facts or _Facts()
        self.isolation: set[Isolation] = set()
        self.atoms: set[Atom] = set()
        for spec in specs:
            self.isolation |= facts.isolation(spec)
            self.atoms |= facts.atoms(spec)
        self._grants: dict[tuple[Selector, str], _Grants] = {}
        parsed: dict[str, Any] = {}
        for sel, direction, peer, port in self.atoms:
            grants = self._grants.get((sel, direction))
            if grants is None:
                grants = self._grants[sel, direction] = _Grants(parsed)
            grants.add(peer, port)
        self._answers: dict[Atom, bool] = {}

    def holds(self, iso: Isolation) -> bool:
        return iso in self.isolation or (EVERYTHING, iso[1]) in self.isolation

    def grants(self, atom: Atom) -> bool:
        return atom in self.atoms or self._covered(atom)

    def _covered(self, atom: Atom) -> bool:
        answer = self._answers.get(atom)
        if answer is None:
            sel, direction, peer, port = atom
            grants = self._grants.get((sel, direction))
            answer = grants is not None and grants.covers(peer, port)
            if not answer and sel != EVERYTHING:
                grants = self._grants.get((EVERYTHING, direction))
                answer = grants is not None and grants.covers(peer, port)
            self._answers[atom] = answer
        return answer

    def grants_all(self, atom_set: frozenset[Atom]) -> bool:
        return all(self._covered(a) for a in atom_set - self.atoms)

    def ungranted(self, atom_set: frozenset[Atom]) -> int:
        """How many of ``atom_set`` this index does not grant."""
        return sum(not self._covered(a) for a in atom_set - self.atoms)


class _Isolations:
    """A multiset of the isolations a changing set of policies holds."""

    def __init__(self) -> None:
        self.count: dict[Isolation, int] = {}

    def change(self, isos: Iterable[Isolation], by: int) -> None:
        for iso in isos:
            self.count[iso] = self.count.get(iso, 0) + by
            if not self.count[iso]:
                del self.count[iso]

    def holds(self, iso: Isolation) -> bool:
        return iso in self.count or (EVERYTHING, iso[1]) in self.count


class _Tracker:
    """Whether a state, changed one policy at a time, is :func:`within` a fixed revision, in time
    proportional to the changed policy (not the state): the revision's isolations the state does not hold
    are counted, and so are the state's allow atoms the revision does not grant (per policy, memoized)."""

    def __init__(self, revision: _Index, facts: _Facts, start: Mapping[str, Spec]):
        self.revision, self.facts = revision, facts
        self.state: dict[str, Spec] = {}
        self.held = _Isolations()
        self._by_direction: dict[str, list[Isolation]] = {}
        for iso in sorted(revision.isolation):
            self._by_direction.setdefault(iso[1], []).append(iso)
        self.unheld = len(revision.isolation)
        self.ungranted = 0
        self._ungranted: dict[int, tuple[Spec, int]] = {}
        for name, spec in start.items():
            self.put(name, spec)

    def _ungranted_of(self, spec: Spec | None) -> int:
        if spec is None:
            return 0
        hit = self._ungranted.get(id(spec))
        if hit is None or hit[0] is not spec:
            count = self.revision.ungranted(self.facts.atoms(spec))
            hit = self._ungranted[id(spec)] = (spec, count)
        return hit[1]

    def put(self, name: str, spec: Spec | None) -> None:
        """Policy ``name`` takes shape ``spec`` (None: it is deleted)."""
        before = self.state.get(name)
        if spec is None:
            self.state.pop(name, None)
        else:
            self.state[name] = spec
        self.ungranted += self._ungranted_of(spec) - self._ungranted_of(before)
        gone, came = self.facts.isolation(before), self.facts.isolation(spec)
        if gone == came:
            return
        moved = gone ^ came
        affected = {i for i in moved if i in self.revision.isolation}
        for sel, direction in moved:
            if sel == EVERYTHING:
                affected.update(self._by_direction.get(direction, ()))
        self.unheld -= sum(not self.held.holds(i) for i in affected)
        self.held.change(gone, -1)
        self.held.change(came, 1)
        self.unheld += sum(not self.held.holds(i) for i in affected)

    def within(self) -> bool:
        return self.unheld == 0 and self.ungranted == 0

    def fits(self, name: str, spec: Spec | None) -> bool:
        """Whether the state is within the revision after ``name`` takes shape ``spec`` (state unchanged)."""
        before = self.state.get(name)
        self.put(name, spec)
        ok = self.within()
        self.put(name, before)
        return ok


def within(state: Mapping[str, Spec], revision: Mapping[str, Spec]) -> bool:
    """Whether the policies ``state`` allow a subset of what ``revision`` allows (see the module docstring).
    Rebuilt from scratch: the definition that :class:`_Tracker` follows incrementally."""
    have, ref = _Index(state.values()), _Index(revision.values())
    return all(have.holds(i) for i in ref.isolation) and all(ref.grants(a) for a in have.atoms)


class _OverBudget(Exception):
    """A shortcut ran out of its work budget: the always-valid full sequence is used instead."""


class _Work:
    """One planning call: the two revisions' indexes, the facts of every spec, and the work budget of the
    shortcuts (a count of elementary steps, so the outcome never depends on the machine's speed)."""

    def __init__(self, old: Mapping[str, Spec], new: Mapping[str, Spec], budget: int):
        self.facts = _Facts()
        self.old, self.new = _Index(old.values(), self.facts), _Index(new.values(), self.facts)
        self.left = budget

    def spend(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise _OverBudget

    def check(self, old: Mapping[str, Spec], new: Mapping[str, Spec], moves: list[Move]) -> bool:
        """:func:`check`, with this call's indexes; linear in the number of moves and their sizes."""
        in_old, in_new = _Tracker(self.old, self.facts, old), _Tracker(self.new, self.facts, old)
        old_ok, new_ok = [in_old.within()], [in_new.within()]
        for move in moves:
            in_old.put(move.name, move.spec)
            in_new.put(move.name, move.spec)
            old_ok.append(in_old.within())
            new_ok.append(in_new.within())
        if in_old.state != dict(new):
            return False
        # Some state is within both: everything before it within old, everything after it within new.
        first_outside_old = old_ok.index(False) if False in old_ok else len(old_ok)
        last_outside_new = max((k for k, ok in enumerate(new_ok) if not ok), default=-1)
        return last_outside_new + 1 < first_outside_old


def _rules_from(atom_set: Iterable[Atom], ptype: str, peers_field: str) -> list[dict[str, Any]]:
    """Rules granting exactly ``atom_set``'s atoms of direction ``ptype``: one rule per peer with its ports."""
    by_peer: dict[str | None, set[str | None]] = {}
    for _, direction, peer, port in atom_set:
        if direction == ptype:
            by_peer.setdefault(peer, set()).add(port)
    rules = []
    for peer in sorted(by_peer, key=lambda p: (p is not None, p or "")):
        ports = by_peer[peer]
        rule: dict[str, Any] = {}
        if peer is not None:
            rule[peers_field] = [json.loads(peer)]
        if None not in ports:
            rule["ports"] = [json.loads(p) for p in sorted(p for p in ports if p is not None)]
        rules.append(rule)
    return rules


def _shape(selector: Mapping[str, Any], types: Iterable[str], granted: Iterable[Atom]) -> Spec:
    """A policy for ``selector`` isolating ``types`` that grants exactly ``granted`` (in those types)."""
    type_list = [t for t, _, _ in _DIRECTIONS if t in set(types)]
    granted = set(granted)
    spec: Spec = {"podSelector": dict(selector), "policyTypes": type_list}
    for ptype, field, peers_field in _DIRECTIONS:
        if ptype in type_list:
            spec[field] = _rules_from(granted, ptype, peers_field)
    return stored_spec(spec)


def rule_less(spec: Mapping[str, Any]) -> Spec:
    """The policy's isolation without any of its rules."""
    return _shape(spec.get("podSelector") or {}, _types(spec), ())


def guard_name(base: str, selector: Selector) -> str:
    """A deterministic name for the guard of ``selector`` (DNS subdomain; never a revision's own name)."""
    return f"{base}.guard-{hashlib.sha256(selector.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class GuardNames:
    """Names for guards: :func:`guard_name`, or the first of ``-2``, ``-3``... that no other object holds.

    Anyone who may create a NetworkPolicy in the namespace can take a guard's name before we do; the guard
    then goes elsewhere instead of merging into (and later deleting) their object, or stalling the change.
    Deterministic for the same names taken, so a replanned attempt reuses the guards a crashed one left.
    """

    base: str
    taken: frozenset[str] = frozenset()

    def __call__(self, selector: Selector) -> str:
        name = first = guard_name(self.base, selector)
        suffix = 1
        while name in self.taken:
            suffix += 1
            name = f"{first}-{suffix}"
        return name


def _midpoint(
    old: Mapping[str, Spec], new: Mapping[str, Spec], rewrite: set[str], guards: GuardNames, work: _Work
) -> dict[str, Spec | None]:
    """The shape of every touched policy in the state between revoke and grant: allowing only what both
    revisions allow, isolating everything either isolates."""
    facts, before, after = work.facts, work.old, work.new
    mid: dict[str, Spec | None] = {}
    for name in sorted(set(old) | set(new)):
        v1, v2 = old.get(name), new.get(name)
        if v1 is not None and v2 is not None and name not in rewrite:
            mid[name] = v1  # unchanged
        elif v1 is None:  # create: as meant if it grants nothing new, else absent until grant
            mid[name] = v2 if before.grants_all(facts.atoms(v2)) else None
        elif v2 is None:  # stale: keep if everything it grants stays granted, else gone by revoke
            mid[name] = v1 if after.grants_all(facts.atoms(v1)) else None
        elif after.grants_all(facts.atoms(v1)):
            mid[name] = v1  # only widens: stays as it is until grant
        elif before.grants_all(facts.atoms(v2)):
            mid[name] = v2  # only narrows: written once, by revoke
        else:  # both: the grants the two revisions share, with both isolations where the selector allows
            same_selector = _canon(v1.get("podSelector") or {}) == _canon(v2.get("podSelector") or {})
            shared = {a for a in facts.atoms(v2) if before.grants(a)}
            if same_selector:
                shared |= {a for a in facts.atoms(v1) if after.grants(a)}
            types = set(_types(v2)) | (set(_types(v1)) if same_selector else set())
            mid[name] = _shape(v2.get("podSelector") or {}, types, shared)

    # Isolation: everything either revision isolates must be held in the midpoint. Add it back where a
    # choice above dropped it, the cheapest way: rule-less creates and stale policies, extra policy types
    # on the same selector, and guards for whatever no policy can hold.
    needed = before.isolation | after.isolation
    touched = sorted(n for n in mid if n not in old or n not in new or n in rewrite)
    selectors: dict[Selector, Mapping[str, Any]] = {}
    for spec in (*old.values(), *new.values()):
        selectors.setdefault(_canon(spec.get("podSelector") or {}), spec.get("podSelector") or {})
    held = _Isolations()
    for shape in mid.values():
        held.change(facts.isolation(shape), 1)

    def put(name: str, spec: Spec) -> None:
        held.change(facts.isolation(mid.get(name)), -1)
        held.change(facts.isolation(spec), 1)
        mid[name] = spec

    while True:
        work.spend(len(needed) + len(touched))
        missing = min((i for i in needed if not held.holds(i)), default=None)
        if missing is None:
            return mid
        sel, ptype = missing
        for name in touched:
            source = new.get(name) if name in new else old.get(name)
            if mid[name] is None and source is not None and (sel, ptype) in facts.isolation(source):
                put(name, rule_less(source))
                break
            current = mid[name]
            if current is not None and _canon(current.get("podSelector") or {}) == sel and ptype not in _types(current):
                kept = {a for a in facts.atoms(current) if a[1] != ptype}
                put(name, _shape(current.get("podSelector") or {}, {*_types(current), ptype}, kept))
                break
        else:
            name = guards(sel)
            current = mid.get(name)
            types = {ptype, *(_types(current) if current else [])}
            put(name, _shape(selectors[sel], types, ()))


def _adds_isolation(before: Spec | None, after: Spec | None, facts: _Facts) -> bool:
    return after is not None and not facts.isolation(after) <= facts.isolation(before)


def _moves(
    frm: Mapping[str, Spec | None], to: Mapping[str, Spec | None], applies: Phase, deletes: Phase, facts: _Facts
) -> list[Move]:
    """Moves from shapes ``frm`` to ``to``, ordered so isolation is never lost on the way: new objects
    first, then writes that add isolation, then the other writes, deletions last; within each, policies
    without allow rules (a default-deny) before those with."""
    changed = [n for n in sorted(set(frm) | set(to)) if frm.get(n) != to.get(n)]
    writes = [n for n in changed if to.get(n) is not None]
    writes.sort(
        key=lambda n: (
            frm.get(n) is not None,
            not _adds_isolation(frm.get(n), to.get(n), facts),
            bool(facts.atoms(to[n])),
        )
    )
    out = [Move(n, to[n], applies, False) for n in writes]
    out += [Move(n, None, deletes, False) for n in changed if to.get(n) is None]
    return out


def states(start: Mapping[str, Spec], moves: Iterable[Move]) -> list[dict[str, Spec]]:
    """The sequence of policy sets that ``moves`` pass through, starting with ``start``."""
    current = dict(start)
    out = [dict(current)]
    for move in moves:
        if move.spec is None:
            current.pop(move.name, None)
        else:
            current[move.name] = move.spec
        out.append(dict(current))
    return out


def _final_state(start: Mapping[str, Spec], moves: Iterable[Move]) -> dict[str, Spec]:
    current = dict(start)
    for move in moves:
        if move.spec is None:
            current.pop(move.name, None)
        else:
            current[move.name] = move.spec
    return current


def check(old: Mapping[str, Spec], new: Mapping[str, Spec], moves: list[Move]) -> bool:
    """Every state allows a subset of ``old`` up to some point, and a subset of ``new`` from there on; the
    last state is exactly ``new``."""
    return _Work(old, new, 0).check(old, new, moves)


def _at(move: Move, phase: Phase) -> Move:
    return Move(move.name, move.spec, phase, move.final)


def _mark_final(moves: list[Move], old: Mapping[str, Spec], new: Mapping[str, Spec]) -> list[Move]:
    """Final: the write puts the revision's own object in place, or deletes a policy it no longer has.
    These are what the API server is asked about (dry run) before anything is written."""
    out = []
    for m in moves:
        final = (m.spec is not None and m.name in new and m.spec == new[m.name]) or (
            m.spec is None and m.name in old and m.name not in new
        )
        out.append(Move(m.name, m.spec, m.phase, final))
    return out


def _full(old: Mapping[str, Spec], new: Mapping[str, Spec], rewrite: set[str], names: GuardNames) -> list[Move]:
    """The always-valid sequence: guard every isolated selector, drop every rule, grant, release."""
    guards: dict[str, Spec] = {}
    for spec in (*old.values(), *new.values()):
        name = names(_canon(spec.get("podSelector") or {}))
        types = {*_types(spec), *(_types(guards[name]) if name in guards else [])}
        guards[name] = _shape(spec.get("podSelector") or {}, types, ())
    touched = sorted(
        n for n in set(old) | set(new) if n not in guards and (n not in old or n not in new or n in rewrite)
    )
    moves = [Move(n, g, Phase.ISOLATE, False) for n, g in sorted(guards.items()) if old.get(n) != g]
    moves += [Move(n, rule_less(old[n]), Phase.REVOKE, False) for n in touched if n in old and n in new]
    moves += [Move(n, None, Phase.REVOKE, False) for n in touched if n not in new]
    moves += [Move(n, new[n], Phase.GRANT, False) for n in touched if n in new]
    moves += [Move(n, None, Phase.RELEASE, False) for n in sorted(guards) if n not in new]
    return moves


# Elementary steps (a trial move in _keeping, a name or isolation looked at in _midpoint) the shortcut
# through the midpoint may take before the full sequence is used: about a quarter of a second. Changes
# between topologies the CRD admits need at most about 50,000 (bench/cost_bench.py: every selector of
# 64 tiers moved, every tier renamed, every flow replaced); an owner reference copied onto a thousand
# foreign policies would need millions, and gets the full sequence instead.
WORK_BUDGET = 250_000


def transition(
    old: Mapping[str, Spec],
    new: Mapping[str, Spec],
    rewrite: Iterable[str] = (),
    guard_base: str = "guard",
    taken: Iterable[str] = (),
) -> list[Move]:
    """The writes that take the policies ``old`` (name -> stored spec) to ``new``, in a safe order.

    ``rewrite``: names present in both whose live object needs a write although its spec may be equal
    (metadata differs). Guards are named ``<guard_base>.guard-<hash>``, avoiding the names in ``taken``
    (objects that are not ours: see :class:`GuardNames`).
    """
    return planned(old, new, rewrite, guard_base, taken).moves


@dataclass(frozen=True)
class Planned:
    """A transition, which sequence it is (``direct``, ``midpoint``, ``full``, or ``none`` when nothing
    changes) and the work steps the shortcuts took (bounded by :data:`WORK_BUDGET`)."""

    moves: list[Move]
    way: str
    work: int


def planned(
    old: Mapping[str, Spec],
    new: Mapping[str, Spec],
    rewrite: Iterable[str] = (),
    guard_base: str = "guard",
    taken: Iterable[str] = (),
) -> Planned:
    """:func:`transition`, with how it was found (for benchmarks and logs)."""
    old = {n: stored_spec(s) for n, s in old.items()}
    new = {n: stored_spec(s) for n, s in new.items()}
    rewrite = {n for n in rewrite if n in old and n in new}
    rewrite |= {n for n in set(old) & set(new) if old[n] != new[n]}
    if not rewrite and set(old) == set(new):
        return Planned([], "none", 0)
    guards = GuardNames(guard_base, frozenset(taken))
    work = _Work(old, new, WORK_BUDGET)
    for way, shortcut in (("direct", _direct), ("midpoint", _via_midpoint)):
        try:
            moves = _mark_final(shortcut(old, new, rewrite, guards, work), old, new)
        except _OverBudget:
            continue
        if work.check(old, new, moves):
            return Planned(moves, way, WORK_BUDGET - max(work.left, 0))
    moves = _mark_final(_full(old, new, rewrite, guards), old, new)
    if work.check(old, new, moves):
        return Planned(moves, "full", WORK_BUDGET - max(work.left, 0))
    raise AssertionError("no safe write order found")  # pragma: no cover - _full is valid by construction


def _direct(
    old: Mapping[str, Spec], new: Mapping[str, Spec], rewrite: set[str], guards: GuardNames, work: _Work
) -> list[Move]:
    """Each policy written once, straight to its new shape (new objects and added isolation first,
    deletions last). Valid for most changes: creation under a default-deny, drift repair, renames, changes
    that only widen or only narrow."""
    start: dict[str, Spec | None] = dict(old)
    end: dict[str, Spec | None] = dict(new)
    moves = _moves(start, end, Phase.GRANT, Phase.RELEASE, work.facts)
    moves = [_at(m, Phase.ISOLATE) if start.get(m.name) is None and m.spec is not None else m for m in moves]
    written = {m.name for m in moves}
    return moves + [Move(n, new[n], Phase.GRANT, False) for n in sorted(rewrite - written)]


def _via_midpoint(
    old: Mapping[str, Spec], new: Mapping[str, Spec], rewrite: set[str], guards: GuardNames, work: _Work
) -> list[Move]:
    """Through the state that allows only what both revisions allow (see :func:`_midpoint`)."""
    mid = _midpoint(old, new, rewrite, guards, work)
    start: dict[str, Spec | None] = {n: old.get(n) for n in mid}
    end: dict[str, Spec | None] = {n: new.get(n) for n in mid}
    first = _keeping(old, _moves(start, mid, Phase.ISOLATE, Phase.REVOKE, work.facts), work.old, work)
    # Within the first half, writes that add no isolation only narrow: they belong to revoke.
    first = [
        m if m.spec is None or _adds_isolation(start[m.name], m.spec, work.facts) else _at(m, Phase.REVOKE)
        for m in first
    ]
    halfway = _final_state(old, first)
    moves = first + _keeping(halfway, _moves(mid, end, Phase.GRANT, Phase.RELEASE, work.facts), work.new, work)
    written = {m.name for m in moves}
    # Metadata-only rewrites: the spec does not move, the object is written once.
    return moves + [Move(n, new[n], Phase.GRANT, False) for n in sorted(rewrite - written)]


def _keeping(start: Mapping[str, Spec], moves: list[Move], revision: _Index, work: _Work) -> list[Move]:
    """``moves`` reordered so that every state stays within ``revision``: at each step the first move (in
    the given order) that keeps it so. Moves that cannot keep it follow in their order (check() then fails
    and the planner falls back). Each trial costs the size of the moved policy (:class:`_Tracker`)."""
    state = _Tracker(revision, work.facts, start)
    pending = list(moves)
    out: list[Move] = []
    while pending:
        pick = 0
        for i, m in enumerate(pending):
            work.spend(1)
            if state.fits(m.name, m.spec):
                pick = i
                break
        move = pending.pop(pick)
        state.put(move.name, move.spec)
        out.append(move)
    return out
