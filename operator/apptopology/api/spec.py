"""The AppTopology API (``apptopology.io/v1alpha1``) as pydantic models.

This module is the single source of truth for the API: the CRD's OpenAPI schema is generated from it
(see :mod:`apptopology.crdgen`), so field descriptions written here are what ``kubectl explain`` shows.
It imports neither ``kopf`` nor ``kubernetes``: validation must behave the same in the CLI, in CI and
in the operator.

Cross-field rules that the CRD also enforces with CEL carry their CEL twin in ``json_schema_extra`` under
``x-kubernetes-validations``, right next to the Python check, so the two cannot drift apart silently.
"""

from __future__ import annotations

import ipaddress
import json
import re
import reprlib
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

API_GROUP = "apptopology.io"
API_VERSION = "v1alpha1"
KIND = "AppTopology"
PLURAL = "apptopologies"

# Bounds keep CEL evaluation cost bounded in the API server and documents reviewable by humans.
MAX_TIERS = 64
MAX_FLOWS = 512
MAX_PORTS = 32
MAX_EXCEPT = 32
MAX_LABELS = 32
MAX_EXPRESSIONS = 16
MAX_VALUES = 64
MAX_DESCRIPTION = 512

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# IANA service name (RFC 6335) as Kubernetes validates container and NetworkPolicy port names: at most 15
# characters, at least one letter, no leading, trailing or double '-' (the last two are checked apart).
IANA_SVC_NAME = r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$"
# Label syntax as the API server checks it (apimachinery's label key and value rules). Go's regexp ``$``
# matches only at the very end, Python's also before a final newline: Python code uses fullmatch.
_DNS1123_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
# A label value: empty, or at most 63 characters of the label-name alphabet.
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
# A label key: optional DNS-subdomain prefix and '/', then a name of at most 63 characters. The prefix's
# 253-character bound is not expressible in RE2; it is checked apart (CEL: indexOf('/') <= 253).
LABEL_KEY = r"^(" + _DNS1123_SUBDOMAIN + r"/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
MAX_LABEL_PREFIX = 253
MAX_LABEL_KEY = MAX_LABEL_PREFIX + 1 + 63
_IANA_RE = re.compile(IANA_SVC_NAME)
_LABEL_NAME_RE = re.compile(_LABEL_NAME)
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN)
_LABEL_VALUE_RE = re.compile(LABEL_VALUE)
# CEL raw strings (r'...') take the regex as it is.
_LABEL_KEY_CEL = f"k.matches(r'{LABEL_KEY}') && k.indexOf('/') <= {MAX_LABEL_PREFIX}"

# Kubernetes limits the total size of an object's annotations (keys plus values, in bytes).
MAX_ANNOTATIONS_BYTES = 256 * 1024


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxtuple, _REPR.maxset = 2, 4, 4, 4, 4
_REPR.maxstring = _REPR.maxother = 80


