"""render and validate: a topology's NetworkPolicies, and the checks without them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..api.spec import plural
from ..api.validation import Issue
from ..render.renderer import render_all
from .common import (
    EXIT_FAIL,
    EXIT_OK,
    CommandError,
    add_cluster,
    add_file,
    add_namespace,
    add_output,
    checked,
    topology_documents,
    warn_unresolved,
)
from .common import facts as cluster_facts
from .documents import InputError, LocatedIssue, load_guardrails
from .help import examples
from .output import dump_objects, dump_result, result


def cmd_render(args: argparse.Namespace) -> int:
    checked(args)
    topologies = [t for _, t in topology_documents(args)]
    found = cluster_facts(args, topologies)
    warn_unresolved(topologies, found)
    dump_objects(render_all(topologies, found), args.output, sys.stdout)
    return EXIT_OK


def _validated(args: argparse.Namespace) -> list[dict[str, Any]]:
    located = topology_documents(args)
    if args.namespace_labels is not None and not args.guardrail:
        raise CommandError("--namespace-labels goes with --guardrail")
    applied: dict[int, list[str]] = {}
    if args.guardrail:
        from ..api.guardrail import parse_labels
        from ..render import guardrails as gr

        rails = load_guardrails(args.guardrail)
        problems: list[LocatedIssue] = []
        try:
            labels = parse_labels(args.namespace_labels or "")
            for doc, t in located:
                applied[id(t)] = [g.metadata.name for g in gr.applicable(rails, gr.labels_of_namespace(t, labels))]
                problems += [doc.issue(Issue(v.path, v.message)) for v in gr.check(t, rails, labels)]
        except ValueError as exc:
            raise CommandError(f"--namespace-labels: {exc}") from None
        if problems:
            raise InputError(problems)
    out = []
    for _, t in located:
        out.append(
            {
                "name": t.metadata.name,
                "namespace": t.metadata.namespace,
                "tiers": len(t.spec.tiers),
                "flows": len(t.spec.flows),
                "guardrails": applied.get(id(t)) if args.guardrail else None,
            }
        )
    return out


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        topologies = _validated(args)
    except InputError as exc:
        if args.output != "text":
            errors = [i.to_json() for i in exc.issues]
            dump_result(result("ValidationResult", valid=False, topologies=[], errors=errors), args.output, sys.stdout)
        raise
    if args.output != "text":
        dump_result(result("ValidationResult", valid=True, topologies=topologies, errors=[]), args.output, sys.stdout)
        return EXIT_OK
    for t in topologies:
        ns = f"{t['namespace']}/" if t["namespace"] else ""
        counts = f"{plural(t['tiers'], 'tier')}, {plural(t['flows'], 'flow')}"
        if t["guardrails"] is not None:
            counts += f"; guardrails: {', '.join(t['guardrails'])}" if t["guardrails"] else "; no guardrail applies"
        print(f"OK: AppTopology {ns}{t['name']} ({counts})")
    return EXIT_OK


def register(sub: Any, prog: str) -> None:
    p = sub.add_parser(
        "render",
        help="print the NetworkPolicies of AppTopology documents",
        description="Print the NetworkPolicies that enforce the given AppTopologies, as the operator writes them.",
        epilog=examples(
            prog,
            ("render -f shop.yaml", "the policies as YAML"),
            ("render -f topologies/ -o json", "every topology under a directory, as one JSON List"),
            ("render -f shop.yaml | kubectl apply -f -", "apply them without the operator"),
            ("render -f shop.yaml --cluster --context prod", "resolve dns.discover and kubeAPI in a cluster"),
        ),
    )
    add_file(p)
    add_namespace(p, "namespace of documents that name none (like kubectl apply -n); others are an error")
    add_cluster(
        p,
        "resolve what only the cluster knows (dns.discover, kubeAPI) from the kubeconfig's cluster, as the "
        "operator does; without it DNS follows spec.dns and kubeAPI gets no peer",
    )
    add_output(p, ["yaml", "json"], "yaml", "; json is always a List")
    p.set_defaults(func=cmd_render, error_exit=EXIT_FAIL)

    p = sub.add_parser(
        "validate",
        help="check AppTopology documents (and guardrails) without rendering",
        description="Check AppTopology documents as the operator and the API server would; with --guardrail, "
        "against TopologyGuardrails as admission does.",
        epilog=examples(
            prog,
            ("validate -f shop.yaml", "OK: AppTopology production/shop (3 tiers, 3 flows)"),
            ("validate -f topologies/ -o json", "a ValidationResult for CI"),
            (
                "validate -f shop.yaml --guardrail tenants.yaml --namespace-labels tenancy=shared",
                "as admission would judge it",
            ),
        ),
    )
    add_file(p)
    add_namespace(p, "namespace of documents that name none; others are an error")
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
    add_output(p, ["text", "json", "yaml"], "text")
    p.set_defaults(func=cmd_validate, error_exit=EXIT_FAIL)
