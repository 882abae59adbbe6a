"""Fixtures for the integration suite: a real control plane, the CRD and RBAC from deploy/, and the
operator running as in production (``apptopology run``) under its own ServiceAccount identity.

Without the control plane binaries the suite skips locally, but fails in CI
(APPTOPOLOGY_REQUIRE_CONTROLPLANE=1): a suite that silently skips proves nothing.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import ROOT, RUN_SH, SUMMARY, Cluster, ControlPlane, Operator, controlplane_or_skip
from kubernetes import client


@pytest.fixture(scope="session")
def controlplane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    base = tmp_path_factory.mktemp("controlplane")
    cp = controlplane_or_skip(base / "cp")
    try:
        # Everything a user installs: the CRDs (`kubectl apply -k crds/`), then `kubectl apply -k deploy/`:
        # namespace, RBAC, Deployment, admission policy.
        cp.kubectl("apply", "-k", str(ROOT / "crds"))
        cp.kubectl("apply", "-k", str(ROOT / "deploy"))
        # The optional leader fence (deploy/components/leader-fence), for the leader-change tests.
        cp.kubectl("apply", "-f", str(ROOT / "deploy" / "components" / "leader-fence" / "leader-fence.yaml"))
        cp.kubectl(
            "wait",
            "--for=condition=Established",
            "crd/apptopologies.apptopology.io",
            "crd/topologyguardrails.apptopology.io",
            "--timeout=60s",
        )
        yield cp
    finally:
        audit = Path(cp.env["AUDIT_LOG"])
        if audit.exists():
            with open(audit, "rb") as log:
                lines = sum(1 for _ in log)
            SUMMARY.append(f"control plane audit log: {audit.stat().st_size / 2**20:.1f} MiB, {lines} lines")
        subprocess.run(["bash", str(RUN_SH), "down", str(cp.dir)], capture_output=True, timeout=120)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Counts the suite reports whether or not it passes (the judge's scenarios and states, the audit log)."""
    for line in SUMMARY:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def operator(controlplane: ControlPlane) -> Iterator[Operator]:
    op = Operator(controlplane)
    op.start()
    yield op
    op.stop()


@pytest.fixture()
def running_operator(operator: Operator) -> Iterator[Operator]:
    """The session operator, (re)started if a previous test stopped it; its log is shown on failure."""
    if operator.proc is None:
        operator.start()
    yield operator


@pytest.fixture()
def namespace(controlplane: ControlPlane) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(controlplane.api).create_namespace({"metadata": {"name": name}})
    yield name
    with contextlib.suppress(client.ApiException):
        client.CoreV1Api(controlplane.api).delete_namespace(name)


@pytest.fixture(scope="session")
def cluster(controlplane: ControlPlane) -> Cluster:
    return Cluster(controlplane)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, attach the operator's log: the first thing anyone debugging wants."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed and "operator" in getattr(item, "fixturenames", ()):
        op = item.funcargs.get("operator") or item.funcargs.get("running_operator")  # type: ignore[attr-defined]
        if isinstance(op, Operator):
            report.sections.append(("operator log", op.logs()))