def quote(value: Any, limit: int = 80) -> str:
    """``repr`` of user input for messages, cut to about ``limit`` characters: input may be huge, or a
    structure whose full repr would not fit in memory (aliases), so only a bounded part is ever looked at."""
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value)} characters)"
    if isinstance(value, int) and value.bit_length() > 256:
        return f"<an integer of {value.bit_length()} bits>"
    text = repr(value) if isinstance(value, str | int | float | bool | None) else _REPR.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 flow``, ``2 flows``, ``0 policies``: counts in messages read right (``many``: irregular plurals)."""
    if count == 1:
        return f"{count} {word}"
    if many is None:
        many = word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else word + "s"
    return f"{count} {many}"


def _cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def _extra(*rules: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


class _Strict(BaseModel):
    """Base: unknown fields are errors (a typo like ``flowz`` must never be ignored silently)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def check_label_key(key: str) -> str | None:
    """Return why ``key`` is not a valid Kubernetes label key, or None (the API server's rule)."""
    parts = key.split("/")
    shown = quote(key)
    if len(parts) > 2:
        return f"label key {shown}: at most one '/' (an optional DNS subdomain prefix, then the name)"
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            return f"label key {shown}: empty prefix before '/'"
        if len(prefix) > MAX_LABEL_PREFIX or not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
            return (
                f"label key {shown}: prefix must be a DNS subdomain of at most {MAX_LABEL_PREFIX} characters "
                "(lowercase alphanumerics, '-' and '.', such as example.com)"
            )
    name = parts[-1]
    if not name or len(name) > 63 or not _LABEL_NAME_RE.fullmatch(name):
        return (
            f"label key {shown}: name must be 1-63 characters of alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return None


def check_label_value(value: str) -> str | None:
    """Return why ``value`` is not a valid Kubernetes label value, or None (the API server's rule)."""
    if not _LABEL_VALUE_RE.fullmatch(value):
        return (
            f"label value {quote(value)}: must be empty or at most 63 characters of alphanumerics, '-', '_' "
            "or '.', starting and ending with an alphanumeric"
        )
    return None


def check_port_name(name: str) -> str | None:
    """Return why ``name`` is not a valid named port (IANA_SVC_NAME, as the API server checks it), or None."""
    if name.isdigit():
        return f"port {quote(name)} is a quoted number; write it without quotes"
    if not (_IANA_RE.fullmatch(name) and re.search("[a-z]", name) and "--" not in name):
        return (
            f"port {quote(name)} is not a valid named port (IANA service name: lowercase letters, digits and "
            "'-', at most 15 characters, at least one letter, no leading, trailing or double '-')"
        )
    return None


def check_ip(value: str) -> str | None:
    """Return why ``value`` is not a single IP address in canonical form (as CEL's ``string(ip(x)) == x``), or
    None: no leading zeros, zones or IPv4-mapped IPv6, IPv6 in lowercase, compressed."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return f"address {quote(value)} is not an IP address (e.g. 169.254.20.10 or fd00::10)"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"address {quote(value)} must not be an IPv4-mapped IPv6 address; write the IPv4 address"
    if str(ip) != value:
        return f"address {quote(value)} is not in canonical form: write {ip}"
    return None


def check_cidr(value: str) -> str | None:
    """Return why ``value`` is not a CIDR as the API server (v1.37, strict IP/CIDR validation) takes it for
    a NetworkPolicy ipBlock, or None.

    The API server refuses leading zeros (in the address or the prefix length), IPv4-mapped IPv6, zones,
    and bits set beyond the prefix length. Non-canonical IPv6 (``2001:DB8::/32``, ``2001:0db8::/32``) it
    only warns about; it is refused here, and by the CRD, so that what is stored and rendered is the one
    canonical spelling and nobody's CIDR means something else to another tool.
    """
    shown = quote(value)
    address, slash, length = value.partition("/")
    if not slash:
        return f"cidr {shown} needs a prefix length (e.g. {quote(value + '/32' if '.' in value else value + '/128')})"
    if "%" in address:
        return f"cidr {shown} must not have an IPv6 zone ('%...')"
    if not (length.isascii() and length.isdigit()) or (len(length) > 1 and length.startswith("0")):
        return f"cidr {shown} needs a prefix length without sign or leading zeros"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        if re.fullmatch(r"[0-9.]+", address) and re.search(r"(^|\.)0[0-9]", address):
            return f"cidr {shown} must not have leading zeros in the address"
        return f"cidr {shown} is not a valid CIDR (e.g. 10.0.0.0/8 or 2001:db8::/32)"
    if int(length) > ip.max_prefixlen:
        return f"cidr {shown}: prefix length {int(length)} is longer than {ip.max_prefixlen}"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"cidr {shown} must not be an IPv4-mapped IPv6 address; write the IPv4 range"
    network = ipaddress.ip_network(f"{ip}/{int(length)}", strict=False)
    if network.network_address != ip:
        return (
            f"cidr {shown} has bits set beyond the prefix length: write {network} for the range, "
            f"or {ip}/{ip.max_prefixlen} for the single address"
        )
    if str(network) != value:
        return f"cidr {shown} is not in canonical form: write {network}"
    return None


# Schema-only patterns (the CRD's OpenAPI ``pattern``): the Python checks above give the messages.
LabelValue = Annotated[str, Field(max_length=63, json_schema_extra={"pattern": LABEL_VALUE})]
LabelKey = Annotated[str, Field(max_length=MAX_LABEL_KEY)]


class LabelSelectorRequirement(_Strict):
    """One matchExpressions entry of a standard Kubernetes label selector."""

    key: str = Field(
        max_length=MAX_LABEL_KEY,
        json_schema_extra={"pattern": LABEL_KEY},
        description="The label key the requirement applies to: a name of at most 63 characters, optionally "
        "prefixed by a DNS subdomain and '/' (example.com/name).",
    )
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key relates to the values: In, NotIn, Exists or DoesNotExist."
    )
    values: list[LabelValue] | None = Field(
        default=None,
        max_length=MAX_VALUES,
        description="Label values. Required and non-empty for In and NotIn; must be empty for Exists and DoesNotExist.",
    )

    model_config = ConfigDict(
        json_schema_extra=_extra(
            _cel(
                "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0)"
                " : (!has(self.values) || size(self.values) == 0)",
                "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
            ),
            _cel(
                f"self.key.indexOf('/') <= {MAX_LABEL_PREFIX}",
                f"the label key's prefix must be at most {MAX_LABEL_PREFIX} characters",
                ".key",
            ),
        )
    )

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        problem = check_label_key(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("values")
    @classmethod
    def _values(cls, v: list[str] | None) -> list[str] | None:
        for item in v or []:
            problem = check_label_value(item)
            if problem:
                raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _values_match_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"values must be non-empty for operator {self.operator}")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"values must be empty for operator {self.operator}")
        return self


class LabelSelector(_Strict):
    """A standard Kubernetes label selector. An empty selector ({}) selects everything in its scope."""

    match_labels: dict[LabelKey, LabelValue] | None = Field(
        default=None,
        alias="matchLabels",
        max_length=MAX_LABELS,
        description="Labels that must all be present with exactly these values.",
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None,
        alias="matchExpressions",
        max_length=MAX_EXPRESSIONS,
        description="Requirements that must all hold (ANDed with matchLabels).",
    )

    model_config = ConfigDict(
        json_schema_extra=_extra(
            # OpenAPI has no pattern for map keys; CEL checks them.
            _cel(
                f"!has(self.matchLabels) || self.matchLabels.all(k, {_LABEL_KEY_CEL})",
                "every matchLabels key must be a valid label key: a name of at most 63 alphanumerics, '-', '_' "
                "or '.', starting and ending with an alphanumeric, optionally prefixed by a DNS subdomain of at "
                f"most {MAX_LABEL_PREFIX} characters and '/'",
                ".matchLabels",
            ),
        )
    )

    @field_validator("match_labels")
    @classmethod
    def _labels(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        for key, value in (v or {}).items():
            problem = check_label_key(key) or check_label_value(value)
            if problem:
                raise ValueError(problem)
        return v

    def to_k8s(self) -> dict[str, Any]:
        """The selector as the Kubernetes API spells it, empty parts dropped."""
        out: dict[str, Any] = {}
        if self.match_labels:
            out["matchLabels"] = dict(sorted(self.match_labels.items()))
        if self.match_expressions:
            out["matchExpressions"] = [
                {"key": e.key, "operator": e.operator, **({"values": list(e.values)} if e.values else {})}
                for e in self.match_expressions
            ]
        return out


def _integral(value: Any) -> Any:
    """A JSON number with an integral value (``80.0``, or ``1e2`` in JSON) is an integer to the API server."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


class Port(_Strict):
    """A destination port. Without any ports a flow allows all ports and protocols; an entry with only a
    protocol ({protocol: UDP}) allows every port of that protocol, as in NetworkPolicy."""

    port: int | str | None = Field(
        default=None,
        # maxLength bounds the cost of the CEL regex below (IANA names have at most 15 characters).
        json_schema_extra={"x-kubernetes-int-or-string": True, "maxLength": 15},
        description="Port number (1-65535), or a named port (IANA service name such as 'http') that is "
        "resolved on the destination pod's container ports. Omitted: every port of the protocol.",
    )
    protocol: Literal["TCP", "UDP", "SCTP"] = Field(default="TCP", description="TCP (default), UDP or SCTP.")
    end_port: StrictInt | None = Field(
        default=None,
        alias="endPort",
        ge=1,
        le=65535,
        description="Last port of a range starting at port (inclusive). Only with a numeric port; must be >= port.",
    )

    model_config = ConfigDict(
        json_schema_extra=_extra(
            _cel(
                "!has(self.port) || (type(self.port) == int ? (self.port >= 1 && self.port <= 65535)"
                " : self.port.matches('" + IANA_SVC_NAME + "') && self.port.matches('[a-z]')"
                " && !self.port.contains('--'))",
                "port must be a number 1-65535 or an IANA service name (lowercase letters, digits and '-', "
                "at most 15 characters, at least one letter)",
                ".port",
            ),
            _cel(
                "!has(self.endPort) || (has(self.port) && type(self.port) == int && self.endPort >= self.port)",
                "endPort requires a numeric port and must be >= port",
                ".endPort",
            ),
        )
    )

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, v: Any) -> int | str | None:
        v = _integral(v)
        if v is None:  # the API server drops a null port: every port of the protocol
            return None
        if isinstance(v, bool) or not isinstance(v, int | str):
            raise ValueError(f"port must be a number 1-65535 or a port name, not {quote(v)}")
        if isinstance(v, int):
            if not 1 <= v <= 65535:
                raise ValueError(f"port {v} out of range 1-65535")
            return v
        problem = check_port_name(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("end_port", mode="before")
    @classmethod
    def _end_port_number(cls, v: Any) -> Any:
        return _integral(v)

    @model_validator(mode="after")
    def _end_port(self) -> Port:
        if self.end_port is not None:
            if self.port is None:
                raise ValueError("endPort: requires a port (the first port of the range)")
            if not isinstance(self.port, int):
                raise ValueError("endPort: requires a numeric port, not a named port")
            if self.end_port < self.port:
                raise ValueError(f"endPort: {self.end_port} must be >= port {self.port}")
        return self

    @property
    def whole_protocol(self) -> bool:
        """Every port of the protocol (no ``port``)."""
        return self.port is None

    def key(self) -> tuple[str, int, str, int]:
        """Sort and dedup key: protocol, then the whole protocol, numeric ports, names."""
        if self.port is None:
            return (self.protocol, 0, "", 0)
        if isinstance(self.port, int):
            return (self.protocol, 1, f"{self.port:05d}", self.end_port or 0)
        return (self.protocol, 2, self.port, 0)

    def to_k8s(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.port is None else {"port": self.port}
        out["protocol"] = self.protocol
        if self.end_port is not None:
            out["endPort"] = self.end_port
        return out

    def label(self) -> str:
        """Human form used in descriptions: ``TCP/8080``, ``TCP/8000-8100``, ``TCP/http``, ``UDP/all``."""
        if self.port is None:
            return f"{self.protocol}/all"
        rng = f"{self.port}-{self.end_port}" if self.end_port is not None else f"{self.port}"
        return f"{self.protocol}/{rng}"


def minimal_ports(ports: list[Port]) -> list[Port]:
    """``ports`` deduplicated and sorted, a whole-protocol entry absorbing the narrower entries of its protocol
    (named ones too: a named port resolves to a port of its protocol)."""
    whole = {p.protocol for p in ports if p.port is None}
    unique = {p.key(): p for p in ports if p.port is None or p.protocol not in whole}
    return sorted(unique.values(), key=Port.key)


class IPBlock(_Strict):
    """A range of IP addresses (IPv4 or IPv6), typically outside the cluster."""

    cidr: str = Field(max_length=64, description="The range in CIDR notation, e.g. 10.0.0.0/8 or 2001:db8::/32.")
    except_: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None,
        alias="except",
        max_length=MAX_EXCEPT,
        description="Sub-ranges of cidr to exclude; each must lie inside cidr and be of the same IP family.",
    )

    model_config = ConfigDict(
        json_schema_extra=_extra(
            _cel(
                "isCIDR(self.cidr) && string(cidr(self.cidr).masked()) == self.cidr",
                "cidr must be a CIDR in canonical form without bits beyond the prefix length, such as 10.0.0.0/8 "
                "or 2001:db8::/32 (no leading zeros, zones or IPv4-mapped IPv6)",
                ".cidr",
            ),
            _cel(
                "!has(self.except) || self.except.all(e, isCIDR(e) && string(cidr(e).masked()) == e)",
                "every except entry must be a CIDR in canonical form without bits beyond the prefix length",
                ".except",
            ),
            _cel(
                "!has(self.except) || !isCIDR(self.cidr) || self.except.all(e, !isCIDR(e) || "
                "(cidr(self.cidr).containsCIDR(e) && cidr(e).prefixLength() > cidr(self.cidr).prefixLength()))",
                "every except entry must be a strict subset of cidr (inside it, same IP family, and smaller)",
                ".except",
            ),
        )
    )

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        problem = check_cidr(v)
        if problem:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _excepts(self) -> IPBlock:
        net = ipaddress.ip_network(self.cidr)
        for i, entry in enumerate(self.except_ or []):
            problem = check_cidr(entry)
            if problem:
                raise ValueError(f"except[{i}]: {problem.removeprefix('cidr ')}")
            sub = ipaddress.ip_network(entry)
            if sub.version != net.version or not sub.subnet_of(net) or sub.prefixlen <= net.prefixlen:  # type: ignore[arg-type]
                raise ValueError(
                    f"except[{i}]: {entry} is not a strict subset of cidr {self.cidr} "
                    "(it must lie inside cidr, in the same IP family, and be smaller)"
                )
        return self

    def to_k8s(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cidr": self.cidr}
        if self.except_:
            out["except"] = list(self.except_)
        return out


# The instance metadata service of the cloud providers (AWS, GCP, Azure, OpenStack...: 169.254.169.254;
# AWS over IPv6: fd00:ec2::254). It hands out the node's credentials, so `anywhere` egress leaves it out.
KUBE_API_SOURCE = "kubeAPI is a destination only (for webhooks the API server calls, use an ipBlock)"
KUBE_API_PORTS = "a flow to kubeAPI takes no ports: the API server's ports come from the cluster"
ENDPOINT_KINDS = "tier, ipBlock, anywhere, cloudMetadata, kubeAPI, or namespaceSelector/podSelector"
CLOUD_METADATA = ("169.254.169.254/32", "fd00:ec2::254/128")


class Endpoint(_Strict):
    """One side of a flow. Exactly one kind: a tier, an ipBlock, anywhere, cloudMetadata, or a cluster peer
    given by namespaceSelector and/or podSelector."""

    tier: str | None = Field(default=None, max_length=63, description="A tier declared in spec.tiers.")
    ip_block: IPBlock | None = Field(default=None, alias="ipBlock", description="An IP range (CIDR).")
    anywhere: StrictBool | None = Field(
        default=None,
        description="true: any source or destination, inside or outside the cluster; as a destination, "
        "except the cloud instance metadata addresses (169.254.169.254, fd00:ec2::254), which only "
        "cloudMetadata opens.",
    )
    cloud_metadata: StrictBool | None = Field(
        default=None,
        alias="cloudMetadata",
        description="true: the cloud instance metadata service, 169.254.169.254/32 and fd00:ec2::254/128 "
        "(destination only). It serves the node's credentials, so anywhere leaves it out; name it here "
        "only for the pods that need it.",
    )
    kube_api: StrictBool | None = Field(
        default=None,
        alias="kubeAPI",
        description="true: the Kubernetes API server (destination only, without ports): the addresses of the "
        "default/kubernetes EndpointSlices on their ports, and the Service's ClusterIP on its port, as /32 and "
        "/128 ipBlocks. Resolved in the cluster (the operator, render --cluster); rendered offline, no peer.",
    )
    namespace_selector: LabelSelector | None = Field(
        default=None,
        alias="namespaceSelector",
        description="Namespaces of the peer. Alone: every pod of the matching namespaces. With podSelector: "
        "the pods matching podSelector in the matching namespaces (AND).",
    )
    pod_selector: LabelSelector | None = Field(
        default=None,
        alias="podSelector",
        description="Pods of the peer. Alone: pods of this topology's namespace. With namespaceSelector: "
        "those pods in the matching namespaces (AND).",
    )

    model_config = ConfigDict(
        json_schema_extra=_extra(
            _cel(
                "(has(self.tier) ? 1 : 0) + (has(self.ipBlock) ? 1 : 0) + (has(self.anywhere) ? 1 : 0)"
                " + (has(self.cloudMetadata) ? 1 : 0) + (has(self.kubeAPI) ? 1 : 0)"
                " + ((has(self.namespaceSelector) || has(self.podSelector)) ? 1 : 0) == 1",
                f"exactly one of {ENDPOINT_KINDS} must be set",
            ),
            _cel("!has(self.anywhere) || self.anywhere", "anywhere must be true when set", ".anywhere"),
            _cel(
                "!has(self.cloudMetadata) || self.cloudMetadata",
                "cloudMetadata must be true when set",
                ".cloudMetadata",
            ),
            _cel("!has(self.kubeAPI) || self.kubeAPI", "kubeAPI must be true when set", ".kubeAPI"),
        )
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Endpoint:
        kinds = [
            name
            for name, present in (
                ("tier", self.tier is not None),
                ("ipBlock", self.ip_block is not None),
                ("anywhere", self.anywhere is not None),
                ("cloudMetadata", self.cloud_metadata is not None),
                ("kubeAPI", self.kube_api is not None),
                (
                    "namespaceSelector/podSelector",
                    self.namespace_selector is not None or self.pod_selector is not None,
                ),
            )
            if present
        ]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(f"exactly one of {ENDPOINT_KINDS} must be set (found: {found})")
        if self.anywhere is False:
            raise ValueError("anywhere must be true when set (remove it to choose another endpoint)")
        if self.cloud_metadata is False:
            raise ValueError("cloudMetadata must be true when set (remove it to choose another endpoint)")
        if self.kube_api is False:
            raise ValueError("kubeAPI must be true when set (remove it to choose another endpoint)")
        return self

    def describe(self) -> str:
        """Short human form for descriptions."""
        if self.tier is not None:
            return f"tier {self.tier}"
        if self.ip_block is not None:
            out = self.ip_block.cidr
            if self.ip_block.except_:
                out += " except " + ", ".join(self.ip_block.except_)
            return out
        if self.anywhere:
            return "anywhere"
        if self.cloud_metadata:
            return "the cloud metadata service (" + ", ".join(CLOUD_METADATA) + ")"
        if self.kube_api:
            return "the Kubernetes API"
        parts = []
        if self.pod_selector is not None:
            parts.append("pods " + describe_selector(self.pod_selector))
        if self.namespace_selector is not None:
            parts.append("namespaces " + describe_selector(self.namespace_selector))
        else:
            parts.append("in this namespace")
        return " in ".join(parts[:2]) if self.namespace_selector is not None else " ".join(parts)


def describe_selector(sel: LabelSelector) -> str:
    """``{app=web,env in (a,b)}``; ``{}`` for everything."""
    terms = [f"{k}={v}" for k, v in sorted((sel.match_labels or {}).items())]
    for e in sel.match_expressions or []:
        if e.operator == "Exists":
            terms.append(e.key)
        elif e.operator == "DoesNotExist":
            terms.append(f"!{e.key}")
        else:
            op = "in" if e.operator == "In" else "notin"
            terms.append(f"{e.key} {op} ({','.join(e.values or [])})")
    return "{" + ",".join(terms) + "}"


_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9._/-]*")
# Plain words go-yaml (kubectl) reads as booleans or null: quoted in pasted YAML.
_NOT_STRINGS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flow(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    text = str(value)
    return text if _PLAIN.fullmatch(text) and text.lower() not in _NOT_STRINGS else json.dumps(text)


def selector_yaml(sel: LabelSelector) -> str:
    """The selector as YAML flow text that kubectl reads back as written, to paste into a topology:
    ``{matchLabels: {app: redis}}`` (values that would read as something else are quoted)."""
    return _flow(sel.model_dump(by_alias=True, exclude_none=True))


Direction = Literal["ingress", "egress"]


class TierIsolation(_Strict):
    """Per-tier override of spec.defaultDeny's directions. Unset directions follow spec.defaultDeny. In scope
    Namespace a tier can only add isolation (every pod of the namespace is already isolated in the directions
    of spec.defaultDeny); in scope Tiers it may also leave a direction open."""

    ingress: StrictBool | None = Field(
        default=None, description="Isolate the tier's incoming traffic (default: spec.defaultDeny.ingress)."
    )
    egress: StrictBool | None = Field(
        default=None, description="Isolate the tier's outgoing traffic (default: spec.defaultDeny.egress)."
    )


class Tier(_Strict):
    """A named group of the application's pods."""

    name: str = Field(
        max_length=63,
        pattern=DNS1123_LABEL,
        description="Tier name, a DNS-1123 label (lowercase alphanumerics and '-'), unique in the topology. "
        "Used in the generated policy name <topology>.tier-<name>.",
    )
    pod_selector: LabelSelector = Field(
        alias="podSelector",
        description="The tier's pods in this namespace (a standard label selector; {} = every pod of the namespace).",
    )
    isolation: TierIsolation | None = Field(
        default=None,
        description="Which directions of this tier are isolated, where they differ from spec.defaultDeny (e.g. "
        "a database isolated for ingress only: {egress: false}, in scope Tiers).",
    )


class Flow(_Strict):
    """Traffic allowed from one endpoint to another. At least one side must be a tier of this topology."""

    from_: Endpoint = Field(alias="from", description="Where the traffic starts.")
    to: Endpoint = Field(description="Where the traffic goes.")
    ports: list[Port] | None = Field(
        default=None,
        max_length=MAX_PORTS,
        description="Destination ports allowed. Omitted or empty: all ports and protocols.",
    )
    description: str | None = Field(
        default=None, max_length=MAX_DESCRIPTION, description="Why this flow exists (human text)."
    )

    model_config = ConfigDict(
        json_schema_extra=_extra(
            _cel(
                "has(self.from.tier) || has(self.to.tier)",
                "a flow needs at least one tier endpoint (from.tier or to.tier)",
            ),
            _cel(
                "!has(self.from.cloudMetadata)",
                "cloudMetadata is a destination only (the metadata service opens no connections)",
                ".from.cloudMetadata",
            ),
            _cel("!has(self.from.kubeAPI)", KUBE_API_SOURCE, ".from.kubeAPI"),
            _cel("!has(self.to.kubeAPI) || !has(self.ports) || size(self.ports) == 0", KUBE_API_PORTS, ".ports"),
        )
    )

    @model_validator(mode="after")
    def _has_tier(self) -> Flow:
        if self.from_.tier is None and self.to.tier is None:
            raise ValueError("a flow needs at least one tier endpoint (from.tier or to.tier)")
        return self


class DefaultDeny(_Strict):
    """Which pods and directions are isolated (denied unless a flow allows)."""

    scope: Literal["Namespace", "Tiers"] = Field(
        default="Namespace",
        description="Namespace: isolate every pod of the namespace (one default-deny policy). Tiers: isolate "
        "only the pods of the declared tiers; other pods are untouched.",
    )
    ingress: StrictBool = Field(default=True, description="Isolate incoming traffic.")
    egress: StrictBool = Field(default=True, description="Isolate outgoing traffic.")


NAMESPACE_EXEMPTION = (
    "in scope Namespace every pod of the namespace is isolated in the directions of spec.defaultDeny, so a tier "
    "cannot be exempted (isolation false): use scope Tiers, or turn the direction off in spec.defaultDeny and "
    "isolate the tiers that need it"
)

DNS_SERVICE_WITHOUT_DISCOVER = "service is followed only with discover: true"

DNS_DEFAULT_NS = {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
DNS_DEFAULT_POD = {"matchLabels": {"k8s-app": "kube-dns"}}
# The DNS Services dns.discover follows without dns.service, tried in this order.
DEFAULT_DNS_SERVICES: tuple[tuple[str, str], ...] = (("kube-system", "kube-dns"), ("openshift-dns", "dns-default"))


def _dns_ports() -> list[Port]:
    return [Port(port=53, protocol="UDP"), Port(port=53, protocol="TCP")]


class ServiceRef(_Strict):
    """A Service by namespace and name."""

    namespace: str = Field(max_length=63, pattern=DNS1123_LABEL, description="The Service's namespace.")
    name: str = Field(max_length=63, pattern=DNS1123_LABEL, description="The Service's name.")


MAX_NODE_LOCAL = 8


def _valid_ip(value: str) -> str:
    problem = check_ip(value)
    if problem:
        raise ValueError(problem)
    return value


class NodeLocalDNS(_Strict):
    """NodeLocal DNSCache: a DNS cache on every node, on a node-local address that pods query instead of
    the DNS Service."""

    addresses: list[Annotated[str, Field(max_length=39), AfterValidator(_valid_ip)]] = Field(
        min_length=1,
        max_length=MAX_NODE_LOCAL,
        description="The cache's addresses, rendered as /32 or /128 ipBlocks on the DNS ports (with discover "
        "and without this field: the addresses of the cluster's node-local-dns DaemonSet, or 169.254.20.10).",
    )

    model_config = ConfigDict(
        json_schema_extra=_extra(
            _cel(
                "self.addresses.all(a, isIP(a) && string(ip(a)) == a)",
                "every address must be an IP address in canonical form, such as 169.254.20.10 or fd00::10 "
                "(no leading zeros, zones or IPv4-mapped IPv6)",
                ".addresses",
            )
        )
    )


class DNS(_Strict):
    """DNS egress for isolated pods. Without it, name resolution fails as soon as egress is isolated."""

    enabled: StrictBool = Field(default=True, description="Allow DNS egress (only emitted when egress is isolated).")
    discover: StrictBool = Field(
        default=False,
        description="Follow the cluster: the DNS peer is the pods of the DNS Service (service, or else "
        "kube-system/kube-dns, then openshift-dns/dns-default) on its target ports, plus NodeLocal DNSCache "
        "when it runs. Resolved by the operator and render --cluster; offline, and when no such Service is "
        "found, namespaceSelector, podSelector and ports below apply.",
    )
    service: ServiceRef | None = Field(
        default=None,
        description="The DNS Service to follow with discover (default: kube-system/kube-dns, then "
        "openshift-dns/dns-default).",
    )
    node_local: NodeLocalDNS | None = Field(
        default=None,
        alias="nodeLocal",
        description="NodeLocal DNSCache addresses to allow on the DNS ports, always (discover finds them "
        "in the cluster without this field).",
    )
    namespace_selector: LabelSelector | None = Field(
        default_factory=lambda: LabelSelector.model_validate(DNS_DEFAULT_NS),
        alias="namespaceSelector",
        description="Namespaces of the DNS servers (default: kube-system by its kubernetes.io/metadata.name label).",
    )
    pod_selector: LabelSelector | None = Field(
        default_factory=lambda: LabelSelector.model_validate(DNS_DEFAULT_POD),
        alias="podSelector",
        description="DNS server pods within those namespaces (default: k8s-app=kube-dns). Combined with "
        "namespaceSelector in one peer (AND).",
    )
    ports: list[Port] = Field(
        default_factory=_dns_ports,
        min_length=1,
        max_length=MAX_PORTS,
        description="DNS ports (default: 53/UDP and 53/TCP).",
    )

    model_config = ConfigDict(
        json_schema_extra=_extra(
            # A null selector is absent to CEL: both null leaves an empty peer, which the API server refuses.
            _cel(
                "has(self.namespaceSelector) || has(self.podSelector)",
                "namespaceSelector and podSelector cannot both be null: the DNS peer would be empty, which "
                "Kubernetes refuses (namespaceSelector: {} means every namespace)",
            ),
            _cel("!has(self.service) || self.discover", DNS_SERVICE_WITHOUT_DISCOVER, ".service"),
        )
    )

    @model_validator(mode="after")
    def _a_peer(self) -> DNS:
        if self.service is not None and not self.discover:
            raise ValueError(f"service: {DNS_SERVICE_WITHOUT_DISCOVER}")
        if self.namespace_selector is None and self.pod_selector is None:
            raise ValueError(
                "namespaceSelector and podSelector cannot both be null: the DNS peer would be empty, which "
                "Kubernetes refuses (namespaceSelector: {} means every namespace)"
            )
        return self


class Monitoring(_Strict):
    """Lets a monitoring system (e.g. Prometheus) scrape the tiers' pods."""

    enabled: StrictBool = Field(default=False, description="Emit the monitoring ingress rules.")
    namespace_selector: LabelSelector | None = Field(
        default=None,
        alias="namespaceSelector",
        description="Namespaces of the monitoring system. Required when enabled.",
    )
    pod_selector: LabelSelector | None = Field(
        default=None,
        alias="podSelector",
        description="Monitoring pods within those namespaces (AND with namespaceSelector). Optional.",
    )
    ports: list[Port] | None = Field(
        default=None,
        max_length=MAX_PORTS,
        description="Ports scraped on the tiers' pods. Required when enabled.",
    )
    tiers: list[Annotated[str, Field(max_length=63)]] | None = Field(
        default=None,
        max_length=MAX_TIERS,
        description="Tiers that may be scraped (default: every tier; never pods outside the tiers).",
    )

    model_config = ConfigDict(
        json_schema_extra=_extra(
            _cel(
                "!self.enabled || (has(self.namespaceSelector) && has(self.ports) && size(self.ports) > 0)",
                "namespaceSelector and ports are required when monitoring is enabled",
            )
        )
    )

    @model_validator(mode="after")
    def _required_when_enabled(self) -> Monitoring:
        if self.enabled:
            missing = []
            if self.namespace_selector is None:
                missing.append("namespaceSelector")
            if not self.ports:
                missing.append("ports")
            if missing:
                raise ValueError(f"{' and '.join(missing)} required when monitoring is enabled")
        return self


class AppTopologySpec(_Strict):
    """An application's tiers and the flows allowed between them and to the outside."""

    default_deny: DefaultDeny = Field(
        default_factory=DefaultDeny,
        alias="defaultDeny",
        description="Isolation: which pods (scope) and which directions are denied unless a flow allows them.",
    )
    dns: DNS = Field(default_factory=DNS, description="DNS egress for isolated pods (on by default).")
    monitoring: Monitoring = Field(
        default_factory=Monitoring,
        description="Ingress from a monitoring system to the tiers (off by default).",
    )
    tiers: list[Tier] = Field(
        min_length=1,
        max_length=MAX_TIERS,
        description="The application's tiers (at least one); names unique.",
    )
    flows: list[Flow] = Field(
        default_factory=list,
        max_length=MAX_FLOWS,
        description="The allowed traffic. Everything not declared here (or by dns/monitoring) stays denied in "
        "isolated directions.",
    )
    enforcement: Literal["Enforce", "DryRun"] = Field(
        default="Enforce",
        description="Enforce (default): the operator applies the NetworkPolicies. DryRun: it renders them, asks "
        "the API server about them (server-side dry run) and reports in status what it would apply and which "
        "connections of the pods running now it would deny, without writing any policy; switching an enforced "
        "topology to DryRun removes its policies (an explicit choice to stop enforcing).",
    )

    model_config = ConfigDict(
        json_schema_extra=_extra(
            _cel(
                "self.tiers.all(t, self.tiers.exists_one(u, u.name == t.name))",
                "tier names must be unique",
                ".tiers",
            ),
            _cel(
                "!has(self.flows) || self.flows.all(f, (!has(f.from.tier) || f.from.tier in self.tiers.map(t, t.name))"
                " && (!has(f.to.tier) || f.to.tier in self.tiers.map(t, t.name)))",
                "every flow tier endpoint must name a tier declared in spec.tiers",
                ".flows",
            ),
            _cel(
                "!has(self.monitoring) || !has(self.monitoring.tiers) || self.monitoring.tiers.all(m, "
                "self.tiers.exists(t, t.name == m))",
                "monitoring.tiers must name tiers declared in spec.tiers",
                ".monitoring.tiers",
            ),
            _cel(
                "self.defaultDeny.scope != 'Namespace' || !has(self.flows) || self.flows.all(f, "
                "(!self.defaultDeny.ingress || has(f.to.namespaceSelector) || !has(f.to.podSelector)) && "
                "(!self.defaultDeny.egress || has(f.from.namespaceSelector) || !has(f.from.podSelector)))",
                "in scope Namespace, pods of this namespace chosen by podSelector alone are isolated by the "
                "topology's own default-deny and only tiers get rules, so a flow to or from them in an isolated "
                "direction could never work: declare them as a tier and use the tier, or use scope Tiers",
                ".flows",
            ),
            _cel(
                "self.defaultDeny.scope != 'Namespace' || !self.defaultDeny.ingress || !self.dns.enabled || "
                "has(self.dns.namespaceSelector) || (!self.defaultDeny.egress && !self.tiers.exists(t, "
                "has(t.isolation) && has(t.isolation.egress) && t.isolation.egress))",
                "dns.namespaceSelector null means DNS servers in this namespace, which scope Namespace isolates "
                "for ingress: name the DNS servers' namespace, or declare them as a tier, or use scope Tiers",
                ".dns.namespaceSelector",
            ),
            _cel(
                "self.defaultDeny.scope != 'Namespace' || self.tiers.all(t, !has(t.isolation) || "
                "((!has(t.isolation.ingress) || t.isolation.ingress || !self.defaultDeny.ingress) && "
                "(!has(t.isolation.egress) || t.isolation.egress || !self.defaultDeny.egress)))",
                NAMESPACE_EXEMPTION,
                ".tiers",
            ),
        )
    )

    def tier_names(self) -> list[str]:
        return [t.name for t in self.tiers]

    def isolates(self, tier: Tier, direction: Direction) -> bool:
        """Whether ``tier``'s own policy isolates ``direction``: its override, else spec.defaultDeny."""
        own = getattr(tier.isolation, direction) if tier.isolation is not None else None
        return bool(getattr(self.default_deny, direction)) if own is None else bool(own)


class ObjectMeta(BaseModel):
    """The parts of metadata the renderer uses; everything else Kubernetes puts there is tolerated."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(max_length=63, pattern=DNS1123_LABEL)
    namespace: str | None = Field(default=None, max_length=63, pattern=DNS1123_LABEL)
    uid: str | None = None
    generation: int | None = None


class AppTopology(_Strict):
    """An AppTopology document (``apptopology.io/v1alpha1``)."""

    api_version: Literal["apptopology.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["AppTopology"]
    metadata: ObjectMeta
    spec: AppTopologySpec
    status: dict[str, Any] | None = None


def selector_matches(selector: LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """Standard label selector semantics; None (absent) matches nothing, {} matches everything."""
    if selector is None:
        return False
    for key, value in (selector.match_labels or {}).items():
        if labels.get(key) != value:
            return False
    for req in selector.match_expressions or []:
        present = req.key in labels
        if req.operator == "In" and not (present and labels[req.key] in (req.values or [])):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in (req.values or []):
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True
