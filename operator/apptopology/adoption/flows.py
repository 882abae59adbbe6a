"""Observed flows, read from Hubble (``hubble observe -o jsonpb``) or from apptopology's own JSON lines.

Both formats become :class:`Observation` records; anything a line says that a topology cannot use (a
reply, an ICMP packet, the node's own traffic) is kept as a reason, never silently dropped.

Hubble (``flow.proto`` field names, as ``-o jsonpb`` prints them): ``{"flow": {"time", "verdict",
"IP": {"source", "destination"}, "l4": {"TCP"|"UDP"|"SCTP": {"destination_port"}}, "source"/"destination":
{"namespace", "pod_name", "labels": ["k8s:app=web", "reserved:world", ...], "workloads": [{"name",
"kind"}]}, "traffic_direction", "is_reply", "destination_names", "Type"}}``.

Our own format, one JSON object per line (for any other source)::

    {"time": "2026-08-01T10:00:00Z", "source": ENDPOINT, "destination": ENDPOINT,
     "protocol": "TCP", "port": 8080, "verdict": "allowed", "reply": false, "count": 1}

where ENDPOINT is ``{"namespace": "shop", "labels": {"app": "web"}, "workload": "Deployment/web"}`` (a
pod; ``workload`` optional), ``{"ip": "203.0.113.7"}`` (outside the cluster), ``{"node": true}`` (a node)
or ``{"kubeAPI": true}``; ``verdict`` is ``allowed`` (default) or ``denied``; ``protocol`` defaults to
TCP, ``reply`` to false, ``count`` to 1; ``time`` is optional.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

MAX_LINE = 1024 * 1024
# Cilium's own labels, which say where a pod runs or what identity it has, not what it is.
CILIUM_NOISE = ("io.kubernetes.pod.namespace", "io.cilium.", "io.kubernetes.pod.")
PROTOCOLS = ("TCP", "UDP", "SCTP")


class FlowError(ValueError):
    """A line that is not a flow of either format (with its line number)."""


@dataclass(frozen=True)
class Peer:
    """One side of an observed flow. ``kind``: pod, external, node, kubeAPI or unknown (with ``what``)."""

    kind: str
    namespace: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    workload: str | None = None
    address: str | None = None
    what: str = ""

    def __str__(self) -> str:
        if self.kind == "pod":
            name = self.workload or ",".join(f"{k}={v}" for k, v in self.labels) or "unlabelled pod"
            return f"{self.namespace}/{name}"
        if self.kind == "external":
            return str(self.address)
        return self.what or self.kind


@dataclass(frozen=True)
class Observation:
    """One observed flow record (``count`` records folded into one)."""

    line: int
    source: Peer
    destination: Peer
    protocol: str | None  # None: not TCP, UDP or SCTP (ICMP, ...)
    port: int | None
    verdict: str  # allowed, denied, other
    reply: bool
    time: str | None
    count: int = 1
    names: tuple[str, ...] = ()  # DNS names of the destination, when the source knows them


def _pod_labels(raw: Iterable[Any]) -> tuple[tuple[str, str], ...]:
    out = {}
    for item in raw:
        text = str(item)
        source, _, label = text.partition(":")
        if source != "k8s" or "=" not in label:
            continue
        key, _, value = label.partition("=")
        if not key.startswith(CILIUM_NOISE):
            out[key] = value
    return tuple(sorted(out.items()))


def _hubble_peer(raw: dict[str, Any], address: str | None) -> Peer:
    labels = [str(x) for x in raw.get("labels") or []]
    reserved = {x.removeprefix("reserved:") for x in labels if x.startswith("reserved:")}
    if "kube-apiserver" in reserved:
        return Peer("kubeAPI", what="the Kubernetes API")
    if reserved & {"host", "remote-node"}:
        return Peer("node", address=address, what=f"a node ({address or 'host'}, reserved:{min(reserved)})")
    if "world" in reserved or reserved & {"world-ipv4", "world-ipv6"}:
        return Peer("external", address=address) if address else Peer("unknown", what="the world, no address")
    namespace = raw.get("namespace") or None
    if namespace is not None and (raw.get("pod_name") or any(x.startswith("k8s:") for x in labels)):
        workloads = raw.get("workloads") or []
        workload = f"{workloads[0].get('kind')}/{workloads[0].get('name')}" if workloads else None
        return Peer("pod", namespace=namespace, labels=_pod_labels(labels), workload=workload)
    if reserved:
        return Peer("unknown", address=address, what=f"reserved:{min(reserved)} ({address or 'no address'})")
    return Peer("unknown", address=address, what=f"an unknown endpoint ({address or 'no address'})")


def _hubble(flow: dict[str, Any], line: int) -> Observation:
    ip = flow.get("IP") or {}
    l4 = flow.get("l4") or {}
    protocol = next((p for p in PROTOCOLS if p in l4), None)
    port = (l4.get(protocol) or {}).get("destination_port") if protocol else None
    flags = (l4.get("TCP") or {}).get("flags") or {}
    reply = bool(flow.get("is_reply")) or bool(flags.get("SYN") and flags.get("ACK"))
    verdict = {"FORWARDED": "allowed", "AUDIT": "allowed", "DROPPED": "denied"}.get(str(flow.get("verdict")), "other")
    return Observation(
        line,
        _hubble_peer(flow.get("source") or {}, ip.get("source")),
        _hubble_peer(flow.get("destination") or {}, ip.get("destination")),
        protocol,
        int(port) if isinstance(port, int) and 1 <= port <= 65535 else None,
        verdict if flow.get("Type") != "L7" else "other",
        reply,
        flow.get("time"),
        names=tuple(str(n) for n in flow.get("destination_names") or []),
    )


def _own_peer(raw: Any, line: int, side: str) -> Peer:
    if not isinstance(raw, dict):
        raise FlowError(f"line {line}: {side}: expected an object")
    if raw.get("kubeAPI"):
        return Peer("kubeAPI", what="the Kubernetes API")
    if raw.get("node"):
        return Peer("node", address=raw.get("ip"), what=f"a node ({raw.get('ip') or 'host'})")
    if raw.get("namespace"):
        labels = raw.get("labels") or {}
        if not isinstance(labels, dict):
            raise FlowError(f"line {line}: {side}.labels: expected an object of label keys and values")
        workload = raw.get("workload")
        return Peer(
            "pod",
            namespace=str(raw["namespace"]),
            labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
            workload=str(workload) if workload else None,
        )
    if raw.get("ip"):
        return Peer("external", address=str(raw["ip"]))
    return Peer("unknown", what="an endpoint with neither namespace nor ip")


def _own(doc: dict[str, Any], line: int) -> Observation:
    protocol = str(doc.get("protocol") or "TCP").upper()
    port = doc.get("port")
    count = doc.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise FlowError(f"line {line}: count: expected a positive integer")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535):
        raise FlowError(f"line {line}: port: expected 1-65535")
    verdict = str(doc.get("verdict") or "allowed")
    return Observation(
        line,
        _own_peer(doc.get("source"), line, "source"),
        _own_peer(doc.get("destination"), line, "destination"),
        protocol if protocol in PROTOCOLS else None,
        port,
        verdict if verdict in ("allowed", "denied") else "other",
        bool(doc.get("reply")),
        str(doc["time"]) if doc.get("time") else None,
        count,
    )


def read_flows(lines: Iterable[str]) -> Iterator[Observation]:
    """Every flow of a file of either format (detected per line: Hubble's wrap the record in ``flow``)."""
    for number, text in enumerate(lines, 1):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        if len(text) > MAX_LINE:
            raise FlowError(f"line {number}: longer than {MAX_LINE} characters")
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FlowError(f"line {number}: not JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(doc, dict):
            raise FlowError(f"line {number}: expected a JSON object")
        if isinstance(doc.get("flow"), dict):
            yield _hubble(doc["flow"], number)
        elif "source" in doc and "destination" in doc:
            yield _own(doc, number)
        # Other Hubble records (agent events, lost events, node status) carry no flow.


def valid_address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text) if text else None
    except ValueError:
        return None
