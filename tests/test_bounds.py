"""Bounded under load: respawning tasks, deep stacks, many tasks; nothing finished is retained."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import re
import threading
import tracemalloc
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import async_trace
from async_trace import TraceData, _config, collect_async_trace

uvloop = pytest.importorskip("uvloop")

KiB = 1024
#: The issue's bound: "a fixed few hundred bytes" per task above plain asyncio.
PER_TASK_BOUND = 400

_HOPS = re.compile(r"^\.\.\. (\d+) task hops? elided \.\.\.$")
_FRAMES = re.compile(r"^\.\.\. (\d+) frames? elided \.\.\.$")


def _markers(trace: TraceData, pattern: re.Pattern[str]) -> list[int]:
    """The counts of the elision markers matching ``pattern``, innermost first."""
    return [int(m.group(1)) for f in trace["frames"] if f["line"] is None and (m := pattern.match(f["name"]))]


# --- a self-respawning task ------------------------------------------------------------


def _respawn(generations: int, marks_at: tuple[int, ...] = ()) -> tuple[dict[int, int], TraceData]:
    """Run a task that creates its successor and ends, ``generations`` times.

    Returns the traced memory (after a gc) when generation ``n`` in
    ``marks_at`` starts, and the trace collected by the last generation.
    """
    marks: dict[int, int] = {}
    last: dict[str, TraceData] = {}

    async def main() -> None:
        asyncio.current_task().set_name("root")  # type: ignore[union-attr]
        finished = asyncio.Event()
        loop = asyncio.get_running_loop()

        async def generation(n: int) -> None:
            if n in marks_at:
                gc.collect()
                marks[n] = tracemalloc.get_traced_memory()[0]
            if n == generations:
                last["trace"] = collect_async_trace()
                finished.set()
                return
            loop.create_task(generation(n + 1))

        loop.create_task(generation(1))
        await finished.wait()

    asyncio.run(main())
    return marks, last["trace"]


@pytest.fixture(scope="module")
def respawned() -> tuple[int, TraceData]:
    """200,000 generations under tracemalloc: memory growth from 50k to 200k, and the last trace."""
    tracemalloc.start()
    try:
        marks, trace = _respawn(200_000, marks_at=(50_000, 200_000))
    finally:
        tracemalloc.stop()
    return marks[200_000] - marks[50_000], trace


def test_self_respawning_task_keeps_memory_flat(respawned: tuple[int, TraceData]) -> None:
    """Over 150,000 generations of a self-respawning task, traced memory grows by less than 64 KiB."""
    growth, _ = respawned
    assert growth < 64 * KiB, f"memory grew by {growth} bytes from generation 50,000 to 200,000"


def test_self_respawning_task_trace_is_capped(respawned: tuple[int, TraceData]) -> None:
    """The last generation's trace keeps at most max_depth hops and shows how many it elided."""
    _, trace = respawned
    frames = trace["frames"]
    assert len(frames) <= _config.DEFAULT_MAX_DEPTH
    assert [f["name"] for f in frames if f["line"] is None][-1] == "root"
    (elided,) = _markers(trace, _HOPS)
    # Every hop is accounted for: the ones shown (one frame each: the line in
    # generation() or main() that created the next task) plus the elided ones.
    shown = [f for f in frames[1:] if f["line"] is not None]
    assert {f["name"] for f in shown} == {"generation", "main"}
    assert len(shown) + elided == 200_000


def test_configured_max_depth_caps_the_chain() -> None:
    """enable_tracing(max_depth=16) keeps at most 16 hops of a 2,000-generation chain; the rest is counted."""
    async_trace.enable_tracing(max_depth=16)
    _, trace = _respawn(2_000)
    frames = trace["frames"]
    assert len(frames) <= 16 + 2  # the hops, the caller's own frame and the root
    (elided,) = _markers(trace, _HOPS)
    shown = [f for f in frames[1:] if f["line"] is not None]
    assert len(shown) + elided == 2_000


# --- deep stacks -----------------------------------------------------------------------


