"""examples/gitops: the Applications, the repository layout, the plugin and the CI script a team copies.

The plugin's generate command runs the way Argo CD's cmp-server runs it: ``command + args`` (here
``sh -c``) executed in the Application's source directory of a copy of the repository, with the
sidecar's environment, Argo CD's build environment (``ARGOCD_APP_*``, ``KUBE_*``) and the Application's
plugin env prefixed ``ARGOCD_ENV_`` (entries with empty values dropped). Its output must be exactly the
NetworkPolicies ``apptopology render`` prints.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from apptopology.evaluator.policy import parse_policy
from apptopology.render.validation import parse_topology
from shared import ROOT

GITOPS = ROOT / "examples" / "gitops"
TEAM = GITOPS / "team"
PLATFORM = GITOPS / "platform"
PLUGIN = yaml.safe_load((PLATFORM / "apptopology-cmp" / "plugin.yaml").read_text())
BIN = Path(sys.executable).parent  # where the apptopology CLI is installed (the sidecar image has it on PATH)

Obj = dict[str, Any]


def load_all(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def application(name: str) -> Obj:
    (app,) = load_all(TEAM / "argocd" / name)
    return app


def plugin_source(app: Obj) -> Obj:
    (source,) = [s for s in app["spec"]["sources"] if "plugin" in s]
    return dict(source)


def sidecar_env(**extra: str) -> dict[str, str]:
    """The sidecar's own environment: a PATH with the apptopology CLI, nothing of the test runner's."""
    return {"PATH": f"{BIN}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": "/home/argocd", **extra}


def build_env(app: Obj, source: Obj) -> dict[str, str]:
    """Argo CD's build environment for a source of an Application (docs: user-guide/build-environment)."""
    revision = "f913b6cbf58aa5ae5ca1f8a2b149477aebcbd9d8"
    return {
        "ARGOCD_APP_NAME": app["metadata"]["name"],
        "ARGOCD_APP_NAMESPACE": app["spec"]["destination"]["namespace"],
        "ARGOCD_APP_PROJECT_NAME": app["spec"]["project"],
        "ARGOCD_APP_REVISION": revision,
        "ARGOCD_APP_REVISION_SHORT": revision[:7],
        "ARGOCD_APP_REVISION_SHORT_8": revision[:8],
        "ARGOCD_APP_SOURCE_PATH": source["path"],
        "ARGOCD_APP_SOURCE_REPO_URL": source["repoURL"],
        "ARGOCD_APP_SOURCE_TARGET_REVISION": source["targetRevision"],
        "KUBE_VERSION": "1.37.2",
        "KUBE_API_VERSIONS": "v1,apps/v1,networking.k8s.io/v1,apptopology.io/v1alpha1",
    }


def plugin_env(source: Obj) -> dict[str, str]:
    entries = source["plugin"].get("env") or []
    return {f"ARGOCD_ENV_{e['name']}": e["value"] for e in entries if e.get("name") and e.get("value")}


