"""The TopologyGuardrail API (``apptopology.io/v1alpha1``, cluster-scoped) as pydantic models.

A platform team bounds what the AppTopologies of some namespaces may open. Every rule only ever narrows:
a guardrail can refuse a topology (at admission) or keep flows from being rendered (in the operator), never
allow anything a topology does not declare. Each rule is optional; a guardrail with only a
namespaceSelector refuses nothing.

The CRD is generated from these models (:mod:`apptopology.api.crdgen`), the admission policy's CEL from the
same constants (:mod:`apptopology.api.admission`), and :mod:`apptopology.render.guardrails` checks topologies
against them offline and in the operator. Pure: no kopf, no kubernetes.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator

from .spec import (
    API_GROUP,
    API_VERSION,
    DNS1123_LABEL,
    MAX_FLOWS,
    MAX_TIERS,
    IPBlock,
    LabelSelector,
    _cel,
    _extra,
    _Strict,
    check_cidr,
    check_label_key,
    check_label_value,
    quote,
)
from .validation import MAX_ISSUES, InvalidTopology, Issue, oversized, pydantic_issues

GUARDRAIL_KIND = "TopologyGuardrail"
GUARDRAIL_PLURAL = "topologyguardrails"

# The one namespace label a tenant cannot set: the API server keeps it equal to the namespace's name.
NAME_LABEL = "kubernetes.io/metadata.name"

# Bounds keep the admission policy's CEL cost within the API server's per-call limit for the largest
# AppTopology the CRD admits (512 flows, 32 except entries each); see tests/integration/test_guardrail_admission.py.
MAX_FORBIDDEN = 16
MAX_INTERNAL = 16
MAX_PEER_NAMESPACES = 64
MAX_CIDR_DESCRIPTION = 100
# Violations quoted in one refusal (the API server drops messages over 5 KiB and falls back to `message`),
# and allowed namespaces named in one peerNamespaces message.
MAX_LISTED = 5
MAX_NAMES_LISTED = 8

# Not the internet, for internetIngress when internalCIDRs is not given: the private-use ranges of
# RFC 1918, the shared address space of RFC 6598 (carrier-grade NAT) and IPv6 unique local addresses.
DEFAULT_INTERNAL_CIDRS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")

_CANONICAL_CIDR_CEL = "isCIDR(c) && string(cidr(c).masked()) == c"
_CIDR_MESSAGE = (
    "must be a CIDR in canonical form without bits beyond the prefix length, such as 169.254.169.254/32 or "
    "fd00:ec2::254/128 (no leading zeros, zones or IPv4-mapped IPv6)"
)


def _valid_cidr(value: str) -> str:
    problem = check_cidr(value)
    if problem:
        raise ValueError(problem)
    return value


Cidr = Annotated[str, Field(max_length=64), AfterValidator(_valid_cidr)]


class PeerNamespaces(_Strict):
    """Which other namespaces the topologies' cluster peers may be in. A namespace is named by its
    kubernetes.io/metadata.name label, the one label the API server sets to the namespace's name and a
    tenant cannot put on its own namespaces: a peer's namespaceSelector must pin that label (in matchLabels
    or an In expression) to this topology's namespace or to namespaces listed here. anywhere (every
    namespace) is refused. ipBlocks are not cluster peers here (whether they match pod addresses depends on
    the CNI): to keep them off pod and service addresses, list those ranges in forbiddenCIDRs."""

    allowed: list[Annotated[str, Field(max_length=63, pattern=DNS1123_LABEL)]] = Field(
        default_factory=list,
        max_length=MAX_PEER_NAMESPACES,
        # A set: the admission policy builds a map of it (a duplicate key would be an evaluation error).
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Names of the namespaces peers may be in, besides the topology's own (e.g. kube-system "
        "for DNS, monitoring for scrapes). Empty: only the topology's own namespace.",
    )

    @field_validator("allowed")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        for i, name in enumerate(v):
            if name in v[:i]:
                raise ValueError(f"duplicate namespace {quote(name)} (entries {v.index(name)} and {i})")
        return v


class ForbiddenCIDR(_Strict):
    """A range that topologies must not open: a flow's ipBlock that overlaps it must list a range containing
    it in except (an ipBlock inside it is refused outright), and anywhere, which includes it, is refused."""

    cidr: Cidr = Field(
        description="The range in canonical CIDR notation, e.g. 169.254.169.254/32 (cloud instance metadata) "
        "or the nodes' range."
    )
    direction: Literal["Both", "Egress", "Ingress"] = Field(
        default="Both",
        description="Which flows it applies to: Egress (flows to an ipBlock: pods must not reach it), Ingress "
        "(flows from an ipBlock: it must not reach pods), or Both (default).",
    )
    description: str | None = Field(
        default=None,
        max_length=MAX_CIDR_DESCRIPTION,
        description="Why it is forbidden, quoted in the messages (e.g. 'cloud instance metadata').",
    )

    model_config = ConfigDict(
        json_schema_extra=_extra(
            _cel(
                "isCIDR(self.cidr) && string(cidr(self.cidr).masked()) == self.cidr", "cidr " + _CIDR_MESSAGE, ".cidr"
            ),
        )
    )

    def applies_to(self, direction: Literal["Egress", "Ingress"]) -> bool:
        return self.direction in ("Both", direction)

    def label(self) -> str:
        """``169.254.169.254/32 (cloud instance metadata)``: how messages name it."""
        return self.cidr + (f" ({self.description})" if self.description else "")


class RequiredDefaultDeny(_Strict):
    """The isolation every topology must declare, at least (spec.defaultDeny of the AppTopology, and no tier
    exempting itself with tiers[].isolation): NetworkPolicy rules only bound an isolated direction, so
    internetIngress and forbiddenCIDRs protect only what is isolated."""

    ingress: StrictBool = Field(
        default=True, description="spec.defaultDeny.ingress must be true, and no tier's isolation.ingress false."
    )
    egress: StrictBool = Field(
        default=True, description="spec.defaultDeny.egress must be true, and no tier's isolation.egress false."
    )
    scope: Literal["Tiers", "Namespace"] = Field(
        default="Tiers",
        description="Tiers (default): either scope. Namespace: spec.defaultDeny.scope must be Namespace, so "
        "every pod of the namespace is isolated, also pods in no tier.",
    )


class TopologyGuardrailSpec(_Strict):
    """The namespaces a guardrail applies to and the rules their AppTopologies must follow."""

    namespace_selector: LabelSelector = Field(
        alias="namespaceSelector",
        description="The namespaces whose AppTopologies this guardrail bounds, by the namespaces' labels. "
        "{} selects every namespace. Select by labels tenants cannot change on their own namespace (only "
        "whoever may edit Namespace objects can).",
    )
    peer_namespaces: PeerNamespaces | None = Field(
        default=None,
        alias="peerNamespaces",
        description="Cluster peers in other namespaces (flows, DNS, monitoring) only in these namespaces, "
        "named by kubernetes.io/metadata.name. Absent: not restricted; {}: only the topology's own namespace.",
    )
    forbidden_cidrs: list[ForbiddenCIDR] = Field(
        default_factory=list,
        alias="forbiddenCIDRs",
        max_length=MAX_FORBIDDEN,
        description="Ranges flows must not open, e.g. 169.254.169.254/32 (cloud instance metadata) and the "
        "nodes' range.",
    )
    internet_ingress: Literal["Allow", "Forbid"] = Field(
        default="Allow",
        alias="internetIngress",
        description="Forbid: no flow from anywhere or from an ipBlock outside internalCIDRs. Allow (default): "
        "not restricted.",
    )
    internal_cidrs: list[Cidr] | None = Field(
        default=None,
        alias="internalCIDRs",
        max_length=MAX_INTERNAL,
        description="The ranges that are not the internet, for internetIngress: a flow from an ipBlock inside "
        "one of them is allowed. Absent: " + ", ".join(DEFAULT_INTERNAL_CIDRS) + " (RFC 1918, RFC 6598, "
        "IPv6 unique local). [] : every ipBlock source is the internet.",
    )
    required_default_deny: RequiredDefaultDeny | None = Field(
        default=None,
        alias="requiredDefaultDeny",
        description="The isolation topologies must declare at least. Absent: not required; {}: both "
        "directions, either scope.",
    )
    kube_api: Literal["Allow", "Forbid"] = Field(
        default="Allow",
        alias="kubeAPI",
        description="Forbid: no flow to kubeAPI (the Kubernetes API server). Allow (default): not restricted. "
        "This rule alone judges kubeAPI: its addresses are the API server's, read from default/kubernetes "
        "(which tenants cannot change) and opened on its ports only, so forbiddenCIDRs (such as the nodes' "
        "range, where the API server usually listens) does not refuse it.",
    )
    max_tiers: StrictInt | None = Field(
        default=None,
        alias="maxTiers",
        ge=1,
        le=MAX_TIERS,
        description="At most this many tiers. Tiers beyond it get no flows and no monitoring (their pods stay "
        "isolated).",
    )
    max_flows: StrictInt | None = Field(
        default=None,
        alias="maxFlows",
        ge=0,
        le=MAX_FLOWS,
        description="At most this many flows; flows beyond it are not rendered.",
    )

    model_config = ConfigDict(
        json_schema_extra=_extra(
            _cel(
                f"!has(self.internalCIDRs) || self.internalCIDRs.all(c, {_CANONICAL_CIDR_CEL})",
                "every internalCIDRs entry " + _CIDR_MESSAGE,
                ".internalCIDRs",
            ),
        )
    )

    def internal(self) -> tuple[str, ...]:
        """The ranges that are not the internet (internalCIDRs, or the default)."""
        return DEFAULT_INTERNAL_CIDRS if self.internal_cidrs is None else tuple(self.internal_cidrs)


class GuardrailMeta(_Strict):
    """The parts of metadata the check uses; everything else Kubernetes puts there is tolerated."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(max_length=253)


