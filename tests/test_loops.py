"""Every loop and framework people use: uvloop, anyio, Runner, threads, debug mode, factories."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

import async_trace
from async_trace import TraceData, collect_async_trace

from .helpers import line_of, rows

uvloop = pytest.importorskip("uvloop")
anyio = pytest.importorskip("anyio")

needs_311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="needs 3.11")
needs_312 = pytest.mark.skipif(sys.version_info < (3, 12), reason="needs 3.12")


def _py(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _uvloop_run(main: Any) -> Any:
    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


async def _leaf() -> TraceData:
    return collect_async_trace()  # leaf


def _thread_leaf() -> TraceData:
    return collect_async_trace()  # thread-leaf


# --- uvloop ---------------------------------------------------------------------


def test_uvloop_tasks() -> None:
    """create_task and gather on uvloop's loop are traced like on asyncio's."""

    async def main() -> tuple[TraceData, list[TraceData]]:
        a = await asyncio.create_task(_leaf(), name="a")  # uv-ct
        b = await asyncio.gather(_leaf(), _leaf())  # uv-gather
        return a, b

    a, b = _uvloop_run(main)
    assert rows(a)[1][:4] == ("main", line_of(main, "uv-ct"), "test_loops.py", "a")
    assert {rows(t)[1][:2] for t in b} == {("main", line_of(main, "uv-gather"))}


@needs_311
def test_uvloop_task_group() -> None:
    """TaskGroup on uvloop is traced."""

    async def main() -> TraceData:
        async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined]
            t = tg.create_task(_leaf())  # uv-tg
        return t.result()

    assert rows(_uvloop_run(main))[1][:2] == ("main", line_of(main, "uv-tg"))


def test_uvloop_executor_hops() -> None:
    """uvloop implements run_in_executor itself; both it and to_thread are traced."""

    async def main() -> tuple[TraceData, TraceData]:
        loop = asyncio.get_running_loop()
        a = await loop.run_in_executor(None, _thread_leaf)  # uv-rie
        b = await asyncio.to_thread(_thread_leaf)  # uv-tt
        return a, b

    a, b = _uvloop_run(main)
    for trace, marker in ((a, "uv-rie"), (b, "uv-tt")):
        assert rows(trace)[:2] == [
            ("_thread_leaf", line_of(_thread_leaf, "thread-leaf"), "test_loops.py", None, False),
            ("main", line_of(main, marker), "test_loops.py", None, True),
        ]
        assert trace["in_executor"] is True


@pytest.mark.parametrize("order", ["uvloop first", "async_trace first"])
def test_uvloop_import_order(order: str) -> None:
    """uvloop is traced whether it is imported before or after async_trace."""
    imports = "import uvloop\nimport async_trace" if order == "uvloop first" else "import async_trace\nimport uvloop"
    out = _py(
        imports
        + """
import asyncio

async def leaf():
    async_trace.print_trace()

async def main():
    await asyncio.create_task(leaf())

uvloop.run(main()) if hasattr(uvloop, "run") else uvloop.new_event_loop().run_until_complete(main())
"""
    )
    assert out.splitlines()[:2] == ["↑ leaf() at line 6 [<string>]", "  ↑ main() at line 9 [<string>]"]


# --- anyio ---------------------------------------------------------------------------


def test_anyio_task_group_and_to_thread() -> None:
    """anyio task groups are traced; in anyio's own worker threads the chain continues (unmarked)."""
    out: dict[str, TraceData] = {}

    async def child() -> None:
        out["task"] = collect_async_trace()
        out["thread"] = await anyio.to_thread.run_sync(_thread_leaf)  # anyio-thread

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(child)  # anyio-spawn

    anyio.run(main, backend="asyncio")
    task_rows = [r[:2] for r in rows(out["task"])]
    assert ("main", line_of(main, "anyio-spawn")) in task_rows
    assert task_rows[0][0] == "child"
    thread_rows = [r[:2] for r in rows(out["thread"])]
    assert thread_rows[0] == ("_thread_leaf", line_of(_thread_leaf, "thread-leaf"))
    assert ("main", line_of(main, "anyio-spawn")) in thread_rows
    # anyio's threads do not go through run_in_executor: not a marked executor hop.
    assert out["thread"]["in_executor"] is False


# --- runners and threads --------------------------------------------------------------


@needs_311
def test_runner_with_loop_factory() -> None:
    """asyncio.Runner(loop_factory=...) is traced, with the stdlib and with uvloop."""

    async def main() -> TraceData:
        return await asyncio.create_task(_leaf())  # runner-spawn

    for factory in (asyncio.new_event_loop, uvloop.new_event_loop):
        with asyncio.Runner(loop_factory=factory) as runner:  # type: ignore[attr-defined]
            trace = runner.run(main())
        assert rows(trace)[1][:2] == ("main", line_of(main, "runner-spawn"))


