"""The CRD: generated from the model, structural, documented, and as strict as the model where OpenAPI can be.

The API server is not needed here. A small validator for the subset of OpenAPI v3 that the CRD uses stands
in for its schema validation (with Kubernetes' semantics: int-or-string, string-only and number-only
bounds, strict field validation for unknown fields, pruning of nulls and defaulting before validation).
CEL rules (``x-kubernetes-validations``) are not evaluated here: documents that only CEL rejects must
pass this validator, and the real API server checks them in the integration suite
(``tests/integration``). Rejected by CEL only, in a cluster:

- tier names unique; flow and monitoring tiers declared in spec.tiers (spec rules)
- an endpoint has exactly one kind; ``anywhere`` is true when set; a flow has a tier endpoint
- port number 1-65535 and named-port syntax; endPort only with a numeric port and >= port
- cidr / except are CIDRs in canonical strict form (no host bits, leading zeros, zones, IPv4-mapped IPv6)
  and every except entry is a strict subset of cidr
- In/NotIn need values, Exists/DoesNotExist take none; monitoring needs namespaceSelector and ports
- matchLabels keys are label keys; a matchExpressions key's prefix has at most 253 characters
- dns.namespaceSelector and dns.podSelector are not both null
- scope Namespace: no tier exempted from the default-deny (tiers[].isolation false where spec.defaultDeny
  is true); no flow to (from) pods of the namespace by podSelector alone while ingress (egress) is isolated;
  no dns.namespaceSelector null while ingress is isolated
- a port without ``port`` takes no endPort
- cloudMetadata and kubeAPI are destinations only (true when set), a flow to kubeAPI has no ports;
  dns.service only with dns.discover; dns.nodeLocal.addresses are IPs in canonical form
- metadata.name at most 63 characters and without '.' (root rules)

Rejected by the schema's patterns: label values (matchLabels values, matchExpressions values) and
matchExpressions keys. Rejected only by the operator (admission accepts them; the status says
InvalidSpec): a rendered policy's annotations over 256 KiB.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from apptopology.api import crdgen
from apptopology.api.spec import (
    DNS,
    AppTopologySpec,
    Endpoint,
    Flow,
    IPBlock,
    LabelSelector,
    LabelSelectorRequirement,
    Monitoring,
    NodeLocalDNS,
    Port,
    Tier,
)
from apptopology.api.validation import InvalidTopology
from apptopology.render.validation import parse_topology
from shared import ROOT, example_documents, go_pattern, invalid_cases

CRD_FILE = ROOT / crdgen.DEFAULT_PATH


def load_crd() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(CRD_FILE.read_text(encoding="utf-8")) if d]
    assert len(docs) == 1
    crd: dict[str, Any] = docs[0]
    return crd


CRD = load_crd()
SCHEMA: dict[str, Any] = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


# --- a validator for the OpenAPI subset the CRD uses ---------------------------------------------------

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}


def _is_nonnullable_null(value: Any, schema: dict[str, Any] | None) -> bool:
    return value is None and schema is not None and not schema.get("nullable", False)


def _child_schema(schema: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    if schema is None:
        return None
    if key in schema.get("properties", {}):
        sub: dict[str, Any] = schema["properties"][key]
        return sub
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def prune_nulls(value: Any, schema: dict[str, Any] | None) -> None:
    """The API server's PruneNonNullableNullsWithoutDefaults: a null where null is not allowed and no
    default applies is removed (the field is then simply absent)."""
    if isinstance(value, dict):
        for key in list(value):
            sub = _child_schema(schema, key)
            if _is_nonnullable_null(value[key], sub) and sub is not None and "default" not in sub:
                del value[key]
            else:
                prune_nulls(value[key], sub)
    elif isinstance(value, list):
        for item in value:
            prune_nulls(item, schema.get("items") if schema else None)


def apply_defaults(value: Any, schema: dict[str, Any] | None) -> None:
    """The API server's defaulting: a missing (or non-nullable null) field gets its default, wherever its
    parent object exists, recursively."""
    if schema is None:
        return
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if "default" in sub and (key not in value or _is_nonnullable_null(value[key], sub)):
                value[key] = copy.deepcopy(sub["default"])
        for key in value:
            apply_defaults(value[key], _child_schema(schema, key))
    elif isinstance(value, list):
        for item in value:
            apply_defaults(item, schema.get("items"))


def admit(doc: dict[str, Any], schema: dict[str, Any] = SCHEMA) -> tuple[dict[str, Any], list[str]]:
    """What the API server does before CEL: prune nulls, default, validate. Returns (object, errors)."""
    obj = copy.deepcopy(doc)
    prune_nulls(obj, schema)
    apply_defaults(obj, schema)
    return obj, validate(obj, schema)


def _valid_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in value


def validate(value: Any, schema: dict[str, Any], path: str = "", root: bool = True) -> list[str]:
    """Errors of ``value`` against ``schema``; unknown fields are errors (strict field validation)."""
    where = path or "<root>"
    if value is None:
        return [] if schema.get("nullable") else [f"{where}: must not be null"]
    errors: list[str] = []
    if schema.get("x-kubernetes-int-or-string"):
        if not (_TYPES["integer"](value) or _TYPES["string"](value)):
            return [f"{where}: must be an integer or a string, not {type(value).__name__}"]
    elif "type" in schema:
        if not _TYPES[schema["type"]](value):
            return [f"{where}: must be of type {schema['type']}, not {type(value).__name__}"]
    elif not schema.get("x-kubernetes-preserve-unknown-fields"):
        return [f"{where}: schema without type"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not one of {schema['enum']}")
    if isinstance(value, str):  # string-only bounds also apply to the string side of int-or-string
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where}: longer than {schema['maxLength']}")
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{where}: shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(go_pattern(schema["pattern"]), value):
            errors.append(f"{where}: does not match {schema['pattern']}")
        if schema.get("format") == "date-time" and not _valid_datetime(value):
            errors.append(f"{where}: not a date-time")
    if _TYPES["number"](value):  # number-only bounds
        if "minimum" in schema and (
            value < schema["minimum"] or (schema.get("exclusiveMinimum") and value == schema["minimum"])
        ):
            errors.append(f"{where}: below the minimum {schema['minimum']}")
        if "maximum" in schema and (
            value > schema["maximum"] or (schema.get("exclusiveMaximum") and value == schema["maximum"])
        ):
            errors.append(f"{where}: above the maximum {schema['maximum']}")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{where}: more than {schema['maxItems']} items")
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{where}: fewer than {schema['minItems']} items")
        if schema.get("x-kubernetes-list-type") == "map":
            keys = [tuple(item.get(k) for k in schema["x-kubernetes-list-map-keys"]) for item in value]
            if len(keys) != len(set(keys)):
                errors.append(f"{where}: duplicate map-list keys")
        for i, item in enumerate(value):
            errors += validate(item, schema["items"], f"{path}[{i}]", root=False)
    if isinstance(value, dict):
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            errors.append(f"{where}: more than {schema['maxProperties']} properties")
        errors += [f"{path}.{name}: required" for name in schema.get("required", []) if name not in value]
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            sub_path = f"{path}.{key}" if path else key
            if key in props:
                if root and key == "metadata":
                    continue  # the API server validates metadata itself
                errors += validate(sub, props[key], sub_path, root=False)
            elif isinstance(extra, dict):
                errors += validate(sub, extra, sub_path, root=False)
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f"{sub_path}: unknown field")
    return errors


# --- schema walking ----------------------------------------------------------------------------------------


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any], str]]:
    """Every schema node as (path, node, how it is reached: root / property / items / additionalProperties)."""

    def go(node: dict[str, Any], where: str, how: str) -> Iterator[tuple[str, dict[str, Any], str]]:
        yield where, node, how
        for name, sub in node.get("properties", {}).items():
            yield from go(sub, f"{where}.{name}" if where else name, "property")
        if isinstance(node.get("items"), dict):
            yield from go(node["items"], f"{where}[]", "items")
        if isinstance(node.get("additionalProperties"), dict):
            yield from go(node["additionalProperties"], f"{where}{{}}", "additionalProperties")

    yield from go(schema, path, "root")


def node_at(path: str) -> dict[str, Any]:
    for where, node, _ in walk(SCHEMA):
        if where == path:
            return node
    raise KeyError(path)


# --- generated, and current ------------------------------------------------------------------------------


def test_committed_crd_is_the_generated_one() -> None:
    assert CRD_FILE.read_text(encoding="utf-8") == crdgen.render(), (
        f"{crdgen.DEFAULT_PATH} is stale: run python -m apptopology.api.crdgen > {crdgen.DEFAULT_PATH}"
    )


def test_check_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdgen.main(["--check", str(CRD_FILE)]) == 0
    stale = tmp_path / "crd.yaml"
    stale.write_text(crdgen.render().replace("maxItems: 64", "maxItems: 65", 1), encoding="utf-8")
    assert crdgen.main(["--check", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert crdgen.main(["--check", str(tmp_path / "missing.yaml")]) == 1


def test_output_option_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "crd.yaml"
    assert crdgen.main(["-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == crdgen.render()


def test_header_says_generated_and_how_to_regenerate() -> None:
    head = CRD_FILE.read_text(encoding="utf-8").splitlines()[:5]
    assert any("DO NOT EDIT" in line for line in head)
    assert any("python -m apptopology.api.crdgen" in line for line in head)


def test_crd_names_scope_and_subresources() -> None:
    spec = CRD["spec"]
    assert CRD["apiVersion"] == "apiextensions.k8s.io/v1"
    assert CRD["metadata"]["name"] == "apptopologies.apptopology.io"
    assert spec["group"] == "apptopology.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "AppTopology",
        "listKind": "AppTopologyList",
        "plural": "apptopologies",
        "singular": "apptopology",
        "shortNames": ["topo"],
        "categories": ["apptopology"],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Ready", "Reason", "Tiers", "Policies", "Pods", "Warnings", "Mode", "Age"]
    assert (columns["Pods"]["type"], columns["Pods"]["jsonPath"]) == ("integer", ".status.podCount")
    assert (columns["Warnings"]["type"], columns["Warnings"]["jsonPath"]) == ("integer", ".status.warningCount")
    assert (columns["Mode"]["jsonPath"], columns["Mode"]["priority"]) == (".spec.enforcement", 1)
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert columns["Reason"]["priority"] == 1
    assert (columns["Tiers"]["type"], columns["Tiers"]["jsonPath"]) == ("integer", ".status.tierCount")
    assert (columns["Policies"]["type"], columns["Policies"]["jsonPath"]) == ("integer", ".status.policyCount")
    assert (columns["Age"]["type"], columns["Age"]["jsonPath"]) == ("date", ".metadata.creationTimestamp")


# --- structural ----------------------------------------------------------------------------------------------

FORBIDDEN_KEYS = {"$ref", "$defs", "definitions", "anyOf", "oneOf", "allOf", "not", "title", "propertyNames", "const"}
TYPES = {"object", "array", "string", "integer", "number", "boolean"}


def structural_problems(schema: dict[str, Any]) -> list[str]:
    """What would make the API server reject the schema as non-structural (the parts this CRD could hit)."""
    problems = []
    for where, node, how in walk(schema):
        at = where or "<root>"
        for key in FORBIDDEN_KEYS & set(node):
            problems.append(f"{at}: {key}")
        if node.get("uniqueItems"):
            problems.append(f"{at}: uniqueItems")
        if "default" in node and node["default"] is None:
            problems.append(f"{at}: default null")
        if node.get("additionalProperties") is False or node.get("additionalProperties") is True:
            problems.append(f"{at}: additionalProperties must be a schema")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{at}: properties and additionalProperties together")
        if node.get("x-kubernetes-int-or-string"):
            if "type" in node:
                problems.append(f"{at}: int-or-string with a type")
        elif "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{at}: no type")
        elif "type" in node and node["type"] not in TYPES:
            problems.append(f"{at}: type {node['type']!r}")
        if node.get("type") == "array" and not isinstance(node.get("items"), dict):
            problems.append(f"{at}: array without items")
        for name in node.get("required", []):
            if name not in node.get("properties", {}):
                problems.append(f"{at}: required {name!r} is not a property")
        if node.get("x-kubernetes-list-type") == "map":
            item = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                if key not in item.get("required", []) and "default" not in item["properties"].get(key, {}):
                    problems.append(f"{at}: list-map key {key!r} must be required")
        if "default" in node:
            # defaults must validate against their schema (and be pruned: no unknown fields)
            problems += [f"{at}: default: {e}" for e in validate(node["default"], node, f"{at}(default)", False)]
        if how != "root" and "metadata" in node.get("properties", {}):
            problems.append(f"{at}: metadata in a nested schema")
    if schema.get("type") != "object":
        problems.append("<root>: type must be object")
    if schema["properties"].get("metadata") != {"type": "object"}:
        problems.append("<root>: metadata must be exactly {type: object} (no description either)")
    return problems


def test_schema_is_structural() -> None:
    assert structural_problems(SCHEMA) == []


def test_structural_checker_catches_problems() -> None:
    bad = {
        "type": "object",
        "properties": {
            "metadata": {"type": "object"},
            "a": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            "b": {"type": "array"},
            "c": {"type": "object", "properties": {}, "additionalProperties": False},
            "d": {"x-kubernetes-int-or-string": True, "type": "string"},
            "e": {"type": "string", "default": 5},
        },
        "required": ["zzz"],
    }
    found = "\n".join(structural_problems(bad))
    for fragment in (
        "a: anyOf",
        "a: default null",
        "a: no type",
        "b: array without items",
        "c: additionalProperties",
        "d: int-or-string with a type",
        "e: default",
        "required 'zzz'",
    ):
        assert fragment in found


def test_every_field_has_a_description() -> None:
    missing = [
        where or "<root>"
        for where, node, how in walk(SCHEMA)
        if how in ("root", "property") and where != "metadata" and not str(node.get("description", "")).strip()
    ]
    assert missing == []


def test_descriptions_come_from_the_model() -> None:
    tier = node_at("spec.tiers[].name")["description"]
    assert tier == crdgen.clean_description(Tier.model_fields["name"].description or "")
    endpoint = node_at("spec.flows[].from")["description"]
    assert endpoint.startswith("Where the traffic starts.")
    assert crdgen.clean_description(Endpoint.__doc__ or "") in endpoint


def test_unknown_field_handling_is_documented() -> None:
    assert "strict field validation" in SCHEMA["description"]


# --- CEL rules -------------------------------------------------------------------------------------------------


def _rules(model: type[BaseModel]) -> list[dict[str, str]]:
    extra = model.model_config.get("json_schema_extra")
    assert isinstance(extra, dict)
    rules: list[dict[str, str]] = extra["x-kubernetes-validations"]  # type: ignore[assignment]
    return rules


RULE_SITES: list[tuple[str, type[BaseModel]]] = [
    ("spec", AppTopologySpec),
    ("spec.monitoring", Monitoring),
    ("spec.dns.ports[]", Port),
    ("spec.monitoring.ports[]", Port),
    ("spec.flows[]", Flow),
    ("spec.flows[].ports[]", Port),
    ("spec.flows[].from", Endpoint),
    ("spec.flows[].to", Endpoint),
    ("spec.flows[].from.ipBlock", IPBlock),
    ("spec.flows[].to.ipBlock", IPBlock),
    ("spec.tiers[].podSelector.matchExpressions[]", LabelSelectorRequirement),
    ("spec.flows[].from.podSelector.matchExpressions[]", LabelSelectorRequirement),
    ("spec.dns.namespaceSelector.matchExpressions[]", LabelSelectorRequirement),
    ("spec.dns", DNS),
    ("spec.dns.nodeLocal", NodeLocalDNS),
    ("spec.tiers[].podSelector", LabelSelector),
    ("spec.flows[].from.namespaceSelector", LabelSelector),
    ("spec.flows[].to.podSelector", LabelSelector),
    ("spec.dns.podSelector", LabelSelector),
    ("spec.monitoring.namespaceSelector", LabelSelector),
]


@pytest.mark.parametrize(("path", "model"), RULE_SITES, ids=[p for p, _ in RULE_SITES])
def test_cel_rules_sit_where_the_model_declares_them(path: str, model: type[BaseModel]) -> None:
    assert node_at(path)["x-kubernetes-validations"] == _rules(model)


def test_no_other_cel_rules() -> None:
    declared = {
        r["rule"]
        for m in (
            AppTopologySpec,
            Monitoring,
            Port,
            Flow,
            Endpoint,
            IPBlock,
            LabelSelectorRequirement,
            LabelSelector,
            DNS,
            NodeLocalDNS,
        )
        for r in _rules(m)
    }
    declared |= {r["rule"] for r in crdgen._METADATA_NAME_RULES}
    found = {r["rule"] for _, node, _ in walk(SCHEMA) for r in node.get("x-kubernetes-validations", [])}
    assert found == declared
    sites = {where for where, node, _ in walk(SCHEMA) if "x-kubernetes-validations" in node}
    expected_paths = {p for p, _ in RULE_SITES} | {""}
    assert expected_paths <= sites


def test_root_rules_guard_the_topology_name() -> None:
    rules = [r["rule"] for r in SCHEMA["x-kubernetes-validations"]]
    assert "self.metadata.name.size() <= 63" in rules


def test_lists_and_strings_feeding_cel_are_bounded() -> None:
    """The API server estimates CEL cost from maxItems/maxLength/maxProperties; unbounded ones make the
    estimate explode (the CRD is then refused). Everything under spec is bounded."""
    unbounded = []
    for where, node, _ in walk(SCHEMA["properties"]["spec"], "spec"):
        if node.get("type") == "array" and "maxItems" not in node:
            unbounded.append(where)
        if (node.get("type") == "string" or node.get("x-kubernetes-int-or-string")) and not (
            "maxLength" in node or "enum" in node
        ):
            unbounded.append(where)
        if node.get("type") == "object" and "additionalProperties" in node and "maxProperties" not in node:
            unbounded.append(where)
    assert unbounded == []


def test_crd_only_bounds_follow_from_the_model() -> None:
    """Every bound crdgen adds for the API server's sake is one the Python validation already enforces."""
    assert dict(crdgen.CRD_ONLY_BOUNDS) == {}, "a new CRD-only bound needs its own check here"
    for path in ("spec.flows[].ports[].port", "spec.dns.ports[].port", "spec.monitoring.ports[].port"):
        assert node_at(path)["maxLength"] == 15
    doc = _doc(flows=[{"from": {"anywhere": True}, "to": {"tier": "api"}, "ports": [{"port": "a" * 16}]}])
    with pytest.raises(InvalidTopology):
        parse_topology(doc)
    ok = _doc(flows=[{"from": {"anywhere": True}, "to": {"tier": "api"}, "ports": [{"port": "a" * 15}]}])
    parse_topology(ok)