class TopologyGuardrail(_Strict):
    """A TopologyGuardrail document (``apptopology.io/v1alpha1``): rules that the AppTopologies of the
    selected namespaces must follow. Enforced at admission (a ValidatingAdmissionPolicy refuses violating
    topologies) and by the operator (violating flows of topologies admitted before the guardrail changed are
    not rendered)."""

    api_version: Literal["apptopology.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["TopologyGuardrail"]
    metadata: GuardrailMeta
    spec: TopologyGuardrailSpec
    status: dict[str, Any] | None = None


def contains(outer: str, inner: str) -> bool:
    """CEL's ``cidr(outer).containsCIDR(inner)``: ``inner`` lies in ``outer`` (same family)."""
    a, b = ipaddress.ip_network(outer), ipaddress.ip_network(inner)
    return a.version == b.version and b.subnet_of(a)  # type: ignore[arg-type]


def ipblock_overlap(block: IPBlock, forbidden: str) -> Literal["inside", "includes", None]:
    """How an ipBlock relates to a forbidden range: ``inside`` it (refused whatever its except), ``includes``
    it without an except entry that contains it, or None (no overlap, or excepted)."""
    if contains(forbidden, block.cidr):
        return "inside"
    if contains(block.cidr, forbidden) and not any(contains(e, forbidden) for e in block.except_ or []):
        return "includes"
    return None


class InvalidGuardrail(InvalidTopology):
    """A TopologyGuardrail document that cannot be used, with every issue found."""


def parse_guardrail(doc: Any) -> TopologyGuardrail:
    """Validate one decoded document; raise :class:`InvalidGuardrail` with every issue found (field paths as
    for topologies)."""
    if not isinstance(doc, dict):
        raise InvalidGuardrail([Issue("", f"not a YAML mapping (got {type(doc).__name__})")])
    expected = f"{API_GROUP}/{API_VERSION}"
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if kind != GUARDRAIL_KIND or api_version != expected:
        raise InvalidGuardrail(
            [
                Issue(
                    "",
                    f"not a {GUARDRAIL_KIND}: apiVersion {quote(api_version)}, kind {quote(kind)} "
                    f"(expected {expected}, {GUARDRAIL_KIND})",
                )
            ]
        )
    too_big = oversized(doc)
    if too_big is not None:
        raise InvalidGuardrail([too_big])
    try:
        return TopologyGuardrail.model_validate(doc)
    except ValidationError as exc:
        issues = pydantic_issues(exc, TopologyGuardrail)
    if len(issues) > MAX_ISSUES:
        issues = [*issues[:MAX_ISSUES], Issue("", f"... and {len(issues) - MAX_ISSUES} more problems in this document")]
    raise InvalidGuardrail(issues)


def parse_labels(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` (as ``kubectl label`` takes them) -> a dict; ValueError says what is wrong."""
    labels: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise ValueError(f"{quote(item)} is not KEY=VALUE")
        problem = check_label_key(key) or check_label_value(value)
        if problem:
            raise ValueError(problem)
        if key in labels and labels[key] != value:
            raise ValueError(f"label {quote(key)} given twice")
        labels[key] = value
    return labels
