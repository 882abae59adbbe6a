"""Every example and a few dozen generated topologies on real packets: observed == explain, probe by probe.

See matrix.py for what one case does. Each case starts from an empty node and leaves it empty, so cases
are independent; a failure lists every disagreeing probe with explain's reasons.
"""

from __future__ import annotations

from typing import Any

import pytest
from matrix import REPORTS, Case

from cases import examples, generated
from dataplane import Dataplane


@pytest.mark.parametrize(("case_id", "doc"), [*examples(), *generated()], ids=lambda v: v if isinstance(v, str) else "")
def test_packets_follow_explain(dataplane: Dataplane, case_id: str, doc: dict[str, Any]) -> None:
    case = Case(dataplane, case_id, doc)
    try:
        report = case.run()
    finally:
        case.teardown()
    REPORTS.append(report)
    print(report.line())
    assert report.probes > 0 and report.agree + len(report.deviations) == report.probes
