"""Drive network-config-analyzer (`nca`) and read its connectivity map back as PortSets.

nca is an independent NetworkPolicy analyser (IBM, Apache-2.0). It lives in its own virtual
environment (see setup-nca.sh) and is used strictly as a black box through its command line:

    nca --connectivity POLICIES --pod_list PODS --ns_list NAMESPACES \\
        -o txt_no_fw_rules --output_endpoints pods --print_ipv6

`txt_no_fw_rules` is the one output format that lists connections pair by pair instead of as
minimised firewall rules (whose label-expression groups would need re-evaluating). Its lines are

    SRC => DST : CONNECTIONS

where SRC/DST is a pod as `namespace/name` or an address range `first-last` (nca splits the
address space at every ipBlock boundary), and CONNECTIONS is `All connections`, a comma-joined
list of cubes such as `{protocols:TCP, UDP,dst_ports:53}`, or `All but {...}` (the complement).
Pairs with no connection, self-loops and range-to-range pairs are not printed. nca also prints
warnings on stdout, so only lines of exactly that shape are read.

nca's protocol universe is every IP protocol (0-255); NetworkPolicy only speaks of TCP, UDP and
SCTP, and so does our PortSet. Parsed results are therefore restricted to those three protocols
(FINDINGS.md, "Modelling differences" M3).
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from apptopology.evaluator import Inventory, PortSet

HERE = Path(__file__).resolve().parent
SETUP_SCRIPT = HERE / "setup-nca.sh"
NCA_ENV = "APPTOPOLOGY_NCA"
REQUIRE_ENV = "APPTOPOLOGY_REQUIRE_CONTROLPLANE"

# IP protocol numbers nca may print instead of names.
_PROTOCOL_NUMBERS = {"6": "TCP", "17": "UDP", "132": "SCTP"}
_OURS = ("TCP", "UDP", "SCTP")
_LINE = re.compile(r"^(?P<src>\S+) => (?P<dst>\S+) : (?P<conn>.+)$")
_HEADER = re.compile(r"^global: cluster has (?P<endpoints>\d+) unique endpoints, (?P<namespaces>\d+) namespaces")
_CUBE = re.compile(r"\{([^{}]*)\}")
_KEY = re.compile(r"(?:^|,)([A-Za-z_]+):")

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


class NcaUnavailable(RuntimeError):
    """nca could not be located or installed."""


class NcaError(ValueError):
    """nca ran but failed, or printed something this module does not understand."""


# --------------------------------------------------------------------------- locating nca


def locate_nca(timeout: float = 900) -> str:
    """Path of the `nca` executable: $APPTOPOLOGY_NCA, else whatever setup-nca.sh installs (idempotent)."""
    explicit = os.environ.get(NCA_ENV)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise NcaUnavailable(f"${NCA_ENV}={explicit!r} is not an executable")
        return explicit
    try:
        proc = subprocess.run(["bash", str(SETUP_SCRIPT)], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NcaUnavailable(f"setup-nca.sh did not complete: {exc}") from exc
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise NcaUnavailable(f"setup-nca.sh failed (exit {proc.returncode}): {tail}")
    path = lines[-1].strip()
    if not os.access(path, os.X_OK):
        raise NcaUnavailable(f"setup-nca.sh printed {path!r}, which is not an executable")
    return path


# --------------------------------------------------------------------------- writing nca's input


def inventory_manifests(inventory: Inventory) -> tuple[dict[str, Any], dict[str, Any]]:
    """(PodList-style List, Namespace List) manifests for an inventory, as nca reads them.

    nca takes pods from `metadata` (name, namespace, labels; bare pods without ownerReferences keep
    their own identity) and named ports from `spec.containers[].ports`. It ignores `status.podIP`,
    which is written anyway so the files are faithful manifests. Namespace labels are written
    explicitly, including `kubernetes.io/metadata.name` (nca adds it too).
    """
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns.name, "labels": dict(ns.labels)}}
        for ns in inventory.namespaces
    ]
    pods = []
    for pod in inventory.pods:
        container: dict[str, Any] = {"name": "main", "image": "pause"}
        if pod.ports:
            container["ports"] = [
                {**({"name": p.name} if p.name else {}), "containerPort": p.port, "protocol": p.protocol}
                for p in pod.ports
            ]
        doc: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": dict(pod.labels)},
            "spec": {"containers": [container]},
        }
        if pod.ip is not None:
            doc["status"] = {"podIP": pod.ip}
        pods.append(doc)
    return (
        {"apiVersion": "v1", "kind": "List", "items": pods},
        {"apiVersion": "v1", "kind": "List", "items": namespaces},
    )


def _dump(docs: Iterable[Any], path: Path) -> None:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    with path.open("w") as fh:
        yaml.dump_all(list(docs), fh, Dumper=dumper, sort_keys=False, explicit_start=True)


def write_inputs(
    directory: Path, policies: Sequence[Mapping[str, Any]], inventory: Inventory
) -> tuple[Path, Path, Path]:
    """Write policies.yaml, pods.yaml and namespaces.yaml into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    pods, namespaces = inventory_manifests(inventory)
    paths = (directory / "policies.yaml", directory / "pods.yaml", directory / "namespaces.yaml")
    _dump(policies, paths[0])
    _dump([pods], paths[1])
    _dump([namespaces], paths[2])
    return paths


