"""explain: who can talk to whom (the matrix), or one connection's verdict in the topology's terms."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any, TextIO

from ..analysis.explain import FlowReason, MatrixView, NoPod, Side, explain_one, flow_reasons, matrix, resolve
from ..analysis.findings import check_inventory
from ..analysis.subject import Subject, display_name, subject
from ..api.spec import plural
from ..api.validation import InvalidTopology
from ..evaluator import PROTOCOLS, DirectionVerdict, PortSet, Verdict
from ..render.validation import parse_topology
from .common import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_file,
    add_inventory,
    add_namespace,
    add_output,
    check_unique,
    checked,
    facts,
    in_namespace,
    inventory,
    policies_of,
    warn_unresolved,
)
from .documents import Document, InputError, load_documents
from .help import examples
from .output import dump_result, table_lines, width, wrap, wrap_items, write_lines

LEGEND = "cells: the ports the row may open on the column; -: none; blank: not decided by these policies (or itself)"


def load_subject(sources: list[str], args: argparse.Namespace) -> tuple[Subject, list[Document]]:
    """The subject of ``sources`` (topologies rendered, NetworkPolicies as given) with --inventory/--cluster;
    duplicate policy names are an error, findings on a real inventory are warnings."""
    docs = load_documents(sources)
    namespace = getattr(args, "namespace", None)
    problems = [p for p in (in_namespace(d.data, namespace, d) for d in docs) if p is not None]
    if problems:
        raise InputError(problems)
    policies_of(docs)
    located = []
    for doc in docs:
        if isinstance(doc.data, dict) and doc.data.get("kind") == "AppTopology":
            try:
                located.append((doc, parse_topology(doc.data)))
            except InvalidTopology as exc:
                problems += [doc.issue(i) for i in exc.issues]
    if problems:
        raise InputError(problems)
    topologies = [t for _, t in located]
    found = facts(args, topologies)
    warn_unresolved(topologies, found)
    inv = inventory(args)
    subj = subject([d.data for d in docs], inv, found)
    _check_rendered_names(subj, docs)
    if inv is not None:
        for doc, topology in located:
            for finding in check_inventory(topology, inv):
                sys.stderr.write(f"warning: {doc.issue(finding.issue())}\n")
    return subj, docs


def _check_rendered_names(subj: Subject, docs: list[Document]) -> None:
    """A given NetworkPolicy named like one a topology of the input renders: the cluster keeps one."""
    given = [d for d in docs if isinstance(d.data, dict) and d.data.get("kind") == "NetworkPolicy"]
    rendered = [
        Document(f"AppTopology {t.metadata.namespace or 'default'}/{t.metadata.name} (rendered)", 0, p)
        for t in subj.topologies
        for p in subj.policies
        if (p.get("metadata") or {}).get("labels", {}).get("apptopology.io/topology") == t.metadata.name
        and (p.get("metadata") or {}).get("namespace") == (t.metadata.namespace or "default")
    ]
    if given and rendered:
        check_unique([*rendered, *given])


def _port(text: str) -> tuple[int, str]:
    number, _, protocol = text.partition("/")
    if not number.isdigit():
        raise CommandError(f"--port {text!r}: expected PORT or PORT/PROTOCOL, e.g. 8080/TCP")
    protocol = (protocol or "TCP").upper()
    if protocol not in PROTOCOLS:
        raise CommandError(f"--port {text!r}: protocol {protocol} is not one of {', '.join(PROTOCOLS)}")
    return int(number), protocol


def _side(name: str, subj: Subject) -> Side:
    try:
        return Side(name, resolve(name, subj))
    except NoPod as exc:
        return Side(name, None, exc.tier, str(exc))


def _direction(d: DirectionVerdict) -> dict[str, Any]:
    return {
        "allowed": d.allowed,
        "status": d.status,
        "allowedBy": [str(r) for r in d.allowing_rules],
        "isolatedBy": [str(p) for p in d.isolating_policies],
        "reason": str(d),
    }


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    return {
        "allowed": verdict.allowed,
        "from": verdict.source,
        "to": verdict.destination,
        "port": verdict.port,
        "protocol": verdict.protocol,
        "egress": _direction(verdict.egress),
        "ingress": _direction(verdict.ingress),
        "reasons": list(verdict.reasons),
    }


def _summary(allowed: bool, reasons: list[FlowReason], source: Side, destination: Side) -> list[str]:
    """The answer in the topology's terms: the flow that declares it, or why the near ones do not."""
    lines = [s.problem for s in (source, destination) if s.endpoint is None]
    applying = [r for r in reasons if r.applies]
    if applying:
        lines += [f"declared by {r.path} ({r.flow})" for r in applying]
        if not allowed and not lines[:-1]:
            lines.append("but the policies deny it (below)")
    elif reasons:
        lines.append(f"no declared flow covers {source.name} -> {destination.name}" + (":" if not allowed else ""))
        lines += [f"  {r}" for r in reasons] if not allowed else ["the policies allow it (below)"]
    elif allowed and any(s.endpoint is not None for s in (source, destination)):
        lines.append("no declared flow involves either side: the policies allow it (below)")
    return lines


