"""The ``apptopology`` command line (also installed as ``kubectl-apptopology``).

Every command turns bad input into located messages on stderr and a non-zero exit, never a traceback:
CI logs and pull-request reviews are read by people, not debuggers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import yaml

from . import __version__
from .documents import InputError, load_topologies
from .render import render_all

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def dump_yaml(objects: Sequence[Any], out: TextIO) -> None:
    """Multi-document YAML, keys in rendering order (apiVersion, kind, metadata, spec)."""

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
        style = "|" if "\n" in data else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    _Dumper.add_representer(str, _str)
    out.write(yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, explicit_start=True, width=100))


def dump(objects: Sequence[Any], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        doc: Any = objects[0] if len(objects) == 1 else {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        dump_yaml(objects, out)


def report(exc: InputError, err: TextIO) -> None:
    for issue in exc.issues:
        err.write(f"error: {issue}\n")


def cmd_render(args: argparse.Namespace) -> int:
    topologies = load_topologies(args.filename)
    dump(render_all(topologies), args.output, sys.stdout)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    topologies = load_topologies(args.filename)
    for t in topologies:
        ns = f"{t.metadata.namespace}/" if t.metadata.namespace else ""
        print(f"OK: AppTopology {ns}{t.metadata.name} ({len(t.spec.tiers)} tiers, {len(t.spec.flows)} flows)")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from .operator_main import run_operator  # kopf and kubernetes load only for this command

    return run_operator(
        namespaces=args.namespace,
        liveness=args.liveness,
        verbose=args.verbose,
    )


def _add_file(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE",
        help="file or directory with AppTopology documents ('-' for stdin); repeatable",
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
    p.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml", help="output format (default yaml)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("validate", help="check AppTopology documents without rendering")
    _add_file(p)
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
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=cmd_run)

    for register in EXTRA_COMMANDS:
        register(sub)
    return parser


# Later commands (explain, verify, diff, graph) register themselves here without touching the core ones.
EXTRA_COMMANDS: list[Callable[[Any], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except InputError as exc:
        report(exc, sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
