"""graph: draw topologies (one drawing for all of them) as Mermaid, Graphviz DOT, or SVG."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from typing import Any

from ..analysis.graph import dot, mermaid
from .common import EXIT_FAIL, EXIT_OK, CommandError, add_file, add_namespace, topology_documents
from .help import examples


def cmd_graph(args: argparse.Namespace) -> int:
    topologies = [t for _, t in topology_documents(args)]
    if args.output == "mermaid":
        sys.stdout.write(mermaid(topologies))
        return EXIT_OK
    text = dot(topologies)
    if args.output == "dot":
        sys.stdout.write(text)
        return EXIT_OK
    graphviz = shutil.which("dot")
    if graphviz is None:
        raise CommandError("-o svg needs Graphviz's `dot` on PATH (e.g. apt-get install graphviz); use -o dot")
    svg = subprocess.run([graphviz, "-Tsvg"], input=text, capture_output=True, text=True, check=False)
    if svg.returncode != 0:
        raise CommandError(f"dot failed: {svg.stderr.strip()}")
    sys.stdout.write(svg.stdout)
    return EXIT_OK


def register(sub: Any, prog: str) -> None:
    p = sub.add_parser(
        "graph",
        help="draw topologies (Mermaid, Graphviz DOT, or SVG through Graphviz)",
        description="Draw the declared tiers, flows, DNS, monitoring and peers. Several topologies make one "
        "drawing: a box per namespace and per topology, each peer in the namespace it names.",
        epilog=examples(
            prog,
            ("graph -f shop.yaml", "Mermaid, for a README or a pull request"),
            ("graph -f topologies/ -o svg > topologies.svg", "every topology in one SVG (needs Graphviz)"),
        ),
    )
    add_file(p)
    add_namespace(p, "namespace of documents that name none; others are an error")
    p.add_argument("-o", "--output", choices=["mermaid", "dot", "svg"], default="mermaid", help="(default mermaid)")
    p.set_defaults(func=cmd_graph, error_exit=EXIT_FAIL)
