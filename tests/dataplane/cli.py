"""The dataplane for people: bring it up, add pods, probe, look around, tear down; and the demo.

Run through ``tests/dataplane/dataplane.sh`` (or ``demo.sh``), which picks the project's Python.
Errors are one line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "integration"), str(HERE.parent)]

import yaml  # noqa: E402
from harness import wait_for  # noqa: E402
from kubernetes import client  # noqa: E402
from matrix import Case, Probe  # noqa: E402
from netns import NetnsError  # noqa: E402

from apptopology.cli.documents import InputError, load_documents  # noqa: E402
from apptopology.evaluator import External, PortSet  # noqa: E402
from dataplane import Dataplane, DataplaneError, Port  # noqa: E402

PORT_RE = re.compile(r"^(\d+)(?:/(TCP|UDP|tcp|udp))?(?:=([a-z0-9-]+))?$")


def parse_port(text: str) -> Port:
    m = PORT_RE.match(text)
    if not m or not 1 <= int(m.group(1)) <= 65535:
        raise DataplaneError(f"bad port {text!r}: expected PORT[/TCP|UDP][=NAME], e.g. 8080/TCP=http")
    return Port(int(m.group(1)), (m.group(2) or "TCP").upper(), m.group(3))  # type: ignore[arg-type]


def topologies(path: str) -> list[dict[str, Any]]:
    try:
        docs = [d.data for d in load_documents([path])]
    except InputError as exc:
        raise DataplaneError("; ".join(str(i) for i in exc.issues)) from None
    found = [d for d in docs if isinstance(d, dict) and d.get("kind") == "AppTopology"]
    if not found:
        raise DataplaneError(f"{path}: no AppTopology document")
    return found


def apply_topology(dp: Dataplane, doc: dict[str, Any], label: str) -> Case:
    """The topology's synthesized inventory made real, the AppTopology created and Ready, rules in place."""
    case = Case(dp, label, doc)
    case.build()
    generation = case.apply()
    wait_for(lambda: case.ready(generation), timeout=60, what=f"{case.home}/{case.name} Ready")
    dp.settle()
    return case


# Commands -------------------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    dp = Dataplane(Path(args.dir))
    started = time.monotonic()
    try:
        dp.up(operator=not args.no_operator)
        for doc in topologies(args.example) if args.example else []:
            apply_topology(dp, doc, Path(args.example).stem)
    except BaseException:
        dp.down()
        raise
    print(f"up in {time.monotonic() - started:.1f} s: node namespace {dp.node_netns}, state in {dp.dir}")
    print_pods(dp)
    print(f"\nnext: tests/dataplane/dataplane.sh probe {args.dir} FROM TO PORT[/PROTO]   (FROM may be `node`)")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    dp = Dataplane(Path(args.dir))
    if not dp.state:
        print(f"nothing to tear down in {args.dir}")
        return 0
    problems = dp.down()
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    print("down: every namespace and process of the dataplane is gone")
    return 1 if problems else 0


def attached(directory: str) -> Dataplane:
    dp = Dataplane(Path(directory))
    if not dp.state:
        raise DataplaneError(f"no dataplane in {directory}: run `up {directory}` first")
    return dp


def cmd_pod(args: argparse.Namespace) -> int:
    dp = attached(args.dir)
    namespace, _, name = args.pod.partition("/")
    if not name:
        raise DataplaneError(f"pod {args.pod!r}: expected NAMESPACE/NAME")
    labels = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep:
            raise DataplaneError(f"label {item!r}: expected KEY=VALUE")
        labels[key] = value
    ports = [parse_port(p) for p in args.port] or [Port(8080)]
    dp.ensure_namespace(namespace)
    dp.add_pods([(namespace, name, labels, ports)])
    dp.settle()
    print_pods(dp)
    return 0


def cmd_pods(args: argparse.Namespace) -> int:
    print_pods(attached(args.dir))
    return 0


