"""Read multi-document YAML (or JSON) files and stdin into plain data, with located errors.

Kept apart from validation so every command (render, validate, explain, verify, diff) reads input the
same way and reports problems as ``FILE: document N: ...``.

Two properties matter beyond parsing:

- **The same data as kubectl.** kubectl reads YAML with go-yaml v2 (YAML 1.1 as Go implements it), which
  resolves some plain scalars differently from PyYAML: ``y``/``n`` are booleans, ``0o17`` and ``1e2`` are
  numbers, ``2001-12-14`` and ``1:20`` stay strings, integer and boolean map keys become strings. The loader
  here resolves scalars exactly as go-yaml does, so ``validate`` judges the document kubectl would send,
  and :func:`dump_yaml` quotes every string go-yaml would read as something else.
- **Bounded work on hostile input.** Files and documents have a size limit, alias expansion is bounded
  (a few hundred bytes of nested aliases otherwise expand to billions of nodes), nesting depth is bounded
  by libyaml, and every message quotes input truncated.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..api.guardrail import TopologyGuardrail, parse_guardrail
from ..api.spec import AppTopology, quote
from ..api.validation import InvalidTopology, Issue
from ..render.validation import parse_topology

# A file (or stdin) is read only up to this size: bigger ones are refused before parsing.
MAX_SOURCE_BYTES = 64 * 1024 * 1024
# An AppTopology document at most as large as a default cluster can store (etcd's default request limit,
# 1.5 MiB), checked on the text before parsing. Inventories and policy lists (kubectl get -o yaml) are
# bounded by MAX_SOURCE_BYTES only.
MAX_DOCUMENT_BYTES = 1536 * 1024
# Aliases may repeat at most this many nodes in total (the document without them is already bounded).
MAX_ALIAS_NODES = 100_000
MAX_PROBLEM_CHARS = 200

_INT, _FLOAT, _BOOL, _NULL, _STR = (f"tag:yaml.org,2002:{t}" for t in ("int", "float", "bool", "null", "str"))
_BOOLS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
}
_NULLS = {"", "~", "null", "Null", "NULL"}
_SPECIAL_FLOATS = {
    **dict.fromkeys((".nan", ".NaN", ".NAN"), float("nan")),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), float("inf")),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), float("-inf")),
}
_GO_INT = re.compile(r"0[bB][01]+|0[oO][0-7]+|0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")
_GO_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_GO_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?")


def _go_parse_int(text: str, base: int = 0) -> int | None:
    """Go's strconv.ParseInt(text, base, 64), then ParseUint for unsigned values up to 2**64 - 1."""
    sign, body = (-1, text[1:]) if text[:1] == "-" else (1, text[1:] if text[:1] == "+" else text)
    if base == 2:
        if not re.fullmatch("[01]+", body):
            return None
        value = int(body, 2)
    elif not _GO_INT.fullmatch(body) or len(body.lstrip("0")) > 70:
        return None  # not Go syntax, or (at more than 70 digits in any base) out of 64-bit range anyway
    elif body[:2] in ("0b", "0B", "0o", "0O", "0x", "0X"):
        value = int(body[2:], {"b": 2, "o": 8, "x": 16}[body[1].lower()])
    else:
        value = int(body, 8) if len(body) > 1 and body[0] == "0" else int(body)
    value *= sign
    if -(2**63) <= value < 2**63 or (text[:1] not in "+-" and 0 <= value < 2**64):
        return value
    return None


def go_yaml_scalar(text: str) -> tuple[str, Any]:
    """The tag and value go-yaml v2 resolves a plain (unquoted, untagged) scalar to; timestamps stay strings."""
    if text in _BOOLS:
        return _BOOL, _BOOLS[text]
    if text in _NULLS:
        return _NULL, None
    if text in _SPECIAL_FLOATS:
        return _FLOAT, _SPECIAL_FLOATS[text]
    first = text[0]
    if first == "." and _GO_DOT_FLOAT.fullmatch(text):
        value = float(text)
        if value not in (float("inf"), float("-inf")):
            return _FLOAT, value
    elif first in "+-0123456789":
        plain = text.replace("_", "")
        number = _go_parse_int(plain)
        if number is not None:
            return _INT, number
        if _GO_FLOAT.fullmatch(plain):
            value = float(plain)
            if value not in (float("inf"), float("-inf")):
                return _FLOAT, value
        for prefix, sign in (("0b", ""), ("-0b", "-")):
            if plain.startswith(prefix):
                number = _go_parse_int(sign + plain[len(prefix) :], 2)
                if number is not None:
                    return _INT, number
                break
    return _STR, text


