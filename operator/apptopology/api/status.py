"""The AppTopology status: its shape (the CRD's status schema is generated from these models), the
condition types and reasons, and the one way conditions are updated.

Conditions follow the Kubernetes convention (and cert-manager's helpers): one entry per type, updated in
place; ``lastTransitionTime`` moves only when the status value changes; conditions of other types (ours
or anyone's) are preserved, never overwritten. Reasons are an enum, so a typo is a type error and the
list of reasons users can see is this file.

Pure: no kopf, no kubernetes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ConditionType(StrEnum):
    READY = "Ready"
    ISOLATED = "Isolated"
    """True: nothing but this topology's own policies opens traffic to or from its pods beyond what it
    declares. False: another topology's or a hand-written policy in the namespace does (NetworkPolicies
    add up), with the pairs."""


class Reason(StrEnum):
    """Why Ready has its status."""

    RECONCILED = "Reconciled"
    """The NetworkPolicies match the spec."""
    INVALID_SPEC = "InvalidSpec"
    """The spec is invalid; the policies of the last good revision stay exactly as they were."""
    NAME_CONFLICT = "NameConflict"
    """A policy name the revision needs belongs to someone else; nothing of the revision was written."""
    APPLY_FAILED = "ApplyFailed"
    """The API server refused part of the revision; the previous revision was kept (or restored) whole."""
    DRY_RUN = "DryRun"
    """spec.enforcement is DryRun: nothing is enforced; status.dryRun says what enforcing would do."""
    GUARDRAIL_VIOLATION = "GuardrailViolation"
    """A TopologyGuardrail forbids part of the spec: the rest is enforced, the forbidden part is not."""
    GUARDRAILS_UNREADABLE = "GuardrailsUnreadable"
    """Which TopologyGuardrails apply is unknown (one cannot be parsed, or the operator may no longer read
    them or the namespaces' labels): nothing changes until they can be read; the policies stay as they are."""
    PERMISSION_DENIED = "PermissionDenied"
    """The operator may no longer read what it needs (its RBAC changed): nothing changes; the message says
    which request was refused."""
    ALONE = "Alone"
    """Isolated=True: no other policy in the namespace opens anything of this topology's pods."""
    OPENED_BY_OTHERS = "OpenedByOthers"
    """Isolated=False: other policies of the namespace open pairs this topology denies."""
    NOT_EVALUATED = "NotEvaluated"
    """Isolated=Unknown: the namespace has too many policies to evaluate in the operator, or they cannot be
    read."""


# Reasons of the Isolated condition (the others are Ready's).
ISOLATION_REASONS = (Reason.ALONE, Reason.OPENED_BY_OTHERS, Reason.NOT_EVALUATED)


class Condition(BaseModel):
    """One aspect of the topology's state, in the standard Kubernetes condition shape. The operator
    maintains the Ready condition."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: str = Field(max_length=316, description="Condition type. Ready: the NetworkPolicies match the spec.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str | None = Field(
        default=None,
        description="Why the condition has its status, one CamelCase word: " + ", ".join(r.value for r in Reason) + ".",
    )
    message: str | None = Field(default=None, description="Details for humans, e.g. what is wrong with the spec.")
    last_transition_time: datetime | None = Field(
        default=None, alias="lastTransitionTime", description="When status last changed."
    )
    observed_generation: int | None = Field(
        default=None,
        alias="observedGeneration",
        ge=0,
        json_schema_extra={"format": "int64"},
        description="The metadata.generation the condition was computed for.",
    )


class TierStatus(BaseModel):
    """What one tier selects now, and what looks wrong about it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(description="The tier.")
    pods: int = Field(ge=0, description="Pods its podSelector selects now.")
    warnings: list[str] | None = Field(
        default=None,
        description="Selects no pods; a peer's namespaceSelector matches no namespace; a named port none of "
        "its pods declares; pods also selected by another tier.",
    )


class DeniedConnections(BaseModel):
    """Connections between pods running now that enforcing the topology would deny."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    count: int = Field(ge=0, description="Pairs of pods (source, destination) that would lose some port.")
    examples: list[str] | None = Field(default=None, description="The first few, as 'source -> destination: ports'.")


class DryRunStatus(BaseModel):
    """What enforcing the topology would do (spec.enforcement DryRun)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    would_apply: list[str] | None = Field(
        default=None, alias="wouldApply", description="NetworkPolicies enforcing would create."
    )
    denied_connections: DeniedConnections | None = Field(
        default=None,
        alias="deniedConnections",
        description="Connections between the namespace's running pods that enforcing would deny.",
    )


class AppTopologyStatus(BaseModel):
    """What the operator observed and did. Written only by the operator, through the status subresource."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    observed_generation: int | None = Field(
        default=None,
        alias="observedGeneration",
        ge=0,
        json_schema_extra={"format": "int64"},
        description="The metadata.generation of the spec this status describes.",
    )
    conditions: list[Condition] | None = Field(
        default=None,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="Current conditions, at most one per type.",
    )
    policies: list[str] | None = Field(
        default=None,
        description="Names of the NetworkPolicies of this topology that exist now (after the last reconcile).",
    )
    policy_count: int | None = Field(
        default=None, alias="policyCount", ge=0, description="Number of entries in policies."
    )
    tier_count: int | None = Field(default=None, alias="tierCount", ge=0, description="Number of tiers in the spec.")
    conflicts: list[str] | None = Field(
        default=None,
        description="NetworkPolicies that the topology would create but that already exist and belong to "
        "someone else; they are left untouched.",
    )
    enforcement: str | None = Field(default=None, description="The enforcement mode the status describes.")
    pod_count: int | None = Field(
        default=None, alias="podCount", ge=0, description="Pods the tiers select now (a pod in two tiers counts once)."
    )
    warning_count: int | None = Field(
        default=None, alias="warningCount", ge=0, description="Number of warnings in tiers and warnings."
    )
    warnings: list[str] | None = Field(
        default=None,
        description="Warnings about the topology as a whole, e.g. DNS selectors that select no pod.",
    )
    tiers: list[TierStatus] | None = Field(default=None, description="Each tier: pods selected now, warnings.")
    dns: str | None = Field(
        default=None, description="With spec.dns.discover: the DNS peer resolved from the cluster, and its ports."
    )
    dry_run: DryRunStatus | None = Field(
        default=None, alias="dryRun", description="In DryRun: what enforcing would do."
    )
    kopf: dict[str, Any] | None = Field(
        default=None,
        description="Bookkeeping of the Kopf framework the operator runs on (handler progress). Not part of "
        "the API; do not rely on it.",
    )


def find_condition(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    type_: str,
    status: Literal["True", "False", "Unknown"],
    reason: Reason,
    message: str,
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """``conditions`` with the one of ``type_`` set (added at the end if missing), the others untouched.

    ``lastTransitionTime`` keeps its previous value unless the status value changes.
    """
    previous = find_condition(conditions, type_)
    moved = previous is None or previous.get("status") != status
    entry = {
        "type": type_,
        "status": status,
        "reason": reason.value,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": now if moved or previous is None else previous.get("lastTransitionTime", now),
    }
    out = [dict(c) if c.get("type") != type_ else entry for c in conditions or []]
    if previous is None:
        out.append(entry)
    return out


def status_changed(current: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether writing ``new`` (a merge patch) would change the stored status."""
    current = current or {}
    return any(current.get(k) != v for k, v in new.items())


def ready_status(
    current: Mapping[str, Any] | None,
    *,
    generation: int,
    reason: Reason,
    message: str,
    policies: Sequence[str],
    conflicts: Sequence[str] = (),
    tier_count: int,
    now: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The status after a reconcile of ``generation``: Ready (True only for Reconciled) and what exists.

    ``policies`` are the names that exist after the reconcile, whatever happened: the new revision's on
    success, the old one's when the new one was refused or invalid.
    """
    current = current or {}
    ready: Literal["True", "False"] = "True" if reason is Reason.RECONCILED else "False"
    return {
        "observedGeneration": generation,
        "conditions": set_condition(
            current.get("conditions"), ConditionType.READY, ready, reason, message, generation, now
        ),
        "policies": list(policies),
        "policyCount": len(policies),
        "tierCount": tier_count,
        "conflicts": list(conflicts),
        **(extra or {}),
    }
