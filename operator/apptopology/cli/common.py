"""What every command shares: exit codes, the flags that mean the same everywhere (``-f``, ``-o``,
``--cluster``, ``--kubeconfig``, ``--context``, ``-n``, ``--inventory``), and reading input and the cluster.

kubernetes (the client) is imported only when a command reaches a cluster, so the offline commands start
fast and work without it configured.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ..analysis.findings import duplicate_names
from ..analysis.subject import AnalysisError
from ..api.spec import AppTopology
from ..api.validation import Issue
from ..evaluator import Inventory, inventory_from_manifests
from ..render.facts import OFFLINE, ClusterFacts, cluster_facts, wanted_objects
from ..render.renderer import render_notes
from .documents import (
    MAX_DOCUMENT_BYTES,
    Document,
    InputError,
    LocatedIssue,
    load_documents,
    load_topology_documents,
)

EXIT_OK = 0
EXIT_FAIL = 1  # invalid input for render/validate; differences, findings, DENIED for the analyses
EXIT_USAGE = 2  # bad flags, unreadable or invalid input for the analyses (as kubectl diff: 1 means "differs")
EXIT_INTERRUPTED = 130

# Namespaces whose pods and policies are the cluster's own: suggest leaves them out unless named.
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")


class CommandError(Exception):
    """A usage or environment problem: one line on stderr, ``code`` as exit status."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


# --- flags -------------------------------------------------------------------------------------------------


def add_file(p: argparse.ArgumentParser, what: str = "AppTopology documents", required: bool = True) -> None:
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        required=required,
        metavar="FILE",
        help=f"file or directory with {what} ('-' for stdin); repeatable",
    )


def add_output(p: argparse.ArgumentParser, choices: Sequence[str], default: str, what: str = "") -> None:
    p.add_argument(
        "-o",
        "--output",
        choices=list(choices),
        default=default,
        help=f"output format (default {default}){what}",
    )