class _GoResolver(yaml.resolver.Resolver):
    """Implicit scalar resolution as go-yaml v2 does it (merge keys ``<<`` are kept from PyYAML)."""

    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode and implicit[0]:
            if value == "<<":
                return "tag:yaml.org,2002:merge"
            return go_yaml_scalar(value)[0]
        return str(super().resolve(kind, value, implicit))  # type: ignore[no-untyped-call]


class Refused(yaml.YAMLError):
    """Input refused for its shape (too many aliases), not its syntax."""


class _Constructor(yaml.constructor.SafeConstructor):
    """Values as go-yaml gives them; scalar keys as sigs.k8s.io/yaml turns them into JSON keys; bounded
    alias expansion and document size."""

    def construct_yaml_bool(self, node: ScalarNode) -> Any:
        return go_yaml_scalar(node.value)[1] if node.value in _BOOLS else super().construct_yaml_bool(node)

    def construct_yaml_int(self, node: ScalarNode) -> Any:
        tag, value = go_yaml_scalar(node.value)
        if tag in (_INT, _FLOAT):
            return value
        raise yaml.constructor.ConstructorError(None, None, f"not an integer: {quote(node.value)}", node.start_mark)

    def construct_yaml_float(self, node: ScalarNode) -> Any:
        tag, value = go_yaml_scalar(node.value)
        if tag in (_INT, _FLOAT):
            return float(value)
        raise yaml.constructor.ConstructorError(None, None, f"not a number: {quote(node.value)}", node.start_mark)

    def construct_yaml_timestamp(self, node: ScalarNode) -> Any:
        return node.value

    def construct_yaml_binary(self, node: ScalarNode) -> Any:
        """go-yaml makes !!binary a string of the decoded bytes; bytes that are not UTF-8 text are refused
        (Go would send them to the API server with replacement characters)."""
        data = super().construct_yaml_binary(node)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise yaml.constructor.ConstructorError(
                None, None, "!!binary data is not UTF-8 text", node.start_mark
            ) from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Keys converted one by one (``1`` and ``true`` are different keys to Go, equal ones to Python)."""
        self.flatten_mapping(node)
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, bool):
                key = "true" if key else "false"
            elif isinstance(key, int):
                key = str(key)
            elif not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"map keys must be strings, not {quote(key, 40)}",
                    key_node.start_mark,
                )
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    # Set per stream: without a '*' in the text there is no alias to expand.
    may_alias = True

    def construct_document(self, node: Node) -> Any:
        if self.may_alias:
            _check_aliases(node)
        return super().construct_document(node)


_Constructor.yaml_constructors = {
    **_Constructor.yaml_constructors,
    _BOOL: _Constructor.construct_yaml_bool,
    _INT: _Constructor.construct_yaml_int,
    _FLOAT: _Constructor.construct_yaml_float,
    "tag:yaml.org,2002:timestamp": _Constructor.construct_yaml_timestamp,
    "tag:yaml.org,2002:binary": _Constructor.construct_yaml_binary,
}


def _check_aliases(root: Node) -> None:
    """Refuse a node graph whose expansion (aliases repeated) exceeds its own size by MAX_ALIAS_NODES.

    Counts expanded sizes bottom-up with one visit per distinct node, so the check itself stays linear in
    the document however deep the alias nesting goes.
    """
    expanded: dict[int, int] = {}
    distinct = 0
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in expanded and not children_done:
            continue
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        if not children_done:
            distinct += 1
            expanded[id(node)] = 0  # mark as visiting (a recursive alias counts once)
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in expanded)
            continue
        expanded[id(node)] = 1 + sum(expanded.get(id(c), 0) for c in children)
        if expanded[id(node)] > distinct + MAX_ALIAS_NODES:
            raise Refused(
                f"too many aliases: the document at line {root.start_mark.line + 1} would expand to more than "
                f"{distinct + MAX_ALIAS_NODES} nodes ({MAX_ALIAS_NODES} more than it has)"
            )


# libyaml's parser when PyYAML was built with it: faster, and it bounds nesting depth itself.
_CParser: Any = getattr(getattr(yaml, "cyaml", None), "CParser", None)

if _CParser is not None:

    class KubeLoader(_CParser, _Constructor, _GoResolver):  # type: ignore[misc]
        """Reads YAML as kubectl does (see the module docstring)."""

        def __init__(self, stream: str) -> None:
            _CParser.__init__(self, stream)
            _Constructor.__init__(self)
            _GoResolver.__init__(self)

else:  # pragma: no cover - PyYAML without libyaml

    class KubeLoader(  # type: ignore[no-redef]
        yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer, _Constructor, _GoResolver
    ):
        """Reads YAML as kubectl does (see the module docstring)."""

        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            _Constructor.__init__(self)
            _GoResolver.__init__(self)


class KubeDumper(yaml.SafeDumper, _GoResolver):
    """Block YAML that kubectl reads back as the same data: strings go-yaml would resolve to something else
    (``y``, ``0o17``, ``1e2``) are quoted, multi-line strings are literal blocks, no anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar(_STR, data, style=style)


