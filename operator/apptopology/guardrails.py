"""Check AppTopologies against TopologyGuardrails, and make a violating topology safe to render.

Pure (no kopf, no kubernetes): the CLI (``apptopology validate --guardrail``), the admission policy's
tests and the operator all get the same verdict from the same function. The admission policy
(:mod:`apptopology.api.admission`) states the same rules in CEL; each violation's text here is the text the
API server quotes when it refuses the topology, and the integration suite holds the two to that.

Two entry points:

- :func:`check`: the violations of a topology under the guardrails that select its namespace;
- :func:`enforce`: the topology narrowed so that what it renders obeys them (violating flows removed, DNS or
  monitoring turned off when their peer violates, isolation raised to what is required), plus the
  violations. Every change only removes allowed connections, never adds one: the safe direction for a
  topology admitted before a guardrail changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .api.guardrail import MAX_NAMES_LISTED, NAME_LABEL, ForbiddenCIDR, TopologyGuardrail, contains, ipblock_overlap
from .api.spec import AppTopology, Endpoint, LabelSelector, Tier
from .intent import selector_matches

Rule = Literal["maxTiers", "maxFlows", "requiredDefaultDeny", "peerNamespaces", "forbiddenCIDRs", "internetIngress"]
RULES: tuple[Rule, ...] = (
    "maxTiers",
    "maxFlows",
    "requiredDefaultDeny",
    "peerNamespaces",
    "forbiddenCIDRs",
    "internetIngress",
)

# The endpoint fields this module understands. Any other field set on an endpoint (a kind added to the API
# later) is judged a violation of every endpoint rule: a guardrail never lets through what it cannot judge.
_ENDPOINT_FIELDS = frozenset({"tier", "ip_block", "anywhere", "namespace_selector", "pod_selector"})
CANNOT_JUDGE = "an endpoint kind the guardrail cannot judge"


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (field path), which rule of which guardrail, and why (``text``)."""

    path: str
    rule: Rule
    text: str
    guardrail: str

    @property
    def admission_text(self) -> str:
        """The violation as the admission policy words it in its refusal: ``PATH: TEXT (RULE)``."""
        return f"{self.path}: {self.text} ({self.rule})"

    @property
    def flow(self) -> int | None:
        """The index of the flow this violation is about, if it is about one."""
        prefix = "spec.flows["
        if not self.path.startswith(prefix):
            return None
        return int(self.path[len(prefix) : self.path.index("]")])

    @property
    def message(self) -> str:
        """What is wrong and which rule of which guardrail says so (the CLI's message at :attr:`path`)."""
        return f"{self.text} (TopologyGuardrail {self.guardrail}: {self.rule})"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class Guarded:
    """A topology narrowed to what its guardrails allow (render this), and why it was narrowed."""

    topology: AppTopology
    violations: tuple[Violation, ...]
    dropped_flows: tuple[int, ...]
    """Indices (into the original ``spec.flows``) of the flows not rendered."""


def namespace_of(topology: AppTopology, namespace_labels: Mapping[str, str] | None = None) -> str:
    """The topology's namespace: its own, else the one ``namespace_labels`` name, else ``default`` (as
    kubectl would create it without ``-n``)."""
    return topology.metadata.namespace or (namespace_labels or {}).get(NAME_LABEL) or "default"


def labels_of_namespace(topology: AppTopology, namespace_labels: Mapping[str, str]) -> dict[str, str]:
    """The namespace's labels with ``kubernetes.io/metadata.name`` as the API server sets it.

    Raises ValueError when ``namespace_labels`` name another namespace than the topology's (a caller's
    mistake)."""
    namespace = namespace_of(topology, namespace_labels)
    given = namespace_labels.get(NAME_LABEL)
    if given is not None and given != namespace:
        raise ValueError(
            f"the namespace labels are of namespace {given!r} ({NAME_LABEL}), the topology is in {namespace!r}"
        )
    return {**namespace_labels, NAME_LABEL: namespace}


