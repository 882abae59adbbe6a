"""Check AppTopologies against TopologyGuardrails, and make a violating topology safe to render.

Pure (no kopf, no kubernetes): the CLI (``apptopology validate --guardrail``), the admission policy's
tests and the operator all get the same verdict from the same function. The admission policy
(:mod:`apptopology.api.admission`) states the same rules in CEL; each violation's text here is the text the
API server quotes when it refuses the topology, and the integration suite holds the two to that.

Two entry points:

- :func:`check`: the violations of a topology under the guardrails that select its namespace;
- :func:`enforce`: the topology narrowed so that what it renders obeys them (violating flows removed, DNS or
  monitoring turned off when their peer violates, forbidden NodeLocal DNSCache addresses left out, isolation
  raised to what is required), plus the violations, and the cluster facts to render it with. Every change
  only removes allowed connections, never adds one: the safe direction for a topology admitted before a
  guardrail changed.

Both take the cluster facts (:mod:`apptopology.render.facts`): with them the operator also judges what only the
cluster knows (the NodeLocal DNSCache addresses dns.discover finds); without them (the CLI, admission) the
spec is judged as written, and the three agree exactly.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ..api.guardrail import MAX_NAMES_LISTED, NAME_LABEL, ForbiddenCIDR, TopologyGuardrail, contains, ipblock_overlap
from ..api.spec import (
    CLOUD_METADATA,
    DEFAULT_DNS_SERVICES,
    AppTopology,
    DefaultDeny,
    Direction,
    Endpoint,
    LabelSelector,
    Tier,
    TierIsolation,
    selector_matches,
)
from ..api.validation import Issue, isolated_peer_issues
from .facts import NODE_LOCAL_DNS_DEFAULT, OFFLINE, ClusterFacts

Rule = Literal[
    "maxTiers", "maxFlows", "requiredDefaultDeny", "peerNamespaces", "forbiddenCIDRs", "internetIngress", "kubeAPI"
]
RULES: tuple[Rule, ...] = (
    "maxTiers",
    "maxFlows",
    "requiredDefaultDeny",
    "peerNamespaces",
    "forbiddenCIDRs",
    "internetIngress",
    "kubeAPI",
)

# The endpoint fields this module understands. Any other field set on an endpoint (a kind added to the API
# later) is judged a violation of every endpoint rule: a guardrail never lets through what it cannot judge.
_ENDPOINT_FIELDS = frozenset(
    {"tier", "ip_block", "anywhere", "cloud_metadata", "kube_api", "namespace_selector", "pod_selector"}
)
CANNOT_JUDGE = "an endpoint kind the guardrail cannot judge"
# As a destination, anywhere is rendered as every pod and every address but the cloud metadata service.
ANYWHERE_EGRESS = "anywhere (every address but the cloud metadata service)"


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
    facts: ClusterFacts = OFFLINE
    """The cluster facts to render ``topology`` with: those given, less the NodeLocal DNSCache addresses a
    guardrail forbids."""
    notes: tuple[Issue, ...] = ()
    """What was left out only because the raised isolation made it dead (a flow to pods of the namespace
    outside the tiers, DNS servers in the namespace): not violations, but also not rendered."""


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
    topology: AppTopology,
    guardrails: Iterable[TopologyGuardrail],
    namespace_labels: Mapping[str, str],
    facts: ClusterFacts = OFFLINE,
) -> list[Violation]:
    """Every violation of ``topology`` under those of ``guardrails`` that select its namespace.

    ``namespace_labels`` are the labels of the topology's namespace (``kubernetes.io/metadata.name`` is
    added when missing). Ordered by guardrail name, then rule (:data:`RULES`), then document order.

    ``facts`` (the operator's) add what only the cluster knows: the NodeLocal DNSCache addresses that
    ``dns.discover`` finds, judged against forbiddenCIDRs. Offline (the CLI, and admission, which sees no
    cluster objects) the spec is judged as written, and admission agrees exactly.
    """
    labels = labels_of_namespace(topology, namespace_labels)
    out: list[Violation] = []
    for guardrail in applicable(guardrails, labels):
        out.extend(_Checker(topology, guardrail, labels[NAME_LABEL], facts).violations())
    return out


def discovered_node_local(topology: AppTopology, facts: ClusterFacts) -> tuple[str, ...]:
    """The NodeLocal DNSCache addresses the renderer takes from ``facts`` (dns.discover without
    dns.nodeLocal), as :func:`apptopology.render.renderer.resolve_dns` does."""
    dns = topology.spec.dns
    if not dns.enabled or not dns.discover or dns.node_local is not None or not facts.node_local_dns:
        return ()
    return facts.node_local_dns_addresses or (NODE_LOCAL_DNS_DEFAULT,)


def enforce(
    topology: AppTopology,
    guardrails: Iterable[TopologyGuardrail],
    namespace_labels: Mapping[str, str],
    facts: ClusterFacts = OFFLINE,
) -> Guarded:
    """``topology`` narrowed to what the guardrails that select its namespace allow, and the violations;
    render ``Guarded.topology`` with ``Guarded.facts``.

    - flows with a violation, and flows of tiers beyond maxTiers, are removed;
    - DNS (monitoring) is turned off when its peer violates peerNamespaces; monitoring leaves out tiers
      beyond maxTiers; forbidden NodeLocal DNSCache addresses are left out (given ones from the spec,
      discovered ones from the facts);
    - spec.defaultDeny is raised to requiredDefaultDeny, and tiers no longer exempt themselves from what is
      required (or, in scope Namespace, from the default-deny);
    - what raising isolation would open or make dead is left out too, listed in ``notes``: a tier newly
      isolated in a direction brings its rules there, which would also hold for pods it shares with a tier
      already isolated there, so such a tier's flows (and monitoring) in that direction go; and flows to or
      from pods of the namespace outside the tiers, and DNS servers in the namespace, that scope Namespace
      now isolates (the API refuses them, and they allowed nothing any more).

    Tiers are never removed (in scope Tiers that would leave their pods unisolated), so the narrowed
    topology still violates maxTiers; it violates nothing else.
    """
    labels = labels_of_namespace(topology, namespace_labels)
    rails = applicable(guardrails, labels)
    found = check(topology, rails, labels, facts)
    if not found:
        return Guarded(topology, (), (), facts)
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

    dns = spec.dns
    if any(v.rule == "peerNamespaces" and v.path.startswith("spec.dns.") for v in found):
        dns = dns.model_copy(update={"enabled": False})
    forbidden_local = {v.path for v in found if v.path.startswith("spec.dns.nodeLocal.addresses[")}
    if forbidden_local and dns.node_local is not None:
        kept_local = [a for k, a in enumerate(dns.node_local.addresses) if _address_path(k) not in forbidden_local]
        node_local = dns.node_local.model_copy(update={"addresses": kept_local}) if kept_local else None
        dns = dns.model_copy(update={"node_local": node_local})
        if node_local is None:  # with discover, no NodeLocal DNSCache rather than the cluster's addresses
            facts = dataclasses.replace(facts, node_local_dns=False, node_local_dns_addresses=())
    if any(v.path == "spec.dns.discover" and v.rule == "forbiddenCIDRs" for v in found):
        found_local = discovered_node_local(topology, facts)
        banned = set(_forbidden_addresses(found_local, rails))
        kept_found = tuple(a for a in found_local if a not in banned)
        facts = dataclasses.replace(facts, node_local_dns=bool(kept_found), node_local_dns_addresses=kept_found)

    monitoring = spec.monitoring
    if any(v.path == "spec.monitoring.namespaceSelector" for v in found):
        monitoring = monitoring.model_copy(update={"enabled": False})
    scraped = [t for t in (monitoring.tiers if monitoring.tiers is not None else spec.tier_names()) if t in kept_tiers]

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
    required_directions = {
        d
        for g in rails
        if g.spec.required_default_deny is not None
        for d in _DIRECTIONS
        if getattr(g.spec.required_default_deny, d)
    }
    tiers = [_isolated_as_required(t, deny.scope == "Namespace", deny, required_directions) for t in spec.tiers]
    raised_spec = spec.model_copy(update={"default_deny": deny, "tiers": tiers})

    notes = []
    for tier, new in zip(spec.tiers, tiers, strict=True):
        for d in _DIRECTIONS:
            if spec.isolates(tier, d) or not raised_spec.isolates(new, d):
                continue
            shared = [
                u.name
                for u in spec.tiers
                if u.name != tier.name and spec.isolates(u, d) and _may_overlap(tier.pod_selector, u.pod_selector)
            ]
            if not shared:
                continue
            why = (
                f"tier {tier.name} is newly isolated for {d}, and its pods may also be in tier "
                f"{', '.join(shared)}, isolated for {d} already: its {d} rules would hold for those pods too"
            )
            for i, flow in enumerate(spec.flows):
                if i not in drop and (flow.to.tier if d == "ingress" else flow.from_.tier) == tier.name:
                    drop.add(i)
                    notes.append(Issue(f"spec.flows[{i}]", f"not rendered: {why}"))
            if d == "ingress" and monitoring.enabled and tier.name in scraped:
                scraped.remove(tier.name)
                notes.append(Issue("spec.monitoring.tiers", f"tier {tier.name} not scraped: {why}"))

    if monitoring.enabled and len(scraped) < len(monitoring.tiers if monitoring.tiers is not None else spec.tiers):
        monitoring = monitoring.model_copy(update={"tiers": scraped, "enabled": bool(scraped)})
    narrowed_spec = raised_spec.model_copy(
        update={"flows": [f for i, f in enumerate(spec.flows) if i not in drop], "dns": dns, "monitoring": monitoring}
    )
    narrowed = topology.model_copy(update={"spec": narrowed_spec})

    # Scope Namespace isolates pods of the namespace outside the tiers: flows to (from) them by podSelector
    # alone, and DNS servers in the namespace, are dead in a direction isolation was raised to (the API
    # refuses them). Leave them out too, and say so.
    remaining = [i for i in range(len(spec.flows)) if i not in drop]
    dead_dns = dead_flows = False
    for issue in isolated_peer_issues(narrowed) if deny.scope == "Namespace" else []:
        if issue.path.startswith("spec.flows["):
            index = remaining[int(issue.path[len("spec.flows[") : issue.path.index("]")])]
            drop.add(index)
            dead_flows = True
            notes.append(Issue(f"spec.flows[{index}]", f"not rendered: {issue.message}"))
        else:
            dead_dns = True
            notes.append(Issue(issue.path, f"DNS not rendered: {issue.message}"))
    if dead_flows or dead_dns:
        final = narrowed.spec.model_copy(
            update={
                "flows": [f for i, f in enumerate(spec.flows) if i not in drop],
                "dns": narrowed.spec.dns.model_copy(update={"enabled": False}) if dead_dns else narrowed.spec.dns,
            }
        )
        narrowed = narrowed.model_copy(update={"spec": final})
    return Guarded(narrowed, tuple(found), tuple(sorted(drop)), facts, tuple(notes))


def _may_overlap(a: LabelSelector, b: LabelSelector) -> bool:
    """Whether some labels satisfy both selectors. Exact: keys are independent and values unbounded, so the
    requirements on each key are checked together (a value in every In and matchLabels set, none of NotIn;
    present or absent)."""
    positive: dict[str, set[str]] = {}
    negative: dict[str, set[str]] = {}
    present: set[str] = set()
    absent: set[str] = set()

    def only(key: str, values: Iterable[str]) -> None:
        positive[key] = positive[key] & set(values) if key in positive else set(values)
        present.add(key)

    for selector in (a, b):
        for key, value in (selector.match_labels or {}).items():
            only(key, [value])
        for req in selector.match_expressions or []:
            if req.operator == "In":
                only(req.key, req.values or [])
            elif req.operator == "NotIn":
                negative.setdefault(req.key, set()).update(req.values or [])
            elif req.operator == "Exists":
                present.add(req.key)
            else:
                absent.add(req.key)
    if present & absent:
        return False
    return all(values - negative.get(key, set()) for key, values in positive.items())


_DIRECTIONS: tuple[Direction, ...] = ("ingress", "egress")


def _address_path(k: int) -> str:
    return f"spec.dns.nodeLocal.addresses[{k}]"


def _isolated_as_required(tier: Tier, namespace_scope: bool, deny: DefaultDeny, required: set[Direction]) -> Tier:
    """``tier`` without the exemptions (isolation false) that a guardrail requires away or, in scope Namespace,
    the default-deny no longer allows; an unset direction follows the (raised) default-deny."""
    own = tier.isolation
    if own is None:
        return tier
    cleared: dict[str, None] = {
        d: None
        for d in _DIRECTIONS
        if getattr(own, d) is False and (d in required or (namespace_scope and getattr(deny, d)))
    }
    if not cleared:
        return tier
    isolation = own.model_copy(update=cleared)
    if isolation == TierIsolation():
        return tier.model_copy(update={"isolation": None})
    return tier.model_copy(update={"isolation": isolation})


def _host(address: str) -> str:
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"


def _forbidden_addresses(addresses: Iterable[str], rails: Iterable[TopologyGuardrail]) -> Iterator[str]:
    """Those of ``addresses`` inside a range a guardrail forbids for egress."""
    entries = [e for g in rails for e in g.spec.forbidden_cidrs if e.applies_to("Egress")]
    for address in addresses:
        if any(contains(e.cidr, _host(address)) for e in entries):
            yield address


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

    def __init__(self, topology: AppTopology, guardrail: TopologyGuardrail, namespace: str, facts: ClusterFacts):
        self.topology = topology
        self.spec = topology.spec
        self.rules = guardrail.spec
        self.name = guardrail.metadata.name
        self.namespace = namespace
        self.facts = facts

    def _v(self, path: str, rule: Rule, text: str) -> Violation:
        return Violation(path, rule, text, self.name)

    def violations(self) -> Iterator[Violation]:
        yield from self._max_tiers()
        yield from self._max_flows()
        yield from self._default_deny()
        yield from self._peer_namespaces()
        yield from self._forbidden_cidrs()
        yield from self._internet_ingress()
        yield from self._kube_api()

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
        # A tier's own isolation overrides spec.defaultDeny for its pods (in scope Tiers it can exempt them).
        for i, tier in enumerate(self.spec.tiers):
            for direction in ("ingress", "egress"):
                own = getattr(tier.isolation, direction) if tier.isolation is not None else None
                if getattr(required, direction) and own is False:
                    yield self._v(
                        f"spec.tiers[{i}].isolation.{direction}",
                        "requiredDefaultDeny",
                        f"must not be false: {direction} isolation is required",
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
        # With discover the DNS peer is the pods of a DNS Service, in the Service's namespace (and the
        # selectors above when none is found). Without dns.service it may be any of the defaults.
        if dns.enabled and dns.discover and dns.service is not None and dns.service.namespace not in allowed:
            text = f'DNS Service namespace "{dns.service.namespace}": peers may be only in {names}'
            yield self._v("spec.dns.service.namespace", "peerNamespaces", text)
        elif dns.enabled and dns.discover and dns.service is None:
            unlisted = [f"{ns}/{name}" for ns, name in DEFAULT_DNS_SERVICES if ns not in allowed]
            if unlisted:
                text = (
                    f"may follow the DNS Service {' or '.join(unlisted)}, but peers may be only in {names}: "
                    "name the DNS Service in dns.service"
                )
                yield self._v("spec.dns.discover", "peerNamespaces", text)
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
                if endpoint.anywhere and direction == "Ingress":
                    yield self._v(f"{base}.anywhere", "forbiddenCIDRs", f"anywhere includes {entry.label()}, {where}")
                elif endpoint.anywhere and not any(contains(m, entry.cidr) for m in CLOUD_METADATA):
                    text = f"{ANYWHERE_EGRESS} includes {entry.label()}, {where}"
                    yield self._v(f"{base}.anywhere", "forbiddenCIDRs", text)
                elif endpoint.cloud_metadata:
                    # The two metadata addresses, as rendered: one is inside the entry if any (one family).
                    for address in (m for m in CLOUD_METADATA if contains(entry.cidr, m)):
                        text = f"the cloud metadata service {address} is inside {entry.label()}, {where}"
                        yield self._v(f"{base}.cloudMetadata", "forbiddenCIDRs", text)
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
        # DNS's NodeLocal DNSCache addresses are /32 or /128 ipBlocks on egress: as given, and (with facts)
        # as dns.discover finds them in the cluster.
        dns = self.spec.dns
        egress = [e for e in forbidden if e.applies_to("Egress")]
        given = dns.node_local.addresses if dns.enabled and dns.node_local is not None else []
        for k, address in enumerate(given):
            for entry in egress:
                if contains(entry.cidr, _host(address)):
                    text = f"{address} is inside {entry.label()}, forbidden for egress"
                    yield self._v(_address_path(k), "forbiddenCIDRs", text)
        for address in discovered_node_local(self.topology, self.facts):
            for entry in egress:
                if contains(entry.cidr, _host(address)):
                    text = (
                        f"NodeLocal DNSCache {address}, found in the cluster, is inside {entry.label()}, "
                        "forbidden for egress"
                    )
                    yield self._v("spec.dns.discover", "forbiddenCIDRs", text)

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

    def _kube_api(self) -> Iterator[Violation]:
        if self.rules.kube_api != "Forbid":
            return
        for i, side, endpoint, _ in self._sides():
            base = f"spec.flows[{i}].{side}"
            unknown = _unknown_kind(endpoint)
            if unknown is not None:
                yield self._v(f"{base}.{unknown}", "kubeAPI", CANNOT_JUDGE)
            elif endpoint.kube_api:
                yield self._v(f"{base}.kubeAPI", "kubeAPI", "egress to the Kubernetes API is forbidden")