KubeDumper.add_representer(str, _represent_str)


def dump_yaml(objects: Sequence[Any], out: TextIO, width: int = 100) -> None:
    """Multi-document YAML, keys in the objects' order."""
    out.write(yaml.dump_all(objects, Dumper=KubeDumper, sort_keys=False, explicit_start=True, width=width))


@dataclass(frozen=True)
class Document:
    """One decoded YAML document and where it came from (index counts from 0, as kubectl does; ``item``:
    the entry of a ``kind: List`` document). ``text`` is the whole source, kept to find a field's line
    when something is wrong with it (never parsed again otherwise)."""

    source: str
    index: int
    data: Any
    item: int | None = None
    text: str | None = dataclasses.field(default=None, repr=False, compare=False)

    def line_of(self, path: str) -> int | None:
        """The line of the field at ``path`` (``spec.flows[1].to``), or of its nearest present parent."""
        if self.text is None:
            return None
        prefix: list[str | int] = [] if self.item is None else ["items", self.item]
        return _line_of(self.text, self.index, [*prefix, *_path_parts(path)])

    def issue(self, issue: Issue) -> LocatedIssue:
        return LocatedIssue(self.source, self.index, issue, self.line_of(issue.path))


@dataclass(frozen=True)
class LocatedIssue:
    source: str
    index: int | None
    issue: Issue
    line: int | None = None

    def __str__(self) -> str:
        where = self.source if self.index is None else f"{self.source}: document {self.index}"
        line = f" (line {self.line})" if self.line is not None else ""
        return f"{where}: {self.issue}{line}"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.source,
            "document": self.index,
            "line": self.line,
            "path": self.issue.path,
            "message": self.issue.message,
        }


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _path_parts(path: str) -> list[str | int]:
    """``spec.flows[1].to`` -> ``["spec", "flows", 1, "to"]``."""
    return [int(index) if index else key for key, index in _PATH_PART.findall(path)]


_COMPOSED: dict[tuple[int, int], list[Node | None]] = {}


def _composed(text: str) -> list[Node | None]:
    """The node trees of every document of ``text`` (with their lines), composed once per text."""
    key = (id(text), len(text))
    if key not in _COMPOSED:
        if len(_COMPOSED) > 8:
            _COMPOSED.clear()
        loader = KubeLoader(text)
        nodes: list[Node | None] = []
        try:
            while loader.check_node():
                nodes.append(loader.get_node())
        except yaml.YAMLError:
            pass  # JSON that is not YAML, say: no lines then
        finally:
            loader.dispose()
        _COMPOSED[key] = nodes
    return _COMPOSED[key]


