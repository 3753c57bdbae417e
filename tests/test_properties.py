"""Property: in every leaf of a random task tree, the trace is the tree's root-to-leaf path."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from async_trace import TraceData, collect_async_trace

from .helpers import line_of
from .strategies import SpawnTree, spawn_trees

TASK_EDGES = ["create_task", "gather", "ensure_future", "loop_create_task"]
if sys.version_info >= (3, 11):
    TASK_EDGES.append("task_group")
EDGES = [*TASK_EDGES, "await", "executor"]

Tree = SpawnTree
Results = list[tuple[tuple[str, ...], tuple[str, ...], TraceData]]


def trees() -> st.SearchStrategy[Tree]:
    return spawn_trees(EDGES)


class Run:
    """One tree's execution: spawn functions, each with its creation line marked."""

    def __init__(self, pool: concurrent.futures.ThreadPoolExecutor) -> None:
        self.pool = pool
        self.results: Results = []
        self.loop: asyncio.AbstractEventLoop | None = None

    async def node(self, tree: Tree, path: tuple[str, ...], edges: tuple[str, ...], *, new_task: bool) -> None:
        if new_task:
            task = asyncio.current_task()
            assert task is not None
            task.set_name("t" + ".".join(path))
        if not tree:
            self.results.append((path, edges, collect_async_trace()))
            return
        for i, (edge, sub) in enumerate(tree):
            args = (sub, (*path, str(i)), (*edges, edge))
            await getattr(self, "via_" + edge)(*args)

    async def via_create_task(self, *a: Any) -> None:
        await asyncio.create_task(self.node(*a, new_task=True))  # create_task

    async def via_gather(self, *a: Any) -> None:
        await asyncio.gather(self.node(*a, new_task=True))  # gather

    async def via_ensure_future(self, *a: Any) -> None:
        await asyncio.ensure_future(self.node(*a, new_task=True))  # ensure_future

    async def via_loop_create_task(self, *a: Any) -> None:
        await asyncio.get_running_loop().create_task(self.node(*a, new_task=True))  # loop_create_task

    async def via_task_group(self, *a: Any) -> None:
        async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined]
            tg.create_task(self.node(*a, new_task=True))  # task_group

    async def via_await(self, *a: Any) -> None:
        await self.node(*a, new_task=False)  # await

    async def via_executor(self, *a: Any) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.pool, self.in_thread, loop, a)  # executor

    def in_thread(self, loop: asyncio.AbstractEventLoop, a: Any) -> None:
        asyncio.run_coroutine_threadsafe(self.node(*a, new_task=True), loop).result(30)  # submit


def _line(edge: str) -> int:
    return line_of(getattr(Run, "via_" + edge), edge)


Boundary = tuple[str, int, "str | None", bool]


def expected_boundaries(path: tuple[str, ...], edges: tuple[str, ...]) -> list[Boundary]:
    """(function, line, created task's name, is_executor) per boundary, innermost first."""
    out: list[Boundary] = []
    for depth in range(len(edges), 0, -1):
        edge = edges[depth - 1]
        child = "t" + ".".join(path[:depth])
        if edge == "await":
            continue
        if edge == "executor":
            out.append(("in_thread", line_of(Run.in_thread, "submit"), child, False))
            out.append(("via_executor", _line("executor"), None, True))
        else:
            out.append(("via_" + edge, _line(edge), child, False))
    out.append(("root", -1, "root", False))
    return out


def actual_boundaries(trace: TraceData) -> list[Boundary]:
    out: list[Boundary] = []
    for frame in trace["frames"]:
        task = frame["task"]
        if frame["line"] is None:
            assert task is not None
            out.append((frame["name"], -1, task.get_name(), False))
        elif task is not None or frame["is_executor"]:
            name = task.get_name() if task else None
            out.append((frame["name"], frame["line"], name, frame["is_executor"]))
    return out


def _count_leaves(tree: Tree) -> int:
    return 1 if not tree else sum(_count_leaves(sub) for _, sub in tree)


@given(trees())
def test_every_leaf_sees_its_path(tree: Tree) -> None:
    """Task boundaries, creation lines, executor hops and task names match the generated tree."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        run = Run(pool)

        async def main() -> None:
            task = asyncio.current_task()
            assert task is not None
            task.set_name("root")
            await run.node(tree, (), (), new_task=False)

        asyncio.run(main())
    assert len(run.results) == _count_leaves(tree)
    for path, edges, trace in run.results:
        assert actual_boundaries(trace) == expected_boundaries(path, edges)
        names = [f["name"] for f in trace["frames"]]
        assert names[0] == "node"
        assert "<module>" not in names
        assert trace["in_executor"] is False
        # The leaf runs in the task made by the last edge that made one.
        made = [i + 1 for i, e in enumerate(edges) if e != "await"]
        expected_task = "t" + ".".join(path[: made[-1]]) if made else "root"
        assert trace["current_task"] is not None
        assert trace["current_task"].get_name() == expected_task
