"""The operator's view of the cluster, kept from the watch streams it already has (Kopf indexes).

What is kept is what a reconcile needs to decide "nothing to do" without a request: the newest body of
every AppTopology, and for every NetworkPolicy a topology owns, 16 bytes of digest of what the operator
manages on it (:func:`apptopology.compare.managed_digest`). Writes never trust the cache: when anything
differs, the reconcile lists the namespace and plans from the API server's answer.

Also kept: what each topology last wanted (the digests of its desired policies), so that the watch
event of our own write, which arrives with exactly that digest, costs no reconcile at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..api.spec import API_GROUP, KIND
from ..compare import managed_digest
from ..plan import candidate_owners

Key = tuple[str, str]  # (namespace, name) of an AppTopology


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    name: str
    uid: str
    digest: bytes


@dataclass(frozen=True)
class View:
    """What the cache knows about one topology at the start of a reconcile (a snapshot, not live):
    its body, the policies it owns, and the names of every policy of its namespace (for conflicts)."""

    body: dict[str, Any] | None
    owned: dict[str, PolicyEntry]
    names: frozenset[str] = frozenset()


def controller_uid(policy: Mapping[str, Any]) -> str | None:
    for ref in (policy.get("metadata") or {}).get("ownerReferences") or []:
        if (
            ref.get("controller") is True
            and ref.get("kind") == KIND
            and str(ref.get("apiVersion", "")).startswith(f"{API_GROUP}/")
        ):
            return str(ref.get("uid"))
    return None


NAMES = ""  # the index key (namespace, NAMES) holds the names of every policy of the namespace


def policy_index_entries(policy: Mapping[str, Any]) -> dict[tuple[str, str], PolicyEntry | str]:
    """Index entries of one NetworkPolicy: its name under (namespace, NAMES), and under (namespace, owner
    UID) its entry when an AppTopology controls it."""
    meta = policy["metadata"]
    entries: dict[tuple[str, str], PolicyEntry | str] = {(meta["namespace"], NAMES): meta["name"]}
    uid = controller_uid(policy)
    if uid is not None:
        entries[(meta["namespace"], uid)] = PolicyEntry(meta["name"], meta.get("uid", ""), managed_digest(policy))
    return entries


class Expectations:
    """What each topology last wanted: policy name -> digest of the desired object."""

    def __init__(self) -> None:
        self._wanted: dict[Key, dict[str, bytes]] = {}

    def set(self, key: Key, digests: Mapping[str, bytes]) -> None:
        self._wanted[key] = dict(digests)

    def forget(self, key: Key) -> None:
        self._wanted.pop(key, None)

    def keys_to_reconcile(self, event: Mapping[str, Any]) -> list[Key]:
        """The topologies a NetworkPolicy event concerns, except where it is the echo of our own write.

        A policy whose digest is what its owner wants, or the deletion of one its owner no longer wants,
        needs nothing; anything else (drift, a deleted policy, a foreign policy under a wanted name, an
        owner we have not reconciled yet) reconciles the candidates.
        """
        policy = event["object"]
        meta = policy.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        deleted = event.get("type") == "DELETED"
        keys = []
        for owner in sorted(candidate_owners(policy)):
            key = (namespace, owner)
            wanted = self._wanted.get(key)
            if wanted is None:
                keys.append(key)
            elif name not in wanted:
                continue  # not one of its policies (a stale one going, or a look-alike)
            elif not deleted and wanted[name] == managed_digest(policy):
                continue  # the echo of our own write
            else:
                keys.append(key)
        return keys

    def __len__(self) -> int:
        return len(self._wanted)

    def wanted_policies(self) -> int:
        return sum(len(v) for v in self._wanted.values())


def digests(policies: Iterable[Mapping[str, Any]]) -> dict[str, bytes]:
    return {str(p["metadata"]["name"]): managed_digest(p) for p in policies}
