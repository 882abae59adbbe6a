"""Status never claims more than the last write proved: a topology's status compared with the live policies.

What status claims, and what must then hold in the API server:

- ``status.policies`` names exactly the policies the topology owns now (whatever the reason);
- Ready=True/Reconciled: those policies are exactly what its current spec renders (no more, no less);
- spec.enforcement DryRun with Ready reason DryRun: it owns no policy (nothing is enforced);
- ``observedGeneration`` is never ahead of the object.

Called at settled points (after the test waited for the condition it expects); it retries for a few
seconds only because a watch event may still be on its way.
"""

from __future__ import annotations

from typing import Any

from harness import Cluster, wait_for

from apptopology.planner.compare import stored_spec
from apptopology.render.renderer import render
from apptopology.render.validation import parse_topology


def _owned(cluster: Cluster, namespace: str, uid: str) -> dict[str, dict[str, Any]]:
    return {
        n: p
        for n, p in cluster.policies(namespace).items()
        if any(r.get("uid") == uid and r.get("controller") for r in p["metadata"].get("ownerReferences") or [])
    }


def untrue(cluster: Cluster, namespace: str, name: str) -> list[str]:
    """What the status of ``namespace/name`` claims that the live policies do not show (empty: all true)."""
    obj = cluster.get(namespace, name)
    if obj is None:
        return []
    status = obj.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)
    live = _owned(cluster, namespace, obj["metadata"]["uid"])
    wrong = []
    if (status.get("observedGeneration") or 0) > obj["metadata"]["generation"]:
        wrong.append(f"observedGeneration {status['observedGeneration']} ahead of {obj['metadata']['generation']}")
    if sorted(status.get("policies") or []) != sorted(live):
        wrong.append(f"status.policies {sorted(status.get('policies') or [])} but {sorted(live)} exist")
    if ready is None:
        return wrong
    if ready["status"] == "True" and ready["reason"] == "Reconciled":
        topology = parse_topology({**obj, "metadata": {**obj["metadata"], "namespace": namespace}})
        want = {p["metadata"]["name"]: stored_spec(p["spec"]) for p in render(topology)}
        have = {n: stored_spec(p["spec"]) for n, p in live.items()}
        if have != want:
            wrong.append(
                f"Ready=True/Reconciled but the live policies differ from the spec: {sorted(have)} vs {sorted(want)}"
            )
    if ready["reason"] == "DryRun" and live:
        wrong.append(f"Ready reason DryRun (nothing enforced) but {sorted(live)} exist")
    return wrong


def assert_truthful(cluster: Cluster, namespace: str, name: str = "shop", timeout: float = 5) -> None:
    last: list[str] = []

    def check() -> bool:
        nonlocal last
        last = untrue(cluster, namespace, name)
        return not last

    try:
        wait_for(check, timeout=timeout, what="status as true as the live policies")
    except AssertionError:
        raise AssertionError(f"{namespace}/{name}: status claims more than is true: {last}") from None
