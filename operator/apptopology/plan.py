"""Plan a reconcile: compare desired and live NetworkPolicies and decide the minimal set of writes.

Pure: it takes the AppTopology object and the namespace's live NetworkPolicies as plain dicts and returns a
:class:`Plan`. The Kopf handlers only execute plans, so every decision that matters for security (what is
ours, what is stale, what to leave alone, when to write nothing) is unit-testable here.

Rules:
- A policy is ours only if it carries a controller ownerReference to this AppTopology's UID. A live policy
  with a desired name that is not ours is a name conflict: left untouched and reported.
- Owned policies no longer desired are deleted (by owner UID, with a UID precondition).
- An invalid spec plans no policy writes at all (fail closed), only the InvalidSpec status.
- Nothing differs (normalized spec, our labels and annotation, our ownerReference) -> no write.
- Status is written only when it changes; lastTransitionTime moves only when the condition's status does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .api.spec import API_GROUP, API_VERSION, KIND
from .api.validation import InvalidTopology, parse_spec
from .render import render

FIELD_MANAGER = "apptopology-operator"
READY = "Ready"

REASON_RECONCILED = "Reconciled"
REASON_INVALID = "InvalidSpec"
REASON_CONFLICT = "NameConflict"
REASON_APPLY_FAILED = "ApplyFailed"


@dataclass(frozen=True)
class Owner:
    """The AppTopology being reconciled, as far as the plan needs it."""

    name: str
    namespace: str
    uid: str
    generation: int

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Owner:
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


@dataclass(frozen=True)
class Apply:
    """Server-side apply of ``body``. ``existing_uid`` is set when updating a policy we already own, so the
    write carries a UID precondition and can never land on a foreign object recreated under the name."""

    body: dict[str, Any]
    existing_uid: str | None

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


@dataclass(frozen=True)
class Delete:
    name: str
    uid: str


@dataclass
class Plan:
    applies: list[Apply] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    desired_names: list[str] = field(default_factory=list)
    invalid: str | None = None

    @property
    def writes(self) -> int:
        return len(self.applies) + len(self.deletes)


def _prune(obj: Any) -> Any:
    """Drop empty containers and None so that ``{}``/``[]``/absent compare equal, as the API treats them."""
    if isinstance(obj, dict):
        out = {k: _prune(v) for k, v in obj.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(obj, list):
        return [_prune(v) for v in obj]
    return obj


def normalize_spec(spec: dict[str, Any] | None) -> Any:
    """A NetworkPolicy spec in comparable form (the API server defaults protocol to TCP; so do we)."""
    spec = _prune(spec or {})
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction, []):
            for port in rule.get("ports", []):
                port.setdefault("protocol", "TCP")
    return spec


def is_owned_by(policy: dict[str, Any], uid: str) -> bool:
    return any(
        ref.get("uid") == uid and ref.get("controller")
        for ref in policy.get("metadata", {}).get("ownerReferences") or []
    )


def in_sync(desired: dict[str, Any], live: dict[str, Any], owner: Owner) -> bool:
    """True when applying ``desired`` would change nothing we manage on ``live``."""
    if normalize_spec(desired.get("spec")) != normalize_spec(live.get("spec")):
        return False
    live_meta = live.get("metadata", {})
    for key in ("labels", "annotations"):
        mine = desired["metadata"].get(key) or {}
        theirs = live_meta.get(key) or {}
        if any(theirs.get(k) != v for k, v in mine.items()):
            return False
    return any(ref == owner.reference() for ref in live_meta.get("ownerReferences") or [])


def desired_policies(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Render the live AppTopology ``body`` into owned NetworkPolicy objects; raises InvalidTopology."""
    owner = Owner.from_body(body)
    topology = parse_spec(owner.name, owner.namespace, body.get("spec"))
    policies = render(topology)
    for policy in policies:
        policy["metadata"]["namespace"] = owner.namespace
        policy["metadata"]["ownerReferences"] = [owner.reference()]
        # Own both rule lists even when empty: server-side apply never removes a field it does not own, so
        # an `egress: [{}]` added by someone else to a policy without egress rules would survive every
        # re-apply and silently allow all egress. Owning `[]` lets the forced apply take the field back.
        policy["spec"].setdefault("ingress", [])
        policy["spec"].setdefault("egress", [])
    return policies


