"""The ``apptopology`` command line (also installed as ``kubectl-apptopology``).

Every command turns bad input into located messages on stderr and a non-zero exit, never a traceback:
CI logs and pull-request reviews are read by people, not debuggers.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from . import __version__, documents
from .analysis import (
    AnalysisError,
    Subject,
    diff,
    display_name,
    explain_one,
    matrix,
    namespace_interactions,
    subject,
    verify,
)
from .api.spec import AppTopology
from .api.validation import InvalidTopology, Issue, parse_topology
from .documents import (
    InputError,
    LocatedIssue,
    load_documents,
    load_guardrails,
    load_topologies,
    load_topology_documents,
)
from .evaluator import DirectionVerdict, Inventory, PortSet, Verdict, inventory_from_manifests
from .render.facts import OFFLINE, ClusterFacts, cluster_facts, wanted_objects
from .render.renderer import render, render_all, render_notes

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def dump_yaml(objects: Sequence[Any], out: TextIO) -> None:
    """Multi-document YAML, keys in rendering order, that kubectl reads back as the same data."""
    documents.dump_yaml(objects, out)


def dump(objects: Sequence[Any], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        doc: Any = objects[0] if len(objects) == 1 else {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        dump_yaml(objects, out)


def report(exc: InputError, err: TextIO) -> None:
    for issue in exc.issues:
        err.write(f"error: {issue}\n")


def _facts(args: argparse.Namespace, topologies: Sequence[AppTopology]) -> ClusterFacts:
    """--cluster: what the kubeconfig's cluster says about DNS and the API server; OFFLINE otherwise."""
    if not getattr(args, "cluster", False):
        return OFFLINE
    from kubernetes.config import ConfigException  # kubernetes loads only when asked for a live cluster

    from .controller.kube import cluster_facts_manifests
    from .controller.reconciler import ApiError

    wanted = wanted_objects(topologies)
    try:
        manifests, problems = cluster_facts_manifests(wanted)
    except (ApiError, ConfigException) as exc:
        raise AnalysisError(f"reading the cluster: {exc}") from None
    facts = cluster_facts(manifests, wanted)
    for problem in [*problems, *facts.problems]:
        sys.stderr.write(f"warning: {problem}\n")
    return facts


def warn_unresolved(topologies: Sequence[AppTopology], facts: ClusterFacts, err: TextIO) -> None:
    """What rendering could not resolve (it failed closed), per topology and field."""
    for t in topologies:
        ns = f"{t.metadata.namespace}/" if t.metadata.namespace else ""
        for note in render_notes(t, facts):
            err.write(f"warning: AppTopology {ns}{t.metadata.name}: {note}\n")


def cmd_render(args: argparse.Namespace) -> int:
    topologies = load_topologies(args.filename)
    facts = _facts(args, topologies)
    warn_unresolved(topologies, facts, sys.stderr)
    dump(render_all(topologies, facts), args.output, sys.stdout)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    located = load_topology_documents(args.filename)
    if args.namespace_labels is not None and not args.guardrail:
        raise AnalysisError("--namespace-labels goes with --guardrail")
    notes = {}
    if args.guardrail:
        from .api.guardrail import parse_labels
        from .render import guardrails as gr

        rails = load_guardrails(args.guardrail)
        try:
            labels = parse_labels(args.namespace_labels or "")
            problems = []
            for doc, t in located:
                applied = [g.metadata.name for g in gr.applicable(rails, gr.labels_of_namespace(t, labels))]
                notes[id(t)] = f"; guardrails: {', '.join(applied)}" if applied else "; no guardrail applies"
                found = gr.check(t, rails, labels)
                problems += [LocatedIssue(doc.source, doc.index, Issue(v.path, v.message)) for v in found]
        except ValueError as exc:
            raise AnalysisError(f"--namespace-labels: {exc}") from None
        if problems:
            raise InputError(problems)
    for _, t in located:
        ns = f"{t.metadata.namespace}/" if t.metadata.namespace else ""
        counts = f"{len(t.spec.tiers)} tiers, {len(t.spec.flows)} flows{notes.get(id(t), '')}"
        print(f"OK: AppTopology {ns}{t.metadata.name} ({counts})")
    return EXIT_OK


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def cmd_run(args: argparse.Namespace) -> int:
    from .controller.main import Options, run_operator  # kopf and kubernetes load only for this command

    return run_operator(
        Options(
            namespaces=args.namespace,
            liveness=args.liveness,
            verbose=args.verbose,
            workers=args.workers,
            resync=args.resync,
            metrics_port=args.metrics_port or None,
            leader_elect=args.leader_elect,
            lease_namespace=args.lease_namespace,
            facts_interval=args.facts_interval,
            access_interval=args.access_interval,
        )
    )


