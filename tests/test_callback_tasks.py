"""Tasks created from callbacks: under the task whose context the callback ran in, cut at the event loop.

What is shown, exactly (docs/guarantees.md): the callback's own frames down to
the loop, then the chain of the task whose context scheduled it. The line that
scheduled the callback (``loop.call_soon(cb)``) is not recorded: that would
take a wrapper on ``call_soon``, which asyncio itself calls for every task step.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

import async_trace
from async_trace import TraceData, _lineage, collect_async_trace

from .apps import shape
from .helpers import line_of, rows

HERE = "test_callback_tasks.py"


def _created(info: Any) -> list[tuple[str, int | None, str]]:
    return [(f["name"], f["line"], os.path.basename(f["filename"] or "")) for f in info.created_at]


def test_call_soon_task_hangs_under_the_scheduling_task() -> None:
    seen: dict[str, Any] = {}

    async def child() -> None:
        seen["trace"] = collect_async_trace()  # capture
        await asyncio.sleep(10)

    def cb() -> None:
        seen["child"] = asyncio.ensure_future(child())  # in-callback

    async def scheduler() -> None:
        asyncio.get_running_loop().call_soon(cb)  # schedule
        for _ in range(100):
            await asyncio.sleep(0)
            if "trace" in seen:
                break
        seen["while_alive"] = async_trace.task_tree()

    async def main() -> None:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        await asyncio.create_task(scheduler(), name="scheduler")  # spawn
        seen["after"] = async_trace.task_tree()
        seen["child"].cancel()

    asyncio.run(main())
    trace: TraceData = seen["trace"]
    assert shape(trace) == [
        ("child", line_of(child, "capture"), HERE, False),
        ("cb", line_of(cb, "in-callback"), HERE, False),
        ("main", line_of(main, "spawn"), HERE, False),
        ("main", None, None, False),
    ]
    child_created = [("cb", line_of(cb, "in-callback"), HERE)]
    alive = seen["while_alive"]
    scheduler_info = alive.find("scheduler")
    (child_info,) = scheduler_info.children
    assert (child_info.state, child_info.origin) == ("pending", "traced")
    # The callback's frames only: the scheduling line (``# schedule``) is not known.
    assert _created(child_info) == child_created
    after = seen["after"]
    (root,) = after.roots
    (placeholder,) = root.children
    assert (placeholder.name, placeholder.state) == (None, "finished")
    assert _created(placeholder) == [("main", line_of(main, "spawn"), HERE)]
    (orphan,) = placeholder.children
    assert _created(orphan) == child_created


def start_uvloop(main: Any) -> Any:
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(main())  # start
    finally:
        loop.close()


def test_uvloop_callback_hop_stops_where_the_loop_was_started() -> None:
    """uvloop runs callbacks from C: the hop stops at the function that started the loop, not below it."""
    pytest.importorskip("uvloop")
    seen: list[TraceData] = []

    async def child() -> None:
        seen.append(collect_async_trace())  # capture

    def cb() -> None:
        asyncio.ensure_future(child())  # in-callback

    async def main() -> None:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        asyncio.get_running_loop().call_soon(cb)
        for _ in range(100):
            await asyncio.sleep(0)
            if seen:
                break

    start_uvloop(main)
    assert shape(seen[0]) == [
        ("child", line_of(child, "capture"), HERE, False),
        ("cb", line_of(cb, "in-callback"), HERE, False),
        ("main", None, None, False),
    ]


def test_a_callback_capture_stops_at_the_loop() -> None:
    """The node of a task created in a callback holds frames down to Handle._run, none beyond."""
    seen: dict[str, Any] = {}

    async def child() -> None:
        pass

    def cb() -> None:
        seen["child"] = asyncio.ensure_future(child())

    async def main() -> None:
        asyncio.get_running_loop().call_soon(cb)
        await asyncio.sleep(0)
        await seen["child"]

    def launcher_inner() -> None:
        asyncio.run(main())

    def launcher_outer() -> None:
        launcher_inner()

    launcher_outer()
    node = _lineage.node_of_task(seen["child"])
    assert node is not None
    codes = node.frames[0::2]
    assert codes[-1] is asyncio.events.Handle._run.__code__
    assert all(c is not launcher_inner.__code__ for c in codes)
    assert all(c is not launcher_outer.__code__ for c in codes)
    assert len(codes) <= 8  # cb, ensure_future/create_task and the loop's own frames


def test_a_trace_taken_in_a_callback_names_the_live_task_that_scheduled_it() -> None:
    """No task runs in a callback: the task whose context scheduled it is found among the loop's tasks.

    Its boundary frame carries the live Task (as in a trace taken inside it), and a
    root is named, not shown as a finished placeholder.
    """
    seen: dict[str, Any] = {}

    def cb(key: str) -> None:
        seen[key] = collect_async_trace()  # in-callback

    async def wait_for(key: str) -> None:
        for _ in range(100):
            await asyncio.sleep(0)
            if key in seen:
                return

    async def scheduler() -> None:
        asyncio.get_running_loop().call_soon(cb, "from child")
        await wait_for("from child")

    async def main() -> None:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        asyncio.get_running_loop().call_soon(cb, "from root")
        await wait_for("from root")
        await asyncio.create_task(scheduler(), name="scheduler")  # spawn

    asyncio.run(main())
    in_callback = ("cb", line_of(cb, "in-callback"), HERE, None, False)
    assert rows(seen["from root"]) == [in_callback, ("main", None, None, "main", False)]
    assert rows(seen["from child"]) == [
        in_callback,
        ("main", line_of(main, "spawn"), HERE, "scheduler", False),
        ("main", None, None, "main", False),
    ]
    assert seen["from child"]["current_task"] is None
