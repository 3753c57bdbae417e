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
from async_trace import TraceData, collect_async_trace

from .helpers import Row, line_of, rows

HERE = "test_direct_tasks.py"
#: 3.10-3.13 register each task in a Python WeakSet: that registration is the hook.
HOOKED = sys.version_info < (3, 14)
REGISTRY_NAME = "_all_tasks" if sys.version_info < (3, 12) else "_scheduled_tasks"
needs_hook = pytest.mark.skipif(not HOOKED, reason="3.14+: no hook for Task() (C task lists)")
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
    return [
        (func.__name__, line_of(func, "capture"), HERE, None, False),
        (build.__name__, line_of(build, "build"), HERE, task_name, False),
        ("builder", line_of(builder, "call"), HERE, None, False),
    ]


def _check(got: list[Row], build: Any, func: Any) -> None:
    *trace, (_, _, _, name, _) = got
    assert name is not None
    assert trace[:3] == _expected(build, func, name)
    # Then asyncio.run's root task, and nothing else.
    assert len(trace) == 4
    root, line, filename, root_task, _ = trace[3]
    assert (line, filename, root_task) == (None, None, root)


FUNCS = pytest.mark.parametrize("func", [child, child_after_await], ids=["first-step", "after-await"])


@needs_hook
@FUNCS
def test_task_built_directly_has_its_creation_line(func: Any) -> None:
    """``asyncio.Task(coro, loop=loop)``: the chain runs through the line that built it, to the root."""
    _check(asyncio.run(builder(build_plain, func)), build_plain, func)


@needs_hook
@needs_312
@FUNCS
def test_eager_task_built_directly_has_its_creation_line(func: Any) -> None:
    """``asyncio.Task(coro, loop=loop, eager_start=True)``, as aiohttp builds its tasks on 3.12/3.13."""
    _check(asyncio.run(builder(build_eager, func)), build_eager, func)


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
