"""The topologies the probe matrix runs: every example, and seeded draws from the property tests' generator.

The generator is the property tests' own (tests/strategies.py), so the
packets see the same shapes of topology the evaluator is proven on: random selectors with expressions,
ipBlocks with excepts, named ports, port ranges, SCTP, both scopes, either direction isolated, DNS and
monitoring variants. Draws are deterministic (fixed seed, no shrinking, no example database), invalid
draws and duplicates are dropped.
"""

from __future__ import annotations

import copy
import json
import random
from functools import cache
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings

from apptopology.api.validation import InvalidTopology
from apptopology.render.validation import parse_topology
from shared import example_documents
from strategies import topologies

SEED = 20261201
GENERATED = 30


def examples() -> list[tuple[str, dict[str, Any]]]:
    return [(f"example-{name.split('.yaml')[0]}", doc) for name, doc in example_documents()]


def _isolated(doc: dict[str, Any]) -> bool:
    deny = doc["spec"].get("defaultDeny") or {}
    return bool(deny.get("ingress", True) or deny.get("egress", True))


@cache
def generated(count: int = GENERATED) -> list[tuple[str, dict[str, Any]]]:
    """``count`` distinct valid topologies from the property tests' ``topologies()`` strategy.

    Hypothesis explores from small examples up, in runs of near-duplicates, so a pool is drawn and
    sampled (seeded): four in five isolate something and declare flows (where packets can disagree),
    the rest isolate without flows or declare flows without isolation (everything must stay open).
    """
    draws: list[dict[str, Any]] = []

    @seed(SEED)
    @settings(
        max_examples=count * 40,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(topologies())
    def draw(doc: dict[str, Any]) -> None:
        draws.append(copy.deepcopy(doc))

    draw()
    pool: list[dict[str, Any]] = []
    seen: set[str] = set()
    for doc in draws:
        key = json.dumps(doc, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        try:
            parse_topology(copy.deepcopy(doc))
        except InvalidTopology:
            continue
        pool.append(doc)
    random.Random(SEED).shuffle(pool)
    rich = [d for d in pool if _isolated(d) and d["spec"]["flows"]]
    plain = [d for d in pool if not (_isolated(d) and d["spec"]["flows"])]
    chosen = rich[: count - count // 5]
    chosen += plain[: count - len(chosen)]
    return [(f"generated-{i:02d}", doc) for i, doc in enumerate(chosen)]
