"""The work queue: coalescing, one pass per key at a time, dirty keys once more, per-key backoff."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from apptopology.controller.queue import WorkQueue

T = TypeVar("T")


def run(test: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(test())


async def drain(queue: WorkQueue[str]) -> list[str]:
    out = []
    while len(queue):
        key, _ = await queue.get()
        out.append(key)
        queue.done(key)
    return out


def test_events_for_a_waiting_key_coalesce() -> None:
    async def test() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        for key in ("a", "b", "a", "a", "c", "b"):
            queue.add(key)
        return await drain(queue)

    assert run(test) == ["a", "b", "c"]


def test_a_key_in_flight_is_not_handed_out_again_but_runs_once_more() -> None:
    async def test() -> tuple[int, list[str], list[str]]:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        key, _ = await queue.get()
        for _ in range(5):
            queue.add("a")  # events while "a" is being reconciled
        waiting = len(queue)
        queue.add("b")
        got = [(await queue.get())[0]]
        queue.done("b")
        queue.done(key)  # now "a" goes back, exactly once
        return waiting, got, await drain(queue)

    waiting, got, rest = run(test)
    assert waiting == 0 and got == ["b"] and rest == ["a"]


def test_backoff_doubles_per_key_and_resets_on_forget() -> None:
    async def test() -> tuple[list[float], float]:
        queue: WorkQueue[str] = WorkQueue(base_delay=0.01, max_delay=0.04)
        delays = [queue.add_rate_limited("a") for _ in range(4)]
        queue.add_rate_limited("b")
        queue.forget("a")
        return delays, queue.add_rate_limited("a")

    delays, after_forget = run(test)
    assert delays == [0.01, 0.02, 0.04, 0.04] and after_forget == 0.01


def test_add_after_fires_once_and_the_earliest_timer_wins() -> None:
    async def test() -> tuple[int, list[str]]:
        queue: WorkQueue[str] = WorkQueue()
        queue.add_after("a", 5.0)
        queue.add_after("a", 0.01)  # earlier: replaces the 5 s timer
        queue.add_after("a", 1.0)  # later: ignored
        before = len(queue)
        key, _ = await asyncio.wait_for(queue.get(), timeout=2)
        queue.done(key)
        await asyncio.sleep(0.05)
        return before, [key, *await drain(queue)]

    before, keys = run(test)
    assert before == 0 and keys == ["a"]


def test_get_waits_for_work_and_close_wakes_waiters() -> None:
    async def test() -> tuple[str, bool]:
        queue: WorkQueue[str] = WorkQueue()
        waiter = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        queue.add("x")
        key, _ = await waiter
        other = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        queue.close()
        try:
            await other
        except asyncio.CancelledError:
            return key, True
        return key, False

    assert run(test) == ("x", True)


def test_urgent_keys_go_ahead_and_a_waiting_key_moves_up() -> None:
    async def test() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        for key in ("new1", "new2", "new3"):
            queue.add(key)
        queue.add("edit", urgent=True)
        queue.add("new3", urgent=True)  # waiting as ordinary: moves up, stays once
        queue.add("new1")  # already waiting: nothing
        return await drain(queue)

    assert run(test) == ["edit", "new3", "new1", "new2"]


def test_an_urgent_event_during_a_pass_requeues_urgently() -> None:
    async def test() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        key, _ = await queue.get()
        queue.add("b")
        queue.add("a", urgent=True)  # while "a" is processed
        queue.add("a")  # an ordinary event does not downgrade it
        queue.done(key)
        return await drain(queue)

    assert run(test) == ["a", "b"]


def test_the_ordinary_lane_is_not_starved() -> None:
    async def test() -> list[str]:
        queue: WorkQueue[str] = WorkQueue(urgent_run=2)
        queue.add("o1")
        queue.add("o2")
        for i in range(5):
            queue.add(f"u{i}", urgent=True)
        return await drain(queue)

    assert run(test) == ["u0", "u1", "o1", "u2", "u3", "o2", "u4"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "urgent", "get", "done"]), st.integers(0, 4)), max_size=60))
def test_random_operations_keep_the_queue_s_promises(ops: list[tuple[str, int]]) -> None:
    """Against a model: a key is never out twice at once, len counts the keys waiting, and every key
    added is handed out after its last add (none lost, none waiting twice)."""

    async def test() -> None:
        queue: WorkQueue[str] = WorkQueue()
        out: set[str] = set()
        owed: set[str] = set()  # added since last handed out
        for op, n in ops:
            key = f"k{n}"
            if op in ("add", "urgent"):
                queue.add(key, urgent=op == "urgent")
                owed.add(key)
            elif op == "get" and len(queue):
                got, _ = await queue.get()
                assert got not in out
                out.add(got)
                owed.discard(got)
            elif op == "done" and key in out:
                out.discard(key)
                queue.done(key)
            assert len(queue) == len(owed - out)
        for key in sorted(out):
            queue.done(key)
        assert set(await drain(queue)) == owed

    run(test)