def run_command(command: Obj, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [*command["command"], *command.get("args", [])]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def generate(repo: Path, app: Obj, source: Obj, **env: str) -> subprocess.CompletedProcess[str]:
    """One manifest generation of the sidecar: init (if any), then generate, in the source directory."""
    full_env = {**sidecar_env(), **build_env(app, source), **plugin_env(source), **env}
    app_dir = repo / source["path"]
    if PLUGIN["spec"].get("init", {}).get("command"):
        init = run_command(PLUGIN["spec"]["init"], app_dir, full_env)
        assert init.returncode == 0, init.stderr
    return run_command(PLUGIN["spec"]["generate"], app_dir, full_env)


def render_cli(*paths: Path) -> list[Obj]:
    args = [a for p in paths for a in ("-f", str(p))]
    out = subprocess.run([str(BIN / "apptopology"), "render", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """The team's repository as the sidecar receives it: a copy."""
    target = tmp_path / "repo"
    shutil.copytree(TEAM, target)
    return target


# --- the plugin -----------------------------------------------------------------------------------------


def test_plugin_definition() -> None:
    assert (PLUGIN["apiVersion"], PLUGIN["kind"]) == ("argoproj.io/v1alpha1", "ConfigManagementPlugin")
    assert "version" not in PLUGIN["spec"]  # so Applications name it plainly
    assert plugin_source(application("shop-rendered.yaml"))["plugin"]["name"] == PLUGIN["metadata"]["name"]
    assert PLUGIN["spec"]["generate"]["command"] == ["sh", "-c"]


def test_generate_prints_exactly_what_apptopology_render_prints(repo: Path) -> None:
    app = application("shop-rendered.yaml")
    source = plugin_source(app)
    # Another topology beside it: the Application's TOPOLOGIES must select shop.yaml alone.
    other = {**load_all(TEAM / "shop" / "network" / "shop.yaml")[0], "metadata": {"name": "other"}}
    (repo / source["path"] / "other.yaml").write_text(yaml.safe_dump(other))
    out = generate(repo, app, source)
    assert out.returncode == 0, out.stderr
    manifests = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert manifests, "no manifests"
    for manifest in manifests:
        assert (manifest["apiVersion"], manifest["kind"]) == ("networking.k8s.io/v1", "NetworkPolicy")
        parse_policy(manifest)  # the evaluator's strict NetworkPolicy v1 reader
        assert not any(k.startswith("argocd.argoproj.io/") for k in manifest["metadata"].get("annotations", {}))
    expected = render_cli(repo / source["path"] / plugin_env(source)["ARGOCD_ENV_TOPOLOGIES"])
    assert manifests == expected
    assert {m["metadata"]["name"] for m in manifests} >= {"shop.default-deny", "shop.allow-dns", "shop.tier-api"}


def test_generate_without_env_renders_the_whole_directory(repo: Path) -> None:
    app = application("shop-rendered.yaml")
    source = {**plugin_source(app), "plugin": {"name": "apptopology"}}
    (repo / source["path"] / "more.yaml").write_text(
        yaml.safe_dump({**load_all(TEAM / "shop" / "network" / "shop.yaml")[0], "metadata": {"name": "more"}})
    )
    out = generate(repo, app, source)
    assert out.returncode == 0, out.stderr
    rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert rendered == render_cli(repo / source["path"])
    assert {m["metadata"]["labels"]["apptopology.io/topology"] for m in rendered} == {"shop", "more"}


def test_generate_fails_closed_on_an_invalid_topology(repo: Path) -> None:
    app = application("shop-rendered.yaml")
    source = plugin_source(app)
    topology = repo / source["path"] / "shop.yaml"
    topology.write_text(topology.read_text().replace("to: {tier: database}", "to: {tier: databse}"))
    out = generate(repo, app, source)
    assert out.returncode != 0  # Argo CD fails the manifest generation and applies nothing
    assert out.stdout == ""
    assert 'unknown tier "databse"' in out.stderr


def test_discovery_matches_a_repository_with_topologies_only(repo: Path, tmp_path: Path) -> None:
    find = PLUGIN["spec"]["discover"]["find"]
    found = run_command(find, repo, sidecar_env())  # runs in the repository's root
    assert found.returncode == 0 and found.stdout.strip() == "./shop/network/shop.yaml"
    other = tmp_path / "other"
    shutil.copytree(TEAM / "shop" / "workloads", other)
    found = run_command(find, other, sidecar_env())
    assert found.returncode == 0 and found.stdout == ""


# --- the team's Applications and layout -----------------------------------------------------------------


def test_both_applications_share_the_layout() -> None:
    with_operator, rendered = application("shop.yaml"), application("shop-rendered.yaml")
    for app in (with_operator, rendered):
        assert app["kind"] == "Application"
        for source in app["spec"]["sources"]:
            assert (TEAM / source["path"]).is_dir(), source["path"]
    paths = [[s["path"] for s in app["spec"]["sources"]] for app in (with_operator, rendered)]
    assert paths[0] == paths[1] == ["shop/network", "shop/workloads"]
    assert not any("plugin" in s for s in with_operator["spec"]["sources"])
    assert with_operator["spec"]["destination"] == rendered["spec"]["destination"]


def test_topology_waits_for_the_crd_and_gates_the_workloads(kustomize: list[str]) -> None:
    (topology,) = load_all(TEAM / "shop" / "network" / "shop.yaml")
    parse_topology(topology)
    annotations = topology["metadata"]["annotations"]
    assert int(annotations["argocd.argoproj.io/sync-wave"]) < 0
    assert annotations["argocd.argoproj.io/sync-options"] == "SkipDryRunOnMissingResource=true"
    out = subprocess.run([*kustomize, str(TEAM / "shop" / "workloads")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    workloads = [d for d in yaml.safe_load_all(out.stdout) if d]
    for workload in workloads:
        assert int(workload["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0")) == 0
    for tier in topology["spec"]["tiers"]:
        selector = tier["podSelector"]["matchLabels"].items()
        selected = [
            w["metadata"]["name"] for w in workloads if selector <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected == [tier["name"]], tier  # every tier selects its Deployment's pods, and only those


def test_ci_script_renders_and_checks(repo: Path) -> None:
    script = repo / "ci" / "render-policies.sh"
    env = sidecar_env()
    written = subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert written.returncode == 0, written.stderr
    output = repo / "shop" / "network-rendered" / "policies.yaml"
    assert load_all(output) == render_cli(repo / "shop" / "network")
    checked = subprocess.run(["sh", str(script), "--check"], capture_output=True, text=True, env=env, timeout=120)
    assert checked.returncode == 0, checked.stderr
    topology = repo / "shop" / "network" / "shop.yaml"
    topology.write_text(topology.read_text().replace("ports: [{port: 5432}]", "ports: [{port: 5433}]"))
    stale = subprocess.run(["sh", str(script), "--check"], capture_output=True, text=True, env=env, timeout=120)
    assert stale.returncode == 1
    assert "is not what shop/network renders to" in stale.stderr


# --- the platform's Argo CD -------------------------------------------------------------------------------


def argocd_install() -> list[Obj]:
    """Stand-in for Argo CD's install manifests: the two objects apptopology changes."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-cm", "labels": {"app.kubernetes.io/part-of": "argocd"}},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "argocd-repo-server"},
            "spec": {
                "selector": {"matchLabels": {"app.kubernetes.io/name": "argocd-repo-server"}},
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": "argocd-repo-server"}},
                    "spec": {
                        "containers": [{"name": "argocd-repo-server", "image": "argocd"}],
                        "volumes": [{"name": "var-files", "emptyDir": {}}, {"name": "plugins", "emptyDir": {}}],
                    },
                },
            },
        },
    ]


def test_platform_argocd_kustomization(kustomize: list[str], tmp_path: Path) -> None:
    """The example with its remote Argo CD install replaced by a local stand-in, everything else as is."""
    example_dir = PLATFORM / "argocd"
    kustomization = yaml.safe_load((example_dir / "kustomization.yaml").read_text())
    (remote,) = kustomization["resources"]
    assert remote.startswith("https://") and remote.endswith("/manifests/install.yaml")
    install = tmp_path / "install"
    install.mkdir()
    (install / "install.yaml").write_text(yaml.safe_dump_all(argocd_install()))
    (install / "kustomization.yaml").write_text(yaml.safe_dump({"resources": ["install.yaml"]}))
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    kustomization["resources"] = [os.path.relpath(install, overlay)]
    kustomization["components"] = [
        os.path.relpath((example_dir / c).resolve(), overlay) for c in kustomization["components"]
    ]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    out = subprocess.run([*kustomize, str(overlay)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    objects = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(out.stdout) if o}
    assert {o["metadata"]["namespace"] for o in objects.values()} == {"argocd"}

    health = (ROOT / "deploy" / "components" / "argocd-health" / "health.lua").read_text()
    assert objects["ConfigMap", "argocd-cm"]["data"] == {
        "resource.customizations.health.apptopology.io_AppTopology": health
    }

    (plugin_cm,) = [
        o for (kind, name), o in objects.items() if kind == "ConfigMap" and name.startswith("apptopology-cmp")
    ]
    assert plugin_cm["data"] == {"plugin.yaml": (PLATFORM / "apptopology-cmp" / "plugin.yaml").read_text()}
    pod = objects["Deployment", "argocd-repo-server"]["spec"]["template"]["spec"]
    (sidecar,) = [c for c in pod["containers"] if c["name"] == "apptopology-cmp"]
    assert sidecar["command"] == ["/var/run/argocd/argocd-cmp-server"]
    assert sidecar["securityContext"]["runAsUser"] == 999
    deploy_tag = yaml.safe_load((ROOT / "deploy" / "kustomization.yaml").read_text())["images"][0]["newTag"]
    assert sidecar["image"].endswith(f"/apptopology-operator:{deploy_tag}")
    mounts = {m["mountPath"]: m for m in sidecar["volumeMounts"]}
    assert mounts["/home/argocd/cmp-server/config/plugin.yaml"]["subPath"] == "plugin.yaml"
    assert {"/var/run/argocd", "/home/argocd/cmp-server/plugins", "/tmp"} <= set(mounts)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert (
        volumes[mounts["/home/argocd/cmp-server/config/plugin.yaml"]["name"]]["configMap"]["name"]
        == plugin_cm["metadata"]["name"]
    )
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]] and mounts["/tmp"]["name"] != "tmp"  # not repo-server's


def test_operator_application_installs_deploy() -> None:
    (app,) = load_all(PLATFORM / "apptopology-operator.yaml")
    assert app["spec"]["source"]["path"] == "deploy" and (ROOT / "deploy" / "kustomization.yaml").is_file()
    assert int(app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) < 0


def test_crds_application_never_removes_them_and_goes_first() -> None:
    """The CRDs are their own Application: no automated prune, no cascading finalizer, an earlier wave than
    the operator's (which, from deploy/, no longer holds them)."""
    (crds,) = load_all(PLATFORM / "apptopology-crds.yaml")
    (operator,) = load_all(PLATFORM / "apptopology-operator.yaml")
    assert crds["spec"]["source"]["path"] == "crds" and (ROOT / "crds" / "kustomization.yaml").is_file()
    assert crds["spec"]["syncPolicy"]["automated"]["prune"] is False
    assert "finalizers" not in crds["metadata"]
    assert crds["spec"]["source"]["targetRevision"] == operator["spec"]["source"]["targetRevision"]
    wave = "argocd.argoproj.io/sync-wave"
    assert int(crds["metadata"]["annotations"][wave]) < int(operator["metadata"]["annotations"][wave])
