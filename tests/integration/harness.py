"""Helpers for the integration suite: the control plane, the operator process, and admin-side access.

Nothing here mocks the Kubernetes API: the control plane is a real etcd, kube-apiserver and
kube-controller-manager started by tests/controlplane/run.sh on loopback.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from apptopology.controller.kube import Kube

ROOT = Path(__file__).resolve().parents[2]
RUN_SH = ROOT / "tests" / "controlplane" / "run.sh"
OPERATOR_USER = "system:serviceaccount:apptopology-system:apptopology-operator"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
SUMMARY: list[str] = []  # lines for the end of the pytest output (tests/integration/conftest.py prints them)


def wait_for(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.2, what: str = "") -> Any:
    """Poll until ``predicate`` returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except client.ApiException as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}: last={last!r}")


@dataclass
class ControlPlane:
    dir: Path
    env: dict[str, str]
    api: client.ApiClient = field(repr=False)

    @property
    def kubeconfig(self) -> str:
        return self.env["KUBECONFIG"]

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.env["KUBECTL"], "--kubeconfig", self.kubeconfig, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def audit_writes(self, user: str = OPERATOR_USER) -> list[dict[str, Any]]:
        """Every completed write request made by ``user`` so far (from the API server's audit log)."""
        out = []
        with open(self.env["AUDIT_LOG"]) as log:
            for line in log:
                entry = json.loads(line)
                if (
                    entry.get("stage") == "ResponseComplete"
                    and entry.get("user", {}).get("username") == user
                    and entry.get("verb") in WRITE_VERBS
                ):
                    out.append(entry)
        return out


