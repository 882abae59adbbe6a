"""kube-router 2.1.0's NetworkPolicy semantics, where they differ from the API's (and explain's).

The probe matrix found two deviations; both are read from kube-router's source (pkg/controllers/netpol)
and reproduced by test_findings.py. Both only matter in corners, and both allow more than the API says:

``shared-chain``
    kube-router keeps a policy's ingress and egress rules in one iptables chain, and a pod selected by a
    policy of both types jumps to that chain for its traffic in either direction. So when one policy
    selects both the source and the destination, an ingress rule of it that admits the source also
    passes the source's *egress* check, and an egress rule of it that reaches the destination also
    passes the destination's *ingress* check. The API: each direction is decided by its own rules.

``named-port-everywhere``
    An egress rule without ``to`` and with a named port: kube-router resolves the name on the pods of
    the policy's own namespace and then allows those port numbers to every destination, including
    addresses outside the cluster and pods that do not declare the name. The API: a named port only
    matches a destination pod that declares it (nothing outside the cluster declares ports).

The model is written in explain's terms: the second deviation as a rewrite of the policies (the named
port replaced by the numbers kube-router resolves it to), the first as a predicate on explain's verdict
for the rewritten policies. The probe matrix requires every packet to match this model, and counts
separately every probe where the model, and the packets, differ from explain.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Literal

from apptopology.evaluator import Endpoint, Evaluator, Inventory, PortSet, Verdict, parse_policies

Deviation = Literal["shared-chain", "named-port-everywhere"]
Answer = tuple[bool, Deviation | None]


def shared_chain_allows(verdict: Verdict) -> bool:
    """explain's verdict, with a policy selecting both ends letting each direction use the other's rules."""
    egress, ingress = verdict.egress, verdict.ingress
    egress_ok = egress.allowed or any(r.policy in egress.isolating_policies for r in ingress.allowing_rules)
    ingress_ok = ingress.allowed or any(r.policy in ingress.isolating_policies for r in egress.allowing_rules)
    return egress_ok and ingress_ok


def resolve_catch_all_named_ports(policies: Sequence[dict[str, Any]], inventory: Inventory) -> list[dict[str, Any]]:
    """The policies as kube-router enforces them: in an egress rule without ``to``, each named port becomes
    the numbers the pods of the policy's namespace (those with an IP) declare under that name."""
    out = copy.deepcopy(list(policies))
    for policy in out:
        namespace = policy["metadata"].get("namespace") or "default"
        declared: dict[tuple[str, str], set[int]] = {}
        for pod in inventory.pods:
            if pod.namespace == namespace and pod.ip:
                for name, protocol, number in pod.named_ports:
                    declared.setdefault((name, protocol), set()).add(number)
        spec = policy.get("spec") or {}
        if not spec.get("egress"):
            continue
        rules = []
        for rule in spec["egress"]:
            ports = rule.get("ports") or []
            if rule.get("to") or not any(isinstance(p.get("port"), str) for p in ports):
                rules.append(rule)
                continue
            numeric = []
            for p in ports:
                if isinstance(p.get("port"), str):
                    protocol = p.get("protocol", "TCP")
                    numeric += [
                        {"port": n, "protocol": protocol} for n in sorted(declared.get((p["port"], protocol), ()))
                    ]
                else:
                    numeric.append(p)
            if numeric:  # a rule whose ports all resolve to nothing allows nothing: drop it (never "all ports")
                rules.append({**rule, "ports": numeric})
        spec["egress"] = rules
    return out


class KubeRouterModel:
    """What kube-router lets through, per connection, and which deviation (if any) makes it differ."""

    def __init__(self, policies: Sequence[dict[str, Any]], inventory: Inventory, explain: Evaluator):
        self.explain = explain
        self.rewritten = Evaluator(parse_policies(resolve_catch_all_named_ports(policies, inventory)), inventory)
        self._pairs: dict[tuple[Endpoint, Endpoint], tuple[PortSet, PortSet]] = {}

    def allows(
        self, source: Endpoint, destination: Endpoint, protocol: str, port: int
    ) -> tuple[bool, Deviation | None]:
        pair = self._pairs.get((source, destination))
        if pair is None:
            pair = self._pairs[source, destination] = (
                self.explain.allowed(source, destination),
                self.rewritten.allowed(source, destination),
            )
        by_api, by_rewrite = (ports.contains(protocol, port) for ports in pair)
        if by_rewrite:
            return True, None if by_api else "named-port-everywhere"
        if shared_chain_allows(self.rewritten.explain(source, destination, protocol, port)):
            return True, "shared-chain"
        return False, "named-port-everywhere" if by_api else None
