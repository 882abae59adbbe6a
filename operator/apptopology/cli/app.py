"""The parser and the entry point: every command family registers itself; errors become one located
line each on stderr and a documented exit code, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from ..analysis.subject import AnalysisError
from . import adoption, completion, diff, explain, graph, render, run, verify
from .common import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CommandError
from .documents import InputError
from .help import Formatter, program

FAMILIES = (render, explain, verify, diff, graph, adoption, run, completion)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    prog = prog or program()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Declare an application's tiers and flows once; get least-privilege NetworkPolicies.",
        epilog=f"Run '{prog} COMMAND --help' for a command's flags, examples and exit codes.",
        formatter_class=Formatter,
    )
    parser.add_argument("--version", action="version", version=f"apptopology {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for family in FAMILIES:
        family.register(sub, prog)
    for command in sub.choices.values():
        command.formatter_class = Formatter  # examples keep their layout
    parser.set_defaults(parser=parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except InputError as exc:
        for issue in exc.issues:
            sys.stderr.write(f"error: {issue}\n")
        return int(getattr(args, "error_exit", EXIT_FAIL))
    except CommandError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.code
    except AnalysisError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