def _line_of(text: str, index: int, parts: list[str | int]) -> int | None:
    nodes = _composed(text)
    node = nodes[index] if index < len(nodes) else None
    if node is None:
        return None
    line = int(node.start_mark.line)
    for part in parts:
        if isinstance(node, MappingNode) and isinstance(part, str):
            pair = next(((k, v) for k, v in node.value if isinstance(k, ScalarNode) and k.value == part), None)
            if pair is None:
                break
            line, node = int(pair[0].start_mark.line), pair[1]  # the key's line: where a reader looks
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = int(node.start_mark.line)
        else:
            break
    return line + 1


class InputError(Exception):
    """Input that cannot be used; carries every located issue."""

    def __init__(self, issues: list[LocatedIssue]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def _problem(source: str, message: str) -> InputError:
    return InputError([LocatedIssue(source, None, Issue("", message))])


def _read_bounded(stream: io.BufferedIOBase | Any, source: str) -> str:
    data = stream.read(MAX_SOURCE_BYTES + 1)
    if len(data) > MAX_SOURCE_BYTES:
        raise _problem(source, f"too large: more than {MAX_SOURCE_BYTES} bytes ({MAX_SOURCE_BYTES // 2**20} MiB)")
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _problem(source, f"not UTF-8 text: invalid byte at offset {exc.start}") from None


def read_text(source: str) -> str:
    if source == "-":
        return _read_bounded(sys.stdin.buffer, "<stdin>")
    path = Path(source)
    try:
        with path.open("rb") as stream:
            return _read_bounded(stream, source)
    except FileNotFoundError:
        raise _problem(source, "no such file") from None
    except IsADirectoryError:
        raise _problem(source, "is a directory") from None
    except OSError as exc:
        raise _problem(source, f"cannot read: {exc.strerror or exc}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load_json(text: str) -> list[Any] | None:
    """kubectl reads input that starts with ``{`` as JSON (numbers such as 1e2 are numbers there, not the
    strings YAML 1.1 makes of them). None: not one JSON document, read it as YAML."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        return [json.loads(text, parse_constant=_no_constant)]
    except (ValueError, RecursionError):
        return None


# A document marker starts a line; none can occur inside a document's content, so the text between two
# markers bounds the size of the document there.
_MARKER = re.compile(r"^(?:---|\.\.\.)(?=[ \t\r\n]|$)", re.M)


def _check_document_sizes(text: str, name: str, limit: int) -> None:
    start = 0
    for match in [*_MARKER.finditer(text), None]:
        end = match.start() if match else len(text)
        if end - start > limit:
            line = text.count("\n", 0, start) + 1
            raise _problem(
                name,
                f"document at line {line} too large: {end - start} characters, at most {limit} "
                f"({limit // 1024} KiB: a Kubernetes cluster with etcd's default limits stores nothing larger)",
            )
        start = match.end() if match else end


def _load_yaml(text: str) -> list[Any]:
    loader = KubeLoader(text)
    loader.may_alias = "*" in text
    try:
        out = []
        while loader.check_data():  # type: ignore[no-untyped-call]
            out.append(loader.get_data())
        return out
    finally:
        loader.dispose()


def _tab_near(text: str, line: int, column: int) -> bool:
    """Whether the YAML error at (line, column) is a tab's doing: a tab at or before the mark on its line, or
    in the indentation of the line before (libyaml reports some tabs where the next token fails)."""
    lines = text.splitlines()
    here = lines[line] if line < len(lines) else ""
    before = lines[line - 1] if 0 < line <= len(lines) else ""
    indent = before[: len(before) - len(before.lstrip(" \t"))]
    return "\t" in here[: column + 1] or "\t" in indent


def parse_documents(text: str, source: str, max_document: int = MAX_SOURCE_BYTES) -> list[Document]:
    """Split a YAML stream into documents; empty documents (a stray ``---``) are skipped."""
    name = "<stdin>" if source == "-" else source
    if len(text) > MAX_SOURCE_BYTES:
        raise _problem(name, f"too large: more than {MAX_SOURCE_BYTES} characters")
    _check_document_sizes(text, name, max_document)
    loaded = _load_json(text)
    if loaded is None:
        try:
            loaded = _load_yaml(text)
        except Refused as exc:
            raise _problem(name, str(exc)) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            problem = str(getattr(exc, "problem", None) or exc)
            if len(problem) > MAX_PROBLEM_CHARS:
                problem = problem[:MAX_PROBLEM_CHARS] + "..."
            if mark is not None and _tab_near(text, mark.line, mark.column):
                problem = f"a tab character: YAML indents with spaces only (replace the tab with spaces); {problem}"
            raise _problem(name, f"not valid YAML: {where}{problem}") from None
        except RecursionError:
            raise _problem(name, "not valid YAML: nested too deeply") from None
    docs: list[Document] = []
    for index, data in enumerate(loaded):
        if data is None:
            continue
        if isinstance(data, dict) and data.get("kind") == "List" and isinstance(data.get("items"), list):
            docs.extend(Document(name, index, item, n, text) for n, item in enumerate(data["items"]))
            continue
        docs.append(Document(name, index, data, None, text))
    return docs


def load_documents(sources: list[str], max_document: int = MAX_SOURCE_BYTES) -> list[Document]:
    """Every document of every source, directories expanded to their *.yaml/*.yml/*.json files."""
    docs: list[Document] = []
    for source in sources:
        path = Path(source)
        if source != "-" and path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".json") and p.is_file())
            for f in files:
                docs.extend(parse_documents(read_text(str(f)), str(f), max_document))
        else:
            docs.extend(parse_documents(read_text(source), source, max_document))
    return docs


# Messages per run: every problem of a few documents, never a flood from thousands of them.
MAX_REPORTED = 100


def _capped(problems: list[LocatedIssue]) -> list[LocatedIssue]:
    if len(problems) <= MAX_REPORTED:
        return problems
    more = len(problems) - MAX_REPORTED
    last = problems[MAX_REPORTED - 1]
    return [*problems[:MAX_REPORTED], LocatedIssue(last.source, None, Issue("", f"... and {more} more problems"))]


def load_topology_documents(
    sources: list[str], loaded: list[Document] | None = None
) -> list[tuple[Document, AppTopology]]:
    """Every AppTopology in ``sources`` (or the documents ``loaded`` from them) with the document it came
    from; raises :class:`InputError` listing all problems of all documents."""
    docs = load_documents(sources, MAX_DOCUMENT_BYTES) if loaded is None else loaded
    if not docs:
        raise InputError([LocatedIssue(", ".join(sources), None, Issue("", "no documents found"))])
    topologies = []
    problems: list[LocatedIssue] = []
    for doc in docs:
        if isinstance(doc.data, dict) and doc.data.get("kind") == "NetworkPolicy":
            name = quote((doc.data.get("metadata") or {}).get("name"), 60)
            problems.append(
                doc.issue(
                    Issue(
                        "",
                        f"NetworkPolicy {name} is not an AppTopology: to turn NetworkPolicies into one, run "
                        f"`apptopology import -f {doc.source}`; to ask what they allow, `apptopology explain -f "
                        f"{doc.source}`",
                    )
                )
            )
            continue
        try:
            topologies.append((doc, parse_topology(doc.data)))
        except InvalidTopology as exc:
            problems.extend(doc.issue(issue) for issue in exc.issues)
    if problems:
        raise InputError(_capped(problems))
    return topologies


def load_topologies(sources: list[str]) -> list[AppTopology]:
    """Every AppTopology in ``sources``; raises :class:`InputError` listing all problems of all documents."""
    return [topology for _, topology in load_topology_documents(sources)]


def load_guardrails(sources: list[str]) -> list[TopologyGuardrail]:
    """Every TopologyGuardrail in ``sources``; raises :class:`InputError` listing all problems."""
    docs = load_documents(sources, MAX_DOCUMENT_BYTES)
    if not docs:
        raise InputError([LocatedIssue(", ".join(sources), None, Issue("", "no documents found"))])
    guardrails = []
    problems: list[LocatedIssue] = []
    for doc in docs:
        try:
            guardrails.append(parse_guardrail(doc.data))
        except InvalidTopology as exc:
            problems.extend(doc.issue(issue) for issue in exc.issues)
    names = [g.metadata.name for g in guardrails]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(LocatedIssue(", ".join(sources), None, Issue("", f"TopologyGuardrail {name} given twice")))
    if problems:
        raise InputError(_capped(problems))
    return guardrails
