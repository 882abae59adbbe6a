"""charts/apptopology: `helm lint`, and for the defaults the same objects as `kubectl apply -k deploy/`
(plus crds/ as the chart's CRDs); the values that change them; the version in one place.

Needs helm (HELM=/path/to/helm, or on PATH; e2e/build/tools.sh builds one). Without it these tests skip,
except where APPTOPOLOGY_REQUIRE_HELM=1 (CI)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_deploy import CRDS, DEPLOY, render_kustomization

from shared import ROOT

CHART = ROOT / "charts" / "apptopology"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
NAMESPACE = "apptopology-system"

Obj = dict[str, Any]


def _helm() -> str:
    helm = os.environ.get("HELM") or shutil.which("helm")
    if not helm:
        if os.environ.get("APPTOPOLOGY_REQUIRE_HELM") == "1":
            pytest.fail("APPTOPOLOGY_REQUIRE_HELM=1 but no helm (set HELM)")
        pytest.skip("no helm (HELM=/path/to/helm; e2e/build/tools.sh builds one)")
    return helm


def template(*args: str, kube_version: str = "1.37.0", namespace: str = NAMESPACE) -> list[Obj]:
    out = subprocess.run(
        [_helm(), "template", "apptopology", str(CHART), "-n", namespace, "--kube-version", kube_version, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _key(obj: Obj) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def _by_key(objects: list[Obj]) -> dict[tuple[str, str, str, str], Obj]:
    keyed = {_key(o): o for o in objects}
    assert len(keyed) == len(objects), "duplicate objects"
    return keyed


def test_helm_lint() -> None:
    out = subprocess.run([_helm(), "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_defaults_render_what_deploy_installs() -> None:
    """The same objects, field for field, but the Namespace (Helm installs into an existing one)."""
    rendered = _by_key(template())
    deploy = _by_key(render_kustomization(DEPLOY))
    namespace = ("v1", "Namespace", "", NAMESPACE)
    assert set(deploy) - set(rendered) == {namespace}
    del deploy[namespace]
    assert rendered == deploy


def test_namespace_create_renders_it_too() -> None:
    assert _by_key(template("--set", "namespace.create=true")) == _by_key(render_kustomization(DEPLOY))


def test_crds_are_the_repositorys_and_kept() -> None:
    rendered = [o for o in template("--include-crds") if o["kind"] == "CustomResourceDefinition"]
    assert _by_key(rendered) == _by_key(render_kustomization(CRDS))
    assert all(o["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for o in rendered)
    for link in (CHART / "crds").iterdir():  # links, so the chart cannot drift from crds/
        assert link.is_symlink() and link.resolve().parent == CRDS, link


def test_another_namespace_is_followed_everywhere() -> None:
    objects = template(namespace="ops")
    for obj in objects:
        assert obj["metadata"].get("namespace") in (None, "ops", "kube-system", "default"), _key(obj)
        for subject in obj.get("subjects", []):
            assert subject["namespace"] == "ops"
    assert "apptopology-system" not in yaml.safe_dump_all(objects)


def _deployment(*args: str) -> Obj:
    (deployment,) = [o for o in template(*args) if o["kind"] == "Deployment"]
    return deployment


def test_values_image_replicas_resources() -> None:
    deployment = _deployment(
        "--set", "image.repository=registry.example/ops/apptopology", "--set", "image.tag=9.9.9",
        "--set", "replicas=3", "--set", "resources.limits.memory=1Gi",
    )  # fmt: skip
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/ops/apptopology:9.9.9"
    assert deployment["spec"]["replicas"] == 3
    assert container["resources"]["limits"]["memory"] == "1Gi"


def test_one_replica_without_leader_election() -> None:
    objects = template("--set", "replicas=1", "--set", "leaderElection.enabled=false")
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == ["run", "--metrics-port", "8081"]
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("Role", "apptopology-operator-leader-election") not in kinds
    assert ("PodDisruptionBudget", "apptopology-operator") not in kinds  # it would block every drain


def test_two_replicas_without_leader_election_is_refused() -> None:
    out = subprocess.run(
        [_helm(), "template", "x", str(CHART), "--set", "leaderElection.enabled=false"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and "leaderElection" in out.stderr


def test_metrics_off_and_service_monitor_on() -> None:
    objects = template("--set", "metrics.enabled=false")
    assert not [o for o in objects if o["kind"] == "Service"]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert "--metrics-port" not in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    (monitor,) = [o for o in template("--set", "metrics.serviceMonitor.enabled=true") if o["kind"] == "ServiceMonitor"]
    kustomize = yaml.safe_load((DEPLOY / "components" / "servicemonitor" / "servicemonitor.yaml").read_text())
    assert monitor == kustomize


def _policies(objects: list[Obj]) -> set[str]:
    return {o["metadata"]["name"] for o in objects if o["kind"] == "ValidatingAdmissionPolicy"}


def test_guardrail_admission_follows_the_kubernetes_version() -> None:
    guardrails = "apptopology-guardrails"
    assert guardrails in _policies(template(kube_version="1.35.0"))
    assert guardrails not in _policies(template(kube_version="1.34.2"))
    assert guardrails in _policies(template("--set", "guardrailAdmission.enabled=true", kube_version="1.34.2"))
    assert guardrails not in _policies(template("--set", "guardrailAdmission.enabled=false"))


def test_the_leader_fence_is_opt_in_comes_with_leader_election_and_names_the_release_namespace() -> None:
    """Off by default (an uninstall and reinstall freezes the API server's copy of the Lease); without a Lease
    holder of its own it would refuse every write of an operator pod: it exists only with election."""
    fence = "apptopology-leader-fence"
    assert fence not in _policies(template())
    on = ("--set", "leaderElection.fence=true")
    assert fence in _policies(template(*on, kube_version="1.31.0"))
    assert fence not in _policies(template(*on, "--set", "leaderElection.enabled=false", "--set", "replicas=1"))
    objects = template(*on, namespace="netsec")
    (policy,) = [o for o in objects if o["metadata"]["name"] == fence and o["kind"] == "ValidatingAdmissionPolicy"]
    (binding,) = [o for o in objects if o["metadata"]["name"] == fence and o["kind"].endswith("Binding")]
    assert "'system:serviceaccount:netsec:apptopology-operator'" in policy["spec"]["matchConditions"][0]["expression"]
    assert binding["spec"]["paramRef"]["namespace"] == "netsec"
    component = [
        d for d in yaml.safe_load_all((DEPLOY / "components" / "leader-fence" / "leader-fence.yaml").read_text()) if d
    ]
    assert {o["kind"] for o in component} == {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


def test_argocd_health_configmap_carries_the_lua() -> None:
    (cm,) = [o for o in template("--set", "argocdHealth.enabled=true") if o["kind"] == "ConfigMap"]
    assert cm["metadata"]["namespace"] == "argocd"
    lua = (DEPLOY / "components" / "argocd-health" / "health.lua").read_text()
    assert cm["data"]["resource.customizations.health.apptopology.io_AppTopology"].strip() == lua.strip()


# --- the version in one place --------------------------------------------------------------------------------


def test_the_version_is_pyprojects_everywhere() -> None:
    """pyproject.toml holds the version; every file that must repeat it (formats that cannot read it) agrees."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == VERSION
    assert yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["images"][0]["newTag"] == VERSION
    assert f"apptopology-operator:{VERSION}" in (DEPLOY / "deployment.yaml").read_text()
    assert f"ARG VERSION={VERSION}\n" in (ROOT / "Dockerfile").read_text()
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(r"^## \[?(\S+?)\]?[ -]", changelog, re.M)[1] == VERSION  # type: ignore[index]
    platform = ROOT / "examples" / "gitops" / "platform"
    for path in [*platform.rglob("*.yaml")]:
        for old in re.findall(r"(?:newTag: |targetRevision: v|ref=v)(\d+\.\d+\.\d+)", path.read_text()):
            assert old == VERSION, path


def test_license_is_the_one_pyproject_names() -> None:
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_chart_files_are_links_to_deploy() -> None:
    for link in (CHART / "files").iterdir():
        assert link.is_symlink(), link
        target = link.resolve()
        assert target.is_file() and Path(os.path.commonpath([target, DEPLOY])) == DEPLOY, link
