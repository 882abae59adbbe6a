"""The CLI as a platform engineer meets it every day: findings on the real pods (the guide's common issues),
explain's answer in the topology's terms, duplicate policy names, kubectl conventions, errors, and `run`
failing in one line. Inputs are written here or kept in tests/cases/cli/; the checks are about the kind of
mistake, not these files."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from apptopology.analysis.findings import check_inventory, duplicate_names
from apptopology.cli import build_parser, main
from apptopology.cli.documents import KubeLoader, load_documents
from apptopology.evaluator import inventory_from_manifests
from apptopology.render.validation import parse_topology
from shared import ROOT

CLI = ROOT / "tests" / "cases" / "cli"
SHOP = str(CLI / "shop.yaml")
GOOD = str(CLI / "workloads.yaml")
DRIFTED = str(CLI / "workloads-drifted.yaml")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def subprocess_cli(
    *args: str, env: dict[str, str] | None = None, timeout: int = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "apptopology.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def topology(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tiers": [
            {"name": "front", "podSelector": {"matchLabels": {"role": "front"}}},
            {"name": "back", "podSelector": {"matchLabels": {"role": "back"}}},
        ],
        "flows": [{"from": {"tier": "front"}, "to": {"tier": "back"}, "ports": [{"port": 7000}]}],
    }
    base.update(spec)
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": "t", "namespace": "team"},
        "spec": base,
    }


def pod(namespace: str, name: str, labels: dict[str, str], ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "i", **({"ports": ports} if ports is not None else {})}]},
    }


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def findings(doc: dict[str, Any], manifests: list[dict[str, Any]]) -> dict[str, str]:
    return {f.path: f.message for f in check_inventory(parse_topology(doc), inventory_from_manifests(manifests))}


# --- findings on the real pods ----------------------------------------------------------------------------

TEAM = [
    namespace("team"),
    namespace("kube-system"),
    pod("team", "front-1", {"role": "front"}, [{"containerPort": 80}]),
    pod("team", "back-1", {"role": "back"}, [{"containerPort": 7000, "name": "rpc"}]),
    pod(
        "kube-system",
        "dns-1",
        {"k8s-app": "kube-dns"},
        [{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 53}],
    ),
]


def test_a_topology_that_fits_its_pods_has_no_finding() -> None:
    assert findings(topology(), TEAM) == {}


def test_a_tier_selecting_no_pod_is_found_with_what_the_pods_carry() -> None:
    doc = topology()
    doc["spec"]["tiers"][1]["podSelector"] = {"matchLabels": {"role": "backend"}}
    found = findings(doc, TEAM)
    assert list(found) == ["spec.tiers[1].podSelector"]
    assert "tier back selects no pod of namespace team" in found["spec.tiers[1].podSelector"]
    assert "role: back, front" in found["spec.tiers[1].podSelector"]  # the typo is visible next to it


def test_a_namespace_selector_by_a_label_the_namespace_lacks_is_found_with_both_fixes() -> None:
    doc = topology(
        flows=[
            {
                "from": {"namespaceSelector": {"matchLabels": {"team": "ops"}}},
                "to": {"tier": "back"},
                "ports": [{"port": 7000}],
            }
        ]
    )
    found = findings(doc, [*TEAM, namespace("ops")])
    message = found["spec.flows[0].from.namespaceSelector"]
    assert "matches no namespace" in message and "kubectl label namespace ops team=ops" in message
    assert "kubernetes.io/metadata.name: ops" in message
    assert findings(doc, [*TEAM, namespace("ops", team="ops"), pod("ops", "x", {"app": "x"})]) == {}


def test_a_peer_pod_selector_matching_nothing_is_found() -> None:
    doc = topology(
        flows=[
            {"from": {"tier": "front"}, "to": {"tier": "back"}, "ports": [{"port": 7000}]},
            {"from": {"tier": "back"}, "to": {"podSelector": {"matchLabels": {"role": "cache"}}}},
        ],
        defaultDeny={"scope": "Tiers"},
    )
    assert "matches no pod in namespace team" in findings(doc, TEAM)["spec.flows[1].to.podSelector"]


@pytest.mark.parametrize(
    ("port", "kind"),
    [
        ({"port": 7001}, "port TCP/7001"),
        ({"port": "grpc"}, "named port TCP/grpc"),
        ({"port": 7000, "protocol": "UDP"}, "port UDP/7000"),
    ],
)
def test_a_port_no_container_declares_is_found(port: dict[str, Any], kind: str) -> None:
    doc = topology(flows=[{"from": {"tier": "front"}, "to": {"tier": "back"}, "ports": [port]}])
    message = findings(doc, TEAM)["spec.flows[0].ports[0]"]
    assert message.startswith(f"{kind} is declared by no container of tier back's pods")
    assert "TCP/7000 (rpc)" in message


def test_ports_declared_by_number_name_or_range_are_not_findings() -> None:
    for port in ({"port": 7000}, {"port": "rpc"}, {"port": 6990, "endPort": 7010}, {"protocol": "UDP"}):
        doc = topology(flows=[{"from": {"tier": "front"}, "to": {"tier": "back"}, "ports": [port]}])
        assert findings(doc, TEAM) == {}, port


def test_dns_selecting_no_pod_is_found() -> None:
    assert "name resolution" in findings(topology(), TEAM[:4])["spec.dns.podSelector"]


def test_verify_fails_on_findings_located_to_the_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "verify", "-f", SHOP, "--inventory", GOOD)
    assert code == 0 and "finding" not in out
    code, out, _ = run(capsys, "verify", "-f", SHOP, "--inventory", DRIFTED)
    assert code == 1
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith("error: ")]
    text = Path(SHOP).read_text().splitlines()
    located = {}
    for line in lines:
        match = re.fullmatch(r"error: (\S+): document 0: (\S+): .* \(line (\d+)\)", line)
        assert match, line
        located[match.group(2)] = int(match.group(3))
    assert set(located) == {
        "spec.tiers[2].podSelector",
        "spec.flows[2].from.namespaceSelector",
        "spec.flows[0].ports[0]",
        "spec.flows[2].ports[0]",
    }
    # Each line is where the field is written.
    assert "podSelector" in text[located["spec.tiers[2].podSelector"] - 1]
    assert "namespaceSelector" in text[located["spec.flows[2].from.namespaceSelector"] - 1]
    assert "8080" in text[located["spec.flows[0].ports[0]"] - 1]
    code, out, _ = run(capsys, "verify", "-f", SHOP, "--inventory", DRIFTED, "--warn-only")
    assert code == 0 and "WARN: shop: 4 findings" in out


def test_verify_says_when_policies_are_of_another_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "verify", "-f", SHOP, "--policies", str(CLI / "policies-staging.yaml"))
    assert code == 1
    first = out.splitlines()[0]
    assert first.startswith("FAIL: ") and "policies-staging.yaml: document 0: metadata.namespace:" in first
    assert "namespace staging" in first and "shop in production" in first and first.endswith("(line 6)")


def test_topology_without_a_namespace_against_policies_of_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    doc = topology()
    del doc["metadata"]["namespace"]
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(doc))
    code, out, _ = run(
        capsys, "verify", "-f", str(tmp_path / "t.yaml"), "--policies", str(CLI / "policies-staging.yaml")
    )
    assert code == 1 and "t in default" in out


def test_explain_denied_names_the_flow_and_why(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "-f", SHOP, "--from", "web", "--to", "api", "--port", "8000")
    assert code == 1 and out.startswith("DENIED web -> api TCP/8000")
    assert "spec.flows[0] (web -> api on TCP/8080): does not apply: it allows TCP/8080, not TCP/8000" in out
    # Policy names stay, as detail, after the topology's terms.
    assert out.index("spec.flows[0]") < out.index("production/shop.tier-api")


def test_explain_denied_when_a_tier_selects_no_pod(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "explain", "-f", SHOP, "--inventory", DRIFTED, "--from", "api", "--to", "db", "--port", "5432"
    )
    assert code == 1 and out.startswith("DENIED api -> db TCP/5432")
    assert "tier db selects no pod of the inventory (spec.tiers[2].podSelector" in out
    assert "declared by spec.flows[1] (api -> db on TCP/5432)" in out
    assert "warning: " in err and "spec.tiers[2].podSelector" in err  # the findings, as warnings
    code, out, _ = run(
        capsys,
        "explain",
        "-f",
        SHOP,
        "--inventory",
        DRIFTED,
        "--from",
        "api",
        "--to",
        "db",
        "--port",
        "5432",
        "-o",
        "json",
    )
    data = json.loads(out)
    assert code == 1 and data["allowed"] is False and data["egress"] is None
    assert data["flows"][0]["flow"] == "spec.flows[1]"


def test_explain_allowed_names_the_declaring_flow(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "explain",
        "-f",
        SHOP,
        "--inventory",
        GOOD,
        "--from",
        "monitoring/Deployment/prometheus",
        "--to",
        "api",
        "--port",
        "9090",
    )
    assert code == 0 and out.startswith("ALLOWED") and "declared by spec.flows[2]" in out


# --- duplicate policy names -------------------------------------------------------------------------------


def duplicated(tmp_path: Path) -> str:
    policy = yaml.safe_load((CLI / "policies-staging.yaml").read_text())
    other = json.loads(json.dumps(policy))
    other["spec"]["ingress"][0]["ports"] = [{"port": 9999}]
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump_all([policy, other]))
    return str(path)


@pytest.mark.parametrize(
    "command",
    [
        ["explain", "-f", "{dup}"],
        ["verify", "-f", SHOP, "--policies", "{dup}"],
        ["import", "-f", "{dup}"],
        ["diff", "-f", "{dup}", "-f", SHOP],
        ["diff", "-f", SHOP, "-f", "{dup}"],
    ],
    ids=["explain", "verify", "import", "diff-old", "diff-new"],
)
def test_duplicate_policy_names_are_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    dup = duplicated(tmp_path)
    code, out, err = run(capsys, *[a.replace("{dup}", dup) for a in command])
    assert code == 2 and out == ""
    assert (
        f"error: {dup}: document 1: metadata.name: NetworkPolicy staging/api is given twice (also {dup}: document 0"
        in err
    )
    assert "keeps only the" in err


def test_a_given_policy_named_like_a_rendered_one_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["render", "-f", SHOP]) == 0
    (tmp_path / "rendered.yaml").write_text(capsys.readouterr().out)
    code, _, err = run(capsys, "explain", "-f", SHOP, "-f", str(tmp_path / "rendered.yaml"))
    assert code == 2 and "given twice" in err


def test_the_projects_own_cases_have_no_duplicate_policy_names() -> None:
    files = sorted({*ROOT.glob("tests/**/*.yaml"), *ROOT.glob("examples/**/*.yaml"), *ROOT.glob("docs/**/*.yaml")})
    checked = 0
    for path in files:
        try:
            docs = load_documents([str(path)])
        except Exception:  # not all of them are single YAML streams (kustomize patches, Lua tests)
            continue
        policies = [d.data for d in docs if isinstance(d.data, dict) and d.data.get("kind") == "NetworkPolicy"]
        checked += len(policies)
        assert duplicate_names(policies) == [], path
    assert checked > 50


# --- suggest leaves the cluster's own namespaces alone ------------------------------------------------------


def test_suggest_skips_system_and_dns_namespaces_unless_named(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "suggest", "-f", str(CLI / "flows.jsonl"))
    assert code == 0
    namespaces = [d["metadata"]["namespace"] for d in yaml.safe_load_all(out) if d]
    assert namespaces == ["production"]
    assert "namespace kube-system: not suggested: a namespace of the cluster itself (name it with -n kube-system" in err
    code, out, _ = run(capsys, "suggest", "-f", str(CLI / "flows.jsonl"), "-n", "kube-system")
    assert [d["metadata"]["namespace"] for d in yaml.safe_load_all(out) if d] == ["kube-system"]


def test_suggest_skips_a_namespace_serving_dns_without_upstream_evidence(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    line = {
        "source": {"namespace": "apps", "labels": {"app": "web"}},
        "destination": {"namespace": "dns", "labels": {"k8s-app": "coredns"}},
        "protocol": "UDP",
        "port": 53,
    }
    path = tmp_path / "f.jsonl"
    path.write_text(json.dumps(line) + "\n")
    code, out, err = run(capsys, "suggest", "-f", str(path))
    assert code == 0 and [d["metadata"]["namespace"] for d in yaml.safe_load_all(out) if d] == ["apps"]
    assert "namespace dns: not suggested: it serves DNS" in err
    upstream = {
        "source": {"namespace": "dns", "labels": {"k8s-app": "coredns"}},
        "destination": {"ip": "8.8.8.8"},
        "protocol": "UDP",
        "port": 53,
    }
    path.write_text(json.dumps(line) + "\n" + json.dumps(upstream) + "\n")
    _, out, err = run(capsys, "suggest", "-f", str(path))
    assert sorted(d["metadata"]["namespace"] for d in yaml.safe_load_all(out) if d) == ["apps", "dns"]


# --- kubectl conventions ----------------------------------------------------------------------------------

COMMANDS = ["render", "validate", "explain", "verify", "diff", "graph", "import", "suggest", "run", "completion"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_has_examples_and_exit_codes(command: str) -> None:
    text = build_parser("apptopology")._subparsers._group_actions[0].choices[command].format_help()  # type: ignore[union-attr]
    assert "examples:\n  # " in text and f"\n  apptopology {command}" in text
    assert "exit codes: 0" in text


@pytest.mark.parametrize("command", ["render", "explain", "verify", "diff", "import", "run"])
def test_commands_reaching_a_cluster_take_kubeconfig_context_and_namespace(command: str) -> None:
    text = build_parser("apptopology")._subparsers._group_actions[0].choices[command].format_help()  # type: ignore[union-attr]
    for flag in ("--kubeconfig", "--context", "-n NS, --namespace NS", "-f"):
        assert flag in text, flag


def test_kubectl_plugin_usage_says_kubectl_apptopology(tmp_path: Path) -> None:
    plugin = tmp_path / "kubectl-apptopology"
    plugin.write_text(f"#!{sys.executable}\nimport sys\nfrom apptopology.cli import main\nsys.exit(main())\n")
    plugin.chmod(0o755)
    result = subprocess.run([str(plugin), "verify", "--help"], capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("usage: kubectl apptopology verify")
    assert "\n  kubectl apptopology verify -f shop.yaml" in result.stdout
    result = subprocess.run([str(plugin), "verify"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "usage: kubectl apptopology verify" in result.stderr


def test_completion_scripts(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, bash, _ = run(capsys, "completion", "bash")
    assert code == 0 and "complete -o default -F _apptopology apptopology kubectl-apptopology" in bash
    assert 'verify\\ -o|verify\\ --output) COMPREPLY=($(compgen -W "text json yaml"' in bash
    (tmp_path / "c.bash").write_text(bash)
    assert subprocess.run(["bash", "-n", str(tmp_path / "c.bash")], capture_output=True).returncode == 0

    # The script completes: commands, then a command's flags.
    def complete(*words: str) -> list[str]:
        probe = f"source {tmp_path / 'c.bash'}; COMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}; "
        probe += '_apptopology; echo "${COMPREPLY[@]}"'
        return subprocess.run(["bash", "-c", probe], capture_output=True, text=True).stdout.split()

    assert complete("apptopology", "ver") == ["verify"]
    assert complete("apptopology", "diff", "--pa") == ["--pairs"]
    assert complete("apptopology", "explain", "-o", "j") == ["json"]
    code, zsh, _ = run(capsys, "completion", "zsh")
    assert code == 0 and zsh.startswith("#compdef apptopology") and "bashcompinit" in zsh
    code, fish, _ = run(capsys, "completion", "fish")
    assert code == 0 and "complete -c apptopology -n __fish_use_subcommand -a verify" in fish
    assert "complete -c kubectl-apptopology -n '__fish_seen_subcommand_from explain' -l all" in fish
    if shutil.which("fish"):
        (tmp_path / "c.fish").write_text(fish)
        assert subprocess.run(["fish", "-n", str(tmp_path / "c.fish")]).returncode == 0


def test_diff_takes_its_revisions_with_f(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "diff", "-f", SHOP, "-f", SHOP)[:2] == (0, "no change in connectivity\n")
    code, _, err = run(capsys, "diff", "-f", SHOP)
    assert code == 2 and "two revisions" in err


def test_namespace_flag_fills_in_and_refuses_others(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    doc = topology()
    del doc["metadata"]["namespace"]
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(doc))
    code, out, _ = run(capsys, "render", "-f", str(tmp_path / "t.yaml"), "-n", "blue", "-o", "json")
    assert code == 0 and {p["metadata"]["namespace"] for p in json.loads(out)["items"]} == {"blue"}
    code, _, err = run(capsys, "render", "-f", SHOP, "-n", "blue")
    assert code == 1 and "metadata.namespace: the document's namespace production does not match -n blue" in err


# --- errors -----------------------------------------------------------------------------------------------


def test_a_tab_is_named_as_the_cause(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(Path(SHOP).read_text().replace("  tiers:\n", "\ttiers:\n", 1))
    result = subprocess_cli("validate", "-f", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "a tab character" in result.stderr and "line 7" in result.stderr


def test_render_on_network_policies_points_to_import(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(CLI / "policies-staging.yaml")
    code, out, err = run(capsys, "render", "-f", path)
    assert code == 1 and out == ""
    assert f"`apptopology import -f {path}`" in err


def test_the_suggested_fix_pastes_as_valid_yaml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    doc = topology(
        flows=[{"from": {"tier": "front"}, "to": {"podSelector": {"matchLabels": {"app": "redis", "on": "yes"}}}}]
    )
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(doc))
    code, _, err = run(capsys, "validate", "-f", str(tmp_path / "t.yaml"))
    assert code == 1
    fix = re.search(r"declare them as a tier \((tiers: .*?)\) and use", err)
    assert fix, err
    pasted = KubeLoader(fix.group(1)).get_single_data()
    assert pasted == {"tiers": [{"name": "NAME", "podSelector": {"matchLabels": {"app": "redis", "on": "yes"}}}]}


def test_counts_read_right(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    doc = topology(
        tiers=[{"name": "only", "podSelector": {}}], flows=[{"from": {"tier": "only"}, "to": {"tier": "only"}}]
    )
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(doc))
    code, out, _ = run(capsys, "validate", "-f", str(tmp_path / "t.yaml"))
    assert code == 0 and out == "OK: AppTopology team/t (1 tier, 1 flow)\n"


# --- run fails in one line ----------------------------------------------------------------------------------


def one_line_failure(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr


def test_run_without_a_kubeconfig(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "missing"), "KUBERNETES_SERVICE_HOST": ""}
    one_line_failure(subprocess_cli("run", "--liveness", "", env=env), "no usable kubeconfig")
    result = subprocess_cli("run", "--liveness", "", "--kubeconfig", str(tmp_path / "nope.yaml"), env=env)
    one_line_failure(result, "nope.yaml")


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_with_an_unreachable_server_or_unknown_context(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path, f"https://127.0.0.1:{free_port()}")
    result = subprocess_cli("run", "--liveness", "", "--kubeconfig", str(config), env={"KUBERNETES_SERVICE_HOST": ""})
    one_line_failure(result, "cannot be reached")
    result = subprocess_cli("run", "--liveness", "", "--kubeconfig", str(config), "--context", "other")
    one_line_failure(result, "other")


@pytest.mark.parametrize("flag", ["--liveness", "--metrics-port"])
def test_run_with_its_port_in_use(tmp_path: Path, flag: str) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = (
            ["--liveness", f"http://127.0.0.1:{port}/healthz"]
            if flag == "--liveness"
            else ["--liveness", "", "--metrics-port", str(port)]
        )
        result = subprocess_cli("run", *args, "--kubeconfig", str(kubeconfig(tmp_path, "https://127.0.0.1:1")))
    one_line_failure(result, f"{flag}")
    assert f":{port}" in result.stderr and "in use" in result.stderr


# --- graph: one document for several topologies ---------------------------------------------------------------


def test_graph_of_several_topologies_is_one_document(capsys: pytest.CaptureFixture[str]) -> None:
    examples = [
        str(ROOT / "examples" / n) for n in ("three-tier.yaml", "cross-namespace.yaml", "allow-monitoring.yaml")
    ]
    code, out, _ = run(capsys, "graph", *[a for e in examples for a in ("-f", e)], "-o", "dot")
    assert code == 0 and out.count("digraph") == 1 and out.startswith('digraph "apptopology"')
    assert 'size="10.5,7.5"' in out
    assert 'label="namespace production"' in out and 'label="topology shop"' in out and 'label="topology orders"' in out
    # The default DNS peer sits in kube-system's box, once for every topology that uses it.
    assert out.count('label="namespace kube-system"') == 1
    assert out.count("DNS: pods {k8s-app=kube-dns}") == 1
    code, out, _ = run(capsys, "graph", *[a for e in examples for a in ("-f", e)])
    assert code == 0 and out.count("graph LR") == 1 and out.count('["namespace production"]') == 1
