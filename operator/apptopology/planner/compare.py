"""Desired vs live NetworkPolicy: equal only when the API server would store them identically.

The operator writes nothing when a live policy is "in sync", so this comparison is a security boundary:
treating two different policies as equal means a widening edit is never repaired. The only
normalisation is what the API server itself does when it stores a ``networking.k8s.io/v1`` object:

- defaulting: ``protocol: TCP`` on every port; ``podSelector`` of the spec always present (``{}``);
  ``policyTypes`` when unset (``Ingress``, plus ``Egress`` if there are egress rules);
- Go's ``omitempty``: empty *lists and maps* (``ingress: []``, ``ports: []``, ``matchLabels: {}``,
  ``except: []``) and nulls are not stored. Empty *objects* behind pointers are stored and mean something:
  ``namespaceSelector: {}`` is "every namespace", ``podSelector: {}`` in a peer is "every pod", an empty
  rule ``{}`` is "everything". Those are kept.

Nothing else is dropped or reordered: list order is kept as stored. Unknown fields stay (and differ).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ..render.renderer import DESCRIPTION_ANNOTATION, MANAGED_BY_LABEL, TOPOLOGY_LABEL

# Per NetworkPolicy v1 type: which fields are lists/maps with omitempty (dropped when empty), and which
# fields hold nested typed objects (normalised recursively).
_SELECTOR_OMITEMPTY = ("matchLabels", "matchExpressions")
_OUR_LABELS = (MANAGED_BY_LABEL, TOPOLOGY_LABEL)


def _drop_null(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not None}


def _selector(sel: Any) -> Any:
    if not isinstance(sel, Mapping):
        return sel
    out = _drop_null(sel)
    for key in _SELECTOR_OMITEMPTY:
        if key in out and out[key] in ({}, []):
            del out[key]
    if isinstance(out.get("matchExpressions"), list):
        exprs = []
        for expr in out["matchExpressions"]:
            if isinstance(expr, Mapping):
                expr = _drop_null(expr)
                if expr.get("values") == []:
                    del expr["values"]
            exprs.append(expr)
        out["matchExpressions"] = exprs
    return out


def _peer(peer: Any) -> Any:
    if not isinstance(peer, Mapping):
        return peer
    out = _drop_null(peer)
    for key in ("podSelector", "namespaceSelector"):
        if key in out:
            out[key] = _selector(out[key])
    block = out.get("ipBlock")
    if isinstance(block, Mapping):
        block = _drop_null(block)
        if block.get("except") == []:
            del block["except"]
        out["ipBlock"] = block
    return out


def _port(port: Any) -> Any:
    if not isinstance(port, Mapping):
        return port
    out = _drop_null(port)
    out.setdefault("protocol", "TCP")
    return out


def _rule(rule: Any, peers_field: str) -> Any:
    if not isinstance(rule, Mapping):
        return rule
    out = _drop_null(rule)
    for key, norm in ((peers_field, _peer), ("ports", _port)):
        if key in out:
            if out[key] == []:
                del out[key]
            elif isinstance(out[key], list):
                out[key] = [norm(item) for item in out[key]]
    return out


def _copy(obj: Any) -> Any:
    """A deep copy of decoded JSON (mappings, lists, scalars), several times faster than copy.deepcopy."""
    if type(obj) is dict:
        return {k: _copy(v) for k, v in obj.items()}
    if type(obj) is list:
        return [_copy(v) for v in obj]
    if obj is None or type(obj) in (str, int, float, bool):
        return obj
    return copy.deepcopy(obj)  # anything else, exactly as before


def stored_spec(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """``spec`` as the API server would store it (see the module docstring); input is not modified."""
    out = _drop_null(_copy(dict(spec or {})))
    out["podSelector"] = _selector(out.get("podSelector") or {})
    for direction, peers_field in (("ingress", "from"), ("egress", "to")):
        if direction in out:
            if out[direction] == []:
                del out[direction]
            elif isinstance(out[direction], list):
                out[direction] = [_rule(r, peers_field) for r in out[direction]]
    if out.get("policyTypes") in (None, []):
        out["policyTypes"] = ["Ingress", *(["Egress"] if out.get("egress") else [])]
    return out


def _ref_key(ref: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(ref.get(k) for k in ("apiVersion", "kind", "name", "uid", "controller"))


def in_sync(desired: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """True when applying ``desired`` would change nothing the operator manages on ``live``.

    Managed: the whole spec, our labels and annotations (values must match; other keys are someone
    else's and are left alone), and our controller ownerReference (the fields we set).
    """
    if stored_spec(desired.get("spec")) != stored_spec(live.get("spec")):
        return False
    mine, theirs = desired.get("metadata") or {}, live.get("metadata") or {}
    for key in ("labels", "annotations"):
        have = theirs.get(key) or {}
        if any(have.get(k) != v for k, v in (mine.get(key) or {}).items()):
            return False
    live_refs = {_ref_key(r) for r in theirs.get("ownerReferences") or []}
    return all(_ref_key(r) in live_refs for r in mine.get("ownerReferences") or [])


def managed_digest(policy: Mapping[str, Any]) -> bytes:
    """A digest of what :func:`in_sync` compares for one of our policies: equal digests of a rendered
    policy and a live one mean they are in sync, so a cache can hold 16 bytes instead of the object.

    Covers the stored spec, the values of our labels and description annotation, and the controller
    ownerReference (other keys and non-controller references are someone else's, as in :func:`in_sync`).
    """
    meta = policy.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    refs = sorted(_ref_key(r) for r in meta.get("ownerReferences") or [] if r.get("controller") is True)
    payload = [
        stored_spec(policy.get("spec")),
        [labels.get(k) for k in _OUR_LABELS],
        annotations.get(DESCRIPTION_ANNOTATION),
        refs,
    ]
    return hashlib.blake2b(json.dumps(payload, sort_keys=True, default=str).encode(), digest_size=16).digest()