def nca_command(nca: str, policies: Path, pods: Path, namespaces: Path) -> list[str]:
    return [
        nca,
        "--connectivity",
        str(policies),
        "--pod_list",
        str(pods),
        "--ns_list",
        str(namespaces),
        "-o",
        "txt_no_fw_rules",
        "--output_endpoints",
        "pods",
        "--print_ipv6",
    ]


# --------------------------------------------------------------------------- reading nca's output


@dataclass(frozen=True)
class IPRange:
    first: int
    last: int
    version: int

    def overlaps(self, net: IPNet) -> bool:
        return (
            self.version == net.version
            and self.first <= int(net.broadcast_address)
            and int(net.network_address) <= self.last
        )


def parse_endpoint(token: str) -> str | IPRange:
    """An address range (`first-last`, a single address or a CIDR) as IPRange; anything else is a pod."""
    first, sep, last = token.partition("-")
    try:
        a = ipaddress.ip_address(first)
        b = ipaddress.ip_address(last) if sep else a
    except ValueError:
        try:
            net = ipaddress.ip_network(token, strict=False)
        except ValueError:
            return token  # `namespace/name`: never an address
        return IPRange(int(net.network_address), int(net.broadcast_address), net.version)
    if a.version != b.version or int(b) < int(a):
        raise NcaError(f"bad address range {token!r}")
    return IPRange(int(a), int(b), a.version)


def _protocols(value: str) -> tuple[str, ...]:
    value = value.strip()
    if value == "*":
        return _OURS
    negate = value.startswith("all but ")
    if negate:
        value = value.removeprefix("all but ")
    names = {_PROTOCOL_NUMBERS.get(n.strip(), n.strip()) for n in value.split(",") if n.strip()}
    if negate:
        return tuple(p for p in _OURS if p not in names)
    return tuple(p for p in _OURS if p in names)


def _cube(body: str) -> PortSet:
    parts = _KEY.split(body)
    if parts[0].strip():
        raise NcaError(f"cannot read connection cube {{{body}}}")
    fields = dict(zip(parts[1::2], parts[2::2], strict=True))
    unknown = set(fields) - {"protocols", "dst_ports"}
    if unknown:
        # src_ports, methods, paths, hosts, icmp ... would mean nca models something we do not.
        raise NcaError(f"connection cube with unexpected dimension(s) {sorted(unknown)}: {{{body}}}")
    protocols = _protocols(fields.get("protocols", "*"))
    result = PortSet.NONE
    for proto in protocols:
        if "dst_ports" not in fields:
            result |= PortSet.of(proto)
            continue
        for item in fields["dst_ports"].split(","):
            lo, _, hi = item.strip().partition("-")
            result |= PortSet.of(proto, int(lo), int(hi) if hi else None)
    return result


