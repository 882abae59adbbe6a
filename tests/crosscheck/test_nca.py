"""Cross-check our NetworkPolicy evaluator against network-config-analyzer (nca), pair by pair.

For every case (each example topology rendered by apptopology over its synthesized inventory,
~30 seeded random policy sets, and pinned special cases) both tools compute who may connect to
whom on which ports, and every (source pod or address, destination pod or address) pair must
agree exactly, except:

* pairs nca never reports: a pod to itself and address to address (FINDINGS.md M1, M2);
* protocols other than TCP/UDP/SCTP, which NetworkPolicy does not define (M3, applied by the parser);
* ipBlock peers vs pod IPs: nca never matches a pod by its IP, so the comparison runs our evaluator
  on the inventory with pod IPs removed, and separately proves that the IPs change nothing but pairs
  whose pod IP lies in some policy's ipBlock (M4);
* the documented nca deviations each case lists in `deviations` (FINDINGS.md F1, F3, F4): there our
  evaluator must give the reference's answer and nca its known wrong one, so a fix in either shows up;
* valid policies nca refuses to read (F2, F5): nca gets the equivalent form the API server would
  store (`nca_policies`), our evaluator the original, and the refusal itself is asserted.

nca comes from $APPTOPOLOGY_NCA or tests/crosscheck/setup-nca.sh. Without it the module skips, or
fails when APPTOPOLOGY_REQUIRE_CONTROLPLANE=1 (CI's "no skipping" switch).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from nca_cases import Case, all_cases
from nca_tool import (
    REQUIRE_ENV,
    NcaConnectivity,
    NcaError,
    NcaUnavailable,
    locate_nca,
    parse_connections,
    parse_endpoint,
    parse_output,
    run_nca,
)

from apptopology.evaluator import Endpoint, Evaluator, External, Inventory, Pod, PortSet, parse_policies

CASES = all_cases()
CASE_IDS = [c.name for c in CASES]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def nca() -> str:
    try:
        return locate_nca()
    except NcaUnavailable as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"nca is required ({REQUIRE_ENV}=1) but unavailable: {exc}")
        pytest.skip(f"nca unavailable: {exc}")


@dataclass(frozen=True)
class NcaRun:
    result: NcaConnectivity | Exception
    """nca on the case's policies (or on `nca_policies`, the accepted form, where nca rejects them)."""
    original: NcaConnectivity | Exception | None = None
    """nca on the original policies, for cases it is known to reject (F2, F5)."""


@pytest.fixture(scope="session")
def nca_results(nca: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, NcaRun]:
    """Run nca once per case (twice where it rejects the original), two at a time (~1 s each)."""
    root = tmp_path_factory.mktemp("nca")
    jobs: list[tuple[str, list[dict[str, Any]], Inventory, Path]] = []
    for index, case in enumerate(CASES):
        jobs.append((case.name, case.nca_policies or case.policies, case.inventory, root / f"case{index:03d}"))
        if case.nca_rejects is not None:
            jobs.append((case.name + "#original", case.policies, case.inventory, root / f"case{index:03d}-original"))

    def one(job: tuple[str, list[dict[str, Any]], Inventory, Path]) -> NcaConnectivity | Exception:
        _, policies, inventory, directory = job
        try:
            return run_nca(nca, policies, inventory, directory)
        except Exception as exc:  # reported by the case's own test
            return exc

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = dict(zip((j[0] for j in jobs), pool.map(one, jobs), strict=True))
    return {c.name: NcaRun(outcomes[c.name], outcomes.get(c.name + "#original")) for c in CASES}


# --------------------------------------------------------------------------- comparison


def key(endpoint: Endpoint) -> str:
    return endpoint.ref if isinstance(endpoint, Pod) else endpoint.address


def without_pod_ips(inventory: Inventory) -> Inventory:
    """The inventory as nca sees it: pods are never addresses (M4)."""
    pods = tuple(replace(p, ip=None) for p in inventory.pods)
    return Inventory(inventory.namespaces, pods, inventory.externals)


def compared_pairs(inventory: Inventory) -> Iterator[tuple[Endpoint, Endpoint]]:
    """Every ordered pair nca reports on: at least one pod, and not a pod to itself (M1, M2)."""
    endpoints = inventory.endpoints
    for src in endpoints:
        for dst in endpoints:
            if isinstance(src, External) and isinstance(dst, External):
                continue
            if src == dst:
                continue
            yield src, dst


