"""Fixtures for the dataplane suite: one node, its control plane, kube-router and the operator per session.

Locally the suite skips, with the reason, where network namespaces, iptables or ipset are missing, or the
control plane or kube-router cannot be built or started. In CI (APPTOPOLOGY_REQUIRE_DATAPLANE=1) each of
those is a failure: a packet suite that silently skips proves nothing.
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from collections.abc import Iterator

import netns
import pytest
from matrix import REPORTS
from netns import NetnsError

from dataplane import Dataplane, DataplaneError


def _unavailable(message: str) -> None:
    if os.environ.get("APPTOPOLOGY_REQUIRE_DATAPLANE") == "1":
        pytest.fail(f"dataplane required (APPTOPOLOGY_REQUIRE_DATAPLANE=1): {message}", pytrace=False)
    pytest.skip(f"dataplane: {message}")


@pytest.fixture(scope="session")
def dataplane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dataplane]:
    reason = netns.unavailable()
    if reason:
        _unavailable(reason)
    dp = Dataplane(tmp_path_factory.mktemp("dataplane"))
    try:
        dp.up()
    except BaseException as exc:
        problems = dp.down()  # whatever went wrong, leave no namespace or process behind
        if not isinstance(exc, DataplaneError | NetnsError):
            raise
        _unavailable(f"{exc}" + "".join(f"\n(teardown: {p})" for p in problems))
    try:
        yield dp
    finally:
        problems = dp.down()
        assert not problems, f"dataplane teardown: {problems}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Counts and latencies of the probe matrix: measured and printed, never asserted."""
    if not REPORTS:
        return
    tr = terminalreporter
    tr.section("dataplane: packets versus explain")
    for report in REPORTS:
        tr.write_line(report.line())
    probes = sum(r.probes for r in REPORTS)
    agree = sum(r.agree for r in REPORTS)
    tr.write_line(
        f"{len(REPORTS)} topologies, {sum(r.pods for r in REPORTS)} pods, {probes} probes "
        f"({sum(r.open for r in REPORTS)} open, {sum(r.blocked for r in REPORTS)} blocked), "
        f"{sum(r.controls for r in REPORTS)} positive controls; observed == explain for {agree}/{probes}"
    )
    deviations = [d for r in REPORTS for d in r.deviations]
    if deviations:
        kinds = Counter(d.split(":", 1)[0] for d in deviations)
        cases = sum(1 for r in REPORTS if r.deviations)
        tr.write_line(
            f"the other {len(deviations)} probes, in {cases} topologies, are kube-router's deviations "
            f"({', '.join(f'{k}: {n}' for k, n in sorted(kinds.items()))}; kuberouter.py, README.md), e.g.:"
        )
        for line in deviations[:3]:
            tr.write_line(f"  {line}")
    latencies = sorted(r.latency for r in REPORTS if r.latency is not None)
    if latencies:
        tr.write_line(
            f"enforcement latency (AppTopology created -> packets follow), {len(latencies)} samples: "
            f"p50 {statistics.median(latencies) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
        )
