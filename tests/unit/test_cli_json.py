"""The -o json shape of every command that prints results, held by golden files (tests/unit/golden/cli/).

The shapes are the CLI's interface for CI (docs/cli/json.md): a change here is a change for every script
that reads them. Fields may be added (rewrite the files with APPTOPOLOGY_UPDATE_GOLDEN=1 and say so in the
docs); renaming or removing one is a breaking change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from apptopology.cli import main
from shared import ROOT

GOLDEN = Path(__file__).parent / "golden" / "cli"
UPDATE = os.environ.get("APPTOPOLOGY_UPDATE_GOLDEN") == "1"
C = "tests/cases/cli"

COMMANDS = {
    "render": (["render", "-f", f"{C}/shop.yaml"], 0),
    "validate": (["validate", "-f", f"{C}/shop.yaml", "-f", "examples/three-tier.yaml"], 0),
    "validate-invalid": (["validate", "-f", f"{C}/policies-staging.yaml"], 1),
    "explain-matrix": (["explain", "-f", f"{C}/shop.yaml"], 0),
    "explain-allowed": (["explain", "-f", f"{C}/shop.yaml", "--from", "web", "--to", "api", "--port", "8080"], 0),
    "explain-denied": (["explain", "-f", f"{C}/shop.yaml", "--from", "web", "--to", "db", "--port", "5432"], 1),
    "verify": (["verify", "-f", f"{C}/shop.yaml", "--inventory", f"{C}/workloads.yaml"], 0),
    "verify-findings": (["verify", "-f", f"{C}/shop.yaml", "--inventory", f"{C}/workloads-drifted.yaml"], 1),
    "verify-differences": (
        ["verify", "-f", "examples/three-tier.yaml", "--policies", "tests/cases/guide-three-tier.yaml"],
        1,
    ),
    "verify-namespace": (["verify", "-f", "examples/three-tier.yaml", "-f", "examples/cross-namespace.yaml"], 1),
    "diff": (["diff", "-f", "tests/cases/guide-three-tier.yaml", "-f", "examples/three-tier-guide.yaml"], 0),
    "diff-changes": (["diff", "-f", "examples/three-tier-guide.yaml", "-f", "examples/three-tier.yaml"], 1),
    "import": (["import", "-f", "tests/cases/guide-three-tier.yaml"], 0),
    "suggest": (["suggest", "-f", f"{C}/flows.jsonl"], 0),
    "suggest-against": (["suggest", "-f", f"{C}/flows.jsonl", "--against", f"{C}/shop.yaml"], 0),
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_json_shape(name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    args, expected_code = COMMANDS[name]
    monkeypatch.chdir(ROOT)
    code = main([*args, "-o", "json"])
    out = capsys.readouterr().out
    assert code == expected_code
    data = json.loads(out)
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    golden = GOLDEN / f"{name}.json"
    if UPDATE:
        golden.write_text(text)
    assert golden.exists(), f"missing golden file {golden.name}; run with APPTOPOLOGY_UPDATE_GOLDEN=1"
    assert text == golden.read_text()


def test_yaml_is_the_same_data(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """-o yaml gives the same document as -o json, for the result commands."""
    import yaml

    monkeypatch.chdir(ROOT)
    for name in ("validate", "verify-findings", "explain-denied", "diff-changes", "suggest-against"):
        args, _ = COMMANDS[name]
        main([*args, "-o", "json"])
        as_json = json.loads(capsys.readouterr().out)
        main([*args, "-o", "yaml"])
        assert yaml.safe_load(capsys.readouterr().out) == as_json, name


def test_every_result_command_has_a_golden_json() -> None:
    """render, validate, explain, verify, diff, import and suggest: each has at least one shape held here."""
    commands = {args[0] for args, _ in COMMANDS.values()}
    assert commands == {"render", "validate", "explain", "verify", "diff", "import", "suggest"}