def ours(policies: list[dict[str, object]], inventory: Inventory) -> dict[tuple[str, str], PortSet]:
    matrix = Evaluator(parse_policies(policies), inventory).matrix()
    by_key = {key(e): e for e in inventory.endpoints}
    return {(key(s), key(d)): matrix[by_key[key(s)], by_key[key(d)]] for s, d in compared_pairs(inventory)}


def theirs(result: NcaConnectivity, inventory: Inventory) -> dict[tuple[str, str], PortSet]:
    out: dict[tuple[str, str], PortSet] = {}
    for src, dst in compared_pairs(inventory):
        if isinstance(src, Pod) and isinstance(dst, Pod):
            ports = result.pod_to_pod(src.ref, dst.ref)
        elif isinstance(src, Pod):
            assert isinstance(dst, External)
            ports = result.pod_to_network(src.ref, dst.network)
        else:
            assert isinstance(dst, Pod)
            ports = result.network_to_pod(src.network, dst.ref)
        out[(key(src), key(dst))] = ports
    return out


@dataclass(frozen=True)
class Mismatch:
    src: str
    dst: str
    ours: PortSet
    nca: PortSet

    def __str__(self) -> str:
        return f"{self.src} -> {self.dst}: ours {self.ours}; nca {self.nca}"


