"""Symbolic port sets: per-protocol unions of inclusive port intervals.

Connectivity answers are sets of (protocol, port-range) intervals rather than
enumerated ports, so "all ports" costs the same as "TCP/80" and set algebra
(union for additive policies, intersection for egress AND ingress, difference
for diffs) stays exact and cheap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import ClassVar, Final

PORT_MIN: Final = 1
PORT_MAX: Final = 65535
PROTOCOLS: Final = ("TCP", "UDP", "SCTP")
"""Protocols NetworkPolicy v1 can express; their order fixes PortSet layout."""

_Interval = tuple[int, int]


class IntervalSet:
    """Immutable set of ports in [PORT_MIN, PORT_MAX] kept as sorted, merged intervals."""

    __slots__ = ("_hash", "intervals")

    intervals: tuple[_Interval, ...]
    _hash: int

    def __init__(self, ranges: Iterable[_Interval | int] = ()) -> None:
        spans: list[_Interval] = []
        for item in ranges:
            lo, hi = (item, item) if isinstance(item, int) else item
            if not PORT_MIN <= lo <= hi <= PORT_MAX:
                raise ValueError(f"invalid port range {lo}-{hi} (must be {PORT_MIN}..{PORT_MAX}, lo <= hi)")
            spans.append((lo, hi))
        self._set(_merge(sorted(spans)))

    def _set(self, intervals: tuple[_Interval, ...]) -> None:
        object.__setattr__(self, "intervals", intervals)
        object.__setattr__(self, "_hash", hash(intervals))

    @classmethod
    def _raw(cls, intervals: tuple[_Interval, ...]) -> IntervalSet:
        """Build from intervals already sorted, disjoint and non-adjacent (internal fast path)."""
        obj = object.__new__(cls)
        obj._set(intervals)
        return obj

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("IntervalSet is immutable")

    def union(self, other: IntervalSet) -> IntervalSet:
        if not other.intervals or self is other:
            return self
        if not self.intervals:
            return other
        return IntervalSet._raw(_merge(sorted(self.intervals + other.intervals)))

    def intersection(self, other: IntervalSet) -> IntervalSet:
        if self is other:
            return self
        a, b = self.intervals, other.intervals
        out: list[_Interval] = []
        i = j = 0
        while i < len(a) and j < len(b):
            lo = max(a[i][0], b[j][0])
            hi = min(a[i][1], b[j][1])
            if lo <= hi:
                out.append((lo, hi))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return IntervalSet._raw(tuple(out))

    def complement(self) -> IntervalSet:
        out: list[_Interval] = []
        nxt = PORT_MIN
        for lo, hi in self.intervals:
            if lo > nxt:
                out.append((nxt, lo - 1))
            nxt = hi + 1
        if nxt <= PORT_MAX:
            out.append((nxt, PORT_MAX))
        return IntervalSet._raw(tuple(out))

    def difference(self, other: IntervalSet) -> IntervalSet:
        if not other.intervals:
            return self
        return self.intersection(other.complement())

    __or__ = union
    __and__ = intersection
    __sub__ = difference

    def __contains__(self, port: object) -> bool:
        if not isinstance(port, int):
            return False
        return any(lo <= port <= hi for lo, hi in self.intervals)

    def __bool__(self) -> bool:
        return bool(self.intervals)

    def __len__(self) -> int:
        """Number of ports in the set (not the number of intervals)."""
        return sum(hi - lo + 1 for lo, hi in self.intervals)

    def __iter__(self) -> Iterator[_Interval]:
        return iter(self.intervals)

    @property
    def is_full(self) -> bool:
        return self.intervals == ((PORT_MIN, PORT_MAX),)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IntervalSet) and self.intervals == other.intervals

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        if self.is_full:
            return "all"
        return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.intervals)

    def __repr__(self) -> str:
        return f"IntervalSet({list(self.intervals)!r})"


def _merge(spans: list[_Interval]) -> tuple[_Interval, ...]:
    """Merge sorted intervals, fusing overlapping and adjacent ones (80-81 + 82 = 80-82)."""
    out: list[_Interval] = []
    for lo, hi in spans:
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


_EMPTY_IV = IntervalSet._raw(())
_FULL_IV = IntervalSet._raw(((PORT_MIN, PORT_MAX),))
_PROTO_INDEX: Final = {p: i for i, p in enumerate(PROTOCOLS)}
_ITEM_RE = re.compile(r"^(TCP|UDP|SCTP)(?:/(all|\d+(?:-\d+)?))?$")


def check_protocol(protocol: str) -> str:
    """Return `protocol` if NetworkPolicy supports it; the API is case-sensitive, so are we."""
    if protocol not in _PROTO_INDEX:
        raise ValueError(f"unsupported protocol {protocol!r} (expected one of {', '.join(PROTOCOLS)})")
    return protocol


class PortSet:
    """Immutable set of (protocol, port) pairs over TCP, UDP and SCTP.

    Renders readably: "all", "none", or e.g. "TCP/80, TCP/8000-8080, UDP/53, SCTP/all".
    """

    __slots__ = ("_hash", "_sets")

    _sets: tuple[IntervalSet, IntervalSet, IntervalSet]
    _hash: int

    ALL: ClassVar[PortSet]
    NONE: ClassVar[PortSet]

    def __init__(self, by_protocol: Mapping[str, IntervalSet] | None = None) -> None:
        sets = [_EMPTY_IV, _EMPTY_IV, _EMPTY_IV]
        for proto, ivs in (by_protocol or {}).items():
            sets[_PROTO_INDEX[check_protocol(proto)]] = ivs
        self._init((sets[0], sets[1], sets[2]))

    def _init(self, sets: tuple[IntervalSet, IntervalSet, IntervalSet]) -> None:
        object.__setattr__(self, "_sets", sets)
        object.__setattr__(self, "_hash", hash(sets))

    @classmethod
    def _raw(cls, sets: tuple[IntervalSet, IntervalSet, IntervalSet]) -> PortSet:
        obj = object.__new__(cls)
        obj._init(sets)
        return obj

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("PortSet is immutable")

    @classmethod
    def of(cls, protocol: str, port: int | None = None, end_port: int | None = None) -> PortSet:
        """One protocol's port, range [port, end_port], or (port None) all of its ports."""
        check_protocol(protocol)
        ivs = _FULL_IV if port is None else IntervalSet([(port, port if end_port is None else end_port)])
        return cls({protocol: ivs})

    @classmethod
    def parse(cls, text: str) -> PortSet:
        """Inverse of str(): "all", "none", or comma-separated "TCP/80", "UDP/1000-2000", "SCTP/all", "TCP"."""
        text = text.strip()
        if text == "all":
            return cls.ALL
        result = cls.NONE
        if text in ("", "none"):
            return result
        for raw in text.split(","):
            m = _ITEM_RE.match(raw.strip())
            if not m:
                raise ValueError(f"cannot parse port set item {raw.strip()!r} in {text!r}")
            proto, spec = m.group(1), m.group(2)
            if spec is None or spec == "all":
                result |= cls.of(proto)
            else:
                lo, _, hi = spec.partition("-")
                result |= cls.of(proto, int(lo), int(hi) if hi else None)
        return result

    def ports(self, protocol: str) -> IntervalSet:
        return self._sets[_PROTO_INDEX[check_protocol(protocol)]]

    def items(self) -> Iterator[tuple[str, IntervalSet]]:
        """Non-empty (protocol, intervals) pairs in TCP, UDP, SCTP order."""
        for proto, ivs in zip(PROTOCOLS, self._sets, strict=True):
            if ivs:
                yield proto, ivs

    def contains(self, protocol: str, port: int) -> bool:
        return port in self._sets[_PROTO_INDEX[check_protocol(protocol)]]

    def __contains__(self, item: object) -> bool:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], int):
            return item[0] in _PROTO_INDEX and item[1] in self._sets[_PROTO_INDEX[item[0]]]
        return False

    def _zip(self, other: PortSet, op: str) -> PortSet:
        a, b = self._sets, other._sets
        if op == "|":
            return PortSet._raw((a[0] | b[0], a[1] | b[1], a[2] | b[2]))
        if op == "&":
            return PortSet._raw((a[0] & b[0], a[1] & b[1], a[2] & b[2]))
        return PortSet._raw((a[0] - b[0], a[1] - b[1], a[2] - b[2]))

    def union(self, other: PortSet) -> PortSet:
        if self is other or other.is_empty or self.is_all:
            return self
        if self.is_empty or other.is_all:
            return other
        return self._zip(other, "|")

    def intersection(self, other: PortSet) -> PortSet:
        if self is other or other.is_all or self.is_empty:
            return self
        if self.is_all or other.is_empty:
            return other
        return self._zip(other, "&")

    def difference(self, other: PortSet) -> PortSet:
        if other.is_empty:
            return self
        return self._zip(other, "-")

    __or__ = union
    __and__ = intersection
    __sub__ = difference

    @property
    def is_empty(self) -> bool:
        return not (self._sets[0] or self._sets[1] or self._sets[2])

    @property
    def is_all(self) -> bool:
        return self._sets[0].is_full and self._sets[1].is_full and self._sets[2].is_full

    def __bool__(self) -> bool:
        return not self.is_empty

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PortSet) and self._sets == other._sets

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        if self.is_all:
            return "all"
        if self.is_empty:
            return "none"
        parts: list[str] = []
        for proto, ivs in self.items():
            if ivs.is_full:
                parts.append(f"{proto}/all")
            else:
                parts.extend(f"{proto}/{lo}" if lo == hi else f"{proto}/{lo}-{hi}" for lo, hi in ivs)
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"PortSet.parse({str(self)!r})"


PortSet.ALL = PortSet._raw((_FULL_IV, _FULL_IV, _FULL_IV))
PortSet.NONE = PortSet._raw((_EMPTY_IV, _EMPTY_IV, _EMPTY_IV))
