"""Fixtures for the Argo CD tests: the gopher-lua harness (built by build.sh, cached) and a kustomize.

Missing tools skip locally but fail in CI (APPTOPOLOGY_REQUIRE_CONTROLPLANE=1, CI's "no skipping"
switch): a health check that was never run proves nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BUILD_SH = HERE / "build.sh"


def unavailable(message: str) -> None:
    """Skip, or fail in CI."""
    if os.environ.get("APPTOPOLOGY_REQUIRE_CONTROLPLANE") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def lua_harness() -> Path:
    if shutil.which("go") is None:
        unavailable("go is not on PATH: cannot build the gopher-lua harness")
    built = subprocess.run(["bash", str(BUILD_SH)], capture_output=True, text=True, timeout=1800)
    if built.returncode != 0:
        unavailable(f"building the gopher-lua harness failed:\n{built.stderr[-4000:]}")
    return Path(built.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def kustomize() -> list[str]:
    """A real kustomize: $KUSTOMIZE, the control plane's kubectl (tests/run.sh exports its directory),
    or kustomize/kubectl on PATH."""
    if os.environ.get("KUSTOMIZE"):
        return [os.environ["KUSTOMIZE"], "build"]
    bindir = os.environ.get("APPTOPOLOGY_CONTROLPLANE_BIN")
    if bindir and (Path(bindir) / "kubectl").is_file():
        return [str(Path(bindir) / "kubectl"), "kustomize"]
    for name, verb in (("kustomize", "build"), ("kubectl", "kustomize")):
        found = shutil.which(name)
        if found:
            return [found, verb]
    unavailable("no kustomize: set KUSTOMIZE or APPTOPOLOGY_CONTROLPLANE_BIN, or put kubectl on PATH")
    raise AssertionError("unreachable")
