"""Tasks built directly with ``asyncio.Task(...)`` are traced like those of ``loop.create_task``."""

from __future__ import annotations

import asyncio
import asyncio.tasks
import sys
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import async_trace
from async_trace import TaskInfo, TraceData, collect_async_trace, task_tree
from async_trace._frames import UNKNOWN_LINE_TEXT

from .helpers import Row, line_of, rows

HERE = "test_direct_tasks.py"
#: 3.10-3.13 register each task in a Python WeakSet: that registration is the hook.
HOOKED = sys.version_info < (3, 14)
REGISTRY_NAME = "_all_tasks" if sys.version_info < (3, 12) else "_scheduled_tasks"
needs_312 = pytest.mark.skipif(sys.version_info < (3, 12), reason="eager_start= is 3.12+")

Coro = Coroutine[Any, Any, TraceData]


async def child() -> TraceData:
    return collect_async_trace()  # capture


async def child_after_await() -> TraceData:
    await asyncio.sleep(0)
    return collect_async_trace()  # capture


def build_plain(coro: Coro) -> asyncio.Task[TraceData]:
    return asyncio.Task(coro, loop=asyncio.get_running_loop())  # build


def build_eager(coro: Coro) -> asyncio.Task[TraceData]:
    return asyncio.Task(coro, loop=asyncio.get_running_loop(), eager_start=True)  # type: ignore[call-arg,unused-ignore]  # build


async def builder(build: Callable[[Coro], asyncio.Task[TraceData]], func: Callable[[], Coro]) -> list[Row]:
    task = build(func())  # call
    trace = await task
    return [*rows(trace), ("name", None, None, task.get_name(), False)]


def _expected(build: Any, func: Any, task_name: str) -> list[Row]:
    own = (func.__name__, line_of(func, "capture"), HERE, None, False)
    if HOOKED or (build is build_eager and func is child):
        # The registration hook (3.10-3.13), or a capture in an eager first step (every version).
        return [
            own,
            (build.__name__, line_of(build, "build"), HERE, task_name, False),
            ("builder", line_of(builder, "call"), HERE, None, False),
        ]
    # 3.14+, no hook: under its creator (here the root task), the line that built it unknown.
    return [own, (UNKNOWN_LINE_TEXT, None, None, None, False)]


def _check(got: list[Row], build: Any, func: Any) -> None:
    *trace, (_, _, _, name, _) = got
    assert name is not None
    expected = _expected(build, func, name)
    assert trace[: len(expected)] == expected
    # Then asyncio.run's root task, and nothing else.
    assert len(trace) == len(expected) + 1
    root, line, filename, root_task, _ = trace[-1]
    assert (line, filename, root_task) == (None, None, root)


FUNCS = pytest.mark.parametrize("func", [child, child_after_await], ids=["first-step", "after-await"])


@FUNCS
def test_task_built_directly_has_its_creation_line(func: Any) -> None:
    """``asyncio.Task(coro, loop=loop)``: the chain runs through the line that built it, to the root.

    3.14+ has no hook: the chain runs through a marker for the unknown line to the creator's chain.
    """
    _check(asyncio.run(builder(build_plain, func)), build_plain, func)


@needs_312
@FUNCS
def test_eager_task_built_directly_has_its_creation_line(func: Any) -> None:
    """``asyncio.Task(coro, loop=loop, eager_start=True)``, as aiohttp builds its tasks on 3.12/3.13."""
    _check(asyncio.run(builder(build_eager, func)), build_eager, func)


async def _wait(event: asyncio.Event) -> None:
    await event.wait()


async def _build_and_look(event: asyncio.Event) -> list[TaskInfo]:
    task = asyncio.Task(_wait(event), loop=asyncio.get_running_loop(), name="direct")  # build-in-tree
    await asyncio.sleep(0)
    tree = task_tree()
    event.set()
    await task
    return list(tree.roots)


def test_task_built_directly_hangs_under_its_creator_in_the_tree() -> None:
    """In task_tree() a task built directly is under the task that built it, on every version."""

    async def main() -> list[TaskInfo]:
        return await asyncio.create_task(_build_and_look(asyncio.Event()), name="builder")

    (root,) = asyncio.run(main())
    (builder_info,) = root.children
    (direct,) = builder_info.children
    assert (builder_info.name, direct.name, direct.origin, direct.state) == ("builder", "direct", "traced", "pending")
    created = [(f["name"], f["line"], f["filename"]) for f in direct.created_at]
    if HOOKED:
        assert created == [("_build_and_look", line_of(_build_and_look, "build-in-tree"), __file__)]
    else:
        assert created == [(UNKNOWN_LINE_TEXT, None, None)]


def test_task_built_directly_while_tracing_was_off_is_a_root() -> None:
    """Built (or created) while tracing was off, a task does not claim its creator's chain, on every version."""

    async def main() -> list[str]:
        async_trace.disable_tracing()
        try:
            task = asyncio.Task(child_after_await(), loop=asyncio.get_running_loop(), name="untraced")
        finally:
            async_trace.enable_tracing()
        return [row[0] for row in rows(await task)]

    assert asyncio.run(main()) == ["child_after_await", "untraced"]


def test_tasks_keep_their_type_and_the_registry_is_restored() -> None:
    """The hook changes no task's type; disable_tracing() puts the registry's class back."""

    async def main() -> tuple[type, bool]:
        t = asyncio.Task(asyncio.sleep(0), loop=asyncio.get_running_loop())
        await t
        return type(t), isinstance(t, asyncio.Task)

    assert asyncio.run(main()) == (asyncio.tasks.Task, True)
    registry = getattr(asyncio.tasks, REGISTRY_NAME)
    async_trace.disable_tracing()
    assert type(registry) is weakref.WeakSet
    async_trace.enable_tracing()
    assert isinstance(registry, weakref.WeakSet)


async def _level(n: int) -> TraceData:
    if n == 0:
        return collect_async_trace()  # capture
    return await asyncio.Task(_level(n - 1), loop=asyncio.get_running_loop())  # recurse


def test_tasks_built_directly_by_the_same_coroutine_function() -> None:
    """A recursion of tasks built directly: each level was built by the one above it.

    3.10-3.13: the registration hook tells the creator's node (the same code) from one made for
    the task. 3.14+ (no hook) cannot: the inherited node looks like the task's own, so the trace
    skips the levels between, to the line that created the outermost (docs/guarantees.md).
    """

    async def main() -> TraceData:
        return await asyncio.create_task(_level(2))  # spawn-level

    got = [row[:3] for row in rows(asyncio.run(main()))]
    levels = [("_level", line_of(_level, "recurse"), HERE)] * 2 if HOOKED else []
    spawn = ("main", line_of(main, "spawn-level"), HERE)
    assert got[:-1] == [("_level", line_of(_level, "capture"), HERE), *levels, spawn]
    assert got[-1][1:] == (None, None)  # the root task
