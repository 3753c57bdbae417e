"""A program for tests/test_core_equivalence.py: runs a spawn tree, prints what tracing records.

``python tests/core_program.py '<json>'`` with ``{"tree": [...], "loop": "asyncio"|"uvloop", "factory":
"none"|"eager"|"custom"|"wrapping"|"wrapping_eager"}``. In every leaf it prints the leaf's trace, its raw
chain of nodes (kind, depth, coroutine, frames as (function, line), creator's name) and the note of an
exception raised one ``await`` down and caught there; then the task tree once. Run once with the
compiled core and once with ``ASYNC_TRACE_NO_EXTENSIONS=1``, the output must be the same.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import json
import sys
from typing import Any

import async_trace
from async_trace import _chain, _frames

SPEC = json.loads(sys.argv[1])
Tree = list[tuple[str, Any]]


def chain_lines() -> list[str]:
    lines = []
    node = _chain.CURRENT.get()
    while node is not None:
        code = node.code
        frames = node.frames
        pairs = [
            (getattr(frames[i], "co_name", None), _frames.line_at(frames[i], frames[i + 1]) if frames[i] else None)  # type: ignore[arg-type]
            for i in range(0, len(frames), 2)
        ]
        creator = node.creator
        lines.append(
            f"  {type(node).__name__} depth={node.depth} code={getattr(code, 'co_name', None)} "
            f"frames={pairs} creator={creator.get_name() if creator is not None else None}"
        )
        node = node.parent
    return lines


def tree_entry() -> list[str]:
    """The running task's entry in the task tree, and the path to it (the rest runs concurrently)."""
    me = asyncio.current_task()
    path: list[str] = []

    def find(entries: Any) -> Any:
        for entry in entries:
            if entry.task is me:
                return entry
            found = find(entry.children)
            if found is not None:
                path.append(f"{entry.name} {entry.origin}")
                return found
        return None

    entry = find(async_trace.task_tree().roots)
    if entry is None:
        return ["tree: not listed (an eager task in its first step)"]
    created = [f"{f['name']}:{f['line']}" for f in entry.created_at]
    return [f"tree: {' > '.join(reversed(path))} > {entry.name} {entry.state} {entry.origin} {created}"]


async def fails(path: str) -> None:
    raise ValueError(path)