def print_pods(dp: Dataplane) -> None:
    rows = [["ENDPOINT", "IP", "LABELS", "PORTS"]]
    for e in sorted(dp.endpoints.values(), key=lambda e: (not e.pod, e.key)):
        labels = ",".join(f"{k}={v}" for k, v in sorted(e.labels.items())) or "-"
        numbers = sorted({p.port for p in e.ports})
        named = [f"{p.name}={p.port}/{p.protocol}" for p in e.ports if p.name]
        ports = ",".join(map(str, numbers)) + " TCP+UDP" * bool(numbers) + "".join(f" {n}" for n in named)
        rows.append([e.key, e.ip, labels if e.pod else "(outside the cluster)", _short(ports, 60)])
    if len(rows) > 1:
        print(table(rows))


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def cmd_probe(args: argparse.Namespace) -> int:
    dp = attached(args.dir)
    number, _, protocol = args.port.partition("/")
    protocol = (protocol or "TCP").upper()
    if not number.isdigit() or protocol not in ("TCP", "UDP"):
        raise DataplaneError(f"port {args.port!r}: expected PORT[/TCP|UDP] (SCTP: this kernel has no SCTP sockets)")
    result = dp.probe(args.source, args.destination, int(number), protocol)  # type: ignore[arg-type]
    what = f"{args.source} -> {args.destination} {protocol}/{number}"
    if result.open:
        print(f"open: {what} (answered by {result.banner})")
        return 0
    why = {"refused": "rejected: kube-router answers blocked traffic with ICMP port-unreachable",
           "timeout": "no answer within 1 s (dropped)"}.get(result.outcome, result.outcome)  # fmt: skip
    print(f"blocked: {what} ({why})")
    return 1


def cmd_kubectl(args: argparse.Namespace) -> int:
    dp = attached(args.dir)
    done = dp.kubectl(*args.args, check=False)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode


# The demo -------------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    docs = topologies(args.example)
    directory = Path(tempfile.mkdtemp(prefix="apptopology-demo-"))
    dp = Dataplane(directory / "dp")
    clock = time.monotonic()
    try:
        step("bringing up a control plane, a kube-router node and the operator (network namespaces)")
        dp.up()
        print(f"   up in {time.monotonic() - clock:.1f} s")
        for doc in docs:
            demo_topology(dp, doc, Path(args.example).stem)
    finally:
        step("tearing everything down")
        problems = dp.down()
        for p in problems:
            print(f"warning: {p}", file=sys.stderr)
        with contextlib.suppress(OSError):
            for leftover in sorted(directory.rglob("*"), reverse=True):
                leftover.unlink() if not leftover.is_dir() else leftover.rmdir()
            directory.rmdir()
    print(f"   done in {time.monotonic() - clock:.1f} s in all")
    return 0


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def demo_topology(dp: Dataplane, doc: dict[str, Any], label: str) -> None:
    case = Case(dp, label, doc)
    name = f"{case.home}/{case.name}"
    step(f"pods for {name}: one per tier and peer, near misses, the rest of the world (as explain synthesizes)")
    case.build()
    print_pods(dp)
    expected, evaluator, _, by_key = case.expectations()
    plan = case.plan(expected)
    step(f"kubectl apply: AppTopology {name}; the operator reconciles it, kube-router enforces")
    start = time.monotonic()
    generation = case.apply()
    latency = case.report.latency = case._enforcement_latency(plan, start)
    wait_for(lambda: case.ready(generation), timeout=60, what=f"{name} Ready")
    dp.settle()
    if latency is not None:
        print(f"   packets followed {latency * 1000:.0f} ms after the AppTopology was created")
    print(dp.kubectl("get", "apptopology", "-n", case.home).stdout.rstrip())
    step(f"the NetworkPolicies the operator created in {case.home}")
    print(dp.kubectl("get", "networkpolicy", "-n", case.home, "-L", "apptopology.io/topology").stdout.rstrip())
    net = client.NetworkingV1Api(dp.api)
    for policy in dp.k(net.list_namespaced_network_policy, case.home).items:
        note = (policy.metadata.annotations or {}).get("apptopology.io/description", "")
        print(f"   {policy.metadata.name}: {note}")
    step("live probes (real TCP/UDP connections) next to explain's answer")
    results = dp.probe_all([(p.source, p.destination, p.port, p.protocol) for p, _ in plan])
    print_grid(case, plan, [r.open for r in results], by_key)
    problems = case.check(plan, results, evaluator, by_key)
    print("\n   every pair, on every port the topology mentions, its neighbours and the other protocol:")
    print(f"   {case.report.line()}")
    for p in problems:
        print(f"   PROBLEM: {p}")
    case.teardown()


