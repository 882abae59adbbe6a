"""explain, verify, diff and graph as users run them: outputs and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from apptopology.cli import main
from shared import EXAMPLES, ROOT

CASES = ROOT / "tests" / "cases"
THREE_TIER = str(ROOT / "examples" / "three-tier.yaml")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_explain_matrix_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "explain", "-f", THREE_TIER)
    assert code == 0, err
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:5] == ["from", "\\", "to", "frontend", "api"]
    rows = {line.split()[0]: line for line in lines[2:] if line.strip()}
    assert "TCP/8080" in rows["frontend"] and "TCP/5432" in rows["api"]
    # The declared ipBlock's address, not the stand-ins for the rest of the world (--all shows those).
    assert "TCP/80, TCP/443" in rows["128.0.0.1"]
    assert "203.0.113.10" not in out and "production/unlabelled" not in out
    assert "stand-ins for the rest of the world hidden" in out and out.count("cells:") == 1


def test_explain_matrix_all_shows_the_stand_ins(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    code, out, _ = run(capsys, "explain", "-f", THREE_TIER, "--all")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[2:] if line.strip()}
    assert "TCP/80, TCP/443" in rows["203.0.113.10"] and "production/unlabelled" in rows


def test_explain_matrix_fits_the_terminal(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Wider than the terminal (or 120 columns in a pipe): one source at a time, what it reaches and not."""
    monkeypatch.delenv("COLUMNS", raising=False)
    code, out, _ = run(capsys, "explain", "-f", THREE_TIER, "--all")
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 120
    assert "frontend\n  -> api" in out and "TCP/8080" in out and "  denied: database, " in out
    monkeypatch.setenv("COLUMNS", "60")
    code, out, _ = run(capsys, "explain", "-f", THREE_TIER)
    assert max(len(line) for line in out.splitlines()) <= 60


@pytest.mark.parametrize("fmt", ["json", "csv", "md"])
def test_explain_matrix_formats(capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    code, out, _ = run(capsys, "explain", "-f", THREE_TIER, "-o", fmt)
    assert code == 0
    if fmt == "json":
        cells = {(c["from"], c["to"]): c["ports"] for c in json.loads(out)}
        assert cells[("frontend", "api")] == "TCP/8080"
        assert ("frontend", "database") not in cells  # denied pairs are not listed
    elif fmt == "csv":
        assert "frontend,api,TCP/8080" in out
    else:
        assert out.startswith("| from \\ to |") and "| TCP/8080 |" in out


def test_explain_one_question(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "-f", THREE_TIER, "--from", "frontend", "--to", "api", "--port", "8080")
    assert code == 0 and out.startswith("ALLOWED")
    assert "declared by spec.flows[1] (frontend -> api on TCP/8080)" in out
    assert "shop.tier-frontend egress[0]" in out and "shop.tier-api ingress[0]" in out
    code, out, _ = run(
        capsys,
        "explain",
        "-f",
        THREE_TIER,
        "--from",
        "frontend",
        "--to",
        "database",
        "--port",
        "5432/TCP",
        "-o",
        "json",
    )
    verdict = json.loads(out)
    assert code == 1 and verdict["allowed"] is False  # DENIED exits 1, as kubectl auth can-i does
    assert "production/shop.tier-database" in verdict["ingress"]["isolatedBy"]
    assert [f["flow"] for f in verdict["flows"]] == ["spec.flows[1]", "spec.flows[2]"]
    code, out, _ = run(capsys, "explain", "-f", THREE_TIER, "--from", "api", "--to", "198.51.100.7", "--port", "53/UDP")
    assert code == 1 and out.startswith("DENIED")


def test_explain_inventory_and_hand_written_policies(capsys: pytest.CaptureFixture[str]) -> None:
    inventory = str(CASES / "inventory-production.yaml")
    policies = str(CASES / "guide-three-tier.yaml")
    code, out, _ = run(
        capsys,
        "explain",
        "-f",
        policies,
        "--inventory",
        inventory,
        "--from",
        "production/Deployment/api",
        "--to",
        "production/postgres",
        "--port",
        "5432",
    )
    assert code == 0 and out.startswith("ALLOWED")
    # The guide leaves the database's egress open: explain says why.
    code, out, _ = run(
        capsys,
        "explain",
        "-f",
        policies,
        "--inventory",
        inventory,
        "--from",
        "production/postgres",
        "--to",
        "203.0.113.7",
        "--port",
        "443",
        "-o",
        "json",
    )
    verdict = json.loads(out)
    assert verdict["allowed"] is True and verdict["egress"]["status"] == "not-isolated"


@pytest.mark.parametrize(
    "args",
    [
        ["--from", "nope", "--to", "api", "--port", "80"],
        ["--from", "frontend", "--to", "api", "--port", "http"],
        ["--from", "frontend", "--to", "api"],
        ["--from", "frontend", "--to", "api", "--port", "80/ICMP"],
    ],
)
def test_explain_errors_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, out, err = run(capsys, "explain", "-f", THREE_TIER, *args)
    assert code == 2 and out == "" and err.startswith("error: ")


def test_explain_invalid_topology_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(THREE_TIER).read_text().replace("to: {tier: database}", "to: {tier: databse}"))
    code, _, err = run(capsys, "explain", "-f", str(bad))
    assert code == 2 and 'unknown tier "databse"' in err


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_verify_every_example(capsys: pytest.CaptureFixture[str], example: Path) -> None:
    code, out, _ = run(capsys, "verify", "-f", str(example))
    assert code == 0 and out.startswith("OK: ")


