"""Help text shared by every command: examples and exit codes at the end of each ``--help``."""

from __future__ import annotations

import argparse
import os
import sys

# Exit codes per command, as documented (docs/cli/index.md is generated from the parser, these included).
EXITS = {
    "render": "0 rendered; 1 invalid input (located errors on stderr, nothing on stdout); 2 usage",
    "validate": "0 valid; 1 invalid (every problem listed); 2 usage",
    "explain": "0 the matrix, or ALLOWED; 1 DENIED (as kubectl auth can-i); 2 bad input or usage",
    "verify": "0 exactly the declared connectivity and no finding; 1 differences or findings; 2 bad input or usage",
    "diff": "0 no change; 1 changes (as kubectl diff); 2 bad input or usage",
    "import": "0 equivalent; 1 differences, or a namespace not importable; 2 bad input or usage",
    "suggest": "0 suggested (with --against: every observed flow allowed); 1 a namespace failed, or --against "
    "would deny some; 2 bad input or usage",
    "graph": "0 drawn; 1 invalid input; 2 usage, or Graphviz missing for svg",
    "run": "0 stopped; 1 cannot start (no kubeconfig, API server unreachable, port in use); 2 usage",
    "completion": "0",
}


def program() -> str:
    """``kubectl apptopology`` when run as the kubectl plugin (kubectl runs ``kubectl-apptopology``)."""
    name = os.path.basename(sys.argv[0] if sys.argv else "")
    return "kubectl apptopology" if name.startswith("kubectl-") else "apptopology"


def examples(prog: str, *pairs: tuple[str, str], command: str | None = None) -> str:
    """An ``examples:`` block (each with what it shows) and the command's exit codes."""
    lines = ["examples:"]
    for example, what in pairs:
        lines.append(f"  # {what}")
        lines.append(f"  {prog} {example}")
    name = command or (pairs[0][0].split()[0] if pairs else "")
    if name in EXITS:
        lines += ["", f"exit codes: {EXITS[name]}"]
    return "\n".join(lines)


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' layout; wraps the rest."""
