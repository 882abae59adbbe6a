"""The judge: every state of a namespace's NetworkPolicies that the API server recorded, within a revision.

The control plane's audit policy logs every NetworkPolicy write at RequestResponse (tests/controlplane/run.sh):
the request as the server decoded it, and the answer: the object as stored, with the resourceVersion (etcd
revision) of the write, or for a delete a Status naming the UID removed. Creates, updates and patches are
replayed in the order of their revisions, whoever sent them and however their log lines interleave;
deletes where the log has them. Replaying from the namespace's creation rebuilds every state the namespace
went through; each is then judged:

- **Connectivity** (the independent evaluator, on an inventory synthesized from every revision plus
  stand-ins for every selector any state used): every state allows a subset of a revision (its render
  together with the namespace's other policies, as their owners wrote them), moving along the expected
  chain of revisions and never back (``nothing -> v1 -> v2``, ``... -> v2 -> v1`` when a refusal makes the
  operator restore, ``... -> v3`` after an edit).
- **Dry runs changed nothing**: a delete marked ``dryRun=All`` whose DeleteOptions body (which the server
  follows over the query) has no dryRun, or a dry run answering with a revision no real write produced, was
  a write: it is reported, and replayed as the write it was.
- **Never adopt**: no successful operator write, dry or real, answers with (or names) the UID of an object
  the operator did not create.
- **The record agrees with the namespace**: a LIST's objects (names, UIDs, resourceVersions) are the
  replayed state at the LIST's revision, and the operator's objects at the end are the expected revision.

Pure over the log lines: nothing here talks to the API server (tests/integration/drive.py does).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apptopology.analysis.intent import Intent, synthesize
from apptopology.analysis.namespace import namespace_interactions
from apptopology.analysis.subject import display_name, merge_inventories, synthesize_from_policies
from apptopology.api.spec import AppTopology
from apptopology.evaluator import Endpoint, Evaluator, Inventory, Pod, PortSet
from apptopology.planner.compare import stored_spec
from apptopology.render.validation import parse_spec

WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
OPERATOR_USER = "system:serviceaccount:apptopology-system:apptopology-operator"
Objects = dict[str, dict[str, Any]]  # name -> NetworkPolicy object


# Reading the log ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    """One audited NetworkPolicy write request (any outcome)."""

    seq: int  # position among the namespace's audited policy writes (log order)
    audit_id: str
    user: str
    verb: str
    name: str  # "" for deletecollection
    code: int
    uri: str
    request: Mapping[str, Any] | None
    response: Mapping[str, Any] | None
    ref_uid: str  # objectRef.uid (set from the request object, e.g. an apply's UID precondition)

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def dry_run(self) -> bool:
        """Marked a dry run by its query, which is what a reader of the log (and the sender) sees."""
        return "dryRun=All" in self.uri

    @property
    def dry_as_served(self) -> bool:
        """A dry run as the API server read it: a delete's DeleteOptions body, when one was sent, decides
        (the query is then ignored); otherwise the query."""
        if self.verb in ("delete", "deletecollection") and isinstance(self.request, Mapping):
            return "All" in (self.request.get("dryRun") or [])
        return self.dry_run

    def deleted(self) -> list[tuple[str, str]]:
        """(name, UID) of what a delete removed: from the response (a Status with the UID, or the object, or
        the items of a deletecollection)."""
        body = self.response or {}
        if body.get("kind") == "Status":
            return [(self.name, str((body.get("details") or {}).get("uid") or ""))]
        return [(_name(o) or self.name, _uid(o)) for o in self.response_objects()]

    @property
    def by_operator(self) -> bool:
        return self.user == OPERATOR_USER

    def response_objects(self) -> list[Mapping[str, Any]]:
        """The NetworkPolicy objects in the response (one, or the items of a deletecollection)."""
        body = self.response or {}
        if body.get("kind") == "NetworkPolicy":
            return [body]
        if body.get("kind") == "NetworkPolicyList":
            return list(body.get("items") or [])
        return []

    def line(self) -> str:
        dry = " dryRun" if self.dry_run else ""
        who = "operator" if self.by_operator else self.user.rsplit(":", 1)[-1]
        return f"#{self.seq} {who} {self.verb}{dry} {self.name or '*'} -> {self.code}"


class AuditLog:
    """The audit log file, read incrementally (the log of a whole suite is read once, not per question).

    ``from_end``: only what is logged from now on. Only the namespaces :meth:`follow` names are kept (all of
    them until one is named), so a soak of thousands of namespaces holds one scenario's writes at a time."""

    def __init__(self, path: str | Path, from_end: bool = False):
        self.path = Path(path)
        self._offset = self.size() if from_end else 0
        self._writes: dict[str, list[Write]] = {}
        self._followed: set[str] | None = None

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def follow(self, namespace: str) -> None:
        """Keep the writes of ``namespace`` (from now on, those of namespaces not followed are dropped)."""
        if self._followed is None:
            self._followed = set()
            self._writes = {namespace: self._writes.get(namespace, [])}
        self._followed.add(namespace)

    def forget(self, namespace: str) -> None:
        if self._followed is not None:
            self._followed.discard(namespace)
        self._writes.pop(namespace, None)

    def writes(self, namespace: str) -> list[Write]:
        """Every NetworkPolicy write in ``namespace`` logged so far, in log order."""
        self._read()
        return list(self._writes.get(namespace, []))

    def _read(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as log:
            log.seek(self._offset)
            while True:
                line = log.readline()
                if not line.endswith(b"\n"):
                    break  # a line still being written: read it next time
                self._offset += len(line)
                if b'"networkpolicies"' not in line or b'"ResponseComplete"' not in line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # the tail of a line begun before a reader that starts at the end
                write = parse_entry(entry)
                if write is not None and (self._followed is None or write[0] in self._followed):
                    namespace, item = write
                    found = self._writes.setdefault(namespace, [])
                    found.append(_renumbered(item, len(found)))


def _renumbered(write: Write, seq: int) -> Write:
    return Write(
        seq,
        write.audit_id,
        write.user,
        write.verb,
        write.name,
        write.code,
        write.uri,
        write.request,
        write.response,
        write.ref_uid,
    )


def parse_entry(entry: Mapping[str, Any]) -> tuple[str, Write] | None:
    """(namespace, write) for a completed NetworkPolicy write entry, else None."""
    ref = entry.get("objectRef") or {}
    if (
        entry.get("stage") != "ResponseComplete"
        or ref.get("resource") != "networkpolicies"
        or ref.get("subresource")
        or entry.get("verb") not in WRITE_VERBS
        or not ref.get("namespace")
    ):
        return None
    return str(ref["namespace"]), Write(
        0,
        str(entry.get("auditID", "")),
        str((entry.get("user") or {}).get("username", "")),
        str(entry["verb"]),
        str(ref.get("name") or ""),
        int((entry.get("responseStatus") or {}).get("code", 0)),
        str(entry.get("requestURI", "")),
        entry.get("requestObject"),
        entry.get("responseObject"),
        str(ref.get("uid") or ""),
    )


# Replaying ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """Something the judge found wrong: what kind, and the evidence."""

    kind: str  # "outside", "dry-run-wrote", "adopted", "inconsistent", "end-state", "live", "stuck"
    message: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.message}"