def _inventory(args: argparse.Namespace) -> Inventory | None:
    """--inventory files/directories, or --cluster (the kubeconfig's cluster), or None (synthesized)."""
    if getattr(args, "cluster", False):
        from .controller.kube import cluster_manifests  # kubernetes loads only when asked for a live cluster

        manifests = cluster_manifests()
    elif getattr(args, "inventory", None):
        manifests = [d.data for d in load_documents(args.inventory)]
    else:
        return None
    try:
        return inventory_from_manifests(manifests)
    except ValueError as exc:
        raise AnalysisError(f"inventory: {exc}") from None


def _subject(sources: list[str], args: argparse.Namespace) -> Subject:
    docs = [d.data for d in load_documents(sources)]
    try:
        topologies = [parse_topology(d) for d in docs if isinstance(d, dict) and d.get("kind") == "AppTopology"]
        facts = _facts(args, topologies)
        warn_unresolved(topologies, facts, sys.stderr)
        return subject(docs, _inventory(args), facts)
    except InvalidTopology as exc:
        raise AnalysisError("; ".join(str(i) for i in exc.issues)) from None


def _ports_cell(ports: PortSet) -> str:
    return "-" if ports.is_empty else str(ports)


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def cmd_explain(args: argparse.Namespace) -> int:
    subj = _subject(args.filename, args)
    if args.source or args.destination or args.port:
        if not (args.source and args.destination and args.port):
            raise AnalysisError("--from, --to and --port go together")
        number, _, protocol = args.port.partition("/")
        if not number.isdigit():
            raise AnalysisError(f"--port {args.port!r}: expected PORT or PORT/PROTOCOL, e.g. 8080/TCP")
        verdict = explain_one(subj, args.source, args.destination, int(number), (protocol or "TCP").upper())
        # A pod can never block traffic to itself; for one pod standing for its replicas the verdict is
        # about replica-to-replica traffic, so say so rather than let DENIED read as "cannot reach itself".
        same = verdict.source == verdict.destination
        note = "a pod can always reach itself; this answer is for traffic between different pods of it"
        if args.output == "json":
            print(json.dumps({**verdict_json(verdict), **({"note": note} if same else {})}, indent=2))
        else:
            print(verdict)
            if same:
                print(f"  note: {note}")
        return EXIT_OK
    view = matrix(subj)
    home = subj.topologies[0].metadata.namespace if len(subj.topologies) == 1 else None
    names: dict[Any, str] = {}

    def name(endpoint: Any) -> str:
        if endpoint not in names:
            names[endpoint] = display_name(endpoint, home)
        return names[endpoint]

    out = sys.stdout
    if args.output in ("json", "csv"):
        # Machine formats list the allowed pairs only (any pair not listed is denied or not governed),
        # streamed: a cluster-sized matrix has millions of pairs.
        if args.output == "csv":
            writer = csv.writer(out)
            writer.writerow(["from", "to", "ports"])
            for s, d, p in view.allowed():
                writer.writerow([name(s), name(d), str(p)])
            return EXIT_OK
        out.write("[")
        for n, (s, d, p) in enumerate(view.allowed()):
            out.write(("," if n else "") + "\n  " + json.dumps({"from": name(s), "to": name(d), "ports": str(p)}))
        out.write("\n]\n")
        return EXIT_OK
    header = ["from \\ to", *[name(d) for d in view.destinations]]
    rows = [header]
    for s in view.sources:
        cells = [view.cell(s, d) for d in view.destinations]
        rows.append([name(s), *[("" if c is None else _ports_cell(c)) for c in cells]])
    if args.output == "md":
        print("| " + " | ".join(c.replace("|", "\\|") for c in header) + " |")
        print("|" + "---|" * len(header))
        for row in rows[1:]:
            print("| " + " | ".join(c or " " for c in row) + " |")
        return EXIT_OK
    _table(rows, out)
    if subj.synthesized:
        print("\n(inventory synthesized from the input: one pod per tier and peer, plus stand-ins for the rest)")
    return EXIT_OK


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    def direction(d: DirectionVerdict) -> dict[str, Any]:
        return {
            "allowed": d.allowed,
            "status": d.status,
            "allowedBy": [str(r) for r in d.allowing_rules],
            "isolatedBy": [str(p) for p in d.isolating_policies],
            "reason": str(d),
        }

    return {
        "allowed": verdict.allowed,
        "from": verdict.source,
        "to": verdict.destination,
        "port": verdict.port,
        "protocol": verdict.protocol,
        "egress": direction(verdict.egress),
        "ingress": direction(verdict.ingress),
        "reasons": list(verdict.reasons),
    }


