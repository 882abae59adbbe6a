"""Plan a reconcile: desired vs live NetworkPolicies, and the writes (in a safe order) between them.

Pure: it takes the AppTopology object and the namespace's live NetworkPolicies as plain dicts and returns a
:class:`Plan`. The executor (:mod:`apptopology.controller.reconciler`) only carries plans out, so every
decision that matters for security is unit-testable here:

- **Ours** is decided by one rule, :func:`owned_by`: a controller ownerReference with the topology's UID.
  Labels only help find candidates; a policy carrying our labels but not our reference is someone else's.
- **All or nothing.** An invalid spec, or a desired name held by someone else, plans no write at all: the
  policies of the last good revision stay whole (fail closed).
- **Safe order.** The writes come from :func:`apptopology.planner.transition.transition`: at every moment the
  namespace allows a subset of the old revision, then of the new one; stale policies go last.
- **Minimal.** Policies the API server would store identically (:mod:`apptopology.planner.compare`) are not
  written; a plan with nothing to change has no writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.spec import API_GROUP, API_VERSION, KIND, AppTopology
from ..api.validation import InvalidTopology
from ..render.facts import OFFLINE, ClusterFacts
from ..render.renderer import DESCRIPTION_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, TOPOLOGY_LABEL, render
from ..render.validation import parse_spec
from .compare import in_sync, stored_spec
from .transition import Phase, transition

FIELD_MANAGER = "apptopology-operator"


@dataclass(frozen=True)
class Owner:
    """The AppTopology being reconciled, as far as the plan needs it."""

    name: str
    namespace: str
    uid: str
    generation: int

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Owner:
        meta = body["metadata"]
        return cls(meta["name"], meta["namespace"], meta["uid"], int(meta.get("generation") or 0))

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            # No blockOwnerDeletion: with it, clusters enforcing OwnerReferencesPermissionEnforcement would
            # demand update on apptopologies/finalizers, a permission we otherwise never need.
        }


def owned_by(policy: Mapping[str, Any], uid: str) -> bool:
    """The one ownership rule: a controller ownerReference to the topology with this UID."""
    return any(
        ref.get("uid") == uid
        and ref.get("controller") is True
        and ref.get("kind") == KIND
        and str(ref.get("apiVersion", "")).startswith(f"{API_GROUP}/")
        for ref in (policy.get("metadata") or {}).get("ownerReferences") or []
    )


def candidate_owners(policy: Mapping[str, Any]) -> set[str]:
    """Names of topologies that may own ``policy`` or need its name, for routing its events: our
    reference, our topology label, and the ``<topology>.`` prefix of its name (so a topology waiting on a
    name conflict hears when the other policy goes). Only a hint: :func:`owned_by` decides."""
    meta = policy.get("metadata") or {}
    prefix, dot, _ = str(meta.get("name", "")).partition(".")
    names = {prefix} if dot and prefix else set()
    names |= {
        str(ref["name"])
        for ref in meta.get("ownerReferences") or []
        if ref.get("kind") == KIND and str(ref.get("apiVersion", "")).startswith(f"{API_GROUP}/") and ref.get("name")
    }
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE and labels.get(TOPOLOGY_LABEL):
        names.add(str(labels[TOPOLOGY_LABEL]))
    return names


@dataclass(frozen=True)
class Write:
    """One API write: server-side apply of ``body``, or (``body`` None) delete of ``name``.

    ``final``: the write puts the revision's own object in place (or deletes one it no longer has);
    these are dry-run first. Intermediate writes (isolation, narrowing, guards) are not.
    """

    name: str
    body: dict[str, Any] | None
    phase: Phase
    final: bool

    @property
    def is_delete(self) -> bool:
        return self.body is None


@dataclass
class Plan:
    writes: list[Write] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    desired_names: list[str] = field(default_factory=list)
    desired: list[dict[str, Any]] = field(default_factory=list)  # the revision's policy objects
    # The owned policies before the plan (name -> live object): what a failed attempt restores.
    owned: dict[str, dict[str, Any]] = field(default_factory=dict)
    invalid: str | None = None
    dry_run: bool = False  # spec.enforcement DryRun: the writes retire owned policies; nothing is applied
    left_out: list[str] = field(default_factory=list)  # what guardrails kept out of the rendering, and why

    @property
    def applies(self) -> list[Write]:
        return [w for w in self.writes if not w.is_delete]

    @property
    def deletes(self) -> list[Write]:
        return [w for w in self.writes if w.is_delete]

    def counts(self) -> tuple[int, int]:
        """(policies created or updated, policies deleted) once the plan has run."""
        applied = {w.name for w in self.writes if not w.is_delete and w.name in self.desired_names}
        deleted = {w.name for w in self.writes if w.is_delete and w.name in self.owned}
        return len(applied), len(deleted)


def _own_rule_lists(body: dict[str, Any]) -> dict[str, Any]:
    # Own both rule lists even when empty: server-side apply never removes a field it does not own, so an
    # `egress: [{}]` added by someone else to a policy without egress rules would survive every re-apply and
    # silently allow all egress. Owning `[]` lets the forced apply take the field back.
    body["spec"].setdefault("ingress", [])
    body["spec"].setdefault("egress", [])
    return body


# Narrows a parsed topology to what the platform allows (apptopology.render.guardrails.enforce, bound to the
# namespace's guardrails): the topology and facts to render, and what was left out and why.
Guard = Callable[[AppTopology, ClusterFacts], tuple[AppTopology, ClusterFacts, list[str]]]


def desired_policies(
    body: Mapping[str, Any], facts: ClusterFacts = OFFLINE, guard: Guard | None = None
) -> list[dict[str, Any]]:
    """Render the live AppTopology ``body`` into owned NetworkPolicy objects; raises InvalidTopology."""
    return _desired(body, facts, guard)[0]


def desired_with_notes(
    body: Mapping[str, Any], facts: ClusterFacts = OFFLINE, guard: Guard | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The policies, and what the guard left out of them (and why)."""
    return _desired(body, facts, guard)


