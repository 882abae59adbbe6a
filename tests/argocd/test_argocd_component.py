"""deploy/components/argocd-health, rendered by a real kustomize into a stand-in of Argo CD's install.

The component must put health.lua, byte for byte, under the argocd-cm key Argo CD looks up for our kind,
in whatever namespace Argo CD runs, and change nothing else.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from apptopology.api import crdgen
from shared import ROOT

COMPONENT = ROOT / "deploy" / "components" / "argocd-health"
HEALTH_LUA = COMPONENT / "health.lua"

Obj = dict[str, Any]


def health_key() -> str:
    """``resource.customizations.health.<group>_<kind>`` for the kind the CRD defines."""
    crd = crdgen.crd()
    return f"resource.customizations.health.{crd['spec']['group']}_{crd['spec']['names']['kind']}"


def argocd_cm(namespace: str) -> Obj:
    """argocd-cm as Argo CD's install manifests ship it, with one setting of the platform's."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "argocd-cm",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"},
        },
        "data": {"timeout.reconciliation": "180s"},
    }


def render(kustomize: list[str], tmp_path: Path, objects: list[Obj], namespace: str | None = None) -> list[Obj]:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "install.yaml").write_text(yaml.safe_dump_all(objects))
    kustomization: Obj = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["install.yaml"],
        "components": [os.path.relpath(COMPONENT, overlay)],
    }
    if namespace:
        kustomization["namespace"] = namespace
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    out = subprocess.run([*kustomize, str(overlay)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.parametrize("namespace", ["argocd", "gitops"])
def test_component_adds_the_health_check_to_argocd_cm(kustomize: list[str], tmp_path: Path, namespace: str) -> None:
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-rbac-cm", "namespace": namespace}}
    rendered = render(kustomize, tmp_path, [argocd_cm(namespace), other])
    assert len(rendered) == 2, "the generated carrier ConfigMap must not be emitted"
    cm, rbac = sorted(rendered, key=lambda o: str(o["metadata"]["name"]))
    assert cm["data"][health_key()] == HEALTH_LUA.read_text()
    expected = argocd_cm(namespace)
    expected["data"][health_key()] = HEALTH_LUA.read_text()
    assert cm == expected  # nothing else: name, namespace, labels, settings; no useOpenLibs key
    assert rbac == other


def test_component_under_a_kustomization_namespace(kustomize: list[str], tmp_path: Path) -> None:
    """A platform kustomization that sets ``namespace:`` for all of Argo CD."""
    (cm,) = render(kustomize, tmp_path, [argocd_cm("argocd")], namespace="platform-gitops")
    assert cm["metadata"]["namespace"] == "platform-gitops"
    assert cm["data"][health_key()] == HEALTH_LUA.read_text()


def test_without_argocd_cm_nothing_changes(kustomize: list[str], tmp_path: Path) -> None:
    """Documented: kustomize replacements that match nothing are silent, so the output is unchanged."""
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unrelated", "namespace": "argocd"}}
    assert render(kustomize, tmp_path, [cm]) == [cm]
