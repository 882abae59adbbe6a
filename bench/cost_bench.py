"""What one AppTopology costs to validate, render and plan, by size up to the CRD's maximum.

    .venv/bin/python bench/cost_bench.py                       # every size, every change (a few minutes)
    .venv/bin/python bench/cost_bench.py --sizes 64x512x32     # the CRD maximum only
    .venv/bin/python bench/cost_bench.py --profile swap --sizes 64x512x32   # cProfile of one change

A size is TIERSxFLOWSxPORTS. Topologies are generated deterministically (see :func:`topology`): tiers
with their own labels; flows between random tiers (60%), from namespace+pod peers (15%), to ipBlocks
with 8 excepts (10%), to namespace selectors (10%) and from anywhere (5%), each with PORTS random ports
(30% of them ranges, TCP or UDP); monitoring on every tier. Timed, in process, best of --repeat runs:

- validate: ``parse_topology`` (the model, the cross-field rules and the annotation check, which renders);
- render: ``render`` of the parsed topology;
- plan: ``transition`` from one revision's policies to the next, for the changes below; the table says
  which way the planner went (direct, midpoint or full) and its work steps (planner.transition.WORK_BUDGET
  bounds them):

  create   nothing -> A                 delete   A -> nothing
  edit     A -> A with one flow's ports changed
  swap     A -> B, another random topology of the same size (every policy narrows and widens)
  rename   A -> A with every tier renamed (every policy name changes)
  tiers    A -> A in scope Tiers (the isolation moves from the default-deny to the tiers)
  select   A in scope Tiers -> every tier's selector changed (a guard per selector)

Asserts nothing; prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import os
import pstats
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from apptopology.api.spec import MAX_FLOWS, MAX_PORTS, MAX_TIERS  # noqa: E402
from apptopology.planner import transition as planner  # noqa: E402
from apptopology.planner.compare import stored_spec  # noqa: E402
from apptopology.render.renderer import render  # noqa: E402
from apptopology.render.validation import parse_topology  # noqa: E402

SIZES = ["4x8x2", "16x64x4", "32x256x8", "64x512x8", f"{MAX_TIERS}x{MAX_FLOWS}x{MAX_PORTS}"]
CHANGES = ["create", "edit", "swap", "rename", "tiers", "select", "delete"]


def _selector(tag: str, labels: int = 3) -> dict[str, Any]:
    return {"matchLabels": {f"example.com/key-{i}": f"{tag}-{i}" for i in range(labels)}}


def topology(name: str, namespace: str, tiers: int, flows: int, ports: int, seed: int = 0) -> dict[str, Any]:
    """A valid AppTopology of exactly this size (see the module docstring), the same for the same arguments."""
    rng = random.Random(f"{seed}/{tiers}/{flows}/{ports}")
    tier_names = [f"tier-{i:02d}" for i in range(tiers)]
    out_flows = []
    for j in range(flows):
        a, b = rng.choice(tier_names), rng.choice(tier_names)
        chosen = []
        for _ in range(ports):
            port: dict[str, Any] = {"port": rng.randrange(1, 60000), "protocol": rng.choice(["TCP", "UDP"])}
            if rng.random() < 0.3:
                port["endPort"] = port["port"] + rng.randrange(1, 200)
            chosen.append(port)
        kind = rng.random()
        if kind < 0.6:
            flow: dict[str, Any] = {"from": {"tier": a}, "to": {"tier": b}}
        elif kind < 0.75:
            peer = {"namespaceSelector": _selector(f"ns{j % 40}", 1), "podSelector": _selector(f"pod{j}", 2)}
            flow = {"from": peer, "to": {"tier": b}}
        elif kind < 0.85:
            block = {"cidr": f"10.{j % 256}.0.0/16", "except": [f"10.{j % 256}.{k}.0/24" for k in range(8)]}
            flow = {"from": {"tier": a}, "to": {"ipBlock": block}}
        elif kind < 0.95:
            flow = {"from": {"tier": a}, "to": {"namespaceSelector": _selector(f"ns{j % 40}", 1)}}
        else:
            flow = {"from": {"anywhere": True}, "to": {"tier": b}}
        flow["ports"] = chosen
        out_flows.append(flow)
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "tiers": [{"name": t, "podSelector": _selector(f"{name}-{t}")} for t in tier_names],
            "flows": out_flows,
            "monitoring": {
                "enabled": True,
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "ports": [{"port": 9090}],
            },
        },
    }


def changed(doc: dict[str, Any], change: str, seed: int) -> dict[str, Any]:
    """The next revision of ``doc`` for ``change`` (see the module docstring)."""
    spec = doc["spec"]
    tiers, flows = len(spec["tiers"]), len(spec["flows"])
    ports = max((len(f.get("ports") or []) for f in spec["flows"]), default=1)
    out = copy.deepcopy(doc)
    if change == "edit":
        out["spec"]["flows"][0]["ports"] = [{"port": 1, "endPort": 1000}]
    elif change == "swap":
        return topology(doc["metadata"]["name"], doc["metadata"]["namespace"], tiers, flows, ports, seed + 1)
    elif change == "rename":
        for tier in out["spec"]["tiers"]:
            tier["name"] = "r" + tier["name"]
        for flow in out["spec"]["flows"]:
            for side in ("from", "to"):
                if "tier" in flow[side]:
                    flow[side]["tier"] = "r" + flow[side]["tier"]
    elif change in ("tiers", "select"):
        out["spec"]["defaultDeny"] = {"scope": "Tiers"}
        if change == "select":
            for tier in out["spec"]["tiers"]:
                tier["podSelector"]["matchLabels"]["moved"] = "yes"
    return out


def policies(doc: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if doc is None:
        return {}
    return {p["metadata"]["name"]: stored_spec(p["spec"]) for p in render(parse_topology(doc))}


def best(fn: Callable[[], Any], repeat: int) -> tuple[str, Any]:
    """Wall and CPU seconds of the fastest of ``repeat`` runs, and the result."""
    times, result = [], None
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        result = fn()
        times.append((time.perf_counter() - started, time.process_time() - cpu))
    wall, cpu = min(times)
    return f"{wall:.3f} | {cpu:.3f}", result


def measure(size: str, repeat: int, profile: str | None) -> list[list[str]]:
    tiers, flows, ports = (int(x) for x in size.split("x"))
    doc = topology("big", "bench", tiers, flows, ports)
    parse_s, parsed = best(lambda: parse_topology(copy.deepcopy(doc)), repeat)
    render_s, _ = best(lambda: render(parsed), repeat)
    rows = [[size, "validate", parse_s, "", "", ""], [size, "render", render_s, "", "", ""]]
    base = policies(doc)
    for change in CHANGES:
        if change == "create":
            old, new = {}, base
        elif change == "delete":
            old, new = base, {}
        elif change == "select":
            old, new = policies(changed(doc, "tiers", 0)), policies(changed(doc, "select", 0))
        else:
            old, new = base, policies(changed(doc, change, 0))
        if profile == change:
            prof = cProfile.Profile()
            prof.enable()
            planner.transition(old, new, guard_base="big")
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        plan_s, result = best(lambda o=old, n=new: planner.planned(o, n, guard_base="big"), repeat)
        rows.append([size, f"plan: {change}", plan_s, str(len(result.moves)), result.way, f"{result.work:,}"])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", default=SIZES, help="TIERSxFLOWSxPORTS (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is shown")
    parser.add_argument("--profile", choices=CHANGES, help="print a cProfile of this change's plan")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    print("| size (tiers x flows x ports) | step | seconds | CPU seconds | writes | planner | work steps |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for row in measure(size, args.repeat, args.profile):
            print("| " + " | ".join(row) + " |", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