def selects(guardrail: TopologyGuardrail, namespace_labels: Mapping[str, str]) -> bool:
    """Whether ``guardrail`` applies to a namespace with these labels."""
    return selector_matches(guardrail.spec.namespace_selector, namespace_labels)


def applicable(guardrails: Iterable[TopologyGuardrail], namespace_labels: Mapping[str, str]) -> list[TopologyGuardrail]:
    """The guardrails that select the namespace, by name (the order of the messages)."""
    return sorted((g for g in guardrails if selects(g, namespace_labels)), key=lambda g: g.metadata.name)


def check(
    topology: AppTopology, guardrails: Iterable[TopologyGuardrail], namespace_labels: Mapping[str, str]
) -> list[Violation]:
    """Every violation of ``topology`` under those of ``guardrails`` that select its namespace.

    ``namespace_labels`` are the labels of the topology's namespace (``kubernetes.io/metadata.name`` is
    added when missing). Ordered by guardrail name, then rule (:data:`RULES`), then document order.
    """
    labels = labels_of_namespace(topology, namespace_labels)
    out: list[Violation] = []
    for guardrail in applicable(guardrails, labels):
        out.extend(_Checker(topology, guardrail, labels[NAME_LABEL]).violations())
    return out


def enforce(
    topology: AppTopology, guardrails: Iterable[TopologyGuardrail], namespace_labels: Mapping[str, str]
) -> Guarded:
    """``topology`` narrowed to what the guardrails that select its namespace allow, and the violations.

    - flows with a violation, and flows of tiers beyond maxTiers, are removed;
    - DNS (monitoring) is turned off when its peer violates peerNamespaces; monitoring leaves out tiers
      beyond maxTiers;
    - spec.defaultDeny is raised to requiredDefaultDeny.

    Tiers are never removed (in scope Tiers that would leave their pods unisolated), so the narrowed
    topology still violates maxTiers; it violates nothing else.
    """
    labels = labels_of_namespace(topology, namespace_labels)
    rails = applicable(guardrails, labels)
    found = check(topology, rails, labels)
    if not found:
        return Guarded(topology, (), ())
    spec = topology.spec
    drop = {v.flow for v in found if v.flow is not None}
    kept_tiers = {t.name for t in spec.tiers}
    for guardrail in rails:
        limit = guardrail.spec.max_tiers
        if limit is not None:
            kept_tiers &= {t.name for t in spec.tiers[:limit]}
    for i, flow in enumerate(spec.flows):
        if any(e.tier is not None and e.tier not in kept_tiers for e in (flow.from_, flow.to)):
            drop.add(i)
    update: dict[str, object] = {"flows": [f for i, f in enumerate(spec.flows) if i not in drop]}

    if any(v.path == "spec.dns.namespaceSelector" for v in found):
        update["dns"] = spec.dns.model_copy(update={"enabled": False})
    monitoring = spec.monitoring
    if any(v.path == "spec.monitoring.namespaceSelector" for v in found):
        monitoring = monitoring.model_copy(update={"enabled": False})
    elif monitoring.enabled and len(kept_tiers) < len(spec.tiers):
        scraped = monitoring.tiers if monitoring.tiers is not None else spec.tier_names()
        kept = [t for t in scraped if t in kept_tiers]
        monitoring = monitoring.model_copy(update={"tiers": kept, "enabled": bool(kept)})
    update["monitoring"] = monitoring

    deny = spec.default_deny
    for guardrail in rails:
        required = guardrail.spec.required_default_deny
        if required is None:
            continue
        deny = deny.model_copy(
            update={
                "ingress": deny.ingress or required.ingress,
                "egress": deny.egress or required.egress,
                "scope": "Namespace" if required.scope == "Namespace" else deny.scope,
            }
        )
    update["default_deny"] = deny
    narrowed = topology.model_copy(update={"spec": spec.model_copy(update=update)})
    return Guarded(narrowed, tuple(found), tuple(sorted(drop)))