def test_loops_in_several_threads() -> None:
    """Loops running in threads at once each see only their own chain."""
    results: dict[str, TraceData] = {}
    barrier = threading.Barrier(4)

    async def worker(tag: str) -> None:
        await asyncio.sleep(0)
        barrier.wait(timeout=10)
        results[tag] = collect_async_trace()

    async def main(tag: str) -> None:
        asyncio.current_task().set_name(f"root-{tag}")  # type: ignore[union-attr]
        await asyncio.create_task(worker(tag), name=f"worker-{tag}")

    threads = [threading.Thread(target=asyncio.run, args=(main(str(i)),)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for i in range(4):
        names = [(r[0], r[3]) for r in rows(results[str(i)])]
        assert names == [("worker", None), ("main", f"worker-{i}"), (f"root-{i}", f"root-{i}")]


def test_loop_started_inside_an_executor_thread() -> None:
    """asyncio.run inside a to_thread function: the inner chain continues through the hop."""

    async def inner_child() -> TraceData:
        return collect_async_trace()  # inner-ask

    async def inner_main() -> TraceData:
        return await asyncio.create_task(inner_child(), name="inner-child")  # inner-spawn

    def sync_entry() -> TraceData:
        return asyncio.run(inner_main())  # nested-run

    async def main() -> TraceData:
        asyncio.current_task().set_name("outer-root")  # type: ignore[union-attr]
        return await asyncio.to_thread(sync_entry)  # outer-hop

    trace = asyncio.run(main())
    got = [(r[0], r[1], r[3], r[4]) for r in rows(trace)]
    inner_root = got[2][2]
    assert got == [
        ("inner_child", line_of(inner_child, "inner-ask"), None, False),
        ("inner_main", line_of(inner_main, "inner-spawn"), "inner-child", False),
        ("sync_entry", line_of(sync_entry, "nested-run"), inner_root, False),
        ("main", line_of(main, "outer-hop"), None, True),
        ("outer-root", None, "outer-root", False),
    ]


# --- factories, eager tasks, debug mode ---------------------------------------------------


def test_factory_set_before_enabling() -> None:
    """A factory installed while tracing is off keeps being called once tracing is on."""
    calls = []

    def factory(loop: Any, coro: Any, **kw: Any) -> Any:
        calls.append(1)
        return asyncio.Task(coro, loop=loop, **kw)

    async def main() -> TraceData:
        async_trace.enable_tracing()
        return await asyncio.create_task(_leaf())  # before-spawn

    async_trace.disable_tracing()
    loop = asyncio.new_event_loop()
    loop.set_task_factory(factory)
    try:
        trace = loop.run_until_complete(main())
    finally:
        loop.close()
    assert calls
    assert rows(trace)[1][:2] == ("main", line_of(main, "before-spawn"))


@needs_312
@pytest.mark.skipif(
    sys.version_info >= (3, 13), reason="uvloop passes eager_start= to the eager factory on 3.13 (fails untraced)"
)
def test_eager_factory_on_uvloop() -> None:
    """eager_task_factory composes with uvloop too: the first step sees the chain."""

    async def main() -> TraceData:
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        t = asyncio.create_task(_leaf())  # eager-uv
        assert t.done()
        return t.result()

    assert rows(_uvloop_run(main))[1][:2] == ("main", line_of(main, "eager-uv"))


def test_debug_mode_traces_and_source_traceback() -> None:
    """In debug mode traces are the same, and creation tracebacks are exactly asyncio's own."""

    async def main() -> tuple[TraceData, Any]:
        t = asyncio.create_task(_leaf())  # debug-spawn
        return await t, t._source_traceback  # type: ignore[attr-defined]

    trace, traced_tb = asyncio.run(main(), debug=True)
    async_trace.disable_tracing()
    _, plain_tb = asyncio.run(main(), debug=True)
    async_trace.enable_tracing()
    assert rows(trace)[1][:2] == ("main", line_of(main, "debug-spawn"))
    # Identical but for the test's own two asyncio.run() lines.
    me = "test_debug_mode_traces_and_source_traceback"
    assert len(traced_tb) == len(plain_tb)
    assert [(e.filename, e.lineno, e.name) for e in traced_tb if e.name != me] == [
        (e.filename, e.lineno, e.name) for e in plain_tb if e.name != me
    ]
    assert (os.path.basename(traced_tb[-2].filename), traced_tb[-2].lineno) == (
        "test_loops.py",
        line_of(main, "debug-spawn"),
    )