def cmd_verify(args: argparse.Namespace) -> int:
    topologies = load_topologies(args.filename)
    given = [d.data for d in load_documents(args.policies)] if args.policies else None
    facts = _facts(args, topologies)
    warn_unresolved(topologies, facts, sys.stderr)
    inventory = _inventory(args)
    failures = 0
    for topology in topologies:
        if given is None or args.namespace_mode:
            policies = render(topology, facts)
        else:
            ns = topology.metadata.namespace
            policies = [
                p
                for p in given
                if isinstance(p, dict)
                and p.get("kind") == "NetworkPolicy"
                and (p.get("metadata") or {}).get("namespace", ns) == ns
            ]
        for p in policies:
            p.setdefault("metadata", {}).setdefault("namespace", topology.metadata.namespace or "default")
        differences = verify(topology, policies, inventory, facts)
        name = topology.metadata.name
        if differences:
            failures += 1
            print(f"FAIL: {name}: {len(differences)} differences between the policies and the topology")
            for d in differences:
                for line in d.lines():
                    print(f"  {line}")
        else:
            print(f"OK: {name}: the policies allow exactly the declared connectivity ({len(policies)} policies)")
    namespaces: dict[str, list[AppTopology]] = {}
    for topology in topologies:
        namespaces.setdefault(topology.metadata.namespace or "default", []).append(topology)
    # Several topologies of one namespace are checked together anyway: their policies add up.
    shared = any(len(group) > 1 for group in namespaces.values()) and given is None
    if args.namespace_mode or shared:
        for ns, group in namespaces.items():
            failures += _verify_namespace(ns, group, given or [], inventory, facts)
    return EXIT_INVALID if failures else EXIT_OK


def _verify_namespace(
    ns: str,
    group: list[AppTopology],
    given: list[Any],
    inventory: Inventory | None,
    facts: ClusterFacts,
) -> int:
    """The namespace's topologies, rendered, together with the other policies given for it: 1 if any
    topology's intent is widened by the others."""
    others = [
        p
        for p in given
        if isinstance(p, dict)
        and p.get("kind") == "NetworkPolicy"
        and (p.get("metadata") or {}).get("namespace", ns) == ns
    ]
    for p in others:
        p.setdefault("metadata", {}).setdefault("namespace", ns)
    union = render_all(group, facts) + others
    found = namespace_interactions(group, union, inventory, facts)
    names = ", ".join(t.metadata.name for t in group)
    extra = f" and {len(others)} other policies" if others else ""
    if not found:
        print(f"OK: namespace {ns}: {names}{extra} together allow nothing a topology denies")
        return 0
    print(f"FAIL: namespace {ns}: {len(found)} pairs that a topology denies are allowed by {names}{extra} together")
    for interaction in found:
        print(f"  {interaction.line()}")
    return 1


def cmd_diff(args: argparse.Namespace) -> int:
    old = _subject([args.old], args)
    new = _subject([args.new], args)
    changes = diff(old, new)
    if args.output == "json":
        print(
            json.dumps(
                [
                    {
                        "from": c.source,
                        "to": c.destination,
                        "added": str(c.added) if not c.added.is_empty else None,
                        "removed": str(c.removed) if not c.removed.is_empty else None,
                    }
                    for c in changes
                ],
                indent=2,
            )
        )
    else:
        for c in changes:
            if not c.added.is_empty:
                print(f"+ {c.source} -> {c.destination}: {c.added}")
            if not c.removed.is_empty:
                print(f"- {c.source} -> {c.destination}: {c.removed}")
        if not changes:
            print("no change in connectivity")
    return 1 if changes else EXIT_OK


MAX_PAIRS_SHOWN = 200


