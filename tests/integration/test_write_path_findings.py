"""Each failure the judge found on the write path, as a named regression scenario (tests/integration/findings.yaml).

A scenario passes when the judge finds nothing: every recorded state within the old or the new revision,
no dry run that wrote, nothing of anyone else's adopted, the expected end state. While a finding is open it
is an expected failure (strict by default: the test fails loudly once the fix lands, and the mark comes
off); ``strict: false`` for one that fails in some runs only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from drive import Env, run
from harness import Cluster, ControlPlane, Operator
from scenarios import from_dict

pytestmark = pytest.mark.integration

FINDINGS: list[dict[str, Any]] = yaml.safe_load((Path(__file__).parent / "findings.yaml").read_text())


def _marks(finding: dict[str, Any]) -> list[pytest.MarkDecorator]:
    if finding.get("status") != "open":
        return []
    reason = f"issue 17: {finding.get('now') or finding['finding']}"
    return [pytest.mark.xfail(strict=finding.get("strict", True), reason=reason)]


@pytest.mark.parametrize("finding", [pytest.param(f, id=f["name"], marks=_marks(f)) for f in FINDINGS])
def test_finding(
    finding: dict[str, Any], cluster: Cluster, controlplane: ControlPlane, running_operator: Operator
) -> None:
    env = Env(controlplane, cluster, running_operator)
    outcome = run(from_dict(finding["scenario"]), env)
    print(outcome.report())
    assert not outcome.failed, outcome.report()