def listed(items: Sequence[str], limit: int, separator: str, more: str) -> str:
    """The first ``limit`` items joined, then ``{more}N more``: as the admission policy abbreviates lists."""
    if len(items) <= limit:
        return separator.join(items)
    return separator.join(items[:limit]) + f"{more}{len(items) - limit} more"


# --- the rules ---------------------------------------------------------------------------------------------


def pinned_names(selector: LabelSelector) -> list[str] | None:
    """The namespace names a namespaceSelector is pinned to by kubernetes.io/metadata.name (the matchLabels
    value, then the values of every In expression on that key), or None when nothing pins it."""
    names: list[str] = []
    pinned = False
    value = (selector.match_labels or {}).get(NAME_LABEL)
    if value is not None:
        names.append(value)
        pinned = True
    for requirement in selector.match_expressions or []:
        if requirement.key == NAME_LABEL and requirement.operator == "In":
            names.extend(requirement.values or [])
            pinned = True
    return names if pinned else None


def _unknown_kind(endpoint: Endpoint) -> str | None:
    """The alias of an endpoint field this module does not know, if one is set (fail closed)."""
    for name, info in type(endpoint).model_fields.items():
        if name not in _ENDPOINT_FIELDS and getattr(endpoint, name) is not None:
            return info.alias or name
    return None


