"""The probe matrix: a topology reconciled by the operator, every pair probed, compared with explain.

For one AppTopology document:

1. the inventory ``apptopology explain`` synthesizes for it (a pod per tier and peer, near misses: the
   peer's labels in the wrong namespace, its namespace without the labels, pods of no tier, addresses
   inside and outside every ipBlock and its excepts) is made real: namespaces with their labels, pods in
   network namespaces with servers on their container ports, external clients at the ipBlock addresses;
2. the AppTopology is created; the operator reconciles it; probes are repeated until packets follow
   (the enforcement latency), then kube-router is known to have caught up (``Dataplane.settle``);
3. every ordered pair (pod or external source, pod or external destination, not both external) is
   probed on every port the topology mentions plus near misses (the neighbour port, the port range's
   edges, the other protocol, an unrelated port);
4. the expected verdict of each probe is ``explain``'s on the *live* inventory (the cluster's namespaces
   and pods, read back from the API server, plus the external clients), and must equal the packet,
   probe by probe; the CLI's own ``explain -o json`` must agree with it on every pod pair, and so must
   ``explain`` of the live NetworkPolicies the operator wrote;
5. every blocked probe is backed by a positive control: the node reaches the same server on the same
   port (kube-router always lets a node reach its pods), so a dead server cannot pass for a policy.
"""

from __future__ import annotations

import contextlib
import copy
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from harness import ROOT, wait_for
from kubernetes import client
from kuberouter import KubeRouterModel
from netns import Protocol, Result

from apptopology.analysis.explain import matrix
from apptopology.analysis.intent import synthesize
from apptopology.analysis.subject import merge_inventories, subject
from apptopology.api.spec import AppTopology
from apptopology.evaluator import (
    NAME_LABEL,
    Evaluator,
    External,
    Inventory,
    Pod,
    PortSet,
    inventory_from_manifests,
)
from apptopology.render.validation import parse_topology
from dataplane import Dataplane, Port

GROUP, VERSION, PLURAL = "apptopology.io", "v1alpha1", "apptopologies"
EXPLAIN = (sys.executable, "-m", "apptopology.cli", "explain")
UNRELATED_PORT = 4242  # declared by nobody: every isolated pair must refuse it
MAX_PORTS = 24  # port numbers per case (each probed over TCP and UDP)
REPORTS: list[CaseReport] = []  # every finished case, for the session summary (conftest.py)


@dataclass(frozen=True)
class Probe:
    source: str
    destination: str
    port: int
    protocol: Protocol

    def __str__(self) -> str:
        return f"{self.source} -> {self.destination} {self.protocol}/{self.port}"


@dataclass
class CaseReport:
    """What one case did, for the summary (counts and latency are printed, never asserted on time)."""

    case: str
    pods: int = 0
    externals: int = 0
    probes: int = 0
    open: int = 0
    blocked: int = 0
    controls: int = 0
    agree: int = 0
    deviations: list[str] = field(default_factory=list)  # packets != explain, as kuberouter.py predicts
    latency: float | None = None
    skipped: list[str] = field(default_factory=list)

    def line(self) -> str:
        lat = f"{self.latency * 1000:.0f} ms" if self.latency is not None else "n/a"
        return (
            f"{self.case}: {self.pods} pods, {self.externals} external clients, {self.probes} probes "
            f"({self.open} open, {self.blocked} blocked, {self.controls} positive controls), "
            f"observed == explain for {self.agree}/{self.probes}"
            + (f" (the other {len(self.deviations)}: kube-router's deviations)" if self.deviations else "")
            + f"; enforcement latency {lat}"
        )


def probe_ports(topology: AppTopology, inventory: Inventory) -> list[Port]:
    """The container ports of every pod of the case: the topology's ports, their near misses, both protocols."""
    spec = topology.spec
    numbers: set[int] = {UNRELATED_PORT}
    ports = [p for f in spec.flows for p in f.ports or []]
    ports += list(spec.dns.ports) if spec.dns.enabled else []
    ports += list(spec.monitoring.ports or []) if spec.monitoring.enabled else []
    for p in ports:
        if isinstance(p.port, int):
            end = p.end_port or p.port
            numbers |= {p.port, end + 1}
            if p.end_port is not None:
                numbers |= {p.port - 1, end}
    named = {cp.port: cp for pod in inventory.pods for cp in pod.ports if cp.name}
    for number in named:
        numbers |= {number, number + 1}
    chosen = sorted(n for n in numbers if 1 <= n <= 65535)[:MAX_PORTS]
    out: list[Port] = []
    for n in chosen:
        protocol: Protocol
        for protocol in ("TCP", "UDP"):
            cp = named.get(n)
            name = cp.name if cp is not None and cp.protocol == protocol else None
            out.append(Port(n, protocol, name))
    # A named port whose number fell beyond MAX_PORTS must still be declared: named ports resolve on it.
    for n, cp in named.items():
        if n not in chosen and cp.protocol in ("TCP", "UDP"):
            out.append(Port(n, cp.protocol, cp.name))  # type: ignore[arg-type]
    return out


