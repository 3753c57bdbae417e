"""Bounded under load: long-lived respawning loops, many tasks, no retained loops."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
import weakref
from typing import Any

import async_trace
from async_trace import TraceData, collect_async_trace


def test_self_respawning_task_keeps_memory_flat() -> None:
    """A task that creates its successor and ends, for 200,000 generations: memory stays flat."""
    generations = 200_000
    marks: dict[int, int] = {}
    last: dict[str, TraceData] = {}
    done = asyncio.Event

    async def main() -> None:
        finished = done()

        def generation(n: int) -> Any:
            async def body() -> None:
                if n in (50_000, generations):
                    gc.collect()
                    marks[n] = tracemalloc.get_traced_memory()[0]
                if n == generations:
                    last["trace"] = collect_async_trace()
                    finished.set()
                    return
                asyncio.get_running_loop().create_task(generation(n + 1))

            return body()

        asyncio.get_running_loop().create_task(generation(1))
        await finished.wait()

    tracemalloc.start()
    try:
        asyncio.run(main())
    finally:
        tracemalloc.stop()
    growth = marks[generations] - marks[50_000]
    assert growth < 64 * 1024, f"memory grew by {growth} bytes over 150,000 generations"
    names = [f["name"] for f in last["trace"]["frames"]]
    assert any("task hops elided" in name for name in names)
    assert len(names) <= async_trace._chain.DEFAULT_MAX_DEPTH * 2


def test_many_concurrent_tasks_add_little_memory() -> None:
    """20,000 tasks waiting at once hold at most a few hundred bytes each more than untraced."""

    async def measure() -> float:
        ev = asyncio.Event()

        async def waiter() -> None:
            await ev.wait()

        warm = [asyncio.create_task(waiter()) for _ in range(50)]
        await asyncio.sleep(0)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        tasks = [asyncio.create_task(waiter()) for _ in range(20_000)]
        await asyncio.sleep(0)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        ev.set()
        await asyncio.gather(*warm, *tasks)
        return (after - before) / 20_000

    tracemalloc.start()
    try:
        async_trace.disable_tracing()
        plain = asyncio.run(measure())
        async_trace.enable_tracing()
        traced = asyncio.run(measure())
    finally:
        tracemalloc.stop()
    assert traced - plain <= 400, f"{traced - plain:.0f} bytes per task above plain asyncio"


def test_closed_loops_are_not_retained() -> None:
    """A loop that ran traced tasks and executor hops is freed once closed."""
    refs: list[weakref.ref[Any]] = []

    async def main() -> None:
        refs.append(weakref.ref(asyncio.get_running_loop()))
        await asyncio.create_task(asyncio.sleep(0))
        await asyncio.to_thread(collect_async_trace)

    for _ in range(3):
        asyncio.run(main())
    gc.collect()
    assert [r for r in refs if r() is not None] == []
