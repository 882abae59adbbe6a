"""Reading YAML as kubectl does (go-yaml v2), and writing YAML kubectl reads back as the same data."""

from __future__ import annotations

import io
from typing import Any

import pytest
import yaml

from apptopology.cli.documents import KubeLoader, dump_yaml, parse_documents

# Plain scalars where go-yaml v2 and PyYAML disagree, with what kubectl sends to the API server.
GO_YAML = [
    ("y", True),
    ("N", False),
    ("0o17", 15),
    ("012", 10),
    ("08", 8.0),
    ("1e2", 100.0),
    ("1_000", 1000),
    ("2001-12-14", "2001-12-14"),
    ("1:20", "1:20"),
    ("1e400", "1e400"),
    ("+.inf", float("inf")),
    ("0b2", "0b2"),
    ("yes", True),
    ("~", None),
]


@pytest.mark.parametrize(("text", "value"), GO_YAML, ids=[t for t, _ in GO_YAML])
def test_plain_scalars_resolve_as_in_go_yaml(text: str, value: Any) -> None:
    assert yaml.load(f"v: {text}", Loader=KubeLoader) == {"v": value}


def test_scalar_keys_become_json_keys() -> None:
    assert yaml.load("1: a\ntrue: b\nc: d", Loader=KubeLoader) == {"1": "a", "true": "b", "c": "d"}


@pytest.mark.parametrize("text", [t for t, v in GO_YAML if not isinstance(v, str)] + ["2001-12-14", "http"])
def test_dump_quotes_what_go_yaml_would_not_read_as_the_string(text: str) -> None:
    out = io.StringIO()
    dump_yaml([{"v": text}], out)
    assert yaml.load(out.getvalue(), Loader=KubeLoader) == {"v": text}


def test_json_input_is_read_as_json() -> None:
    """kubectl decodes input starting with '{' as JSON, where 1e2 is a number (YAML 1.1 makes it a string)."""
    (doc,) = parse_documents('{"port": 1e2}', "x.json")
    assert doc.data == {"port": 100.0}