def cmd_import(args: argparse.Namespace) -> int:
    """NetworkPolicies -> one AppTopology per namespace on stdout, proved by verify; the report on stderr."""
    from .adoption.importer import by_namespace, import_namespace, report_lines

    if args.cluster:
        from .controller.kube import cluster_network_policies
        from .controller.reconciler import ApiError

        try:
            policies: list[Any] = cluster_network_policies(args.namespace)
        except ApiError as exc:
            raise AnalysisError(f"reading the cluster: {exc}") from None
    elif args.filename:
        policies = [d.data for d in load_documents(args.filename)]
    else:
        raise AnalysisError("give the policies: -f FILE (repeatable) or --cluster")
    groups = by_namespace(policies)
    if args.namespace:
        groups = {ns: group for ns, group in groups.items() if ns in args.namespace}
    if not groups:
        where = f" in namespaces {', '.join(args.namespace)}" if args.namespace else ""
        raise AnalysisError(f"no NetworkPolicies found{where}")
    if args.name and len(groups) > 1:
        raise AnalysisError(f"--name names one topology; the policies are in {len(groups)} namespaces (use -n NS)")
    inventory = _inventory(args)
    code = EXIT_OK
    limit = None if args.all_pairs else MAX_PAIRS_SHOWN
    for namespace, group in groups.items():
        result = import_namespace(namespace, group, inventory, args.name)
        for line in report_lines(result, limit):
            sys.stderr.write(line + "\n")
        if not result.equivalent:
            code = EXIT_INVALID
        if result.document is None or result.wider:
            continue
        for line in header_lines(result):
            sys.stdout.write(f"# {line}\n")
        dump_yaml([result.document], sys.stdout)
    return code


def header_lines(result: Any) -> list[str]:
    """What a reviewer of the imported file should know first: where it came from and what verify found."""
    names = sorted(str((p.get("metadata") or {}).get("name")) for p in result.source_policies)
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    verdict = "equivalent" if result.equivalent else "NARROWER than the policies (see the import report)"
    checks = ", ".join(f"{c.inventory} inventory of {c.endpoints} endpoints" for c in result.checks)
    return [
        f"Imported by apptopology import from {result.policies} NetworkPolicies of namespace {result.namespace}",
        f"({shown}). verify: {verdict} on the {checks}.",
        "Review it, apply it as it is (enforcement: DryRun), and set Enforce once its status shows what you expect.",
    ]


def _observations(path: str) -> list[Any]:
    from .adoption.flows import FlowError, read_flows

    text = documents.read_text(path)
    try:
        return list(read_flows(text.splitlines()))
    except FlowError as exc:
        raise AnalysisError(f"{'<stdin>' if path == '-' else path}: {exc}") from None


def _listed(title: str, items: Sequence[Any], out: TextIO) -> None:
    if items:
        out.write(f"{title} ({len(items)}):\n")
        for item in items[:MAX_PAIRS_SHOWN]:
            out.write(f"  {item}\n")
        if len(items) > MAX_PAIRS_SHOWN:
            out.write(f"  ... and {len(items) - MAX_PAIRS_SHOWN} more\n")


def cmd_suggest(args: argparse.Namespace) -> int:
    """Observed flows -> a suggested AppTopology per namespace (stdout), or with --against, the audit."""
    from .adoption.suggest import audit, suggest

    observations = _observations(args.flows)
    if args.against:
        inventory = _inventory(args)
        denied = 0
        for topology in load_topologies(args.against):
            results = audit(topology, observations, inventory)
            no = [r for r in results if r.allowed is False]
            unknown = [r for r in results if r.allowed is None]
            denied += len(no)
            name = f"{topology.metadata.namespace}/{topology.metadata.name}"
            verdict = f"would deny {len(no)} of {len(results)} observed flows" if no else "allows every observed flow"
            if not results:
                verdict = f"has no observed flow of namespace {topology.metadata.namespace or 'default'} to judge"
            print(f"{'FAIL' if no else 'OK'}: AppTopology {name} {verdict}")
            _listed("denied", [f"{r.flow}: {r.evidence.text()}" for r in no], sys.stdout)
            _listed("not judged", [f"{r.flow}: {r.reason}; {r.evidence.text()}" for r in unknown], sys.stdout)
        return EXIT_INVALID if denied else EXIT_OK
    v4, v6 = (args.aggregate, args.aggregate_v6) if args.aggregate else (None, None)
    result = suggest(observations, args.namespace, (v4, v6))
    err = sys.stderr
    err.write(f"suggest: {result.records} flow records, {result.replies} replies (not flows)\n")
    code = EXIT_OK
    for suggested in result.topologies:
        if suggested.document is None:
            err.write(f"  namespace {suggested.namespace}: {suggested.error}\n")
            code = EXIT_INVALID
            continue
        for note in suggested.notes:
            err.write(f"  namespace {suggested.namespace}: {note}\n")
        sys.stdout.write(
            f"# Suggested by apptopology suggest from observed flows of namespace {suggested.namespace}: every flow\n"
            "# says its evidence. Review it: only what was observed is allowed, and all else is denied.\n"
        )
        dump_yaml([suggested.document], sys.stdout)
    _listed("not placed (listed, not suggested)", [str(u) for u in result.unplaced], err)
    _listed("denied when observed (not suggested)", [str(d) for d in result.denied], err)
    return code


