"""Nothing is kept alive: finished tasks, frames, locals."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import types
import weakref
from typing import Any

import async_trace
from async_trace import TraceData, collect_async_trace
from async_trace._chain import CURRENT

from . import process_workers


def _reachable(root: Any, limit: int = 20000) -> list[Any]:
    """Objects reachable from root through gc.get_referents, not entering modules or classes."""
    seen: dict[int, Any] = {}
    stack = [root]
    while stack and len(seen) < limit:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (types.ModuleType, type)):
            continue
        seen[id(obj)] = obj
        stack.extend(gc.get_referents(obj))
    return list(seen.values())


def test_finished_tasks_are_not_kept_alive() -> None:
    """Tasks that created children, ran executor calls or finished are freed like without tracing."""
    refs: list[weakref.ref[Any]] = []

    async def leaf() -> None:
        await asyncio.to_thread(lambda: None)

    async def parent() -> None:
        t = asyncio.create_task(leaf())
        refs.append(weakref.ref(t))
        await t

    async def main() -> None:
        for _ in range(20):
            t = asyncio.create_task(parent())
            refs.append(weakref.ref(t))
            await t
        del t

    asyncio.run(main())
    gc.collect()
    assert [r for r in refs if r() is not None] == []


def test_trace_holds_no_frames() -> None:
    """A collected trace references no frame objects and no coroutine locals."""
    marker = object()

    async def worker(secret: object) -> TraceData:
        local_secret = secret  # noqa: F841 - the local the trace must not reach
        return collect_async_trace()

    async def main() -> TraceData:
        return await asyncio.create_task(worker(marker))

    trace = asyncio.run(main())
    found = _reachable(
        {k: v for k, v in trace.items() if k != "current_task"}
        | {"frames": [{k: v for k, v in f.items() if k != "task"} for f in trace["frames"]]}
    )
    assert not any(isinstance(o, types.FrameType) for o in found)
    assert not any(o is marker for o in found)


def test_nodes_hold_no_tasks_frames_or_locals() -> None:
    """The chain nodes reach no task, frame, coroutine or local variable."""
    marker = object()
    holder: dict[str, Any] = {}

    async def worker(secret: object) -> None:
        local_secret = secret  # noqa: F841
        holder["node"] = CURRENT.get()

    async def main() -> None:
        await asyncio.create_task(worker(marker))

    asyncio.run(main())
    found = _reachable(holder["node"])
    kinds = (types.FrameType, asyncio.Task, types.CoroutineType, asyncio.AbstractEventLoop)
    assert not [o for o in found if isinstance(o, kinds)]
    assert not any(o is marker for o in found)


def test_disable_tracing_lets_go_of_the_program_s_code() -> None:
    """After ``disable_tracing()`` no cache of ours holds a code object of the program.

    A module the program unloads, or code it compiled at run time, is freed
    as without tracing: the capture, collection and process-hop caches are
    emptied when tracing goes off.
    """
    namespace: dict[str, Any] = {"asyncio": asyncio, "collect": collect_async_trace}
    # Code made at run time, as a plugin system or a REPL makes it.
    exec(
        "async def child():\n"
        "    return collect()\n"
        "async def made(pool, double):\n"
        "    await asyncio.create_task(child())\n"
        "    return await asyncio.get_running_loop().run_in_executor(pool, double, 2)\n",
        namespace,
    )
    codes = [weakref.ref(namespace[name].__code__) for name in ("child", "made")]
    with concurrent.futures.ProcessPoolExecutor(1) as pool:

        async def main() -> Any:
            return await asyncio.wait_for(namespace["made"](pool, process_workers.double), 60)

        assert asyncio.run(main()) == 4
    namespace.clear()
    async_trace.disable_tracing()
    try:
        gc.collect()
        assert [ref() for ref in codes] == [None, None]
    finally:
        async_trace.enable_tracing()