def print_grid(case: Case, plan: list[tuple[Probe, bool]], opened: list[bool], by_key: dict[str, Any]) -> None:
    """explain's matrix layout: each cell the probed ports that opened; ``!= explain`` marks a disagreement."""
    shown = [k for k in case.keys if not _near_miss(k)]
    observed: dict[tuple[str, str], PortSet] = {}
    explained: dict[tuple[str, str], PortSet] = {}
    probed: dict[tuple[str, str], PortSet] = {}
    for (probe, allowed), is_open in zip(plan, opened, strict=True):
        pair = (probe.source, probe.destination)
        one = PortSet.of(probe.protocol, probe.port)
        observed.setdefault(pair, PortSet.NONE)
        explained.setdefault(pair, PortSet.NONE)
        probed[pair] = probed.get(pair, PortSet.NONE) | one
        if is_open:
            observed[pair] = observed[pair] | one
        if allowed:
            explained[pair] = explained[pair] | one
    names = {k: display(case, k, by_key) for k in shown}
    destinations = [k for k in shown if not k.startswith("external/")] + [k for k in shown if k.startswith("external/")]
    rows = [["from \\ to", *[names[d] for d in destinations]]]
    for s in shown:
        row = [names[s]]
        for d in destinations:
            if (s, d) not in observed:
                row.append("")
                continue
            cell = _ports(observed[s, d], probed[s, d])
            if observed[s, d] != explained[s, d]:
                cell += f" != explain {_ports(explained[s, d], probed[s, d])}"
            row.append(cell)
        rows.append(row)
    print(table(rows))
    print("\n   (each cell: the probed ports on which a connection opened; 'every port': all of them; '-' none)")


def _ports(ports: PortSet, probed: PortSet) -> str:
    if ports.is_empty:
        return "-"
    return "every port" if ports == probed else _short(str(ports), 40)


def _near_miss(key: str) -> bool:
    return key.endswith(("-wrong-namespace", "-other-pod"))


def display(case: Case, key: str, by_key: dict[str, Any]) -> str:
    endpoint = by_key[key]
    if isinstance(endpoint, External):
        return endpoint.name or key
    namespace, name = key.split("/", 1)
    tier = name.removeprefix("tier-")
    if namespace == case.home and name.startswith("tier-") and tier in case.topology.spec.tier_names():
        return tier
    return key


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# Wiring ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataplane.sh", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("up", help="node namespace, control plane, kube-router and the operator in DIR")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--example", metavar="FILE", help="also create this topology's pods and apply it")
    p.add_argument("--no-operator", action="store_true", help="leave the operator out (policies by hand)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("pod", help="add a pod (its own network namespace, a server, a Running Pod object)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("pod", metavar="NAMESPACE/NAME")
    p.add_argument("--label", "-l", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--port", "-p", action="append", default=[], metavar="PORT[/PROTO][=NAME]", help="default 8080")
    p.set_defaults(func=cmd_pod)

    p = sub.add_parser("pods", help="list the pods and outside clients")
    p.add_argument("dir", metavar="DIR")
    p.set_defaults(func=cmd_pods)

    p = sub.add_parser("probe", help="one real connection; exit 0 open, 1 blocked")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("source", metavar="FROM", help="NAMESPACE/NAME, external/NAME, or node")
    p.add_argument("destination", metavar="TO", help="NAMESPACE/NAME or external/NAME")
    p.add_argument("port", metavar="PORT[/PROTO]")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("kubectl", help="kubectl (admin) against the dataplane's API server")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_kubectl)

    p = sub.add_parser("down", help="stop everything and remove every namespace")
    p.add_argument("dir", metavar="DIR")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("demo", help="up, apply an example, show policies and live probes, down")
    p.add_argument("example", metavar="EXAMPLE")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except (DataplaneError, NetnsError, AssertionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except client.ApiException as exc:
        print(f"error: API server: {exc.status} {exc.reason}: {exc.body}", file=sys.stderr)
    except (subprocess.SubprocessError, OSError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