def add_kubeconfig(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--context", metavar="NAME", help="kubeconfig context (default: its current context)")


def add_cluster(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--cluster", action="store_true", help=what)
    add_kubeconfig(p)


def add_namespace(p: argparse.ArgumentParser, what: str, repeatable: bool = False) -> None:
    if repeatable:
        p.add_argument("-n", "--namespace", action="append", default=[], metavar="NS", help=what)
    else:
        p.add_argument("-n", "--namespace", metavar="NS", help=what)


def add_inventory(p: argparse.ArgumentParser, cluster: str | None = None) -> None:
    p.add_argument(
        "--inventory",
        action="append",
        metavar="PATH",
        help="Namespace, Pod and workload manifests (files or directories; repeatable), e.g. "
        "kubectl get namespaces,pods,deployments,statefulsets,daemonsets -A -o yaml. Default: an inventory "
        "synthesized from the input",
    )
    add_cluster(
        p,
        cluster
        or "read namespaces and pods from the cluster (the kubeconfig's), and resolve dns.discover and kubeAPI there",
    )


def checked(args: argparse.Namespace) -> None:
    """Flag combinations argparse cannot express."""
    if getattr(args, "cluster", False) and getattr(args, "inventory", None):
        raise CommandError("--inventory and --cluster are two sources of pods: give one")
    needs_cluster = [f for f in ("kubeconfig", "context") if getattr(args, f, None)]
    if needs_cluster and hasattr(args, "cluster") and not args.cluster:
        raise CommandError(f"--{needs_cluster[0]} goes with --cluster")


# --- the cluster -------------------------------------------------------------------------------------------


def connect(args: argparse.Namespace) -> None:
    """Point the client at ``--kubeconfig``/``--context`` (when given) before any request."""
    from ..controller.kube import use_kubeconfig  # kubernetes loads only when a cluster is asked for

    use_kubeconfig(getattr(args, "kubeconfig", None), getattr(args, "context", None))


def cluster_call(what: str, call: Any, *arguments: Any) -> Any:
    """``call(*arguments)`` with every way reaching the cluster fails turned into one line."""
    from kubernetes.config import ConfigException

    from ..controller.reconciler import ApiError

    try:
        return call(*arguments)
    except ConfigException as exc:
        raise CommandError(f"{what}: no usable kubeconfig: {exc}") from None
    except ApiError as exc:
        raise CommandError(f"{what}: {exc}") from None
    except OSError as exc:
        raise CommandError(f"{what}: {exc.strerror or exc}") from None


def facts(args: argparse.Namespace, topologies: Sequence[AppTopology]) -> ClusterFacts:
    """--cluster: what the cluster says about DNS and the API server; OFFLINE otherwise."""
    if not getattr(args, "cluster", False):
        return OFFLINE
    from ..controller.kube import cluster_facts_manifests

    connect(args)
    wanted = wanted_objects(topologies)
    manifests, problems = cluster_call("reading the cluster", cluster_facts_manifests, wanted)
    found = cluster_facts(manifests, wanted)
    for problem in [*problems, *found.problems]:
        sys.stderr.write(f"warning: {problem}\n")
    return found


def inventory(args: argparse.Namespace) -> Inventory | None:
    """--inventory files/directories, or --cluster, or None (synthesized from the input)."""
    if getattr(args, "cluster", False):
        from ..controller.kube import cluster_manifests

        connect(args)
        manifests = cluster_call("reading the cluster's pods", cluster_manifests)
    elif getattr(args, "inventory", None):
        manifests = [d.data for d in load_documents(args.inventory)]
    else:
        return None
    try:
        return inventory_from_manifests(manifests)
    except ValueError as exc:
        raise AnalysisError(f"inventory: {exc}") from None


def warn_unresolved(topologies: Sequence[AppTopology], found: ClusterFacts) -> None:
    """What rendering could not resolve (it failed closed), per topology and field."""
    for t in topologies:
        ns = f"{t.metadata.namespace}/" if t.metadata.namespace else ""
        for note in render_notes(t, found):
            sys.stderr.write(f"warning: AppTopology {ns}{t.metadata.name}: {note}\n")


# --- input -------------------------------------------------------------------------------------------------


def in_namespace(data: Any, namespace: str | None, doc: Document) -> LocatedIssue | None:
    """``-n``, as kubectl apply takes it: the namespace of documents without one, and an error for a
    document of another namespace."""
    if namespace is None or not isinstance(data, dict):
        return None
    meta = data.setdefault("metadata", {})
    if not isinstance(meta, dict):
        return None
    given = meta.get("namespace")
    if given in (None, ""):
        meta["namespace"] = namespace
        return None
    if given != namespace:
        return doc.issue(
            Issue(
                "metadata.namespace",
                f"the document's namespace {given} does not match -n {namespace}: pass -n {given}, or change it",
            )
        )
    return None


def topology_documents(
    args: argparse.Namespace, sources: list[str] | None = None
) -> list[tuple[Document, AppTopology]]:
    """The AppTopologies of ``-f`` (or ``sources``), ``-n`` applied, each with the document it came from."""
    namespace = getattr(args, "namespace", None)
    if isinstance(namespace, list):
        namespace = None
    if namespace is None:
        return load_topology_documents(sources or args.filename)
    docs = load_documents(sources or args.filename, MAX_DOCUMENT_BYTES)
    problems = [p for p in (in_namespace(d.data, namespace, d) for d in docs) if p is not None]
    if problems:
        raise InputError(problems)
    return load_topology_documents(sources or args.filename, docs)


def policies_of(docs: Sequence[Document]) -> list[Document]:
    """The NetworkPolicy documents; duplicate names in a namespace are an error (kubectl keeps the last)."""
    found = [d for d in docs if isinstance(d.data, dict) and d.data.get("kind") == "NetworkPolicy"]
    check_unique(found)
    return found


def check_unique(docs: Sequence[Document]) -> None:
    problems = []
    for key, indexes in duplicate_names([d.data for d in docs]):
        first = docs[indexes[0]]
        for i in indexes[1:]:
            where = f"{first.source}: document {first.index}"
            line = first.line_of("metadata.name")
            where += f" (line {line})" if line is not None else ""
            problems.append(
                docs[i].issue(
                    Issue(
                        "metadata.name",
                        f"NetworkPolicy {key} is given twice (also {where}): kubectl applies both and keeps only the "
                        "last, so no analysis of both is of what the cluster gets; rename or remove one",
                    )
                )
            )
    if problems:
        raise InputError(problems)
