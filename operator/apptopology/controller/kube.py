"""All Kubernetes API I/O of the operator, in one place.

Objects travel as plain JSON dicts (``_preload_content=False``), the same shape the renderer and the
planner work with, so nothing is lost or renamed by the typed client models. Errors leave this module as
:class:`~apptopology.controller.reconciler.ApiError` only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ParamSpec, TypeVar

import urllib3.exceptions
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from ..api.spec import API_GROUP, API_VERSION, KIND, PLURAL
from ..planner.plan import FIELD_MANAGER
from ..render.facts import SERVICE_NAME_LABEL, ClusterFacts, WantedObjects, cluster_facts
from . import metrics
from .reconciler import ApiError, Fenced

__all__ = [
    "ApiError",
    "Kube",
    "cluster_facts_manifests",
    "cluster_manifests",
    "cluster_network_policies",
    "load_config",
    "use_kubeconfig",
]

P = ParamSpec("P")
R = TypeVar("R")
COMPONENT = "apptopology-operator"


# The CLI's --kubeconfig and --context; when either is set, load_config uses them, not in-cluster config.
_KUBECONFIG: dict[str, str | None] = {"config_file": None, "context": None}


def use_kubeconfig(path: str | None, context: str | None) -> None:
    _KUBECONFIG.update(config_file=path, context=context)


def load_config(connections: int = 10) -> None:
    """In-cluster config when running in a pod, the kubeconfig otherwise; up to ``connections`` kept open.

    The client keeps 5 per core by default: with more worker threads than that, each request beyond it
    opened a new TLS connection and threw it away ("Connection pool is full" at 16 workers)."""
    if any(_KUBECONFIG.values()):
        config.load_kube_config(**_KUBECONFIG)  # type: ignore[no-untyped-call]
    else:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = max(connections, configuration.connection_pool_maxsize or 0)
    client.Configuration.set_default(configuration)


def _json(response: Any) -> Any:
    return json.loads(response.read())


def _done(response: Any) -> None:
    """Read a response nobody needs and give its connection back: with ``_preload_content=False`` an
    unread response keeps its connection, and the next request opens (and pays TLS for) a new one."""
    response.read()
    response.release_conn()


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or "")
    except (ValueError, AttributeError):
        return str(exc.body or "")


LEADER_FENCE = "apptopology leader fence:"
"""How the ValidatingAdmissionPolicy apptopology-leader-fence (deploy/components/leader-fence) starts its refusals."""


@contextlib.contextmanager
def _api_errors() -> Iterator[None]:
    try:
        yield
    except ApiException as exc:
        message = _message(exc)
        if LEADER_FENCE in message:
            # The optional leader fence (deploy/components/leader-fence) refused a write: another pod holds
            # the Lease in the server's view. Right after
            # this replica took the Lease, the server's copy of it may lag by a moment: retry; a replica that
            # really lost the Lease stops at its own fence (Fenced) on the next attempt.
            raise ApiError(409, "Conflict", message) from exc
        raise ApiError(int(exc.status or 0), str(exc.reason or ""), message) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ApiError(0, type(exc).__name__, str(exc)) from exc


def _as_policy(item: dict[str, Any]) -> dict[str, Any]:
    """A list item as the object it is (what a GET of it returns)."""
    item["apiVersion"], item["kind"] = "networking.k8s.io/v1", "NetworkPolicy"
    return item


def _translated(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with _api_errors():
            return fn(*args, **kwargs)

    return wrapper


def _fence_writes(api: client.ApiClient, may_write: Callable[[], bool]) -> None:
    """Ask ``may_write`` before every request that is not a read, as late as the client allows: after the
    request is built and serialised, right before urllib3 sends it. A replica paused between this check and
    the socket can still send the one request; the earlier the check, the wider that window (checked
    before building the request, a paused leader sent one write after resuming in a loaded test run)."""
    pool = api.rest_client.pool_manager
    send = pool.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if method.upper() not in ("GET", "HEAD", "OPTIONS") and not may_write():
            metrics.FENCED_WRITES.inc()
            raise Fenced(f"{method} not sent: this replica no longer holds the leader lease")
        return send(method, url, *args, **kwargs)

    pool.request = request  # type: ignore[method-assign]


class Kube:
    """The API calls the operator makes; each is one request. Implements the reconciler's ``Cluster``.

    ``may_write``: the leader elector's fence (LeaderElector.may_write); every write asks it and raises
    :class:`~apptopology.controller.reconciler.Fenced` instead of being sent. The elector itself uses an
    unfenced instance for the Lease."""

    def __init__(self, api_client: client.ApiClient | None = None, may_write: Callable[[], bool] | None = None):
        self.api = api_client or client.ApiClient()
        if may_write is not None:
            _fence_writes(self.api, may_write)
        self.net = client.NetworkingV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.coordination = client.CoordinationV1Api(self.api)

    @_translated
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

    @_translated
    def list_policies(self, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        """The namespace's NetworkPolicies, as complete objects: the items of a LIST carry no ``kind`` or
        ``apiVersion`` (only the list does), and a manifest without them is no NetworkPolicy to the evaluator
        (the Isolated condition once judged an empty namespace)."""
        data = _json(
            self.net.list_namespaced_network_policy(namespace, label_selector=label_selector, _preload_content=False)
        )
        return [_as_policy(item) for item in data.get("items") or []]

    @_translated
    def get_policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(_json(self.net.read_namespaced_network_policy(name, namespace, _preload_content=False)))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    @_translated
    def apply_policy(self, body: Mapping[str, Any], uid: str | None, dry_run: bool = False) -> dict[str, Any]:
        """Write a policy of ours; never adopt one that is not.

        ``uid`` set: a forced server-side apply of that object only (the UID in the body is a precondition:
        409 if the name now holds another object). ``uid`` None: the plan believes the name free, so it is a
        create, which fails with 409 AlreadyExists whatever holds the name: an apply would merge into it,
        take it over with our ownerReference, and a later release would delete it.
        """
        doc = json.loads(json.dumps(body))
        name, namespace = doc["metadata"]["name"], doc["metadata"]["namespace"]
        dry = "All" if dry_run else None
        if uid is None:
            metrics.API_WRITES.labels("create", str(dry_run).lower()).inc()
            response = self.net.create_namespaced_network_policy(
                namespace, doc, field_manager=FIELD_MANAGER, dry_run=dry, _preload_content=False
            )
            return dict(_json(response))
        metrics.API_WRITES.labels("apply", str(dry_run).lower()).inc()
        doc["metadata"]["uid"] = uid  # precondition: never lands on another object under the name
        try:
            response = self.net.patch_namespaced_network_policy(
                name,
                namespace,
                doc,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
                dry_run=dry,
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status == 422 and "metadata.uid" in _message(exc):
                # The server answers a UID that differs with "field is immutable" (422): the name holds another
                # object now. That is a conflict to plan again from live state, not an invalid policy.
                raise ApiError(409, "Conflict", f"{name} is no longer the object {uid}: {_message(exc)}") from exc
            raise
        return dict(_json(response))

    @_translated
    def delete_policy(self, namespace: str, name: str, uid: str, dry_run: bool = False) -> None:
        """Delete the object with ``uid`` only (409 if the name now holds another); gone already is no error.

        The dry-run flag goes in the DeleteOptions body: when a DELETE carries a body, the API server reads
        its options from the body alone and ignores ``?dryRun=All`` in the query, so a query-only dry run
        with a body is a real delete."""
        metrics.API_WRITES.labels("delete", str(dry_run).lower()).inc()
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=uid), dry_run=["All"] if dry_run else None
        )
        try:
            response = self.net.delete_namespaced_network_policy(
                name, namespace, body=options, dry_run="All" if dry_run else None, _preload_content=False
            )
            _done(response)
        except ApiException as exc:
            if exc.status != 404:  # already gone: the goal is reached
                raise

    @_translated
    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str) -> str:
        metrics.API_WRITES.labels("status", "false").inc()
        patch: dict[str, Any] = {"status": dict(status)}
        if resource_version:
            # Precondition: written only over the revision this status was computed from (409 otherwise).
            patch["metadata"] = {"resourceVersion": resource_version}
        response = self.custom.patch_namespaced_custom_object_status(
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            name,
            patch,
            _content_type="application/merge-patch+json",
            _preload_content=False,
        )
        return str((_json(response).get("metadata") or {}).get("resourceVersion") or "")

    @_translated
    def event(self, topology: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        metrics.API_WRITES.labels("event", "false").inc()
        meta = topology["metadata"]
        now = datetime.datetime.now(datetime.UTC)
        event: Any = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": now.isoformat(),
            "lastTimestamp": now.isoformat(),
            "eventTime": None,
            "count": 1,
        }
        _done(self.core.create_namespaced_event(meta["namespace"], event, _preload_content=False))

    def list_all(self, kind: str, page: int = 500) -> Iterator[dict[str, Any]]:
        """Every object of ``kind`` (apptopologies, networkpolicies, pods, namespaces, topologyguardrails) in the
        cluster, page by page (memory stays one page)."""
        token: str | None = None
        while True:
            with _api_errors():
                data = _json(self._list_page(kind, page, token))
            yield from data.get("items") or []
            token = (data.get("metadata") or {}).get("continue")
            if not token:
                return

    def probe(self, kind: str) -> None:
        """One cheap LIST (a single item) of ``kind`` across the cluster: raises ApiError when it is refused
        (the operator's RBAC changed: the watch of that kind is refused too)."""
        with _api_errors():
            _done(self._list_page(kind, 1, None))

    def _list_page(self, kind: str, limit: int, token: str | None) -> Any:
        if kind in ("apptopologies", "topologyguardrails"):
            plural = PLURAL if kind == "apptopologies" else "topologyguardrails"
            return self.custom.list_cluster_custom_object(
                API_GROUP, API_VERSION, plural, limit=limit, _continue=token, _preload_content=False
            )
        calls: dict[str, Callable[..., Any]] = {
            "networkpolicies": self.net.list_network_policy_for_all_namespaces,
            "pods": self.core.list_pod_for_all_namespaces,
            "namespaces": self.core.list_namespace,
        }
        return calls[kind](limit=limit, _continue=token, _preload_content=False)

    def read_facts(self, wanted: WantedObjects) -> ClusterFacts:
        """The cluster facts rendering needs, read with namespaced requests only (see cluster_facts_manifests)."""
        manifests, problems = cluster_facts_manifests(wanted, self.api)
        facts = cluster_facts(manifests, wanted)
        return dataclasses.replace(facts, problems=(*facts.problems, *problems))

    # Leader election (apptopology.controller.leader) ------------------------------------------------

    @_translated
    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(_json(self.coordination.read_namespaced_lease(name, namespace, _preload_content=False)))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    @_translated
    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        doc: Any = dict(body)
        return dict(_json(self.coordination.create_namespaced_lease(namespace, doc, _preload_content=False)))

    @_translated
    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        doc: Any = dict(body)
        return dict(_json(self.coordination.replace_namespaced_lease(name, namespace, doc, _preload_content=False)))


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


def cluster_network_policies(namespaces: list[str] | None = None) -> list[dict[str, Any]]:
    """The NetworkPolicies of ``namespaces`` (all when empty) of the kubeconfig's cluster, for `import --cluster`:
    a LIST per namespace, or one for the cluster."""
    load_config()
    networking = client.NetworkingV1Api()
    with _api_errors():
        if namespaces:
            responses = [networking.list_namespaced_network_policy(ns, _preload_content=False) for ns in namespaces]
        else:
            responses = [networking.list_network_policy_for_all_namespaces(_preload_content=False)]
    policies: list[dict[str, Any]] = []
    for response in responses:
        policies.extend(_as_policy(item) for item in _json(response).get("items") or [])
    return policies


def cluster_facts_manifests(
    wanted: WantedObjects, api_client: client.ApiClient | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The objects :func:`apptopology.render.facts.cluster_facts` reads, as manifests (kind set), and why any could
    not be read.

    One GET per Service and one LIST per namespace for its EndpointSlices and for the NodeLocal DNSCache
    DaemonSet, all namespaced, so Roles in those namespaces are all the RBAC it needs. Missing objects
    (404) are simply absent; unreadable ones (403) are absent and reported: what is not known renders
    fail closed (spec.dns as written, no peer for kubeAPI).
    """
    if api_client is None:
        load_config()
    core = client.CoreV1Api(api_client)
    discovery = client.DiscoveryV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    manifests: list[dict[str, Any]] = []
    problems: list[str] = []

    def read(kind: str, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            with _api_errors():
                data = _json(call(*args, _preload_content=False, **kwargs))
        except ApiError as exc:
            if exc.status == 404:
                return
            if exc.status != 403:
                raise
            problems.append(f"cannot read {what}: forbidden")
            return
        for item in data["items"] or [] if "items" in data else [data]:
            item["kind"] = kind
            manifests.append(item)

    services = [*wanted.dns_services, wanted.kube_api]
    for namespace, name in dict.fromkeys(services):
        read("Service", f"Service {namespace}/{name}", core.read_namespaced_service, name, namespace)
        read(
            "EndpointSlice",
            f"the EndpointSlices of {namespace}/{name}",
            discovery.list_namespaced_endpoint_slice,
            namespace,
            label_selector=f"{SERVICE_NAME_LABEL}={name}",
        )
    namespace, key, value = wanted.node_local_dns
    read(
        "DaemonSet",
        f"DaemonSets {key}={value} in {namespace}",
        apps.list_namespaced_daemon_set,
        namespace,
        label_selector=f"{key}={value}",
    )
    return manifests, problems
