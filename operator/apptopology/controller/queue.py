"""A keyed work queue with coalescing and per-key backoff (controller-runtime's semantics, on asyncio).

- Events only add a key. A key waiting in the queue is there once, however many events arrive.
- A key is never handed out twice at once. An event for a key being processed marks it dirty: it is
  queued again, exactly once, when the current pass is done.
- Failures are retried with per-key exponential backoff through timers, so no worker sleeps.

All methods are called from the event loop's thread (Kopf handlers and the workers run there).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, base_delay: float = 0.5, max_delay: float = 300.0):
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._added_at: dict[K, float] = {}
        self._wakeup = asyncio.Event()
        self._closed = False

    def add(self, key: K) -> None:
        """Queue ``key`` (a no-op if it is already waiting; deferred if it is being processed)."""
        if self._closed or key in self._dirty:
            return
        self._dirty.add(key)
        self._added_at.setdefault(key, time.monotonic())
        if key not in self._processing:
            self._queue.append(key)
            self._wakeup.set()

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` in ``delay`` seconds; an earlier pending timer for it wins."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= due:
                return
            pending[1].cancel()
        self._timers[key] = (due, loop.call_later(delay, self._fire, key))

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: K) -> float:
        """Queue ``key`` after its backoff (doubling with each failure since the last :meth:`forget`)."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = float(min(self.base_delay * 2.0**failures, self.max_delay))
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """Reset the backoff of ``key`` (after a success)."""
        self._failures.pop(key, None)

    async def get(self) -> tuple[K, float]:
        """The next key and how long it waited in the queue (seconds); marks it as being processed."""
        while not self._queue:
            if self._closed:
                raise asyncio.CancelledError
            self._wakeup.clear()
            await self._wakeup.wait()
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        waited = time.monotonic() - self._added_at.pop(key, time.monotonic())
        return key, waited

    def done(self, key: K) -> None:
        """The pass over ``key`` is finished; if events came in meanwhile, it is queued once more."""
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wakeup.set()

    def close(self) -> None:
        self._closed = True
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._wakeup.set()

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def processing(self) -> int:
        return len(self._processing)