class Run:
    def __init__(self, pool: concurrent.futures.ThreadPoolExecutor) -> None:
        self.pool = pool
        self.out: list[str] = []

    async def node(self, tree: Tree, path: str, *, new_task: bool) -> None:
        if new_task:
            task = asyncio.current_task()
            assert task is not None
            task.set_name("t" + path)
        if not tree:
            lines = [f"leaf {path}:", *async_trace.format_trace(library_frames="show"), *chain_lines()]
            try:
                await fails(path)
            except ValueError as exc:
                lines += [line for line in async_trace.format_exception(exc) if "File" not in line]
            lines += tree_entry()
            self.out.append("".join(line if line.endswith("\n") else line + "\n" for line in lines))
            return
        for i, (edge, sub) in enumerate(tree):
            await getattr(self, "via_" + edge)(sub, f"{path}.{i}")

    async def via_create_task(self, sub: Tree, path: str) -> None:
        await asyncio.create_task(self.node(sub, path, new_task=True))

    async def via_gather(self, sub: Tree, path: str) -> None:
        await asyncio.gather(self.node(sub, path, new_task=True), self.node([], path + "g", new_task=True))

    async def via_ensure_future(self, sub: Tree, path: str) -> None:
        await asyncio.ensure_future(self.node(sub, path, new_task=True))

    async def via_loop_create_task(self, sub: Tree, path: str) -> None:
        await asyncio.get_running_loop().create_task(self.node(sub, path, new_task=True), name="named")

    async def via_task_group(self, sub: Tree, path: str) -> None:
        async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined]
            for k in range(2):
                tg.create_task(self.node(sub, f"{path}:{k}", new_task=True))

    async def via_eager_start(self, sub: Tree, path: str) -> None:
        await asyncio.create_task(self.node(sub, path, new_task=True), eager_start=True)  # type: ignore[call-arg]

    async def via_task_direct(self, sub: Tree, path: str) -> None:
        # Built with asyncio.Task(...), as aiohttp does: traced by the registration hook (3.10-3.13).
        await asyncio.Task(self.node(sub, path, new_task=True))

    async def via_task_direct_eager(self, sub: Tree, path: str) -> None:
        # Built directly and started eagerly, as aiohttp builds its handler tasks (3.12+): what its
        # first step creates finds its creator's node in its context, repaired by the wrappers.
        loop = asyncio.get_running_loop()
        await asyncio.Task(self.node(sub, path, new_task=True), loop=loop, eager_start=True)  # type: ignore[call-arg]

    async def via_create_task_deep(self, sub: Tree, path: str) -> None:
        # Asked for 70 calls down, past max_frames (64): the creating stack is elided alike.
        await deeper(70, lambda: asyncio.create_task(self.node(sub, path, new_task=True)))

    async def via_executor_deep(self, sub: Tree, path: str) -> None:
        loop = asyncio.get_running_loop()
        await deeper(70, lambda: loop.run_in_executor(self.pool, self.in_thread, loop, sub, path))

    async def via_create_task_context(self, sub: Tree, path: str) -> None:
        # A context of the caller's (3.11+): the node is set in it, the task runs in exactly it.
        ctx = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        await loop.create_task(self.node(sub, path, new_task=True), context=ctx)  # type: ignore[call-arg]

    async def via_call_soon(self, sub: Tree, path: str) -> None:
        # Created by a callback of this task, where no task runs (as uvicorn's protocol creates each
        # request's task), through asyncio's helper: its frame walked, the asking line past it.
        loop = asyncio.get_running_loop()
        made: asyncio.Future[asyncio.Future[None]] = loop.create_future()
        loop.call_soon(lambda: made.set_result(asyncio.ensure_future(self.node(sub, path, new_task=True))))
        await (await made)

    async def via_call_soon_create_task(self, sub: Tree, path: str) -> None:
        loop = asyncio.get_running_loop()
        made: asyncio.Future[asyncio.Task[None]] = loop.create_future()
        loop.call_soon(lambda: made.set_result(loop.create_task(self.node(sub, path, new_task=True), name="cb")))
        await (await made)

    async def via_await(self, sub: Tree, path: str) -> None:
        await self.node(sub, path, new_task=False)

    async def via_executor(self, sub: Tree, path: str) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.pool, self.in_thread, loop, sub, path)

    async def via_to_thread(self, sub: Tree, path: str) -> None:
        await asyncio.to_thread(self.in_thread, asyncio.get_running_loop(), sub, path)

    def in_thread(self, loop: asyncio.AbstractEventLoop, sub: Tree, path: str) -> None:
        asyncio.run_coroutine_threadsafe(self.node(sub, path, new_task=True), loop).result(30)


def deeper(n: int, make: Any) -> Any:
    return deeper(n - 1, make) if n else make()


def custom_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
    return asyncio.Task(coro, loop=loop, **kwargs)


async def wrapped(coro: Any) -> Any:
    return await coro


def wrapping_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
    # As Sentry's asyncio integration does: the task runs another coroutine, which awaits the one given.
    return asyncio.Task(wrapped(coro), loop=loop, **kwargs)


def wrapping_eager_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
    # The same, starting the task eagerly (3.12+): the wrapper's first step runs inside the factory.
    return asyncio.Task(wrapped(coro), loop=loop, **{"eager_start": True, **kwargs})


async def main() -> None:
    loop = asyncio.get_running_loop()
    if SPEC["factory"] == "eager":
        loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    elif SPEC["factory"] == "custom":
        loop.set_task_factory(custom_factory)
    elif SPEC["factory"] == "wrapping":
        loop.set_task_factory(wrapping_factory)
    elif SPEC["factory"] == "wrapping_eager":
        loop.set_task_factory(wrapping_eager_factory)
    # Every thread of a hop blocks until its coroutine (which may hop again) is done: pools big
    # enough for every hop of the tree at once, else they deadlock.
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(64))
    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        run = Run(pool)
        await run.node(SPEC["tree"], "", new_task=False)
    sys.stdout.write("".join(sorted(run.out)))  # concurrent branches finish in any order
    loop.set_task_factory(None)  # uvloop's shutdown passes keywords 3.13's eager factory refuses


if SPEC["loop"] == "uvloop":
    import uvloop

    uvloop.run(main())
else:
    asyncio.run(main())
print(async_trace.implementation, async_trace.internal_errors().count, file=sys.stderr)
