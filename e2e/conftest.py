"""The e2e suite runs against the kind cluster of e2e/cluster.sh (e2e/README.md). Without one it skips,
except where APPTOPOLOGY_REQUIRE_E2E=1 (CI): then a missing cluster is a failure."""

from __future__ import annotations

import os

import pytest
from support import Cluster, cluster_env


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    env = cluster_env()
    if env is None:
        if os.environ.get("APPTOPOLOGY_REQUIRE_E2E") == "1":
            pytest.fail("no e2e cluster (e2e/cluster.sh up) and APPTOPOLOGY_REQUIRE_E2E=1")
        pytest.skip("no e2e cluster: run e2e/cluster.sh up")
    return Cluster(env)