def _ipv4(external: External) -> str | None:
    net = external.network
    return str(net.network_address) if net.version == 4 and net.num_addresses == 1 else None


class Case:
    """One topology on the dataplane, from nothing back to nothing (see the module docstring)."""

    def __init__(self, dp: Dataplane, case_id: str, doc: dict[str, Any]):
        self.dp = dp
        self.id = case_id
        self.doc = copy.deepcopy(doc)
        self.topology = parse_topology(copy.deepcopy(doc))
        self.home = self.topology.metadata.namespace or "default"
        self.name = self.topology.metadata.name
        self.report = CaseReport(case_id)
        self.keys: list[str] = []
        self.externals: dict[str, External] = {}
        self.custom = client.CustomObjectsApi(dp.api)
        self.kube_router: KubeRouterModel | None = None  # set by expectations()

    # Setting up ------------------------------------------------------------------------------------

    def build(self, also: Sequence[dict[str, Any]] = ()) -> None:
        """Namespaces, pods and external clients of the synthesized inventory (of ``also``'s topologies too:
        the revisions a test will move to), every pod serving every probed port of all of them."""
        topologies = [self.topology, *(parse_topology(copy.deepcopy(d)) for d in also)]
        inventories = [synthesize(t) for t in topologies]
        inventory = merge_inventories(inventories)
        by_number: dict[tuple[int, str], Port] = {}
        for t, inv in zip(topologies, inventories, strict=True):
            for p in probe_ports(t, inv):
                if by_number.setdefault((p.port, p.protocol), p).name is None and p.name:
                    by_number[p.port, p.protocol] = p  # a named port must keep its name
        ports = [by_number[k] for k in sorted(by_number)]
        for ns in inventory.namespaces:
            self.dp.ensure_namespace(ns.name, {k: v for k, v in ns.labels.items() if k != NAME_LABEL})
        addresses = {}
        for ext in inventory.externals:
            address = _ipv4(ext)
            if address is None:
                self.report.skipped.append(f"{ext} (IPv6: not enforced by kube-router 2.1.0)")
                continue
            addresses[address] = ext
        pods = [(p.namespace, p.name, dict(p.labels), ports) for p in inventory.pods]
        self.dp.add_pods(pods, avoid=addresses)
        self.keys += [f"{ns}/{name}" for ns, name, _, _ in pods]
        for address, ext in addresses.items():
            name = address.replace(".", "-")
            endpoint = self.dp.add_external(name, address, ports)
            self.keys.append(endpoint.key)
            self.externals[endpoint.key] = External(f"{address}/32", ext.name)
        self.report.pods = len(pods)
        self.report.externals = len(addresses)
        self.dp.settle()

    def apply(self) -> int:
        """Create the AppTopology as its owner would; returns its generation."""
        body = copy.deepcopy(self.doc)
        created = self.dp.k(self.custom.create_namespaced_custom_object, GROUP, VERSION, self.home, PLURAL, body)
        return int(created["metadata"]["generation"])

    def revise(self, doc: dict[str, Any]) -> int:
        """Replace the topology's spec (same name and namespace); returns the new generation."""
        self.doc = copy.deepcopy(doc)
        self.topology = parse_topology(copy.deepcopy(doc))
        patch = [{"op": "replace", "path": "/spec", "value": copy.deepcopy(doc["spec"])}]
        updated = self.dp.k(
            self.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            self.home,
            PLURAL,
            self.name,
            patch,
            _content_type="application/json-patch+json",
        )
        return int(updated["metadata"]["generation"])

    def ready(self, generation: int | None = None) -> dict[str, Any] | None:
        obj = self.dp.k(self.custom.get_namespaced_custom_object, GROUP, VERSION, self.home, PLURAL, self.name)
        status = obj.get("status") or {}
        if status.get("observedGeneration") != (generation or obj["metadata"]["generation"]):
            return None
        cond = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)
        return cond if cond and cond["status"] == "True" else None

    def teardown(self) -> None:
        """Delete the topology, its policies and the endpoints: the next case starts from an empty node.

        The policies are deleted here rather than left to the garbage collector: the controller manager
        only learns of the CRD at its next 30 s discovery resync, which would cost the first case half a
        minute (garbage collection itself is proven by the integration suite).
        """
        try:
            self.dp.k(self.custom.delete_namespaced_custom_object, GROUP, VERSION, self.home, PLURAL, self.name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        net = client.NetworkingV1Api(self.dp.api)
        for policy in self.dp.k(net.list_namespaced_network_policy, self.home).items:
            with contextlib.suppress(client.ApiException):
                self.dp.k(net.delete_namespaced_network_policy, policy.metadata.name, self.home)
        wait_for(
            lambda: not self.dp.k(net.list_namespaced_network_policy, self.home).items,
            timeout=60,
            what=f"the policies of {self.home}/{self.name} to be deleted",
        )
        self.dp.remove(self.keys)
        self.keys = []

    # Expectations ----------------------------------------------------------------------------------

    def live_inventory(self) -> tuple[Inventory, list[dict[str, Any]]]:
        """The cluster's namespaces and pods as the API server has them, plus this case's external clients."""
        core = self.dp.core
        manifests: list[dict[str, Any]] = []
        for kind, call in (("Namespace", core.list_namespace), ("Pod", core.list_pod_for_all_namespaces)):
            raw = self.dp.k(call, _preload_content=False)
            for item in json.loads(raw.data)["items"]:
                item["kind"] = kind
                manifests.append(item)
        return inventory_from_manifests(manifests, self.externals.values()), manifests

    def expectations(self) -> tuple[dict[tuple[str, str], PortSet], Evaluator, Inventory, dict[str, Pod | External]]:
        """explain's matrix of the topology on the live inventory, for every probed pair, keyed by endpoint
        key; the CLI's own answer is checked against it."""
        inventory, manifests = self.live_inventory()
        subj = subject([copy.deepcopy(self.doc)], inventory)
        view = matrix(subj)
        by_key: dict[str, Pod | External] = {p.ref: p for p in inventory.pods}
        by_key.update(self.externals)
        expected = {
            (s, d): view.result[by_key[s], by_key[d]]
            for s in self.keys
            for d in self.keys
            if s != d and not (s.startswith("external/") and d.startswith("external/"))
        }
        self._check_cli(manifests, expected, view.homes)
        evaluator = Evaluator(subj.parsed, inventory)
        self.kube_router = KubeRouterModel(subj.policies, inventory, evaluator)
        return expected, evaluator, inventory, by_key

    def _check_cli(
        self, manifests: list[dict[str, Any]], expected: dict[tuple[str, str], PortSet], homes: Iterable[str]
    ) -> None:
        """`apptopology explain -f TOPOLOGY --inventory LIVE -o json` says the same for every pod pair."""
        with tempfile.TemporaryDirectory() as tmp:
            topo, inv = Path(tmp) / "topology.yaml", Path(tmp) / "inventory.yaml"
            topo.write_text(yaml.safe_dump(self.doc))
            inv.write_text(yaml.safe_dump_all(manifests))
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "apptopology.cli",
                    "explain",
                    "-f",
                    str(topo),
                    "--inventory",
                    str(inv),
                    "-o",
                    "json",
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=False,
            )
        if done.returncode != 0:
            raise AssertionError(f"apptopology explain failed: {done.stderr}")
        cli = {(row["from"], row["to"]): PortSet.parse(row["ports"]) for row in json.loads(done.stdout)}
        homes = set(homes)
        differ = [
            f"{s} -> {d}: CLI {cli.get((s, d), PortSet.NONE)}, in-process {ports}"
            for (s, d), ports in expected.items()
            if "external/" not in s + d
            and (s.split("/")[0] in homes or d.split("/")[0] in homes)
            and cli.get((s, d), PortSet.NONE) != ports
        ]
        assert not differ, "apptopology explain -o json disagrees with the in-process matrix:\n" + "\n".join(differ)

    def _check_live_policies(
        self, inventory: Inventory, by_key: dict[str, Pod | External], expected: dict[tuple[str, str], PortSet]
    ) -> None:
        """explain of the NetworkPolicies the operator wrote gives the same matrix as explain of the topology."""
        net = client.NetworkingV1Api(self.dp.api)
        raw = self.dp.k(net.list_namespaced_network_policy, self.home, _preload_content=False)
        policies = json.loads(raw.data)["items"]
        for p in policies:
            p["kind"] = "NetworkPolicy"
        if not policies:  # nothing isolated: the operator writes nothing, and everything must be open
            closed = [f"{s} -> {d}: {ports}" for (s, d), ports in expected.items() if not ports.is_all]
            assert not closed, "no policy was written, yet explain restricts:\n" + "\n".join(closed)
            return
        live = matrix(subject(policies, inventory)).result
        differ = [
            f"{s} -> {d}: live policies {live[by_key[s], by_key[d]]}, topology {ports}"
            for (s, d), ports in expected.items()
            if live[by_key[s], by_key[d]] != ports
        ]
        assert not differ, "the live policies do not do what the topology renders to:\n" + "\n".join(differ)

    # Probing ---------------------------------------------------------------------------------------

    def plan(self, expected: dict[tuple[str, str], PortSet]) -> list[tuple[Probe, bool]]:
        out = []
        for (s, d), allowed in sorted(expected.items()):
            for port in self.dp.endpoint(d).ports:
                out.append((Probe(s, d, port.port, port.protocol), allowed.contains(port.protocol, port.port)))
        return out

    def run(self) -> CaseReport:
        """The whole case; raises AssertionError listing every disagreement."""
        self.build()
        # explain renders the topology itself, so its answer on the live inventory is known before the
        # operator has written anything.
        expected, evaluator, inventory, by_key = self.expectations()
        plan = self.plan(expected)
        start = time.monotonic()
        generation = self.apply()
        self.report.latency = self._enforcement_latency(plan, start)
        wait_for(lambda: self.ready(generation), timeout=60, what=f"{self.home}/{self.name} Ready")
        self.dp.settle()
        self._check_live_policies(inventory, by_key, expected)
        results = self.dp.probe_all([(p.source, p.destination, p.port, p.protocol) for p, _ in plan])
        problems = self.check(plan, results, evaluator, by_key)
        if problems:
            raise AssertionError(f"{self.id}: {len(problems)} problems\n" + "\n".join(problems))
        return self.report

    def _enforcement_latency(self, plan: list[tuple[Probe, bool]], start: float) -> float | None:
        """Seconds from the create call until a sample of probes (per destination: one that must open, one
        that must be refused) all match; None when nothing is blocked (nothing to wait for)."""
        sample: dict[tuple[str, bool], tuple[Probe, bool]] = {}
        for probe, allowed in plan:
            sample.setdefault((probe.destination, allowed), (probe, allowed))
        if not any(not allowed for _, allowed in sample.values()):
            return None
        probes = [(p.source, p.destination, p.port, p.protocol) for p, _ in sample.values()]
        wants = [allowed for _, allowed in sample.values()]
        deadline = start + 60
        while time.monotonic() < deadline:
            got = [r.open for r in self.dp.probe_all(probes, workers=16)]
            if got == wants:
                return time.monotonic() - start
            time.sleep(0.005)
        raise AssertionError(f"{self.id}: packets did not follow the topology within 60 s")

    def check(
        self,
        plan: list[tuple[Probe, bool]],
        results: list[Result],
        evaluator: Evaluator,
        by_key: dict[str, Pod | External],
    ) -> list[str]:
        """Fill the report. A problem is: a packet that differs from kube-router's model (explain's answer
        but for the deviations in kuberouter.py), or a failed positive control."""
        problems: list[str] = []
        to_control: set[tuple[str, int, Protocol]] = set()
        for (probe, allowed), result in zip(plan, results, strict=True):
            self.report.probes += 1
            blocked = result.outcome in ("refused", "timeout")
            if result.open:
                self.report.open += 1
            elif blocked:
                self.report.blocked += 1
                to_control.add((probe.destination, probe.port, probe.protocol))
            if result.outcome in ("wrong-server", "unreachable"):
                problems.append(f"{probe}: {result.outcome} {result.banner!r} (a harness problem, not a verdict)")
                continue
            src, dst = by_key[probe.source], by_key[probe.destination]
            assert self.kube_router is not None
            model, deviation = self.kube_router.allows(src, dst, probe.protocol, probe.port)
            if result.open == allowed:
                self.report.agree += 1
            elif result.open == model:
                self.report.deviations.append(f"{deviation}: {probe}")
            if result.open == model:
                continue
            verdict = evaluator.explain(src, dst, probe.protocol, probe.port)
            again = self.dp.probe(probe.source, probe.destination, probe.port, probe.protocol)
            problems.append(
                f"{probe}: packets {result.outcome} (again: {again.outcome}); explain says "
                f"{'ALLOWED' if allowed else 'DENIED'}, the model of kube-router {'open' if model else 'blocked'}:"
                "\n    " + "\n    ".join(verdict.reasons)
            )
        controls = sorted(to_control)
        for (target, port, protocol), result in zip(
            controls, self.dp.probe_all([("node", d, p, pr) for d, p, pr in controls]), strict=True
        ):
            self.report.controls += 1
            if not result.open:
                problems.append(f"positive control node -> {target} {protocol}/{port}: {result.outcome}; "
                                "its blocked verdicts prove nothing")  # fmt: skip
        return problems


__all__ = ["REPORTS", "Case", "CaseReport", "Probe", "probe_ports"]