def ipblock_networks(policies: list[dict[str, object]]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for pol in parse_policies(policies):
        for rule in (*pol.ingress, *pol.egress):
            for peer in rule.peers:
                if peer.ip_block is not None:
                    nets.append(peer.ip_block.cidr)
    return nets


# --------------------------------------------------------------------------- the cross-check


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_nca_agrees(case: Case, nca_results: dict[str, NcaRun]) -> None:
    result = nca_results[case.name].result
    if isinstance(result, Exception):
        raise result
    inventory = without_pod_ips(case.inventory)
    # nca keeps at most two "isomorphic" pods per workload; bare pods are all distinct, so it must
    # have modelled every pod of the inventory (otherwise absent pairs would read as "denied").
    assert result.endpoints == len(inventory.pods), f"nca modelled {result.endpoints} of {len(inventory.pods)} pods"

    mine = ours(case.policies, inventory)
    other = theirs(result, inventory)
    assert set(case.deviations) <= set(mine), f"deviations name unknown pairs: {set(case.deviations) - set(mine)}"

    mismatches = []
    for pair, ports in mine.items():
        deviation = case.deviations.get(pair)
        if deviation is None:
            if ports != other[pair]:
                mismatches.append(Mismatch(*pair, ports, other[pair]))
            continue
        # A documented nca deviation: ours must be the reference answer, nca its known answer.
        assert ports == PortSet.parse(deviation.ours), f"{pair}: ours {ports}, reference says {deviation.ours}"
        assert other[pair] == PortSet.parse(deviation.nca), (
            f"{pair}: nca now says {other[pair]} instead of {deviation.nca} ({deviation.finding}): update FINDINGS.md"
        )
    assert not mismatches, f"{case.name}: {len(mismatches)} disagreements with nca:\n" + "\n".join(map(str, mismatches))


@pytest.mark.parametrize("case", [c for c in CASES if c.nca_rejects], ids=lambda c: c.name)
def test_nca_rejects_what_the_api_server_accepts(case: Case, nca_results: dict[str, NcaRun]) -> None:
    """F2, F5: nca refuses these policies, so test_nca_agrees feeds it the equivalent stored form."""
    original = nca_results[case.name].original
    assert isinstance(original, NcaError), f"nca now accepts {case.name}: compare it directly, update FINDINGS.md"
    assert case.nca_rejects is not None and case.nca_rejects in str(original)
    parse_policies(case.policies)  # ours accepts them, like the API server


@pytest.mark.parametrize("case", [c for c in CASES if any(p.ip for p in c.inventory.pods)], ids=lambda c: c.name)
def test_pod_ips_only_matter_inside_ipblocks(case: Case) -> None:
    """M4: the one modelling difference normalised away above is exactly "ipBlock matches pod IPs"."""
    with_ips = ours(case.policies, case.inventory)
    without = ours(case.policies, without_pod_ips(case.inventory))
    nets = ipblock_networks(case.policies)
    pods = {p.ref: p for p in case.inventory.pods}
    for pair, ports in with_ips.items():
        if ports == without[pair]:
            continue
        addresses = [pods[k].address for k in pair if k in pods and pods[k].address is not None]
        assert any(a in n for a in addresses for n in nets if a is not None and a.version == n.version), (
            f"{case.name}: {pair} changes with pod IPs ({without[pair]} -> {ports}) but no ipBlock covers them"
        )


def test_case_mix() -> None:
    """The generated cases exercise what the cross-check is for (guards against a generator regression)."""
    text = repr([c.policies for c in CASES])
    for needle in ("'except'", "'endPort'", "'port': 'http'", "'Egress']", "namespaceSelector", "ipBlock"):
        assert needle in text, needle
    assert sum(c.name.startswith("random:") for c in CASES) >= 30
    assert sum(c.name.startswith("example:") for c in CASES) >= 7
    and_peers = any(
        "namespaceSelector" in peer and "podSelector" in peer
        for c in CASES
        for p in c.policies
        for rules in (p["spec"].get("ingress") or [], p["spec"].get("egress") or [])
        for r in rules
        for peer in (r or {}).get("from", (r or {}).get("to")) or []
    )
    assert and_peers
    assert any(len(c.policies) > 2 for c in CASES)


# --------------------------------------------------------------------------- the output parser


def test_parse_connections() -> None:
    assert parse_connections("All connections") == PortSet.ALL
    assert parse_connections("No connections") == PortSet.NONE
    assert parse_connections("{protocols:TCP, UDP,dst_ports:53}") == PortSet.parse("TCP/53, UDP/53")
    assert parse_connections("{protocols:UDP,dst_ports:1000-1005,2000},{protocols:SCTP}") == PortSet.parse(
        "UDP/1000-1005, UDP/2000, SCTP/all"
    )
    assert parse_connections("All but {protocols:TCP,dst_ports:80}") == PortSet.ALL - PortSet.of("TCP", 80)
    # Protocols outside NetworkPolicy's three are dropped (M3); numbers are read as protocols.
    assert parse_connections("{protocols:all but TCP}") == PortSet.parse("UDP/all, SCTP/all")
    assert parse_connections("{protocols:ICMP, 17}") == PortSet.of("UDP")
    with pytest.raises(ValueError):
        parse_connections("{protocols:TCP,methods:GET}")
    with pytest.raises(ValueError):
        parse_connections("something else")


def test_parse_output(tmp_path: Path) -> None:
    text = "\n".join(
        [
            "Warning: Missing named port http in the pod 192.168.0.0-192.168.0.3. Ignoring the pod",
            "global: cluster has 3 unique endpoints, 2 namespaces",
            "0.0.0.0-9.255.255.255 => a/api : All connections",
            "10.0.0.0-10.0.255.255 => a/web : {protocols:TCP,dst_ports:8080}",
            "10.0.0.0-10.0.255.255 => a/web : {protocols:UDP,dst_ports:1000-1005}",
            "a/web => a/api : {protocols:SCTP}",
            "a/web => a/api : {protocols:TCP,dst_ports:9090}",
            "a/web => fd00::-fd00::ffff:ffff:ffff:ffff : {protocols:UDP,dst_ports:53}",
            "Total run time:   0.04 seconds",
        ]
    )
    out = parse_output(text)
    assert out.endpoints == 3 and out.lines == 6
    assert out.pod_to_pod("a/web", "a/api") == PortSet.parse("TCP/9090, SCTP/all")
    assert out.pod_to_pod("a/api", "a/web") == PortSet.NONE
    net = ipaddress.ip_network
    assert out.network_to_pod(net("10.0.0.9/32"), "a/web") == PortSet.parse("TCP/8080, UDP/1000-1005")
    assert out.network_to_pod(net("10.0.0.0/8"), "a/web") == PortSet.NONE  # not for all of its addresses
    assert out.network_to_pod(net("9.0.0.0/8"), "a/api") == PortSet.ALL
    assert out.network_to_pod(net("10.0.0.0/7"), "a/api") == PortSet.NONE  # 11.0.0.0/8 half printed nothing
    assert out.pod_to_network("a/web", net("fd00::1/128")) == PortSet.parse("UDP/53")
    assert parse_endpoint("10.0.0.1") == parse_endpoint("10.0.0.1-10.0.0.1") == parse_endpoint("10.0.0.1/32")
    assert parse_endpoint("kube-system/coredns-1") == "kube-system/coredns-1"
