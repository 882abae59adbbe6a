"""verify: the policies give exactly the declared connectivity, the topology fits the real pods, and the
topologies of a namespace together open nothing one of them denies."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..analysis.findings import check_inventory, foreign_policies
from ..analysis.namespace import namespace_interactions
from ..analysis.verify import Difference, Group, group, verify
from ..api.spec import AppTopology, plural
from ..api.validation import Issue
from ..evaluator import Inventory
from ..render.facts import ClusterFacts
from ..render.renderer import render, render_all
from .common import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    add_file,
    add_inventory,
    add_namespace,
    add_output,
    checked,
    facts,
    inventory,
    policies_of,
    topology_documents,
    warn_unresolved,
)
from .documents import Document, load_documents
from .help import examples
from .output import dump_result, result, write_lines


def _differences(groups: list[Group], pairs: bool) -> list[str]:
    lines = []
    for g in groups:
        lines.append(f"{g.kind} ({plural(len(g.differences), 'pair')}): {g.cause}")
        if pairs:
            for d in g.differences:
                lines += [f"  {line}" for line in d.lines() if line.split(": ", 2)[1].startswith(g.kind)]
    return lines


def _located(doc: Document | None, issue: Issue) -> str:
    return str(doc.issue(issue)) if doc is not None else str(issue)


def cmd_verify(args: argparse.Namespace) -> int:
    checked(args)
    located = topology_documents(args)
    topologies = [t for _, t in located]
    given_docs = policies_of(load_documents(args.policies)) if args.policies else None
    given = [d.data for d in given_docs] if given_docs is not None else None
    found_facts = facts(args, topologies)
    warn_unresolved(topologies, found_facts)
    inv = inventory(args)
    report: dict[str, Any] = result("VerifyResult", ok=True, topologies=[], namespaces=[], findings=[])
    lines: list[str] = []
    failures = 0
    if given_docs is not None and not args.namespace_mode:
        for problem in foreign_policies(topologies, [d.data for d in given_docs]):
            doc = given_docs[problem.index]
            issue = Issue(problem.path, problem.message)
            report["findings"].append({**doc.issue(issue).to_json(), "warning": False})
            lines.append(f"FAIL: {_located(doc, issue)}")
            failures += 1
    for doc, topology in located:
        entry, text, failed = _one(topology, doc, given, inv, found_facts, args)
        report["topologies"].append(entry)
        lines += text
        failures += failed
    namespaces: dict[str, list[AppTopology]] = {}
    for topology in topologies:
        namespaces.setdefault(topology.metadata.namespace or "default", []).append(topology)
    # Several topologies of one namespace are checked together anyway: their policies add up.
    shared = any(len(g) > 1 for g in namespaces.values()) and given is None
    if args.namespace_mode or shared:
        for ns, members in namespaces.items():
            entry, text = _namespace(ns, members, given or [], inv, found_facts)
            report["namespaces"].append(entry)
            lines += text
            failures += not entry["ok"]
    report["ok"] = not failures
    if args.output != "text":
        dump_result(report, args.output, sys.stdout)
    else:
        write_lines(lines, sys.stdout)
    return EXIT_FAIL if failures else EXIT_OK


def _one(
    topology: AppTopology,
    doc: Document,
    given: list[Any] | None,
    inv: Inventory | None,
    found_facts: ClusterFacts,
    args: argparse.Namespace,
) -> tuple[dict[str, Any], list[str], int]:
    """One topology: its findings on the inventory and its differences, as a result entry, report lines,
    and 1 if it fails."""
    ns = topology.metadata.namespace or "default"
    if given is None or args.namespace_mode:
        policies = render(topology, found_facts)
    else:
        policies = [
            p
            for p in given
            if isinstance(p, dict)
            and p.get("kind") == "NetworkPolicy"
            and (p.get("metadata") or {}).get("namespace", ns) == ns
        ]
    for p in policies:
        p.setdefault("metadata", {}).setdefault("namespace", ns)
    findings = check_inventory(topology, inv) if inv is not None else []
    differences: list[Difference] = verify(topology, policies, inv, found_facts)
    groups = group(topology, policies, differences, inv, found_facts) if differences else []
    failing = [f for f in findings if not f.warning]
    failed = bool(differences) or (bool(failing) and not args.warn_only)
    name = topology.metadata.name
    entry = {
        "name": name,
        "namespace": topology.metadata.namespace,
        "ok": not failed,
        "policies": len(policies),
        "differences": len(differences),
        "groups": [g.to_json() for g in groups],
        "findings": [{**doc.issue(f.issue()).to_json(), "warning": f.warning} for f in findings],
    }
    lines = []
    if differences:
        what = f"{plural(len(differences), 'pair')} differ from the declared connectivity"
        lines.append(f"FAIL: {name}: {what} ({plural(len(groups), 'cause')}):")
        lines += [f"  {line}" for line in _differences(groups, args.pairs)]
        if not args.pairs:
            lines.append("  (--pairs lists every pair)")
    else:
        lines.append(
            f"OK: {name}: the policies allow exactly the declared connectivity ({plural(len(policies), 'policy')})"
        )
    if findings:
        head = "FAIL" if failing and not args.warn_only else "WARN"
        lines.append(
            f"{head}: {name}: {plural(len(findings), 'finding')} on the {'cluster' if args.cluster else 'inventory'}:"
        )
        for f in findings:
            kind = "warning" if f.warning or args.warn_only else "error"
            lines.append(f"  {kind}: {doc.issue(f.issue())}")
    return entry, lines, int(failed)


def _namespace(
    ns: str, members: list[AppTopology], given: list[Any], inv: Inventory | None, found_facts: ClusterFacts
) -> tuple[dict[str, Any], list[str]]:
    """The namespace's topologies, rendered, together with the other policies given for it."""
    others = [
        p
        for p in given
        if isinstance(p, dict)
        and p.get("kind") == "NetworkPolicy"
        and (p.get("metadata") or {}).get("namespace", ns) == ns
    ]
    for p in others:
        p.setdefault("metadata", {}).setdefault("namespace", ns)
    union = render_all(members, found_facts) + others
    found = namespace_interactions(members, union, inv, found_facts)
    names = ", ".join(t.metadata.name for t in members)
    extra = f" and {plural(len(others), 'other policy', 'other policies')}" if others else ""
    entry = {
        "namespace": ns,
        "topologies": [t.metadata.name for t in members],
        "otherPolicies": len(others),
        "ok": not found,
        "opened": [
            {
                "topology": i.topology,
                "from": i.source,
                "to": i.destination,
                "ports": str(i.ports),
                "allowedBy": list(i.responsible),
            }
            for i in found
        ],
    }
    if not found:
        return entry, [f"OK: namespace {ns}: {names}{extra} together allow nothing a topology denies"]
    pairs = plural(len(found), "pair")
    lines = [f"FAIL: namespace {ns}: {pairs} that a topology denies are allowed by {names}{extra} together"]
    lines += [f"  {i.line()}" for i in found]
    return entry, lines


