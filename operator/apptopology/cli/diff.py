"""diff: connectivity added and removed between two revisions, grouped by what causes it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..analysis.diff import diff, group
from ..api.spec import plural
from .common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, CommandError, add_inventory, add_namespace, add_output, checked
from .explain import load_subject
from .help import examples
from .output import dump_result


def _revisions(args: argparse.Namespace) -> tuple[str, str]:
    given = [*(args.filename or []), *(args.revisions or [])]
    if len(given) != 2:
        raise CommandError(f"diff takes two revisions, -f OLD -f NEW (got {len(given)})")
    return given[0], given[1]


def cmd_diff(args: argparse.Namespace) -> int:
    checked(args)
    old_source, new_source = _revisions(args)
    old, _ = load_subject([old_source], args)
    new, _ = load_subject([new_source], args)
    changes = diff(old, new)
    if args.output in ("json", "yaml"):
        data = [
            {
                "from": c.source,
                "to": c.destination,
                "added": str(c.added) if not c.added.is_empty else None,
                "removed": str(c.removed) if not c.removed.is_empty else None,
            }
            for c in changes
        ]
        dump_result(data, args.output, sys.stdout)
        return EXIT_FAIL if changes else EXIT_OK
    if not changes:
        print("no change in connectivity")
        return EXIT_OK
    groups = group(old, new, changes)
    added = sum(not c.added.is_empty for c in changes)
    removed = sum(not c.removed.is_empty for c in changes)
    print(f"{plural(added, 'pair')} gained connectivity, {plural(removed, 'pair')} lost some:")
    for g in groups:
        sign = "+" if g.kind == "added" else "-"
        print(f"{sign} {g.kind} ({plural(len(g.changes), 'pair')}): {g.cause}")
        if args.pairs:
            for c in g.changes:
                print(f"    {sign} {c.source} -> {c.destination}: {c.added if sign == '+' else c.removed}")
    if not args.pairs:
        print("(--pairs lists every pair)")
    return EXIT_FAIL


def register(sub: Any, prog: str) -> None:
    p = sub.add_parser(
        "diff",
        help="connectivity added and removed between two revisions",
        description="Connectivity added (+) and removed (-) between two revisions (topologies or policy sets), "
        "grouped by the declared flow or the policy rule responsible.",
        epilog=examples(
            prog,
            ("diff -f main/shop.yaml -f shop.yaml", "what a pull request changes (exit 1 when anything does)"),
            ("diff -f current-policies.yaml -f shop.yaml --pairs", "hand-written policies to a topology, pair by pair"),
            ("diff -f old.yaml -f new.yaml -o json", "the changed pairs for CI"),
        ),
    )
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        metavar="FILE",
        help="the old revision, then the new one: topologies or policies (file, directory or '-')",
    )
    p.add_argument("revisions", nargs="*", metavar="OLD NEW", help="the same, as two arguments")
    add_namespace(p, "namespace of documents that name none; others are an error")
    add_inventory(p)
    p.add_argument("--pairs", action="store_true", help="list every changed pair under its cause")
    add_output(p, ["text", "json", "yaml"], "text", "; json and yaml list the changed pairs")
    p.set_defaults(func=cmd_diff, error_exit=EXIT_USAGE)
