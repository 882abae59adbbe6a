"""Draw topologies: tiers, flows, DNS, monitoring and external peers, as Mermaid or Graphviz DOT.

Drawn from the declared intent (the model), not from the rendered policies, so the picture is what a
reviewer agrees to; `verify` proves the policies match it. Several topologies make one drawing: each
namespace is a box, each topology a box inside its namespace's, and a peer sits in the namespace it
names (by ``kubernetes.io/metadata.name``), shared by every topology that names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..api.spec import AppTopology, Endpoint, LabelSelector, Port, describe_selector, minimal_ports

NAME_LABEL = "kubernetes.io/metadata.name"
# Graphviz page size in inches (landscape letter/A4): large drawings are scaled down to fit.
PAGE = "10.5,7.5"

Box = tuple[str, str | None]  # (namespace, topology) or (namespace, None) for a peer of the namespace


@dataclass
class _Graph:
    nodes: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (id, label)
    kinds: dict[str, str] = field(default_factory=dict)  # key -> tier | external | peer | dns | monitoring
    boxes: dict[str, Box | None] = field(default_factory=dict)  # key -> where it is drawn (None: outside)
    edges: list[tuple[str, str, str, bool]] = field(default_factory=list)  # src, dst, label, dashed

    def node(self, key: str, label: str, kind: str, box: Box | None = None) -> str:
        if key not in self.nodes:
            self.nodes[key] = (f"n{len(self.nodes)}", label)
            self.kinds[key] = kind
            self.boxes[key] = box
        return self.nodes[key][0]

    def edge(self, src: str, dst: str, label: str, dashed: bool) -> None:
        if (src, dst, label, dashed) not in self.edges:
            self.edges.append((src, dst, label, dashed))


def _ports(ports: list[Port] | None) -> str:
    if not ports:
        return "all ports"
    return ", ".join(p.label() for p in minimal_ports(ports))


def _named_namespace(selector: LabelSelector | None) -> str | None:
    """The one namespace a selector names by ``kubernetes.io/metadata.name``, if it names exactly one."""
    if selector is None:
        return None
    names = set()
    if selector.match_labels and NAME_LABEL in selector.match_labels:
        names.add(selector.match_labels[NAME_LABEL])
    for req in selector.match_expressions or []:
        if req.key == NAME_LABEL and req.operator == "In" and len(req.values or []) == 1:
            names.add((req.values or [""])[0])
    return names.pop() if len(names) == 1 else None


def _peer_box(namespace_selector: LabelSelector | None, home: str) -> Box | None:
    if namespace_selector is None:
        return (home, None)
    named = _named_namespace(namespace_selector)
    return (named, None) if named is not None else None


def _endpoint(g: _Graph, t: str, home: str, endpoint: Endpoint, destination: bool = False) -> str:
    if endpoint.tier is not None:
        return g.node(f"{t}:tier:{endpoint.tier}", endpoint.tier, "tier")
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
    box = _peer_box(endpoint.namespace_selector, home)
    if endpoint.namespace_selector is None:
        label = f"pods {describe_selector(endpoint.pod_selector)}" if endpoint.pod_selector else "every pod"
    elif box is not None and endpoint.pod_selector is not None:
        label = f"pods {describe_selector(endpoint.pod_selector)}"
    elif box is not None:
        label = "every pod"
    else:
        label = endpoint.describe()
    return g.node(f"peer:{box}:{label}", label, "peer", box)


def _add(g: _Graph, topology: AppTopology, t: str) -> None:
    """One topology's nodes and edges, its tiers in its box; ``t`` keeps its tiers apart from others'."""
    spec = topology.spec
    home = topology.metadata.namespace or "default"
    mine: Box = (home, topology.metadata.name)
    for tier in spec.tiers:
        label = f"{tier.name} {describe_selector(tier.pod_selector)}"
        if tier.isolation is not None:  # an override: say what the tier's isolation is
            isolated = [d for d in ("ingress", "egress") if spec.isolates(tier, d)]
            label += f" (isolated: {' and '.join(isolated) or 'none'})"
        g.node(f"{t}:tier:{tier.name}", label, "tier", mine)
    for flow in spec.flows:
        ports = "the API server's ports" if flow.to.kube_api else _ports(flow.ports)
        source = _endpoint(g, t, home, flow.from_)
        g.edge(source, _endpoint(g, t, home, flow.to, destination=True), ports, False)
    deny = spec.default_deny
    everywhere = deny.scope == "Namespace" and deny.egress
    dns_from = [tier for tier in spec.tiers if spec.isolates(tier, "egress")] if not everywhere else []
    if spec.dns.enabled and (everywhere or dns_from):
        box = _peer_box(spec.dns.namespace_selector, home)
        pods = describe_selector(spec.dns.pod_selector) if spec.dns.pod_selector else "{}"
        shown = describe_selector(spec.dns.namespace_selector) if spec.dns.namespace_selector else ""
        where = "" if box is not None else f" in namespaces {shown}"  # else its box says where
        dns = g.node(f"dns:{box}:{pods}{where}", f"DNS: pods {pods}{where}", "dns", box)
        if everywhere:
            source = g.node(f"{t}:all", "every pod of the namespace", "peer", mine)
            g.edge(source, dns, _ports(spec.dns.ports), True)
        for tier in dns_from:
            g.edge(g.nodes[f"{t}:tier:{tier.name}"][0], dns, _ports(spec.dns.ports), True)
    mon = spec.monitoring
    scraped = [
        name
        for name in (mon.tiers if mon.tiers is not None else spec.tier_names())
        if spec.isolates(next(x for x in spec.tiers if x.name == name), "ingress")
    ]
    if mon.enabled and scraped:
        box = _peer_box(mon.namespace_selector, home)
        ns = describe_selector(mon.namespace_selector) if mon.namespace_selector else "{}"
        pods = describe_selector(mon.pod_selector) if mon.pod_selector else "{}"
        source = g.node(
            f"monitoring:{box}:{pods}:{ns}", f"monitoring: pods {pods} in namespaces {ns}", "monitoring", box
        )
        for name in scraped:
            g.edge(source, g.nodes[f"{t}:tier:{name}"][0], _ports(mon.ports), True)


def build(topologies: Sequence[AppTopology]) -> _Graph:
    g = _Graph()
    for index, topology in enumerate(topologies):
        _add(g, topology, f"t{index}")
    return g


def _layout(g: _Graph) -> dict[str, dict[str | None, list[str]]]:
    """namespace -> topology (None: the namespace's peers) -> node keys, in first-seen order."""
    out: dict[str, dict[str | None, list[str]]] = {}
    for key, box in g.boxes.items():
        if box is not None:
            out.setdefault(box[0], {}).setdefault(box[1], []).append(key)
    return out


def _title(namespace: str, topology: str | None, alone: bool) -> str:
    if topology is None:
        return f"namespace {namespace}"
    return f"{topology} (namespace {namespace})" if alone else f"topology {topology}"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("|", "#124;")


def mermaid(topologies: AppTopology | Sequence[AppTopology]) -> str:
    items = [topologies] if isinstance(topologies, AppTopology) else list(topologies)
    g = build(items)
    lines = ["graph LR"]
    boxes = 0
    for namespace, groups in _layout(g).items():
        alone = len(items) == 1 and list(groups) in ([items[0].metadata.name], [items[0].metadata.name, None])
        if not alone:
            lines.append(f'  subgraph b{boxes}["{_mermaid_text(_title(namespace, None, False))}"]')
            boxes += 1
        for topology, keys in groups.items():
            indent = "    " if not alone else "  "
            inner = topology is not None
            if inner:
                box_id = "ns" if alone else f"b{boxes}"
                boxes += 0 if alone else 1
                lines.append(f'{indent}subgraph {box_id}["{_mermaid_text(_title(namespace, topology, alone))}"]')
            for key in keys:
                node_id, label = g.nodes[key]
                shape = ('["', '"]') if g.kinds[key] in ("tier", "peer") else ('[["', '"]]')
                pad = indent + ("  " if inner else "")
                lines.append(f"{pad}{node_id}{shape[0]}{_mermaid_text(label)}{shape[1]}")
            if inner:
                lines.append(f"{indent}end")
        if not alone:
            lines.append("  end")
    for key, (node_id, label) in g.nodes.items():
        if g.boxes[key] is not None:
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


def dot(topologies: AppTopology | Sequence[AppTopology]) -> str:
    items = [topologies] if isinstance(topologies, AppTopology) else list(topologies)
    g = build(items)
    shapes = {"tier": "box", "peer": "box", "external": "ellipse", "dns": "component", "monitoring": "component"}
    name = items[0].metadata.name if len(items) == 1 else "apptopology"
    lines = [
        f'digraph "{_dot_text(name)}" {{',
        f'  rankdir=LR; size="{PAGE}"; ratio=compress;',
        '  node [fontname="Helvetica"]; edge [fontname="Helvetica", fontsize=10];',
    ]
    clusters = 0

    def node_line(key: str, indent: str) -> str:
        node_id, label = g.nodes[key]
        style = ', style="rounded,filled", fillcolor="#e8f0fe"' if g.kinds[key] == "tier" else ""
        return f'{indent}{node_id} [label="{_dot_text(label)}", shape={shapes[g.kinds[key]]}{style}];'

    for namespace, groups in _layout(g).items():
        alone = len(items) == 1 and list(groups) in ([items[0].metadata.name], [items[0].metadata.name, None])
        indent = "  "
        if not alone:
            lines += [f"  subgraph cluster_{clusters} {{", f'    label="{_dot_text(_title(namespace, None, False))}";']
            clusters += 1
            indent = "    "
        for topology, keys in groups.items():
            if topology is not None:
                cluster = "cluster_ns" if alone else f"cluster_{clusters}"
                clusters += 0 if alone else 1
                lines += [
                    f"{indent}subgraph {cluster} {{",
                    f'{indent}  label="{_dot_text(_title(namespace, topology, alone))}";',
                ]
                lines += [node_line(k, indent + "  ") for k in keys]
                lines.append(f"{indent}}}")
            else:
                lines += [node_line(k, indent) for k in keys]
        if not alone:
            lines.append("  }")
    for key in g.nodes:
        if g.boxes[key] is None:
            lines.append(node_line(key, "  "))
    for src, dst, label, dashed in g.edges:
        style = ", style=dashed" if dashed else ""
        lines.append(f'  {src} -> {dst} [label="{_dot_text(label)}"{style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"
