"""Small builders shared by the evaluator tests (not collected: no test_ prefix)."""

from __future__ import annotations

from typing import Any

from apptopology.evaluator import ContainerPort, Pod


def netpol(name: str, spec: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def pod(
    ref: str, labels: dict[str, str] | None = None, ip: str | None = None, ports: tuple[tuple[str, int, str], ...] = ()
) -> Pod:
    """pod("ns/name", {...}, ip, (("http", 8080, "TCP"),))."""
    ns, name = ref.split("/")
    return Pod(ns, name, labels or {}, ip=ip, ports=tuple(ContainerPort(n, p, proto) for n, p, proto in ports))


def sel(**labels: str) -> dict[str, Any]:
    return {"matchLabels": labels}
