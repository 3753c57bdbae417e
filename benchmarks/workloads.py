"""One benchmark workload, run once in this process: ``python workloads.py WORKLOAD CONTENDER [--quick]``.

Prints one JSON object. Contenders: ``plain`` (async_trace not imported), ``debug``
(``asyncio.run(..., debug=True)``, async_trace not imported), ``async_trace``
(imported, tracing on) and ``async_trace_noexc`` (tracing on, the exception hooks off:
against ``async_trace`` it isolates what the exception origins cost), ``async_trace_eager``
(``enable_tracing(eager_notes=True)``: notes formatted as exceptions leave), ``async_trace_norecord``
(``enable_tracing(record_origins=False)``: no unwind record), ``async_trace_stall`` (tracing
on and the stall watchdog on the loop, threshold 100 ms: against ``async_trace`` it isolates
what the watchdog costs; see benchmarks/stall.py). Timed values are medians
of repetitions inside this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import statistics
import sys
import time
import traceback
import tracemalloc
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

WORKLOAD, CONTENDER = sys.argv[1], sys.argv[2]
QUICK = "--quick" in sys.argv
DEBUG = CONTENDER == "debug"
if CONTENDER == "async_trace":
    import async_trace

    collect = async_trace.collect_async_trace
elif CONTENDER == "async_trace_noexc":
    import async_trace
    from async_trace import _display

    _display.uninstall()  # tracing on, exception hooks (and sys.monitoring) off
    collect = async_trace.collect_async_trace
elif CONTENDER == "async_trace_eager":
    import async_trace

    async_trace.enable_tracing(eager_notes=True)  # notes added as exceptions leave their task (3.12+)
    collect = async_trace.collect_async_trace
elif CONTENDER == "async_trace_norecord":
    import async_trace

    async_trace.enable_tracing(record_origins=False)  # hooks on, no unwind record (3.12+: no sys.monitoring)
    collect = async_trace.collect_async_trace
elif CONTENDER == "async_trace_stall":
    import async_trace

    collect = async_trace.collect_async_trace
elif CONTENDER not in ("plain", "debug"):
    raise SystemExit(f"unknown contender {CONTENDER!r}")

now = time.perf_counter_ns


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    if CONTENDER == "async_trace_stall":
        return asyncio.run(_watched(main))
    return asyncio.run(main(), debug=DEBUG)  # type: ignore[arg-type]


async def _watched(main: Callable[[], Awaitable[Any]]) -> Any:
    """``main()`` with the stall watchdog on its loop (threshold 100 ms: a heartbeat every 25 ms)."""
    with async_trace.watch_stalls(0.1, loop=asyncio.get_running_loop()):
        return await main()


def median_of(reps: int, measure: Callable[[], float]) -> float:
    if DEBUG:
        reps = min(reps, 3)  # debug mode is 15-40x slower; it is here for scale only
    measure()  # warm-up
    return statistics.median(measure() for _ in range(reps))


async def noop() -> None:
    pass


# --- spawning -------------------------------------------------------------------------


def spawn_flat(runner: Callable[[Callable[[], Awaitable[Any]]], Any] = run) -> dict[str, Any]:
    n = 5000 if QUICK else 20000

    async def main() -> float:
        t0 = now()
        tasks = [asyncio.create_task(noop()) for _ in range(n)]
        await asyncio.gather(*tasks)
        return (now() - t0) / n / 1000

    return {"value": median_of(5 if QUICK else 9, lambda: runner(main)), "unit": "us/task"}


def spawn_flat_uvloop() -> dict[str, Any]:
    """``spawn_flat`` on uvloop's loop, whose ``create_task`` is C (the compiled wrapper calls it)."""
    import uvloop

    def run_uvloop(main: Callable[[], Awaitable[Any]]) -> Any:
        if CONTENDER == "async_trace_stall":
            return uvloop.run(_watched(main))
        return uvloop.run(main(), debug=DEBUG)  # type: ignore[arg-type]

    return spawn_flat(run_uvloop)


def spawn_chain() -> dict[str, Any]:
    depth, repeat = 200, 10 if QUICK else 40

    async def link(n: int) -> None:
        if n:
            await asyncio.create_task(link(n - 1))

    async def main() -> float:
        t0 = now()
        for _ in range(repeat):
            await link(depth)
        return (now() - t0) / (depth * repeat) / 1000

    return {"value": median_of(5 if QUICK else 9, lambda: run(main)), "unit": "us/task"}