def _desired(
    body: Mapping[str, Any], facts: ClusterFacts, guard: Guard | None
) -> tuple[list[dict[str, Any]], list[str]]:
    owner = Owner.from_body(body)
    topology = parse_spec(owner.name, owner.namespace, body.get("spec"))
    left_out: list[str] = []
    if guard is not None:
        topology, facts, left_out = guard(topology, facts)
    policies = render(topology, facts)
    for policy in policies:
        policy["metadata"]["namespace"] = owner.namespace
        policy["metadata"]["ownerReferences"] = [owner.reference()]
        _own_rule_lists(policy)
    return policies, left_out


def _shell(owner: Owner, name: str, spec: Mapping[str, Any], description: str) -> dict[str, Any]:
    """A policy object of ours with ``spec`` (for guards, and for shapes of policies we are removing)."""
    return _own_rule_lists(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {
                "name": name,
                "namespace": owner.namespace,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, TOPOLOGY_LABEL: owner.name},
                "annotations": {DESCRIPTION_ANNOTATION: description},
                "ownerReferences": [owner.reference()],
            },
            "spec": dict(spec),
        }
    )


def _writes(
    owner: Owner, desired: Iterable[dict[str, Any]], owned: Mapping[str, Mapping[str, Any]], taken: Iterable[str]
) -> list[Write]:
    """The ordered writes taking the ``owned`` live policies to the ``desired`` objects; ``taken``: names
    held by objects that are not ours (guards go elsewhere)."""
    wanted = {p["metadata"]["name"]: p for p in desired}
    rewrite = {n for n, p in wanted.items() if n in owned and not in_sync(p, owned[n])}
    moves = transition(
        {n: stored_spec(p.get("spec")) for n, p in owned.items()},
        {n: stored_spec(p.get("spec")) for n, p in wanted.items()},
        rewrite,
        guard_base=owner.name,
        taken=taken,
    )
    writes = []
    for move in moves:
        if move.spec is None:
            writes.append(Write(move.name, None, move.phase, move.final))
            continue
        if move.name in wanted:
            body = {**wanted[move.name], "spec": dict(move.spec)}
            _own_rule_lists(body)
        elif move.name in owned:  # a policy on its way out, narrowed first
            note = ((owned[move.name].get("metadata") or {}).get("annotations") or {}).get(DESCRIPTION_ANNOTATION, "")
            body = _shell(owner, move.name, move.spec, str(note))
        else:
            body = _shell(
                owner,
                move.name,
                move.spec,
                f"Topology {owner.name}: temporary isolation while its policies change; removed when the "
                "change completes.",
            )
        writes.append(Write(move.name, body, move.phase, move.final))
    return writes


