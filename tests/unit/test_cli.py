"""The CLI as users and CI run it: a real subprocess, exit codes, stdout and stderr."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from apptopology.cli import main
from shared import EXAMPLES, ROOT, invalid_cases


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "apptopology.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_render_three_tier() -> None:
    result = run("render", "-f", "examples/three-tier.yaml")
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["metadata"]["name"] for d in docs] == [
        "shop.default-deny",
        "shop.allow-dns",
        "shop.tier-frontend",
        "shop.tier-api",
        "shop.tier-database",
    ]
    assert all(d["kind"] == "NetworkPolicy" for d in docs)
    assert result.stderr == ""


def test_render_json_and_stdin() -> None:
    text = (ROOT / "examples" / "three-tier.yaml").read_text()
    result = run("render", "-f", "-", "-o", "json", stdin=text)
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["kind"] == "List" and len(data["items"]) == 5


def test_render_several_files_and_documents(tmp_path: Path) -> None:
    both = tmp_path / "both.yaml"
    both.write_text("\n---\n".join(p.read_text() for p in EXAMPLES[:2]))
    result = run("render", "-f", str(both), "-f", str(EXAMPLES[2]))
    assert result.returncode == 0, result.stderr
    single = sum(len(list(yaml.safe_load_all(run("render", "-f", str(p)).stdout))) for p in EXAMPLES[:3])
    assert len(list(yaml.safe_load_all(result.stdout))) == single


def test_render_directory(tmp_path: Path) -> None:
    """A directory renders every topology under it, nested ones too. (Not examples/ itself: it also holds
    examples/gitops, whose Applications and Deployments are not topologies.)"""
    (tmp_path / "nested").mkdir()
    for i, example in enumerate(EXAMPLES):
        shutil.copy(example, tmp_path / ("nested" if i % 2 else ".") / example.name)
    result = run("render", "-f", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert len(list(yaml.safe_load_all(result.stdout))) > len(EXAMPLES)


@pytest.mark.parametrize("case", invalid_cases(), ids=lambda c: c["id"])
def test_invalid_input_fails_cleanly(case: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """In-process for speed; the subprocess tests above and below cover the real entry point."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(case["document"]))
    for command in ("render", "validate"):
        assert main([command, "-f", str(path)]) == 1
        out, err = capsys.readouterr()
        assert out == ""
        where = f"{path}: document 0: {case['path'] + ': ' if case['path'] else ''}"
        assert any(line.startswith(f"error: {where}") and case["message"] in line for line in err.splitlines()), err


def test_invalid_input_subprocess_has_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump_all([c["document"] for c in invalid_cases()]))
    result = run("render", "-f", str(path))
    assert result.returncode == 1 and result.stdout == ""
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) >= len(invalid_cases())


def test_invalid_second_document_is_located(tmp_path: Path) -> None:
    good = (ROOT / "examples" / "three-tier.yaml").read_text()
    path = tmp_path / "two.yaml"
    path.write_text(good + "\n---\n" + good.replace("to: {tier: database}", "to: {tier: databse}"))
    result = run("render", "-f", str(path))
    assert result.returncode == 1 and result.stdout == ""
    assert f'{path}: document 1: spec.flows[2].to.tier: unknown tier "databse" (declared: api, database, frontend)' in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("content", "fragment"),
    [("a: [1, 2\n", "not valid YAML: line 2"), ("", "no documents"), ("\t- bad", "not valid YAML")],
)
def test_not_yaml(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(content)
    result = run("render", "-f", str(path))
    assert result.returncode == 1 and result.stdout == ""
    assert fragment in result.stderr and "Traceback" not in result.stderr


def test_missing_file() -> None:
    result = run("render", "-f", "does-not-exist.yaml")
    assert result.returncode == 1 and "does-not-exist.yaml: no such file" in result.stderr


def test_validate_ok() -> None:
    result = run("validate", "-f", "examples/three-tier.yaml")
    assert result.returncode == 0
    assert result.stdout.startswith("OK: AppTopology production/shop")


def test_usage_error_exit_2() -> None:
    assert run("render").returncode == 2
    assert run("bogus").returncode == 2


def test_version_and_help() -> None:
    assert run("--version").stdout.startswith("apptopology ")
    assert "render" in run("--help").stdout