def _one(args: argparse.Namespace, subj: Subject) -> int:
    if not (args.source and args.destination and args.port):
        raise CommandError("--from, --to and --port go together")
    port, protocol = _port(args.port)
    source, destination = _side(args.source, subj), _side(args.destination, subj)
    reasons = flow_reasons(subj, source, destination, port, protocol)
    verdict: Verdict | None = None
    if source.endpoint is not None and destination.endpoint is not None:
        verdict = explain_one(subj, args.source, args.destination, port, protocol)
    allowed = verdict is not None and verdict.allowed
    summary = _summary(allowed, reasons, source, destination)
    same = verdict is not None and verdict.source == verdict.destination
    note = "a pod can always reach itself; this answer is for traffic between different pods of it"
    if args.output in ("json", "yaml"):
        data: dict[str, Any] = (
            verdict_json(verdict)
            if verdict is not None
            else {
                "allowed": False,
                "from": args.source,
                "to": args.destination,
                "port": port,
                "protocol": protocol,
                "egress": None,
                "ingress": None,
                "reasons": [],
            }
        )
        data["summary"] = summary
        data["flows"] = [r.to_json() for r in reasons]
        if same:
            data["note"] = note
        dump_result(data, args.output, sys.stdout)
        return EXIT_OK if allowed else EXIT_FAIL
    head = "ALLOWED" if allowed else "DENIED"
    print(f"{head} {args.source} -> {args.destination} {protocol}/{port}" + _refs(verdict, args))
    for line in summary:
        print(f"  {line}")
    if verdict is not None:
        for line in verdict.reasons:
            print(f"  {line}")
    if same:
        print(f"  note: {note}")
    return EXIT_OK if allowed else EXIT_FAIL


def _refs(verdict: Verdict | None, args: argparse.Namespace) -> str:
    """The pods the names resolved to, when they are not the names themselves."""
    if verdict is None or (verdict.source, verdict.destination) == (args.source, args.destination):
        return ""
    return f" ({verdict.source} -> {verdict.destination})"


def cmd_explain(args: argparse.Namespace) -> int:
    checked(args)
    subj, _ = load_subject(args.filename, args)
    if args.source or args.destination or args.port:
        return _one(args, subj)
    view = matrix(subj, everything=args.all)
    home = subj.topologies[0].metadata.namespace if len(subj.topologies) == 1 else None
    names: dict[Any, str] = {}

    def name(endpoint: Any) -> str:
        if endpoint not in names:
            names[endpoint] = display_name(endpoint, home)
        return names[endpoint]

    out = sys.stdout
    if args.output == "csv":
        writer = csv.writer(out)
        writer.writerow(["from", "to", "ports"])
        for s, d, p in view.allowed():
            writer.writerow([name(s), name(d), str(p)])
        return EXIT_OK
    if args.output == "json":
        # Streamed: a cluster-sized matrix has millions of pairs. A pair not listed is denied or not governed.
        out.write("[")
        for n, (s, d, p) in enumerate(view.allowed()):
            out.write(("," if n else "") + "\n  " + json.dumps({"from": name(s), "to": name(d), "ports": str(p)}))
        out.write("\n]\n")
        return EXIT_OK
    if args.output == "yaml":
        pairs = [{"from": name(s), "to": name(d), "ports": str(p)} for s, d, p in view.allowed()]
        dump_result(pairs, "yaml", out)
        return EXIT_OK
    header = ["from \\ to", *[name(d) for d in view.destinations]]
    rows = [header]
    for s in view.sources:
        cells = [view.cell(s, d) for d in view.destinations]
        rows.append([name(s), *[("" if c is None else _cell(c)) for c in cells]])
    if args.output == "md":
        print("| " + " | ".join(c.replace("|", "\\|") for c in header) + " |")
        print("|" + "---|" * len(header))
        for row in rows[1:]:
            print("| " + " | ".join(c or " " for c in row) + " |")
        return EXIT_OK
    cols = width(out)
    lines = table_lines(rows)
    if max(len(line) for line in lines) <= cols:
        write_lines(lines, out)
    else:
        write_lines(_list_view(view, name, cols), out)
    _legend(subj, view, cols, out)
    return EXIT_OK


