"""Who can talk to whom: the connectivity matrix of a subject, and one connection's verdict with its reasons."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

from ..api.spec import AppTopology, Flow, describe_selector, minimal_ports
from ..api.spec import Endpoint as FlowEndpoint
from ..evaluator import ConnectivityMatrix, Endpoint, Evaluator, External, Pod, PortSet, Verdict
from .intent import Intent
from .subject import AnalysisError, Subject, display_name

# What the synthesized inventory adds besides the tiers and the declared peers ("stand-ins" for the rest
# of the world): shown by explain only when asked (--all), since they make the table wide.
_STAND_IN_PODS = ("a pod of the namespace in no tier", "a pod of another namespace", "near miss")
_STAND_IN_EXTERNALS = ("(internet)", "(in except ", "(next to the Kubernetes API)")


def stand_in(endpoint: Endpoint) -> bool:
    """Whether a synthesized endpoint stands for the rest of the world rather than for something declared."""
    if isinstance(endpoint, Pod):
        return (endpoint.workload or "").startswith(_STAND_IN_PODS)
    return any(marker in (endpoint.name or "") for marker in _STAND_IN_EXTERNALS)


def governed(subj: Subject) -> set[str]:
    """Namespaces whose pods the analysed policies can select."""
    return {str((p.get("metadata") or {}).get("namespace") or "default") for p in subj.policies}


@dataclass(frozen=True)
class MatrixView:
    """The evaluated matrix, read lazily: a large inventory has millions of pairs, never materialized.

    Only pairs with at least one side in a governed namespace count (elsewhere these policies decide
    nothing), and a pod talking to itself is left out.
    """

    sources: list[Endpoint]
    destinations: list[Endpoint]
    result: ConnectivityMatrix
    homes: frozenset[str]
    hidden: int = 0  # stand-ins left out

    def relevant(self, source: Endpoint, destination: Endpoint) -> bool:
        if source == destination:
            return False
        return any(isinstance(e, Pod) and e.namespace in self.homes for e in (source, destination))

    def cell(self, source: Endpoint, destination: Endpoint) -> PortSet | None:
        """The allowed ports, or None for a pair these policies do not decide."""
        return self.result[source, destination] if self.relevant(source, destination) else None

    def allowed(self) -> Iterator[tuple[Endpoint, Endpoint, PortSet]]:
        """Every relevant pair with something allowed, in time proportional to their number."""
        for sources, destinations, ports in self.result.groups(include_denied=False):
            for source in sources:
                for destination in destinations:
                    if self.relevant(source, destination):
                        yield source, destination, ports


def matrix(subj: Subject, everything: bool = False) -> MatrixView:
    """The connectivity matrix of ``subj``. In a synthesized inventory the near-miss pods are always left
    out (they exist for verify), and the other stand-ins unless ``everything``."""
    evaluator = Evaluator(subj.parsed, subj.inventory)
    endpoints = [
        e
        for e in subj.inventory.endpoints
        if not (subj.synthesized and isinstance(e, Pod) and (e.workload or "").startswith("near miss"))
    ]
    hidden = 0
    if subj.synthesized and not everything:
        shown = [e for e in endpoints if not stand_in(e)]
        hidden, endpoints = len(endpoints) - len(shown), shown
    destinations = [e for e in endpoints if isinstance(e, Pod)] + [e for e in endpoints if isinstance(e, External)]
    result = evaluator.matrix(endpoints, destinations)
    return MatrixView(endpoints, destinations, result, frozenset(governed(subj)), hidden)


class NoPod(AnalysisError):
    """A tier named in a question selects no pod of the inventory: the answer is DENIED, and why."""

    def __init__(self, topology: AppTopology, tier: str):
        self.topology = topology
        self.tier = tier
        index, declared = next((i, t) for i, t in enumerate(topology.spec.tiers) if t.name == tier)
        self.path = f"spec.tiers[{index}].podSelector"
        home = topology.metadata.namespace or "default"
        super().__init__(
            f"tier {tier} selects no pod of the inventory ({self.path} {describe_selector(declared.pod_selector)} "
            f"in namespace {home})"
        )


def resolve(name: str, subj: Subject) -> Endpoint:
    """NAMESPACE/POD (or NAMESPACE/Kind/workload), a tier of the topology, or an IP address; :class:`NoPod`
    for a tier that selects none."""
    inv = subj.inventory
    for pod in inv.pods:
        if name in (pod.ref, f"{pod.namespace}/{pod.workload}") and pod.workload != f"tier {name}":
            return pod
    for topology in subj.topologies:
        tier = next((t for t in topology.spec.tiers if t.name == name), None)
        if tier is None:
            continue
        home = topology.metadata.namespace or "default"
        intent = Intent(topology)
        for pod in inv.pods:
            if pod.namespace == home and name in intent.tiers_of(pod):
                return pod
        raise NoPod(topology, name)
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return External(f"{address}/{address.max_prefixlen}")
    for external in inv.externals:
        if name == external.name:
            return external
    tiers = sorted({t.name for topology in subj.topologies for t in topology.spec.tiers})
    hint = f" (tiers: {', '.join(tiers)})" if tiers else ""
    raise AnalysisError(f"unknown endpoint {name!r}: give NAMESPACE/POD, a tier name or an IP address{hint}")


def explain_one(subj: Subject, source: str, destination: str, port: int, protocol: str) -> Verdict:
    evaluator = Evaluator(subj.parsed, subj.inventory)
    try:
        return evaluator.explain(resolve(source, subj), resolve(destination, subj), protocol, port)
    except NoPod:
        raise
    except ValueError as exc:
        raise AnalysisError(str(exc)) from None


# --- one question in the topology's terms ----------------------------------------------------------------


@dataclass(frozen=True)
class FlowReason:
    """A declared flow that concerns one side of the question, and whether (or why not) it covers it."""

    topology: str
    path: str  # spec.flows[2]
    flow: str  # frontend -> api on TCP/8080
    applies: bool
    reason: str

    def __str__(self) -> str:
        return f"{self.path} ({self.flow}): {self.reason}"

    def to_json(self) -> dict[str, object]:
        return {
            "topology": self.topology,
            "flow": self.path,
            "declares": self.flow,
            "applies": self.applies,
            "reason": self.reason,
        }


def describe_flow(flow: Flow) -> str:
    """``frontend -> api on TCP/8080`` (tiers by name, other endpoints described)."""

    def side(endpoint: FlowEndpoint) -> str:
        return endpoint.tier if endpoint.tier is not None else endpoint.describe()

    if flow.to.kube_api:
        ports = "the API server's ports"
    elif flow.ports:
        ports = ", ".join(p.label() for p in minimal_ports(list(flow.ports)))
    else:
        ports = "all ports"
    return f"{side(flow.from_)} -> {side(flow.to)} on {ports}"


@dataclass(frozen=True)
class Side:
    """One end of a question: the endpoint, or (a tier selecting no pod) only the tier's name."""

    name: str
    endpoint: Endpoint | None
    tier: str | None = None
    problem: str = ""  # why there is no endpoint (a tier selecting no pod)


