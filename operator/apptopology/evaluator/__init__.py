"""Independent NetworkPolicy (networking.k8s.io/v1) evaluator: plain dicts in, dataclasses out.

Used to prove that generated policies yield exactly the declared connectivity, so it
deliberately shares no code with policy generation and imports neither kopf nor kubernetes.
"""

from .engine import ConnectivityMatrix, DirectionVerdict, Evaluator, PolicyRef, RuleRef, Verdict
from .inventory import (
    NAME_LABEL,
    ContainerPort,
    Endpoint,
    External,
    Inventory,
    Namespace,
    Pod,
    inventory_from_manifests,
)
from .labels import Labels, LabelSelector, Requirement, parse_selector
from .policy import IPBlock, NetworkPolicy, Peer, PolicyPort, Rule, parse_policies, parse_policy
from .ports import PORT_MAX, PORT_MIN, PROTOCOLS, IntervalSet, PortSet

__all__ = [
    "NAME_LABEL",
    "PORT_MAX",
    "PORT_MIN",
    "PROTOCOLS",
    "ConnectivityMatrix",
    "ContainerPort",
    "DirectionVerdict",
    "Endpoint",
    "Evaluator",
    "External",
    "IPBlock",
    "IntervalSet",
    "Inventory",
    "LabelSelector",
    "Labels",
    "Namespace",
    "NetworkPolicy",
    "Peer",
    "Pod",
    "PolicyPort",
    "PolicyRef",
    "PortSet",
    "Requirement",
    "Rule",
    "RuleRef",
    "Verdict",
    "inventory_from_manifests",
    "parse_policies",
    "parse_policy",
    "parse_selector",
]
