"""import and suggest: from existing NetworkPolicies, or from observed traffic, to an AppTopology."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from ..analysis.subject import AnalysisError
from . import documents
from .common import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_cluster,
    add_output,
    checked,
    cluster_call,
    connect,
    inventory,
    policies_of,
)
from .documents import load_documents, load_topologies
from .help import examples
from .output import dump_objects, dump_result, result

MAX_PAIRS_SHOWN = 200


def cmd_import(args: argparse.Namespace) -> int:
    """NetworkPolicies -> one AppTopology per namespace on stdout, proved by verify; the report on stderr."""
    from ..adoption.importer import by_namespace, import_namespace, report_lines

    if args.cluster and args.filename:
        raise CommandError("the policies come from -f or from --cluster: give one")
    if args.cluster:
        from ..controller.kube import cluster_network_policies

        connect(args)
        policies: list[Any] = cluster_call("reading the cluster", cluster_network_policies, args.namespace)
    elif args.filename:
        policies = [d.data for d in policies_of(load_documents(args.filename))]
    else:
        raise CommandError("give the policies: -f FILE (repeatable) or --cluster")
    groups = by_namespace(policies)
    if args.namespace:
        groups = {ns: group for ns, group in groups.items() if ns in args.namespace}
    if not groups:
        where = f" in namespaces {', '.join(args.namespace)}" if args.namespace else ""
        raise CommandError(f"no NetworkPolicies found{where}")
    if args.name and len(groups) > 1:
        raise CommandError(f"--name names one topology; the policies are in {len(groups)} namespaces (use -n NS)")
    inv = inventory(args) if args.inventory or args.cluster else None
    code = EXIT_OK
    limit = None if args.all_pairs else MAX_PAIRS_SHOWN
    imported = []
    for namespace, group in groups.items():
        outcome = import_namespace(namespace, group, inv, args.name)
        for line in report_lines(outcome, limit):
            sys.stderr.write(line + "\n")
        if not outcome.equivalent:
            code = EXIT_FAIL
        if outcome.document is None or outcome.wider:
            continue
        imported.append(outcome.document)
        if args.output == "yaml":
            for line in header_lines(outcome):
                sys.stdout.write(f"# {line}\n")
            documents.dump_yaml([outcome.document], sys.stdout)
    if args.output == "json":
        dump_objects(imported, "json", sys.stdout)
    return code


def header_lines(outcome: Any) -> list[str]:
    """What a reviewer of the imported file should know first: where it came from and what verify found."""
    names = sorted(str((p.get("metadata") or {}).get("name")) for p in outcome.source_policies)
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    verdict = "equivalent" if outcome.equivalent else "NARROWER than the policies (see the import report)"
    checks = ", ".join(f"{c.inventory} inventory of {c.endpoints} endpoints" for c in outcome.checks)
    count = outcome.policies
    return [
        f"Imported by apptopology import from {count} NetworkPolic{'y' if count == 1 else 'ies'} of namespace "
        f"{outcome.namespace}",
        f"({shown}). verify: {verdict} on the {checks}.",
        "Review it, apply it as it is (enforcement: DryRun), and set Enforce once its status shows what you expect.",
    ]


def _observations(path: str) -> list[Any]:
    from ..adoption.flows import FlowError, read_flows

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


def _audit(args: argparse.Namespace, observations: list[Any]) -> int:
    from ..adoption.suggest import audit

    inv = inventory(args)
    denied = 0
    entries = []
    for topology in load_topologies(args.against):
        results = audit(topology, observations, inv)
        no = [r for r in results if r.allowed is False]
        unknown = [r for r in results if r.allowed is None]
        denied += len(no)
        name = f"{topology.metadata.namespace}/{topology.metadata.name}"
        entries.append(
            {
                "name": topology.metadata.name,
                "namespace": topology.metadata.namespace,
                "observed": len(results),
                "denied": [{"flow": str(r.flow), "evidence": r.evidence.text()} for r in no],
                "notJudged": [
                    {"flow": str(r.flow), "reason": r.reason, "evidence": r.evidence.text()} for r in unknown
                ],
            }
        )
        if args.output_given:
            continue
        verdict = f"would deny {len(no)} of {len(results)} observed flows" if no else "allows every observed flow"
        if not results:
            verdict = f"has no observed flow of namespace {topology.metadata.namespace or 'default'} to judge"
        print(f"{'FAIL' if no else 'OK'}: AppTopology {name} {verdict}")
        _listed("denied", [f"{r.flow}: {r.evidence.text()}" for r in no], sys.stdout)
        _listed("not judged", [f"{r.flow}: {r.reason}; {r.evidence.text()}" for r in unknown], sys.stdout)
    if args.output_given:
        dump_result(result("AuditResult", ok=not denied, topologies=entries), args.output, sys.stdout)
    return EXIT_FAIL if denied else EXIT_OK


def cmd_suggest(args: argparse.Namespace) -> int:
    """Observed flows -> a suggested AppTopology per namespace (stdout), or with --against, the audit."""
    from ..adoption.suggest import suggest

    checked(args)
    if args.flows is None:
        raise CommandError("give the observed flows: -f FILE (hubble observe -o jsonpb lines, or JSON lines)")
    args.output_given = args.output is not None
    args.output = args.output or "yaml"
    observations = _observations(args.flows)
    if args.against:
        return _audit(args, observations)
    v4, v6 = (args.aggregate, args.aggregate_v6) if args.aggregate else (None, None)
    outcome = suggest(observations, args.namespace, (v4, v6))
    err = sys.stderr
    err.write(f"suggest: {outcome.records} flow records, {outcome.replies} replies (not flows)\n")
    for namespace, why in outcome.skipped:
        err.write(f"  namespace {namespace}: not suggested: {why} (name it with -n {namespace} to suggest one)\n")
    code = EXIT_OK
    suggested = []
    for one in outcome.topologies:
        if one.document is None:
            err.write(f"  namespace {one.namespace}: {one.error}\n")
            code = EXIT_FAIL
            continue
        for note in one.notes:
            err.write(f"  namespace {one.namespace}: {note}\n")
        suggested.append(one.document)
        if args.output == "yaml":
            sys.stdout.write(
                f"# Suggested by apptopology suggest from observed flows of namespace {one.namespace}: every flow\n"
                "# says its evidence. Review it: only what was observed is allowed, and all else is denied.\n"
            )
            documents.dump_yaml([one.document], sys.stdout)
    if args.output == "json":
        dump_objects(suggested, "json", sys.stdout)
    _listed("not placed (listed, not suggested)", [str(u) for u in outcome.unplaced], err)
    _listed("denied when observed (not suggested)", [str(d) for d in outcome.denied], err)
    return code


def register(sub: Any, prog: str) -> None:
    p = sub.add_parser(
        "import",
        help="turn existing NetworkPolicies into an AppTopology per namespace, proved equivalent by verify",
        description="Translate NetworkPolicies into one AppTopology per namespace (stdout, enforcement: DryRun) "
        "and prove it with verify; the report goes to stderr.",
        epilog=examples(
            prog,
            ("import -f policies.yaml > shop.yaml", "one topology per namespace of the policies"),
            ("import --cluster -n shop --context prod > shop.yaml", "the policies of a namespace of a cluster"),
            ("import -f policies.yaml -o json", "the topologies as a JSON List"),
        ),
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
    add_cluster(
        p, "read the NetworkPolicies from the kubeconfig's cluster, and verify on its namespaces and pods as well"
    )
    add_output(p, ["yaml", "json"], "yaml", "; json is a List without the header comments")
    p.set_defaults(func=cmd_import, error_exit=EXIT_USAGE)

    p = sub.add_parser(
        "suggest",
        help="propose an AppTopology from observed flows, or audit one against them",
        description="Propose one AppTopology per namespace from observed flows (Hubble, or JSON lines), each "
        "flow with its evidence; or with --against, which observed flows a topology would deny. The cluster's "
        "own namespaces (kube-system, kube-public, kube-node-lease) and namespaces serving DNS without "
        "observed upstream traffic are left out unless -n names them.",
        epilog=examples(
            prog,
            ("suggest -f flows.jsonl -n shop > shop.yaml", "from hubble observe -o jsonpb lines"),
            ("suggest -f flows.jsonl --against shop.yaml", "which observed flows the topology would deny (exit 1)"),
        ),
    )
    p.add_argument(
        "-f",
        "--flows",
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
    p.add_argument(
        "-o",
        "--output",
        choices=["yaml", "json"],
        help="output format (default yaml; with --against a report, or an AuditResult in json or yaml)",
    )
    p.set_defaults(func=cmd_suggest, error_exit=EXIT_USAGE)
