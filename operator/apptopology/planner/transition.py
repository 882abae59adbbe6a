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

Pure: specs are plain dicts in stored form (:func:`apptopology.planner.compare.stored_spec`).
"""

from __future__ import annotations

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


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _types(spec: Mapping[str, Any]) -> list[str]:
    return list(spec.get("policyTypes") or [])


def isolation(spec: Mapping[str, Any]) -> set[Isolation]:
    sel = _canon(spec.get("podSelector") or {})
    return {(sel, t) for t in _types(spec)}


def atoms(spec: Mapping[str, Any]) -> set[Atom]:
    """Every (selector, direction, peer, port) the policy allows; rules in undeclared directions count for
    nothing (the API ignores them)."""
    sel = _canon(spec.get("podSelector") or {})
    out: set[Atom] = set()
    for ptype, field, peers_field in _DIRECTIONS:
        if ptype not in _types(spec):
            continue
        for rule in spec.get(field) or []:
            peers: list[str | None] = [_canon(p) for p in rule.get(peers_field) or []] or [None]
            ports: list[str | None] = [_canon(p) for p in rule.get("ports") or []] or [None]
            out.update((sel, ptype, peer, port) for peer in peers for port in ports)
    return out


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


class _Index:
    """What a set of policies isolates and allows, for coverage questions."""

    def __init__(self, specs: Iterable[Mapping[str, Any]]):
        self.isolation: set[Isolation] = set()
        self.atoms: set[Atom] = set()
        for spec in specs:
            self.isolation |= isolation(spec)
            self.atoms |= atoms(spec)
        self._grants: dict[tuple[Selector, str], set[tuple[str | None, str | None]]] = {}
        for sel, direction, peer, port in self.atoms:
            self._grants.setdefault((sel, direction), set()).add((peer, port))

    def holds(self, iso: Isolation) -> bool:
        return iso in self.isolation or (EVERYTHING, iso[1]) in self.isolation

    def grants(self, atom: Atom) -> bool:
        sel, direction, peer, port = atom
        if atom in self.atoms:
            return True
        return any(
            _peer_covers(p, peer) and _port_covers(q, port)
            for s in {sel, EVERYTHING}
            for p, q in self._grants.get((s, direction), ())
        )


def within(state: Mapping[str, Spec], revision: Mapping[str, Spec]) -> bool:
    """Whether the policies ``state`` allow a subset of what ``revision`` allows (see the module docstring)."""
    have, ref = _Index(state.values()), _Index(revision.values())
    return all(have.holds(i) for i in ref.isolation) and all(ref.grants(a) for a in have.atoms)


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
    old: Mapping[str, Spec], new: Mapping[str, Spec], rewrite: set[str], guards: GuardNames
) -> dict[str, Spec | None]:
    """The shape of every touched policy in the state between revoke and grant: allowing only what both
    revisions allow, isolating everything either isolates."""
    before, after = _Index(old.values()), _Index(new.values())
    mid: dict[str, Spec | None] = {}
    for name in sorted(set(old) | set(new)):
        v1, v2 = old.get(name), new.get(name)
        if v1 is not None and v2 is not None and name not in rewrite:
            mid[name] = v1  # unchanged
        elif v1 is None:  # create: as meant if it grants nothing new, else absent until grant
            mid[name] = v2 if all(before.grants(a) for a in atoms(v2 or {})) else None
        elif v2 is None:  # stale: keep if everything it grants stays granted, else gone by revoke
            mid[name] = v1 if all(after.grants(a) for a in atoms(v1)) else None
        elif all(after.grants(a) for a in atoms(v1)):
            mid[name] = v1  # only widens: stays as it is until grant
        elif all(before.grants(a) for a in atoms(v2)):
            mid[name] = v2  # only narrows: written once, by revoke
        else:  # both: the grants the two revisions share, with both isolations where the selector allows
            same_selector = _canon(v1.get("podSelector") or {}) == _canon(v2.get("podSelector") or {})
            shared = {a for a in atoms(v2) if before.grants(a)}
            if same_selector:
                shared |= {a for a in atoms(v1) if after.grants(a)}
            types = set(_types(v2)) | (set(_types(v1)) if same_selector else set())
            mid[name] = _shape(v2.get("podSelector") or {}, types, shared)

    # Isolation: everything either revision isolates must be held in the midpoint. Add it back where a
    # choice above dropped it, the cheapest way: rule-less creates and stale policies, extra policy types
    # on the same selector, and guards for whatever no policy can hold.
    needed = before.isolation | after.isolation
    touched = [n for n in mid if n not in old or n not in new or n in rewrite]
    selectors: dict[Selector, Mapping[str, Any]] = {}
    for spec in (*old.values(), *new.values()):
        selectors.setdefault(_canon(spec.get("podSelector") or {}), spec.get("podSelector") or {})
    while True:
        held = _Index(s for s in mid.values() if s is not None)
        missing = sorted(i for i in needed if not held.holds(i))
        if not missing:
            return mid
        sel, ptype = missing[0]
        for name in sorted(touched):
            source = new.get(name) if name in new else old.get(name)
            if mid[name] is None and source is not None and (sel, ptype) in isolation(source):
                mid[name] = rule_less(source)
                break
            current = mid[name]
            if current is not None and _canon(current.get("podSelector") or {}) == sel and ptype not in _types(current):
                kept = {a for a in atoms(current) if a[1] != ptype}
                mid[name] = _shape(current.get("podSelector") or {}, {*_types(current), ptype}, kept)
                break
        else:
            name = guards(sel)
            current = mid.get(name)
            types = {ptype, *(_types(current) if current else [])}
            mid[name] = _shape(selectors[sel], types, ())


def _adds_isolation(before: Spec | None, after: Spec | None) -> bool:
    return after is not None and not isolation(after) <= (isolation(before) if before else set())


def _moves(frm: Mapping[str, Spec | None], to: Mapping[str, Spec | None], applies: Phase, deletes: Phase) -> list[Move]:
    """Moves from shapes ``frm`` to ``to``, ordered so isolation is never lost on the way: new objects
    first, then writes that add isolation, then the other writes, deletions last; within each, policies
    without allow rules (a default-deny) before those with."""
    changed = [n for n in sorted(set(frm) | set(to)) if frm.get(n) != to.get(n)]
    writes = [n for n in changed if to.get(n) is not None]
    writes.sort(
        key=lambda n: (frm.get(n) is not None, not _adds_isolation(frm.get(n), to.get(n)), bool(atoms(to[n] or {})))
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


def check(old: Mapping[str, Spec], new: Mapping[str, Spec], moves: list[Move]) -> bool:
    """Every state allows a subset of ``old`` up to some point, and a subset of ``new`` from there on; the
    last state is exactly ``new``."""
    seq = states(old, moves)
    if seq[-1] != dict(new):
        return False
    in_old = [within(s, old) for s in seq]
    in_new = [within(s, new) for s in seq]
    # Some state is within both: everything before it within old, everything after it within new.
    return any(all(in_old[: split + 1]) and all(in_new[split:]) for split in range(len(seq)))


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
    old = {n: stored_spec(s) for n, s in old.items()}
    new = {n: stored_spec(s) for n, s in new.items()}
    rewrite = {n for n in rewrite if n in old and n in new}
    rewrite |= {n for n in set(old) & set(new) if old[n] != new[n]}
    if not rewrite and set(old) == set(new):
        return []
    guards = GuardNames(guard_base, frozenset(taken))
    for make in (_direct, _via_midpoint, _full):
        moves = _mark_final(make(old, new, rewrite, guards), old, new)
        if check(old, new, moves):
            return moves
    raise AssertionError("no safe write order found")  # pragma: no cover - _full is valid by construction


def _direct(old: Mapping[str, Spec], new: Mapping[str, Spec], rewrite: set[str], guards: GuardNames) -> list[Move]:
    """Each policy written once, straight to its new shape (new objects and added isolation first,
    deletions last). Valid for most changes: creation under a default-deny, drift repair, renames, changes
    that only widen or only narrow."""
    start: dict[str, Spec | None] = dict(old)
    end: dict[str, Spec | None] = dict(new)
    moves = _moves(start, end, Phase.GRANT, Phase.RELEASE)
    moves = [_at(m, Phase.ISOLATE) if start.get(m.name) is None and m.spec is not None else m for m in moves]
    written = {m.name for m in moves}
    return moves + [Move(n, new[n], Phase.GRANT, False) for n in sorted(rewrite - written)]


def _via_midpoint(
    old: Mapping[str, Spec], new: Mapping[str, Spec], rewrite: set[str], guards: GuardNames
) -> list[Move]:
    """Through the state that allows only what both revisions allow (see :func:`_midpoint`)."""
    mid = _midpoint(old, new, rewrite, guards)
    start: dict[str, Spec | None] = {n: old.get(n) for n in mid}
    end: dict[str, Spec | None] = {n: new.get(n) for n in mid}
    first = _keeping(old, _moves(start, mid, Phase.ISOLATE, Phase.REVOKE), old)
    # Within the first half, writes that add no isolation only narrow: they belong to revoke.
    first = [m if m.spec is None or _adds_isolation(start[m.name], m.spec) else _at(m, Phase.REVOKE) for m in first]
    halfway = states(old, first)[-1]
    moves = first + _keeping(halfway, _moves(mid, end, Phase.GRANT, Phase.RELEASE), new)
    written = {m.name for m in moves}
    # Metadata-only rewrites: the spec does not move, the object is written once.
    return moves + [Move(n, new[n], Phase.GRANT, False) for n in sorted(rewrite - written)]


def _keeping(start: Mapping[str, Spec], moves: list[Move], revision: Mapping[str, Spec]) -> list[Move]:
    """``moves`` reordered so that every state stays within ``revision``: at each step the first move (in
    the given order) that keeps it so. Moves that cannot keep it follow in their order (check() then fails
    and the planner falls back)."""
    state = dict(start)
    pending = list(moves)
    out: list[Move] = []
    while pending:
        trials = ((i, states(state, [m])[-1]) for i, m in enumerate(pending))
        pick, trial = next(((i, t) for i, t in trials if within(t, revision)), (0, states(state, pending[:1])[-1]))
        out.append(pending.pop(pick))
        state = trial
    return out