def plan(body: dict[str, Any], live_policies: list[dict[str, Any]]) -> Plan:
    """The writes that bring the namespace's policies in line with ``body`` (nothing more)."""
    owner = Owner.from_body(body)
    try:
        desired = desired_policies(body)
    except InvalidTopology as exc:
        return Plan(invalid="; ".join(str(i) for i in exc.issues))

    result = Plan(desired_names=[p["metadata"]["name"] for p in desired])
    live_by_name = {p["metadata"]["name"]: p for p in live_policies}
    for policy in desired:
        name = policy["metadata"]["name"]
        live = live_by_name.get(name)
        if live is None:
            result.applies.append(Apply(policy, None))
        elif not is_owned_by(live, owner.uid):
            result.conflicts.append(name)
        elif not in_sync(policy, live, owner):
            result.applies.append(Apply(policy, live["metadata"].get("uid")))
    wanted = set(result.desired_names)
    for live in sorted(live_policies, key=lambda p: str(p["metadata"]["name"])):
        meta = live["metadata"]
        if meta["name"] not in wanted and is_owned_by(live, owner.uid):
            result.deletes.append(Delete(meta["name"], meta.get("uid", "")))
    return result


def condition(
    status: str, reason: str, message: str, generation: int, now: str, previous: dict[str, Any] | None
) -> dict[str, Any]:
    """A Ready condition; keeps the previous lastTransitionTime unless the status value changes."""
    moved = previous is None or previous.get("status") != status
    return {
        "type": READY,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": now if moved or previous is None else previous.get("lastTransitionTime", now),
    }


def desired_status(body: dict[str, Any], result: Plan, now: str, failure: str | None = None) -> dict[str, Any]:
    """The status after executing ``result`` (``failure``: message of a write that failed for good)."""
    owner = Owner.from_body(body)
    current = body.get("status") or {}
    previous = next((c for c in current.get("conditions") or [] if c.get("type") == READY), None)
    spec = body.get("spec") or {}
    tiers = spec.get("tiers") if isinstance(spec, dict) else None
    tier_count = len(tiers) if isinstance(tiers, list) else 0
    if result.invalid is not None:
        # Fail closed: the policies stay as they were, so the status keeps describing them.
        return {
            "observedGeneration": owner.generation,
            "conditions": [condition("False", REASON_INVALID, result.invalid, owner.generation, now, previous)],
            "policies": list(current.get("policies") or []),
            "policyCount": len(current.get("policies") or []),
            "tierCount": tier_count,
            "conflicts": [],
        }
    policies = [n for n in result.desired_names if n not in result.conflicts]
    if failure is not None:
        cond = condition("False", REASON_APPLY_FAILED, failure, owner.generation, now, previous)
    elif result.conflicts:
        names = ", ".join(result.conflicts)
        cond = condition(
            "False",
            REASON_CONFLICT,
            f"NetworkPolicy {names} already exists and is not owned by this AppTopology; left untouched. "
            "Rename the topology or the tier, or delete the other policy.",
            owner.generation,
            now,
            previous,
        )
    else:
        cond = condition(
            "True",
            REASON_RECONCILED,
            f"{len(policies)} NetworkPolicies in sync",
            owner.generation,
            now,
            previous,
        )
    return {
        "observedGeneration": owner.generation,
        "conditions": [cond],
        "policies": policies,
        "policyCount": len(policies),
        "tierCount": tier_count,
        "conflicts": list(result.conflicts),
    }


def status_changed(current: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether writing ``new`` would change the stored status (fields we do not manage are ignored)."""
    current = current or {}
    return any(current.get(k) != v for k, v in new.items())