def parse_connections(text: str) -> PortSet:
    """nca's connection text as a PortSet over TCP/UDP/SCTP (other protocols are dropped, see M3)."""
    text = text.strip()
    if text == "All connections":
        return PortSet.ALL
    if text == "No connections":
        return PortSet.NONE
    negate = text.startswith("All but ")
    if negate:
        text = text.removeprefix("All but ").strip()
    cubes = _CUBE.findall(text)
    if not cubes or ",".join("{" + c + "}" for c in cubes) != text:
        raise NcaError(f"cannot read connections {text!r}")
    result = PortSet.NONE
    for body in cubes:
        result |= _cube(body)
    return PortSet.ALL - result if negate else result


@dataclass
class NcaConnectivity:
    """nca's answer: pod->pod PortSets plus per-pod lists of (address range, PortSet) both ways."""

    pods: dict[tuple[str, str], PortSet] = field(default_factory=dict)
    to_ranges: dict[str, list[tuple[IPRange, PortSet]]] = field(default_factory=lambda: defaultdict(list))
    from_ranges: dict[str, list[tuple[IPRange, PortSet]]] = field(default_factory=lambda: defaultdict(list))
    endpoints: int | None = None
    namespaces: int | None = None
    lines: int = 0
    seconds: float = 0.0

    def pod_to_pod(self, src: str, dst: str) -> PortSet:
        return self.pods.get((src, dst), PortSet.NONE)

    def pod_to_network(self, pod: str, net: IPNet) -> PortSet:
        return _over_network(self.to_ranges.get(pod, ()), net)

    def network_to_pod(self, net: IPNet, pod: str) -> PortSet:
        return _over_network(self.from_ranges.get(pod, ()), net)


def _over_network(entries: Iterable[tuple[IPRange, PortSet]], net: IPNet) -> PortSet:
    """What holds for *every* address of `net` (addresses nca printed nothing for get nothing)."""
    lo, hi = int(net.network_address), int(net.broadcast_address)
    relevant = [(r, ps) for r, ps in entries if r.overlaps(net)]
    cuts = {lo}
    for r, _ in relevant:
        if lo < r.first <= hi:
            cuts.add(r.first)
        if lo <= r.last < hi:
            cuts.add(r.last + 1)
    result = PortSet.ALL
    for start in sorted(cuts):
        here = PortSet.NONE
        for r, ps in relevant:
            if r.first <= start <= r.last:
                here |= ps
        result &= here
        if result.is_empty:
            break
    return result


def parse_output(stdout: str) -> NcaConnectivity:
    out = NcaConnectivity()
    for raw in stdout.splitlines():
        line = raw.strip()
        header = _HEADER.match(line)
        if header:
            out.endpoints, out.namespaces = int(header["endpoints"]), int(header["namespaces"])
            continue
        m = _LINE.match(line)
        if not m:
            continue
        src, dst = parse_endpoint(m["src"]), parse_endpoint(m["dst"])
        ports = parse_connections(m["conn"])
        out.lines += 1
        if isinstance(src, str) and isinstance(dst, str):
            out.pods[(src, dst)] = out.pods.get((src, dst), PortSet.NONE) | ports
        elif isinstance(src, str) and isinstance(dst, IPRange):
            out.to_ranges[src].append((dst, ports))
        elif isinstance(src, IPRange) and isinstance(dst, str):
            out.from_ranges[dst].append((src, ports))
        else:
            raise NcaError(f"unexpected range-to-range line {line!r}")
    if out.endpoints is None:
        raise NcaError("nca output has no 'global: cluster has N unique endpoints' header")
    return out


def run_nca(
    nca: str,
    policies: Sequence[Mapping[str, Any]],
    inventory: Inventory,
    directory: Path,
    timeout: float = 120,
) -> NcaConnectivity:
    """Write the inputs into `directory`, run nca's connectivity map and parse it."""
    paths = write_inputs(directory, policies, inventory)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            nca_command(nca, *paths), capture_output=True, text=True, timeout=timeout, check=False, cwd=directory
        )
    except subprocess.TimeoutExpired as exc:
        raise NcaError(f"nca did not finish within {timeout:.0f}s") from exc
    elapsed = time.perf_counter() - start
    (directory / "nca.stdout").write_text(proc.stdout)
    (directory / "nca.stderr").write_text(proc.stderr)
    if proc.returncode != 0:
        raise NcaError(f"nca exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    result = parse_output(proc.stdout)
    result.seconds = elapsed
    return result
