"""Adoption: from what a namespace has today to an AppTopology.

``importer`` turns existing NetworkPolicies into a topology and proves the two equivalent with ``verify``;
``suggest`` proposes a topology from observed flows (Hubble, or our own JSON lines) and audits a topology
against them. Both are pure: the CLI reads files or the cluster and hands them plain data.
"""