def controlplane_or_skip(tmp: Path) -> ControlPlane:
    required = os.environ.get("APPTOPOLOGY_REQUIRE_CONTROLPLANE") == "1"
    started = subprocess.run(["bash", str(RUN_SH), "up", str(tmp)], capture_output=True, text=True, timeout=3600)
    if started.returncode != 0:
        message = f"control plane did not start:\n{started.stderr[-4000:]}"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    env = dict(
        line.split("=", 1)
        for line in (tmp / "env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    api = config.new_client_from_config(config_file=env["KUBECONFIG"])
    return ControlPlane(tmp, env, api)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process (the thread that started it) goes away, so a killed
    test run or soak leaves no operator behind to race the next one's (Linux; elsewhere nothing)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


OPERATOR_NAMESPACE = "apptopology-system"


def pod_kubeconfig(cp: ControlPlane, pod: str) -> str:
    """A kubeconfig for the operator's ServiceAccount as a pod of it has it: a token bound to the Pod object
    ``pod`` (created if missing; never scheduled, the control plane has no nodes). The API server puts the
    pod's name in the request's user info, which the leader fence (deploy/components/leader-fence) compares
    with the Lease's holder."""
    core = client.CoreV1Api(cp.api)
    try:
        uid = core.read_namespaced_pod(pod, OPERATOR_NAMESPACE).metadata.uid
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        restricted = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod, "labels": {"app.kubernetes.io/name": "apptopology-test-replica"}},
            "spec": {
                "serviceAccountName": "apptopology-operator",
                "automountServiceAccountToken": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65532,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {"name": "operator", "image": "apptopology.test/not-run", "securityContext": restricted}
                ],
            },
        }
        uid = core.create_namespaced_pod(OPERATOR_NAMESPACE, body).metadata.uid
    request = {
        "spec": {
            "expirationSeconds": 6 * 3600,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": uid},
        }
    }
    token = core.create_namespaced_service_account_token("apptopology-operator", OPERATOR_NAMESPACE, request)
    admin = yaml.safe_load(Path(cp.kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    path = cp.dir / f"pod-{pod}.kubeconfig"
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": pod, "user": {"token": token.status.token}}],
        "contexts": [{"name": pod, "context": {"cluster": cluster["name"], "user": pod}}],
        "current-context": pod,
    }
    path.write_text(yaml.safe_dump(kubeconfig))
    path.chmod(0o600)
    return str(path)


class Operator:
    """``apptopology run`` as a real process with the operator's ServiceAccount identity and RBAC.

    ``pod``: run as that pod of the ServiceAccount would (a pod-bound token, ``POD_NAME``), as replicas electing
    a leader do in a cluster; otherwise with a client certificate of the ServiceAccount (no pod)."""

    def __init__(self, cp: ControlPlane, args: list[str] | None = None, name: str = "operator", pod: str | None = None):
        self.cp = cp
        self.args = list(args or [])
        self.pod = pod
        if pod is not None:
            self.kubeconfig = pod_kubeconfig(cp, pod)
        else:
            minted = subprocess.run(
                ["bash", str(RUN_SH), "sa-user", str(cp.dir), OPERATOR_NAMESPACE, "apptopology-operator"],
                capture_output=True,
                text=True,
                check=True,
            )
            self.kubeconfig = minted.stdout.strip().splitlines()[-1]
        self.log_path = cp.dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.metrics_port = 0

    def start(self, timeout: float = 60) -> None:
        self.port, self.metrics_port = _free_port(), _free_port()
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "PYTHONUNBUFFERED": "1"}
        if self.pod is not None:
            env["POD_NAME"] = self.pod
        log = open(self.log_path, "ab")  # noqa: SIM115 (the process owns it)
        command = [
            sys.executable,
            "-m",
            "apptopology.cli",
            "run",
            "--liveness",
            f"http://127.0.0.1:{self.port}/healthz",
        ]
        self.proc = subprocess.Popen(
            [*command, "--metrics-port", str(self.metrics_port), "--facts-interval", "1", *self.args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            preexec_fn=_die_with_parent,
        )
        wait_for(self.healthy, timeout=timeout, what="operator liveness endpoint")

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def metrics(self) -> dict[str, float]:
        """The operator's Prometheus metrics, ``name{labels}`` -> value (samples only, no comments)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def logs(self, tail: int = 80) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])


class Cluster:
    """Admin-side helpers for arranging and asserting (the operator has its own identity)."""

    def __init__(self, cp: ControlPlane, args: list[str] | None = None, name: str = "operator"):
        self.cp = cp
        self.args = list(args or [])
        self.custom = client.CustomObjectsApi(cp.api)
        self.net = client.NetworkingV1Api(cp.api)
        self.kube = Kube(cp.api)

    def create(self, doc: dict[str, Any], namespace: str) -> dict[str, Any]:
        doc = {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}
        return dict(
            self.custom.create_namespaced_custom_object("apptopology.io", "v1alpha1", namespace, "apptopologies", doc)
        )

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.get_topology(namespace, name)

    def patch_spec(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.custom.patch_namespaced_custom_object(
                "apptopology.io",
                "v1alpha1",
                namespace,
                "apptopologies",
                name,
                [{"op": "replace", "path": "/spec", "value": spec}],
                _content_type="application/json-patch+json",
            )
        )

    def delete(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object("apptopology.io", "v1alpha1", namespace, "apptopologies", name)

    def policies(self, namespace: str) -> dict[str, dict[str, Any]]:
        return {p["metadata"]["name"]: p for p in self.kube.list_policies(namespace)}

    def ready(self, namespace: str, name: str, generation: int | None = None) -> dict[str, Any] | None:
        """The Ready condition once it reflects ``generation`` (default: the object's current one)."""
        obj = self.get(namespace, name)
        if obj is None:
            return None
        status = obj.get("status") or {}
        want = generation if generation is not None else obj["metadata"]["generation"]
        if status.get("observedGeneration") != want:
            return None
        return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)


def network_policy_admission(name: str, namespace: str, expression: str, message: str) -> list[dict[str, Any]]:
    """A ValidatingAdmissionPolicy and its binding: NetworkPolicy creates and updates in ``namespace`` must satisfy
    the CEL ``expression`` (a platform's guardrail at admission)."""
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["networking.k8s.io"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["networkpolicies"],
                    }
                ]
            },
            "validations": [{"expression": expression, "message": message}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
        },
    }
    return [policy, binding]


def load_example(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "examples" / name).read_text()))