def plan(
    body: Mapping[str, Any],
    live_policies: Iterable[Mapping[str, Any]],
    other_names: Iterable[str] = (),
    facts: ClusterFacts = OFFLINE,
    guard: Guard | None = None,
) -> Plan:
    """The writes that bring the namespace's policies in line with ``body`` (nothing more).

    ``live_policies`` must hold every policy of the topology (owned or carrying its label);
    ``other_names``: names of further policies known to exist in the namespace (someone else's).
    In DryRun (``spec.enforcement``) the writes only remove the owned policies (``dry_run`` is set, and
    ``desired`` holds what enforcing would apply).
    """
    owner = Owner.from_body(body)
    live = {str(p["metadata"]["name"]): dict(p) for p in live_policies}
    owned = {n: p for n, p in sorted(live.items()) if owned_by(p, owner.uid)}
    try:
        desired, left_out = _desired(body, facts, guard)
    except InvalidTopology as exc:
        return Plan(owned=owned, invalid="; ".join(str(i) for i in exc.issues))
    names = [p["metadata"]["name"] for p in desired]
    taken = set(live) | set(other_names)
    conflicts = [n for n in names if n in taken and n not in owned]
    if conflicts:
        return Plan(conflicts=conflicts, desired_names=names, desired=desired, owned=owned, left_out=left_out)
    foreign = taken - set(owned)
    writes = _writes(owner, [] if (body.get("spec") or {}).get("enforcement") == "DryRun" else desired, owned, foreign)
    dry = (body.get("spec") or {}).get("enforcement") == "DryRun"
    return Plan(writes=writes, desired_names=names, desired=desired, owned=owned, dry_run=dry, left_out=left_out)


def restore(
    body: Mapping[str, Any], before: Mapping[str, Mapping[str, Any]], live_policies: Iterable[Mapping[str, Any]]
) -> Plan:
    """The writes that put back the owned policies ``before`` (as read at the start of a failed attempt),
    in the same safe order, from whatever the attempt left (``live_policies``: the whole namespace)."""
    owner = Owner.from_body(body)
    live = {str(p["metadata"]["name"]): dict(p) for p in live_policies}
    owned = {n: p for n, p in sorted(live.items()) if owned_by(p, owner.uid)}
    ours = (MANAGED_BY_LABEL, TOPOLOGY_LABEL)
    targets = []
    for name, policy in before.items():
        meta = policy.get("metadata") or {}
        target = _shell(owner, name, policy.get("spec") or {}, "")
        target["metadata"]["labels"] = {k: v for k, v in (meta.get("labels") or {}).items() if k in ours}
        target["metadata"]["annotations"] = {
            k: v for k, v in (meta.get("annotations") or {}).items() if k == DESCRIPTION_ANNOTATION
        }
        targets.append(target)
    writes = _writes(owner, targets, owned, set(live) - set(owned))
    return Plan(writes=writes, desired_names=sorted(before), desired=targets, owned=owned)