def _is(intent: Intent, flow_end: FlowEndpoint, side: Side, subj: Subject, destination: bool) -> bool:
    if side.endpoint is None:
        return flow_end.tier is not None and flow_end.tier == side.tier
    return intent.matches(flow_end, side.endpoint, subj.inventory, destination=destination)


def _what(intent: Intent, side: Side, home: str) -> str:
    """``frontend`` or ``production/Deployment/web (tiers: web)``: the endpoint in the topology's terms."""
    if side.endpoint is None:
        return f"tier {side.tier}"
    tiers = intent.tiers_of(side.endpoint)
    shown = display_name(side.endpoint, home)
    if tiers == [shown]:
        return f"tier {shown}"
    if isinstance(side.endpoint, Pod) and side.endpoint.namespace == home:
        return f"{shown} ({'tier ' + ', '.join(tiers) if tiers else 'in no tier'})"
    return shown


def flow_reasons(subj: Subject, source: Side, destination: Side, port: int, protocol: str) -> list[FlowReason]:
    """Every declared flow with the source or the destination on its side, and whether it covers the
    question: the flow that declares it, or why each near one does not (another tier, another port)."""
    out: list[FlowReason] = []
    for topology in subj.topologies:
        intent = Intent(topology)
        home = intent.namespace
        for i, flow in enumerate(topology.spec.flows):
            from_ok = _is(intent, flow.from_, source, subj, False)
            to_ok = _is(intent, flow.to, destination, subj, True)
            if not (from_ok or to_ok):
                continue
            why = []
            if not from_ok:
                why.append(f"its source is {_end(flow.from_)}, and {_what(intent, source, home)} is not")
            if not to_ok:
                why.append(f"its destination is {_end(flow.to)}, and {_what(intent, destination, home)} is not")
            # A tier without pods has no container ports: its named ports resolve to nothing.
            target = destination.endpoint if destination.endpoint is not None else External("192.0.2.1/32")
            allowed = Intent.ports(flow.ports, target)
            ports_ok = allowed.contains(protocol, port)
            if not ports_ok and from_ok and to_ok:  # else the port does not matter
                detail = f"it allows {allowed}" if not allowed.is_empty else "it allows no port there"
                unresolved = [
                    p.label()
                    for p in flow.ports or []
                    if isinstance(p.port, str) and not (isinstance(target, Pod) and _names(target, p.port, p.protocol))
                ]
                if unresolved:
                    detail += f" (named port {', '.join(unresolved)} is declared by no container there)"
                why.append(f"{detail}, not {protocol}/{port}")
            if from_ok and to_ok and ports_ok:
                missing = [s for s in (source, destination) if s.endpoint is None]
                reason = "declares this connection"
                if missing:
                    reason += f", but tier {missing[0].tier} selects no pod of the inventory"
                out.append(FlowReason(topology.metadata.name, f"spec.flows[{i}]", describe_flow(flow), True, reason))
            else:
                reason = "does not apply: " + "; ".join(why)
                out.append(FlowReason(topology.metadata.name, f"spec.flows[{i}]", describe_flow(flow), False, reason))
        out += _implicit(intent, source, destination, port, protocol, subj)
    out.sort(key=lambda r: not r.applies)
    return out


