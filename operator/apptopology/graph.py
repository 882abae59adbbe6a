"""Draw a topology: tiers, flows, DNS, monitoring and external peers, as Mermaid or Graphviz DOT.

Drawn from the declared intent (the model), not from the rendered policies, so the picture is what a
reviewer agrees to; `verify` proves the policies match it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .api.spec import AppTopology, Endpoint, Port, describe_selector, minimal_ports


@dataclass
class _Graph:
    nodes: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (id, label)
    kinds: dict[str, str] = field(default_factory=dict)  # key -> tier | external | peer | dns | monitoring
    edges: list[tuple[str, str, str, bool]] = field(default_factory=list)  # src, dst, label, dashed

    def node(self, key: str, label: str, kind: str) -> str:
        if key not in self.nodes:
            self.nodes[key] = (f"n{len(self.nodes)}", label)
            self.kinds[key] = kind
        return self.nodes[key][0]


def _ports(ports: list[Port] | None) -> str:
    if not ports:
        return "all ports"
    return ", ".join(p.label() for p in minimal_ports(ports))


def _endpoint(g: _Graph, endpoint: Endpoint, destination: bool = False) -> str:
    if endpoint.tier is not None:
        return g.node(f"tier:{endpoint.tier}", endpoint.tier, "tier")
    if endpoint.anywhere and destination:
        return g.node("anywhere-egress", "anywhere but the cloud metadata service", "external")
    if endpoint.anywhere:
        return g.node("anywhere", "anywhere", "external")
    if endpoint.cloud_metadata or endpoint.kube_api:
        return g.node(f"special:{endpoint.describe()}", endpoint.describe(), "external")
    if endpoint.ip_block is not None:
        label = endpoint.ip_block.cidr
        if endpoint.ip_block.except_:
            label += " except " + ", ".join(endpoint.ip_block.except_)
        return g.node(f"ip:{label}", label, "external")
    label = endpoint.describe()
    return g.node(f"peer:{label}", label, "peer")


def build(topology: AppTopology) -> _Graph:
    spec = topology.spec
    g = _Graph()
    for tier in spec.tiers:
        label = f"{tier.name} {describe_selector(tier.pod_selector)}"
        if tier.isolation is not None:  # an override: say what the tier's isolation is
            isolated = [d for d in ("ingress", "egress") if spec.isolates(tier, d)]
            label += f" (isolated: {' and '.join(isolated) or 'none'})"
        g.node(f"tier:{tier.name}", label, "tier")
    for flow in spec.flows:
        ports = "the API server's ports" if flow.to.kube_api else _ports(flow.ports)
        g.edges.append((_endpoint(g, flow.from_), _endpoint(g, flow.to, destination=True), ports, False))
    deny = spec.default_deny
    everywhere = deny.scope == "Namespace" and deny.egress
    dns_from = [t for t in spec.tiers if spec.isolates(t, "egress")] if not everywhere else []
    if spec.dns.enabled and (everywhere or dns_from):
        ns = describe_selector(spec.dns.namespace_selector) if spec.dns.namespace_selector else "this namespace"
        pods = describe_selector(spec.dns.pod_selector) if spec.dns.pod_selector else "{}"
        dns = g.node("dns", f"DNS: pods {pods} in namespaces {ns}", "dns")
        if everywhere:
            source = g.node("all", "every pod of the namespace", "peer")
            g.edges.append((source, dns, _ports(spec.dns.ports), True))
        for tier in dns_from:
            g.edges.append((g.nodes[f"tier:{tier.name}"][0], dns, _ports(spec.dns.ports), True))
    mon = spec.monitoring
    scraped = [
        name
        for name in (mon.tiers if mon.tiers is not None else spec.tier_names())
        if spec.isolates(next(t for t in spec.tiers if t.name == name), "ingress")
    ]
    if mon.enabled and scraped:
        ns = describe_selector(mon.namespace_selector) if mon.namespace_selector else "{}"
        pods = describe_selector(mon.pod_selector) if mon.pod_selector else "{}"
        source = g.node("monitoring", f"monitoring: pods {pods} in namespaces {ns}", "monitoring")
        for name in scraped:
            g.edges.append((source, g.nodes[f"tier:{name}"][0], _ports(mon.ports), True))
    return g


def _inside(g: _Graph) -> list[str]:
    """Nodes drawn inside the namespace box: the tiers, and "every pod" when it appears."""
    return [k for k in g.nodes if g.kinds[k] == "tier" or k == "all"]


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("|", "#124;")


def mermaid(topology: AppTopology) -> str:
    g = build(topology)
    ns = topology.metadata.namespace or "namespace"
    lines = ["graph LR"]
    lines.append(f'  subgraph ns["{_mermaid_text(f"{topology.metadata.name} (namespace {ns})")}"]')
    inside = _inside(g)
    for key in inside:
        node_id, label = g.nodes[key]
        lines.append(f'    {node_id}["{_mermaid_text(label)}"]')
    lines.append("  end")
    for key, (node_id, label) in g.nodes.items():
        if key in inside:
            continue
        if g.kinds[key] == "external":
            lines.append(f'  {node_id}(("{_mermaid_text(label)}"))')
        else:
            lines.append(f'  {node_id}[["{_mermaid_text(label)}"]]')
    for src, dst, label, dashed in g.edges:
        arrow = "-.->" if dashed else "-->"
        lines.append(f'  {src} {arrow}|"{_mermaid_text(label)}"| {dst}')
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def dot(topology: AppTopology) -> str:
    g = build(topology)
    ns = topology.metadata.namespace or "namespace"
    shapes = {"tier": "box", "peer": "box", "external": "ellipse", "dns": "component", "monitoring": "component"}
    lines = [
        f'digraph "{_dot_text(topology.metadata.name)}" {{',
        "  rankdir=LR;",
        '  node [fontname="Helvetica"]; edge [fontname="Helvetica", fontsize=10];',
        "  subgraph cluster_ns {",
        f'    label="{_dot_text(f"{topology.metadata.name} (namespace {ns})")}";',
    ]
    inside = _inside(g)
    for key in inside:
        node_id, label = g.nodes[key]
        style = ', style="rounded,filled", fillcolor="#e8f0fe"' if g.kinds[key] == "tier" else ""
        lines.append(f'    {node_id} [label="{_dot_text(label)}", shape={shapes[g.kinds[key]]}{style}];')
    lines.append("  }")
    for key, (node_id, label) in g.nodes.items():
        if key not in inside:
            lines.append(f'  {node_id} [label="{_dot_text(label)}", shape={shapes[g.kinds[key]]}];')
    for src, dst, label, dashed in g.edges:
        style = ", style=dashed" if dashed else ""
        lines.append(f'  {src} -> {dst} [label="{_dot_text(label)}"{style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"