def _deep_trace(depth: int) -> TraceData:
    """The trace of a task created ``depth`` sync frames below its creator's coroutine."""

    async def leaf() -> TraceData:
        return collect_async_trace()

    def recurse(n: int) -> asyncio.Task[TraceData]:
        if n == 0:
            return asyncio.get_running_loop().create_task(leaf())
        return recurse(n - 1)

    async def main() -> TraceData:
        return await recurse(depth)

    return asyncio.run(main())


@pytest.mark.parametrize("max_frames", [None, 8])
def test_deep_creation_stack_obeys_max_frames(max_frames: int | None) -> None:
    """A task created 150 frames deep keeps at most max_frames frames of that hop, and counts the rest."""
    if max_frames is not None:
        async_trace.enable_tracing(max_frames=max_frames)
    limit = max_frames or _config.DEFAULT_MAX_FRAMES
    trace = _deep_trace(150)
    hop = [f for f in trace["frames"][1:-1]]  # between leaf() and the root
    (elided,) = _markers(trace, _FRAMES)
    real = [f for f in hop if f["line"] is not None]
    assert len(real) == limit
    # recurse(150) ... recurse(0) and main(): 152 frames in all.
    assert len(real) + elided == 152
    assert (real[0]["name"], real[-1]["name"]) == ("recurse", "main")


# --- many tasks at once -------------------------------------------------------------------


def _per_task_bytes(spawn: Callable[[asyncio.Event], Coroutine[Any, Any, list[asyncio.Task[Any]]]]) -> float:
    """Traced bytes held per live task created by ``spawn``, all waiting on one Event."""

    async def measure() -> float:
        ev = asyncio.Event()
        warm = await spawn(ev)  # first-use allocations (caches, free lists) out of the way
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        tasks = await spawn(ev)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        ev.set()
        await asyncio.gather(*warm, *tasks)
        return (after - before) / len(tasks)

    return asyncio.run(measure())


def _overhead(spawn: Callable[[asyncio.Event], Coroutine[Any, Any, list[asyncio.Task[Any]]]]) -> float:
    """Bytes per task with tracing on minus bytes per task with it off, same workload."""
    tracemalloc.start()
    try:
        async_trace.disable_tracing()
        try:
            plain = _per_task_bytes(spawn)
        finally:
            async_trace.enable_tracing()
        traced = _per_task_bytes(spawn)
    finally:
        tracemalloc.stop()
    return traced - plain


async def _waiter(ev: asyncio.Event) -> None:
    await ev.wait()


async def _siblings(ev: asyncio.Event) -> list[asyncio.Task[Any]]:
    """20,000 tasks created from one line of one task."""
    tasks = [asyncio.create_task(_waiter(ev)) for _ in range(20_000)]
    await asyncio.sleep(0)  # all of them started and waiting
    return tasks