# --- defaults --------------------------------------------------------------------------------------------------


def _doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apptopology.io/v1alpha1",
        "kind": "AppTopology",
        "metadata": {"name": "shop", "namespace": "prod"},
        "spec": {"tiers": [{"name": "api", "podSelector": {}}], **spec},
    }


PARTIAL_SPECS: list[dict[str, Any]] = [
    {},
    {"defaultDeny": {}},
    {"defaultDeny": {"scope": "Tiers"}},
    {"defaultDeny": {"egress": False}},
    {"dns": {}},
    {"dns": {"enabled": False}},
    {"dns": {"ports": [{"port": 5353}]}},
    {"dns": {"namespaceSelector": None}, "defaultDeny": {"scope": "Tiers"}},
    {"dns": {"podSelector": None, "namespaceSelector": {"matchLabels": {"a": "b"}}}},
    {"monitoring": {"enabled": True, "namespaceSelector": {}, "ports": [{"port": 9090}]}},
    {"flows": [{"from": {"tier": "api", "ipBlock": None}, "to": {"anywhere": True}, "ports": [{"port": "http"}]}]},
]


@pytest.mark.parametrize("spec", PARTIAL_SPECS, ids=[str(s) for s in PARTIAL_SPECS])
def test_api_server_defaults_mean_what_the_model_means(spec: dict[str, Any]) -> None:
    """The stored (defaulted) object parses to the same topology as the document the user wrote."""
    doc = _doc(**spec)
    stored, errors = admit(doc)
    assert errors == []
    assert parse_topology(stored) == parse_topology(doc)