def spawn_deep_stack() -> dict[str, Any]:
    n = 2000 if QUICK else 10000

    async def deep(level: int) -> float:
        if level:
            return await deep(level - 1)
        t0 = now()
        tasks = [asyncio.create_task(noop()) for _ in range(n)]
        await asyncio.gather(*tasks)
        return (now() - t0) / n / 1000

    async def main() -> float:
        return await deep(28)  # with main and the list comprehension: 30 frames deep

    return {"value": median_of(5 if QUICK else 9, lambda: run(main)), "unit": "us/task"}


def executor() -> dict[str, Any]:
    n = 500 if QUICK else 2000

    def f() -> None:
        return None

    async def main() -> float:
        loop = asyncio.get_running_loop()
        for _ in range(50):
            await loop.run_in_executor(None, f)
        t0 = now()
        for _ in range(n):
            await loop.run_in_executor(None, f)
        return (now() - t0) / n / 1000

    return {"value": median_of(5 if QUICK else 9, lambda: run(main)), "unit": "us/call"}


def _trivial(value: int) -> int:
    return value


def process_executor() -> dict[str, Any]:
    """``run_in_executor(ProcessPoolExecutor)`` per call: pickling both ways, the worker round trip, and our hop.

    One worker, started (by the platform's default start method) before timing, awaited one call at a time.
    """
    import concurrent.futures

    n = 300 if QUICK else 1000
    pool = concurrent.futures.ProcessPoolExecutor(1)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        for i in range(50):
            await loop.run_in_executor(pool, _trivial, i)
        t0 = now()
        for i in range(n):
            await loop.run_in_executor(pool, _trivial, i)
        return (now() - t0) / n / 1000

    try:
        return {"value": median_of(5 if QUICK else 7, lambda: run(main)), "unit": "us/call"}
    finally:
        pool.shutdown()


# --- collection against traceback.extract_stack -------------------------------------------


def collect_at_depth(depth: int) -> dict[str, Any]:
    if CONTENDER != "async_trace":
        raise SystemExit("collect_* workloads only run for the async_trace contender")
    reps = 200 if QUICK else 2000

    async def leaf() -> tuple[float, float]:
        collect()
        traceback.extract_stack()
        ours, theirs = [], []
        for _ in range(15):
            t0 = now()
            for _ in range(reps):
                collect()
            t1 = now()
            for _ in range(reps):
                traceback.extract_stack()
            t2 = now()
            ours.append((t1 - t0) / reps / 1000)
            theirs.append((t2 - t1) / reps / 1000)
        return statistics.median(ours), statistics.median(theirs)

    async def link(n: int) -> tuple[float, float]:
        if n > 1:
            return await asyncio.create_task(link(n - 1))
        return await leaf()

    async def main() -> tuple[float, float]:
        return await link(depth)

    ours, baseline = run(main)
    return {"value": ours, "baseline": baseline, "unit": "us/trace", "vs": "extract_stack"}


# --- memory -----------------------------------------------------------------------------


