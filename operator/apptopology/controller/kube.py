"""All Kubernetes API I/O of the operator, in one place.

Objects travel as plain JSON dicts (``_preload_content=False``), the same shape the renderer and the
planner work with, so nothing is lost or renamed by the typed client models.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from ..api.spec import API_GROUP, API_VERSION, PLURAL
from ..plan import FIELD_MANAGER, Apply, Delete

__all__ = ["ApiException", "Kube"]


def load_config() -> None:
    """In-cluster config when running in a pod, the kubeconfig otherwise."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]


def _json(response: Any) -> Any:
    return json.loads(response.read())


class Kube:
    """The few API calls the operator makes; each is one request."""

    def __init__(self, api_client: client.ApiClient | None = None):
        self.api = api_client or client.ApiClient()
        self.net = client.NetworkingV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def get_topology(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(
                _json(
                    self.custom.get_namespaced_custom_object(
                        API_GROUP, API_VERSION, namespace, PLURAL, name, _preload_content=False
                    )
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_policies(self, namespace: str) -> list[dict[str, Any]]:
        data = _json(self.net.list_namespaced_network_policy(namespace, _preload_content=False))
        return list(data.get("items") or [])

    def apply_policy(self, action: Apply) -> None:
        body = json.loads(json.dumps(action.body))
        if action.existing_uid:
            body["metadata"]["uid"] = action.existing_uid
        self.net.patch_namespaced_network_policy(
            action.name,
            body["metadata"]["namespace"],
            body,
            field_manager=FIELD_MANAGER,
            force=action.existing_uid is not None,
            _content_type="application/apply-patch+yaml",
            _preload_content=False,
        )

    def delete_policy(self, namespace: str, action: Delete) -> None:
        try:
            self.net.delete_namespaced_network_policy(
                action.name,
                namespace,
                body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=action.uid)),
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status != 404:  # already gone: the goal is reached
                raise

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            name,
            {"status": status},
            _content_type="application/merge-patch+json",
            _preload_content=False,
        )


def cluster_manifests() -> list[dict[str, Any]]:
    """Namespaces, Pods and workloads of the kubeconfig's cluster, as manifests, for `explain --cluster`.

    Workloads are read too so that pods group under the workload that owns them (the inventory skips
    objects whose controller is also present), which keeps a cluster's matrix readable.
    """
    load_config()
    core, apps, batch = client.CoreV1Api(), client.AppsV1Api(), client.BatchV1Api()
    calls: list[tuple[str, Callable[..., Any]]] = [
        ("Namespace", core.list_namespace),
        ("Pod", core.list_pod_for_all_namespaces),
        ("Deployment", apps.list_deployment_for_all_namespaces),
        ("ReplicaSet", apps.list_replica_set_for_all_namespaces),
        ("StatefulSet", apps.list_stateful_set_for_all_namespaces),
        ("DaemonSet", apps.list_daemon_set_for_all_namespaces),
        ("Job", batch.list_job_for_all_namespaces),
        ("CronJob", batch.list_cron_job_for_all_namespaces),
    ]
    manifests: list[dict[str, Any]] = []
    for kind, call in calls:
        for item in _json(call(_preload_content=False)).get("items") or []:
            item["kind"] = kind
            manifests.append(item)
    return manifests