def test_defaults_are_there_and_valid() -> None:
    stored, _ = admit(_doc())
    assert stored["spec"]["defaultDeny"] == {"scope": "Namespace", "ingress": True, "egress": True}
    assert stored["spec"]["dns"]["enabled"] is True
    assert stored["spec"]["dns"]["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert stored["spec"]["monitoring"] == {"enabled": False}
    assert "flows" not in stored["spec"]
    stored, _ = admit(_doc(flows=[{"from": {"tier": "api"}, "to": {"tier": "api"}, "ports": [{"port": 80}]}]))
    assert stored["spec"]["flows"][0]["ports"] == [{"port": 80, "protocol": "TCP"}]


def test_explicit_null_dns_selector_survives() -> None:
    """dns.namespaceSelector: null means "no namespace selector" in the model, not "the default"."""
    assert node_at("spec.dns.namespaceSelector")["nullable"] is True
    stored, _ = admit(_doc(dns={"namespaceSelector": None}, defaultDeny={"scope": "Tiers"}))
    assert stored["spec"]["dns"]["namespaceSelector"] is None
    assert parse_topology(stored).spec.dns.namespace_selector is None


# --- examples and invalid documents ------------------------------------------------------------------------

EXAMPLES = [
    (name, doc) for name, doc in example_documents() if isinstance(doc, dict) and doc.get("kind") == "AppTopology"
]


def test_there_are_examples() -> None:
    assert EXAMPLES


@pytest.mark.parametrize(("name", "doc"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_example_is_accepted_by_the_schema(name: str, doc: dict[str, Any]) -> None:
    parse_topology(doc)
    _, errors = admit(doc)
    assert errors == []


SHARED = [c for c in invalid_cases() if c["admission"] in ("schema", "cel", "operator")]


@pytest.mark.parametrize("case", SHARED, ids=[c["id"] for c in SHARED])
def test_shared_invalid_case(case: dict[str, Any]) -> None:
    """tests/cases/invalid.yaml says what rejects each case in a cluster; hold the CRD to it."""
    with pytest.raises(InvalidTopology):
        parse_topology(case["document"])
    _, errors = admit(case["document"])
    if case["admission"] == "schema":
        assert errors, "the CRD schema should reject this"
    else:  # cel (checked by the API server in the integration suite) or operator
        assert errors == [], "only CEL or the operator should reject this; the schema accepts it"


def _selector_doc(selector: dict[str, Any]) -> dict[str, Any]:
    return _doc(tiers=[{"name": "api", "podSelector": selector}])


def _flow(**kw: Any) -> dict[str, Any]:
    return {"from": {"anywhere": True}, "to": {"tier": "api"}, **kw}


# More invalid documents: (id, document, which part of the API server rejects it: schema / cel / operator).
# For cel cases, the message of the CEL rule that rejects it.
MORE_INVALID: list[tuple[str, dict[str, Any], str, str | None]] = [
    ("unknown-field-flowz", _doc(flowz=[]), "schema", None),
    ("unknown-field-in-port", _doc(flows=[_flow(ports=[{"port": 80, "proto": "TCP"}])]), "schema", None),
    ("tier-name-too-long", _doc(tiers=[{"name": "a" * 64, "podSelector": {}}]), "schema", None),
    ("too-many-tiers", _doc(tiers=[{"name": f"t{i}", "podSelector": {}} for i in range(65)]), "schema", None),
    ("flow-without-to", _doc(flows=[{"from": {"tier": "api"}}]), "schema", None),
    ("endport-too-big", _doc(flows=[_flow(ports=[{"port": 80, "endPort": 70000}])]), "schema", None),
    ("port-float", _doc(flows=[_flow(ports=[{"port": 80.5}])]), "schema", None),
    ("port-bool", _doc(flows=[_flow(ports=[{"port": True}])]), "schema", None),
    ("port-name-too-long", _doc(flows=[_flow(ports=[{"port": "abcdefghijklmnop"}])]), "schema", None),
    ("anywhere-not-bool", _doc(flows=[{"from": {"anywhere": "yes"}, "to": {"tier": "api"}}]), "schema", None),
    ("description-too-long", _doc(flows=[_flow(description="x" * 513)]), "schema", None),
    ("dns-without-ports", _doc(dns={"ports": []}), "schema", None),
    (
        "label-value-too-long",
        _doc(tiers=[{"name": "api", "podSelector": {"matchLabels": {"a": "b" * 64}}}]),
        "schema",
        None,
    ),
    (
        "too-many-labels",
        _doc(tiers=[{"name": "api", "podSelector": {"matchLabels": {f"k{i}": "v" for i in range(33)}}}]),
        "schema",
        None,
    ),
    ("cidr-too-long", _doc(flows=[{"from": {"ipBlock": {"cidr": "1" * 65}}, "to": {"tier": "api"}}]), "schema", None),
    ("missing-spec", {k: v for k, v in _doc().items() if k != "spec"}, "schema", None),
    ("ingress-not-bool", _doc(defaultDeny={"ingress": "no"}), "schema", None),
    ("port-70000", _doc(flows=[_flow(ports=[{"port": 70000}])]), "cel", "port must be a number 1-65535"),
    ("quoted-port-number", _doc(flows=[_flow(ports=[{"port": "80"}])]), "cel", "port must be a number 1-65535"),
    ("double-dash-port", _doc(flows=[_flow(ports=[{"port": "h--p"}])]), "cel", "port must be a number 1-65535"),
    (
        "endport-below-port",
        _doc(flows=[_flow(ports=[{"port": 9000, "endPort": 8000}])]),
        "cel",
        "endPort requires a numeric port",
    ),
    (
        "exists-with-values",
        _doc(
            tiers=[
                {
                    "name": "api",
                    "podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
                }
            ]
        ),
        "cel",
        "values must be non-empty for In and NotIn",
    ),
    (
        "monitoring-without-ports",
        _doc(monitoring={"enabled": True, "namespaceSelector": {}}),
        "cel",
        "namespaceSelector and ports are required",
    ),
    (
        "except-without-prefix",
        _doc(flows=[{"from": {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.2.3"]}}, "to": {"tier": "api"}}]),
        "cel",
        "every except entry must be a CIDR in canonical form",
    ),
    (
        "name-too-long",
        {**_doc(), "metadata": {"name": "a" * 64, "namespace": "prod"}},
        "cel",
        "metadata.name must be at most 63 characters",
    ),
    (
        "name-with-dot",
        {**_doc(), "metadata": {"name": "shop.v2", "namespace": "prod"}},
        "cel",
        "metadata.name must be a DNS-1123 label",
    ),
    (
        "bad-expression-key",
        _selector_doc({"matchExpressions": [{"key": "bad key", "operator": "Exists"}]}),
        "schema",
        None,
    ),
    (
        "bad-expression-value",
        _selector_doc({"matchExpressions": [{"key": "a", "operator": "In", "values": ["no spaces"]}]}),
        "schema",
        None,
    ),
    ("label-value-newline", _selector_doc({"matchLabels": {"a": "b\n"}}), "schema", None),
    ("label-key-leading-hyphen", _selector_doc({"matchLabels": {"-a": ""}}), "cel", "every matchLabels key"),
    ("label-key-too-long", _selector_doc({"matchLabels": {"k" * 64: "v"}}), "cel", "every matchLabels key"),
    ("label-key-two-slashes", _selector_doc({"matchLabels": {"a/b/c": "v"}}), "cel", "every matchLabels key"),
    (
        "expression-prefix-too-long",
        _selector_doc({"matchExpressions": [{"key": "a" * 254 + "/b", "operator": "Exists"}]}),
        "cel",
        "the label key's prefix must be at most 253",
    ),
    (
        "cidr-host-bits",
        _doc(flows=[{"from": {"ipBlock": {"cidr": "10.0.0.1/8"}}, "to": {"tier": "api"}}]),
        "cel",
        "cidr must be a CIDR in canonical form",
    ),
    (
        "except-equals-cidr",
        _doc(flows=[{"from": {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}, "to": {"tier": "api"}}]),
        "cel",
        "every except entry must be a strict subset of cidr",
    ),
    ("dns-null-selectors", _doc(dns={"namespaceSelector": None, "podSelector": None}), "cel", "namespaceSelector and"),
]


def _all_cel_messages() -> list[str]:
    return [r["message"] for _, node, _ in walk(SCHEMA) for r in node.get("x-kubernetes-validations", [])]


@pytest.mark.parametrize(
    ("case_id", "doc", "rejected_by", "cel_message"), MORE_INVALID, ids=[c[0] for c in MORE_INVALID]
)
def test_invalid_document(case_id: str, doc: dict[str, Any], rejected_by: str, cel_message: str | None) -> None:
    with pytest.raises(InvalidTopology):
        parse_topology(doc)
    _, errors = admit(doc)
    if rejected_by == "schema":
        assert errors, "the CRD schema should reject this"
    else:
        assert errors == [], "the schema accepts this; only CEL or the operator rejects it"
    if rejected_by == "cel":
        assert cel_message is not None
        assert any(m.startswith(cel_message) for m in _all_cel_messages()), cel_message


def test_validator_accepts_int_or_string_and_rejects_unknown_fields() -> None:
    schema = {"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": True, "maxLength": 3}}}
    assert validate({"p": 80000}, schema) == []  # maxLength applies to strings only
    assert validate({"p": "http"}, schema) != []
    assert validate({"p": "ssh"}, schema) == []
    assert validate({"q": 1}, schema) == ["q: unknown field"]