def cmd_graph(args: argparse.Namespace) -> int:
    from .graph import dot, mermaid

    topologies = load_topologies(args.filename)
    if args.output == "mermaid":
        sys.stdout.write("\n".join(mermaid(t) for t in topologies))
        return EXIT_OK
    text = "".join(dot(t) for t in topologies)
    if args.output == "dot":
        sys.stdout.write(text)
        return EXIT_OK
    graphviz = shutil.which("dot")
    if graphviz is None:
        raise AnalysisError("-o svg needs Graphviz's `dot` on PATH (e.g. apt-get install graphviz); use -o dot")
    svg = subprocess.run([graphviz, "-Tsvg"], input=text, capture_output=True, text=True, check=False)
    if svg.returncode != 0:
        raise AnalysisError(f"dot failed: {svg.stderr.strip()}")
    sys.stdout.write(svg.stdout)
    return EXIT_OK


def _add_inventory(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--inventory",
        action="append",
        metavar="PATH",
        help="Namespace, Pod and workload manifests (files or directories; repeatable). "
        "Default: an inventory synthesized from the input",
    )
    p.add_argument(
        "--cluster",
        action="store_true",
        help="read namespaces and pods from the kubeconfig's cluster, and resolve dns.discover and kubeAPI there",
    )


def _add_file(p: argparse.ArgumentParser, what: str = "AppTopology documents") -> None:
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE",
        help=f"file or directory with {what} ('-' for stdin); repeatable",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apptopology",
        description="Declare an application's tiers and flows once; get least-privilege NetworkPolicies.",
    )
    parser.add_argument("--version", action="version", version=f"apptopology {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("render", help="print the NetworkPolicies for AppTopology documents")
    _add_file(p)
    p.add_argument(
        "--cluster",
        action="store_true",
        help="resolve what only the cluster knows (dns.discover, kubeAPI) from the kubeconfig's cluster, "
        "as the operator does; without it DNS follows spec.dns and kubeAPI gets no peer",
    )
    p.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml", help="output format (default yaml)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("validate", help="check AppTopology documents without rendering")
    _add_file(p)
    p.add_argument(
        "--guardrail",
        action="append",
        metavar="FILE",
        help="also check against the TopologyGuardrails in FILE (file or directory; repeatable), as admission does",
    )
    p.add_argument(
        "--namespace-labels",
        metavar="K=V,...",
        help="labels of the topologies' namespace, which decide the guardrails that apply "
        "(kubernetes.io/metadata.name is the topology's namespace)",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run the operator against the current kubeconfig or in-cluster config")
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch only this namespace (repeatable; default: all namespaces)",
    )
    p.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        metavar="URL",
        help="liveness endpoint (default http://0.0.0.0:8080/healthz; '' to disable)",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=16,
        help="reconciles in parallel (default 16: a reconcile mostly waits for the API server)",
    )
    p.add_argument(
        "--resync",
        type=_positive_float,
        default=600.0,
        metavar="SECONDS",
        help="look at every topology again this often, from the cache (default 600)",
    )
    p.add_argument(
        "--facts-interval",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="re-read the DNS Services and the API server's endpoints this often, when a topology uses them "
        "(dns.discover, kubeAPI; default 30)",
    )
    p.add_argument(
        "--access-interval",
        type=_positive_float,
        default=5.0,
        metavar="SECONDS",
        help="check this often that the operator may still read what it watches (a refused kind fails closed "
        "and is reported; default 5)",
    )
    p.add_argument(
        "--metrics-port", type=int, default=0, metavar="PORT", help="serve Prometheus metrics on this port (0: off)"
    )
    p.add_argument(
        "--leader-elect",
        action="store_true",
        help="compete for a Lease so that only one replica reconciles (for more than one replica)",
    )
    p.add_argument("--lease-namespace", metavar="NS", help="namespace of the Lease (default: $POD_NAMESPACE)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "explain", help="who can talk to whom: the connectivity matrix, or why one connection is allowed"
    )
    _add_file(p, "AppTopology documents (rendered first) or NetworkPolicy manifests")
    _add_inventory(p)
    p.add_argument("--from", dest="source", metavar="SRC", help="NAMESPACE/POD, a tier name, or an IP address")
    p.add_argument("--to", dest="destination", metavar="DST", help="NAMESPACE/POD, a tier name, or an IP address")
    p.add_argument("--port", metavar="PORT[/PROTOCOL]", help="e.g. 8080 or 53/UDP")
    p.add_argument("-o", "--output", choices=["table", "json", "csv", "md"], default="table")
    p.set_defaults(func=cmd_explain, error_exit=EXIT_USAGE)

    p = sub.add_parser("verify", help="prove the policies give exactly the declared connectivity")
    _add_file(p)
    p.add_argument(
        "--policies",
        action="append",
        metavar="PATH",
        help="NetworkPolicy manifests to check instead of the rendered ones (e.g. hand-written policies); "
        "with --namespace-mode, the other policies of the namespaces, checked together with the rendered ones",
    )
    p.add_argument(
        "--namespace-mode",
        action="store_true",
        help="also check each namespace's topologies together (NetworkPolicies add up: one topology's flows or "
        "DNS can open another's pods); automatic when several topologies share a namespace",
    )
    _add_inventory(p)
    p.set_defaults(func=cmd_verify, error_exit=EXIT_USAGE)

    p = sub.add_parser("diff", help="connectivity added and removed between two revisions")
    p.add_argument("old", metavar="OLD", help="topologies or policies before")
    p.add_argument("new", metavar="NEW", help="topologies or policies after")
    _add_inventory(p)
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_diff, error_exit=EXIT_USAGE)

    p = sub.add_parser(
        "import", help="turn existing NetworkPolicies into an AppTopology per namespace, proved equivalent by verify"
    )
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        metavar="FILE",
        help="file or directory with NetworkPolicy manifests ('-' for stdin); repeatable",
    )
    p.add_argument(
        "-n", "--namespace", action="append", default=[], metavar="NS", help="only this namespace (repeatable)"
    )
    p.add_argument("--name", help="the topology's name (one namespace only; default: the namespace's name)")
    p.add_argument("--all-pairs", action="store_true", help=f"list every differing pair (default: {MAX_PAIRS_SHOWN})")
    p.add_argument(
        "--inventory",
        action="append",
        metavar="PATH",
        help="Namespace, Pod and workload manifests to verify on as well (files or directories; repeatable)",
    )
    p.add_argument(
        "--cluster",
        action="store_true",
        help="read the NetworkPolicies from the kubeconfig's cluster, and verify on its namespaces and pods as well",
    )
    p.set_defaults(func=cmd_import, error_exit=EXIT_USAGE)

    p = sub.add_parser("suggest", help="propose an AppTopology from observed flows, or audit one against them")
    p.add_argument(
        "--flows",
        required=True,
        metavar="FILE",
        help="observed flows: `hubble observe -o jsonpb` lines, or apptopology's JSON lines ('-' for stdin)",
    )
    p.add_argument(
        "-n", "--namespace", action="append", default=[], metavar="NS", help="only this namespace (repeatable)"
    )
    p.add_argument(
        "--aggregate",
        type=int,
        metavar="LEN",
        help="external IPv4 addresses as /LEN ipBlocks (default: exact /32 and /128)",
    )
    p.add_argument("--aggregate-v6", type=int, default=64, metavar="LEN", help="with --aggregate: IPv6 /LEN (64)")
    p.add_argument(
        "--against",
        action="append",
        metavar="TOPOLOGY",
        help="audit: which observed flows this topology would deny (exit 1 if any)",
    )
    p.add_argument(
        "--inventory",
        action="append",
        metavar="PATH",
        help="with --against: Namespace manifests, for the namespace labels that flows do not carry",
    )
    p.set_defaults(func=cmd_suggest, error_exit=EXIT_USAGE)

    p = sub.add_parser("graph", help="draw the topology (Mermaid, Graphviz DOT, or SVG through Graphviz)")
    _add_file(p)
    p.add_argument("-o", "--output", choices=["mermaid", "dot", "svg"], default="mermaid")
    p.set_defaults(func=cmd_graph, error_exit=EXIT_USAGE)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except InputError as exc:
        report(exc, sys.stderr)
        return int(getattr(args, "error_exit", EXIT_INVALID))
    except AnalysisError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