@dataclass(frozen=True)
class State:
    """The namespace's policies after one write (``write`` None: the start) at resourceVersion ``rv``."""

    write: Write | None
    objects: Objects
    owners: Objects  # the other identities' objects as their owners last wrote them (the reference's part)
    rv: float = 0.0  # a delete: just after the write logged before it (its own revision is not logged)

    def label(self) -> str:
        return self.write.line() if self.write is not None else "start"


@dataclass
class Replay:
    states: list[State] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    operator_uids: set[str] = field(default_factory=set)  # objects the operator created
    foreign_uids: set[str] = field(default_factory=set)  # objects anyone else created

    @property
    def end(self) -> Objects:
        return self.states[-1].objects if self.states else {}

    def at(self, rv: int) -> Objects:
        """The objects as of resourceVersion ``rv`` (what a read at that revision saw)."""
        found: Objects = {}
        for state in self.states:
            if state.rv > rv:
                break
            found = state.objects
        return found


def _rv(obj: Mapping[str, Any]) -> int:
    value = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return int(value) if value.isdigit() else -1


def _uid(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def replay(writes: Sequence[Write]) -> Replay:
    """Every state the namespace's policies went through, from the namespace's creation (no policies).

    Successful writes that are not dry runs change the namespace. Creates, updates and patches answer with
    the object and the resourceVersion (etcd revision) of the write: they are applied in that order. A delete
    answers with a Status (no revision): it goes where the log has it, after the writes logged before it (the
    order of one writer's requests; concurrent writers' deletes may be placed a request off).

    A dry run must change nothing. Two ways the log shows one that did: a delete whose DeleteOptions body
    (which the server follows) has no dryRun, and an answer with a resourceVersion no real write produced.
    Either is reported and replayed as the write it was.
    """
    out = Replay(writes=list(writes))
    real = [w for w in writes if w.ok and not w.dry_as_served]
    produced = {_rv(o) for w in real if not w.verb.startswith("delete") for o in w.response_objects()}
    changes: list[tuple[float, int, Write]] = []
    anchor = 0.0  # the highest revision logged so far: a delete goes right after it
    for write in writes:
        if not write.ok:
            continue
        revisions = [_rv(o) for o in write.response_objects()] if not write.verb.startswith("delete") else []
        if write.dry_run:
            wrote = not write.dry_as_served or any(rv >= 0 and rv not in produced for rv in revisions)
            if not wrote:
                continue  # an echo of a stored (or never stored) object: nothing changed
            how = (
                f"its DeleteOptions body, which the server follows, has no dryRun: {_brief(write.request)}"
                if not write.dry_as_served
                else f"it answered with resourceVersion {revisions}, a revision no real write produced"
            )
            out.findings.append(Finding("dry-run-wrote", f"{write.line()}: a dry run that wrote, {how}"))
        if revisions:
            anchor = max(anchor, float(max(revisions)))
            changes.append((float(max(revisions)), write.seq, write))
        else:
            anchor += 1e-3
            changes.append((anchor, write.seq, write))
    changes.sort(key=lambda c: (c[0], c[1]))

    objects: Objects = {}
    owners: Objects = {}
    out.states.append(State(None, {}, {}))
    for rv, _, write in changes:
        if write.verb.startswith("delete"):
            for name, uid in write.deleted():
                current = objects.get(name)
                if current is None or (uid and _uid(current) != uid):
                    out.findings.append(
                        Finding(
                            "inconsistent", f"{write.line()}: deleted {name} ({uid}), which the record does not hold"
                        )
                    )
                objects.pop(name, None)
                if not write.by_operator:
                    owners.pop(name, None)
        for obj in write.response_objects() if not write.verb.startswith("delete") else []:
            name, uid = _name(obj) or write.name, _uid(obj)
            current = objects.get(name)
            if current is not None and (_uid(current) != uid or write.verb == "create"):
                out.findings.append(
                    Finding(
                        "inconsistent",
                        f"{write.line()}: {name} ({uid}) written as new, but the record holds {_uid(current)} and "
                        "no delete of it",
                    )
                )
            if uid not in out.operator_uids and uid not in out.foreign_uids:
                (out.operator_uids if write.by_operator else out.foreign_uids).add(uid)
            objects[name] = dict(obj)
            if not write.by_operator:
                owners[name] = dict(obj)
        out.states.append(State(write, dict(objects), dict(owners), rv))
    out.findings.extend(_adoptions(out))
    return out


def _brief(body: Mapping[str, Any] | None) -> str:
    if body is None:
        return "none"
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 200 else text[:200] + "..."


def _adoptions(result: Replay) -> list[Finding]:
    """Successful operator writes (dry runs too) that landed on, or named, an object someone else created."""
    found = []
    for write in result.writes:
        if not write.ok or not write.by_operator:
            continue
        uids = {_uid(o) for o in write.response_objects()} | ({write.ref_uid} if write.ref_uid else set())
        uids |= {uid for _, uid in write.deleted()} if write.verb.startswith("delete") else set()
        for uid in sorted(uids & result.foreign_uids):
            found.append(
                Finding(
                    "adopted",
                    f"{write.line()}: the operator's write answered with (or named) UID {uid}, an object it did "
                    "not create",
                )
            )
    return found


# Judging connectivity -----------------------------------------------------------------------------------

Connectivity = dict[tuple[Endpoint, Endpoint], PortSet]


@dataclass(frozen=True)
class Revision:
    """One revision of the topology: its label and the policies it renders (name -> object; {} for none);
    ``variants``: other renders of the same revision (beside a neighbour's other DNS grant), any of which
    the operator may write."""

    label: str
    policies: Objects
    variants: tuple[Objects, ...] = ()

    @property
    def renders(self) -> list[Objects]:
        return [self.policies, *self.variants]


class Judge:
    """Judges states against a chain of revisions on one inventory, with caches (states repeat a lot)."""

    def __init__(
        self,
        namespace: str,
        topologies: Iterable[Mapping[str, Any]],
        revisions: Sequence[Revision],
        extra_policies: Iterable[Mapping[str, Any]] = (),
        owner_uid: str | None = None,
    ):
        """``owner_uid``: judge the policies the topology of this UID owns (other topologies' policies, which
        the same operator writes, count as the namespace's others, as they are in each state); None: every
        policy the operator wrote is the topology's."""
        self.namespace = namespace
        self.owner_uid = owner_uid
        self.positions: list[int] = []  # per state of the last judge(): the revision (index) it was within, or -1
        self.revisions = list(revisions)
        inventories: list[Inventory] = []
        bodies = list(topologies)
        several = len({b["metadata"]["name"] for b in bodies}) > 1
        for body in bodies:
            meta = body["metadata"]
            made = synthesize(parse_spec(meta["name"], namespace, body.get("spec")))
            # Pods of two topologies' tiers of one name are different pods (their own labels): keep both.
            inventories.append(_named_after(made, str(meta["name"])) if several else made)
        every = [p for r in revisions for v in r.renders for p in v.values()] + [dict(p) for p in extra_policies]
        if every:
            inventories.append(synthesize_from_policies([_placed(p, namespace) for p in every]))
        self.inventory = merge_inventories(inventories)
        self.pairs = [(a, b) for a in self.inventory.endpoints for b in self.inventory.endpoints if a != b]
        self._cache: dict[str, Connectivity] = {}
        self.judged = 0

    def connectivity(self, policies: Iterable[Mapping[str, Any]]) -> Connectivity:
        objects = [_placed(p, self.namespace) for p in policies]
        key = hashlib.sha256(
            json.dumps(sorted((o["metadata"]["name"], o["spec"]) for o in objects), sort_keys=True).encode()
        ).hexdigest()
        found = self._cache.get(key)
        if found is None:
            evaluator = Evaluator(objects, self.inventory)
            found = {(a, b): evaluator.allowed(a, b) for a, b in self.pairs}
            self._cache[key] = found
        return found

    def reference(self, revision: Revision, state: State) -> list[Connectivity]:
        """The revision's renders, each with the namespace's other policies (renamed, so a squatter at one of
        the revision's names counts beside it): other people's as they wrote them, other topologies' as they
        are in ``state``."""
        theirs = {**self.others(state), **state.owners}
        others = [{**o, "metadata": {**o["metadata"], "name": f"foreign~{n}"}} for n, o in theirs.items()]
        return [self.connectivity([*policies.values(), *others]) for policies in revision.renders]

    def ours(self, state: State) -> Objects:
        """The judged topology's objects in ``state``."""
        if self.owner_uid is None:
            return {n: o for n, o in state.objects.items() if n not in state.owners}
        return {n: o for n, o in state.objects.items() if n not in state.owners and _owned(o, self.owner_uid)}

    def others(self, state: State) -> Objects:
        """The operator's objects in ``state`` that are not the judged topology's (its neighbours')."""
        ours = self.ours(state)
        return {n: o for n, o in state.objects.items() if n not in state.owners and n not in ours}

    def alike(self, revision: int) -> set[int]:
        """The revisions (indexes) rendering exactly what ``revision`` renders: the record cannot tell them
        apart (a topology whose spec renders nothing is at "nothing" as far as its policies go)."""
        mine = self.revisions[revision].policies
        return {
            r
            for r in range(len(self.revisions))
            if self._exact({n: stored_spec(p.get("spec")) for n, p in mine.items()}, r)
        }

    def exactly(self, state: State) -> set[int]:
        """The revisions (indexes) whose render is exactly the judged topology's policies in ``state``."""
        ours = {n: stored_spec(o.get("spec")) for n, o in self.ours(state).items()}
        return {r for r in range(len(self.revisions)) if self._exact(ours, r)}

    def holding(self, state: State) -> set[int]:
        """Every revision (index) ``state`` is within, in any order."""
        conn = self.connectivity(state.objects.values())
        return {r for r, revision in enumerate(self.revisions) if self.holds(conn, revision, state)}

    def holds(self, conn: Connectivity, revision: Revision, state: State) -> bool:
        return any(self.within(conn, ref) for ref in self.reference(revision, state))

    @staticmethod
    def within(state: Connectivity, reference: Connectivity) -> bool:
        return all(ports.difference(reference[key]).is_empty for key, ports in state.items())

    def excess(self, state: Connectivity, reference: Connectivity) -> list[str]:
        """Connections ``state`` allows that ``reference`` does not."""
        out = []
        for key, ports in state.items():
            extra = ports.difference(reference[key])
            if not extra.is_empty:
                out.append(f"{_endpoint(key[0])} -> {_endpoint(key[1])} {extra}")
        return out

    def judge(self, states: Sequence[State], chain: Sequence[int] | None = None) -> list[Finding]:
        """Each state within a revision of ``chain`` (indexes into the revisions; default all, in order), never
        one the sequence has left: a state is judged against the revisions from the current position on; it
        moves to the first that holds it, and to the next revision when the state is exactly its render (so
        "nothing", which holds everything, is left once v1 is in place)."""
        chain = list(range(len(self.revisions))) if chain is None else list(chain)
        findings: list[Finding] = []
        self.positions = []
        at = 0  # position in the chain
        for state in states:
            self.judged += 1
            ours = {n: stored_spec(o.get("spec")) for n, o in self.ours(state).items()}
            if at + 1 < len(chain) and self._exact(ours, chain[at + 1]) and not self._exact(ours, chain[at]):
                at += 1  # the next revision is in place: the ones before it are left
            conn = self.connectivity(state.objects.values())
            step = next(
                (k for k in range(at, len(chain)) if self.holds(conn, self.revisions[chain[k]], state)),
                None,
            )
            if step is not None:
                at = step
                self.positions.append(chain[at])
                continue
            self.positions.append(-1)
            detail = []
            for k in range(at, len(chain)):
                rev = self.revisions[chain[k]]
                extra = min((self.excess(conn, ref) for ref in self.reference(rev, state)), key=len)
                detail.append(f"beyond {rev.label}: {'; '.join(extra[:3])}" + (" ..." if len(extra) > 3 else ""))
            behind = [
                self.revisions[chain[k]].label for k in range(at) if self.holds(conn, self.revisions[chain[k]], state)
            ]
            left = f" (within only {'/'.join(behind)}, which the sequence had left)" if behind else ""
            findings.append(
                Finding(
                    "outside",
                    f"after {state.label()}: policies {sorted(state.objects)} allow more than "
                    f"{'/'.join(self.revisions[chain[k]].label for k in range(at, len(chain)))}{left}: "
                    + " | ".join(detail),
                )
            )
        return findings

    def _exact(self, ours: Mapping[str, Any], revision: int) -> bool:
        return any(
            dict(ours) == {n: stored_spec(p.get("spec")) for n, p in policies.items()}
            for policies in self.revisions[revision].renders
        )


def _named_after(inventory: Inventory, topology: str) -> Inventory:
    """The pods of one topology's tiers, named after it (as namespace_interactions names them)."""
    pods = tuple(
        Pod(
            p.namespace,
            f"{topology}.{p.name}",
            p.labels,
            p.ip,
            p.ports,
            f"{p.workload} of {topology}" if p.workload and p.workload.startswith("tier ") else p.workload,
        )
        for p in inventory.pods
    )
    return Inventory(inventory.namespaces, pods, inventory.externals)


# Judging neighbours -------------------------------------------------------------------------------------

# (topology, source, destination) -> the ports opened and the rules responsible
Opened = dict[tuple[str, str, str], tuple[PortSet, tuple[str, ...]]]


@dataclass(frozen=True)
class Combo:
    """The namespace's topologies as enforced at one moment (each at one of its revisions, the guardrail
    applying to it or not): their intents (as the guardrail narrows them) and every policy the operator wants
    for them then."""

    label: str
    intents: tuple[AppTopology, ...]
    policies: Objects


class Neighbourhood:
    """Judges that no state opens a pod beyond what its own topology (or, for a pod of none, the topologies
    that isolate it) allows: :func:`namespace_interactions` of the state's policies, each topology judged by
    the intent of a combo, is empty but for what the combo's own render opens for a pod in the tiers of
    two topologies (they disagree about it: no rendering can satisfy both). Independent of the renderer
    otherwise: a render that opens a neighbour's pod is found too. Uses the judge's inventory."""

    def __init__(self, judge: Judge, combos: Mapping[Any, Combo]):
        self.judge = judge
        self.combos = dict(combos)
        self._cache: dict[tuple[Any, str], Opened] = {}
        self.judged = 0
        # The topologies each combo holds (by the owner UIDs of its render): a state is judged only against
        # the combos holding the topologies that own policies in it (a topology left out would leave the
        # pods it isolates unjudged).
        self._present = {key: _owners(combo.policies.values()) for key, combo in self.combos.items()}
        self._shared = {key: self._claimed_twice(combo) for key, combo in self.combos.items()}
        self._known = frozenset().union(*self._present.values()) if self._present else frozenset()

    def opened(self, key: Any, policies: Iterable[Mapping[str, Any]]) -> Opened:
        combo = self.combos[key]
        objects = [_labelled(p, self.judge.namespace) for p in policies]
        digest = hashlib.sha256(
            json.dumps(sorted((o["metadata"]["name"], o["spec"]) for o in objects), sort_keys=True).encode()
        ).hexdigest()
        found = self._cache.get((key, digest))
        if found is None:
            found = {}
            for i in namespace_interactions(list(combo.intents), objects, self.judge.inventory):
                found[(i.topology, i.source, i.destination)] = (i.ports, i.responsible)
            self._cache[(key, digest)] = found
        return found

    def _claimed_twice(self, combo: Combo) -> frozenset[str]:
        """The pods (display names) in tiers of two or more of the combo's topologies."""
        intents = [Intent(t) for t in combo.intents]
        return frozenset(
            display_name(e, self.judge.namespace)
            for e in self.judge.inventory.endpoints
            if isinstance(e, Pod) and sum(1 for i in intents if i.tiers_of(e)) > 1
        )

    def beyond(self, key: Any, state: State) -> list[str]:
        """What ``state`` opens beyond the combo render's openings of pods two topologies claim, and beyond what
        other people's policies open (as they wrote them)."""
        others = [{**o, "metadata": {**o["metadata"], "name": f"foreign~{n}"}} for n, o in state.owners.items()]
        shared = self._shared[key]
        reference = {
            pair: ports
            for pair, (ports, rules) in self.opened(key, [*self.combos[key].policies.values(), *others]).items()
            if pair[1] in shared or pair[2] in shared or any("/foreign~" in r for r in rules)
        }
        now = self.opened(key, state.objects.values())
        out = []
        for pair, (ports, rules) in sorted(now.items()):
            extra = ports.difference(reference.get(pair, PortSet.NONE))
            if not extra.is_empty:
                by = f" (allowed by {', '.join(rules[:3])})" if rules else ""
                out.append(f"{pair[0]}'s {pair[1]} -> {pair[2]} {extra}{by}")
        return out

    def judge_states(
        self, states: Sequence[State], hints: Sequence[Any] = (), allowed: Sequence[Iterable[Any]] = ()
    ) -> list[Finding]:
        """Each state within some combo, tried from its hint (the combo the revisions' judges placed it in).

        ``allowed``: per state, the combos it may be judged against (those whose every topology's revision
        holds the state, as that topology's judge found: a topology whose first policies are being written
        is still at "nothing", its pods its own). Without (or when none is), the combos holding exactly the
        topologies that own policies in the state."""
        findings = []
        for k, state in enumerate(states):
            self.judged += 1
            hint = hints[k] if k < len(hints) else None
            present = _owners(state.objects.values()) & self._known
            order = [hint] if hint in self.combos else []
            order += [key for key in self.combos if key != hint]
            chosen = set(allowed[k]) if k < len(allowed) else set()
            if chosen & set(order):
                order = [key for key in order if key in chosen]
            else:
                order = [key for key in order if self._present[key] == present]
            best: tuple[Any, list[str]] | None = None
            for key in order:
                extra = self.beyond(key, state)
                if not extra:
                    best = None
                    break
                if best is None or len(extra) < len(best[1]):
                    best = (key, extra)
            if not order:
                findings.append(
                    Finding(
                        "opened",
                        f"after {state.label()}: no combination of the revisions holds "
                        f"the topologies owning policies {sorted(present)}",
                    )
                )
            elif best is not None:
                key, extra = best
                findings.append(
                    Finding(
                        "opened",
                        f"after {state.label()}: policies {sorted(state.objects)} open pods beyond their own "
                        f"topology's intent, in every combination of the revisions (nearest "
                        f"{self.combos[key].label}): {'; '.join(extra[:4])}" + (" ..." if len(extra) > 4 else ""),
                    )
                )
        return findings


def _owners(policies: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The UIDs of the topologies (controller ownerReferences) owning any of ``policies``."""
    return frozenset(
        str(r.get("uid"))
        for p in policies
        for r in (p.get("metadata") or {}).get("ownerReferences") or []
        if r.get("controller")
    )


def _labelled(policy: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """:func:`_placed`, keeping the labels (which policies are a topology's own, for the attribution)."""
    out = _placed(policy, namespace)
    labels = (policy.get("metadata") or {}).get("labels")
    if labels:
        out["metadata"]["labels"] = dict(labels)
    return out


def _placed(policy: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    meta = policy.get("metadata") or {}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": str(meta.get("name", "")), "namespace": namespace},
        "spec": stored_spec(copy.deepcopy(policy.get("spec") or {})),
    }


def _endpoint(endpoint: Endpoint) -> str:
    return str(getattr(endpoint, "name", None) or endpoint)


# The end ------------------------------------------------------------------------------------------------


def end_state(result: Replay, owner_uid: str, expected: Objects, label: str, also: Iterable[str] = ()) -> list[Finding]:
    """The operator's objects at the end are exactly ``expected`` (stored specs, owned by ``owner_uid``), the
    others are as their owners last wrote them, and nothing else is left (no guard, no orphan); ``also``: the
    UIDs of the namespace's other topologies (their objects are judged by their own call)."""
    neighbours = set(also)
    findings = []
    end = result.end
    last_state = result.states[-1] if result.states else State(None, {}, {})
    ours = {n: o for n, o in end.items() if _owned(o, owner_uid)}
    if sorted(ours) != sorted(expected):
        findings.append(Finding("end-state", f"owned policies {sorted(ours)}, expected {label}'s {sorted(expected)}"))
    for name in sorted(set(ours) & set(expected)):
        if stored_spec(ours[name].get("spec")) != stored_spec(expected[name].get("spec")):
            findings.append(Finding("end-state", f"{name} is not {label}'s: {_brief(ours[name].get('spec'))}"))
    for name, obj in sorted(end.items()):
        if name in ours:
            if _uid(obj) in result.foreign_uids:
                findings.append(
                    Finding("end-state", f"{name} (someone else's, UID {_uid(obj)}) is owned by the topology")
                )
            continue
        mine = last_state.owners.get(name)
        if mine is None and any(_owned(obj, uid) for uid in neighbours):
            continue
        if mine is None:
            findings.append(Finding("end-state", f"{name} is neither owned by the topology nor anyone else's"))
        elif _rv(mine) != _rv(obj):
            findings.append(Finding("end-state", f"{name} (someone else's) was changed by the operator"))
    for name, obj in sorted(last_state.owners.items()):
        if name not in end:
            findings.append(Finding("end-state", f"{name} (someone else's, UID {_uid(obj)}) is gone"))
    return findings


def live_agrees(result: Replay, live: Iterable[Mapping[str, Any]], rv: int | None = None) -> list[Finding]:
    """A later read (a LIST at resourceVersion ``rv``; None: after every recorded write): the live objects are
    the replayed state as of that revision (names, UIDs, resourceVersions)."""
    have = {_name(o): (_uid(o), _rv(o)) for o in live}
    want = {n: (_uid(o), _rv(o)) for n, o in (result.end if rv is None else result.at(rv)).items()}
    if have == want:
        return []
    diff = []
    for name in sorted(set(have) | set(want)):
        if have.get(name) != want.get(name):
            diff.append(f"{name}: recorded {want.get(name)}, live {have.get(name)}")
    return [Finding("live", "the record disagrees with a later read: " + "; ".join(diff))]


def _owned(obj: Mapping[str, Any], uid: str) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in refs)
