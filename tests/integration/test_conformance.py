"""Conformance: ``apptopology validate`` accepts a document exactly when the cluster would take it.

"Would take it" means: the CRD admits the AppTopology (``kubectl create --dry-run=server
--validate=strict``, schema and CEL), and the API server admits every NetworkPolicy it renders
(server-side dry run, NetworkPolicy validation). Inputs: every example, every shared invalid case, YAML
dialect corner cases, and a few hundred generated topologies biased toward the edges of the API server's
rules. The operator is not needed; requests are batched (one kubectl call per kind of object).

The same bytes go to both sides: each document is written once as YAML, read by the CLI from a file and
sent to kubectl as it is.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness import ROOT, ControlPlane
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apptopology.api.spec import AppTopology
from apptopology.api.validation import semantic_issues
from apptopology.cli import main
from apptopology.cli.documents import dump_yaml, parse_documents
from apptopology.render.renderer import render
from shared import example_documents, invalid_cases

GENERATED = 300

# --- edge values: mostly valid, with the invalid neighbours of each rule ---------------------------------

LONG_PREFIX = ".".join(["a" * 63] * 3) + "." + "a" * 61  # 253 characters
LABEL_KEYS = ["app", "tier", "a" * 63, "example.com/app", "k8s.io/x", "x.y-z_W", f"{LONG_PREFIX}/b"] * 10 + [
    "a" * 64,
    f"{LONG_PREFIX}a/b",
    "Example.com/app",
    "app\n",
    "/app",
    "a/b/c",
    "-app",
    "app_",
]
LABEL_VALUES = ["web", "", "a" * 63, "a.b_c-D", "1e2", "y", "0o17", "2001-12-14"] * 10 + [
    "a" * 64,
    "web\n",
    "-web",
    "web-",
    "é",
]
TIER_NAMES = ["api", "web", "db", "a" * 63, "a-b"] * 10 + ["a" * 64, "Api", "api-", "api\n"]
PORTS: list[Any] = [1, 80, 443, 65535, "http", "h2c", "a" * 15, "dns-tcp", 80.0] * 10 + [
    0,
    65536,
    "a" * 16,
    "-http",
    "http-",
    "h--p",
    "80",
    "8-0",
    "HTTP",
    "http\n",
]
CIDRS = ["10.0.0.0/8", "0.0.0.0/0", "::/0", "2001:db8::/32", "1.2.3.4/32", "192.168.0.0/16", "fd00::/8"] * 10 + [
    "10.0.0.1/8",
    "010.0.0.0/8",
    "10.0.0.0/08",
    "::ffff:10.0.0.0/104",
    "fe80::%eth0/64",
    "2001:DB8::/32",
    "2001:0db8::/32",
    "::10.0.0.0/104",
    "10.0.0.0/33",
    "10.0.0.0",
]


def _sub_cidrs(cidr: str) -> st.SearchStrategy[list[str]]:
    """except entries for ``cidr``: strict subsets mostly; equal, host bits, outside, other family sometimes."""
    import ipaddress

    try:
        net = ipaddress.ip_network(cidr)
    except ValueError:
        return st.just(["10.1.0.0/16"])
    inside = [str(s) for s in net.subnets(new_prefix=min(net.prefixlen + 8, net.max_prefixlen))][:3] or [cidr]
    edges = [cidr, "11.0.0.0/16", "fc00::/7", str(net.network_address + 1) + f"/{net.max_prefixlen - 1}"]
    return st.lists(st.sampled_from(inside * 10 + edges), min_size=1, max_size=2)


labels = st.dictionaries(st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES), max_size=3)
_values = st.lists(st.sampled_from(LABEL_VALUES), min_size=1, max_size=2)
expressions = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"key": st.sampled_from(LABEL_KEYS), "operator": st.sampled_from(["In", "NotIn"]), "values": _values}
        ),
        st.fixed_dictionaries(
            {"key": st.sampled_from(LABEL_KEYS), "operator": st.sampled_from(["Exists", "DoesNotExist"])}
        ),
        # the invalid neighbours: In without values, Exists with values
        st.sampled_from([{"key": "app", "operator": "In"}, {"key": "app", "operator": "Exists", "values": ["x"]}]),
    ),
    max_size=2,
)
selectors = st.fixed_dictionaries({}, optional={"matchLabels": labels, "matchExpressions": expressions})


@st.composite
def ports(draw: st.DrawFn) -> dict[str, Any]:
    port = draw(st.sampled_from(PORTS))
    out: dict[str, Any] = {"port": port}
    # Mostly a port; sometimes a protocol only (every port of it), a null port, or a range without its start.
    shape = draw(st.sampled_from(["port"] * 12 + ["protocol", "null", "no-start"]))
    if shape != "port":
        out = {"port": None} if shape == "null" else {"protocol": draw(st.sampled_from(["UDP", "TCP", "SCTP"]))}
        if shape == "no-start":
            out["endPort"] = 80  # refused: a range needs its first port
        return out
    if draw(st.integers(0, 5)) == 0:
        out["protocol"] = draw(st.sampled_from(["UDP", "SCTP", "TCP"] * 3 + ["tcp"]))
    if isinstance(port, int | float) and draw(st.integers(0, 3)) == 0:
        p = int(port)
        out["endPort"] = draw(st.sampled_from([p, min(p + 1, 65535), 65535] * 3 + [max(p - 1, 0), 65536]))
    return out


@st.composite
def endpoints(draw: st.DrawFn, tiers: list[str]) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(["tier", "tier", "tier", "ipBlock", "anywhere", "pods", "namespaces", "both", "cluster"])
    )
    if kind == "tier":
        return {"tier": draw(st.sampled_from(tiers))}
    if kind == "cluster":  # destination only; kubeAPI also without ports
        return draw(st.sampled_from([{"cloudMetadata": True}, {"kubeAPI": True}, {"kubeAPI": False}]))
    if kind == "anywhere":
        return {"anywhere": True}
    if kind == "ipBlock":
        cidr = draw(st.sampled_from(CIDRS))
        block: dict[str, Any] = {"cidr": cidr}
        if draw(st.booleans()):
            block["except"] = draw(_sub_cidrs(cidr))
        return {"ipBlock": block}
    out: dict[str, Any] = {}
    if kind in ("pods", "both"):
        out["podSelector"] = draw(selectors)
    if kind in ("namespaces", "both"):
        out["namespaceSelector"] = draw(selectors)
    return out


@st.composite
def topologies(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(TIER_NAMES), min_size=1, max_size=3, unique=True))
    tiers = [{"name": n, "podSelector": draw(selectors)} for n in names]
    for tier in tiers:  # per-tier isolation; exempting a tier is refused in scope Namespace
        isolation = draw(st.sampled_from([None] * 6 + [{"egress": False}, {"ingress": True}, {"ingress": False}]))
        if isolation is not None:
            tier["isolation"] = isolation
    flows = []
    for _ in range(draw(st.integers(0, 3))):
        flow: dict[str, Any] = {"from": draw(endpoints(names)), "to": draw(endpoints(names))}
        if draw(st.booleans()):
            flow["ports"] = draw(st.lists(ports(), min_size=1, max_size=3))
        if draw(st.integers(0, 3)) == 0:
            flow["description"] = draw(st.sampled_from(["why", "é" * 512, "line\nbreak"] * 2 + ["x" * 513]))
        flows.append(flow)
    spec: dict[str, Any] = {"tiers": tiers, "flows": flows}
    if draw(st.integers(0, 2)) == 0:
        spec["defaultDeny"] = {
            "scope": draw(st.sampled_from(["Namespace", "Tiers"])),
            "egress": draw(st.booleans()),
        }
    if draw(st.integers(0, 3)) == 0:
        spec["dns"] = draw(
            st.sampled_from(
                [
                    {"podSelector": {}},
                    {"namespaceSelector": None},
                    {"podSelector": None},
                    {"namespaceSelector": None, "podSelector": None},
                    {"namespaceSelector": None, "podSelector": None, "enabled": False},
                    {"ports": [{"port": 5353, "protocol": "UDP"}]},
                    {"discover": True, "service": {"namespace": "openshift-dns", "name": "dns-default"}},
                    {"service": {"namespace": "kube-system", "name": "kube-dns"}},
                    {"discover": True, "nodeLocal": {"addresses": ["169.254.20.10", "fd00::a"]}},
                    {"nodeLocal": {"addresses": ["FD00::A"]}},
                    {"nodeLocal": {"addresses": ["169.254.020.10"]}},
                    {"nodeLocal": {"addresses": ["::ffff:169.254.20.10"]}},
                ]
            )
        )
    if draw(st.integers(0, 4)) == 0:
        spec["monitoring"] = {"enabled": True, "namespaceSelector": draw(selectors), "ports": [draw(ports())]}
    return {"apiVersion": "apptopology.io/v1alpha1", "kind": "AppTopology", "metadata": {"name": "x"}, "spec": spec}


def generated(count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(topologies())
    def collect(doc: dict[str, Any]) -> None:
        out.append(doc)

    collect()
    return out[:count]


# YAML where PyYAML and go-yaml (kubectl) read different data: the CLI must judge what kubectl sends.
DIALECT = [
    "matchLabels: {app: y}",
    "matchLabels: {app: 0o17}",
    "matchLabels: {app: 2001-12-14}",
    "matchLabels: {app: 1:20}",
    "matchLabels: {1: a}",
    "matchLabels: {true: a}",
    "matchLabels: {app: !!binary d2Vi}",
]


def _dialect_doc(selector: str) -> str:
    return (
        f"apiVersion: apptopology.io/v1alpha1\nkind: AppTopology\nmetadata: {{name: NAME, namespace: NS}}\n"
        f"spec:\n  tiers: [{{name: api, podSelector: {{{selector}}}}}]\n"
        f"  flows: [{{from: {{tier: api}}, to: {{tier: api}}, ports: [{{port: 1e2}}, {{port: 80.0}}]}}]\n"
    )


# --- the two verdicts ------------------------------------------------------------------------------------


def _yaml(doc: Any) -> str:
    out = io.StringIO()
    dump_yaml([doc], out)
    return out.getvalue()


def cli_accepts(path: Path) -> bool:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(["validate", "-f", str(path)]) == 0


def created(cp: ControlPlane, texts: Iterable[str], what: str) -> tuple[set[str], str]:
    """Names the API server admits in a server-side dry run of every document in ``texts``; and stderr."""
    result = cp.kubectl(
        "create", "--dry-run=server", "--validate=strict", "-o", "name", "-f", "-", input="".join(texts), check=False
    )
    names = {line.rsplit("/", 1)[-1] for line in result.stdout.split() if line.startswith(what)}
    return names, result.stderr


def test_cli_accepts_exactly_what_the_api_server_admits(controlplane: ControlPlane, namespace: str) -> None:
    inputs: list[tuple[str, str]] = []  # (kind of input, YAML text with NAME and NS placeholders)
    for _, doc in example_documents():
        inputs.append(("example", _yaml({**doc, "metadata": {"name": "NAME", "namespace": "NS"}})))
    for case in invalid_cases():
        if case["admission"] != "none":
            inputs.append(("invalid", _yaml({**case["document"], "metadata": {"name": "NAME", "namespace": "NS"}})))
    for selector in DIALECT:
        inputs.append(("dialect", _dialect_doc(selector)))
    for doc in generated(GENERATED):
        inputs.append(("generated", _yaml({**doc, "metadata": {"name": "NAME", "namespace": "NS"}})))

    work = Path(controlplane.dir) / "conformance"
    work.mkdir(exist_ok=True)
    texts: dict[str, str] = {}
    kinds: dict[str, str] = {}
    for i, (kind, text) in enumerate(inputs):
        name = f"c{i:04d}"
        texts[name] = "---\n" + text.removeprefix("---\n").replace("NAME", name, 1).replace("NS", namespace, 1)
        kinds[name] = kind
    cli: dict[str, bool] = {}
    for name, text in texts.items():
        path = work / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        cli[name] = cli_accepts(path)

    admitted, _ = created(controlplane, texts.values(), "apptopology")

    # Render what the model takes (also the documents only the rendering refuses), as the operator would.
    rendered: dict[str, list[dict[str, Any]]] = {}
    not_rendered: list[str] = []
    for name, text in texts.items():
        (document,) = parse_documents(text, name)
        try:
            if semantic_issues(document.data.get("spec")):
                raise ValueError("semantic")
            rendered[name] = render(AppTopology.model_validate(document.data))
        except ValueError:
            not_rendered.append(name)
    owner = {p["metadata"]["name"]: name for name, policies in rendered.items() for p in policies}
    accepted_policies = [p for name, ps in rendered.items() if cli[name] for p in ps]
    other_policies = [p for name, ps in rendered.items() if not cli[name] for p in ps]
    ok_a, warnings = created(controlplane, (_yaml(p) for p in accepted_policies), "networkpolicy")
    ok_b, _ = created(controlplane, (_yaml(p) for p in other_policies), "networkpolicy")
    policy_ok = ok_a | ok_b
    refused_policy = {owner[n] for n in set(owner) - policy_ok}

    disagreements = []
    for name in texts:
        # The cluster takes it: the CRD admits it and, where the model renders it, every policy is admitted.
        # Admitted but not renderable counts as taken: the CLI would refuse what the CRD admits.
        cluster = name in admitted and name not in refused_policy
        if cli[name] != cluster:
            disagreements.append(
                f"{name} ({kinds[name]}): CLI {'accepts' if cli[name] else 'refuses'}, CRD "
                f"{'admits' if name in admitted else 'refuses'}, policies "
                f"{'n/a' if name not in rendered else 'refused' if name in refused_policy else 'admitted'}\n"
                + texts[name][:1500]
            )

    counts: dict[str, list[int]] = {}
    for name, kind in kinds.items():
        row = counts.setdefault(kind, [0, 0])
        row[0 if cli[name] else 1] += 1
    print("\nconformance (accepted / refused by both the CLI and the cluster):")
    for kind, (yes, no) in counts.items():
        print(f"  {kind:10} {yes + no:4} inputs: {yes:4} accepted, {no:4} refused")
    policies = len(accepted_policies) + len(other_policies)
    print(f"  rendered policies dry-run: {policies}; disagreements: {len(disagreements)}")
    assert not disagreements, "\n\n".join(disagreements[:10])
    assert "Warning" not in warnings, f"policies of accepted topologies drew warnings:\n{warnings[:3000]}"
    # The suite must exercise both verdicts in every group (except the all-valid examples).
    assert counts["example"][1] == 0
    assert counts["invalid"][0] == 0
    assert counts["generated"][0] > GENERATED // 5 and counts["generated"][1] > GENERATED // 5, counts


def test_examples_are_there() -> None:
    assert list((ROOT / "examples").glob("*.yaml"))
