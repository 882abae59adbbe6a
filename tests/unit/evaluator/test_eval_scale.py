"""Scale: a 200-workload cluster is fully evaluated well within the 2 s budget, and the bulk
(bitset, class-based) matrix agrees with per-pair evaluation."""

from __future__ import annotations

import random
import time

from eval_helpers import synthetic_cluster

from apptopology.evaluator import Evaluator, PortSet


def test_200_workload_matrix_is_fast_and_consistent() -> None:
    policies, inventory = synthetic_cluster(namespaces=20, workloads=10, replicas=1, policies=10)
    assert len(inventory.pods) == 200 and len(policies) == 200
    start = time.perf_counter()
    evaluator = Evaluator(policies, inventory)
    matrix = evaluator.matrix()
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"200-workload matrix took {elapsed:.2f}s"
    assert len(matrix) == len(inventory.endpoints) ** 2

    pods = {p.ref: p for p in inventory.pods}
    # w2 may reach w4 on w4's named http port (8080 + 4 % 3) only: egress of w2 and ingress of w4 agree.
    assert matrix[pods["ns0/w2-0"], pods["ns0/w4-0"]] == PortSet.parse("TCP/8081")
    assert matrix[pods["ns0/w4-0"], pods["ns0/w2-0"]] == PortSet.NONE
    assert matrix[pods["ns0/w2-0"], pods["ns0/w3-0"]] == PortSet.NONE
    internet = inventory.externals[0]
    assert matrix[pods["ns0/w2-0"], internet] == PortSet.NONE  # 0.0.0.0/0 includes the excepted 10/8
    assert matrix[pods["ns0/w2-0"], inventory.externals[1]] == PortSet.parse("TCP/443")

    fresh = Evaluator(policies, inventory)  # per-pair path, independent of the bulk precomputation
    rng = random.Random(7)
    endpoints = inventory.endpoints
    for _ in range(400):
        src, dst = rng.choice(endpoints), rng.choice(endpoints)
        assert fresh.allowed(src, dst) == matrix[src, dst], (src, dst)
    allowed = [(s, d) for s, d in matrix if matrix[s, d]]
    for src, dst in allowed[:200]:
        assert fresh.allowed(src, dst) == matrix[src, dst], (src, dst)