def _cell(ports: PortSet) -> str:
    return "-" if ports.is_empty else str(ports)


def _list_view(view: MatrixView, name: Any, cols: int) -> list[str]:
    """The matrix one source at a time (for a table wider than the terminal): what it may reach, then
    what it may not."""
    lines = []
    for s in view.sources:
        allowed: list[tuple[str, PortSet]] = []
        denied: list[tuple[str, PortSet]] = []
        for d in view.destinations:
            cell = view.cell(s, d)
            if cell is None:
                continue
            (denied if cell.is_empty else allowed).append((name(d), cell))
        if not allowed and not denied:
            continue
        lines.append(name(s))
        pad = min(40, max((len(n) for n, _ in allowed), default=0))
        for target, cell in allowed:
            lines += wrap(f"-> {target.ljust(pad)}  {cell}", cols, "  ", "  " + " " * (pad + 5))
        if denied:
            lines += wrap_items("denied: ", [n for n, _ in denied], cols, "  ")
    return lines


def _legend(subj: Subject, view: MatrixView, cols: int, out: TextIO) -> None:
    out.write("\n")
    write_lines(wrap(LEGEND, cols), out)
    if view.hidden:
        hidden = plural(view.hidden, "stand-in")
        text = f"{hidden} for the rest of the world hidden (unlabelled pods, other namespaces, the internet): --all"
        write_lines(wrap(text, cols), out)
    if subj.synthesized:
        text = (
            "inventory synthesized from the input: a pod per tier and declared peer; --inventory or --cluster "
            "for the real pods"
        )
        write_lines(wrap(text, cols), out)


def register(sub: Any, prog: str) -> None:
    p = sub.add_parser(
        "explain",
        help="who can talk to whom: the connectivity matrix, or why one connection is allowed or denied",
        description="The connectivity matrix of topologies (rendered first) or NetworkPolicies, or with "
        "--from/--to/--port one connection's verdict: the declared flow that covers it or why none does, "
        "then the policies that decide it.",
        epilog=examples(
            prog,
            ("explain -f shop.yaml", "the matrix (tiers and declared peers; --all adds the stand-ins)"),
            ("explain -f shop.yaml --from frontend --to database --port 5432", "DENIED, and why (exit 1)"),
            ("explain -f policies.yaml --inventory cluster.yaml -o csv", "hand-written policies on real pods"),
            ("explain -f shop.yaml --cluster --context prod --from api --to 10.0.0.7 --port 443", "on a cluster"),
        ),
    )
    add_file(p, "AppTopology documents (rendered first) or NetworkPolicy manifests")
    add_namespace(p, "namespace of documents that name none; others are an error")
    add_inventory(p)
    p.add_argument("--from", dest="source", metavar="SRC", help="NAMESPACE/POD, a tier name, or an IP address")
    p.add_argument("--to", dest="destination", metavar="DST", help="NAMESPACE/POD, a tier name, or an IP address")
    p.add_argument("--port", metavar="PORT[/PROTOCOL]", help="e.g. 8080 or 53/UDP")
    p.add_argument("--all", action="store_true", help="also the synthesized stand-ins for the rest of the world")
    add_output(p, ["table", "json", "yaml", "csv", "md"], "table", "; json, yaml and csv list the allowed pairs")
    p.set_defaults(func=cmd_explain, error_exit=EXIT_USAGE)