def register(sub: Any, prog: str) -> None:
    p = sub.add_parser(
        "verify",
        help="prove the policies give exactly the declared connectivity, and the topology fits the pods",
        description="Compare the policies (rendered, or given with --policies) with each topology's declared "
        "connectivity, pair by pair, and report the differences grouped by cause. With --inventory or "
        "--cluster, also the findings on the real pods: a tier or peer selecting nothing, a port no "
        "container declares.",
        epilog=examples(
            prog,
            ("verify -f shop.yaml", "the rendering against the topology"),
            ("verify -f shop.yaml --policies current.yaml --pairs", "hand-written policies, every differing pair"),
            ("verify -f shop.yaml --inventory workloads.yaml", "also the findings on the real pods"),
            ("verify -f topologies/ --namespace-mode --cluster -n production", "a namespace's topologies together"),
        ),
    )
    add_file(p)
    add_namespace(p, "namespace of documents that name none; others are an error")
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
    add_inventory(p)
    p.add_argument("--pairs", action="store_true", help="list every differing pair under its cause")
    p.add_argument("--warn-only", action="store_true", help="report findings on the inventory without failing (exit 0)")
    add_output(p, ["text", "json", "yaml"], "text")
    p.set_defaults(func=cmd_verify, error_exit=EXIT_USAGE)