async def _cousins(ev: asyncio.Event) -> list[asyncio.Task[Any]]:
    """10,000 tasks each creating one waiting child: 20,000 tasks, 10,000 distinct chains."""

    async def parent() -> None:
        child = asyncio.create_task(_waiter(ev))
        await ev.wait()
        await child

    tasks = [asyncio.create_task(parent()) for _ in range(10_000)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    children = [t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__qualname__", "") == "_waiter"]
    return [*tasks, *children]


def test_many_sibling_tasks_hold_little_memory() -> None:
    """20,000 waiting sibling tasks hold at most 400 bytes each above plain asyncio."""
    overhead = _overhead(_siblings)
    assert overhead <= PER_TASK_BOUND, f"{overhead:.0f} bytes per task above plain asyncio"


def test_many_distinct_chains_hold_little_memory() -> None:
    """20,000 waiting tasks with 10,000 distinct creators hold at most 400 bytes each above plain asyncio."""
    overhead = _overhead(_cousins)
    assert overhead <= PER_TASK_BOUND, f"{overhead:.0f} bytes per task above plain asyncio"


# --- nothing finished is retained -------------------------------------------------------------


async def _busy_main() -> None:
    """Tasks, gather, an executor hop and a to_thread hop: every hook runs."""
    await asyncio.create_task(asyncio.sleep(0))
    await asyncio.gather(asyncio.sleep(0), asyncio.sleep(0))
    await asyncio.get_running_loop().run_in_executor(None, collect_async_trace)
    await asyncio.to_thread(collect_async_trace)
    collect_async_trace()


def test_closed_loops_are_not_retained() -> None:
    """A loop that ran traced tasks and executor hops is freed once asyncio.run returns."""
    refs: list[weakref.ref[Any]] = []

    async def main() -> None:
        refs.append(weakref.ref(asyncio.get_running_loop()))
        await _busy_main()

    for _ in range(3):
        asyncio.run(main())
    gc.collect()
    assert len(refs) == 3
    assert [r for r in refs if r() is not None] == []


def test_closed_uvloop_loops_are_not_retained() -> None:
    """A uvloop loop that ran traced tasks and executor hops is freed once closed."""
    refs: list[weakref.ref[Any]] = []

    async def main() -> None:
        refs.append(weakref.ref(asyncio.get_running_loop()))
        await _busy_main()

    for _ in range(3):
        loop = uvloop.new_event_loop()
        loop.run_until_complete(main())
        loop.close()
    del loop
    gc.collect()
    assert len(refs) == 3
    assert [r for r in refs if r() is not None] == []


def test_loops_closed_in_other_threads_are_not_retained() -> None:
    """Loops run (and closed) in other threads are freed once those threads end."""
    refs: list[weakref.ref[Any]] = []

    async def main() -> None:
        refs.append(weakref.ref(asyncio.get_running_loop()))
        await _busy_main()

    threads = [threading.Thread(target=asyncio.run, args=(main(),)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    gc.collect()
    assert len(refs) == 3
    assert [r for r in refs if r() is not None] == []


_loop_var: contextvars.ContextVar[Any] = contextvars.ContextVar("test_bounds.loop")


def test_loop_held_in_a_context_variable_is_not_retained() -> None:
    """A closed loop that user code kept in a ContextVar of a creating task is freed (no creation since)."""
    refs: list[weakref.ref[Any]] = []

    async def child() -> None:
        pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        refs.append(weakref.ref(loop))
        _loop_var.set(loop)  # e.g. a client object bound to "its" loop
        for _ in range(3):  # siblings from one line
            await asyncio.create_task(child())

    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())
    loop.close()
    del loop
    gc.collect()
    assert refs[0]() is None


def test_finished_creator_is_not_retained_by_its_children() -> None:
    """A task that created a still-running child and finished is freed; the child's trace still has its lines."""
    refs: list[weakref.ref[Any]] = []
    local_refs: list[weakref.ref[Any]] = []

    class Local:
        pass

    async def child(ev: asyncio.Event) -> TraceData:
        await ev.wait()
        return collect_async_trace()

    async def parent(ev: asyncio.Event) -> asyncio.Task[TraceData]:
        here = Local()  # a local of the finished creator's frame
        local_refs.append(weakref.ref(here))
        return asyncio.create_task(child(ev), name="child")  # child-spawn

    async def main() -> TraceData:
        asyncio.current_task().set_name("root")  # type: ignore[union-attr]
        ev = asyncio.Event()
        p = asyncio.create_task(parent(ev), name="parent")
        c = await p
        refs.append(weakref.ref(p))
        del p
        # The handle that resumed us still holds the parent until the loop
        # runs its next callback (as without tracing).
        await asyncio.sleep(0)
        gc.collect()
        alive = [r() is not None for r in (*refs, *local_refs)]
        ev.set()
        trace = await c
        assert alive == [False, False]
        return trace

    trace = asyncio.run(main())
    assert [(f["name"], f["task"] is not None) for f in trace["frames"]] == [
        ("child", False),
        ("parent", True),  # the boundary: the (live) child task
        ("main", False),  # the freed parent task: no task object any more
        ("root", True),
    ]