def memory() -> dict[str, Any]:
    """Bytes per live task (flat spawns and a chain), bytes and tasks left after tasks finish.

    Each part runs in its own event loop, measured from inside it after a warm-up, so that
    the loop's own allocations and what earlier parts free do not count.
    """
    n = 10000

    async def live() -> float:
        ev = asyncio.Event()

        async def waiter() -> None:
            await ev.wait()

        warm = [asyncio.create_task(waiter()) for _ in range(100)]
        await asyncio.sleep(0)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        tasks = [asyncio.create_task(waiter()) for _ in range(n)]
        await asyncio.sleep(0)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        ev.set()
        await asyncio.gather(*warm, *tasks)
        return (after - before) / n

    async def chain_live() -> float:
        ev = asyncio.Event()
        depth = 1000
        started = 0

        async def link(k: int) -> None:
            nonlocal started
            started += 1
            if k:
                await asyncio.create_task(link(k - 1))
            else:
                await ev.wait()

        await asyncio.create_task(asyncio.sleep(0))
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        top = asyncio.create_task(link(depth))
        while started <= depth:
            await asyncio.sleep(0)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        ev.set()
        await top
        return (after - before) / depth

    refs: list[weakref.ref[Any]] = []

    async def finished() -> float:
        await asyncio.gather(*(asyncio.create_task(noop()) for _ in range(100)))
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(n // 10):
            batch = [asyncio.create_task(noop()) for _ in range(10)]
            refs.extend(weakref.ref(t) for t in batch)
            await asyncio.gather(*batch)
        del batch
        gc.collect()
        return (tracemalloc.get_traced_memory()[0] - before) / n

    tracemalloc.start()
    result = {
        "live_bytes_per_task": run(live),
        "chain_bytes_per_task": run(chain_live),
        "retained_bytes_per_task": run(finished),
    }
    gc.collect()
    # Counted once the loop is closed: nothing of asyncio's may hold them any more.
    result["finished_alive"] = sum(r() is not None for r in refs)
    return {**result, "unit": "bytes"}


def respawn() -> dict[str, Any]:
    """A task that creates its successor and ends, for 1,000,000 generations (200,000 quick).

    Reports traced memory after the first tenth and at the end: flat means the chains are capped.
    """
    generations = 200_000 if QUICK else 1_000_000
    early = generations // 10
    marks: dict[str, float] = {}

    async def main() -> None:
        finished = asyncio.Event()

        def generation(n: int) -> Any:
            async def body() -> None:
                if n in (early, generations):
                    gc.collect()
                    marks["early" if n == early else "end"] = tracemalloc.get_traced_memory()[0]
                if n == generations:
                    finished.set()
                    return
                asyncio.get_running_loop().create_task(generation(n + 1))

            return body()

        asyncio.get_running_loop().create_task(generation(1))
        await finished.wait()

    tracemalloc.start()
    t0 = now()
    run(main)
    seconds = (now() - t0) / 1e9
    return {
        "generations": generations,
        "bytes_after_first_tenth": marks["early"],
        "bytes_at_end": marks["end"],
        "growth_bytes": marks["end"] - marks["early"],
        "us_per_generation": seconds * 1e6 / generations,
        "unit": "bytes",
    }


# --- a server-like mix ---------------------------------------------------------------------


def realistic() -> dict[str, Any]:
    requests, in_flight = (500 if QUICK else 2000), 64

    def blocking(x: int) -> int:
        return x + 1

    async def sub(x: int) -> int:
        await asyncio.sleep(0)
        return x

    async def handler(i: int) -> int:
        for _ in range(3):
            await asyncio.sleep(0)
        a, b = await asyncio.gather(sub(i), sub(i + 1))
        return await asyncio.get_running_loop().run_in_executor(None, blocking, a + b)

    async def middleware3(i: int) -> int:
        return await handler(i)

    async def middleware2(i: int) -> int:
        return await middleware3(i)

    async def middleware1(i: int) -> int:
        return await middleware2(i)

    async def main() -> float:
        sem = asyncio.Semaphore(in_flight)

        async def request(i: int) -> int:
            async with sem:
                return await middleware1(i)

        t0 = now()
        await asyncio.gather(*(asyncio.create_task(request(i)) for i in range(requests)))
        return (now() - t0) / requests / 1000

    return {"value": median_of(5 if QUICK else 7, lambda: run(main)), "unit": "us/request"}


# --- exceptions ---------------------------------------------------------------------------


async def _raise3() -> None:
    raise KeyError(1)


async def _raise2() -> None:
    await _raise3()


async def _raise1() -> None:
    await _raise2()


def raise_in_task() -> dict[str, Any]:
    """An exception through three coroutine frames, caught in the same task: never printed."""
    n = 5000 if QUICK else 20000

    async def main() -> float:
        t0 = now()
        for _ in range(n):
            with contextlib.suppress(KeyError):
                await _raise1()
        return (now() - t0) / n / 1000

    return {"value": median_of(5 if QUICK else 9, lambda: run(main)), "unit": "us/exception"}


def _catch3() -> None:
    raise KeyError(1)


def _catch2() -> None:
    _catch3()


def _catch1() -> None:
    try:  # noqa: SIM105 - a bare try/except: contextlib.suppress would add its own cost
        _catch2()
    except KeyError:
        pass


def _raise_catch_loop(n: int) -> float:
    t0 = now()
    for _ in range(n):
        _catch1()
    return (now() - t0) / n / 1000


def raise_catch() -> dict[str, Any]:
    """In a task: raise two plain frames down and catch it, over and over; nothing ever fails."""
    n = 10000 if QUICK else 40000

    async def main() -> float:
        return _raise_catch_loop(n)

    return {"value": median_of(5 if QUICK else 9, lambda: run(main)), "unit": "us/exception"}


def raise_catch_notask() -> dict[str, Any]:
    """The same with no event loop at all: code that never meets asyncio pays too (3.12+ hook)."""
    n = 10000 if QUICK else 40000
    return {"value": median_of(5 if QUICK else 9, lambda: _raise_catch_loop(n)), "unit": "us/exception"}


def task_fails() -> dict[str, Any]:
    """A task that raises, awaited (and the exception caught) by the task that created it."""
    n = 500 if QUICK else 2000

    async def failing() -> None:
        raise ValueError("x")

    async def child() -> None:
        with contextlib.suppress(ValueError):
            await asyncio.create_task(failing())

    async def main() -> float:
        t0 = now()
        for _ in range(n):
            await asyncio.create_task(child())
        return (now() - t0) / n / 1000

    return {"value": median_of(5 if QUICK else 9, lambda: run(main)), "unit": "us/task"}


# --- the task tree ------------------------------------------------------------------------


def tree_10k() -> dict[str, Any]:
    """task_tree() and format_task_tree() over 10,000 live tasks (100 parents x 99 children, waiting).

    Baseline: what one does without async_trace, ``asyncio.all_tasks()`` and ``get_stack()`` of each.
    """
    if CONTENDER != "async_trace":
        raise SystemExit("the tree workload only runs for the async_trace contender")
    parents, children = 100, 99
    reps = 3 if QUICK else 7

    async def main() -> dict[str, float]:
        stop = asyncio.Event()
        ready = asyncio.Semaphore(0)

        async def child() -> None:
            await stop.wait()

        async def parent() -> None:
            for _ in range(children):
                asyncio.create_task(child())  # noqa: RUF006 - they wait on stop
            ready.release()
            await stop.wait()

        tasks = [asyncio.create_task(parent()) for _ in range(parents)]
        for _ in range(parents):
            await ready.acquire()
        await asyncio.sleep(0)
        tree, ours, text, theirs = None, [], [], []
        for _ in range(reps):
            t0 = now()
            tree = async_trace.task_tree()
            t1 = now()
            async_trace.format_task_tree(tree)
            t2 = now()
            [t.get_stack() for t in asyncio.all_tasks()]
            t3 = now()
            ours.append((t1 - t0) / 1e6)
            text.append((t2 - t1) / 1e6)
            theirs.append((t3 - t2) / 1e6)
        assert tree is not None
        assert tree.live_count == 1 + parents * (1 + children), tree.live_count
        stop.set()
        await asyncio.gather(*tasks)
        return {
            "tasks": float(tree.live_count),
            "tree_ms": statistics.median(ours),
            "format_ms": statistics.median(text),
            "baseline_ms": statistics.median(theirs),
        }

    result = run(main)
    return {"value": result["tree_ms"], "baseline": result["baseline_ms"], **result}


WORKLOADS: dict[str, Callable[[], dict[str, Any]]] = {
    "spawn_flat": spawn_flat,
    "spawn_flat_uvloop": spawn_flat_uvloop,
    "spawn_chain": spawn_chain,
    "spawn_deep_stack": spawn_deep_stack,
    "executor": executor,
    "process_executor": process_executor,
    "collect_d1": lambda: collect_at_depth(1),
    "collect_d10": lambda: collect_at_depth(10),
    "collect_d100": lambda: collect_at_depth(100),
    "memory": memory,
    "respawn": respawn,
    "realistic": realistic,
    "raise_in_task": raise_in_task,
    "task_fails": task_fails,
    "raise_catch": raise_catch,
    "raise_catch_notask": raise_catch_notask,
    "task_tree": tree_10k,
}

if __name__ == "__main__":
    print(json.dumps(WORKLOADS[WORKLOAD]()))