def _implicit(
    intent: Intent, source: Side, destination: Side, port: int, protocol: str, subj: Subject
) -> list[FlowReason]:
    """DNS and monitoring, the flows a topology declares without writing them, when they cover the question."""
    spec, inv, name = intent.topology.spec, subj.inventory, intent.topology.metadata.name
    src, dst = source.endpoint, destination.endpoint
    if src is None or dst is None:
        return []
    out = []
    if spec.dns.enabled and intent.isolated(src, "egress") and intent.dns(dst, inv).contains(protocol, port):
        what = f"every pod isolated for egress -> DNS on {protocol}/{port}"
        out.append(FlowReason(name, "spec.dns", what, True, "declares this connection"))
    mon = spec.monitoring
    if (
        mon.enabled
        and intent.tiers_of(dst)
        and intent.peer_matches(mon.namespace_selector, mon.pod_selector, src, inv)
        and Intent.ports(mon.ports, dst).contains(protocol, port)
    ):
        what = f"monitoring -> the scraped tiers on {protocol}/{port}"
        out.append(FlowReason(name, "spec.monitoring", what, True, "declares this connection"))
    return out


def _end(endpoint: FlowEndpoint) -> str:
    return f"tier {endpoint.tier}" if endpoint.tier is not None else endpoint.describe()


def _names(pod: Pod, name: str, protocol: str) -> bool:
    return any(n == name and p == protocol for n, p, _ in pod.named_ports)