def test_verify_hand_written_policies_lists_differences(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "verify", "-f", THREE_TIER, "--policies", str(CASES / "guide-three-tier.yaml"))
    assert code == 1
    assert out.startswith("FAIL: shop:")
    # Grouped by cause, with counts; the pairs on request.
    assert "extra (25 pairs): spec.defaultDeny isolates every pod of production for egress, but no policy" in out
    assert "missing (2 pairs): declared by spec.dns (the policies deny its egress)" in out
    assert "extra   database" not in out
    code, out, _ = run(
        capsys, "verify", "-f", THREE_TIER, "--policies", str(CASES / "guide-three-tier.yaml"), "--pairs"
    )
    # The guide's database egress is open, and its DNS rule is UDP only and the whole kube-system namespace.
    assert "extra   database -> 203.0.113.10 (internet): all" in out
    assert "missing frontend -> kube-system/dns-pod: TCP/53" in out


def test_verify_rendered_policies_given_back(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["render", "-f", THREE_TIER]) == 0
    rendered = tmp_path / "policies.yaml"
    rendered.write_text(capsys.readouterr().out)
    code, out, _ = run(capsys, "verify", "-f", THREE_TIER, "--policies", str(rendered))
    assert code == 0, out


def test_verify_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run(capsys, "verify", "-f", str(tmp_path / "missing.yaml"))[0] == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "x"},
                "spec": {"podSelector": {}, "policyTypes": ["Sideways"]},
            }
        )
    )
    code, _, err = run(capsys, "verify", "-f", THREE_TIER, "--policies", str(broken))
    assert code == 2 and "policyTypes" in err


def test_diff(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    new = tmp_path / "new.yaml"
    new.write_text(Path(THREE_TIER).read_text().replace("ports: [{port: 8080}]", "ports: [{port: 8080}, {port: 9090}]"))
    code, out, _ = run(capsys, "diff", "-f", THREE_TIER, "-f", str(new), "--pairs")
    assert code == 1
    assert out.splitlines() == [
        "1 pair gained connectivity, 0 pairs lost some:",
        "+ added (1 pair): shop spec.flows[1] (frontend -> api on TCP/8080, TCP/9090)",
        "    + frontend -> api: TCP/9090",
    ]
    code, out, _ = run(capsys, "diff", THREE_TIER, THREE_TIER)
    assert code == 0 and "no change" in out
    code, out, _ = run(capsys, "diff", str(new), THREE_TIER, "-o", "json")
    assert code == 1 and json.loads(out) == [{"from": "frontend", "to": "api", "added": None, "removed": "TCP/9090"}]
    assert run(capsys, "diff", THREE_TIER, str(tmp_path / "nope.yaml"))[0] == 2


def test_diff_topology_against_hand_written(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "diff", str(CASES / "guide-three-tier.yaml"), THREE_TIER)
    assert code == 1 and "- " in out


def test_graph(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "graph", "-f", THREE_TIER)
    assert code == 0 and out.startswith("graph LR")
    assert '-->|"TCP/8080"|' in out and "DNS" in out
    code, out, _ = run(capsys, "graph", "-f", THREE_TIER, "-o", "dot")
    assert code == 0 and out.startswith('digraph "shop"') and 'label="TCP/5432"' in out