class _Checker:
    """The rules of one guardrail over one topology, in the order the admission policy lists them."""

    def __init__(self, topology: AppTopology, guardrail: TopologyGuardrail, namespace: str):
        self.topology = topology
        self.spec = topology.spec
        self.rules = guardrail.spec
        self.name = guardrail.metadata.name
        self.namespace = namespace

    def _v(self, path: str, rule: Rule, text: str) -> Violation:
        return Violation(path, rule, text, self.name)

    def violations(self) -> Iterator[Violation]:
        yield from self._max_tiers()
        yield from self._max_flows()
        yield from self._default_deny()
        yield from self._peer_namespaces()
        yield from self._forbidden_cidrs()
        yield from self._internet_ingress()

    def _max_tiers(self) -> Iterator[Violation]:
        limit = self.rules.max_tiers
        if limit is None:
            return
        tiers: Sequence[Tier] = self.spec.tiers
        for i in range(limit, len(tiers)):
            yield self._v(f"spec.tiers[{i}]", "maxTiers", f'tier "{tiers[i].name}" is beyond the {limit} tiers allowed')

    def _max_flows(self) -> Iterator[Violation]:
        limit = self.rules.max_flows
        if limit is None:
            return
        for i in range(limit, len(self.spec.flows)):
            yield self._v(f"spec.flows[{i}]", "maxFlows", f"flow beyond the {limit} flows allowed")

    def _default_deny(self) -> Iterator[Violation]:
        required = self.rules.required_default_deny
        if required is None:
            return
        deny = self.spec.default_deny
        for direction in ("ingress", "egress"):
            if getattr(required, direction) and not getattr(deny, direction):
                yield self._v(
                    f"spec.defaultDeny.{direction}",
                    "requiredDefaultDeny",
                    f"must be true: {direction} isolation is required",
                )
        if required.scope == "Namespace" and deny.scope != "Namespace":
            yield self._v(
                "spec.defaultDeny.scope",
                "requiredDefaultDeny",
                "must be Namespace: every pod of the namespace must be isolated",
            )

    def _sides(self) -> Iterator[tuple[int, str, Endpoint, Literal["Egress", "Ingress"]]]:
        """Each flow's endpoint that is not a tier (a flow has at most one), with the direction it is judged
        in: a destination is reached by egress, a source reaches the tier by ingress."""
        for i, flow in enumerate(self.spec.flows):
            if flow.from_.tier is not None:
                yield i, "to", flow.to, "Egress"
            else:
                yield i, "from", flow.from_, "Ingress"

    def _peer_namespaces(self) -> Iterator[Violation]:
        peers = self.rules.peer_namespaces
        if peers is None:
            return
        allowed = [self.namespace, *peers.allowed]
        names = listed(allowed, MAX_NAMES_LISTED, ", ", " and ")
        selector_text = f"must select namespaces by {NAME_LABEL}, only {names}"

        def bad(selector: LabelSelector) -> bool:
            pinned = pinned_names(selector)
            return pinned is None or any(n not in allowed for n in pinned)

        for i, side, endpoint, _ in self._sides():
            base = f"spec.flows[{i}].{side}"
            unknown = _unknown_kind(endpoint)
            if unknown is not None:
                yield self._v(f"{base}.{unknown}", "peerNamespaces", CANNOT_JUDGE)
            elif endpoint.anywhere:
                text = f"anywhere includes every namespace: peers may be only in {names}"
                yield self._v(f"{base}.anywhere", "peerNamespaces", text)
            elif endpoint.namespace_selector is not None and bad(endpoint.namespace_selector):
                yield self._v(f"{base}.namespaceSelector", "peerNamespaces", selector_text)
        dns = self.spec.dns
        if dns.enabled and dns.namespace_selector is not None and bad(dns.namespace_selector):
            yield self._v("spec.dns.namespaceSelector", "peerNamespaces", selector_text)
        monitoring = self.spec.monitoring
        if monitoring.enabled and monitoring.namespace_selector is not None and bad(monitoring.namespace_selector):
            yield self._v("spec.monitoring.namespaceSelector", "peerNamespaces", selector_text)

    def _forbidden_cidrs(self) -> Iterator[Violation]:
        forbidden: Sequence[ForbiddenCIDR] = self.rules.forbidden_cidrs
        if not forbidden:
            return
        for i, side, endpoint, direction in self._sides():
            base = f"spec.flows[{i}].{side}"
            unknown = _unknown_kind(endpoint)
            if unknown is not None:
                yield self._v(f"{base}.{unknown}", "forbiddenCIDRs", CANNOT_JUDGE)
                continue
            for entry in forbidden:
                if not entry.applies_to(direction):
                    continue
                where = f"forbidden for {direction.lower()}"
                if endpoint.anywhere:
                    yield self._v(f"{base}.anywhere", "forbiddenCIDRs", f"anywhere includes {entry.label()}, {where}")
                elif endpoint.ip_block is not None:
                    cidr = endpoint.ip_block.cidr
                    overlap = ipblock_overlap(endpoint.ip_block, entry.cidr)
                    if overlap == "inside":
                        yield self._v(f"{base}.ipBlock", "forbiddenCIDRs", f"{cidr} is inside {entry.label()}, {where}")
                    elif overlap == "includes":
                        yield self._v(
                            f"{base}.ipBlock",
                            "forbiddenCIDRs",
                            f"{cidr} includes {entry.label()}, {where}: add it to except",
                        )

    def _internet_ingress(self) -> Iterator[Violation]:
        if self.rules.internet_ingress != "Forbid":
            return
        internal = self.rules.internal()
        for i, side, endpoint, direction in self._sides():
            if direction != "Ingress":
                continue
            base = f"spec.flows[{i}].{side}"
            unknown = _unknown_kind(endpoint)
            if unknown is not None:
                yield self._v(f"{base}.{unknown}", "internetIngress", CANNOT_JUDGE)
            elif endpoint.anywhere:
                yield self._v(f"{base}.anywhere", "internetIngress", "ingress from anywhere includes the internet")
            elif endpoint.ip_block is not None:
                cidr = endpoint.ip_block.cidr
                if not any(contains(c, cidr) for c in internal):
                    ranges = ", ".join(internal) or "none"
                    yield self._v(
                        f"{base}.ipBlock",
                        "internetIngress",
                        f"{cidr} is not inside the internal ranges ({ranges}): ingress from the internet is forbidden",
                    )
