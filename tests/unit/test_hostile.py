"""Hostile input: every case ends with a short located message and exit 1, never a traceback, a flood of
output or a MemoryError. Run through the real entry point (a subprocess), as a user or CI would.

The bound asserted is on output size; the time is printed (``pytest -s``), never asserted.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apptopology.cli.documents import MAX_DOCUMENT_BYTES, MAX_SOURCE_BYTES

HEAD = b"apiVersion: apptopology.io/v1alpha1\nkind: AppTopology\nmetadata: {name: shop}\n"
TIERS = b"spec:\n  tiers: [{name: api, podSelector: {}}]\n"


def _laughs(levels: int = 9, width: int = 10) -> bytes:
    """The billion laughs: each level an anchor holding ``width`` aliases of the one before."""
    lines = [b'a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(width))}]".encode())
    return b"\n".join(lines) + b"\n"


def _laughs_in_spec() -> bytes:
    """The same bomb where validation would walk it: the values of a tier's selector."""
    anchors = b"".join(
        f"  x{i}: &x{i} [{', '.join(f'*x{i - 1}' if i else '{0}' for _ in range(10))}]\n".format('"v"').encode()
        for i in range(9)
    )
    return (
        HEAD
        + b"spec:\n"
        + anchors
        + b"  tiers:\n  - name: api\n    podSelector:\n      matchExpressions:\n"
        + b"      - {key: a, operator: In, values: *x8}\n"
    )


CASES: dict[str, bytes] = {
    "billion-laughs": _laughs(),
    "billion-laughs-in-spec": _laughs_in_spec(),
    "recursive-alias": HEAD + b"spec: &s\n  tiers: [{name: api, podSelector: *s}]\n",
    "deep-flow-nesting": b"[" * 200_000 + b"]" * 200_000,
    "deep-block-nesting": b"".join(b" " * i + b"a:\n" for i in range(5_000)),
    "deep-json-nesting": b'{"a": ' * 100_000 + b"1" + b"}" * 100_000,
    "huge-scalar-over-source-limit": b"a: " + b"x" * (MAX_SOURCE_BYTES + 10),
    "huge-document": HEAD + TIERS + b"  flows:\n" + b"  - {from: {tier: api}, to: {tier: api}}\n" * 50_000,
    "huge-tier-name": HEAD + b"spec:\n  tiers: [{name: " + b"a" * (MAX_DOCUMENT_BYTES - 200) + b", podSelector: {}}]\n",
    "huge-label-key-and-value": HEAD
    + b"spec:\n  tiers: [{name: api, podSelector: {matchLabels: {"
    + b"k" * 500_000
    + b": "
    + b"v" * 500_000
    + b"}}}]\n",
    "huge-number": HEAD
    + TIERS
    + b"  flows: [{from: {tier: api}, to: {tier: api}, ports: [{port: "
    + b"9" * 100_000
    + b"}]}]\n",
    "binary": random.Random(8).randbytes(200_000),
    "invalid-utf8": HEAD + TIERS.replace(b"api", b"a\xff\xfepi"),
    "nul-and-control-characters": HEAD + b'spec:\n  tiers: [{name: "a\x00\x1b[2J", podSelector: {}}]\n',
    "non-string-keys": HEAD + b"spec:\n  ? [1, 2]\n  : x\n  tiers: [{name: api, podSelector: {}}]\n",
    "float-and-null-keys": HEAD + b"spec: {1.5: a, ~: b, tiers: [{name: api, podSelector: {}}]}\n",
    "python-object-tag": HEAD + b"spec: !!python/object/apply:os.system [echo pwned]\n",
    "python-name-tag": HEAD + b"spec: {tiers: !!python/name:os.system }\n",
    "binary-tag-not-text": HEAD + b"spec:\n  tiers: [{name: !!binary //79/A==, podSelector: {}}]\n",
    "unknown-tag": HEAD + b"spec: !Ref {tiers: []}\n",
    "top-level-scalar": b"!!int 1" + b"0" * 10_000,
    "many-empty-documents": b"--- {}\n" * 20_000,
    "many-invalid-flows": HEAD
    + TIERS
    + b"  flows:\n"
    + b"  - {from: {tier: nope}, to: {ipBlock: {cidr: x}}}\n" * 5_000,
    "many-ports": HEAD
    + TIERS
    + b"  flows: [{from: {tier: api}, to: {tier: api}, ports: ["
    + b"{port: 0}, " * 20_000
    + b"]}]\n",
}

# At most MAX_REPORTED messages of a few hundred characters each.
OUTPUT_LIMIT = 32 * 1024


def _run(path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "apptopology.cli", "validate", "-f", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    return result, time.monotonic() - start


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_ends_with_a_short_message(name: str, tmp_path: Path) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_bytes(CASES[name])
    result, seconds = _run(path)
    out = result.stdout + result.stderr
    print(f"{name}: input {len(CASES[name])} bytes, exit {result.returncode}, output {len(out)} bytes, {seconds:.2f} s")
    print("  " + result.stderr.splitlines()[0][:300] if result.stderr else "  (no stderr)")
    assert result.returncode == 1, out[:2000]
    assert result.stdout == ""
    assert "Traceback" not in out and "MemoryError" not in out
    assert result.stderr.startswith(f"error: {path}")
    assert len(out) <= OUTPUT_LIMIT, out[:2000]


def test_stdin_invalid_utf8_is_a_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "apptopology.cli", "validate", "-f", "-"],
        input=HEAD + b"\xc3\x28",
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.decode().startswith("error: <stdin>: not UTF-8 text")


def test_aliases_within_the_bound_still_work(tmp_path: Path) -> None:
    """Anchors are ordinary YAML: a reused selector is fine, only expansion beyond the bound is refused."""
    path = tmp_path / "anchors.yaml"
    path.write_bytes(
        HEAD
        + b"spec:\n  tiers:\n  - {name: api, podSelector: &sel {matchLabels: {app: shop}}}\n"
        + b"  - {name: web, podSelector: *sel}\n"
    )
    result, _ = _run(path)
    assert result.returncode == 0, result.stderr
