"""Every loop and framework people use: uvloop, anyio, Runner, threads, debug mode, factories."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from typing import Any

import pytest

import async_trace
from async_trace import TraceData, collect_async_trace

from .helpers import line_of, rows, run_python

uvloop = pytest.importorskip("uvloop")
anyio = pytest.importorskip("anyio")

needs_311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="needs 3.11")
needs_312 = pytest.mark.skipif(sys.version_info < (3, 12), reason="needs 3.12")

HERE = "test_loops.py"


def _py(code: str) -> str:
    """Run ``code`` in a fresh interpreter (import order matters); return its stdout."""
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def _script_line(code: str, marker: str) -> int:
    """The 1-based line of ``code`` holding ``# <marker>``."""
    hits = [i for i, text in enumerate(code.splitlines(), 1) if text.endswith(f"# {marker}")]
    assert len(hits) == 1, marker
    return hits[0]


def _uvloop_run(main: Any) -> Any:
    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def _shape(trace: TraceData) -> list[tuple[str, int | None, str | None, bool]]:
    """``(name, line, name of task, is_executor)`` per frame: what a test compares."""
    return [(r[0], r[1], r[3], r[4]) for r in rows(trace)]


async def _leaf() -> TraceData:
    return collect_async_trace()  # leaf


def _thread_leaf() -> TraceData:
    return collect_async_trace()  # thread-leaf


LEAF = ("_leaf", line_of(_leaf, "leaf"), None, False)
THREAD_LEAF = ("_thread_leaf", line_of(_thread_leaf, "thread-leaf"), None, False)


# --- uvloop ---------------------------------------------------------------------


def test_uvloop_create_task() -> None:
    """loop.create_task on uvloop's loop records the creating line, up to the root task."""

    async def main() -> TraceData:
        asyncio.current_task().set_name("root")  # type: ignore[union-attr]
        return await asyncio.create_task(_leaf(), name="a")  # uv-ct

    assert _shape(_uvloop_run(main)) == [
        LEAF,
        ("main", line_of(main, "uv-ct"), "a", False),
        ("root", None, "root", False),
    ]


@pytest.mark.skipif(not hasattr(uvloop, "run"), reason="uvloop.run() is uvloop 0.18+")
def test_uvloop_run_wrapper_is_not_a_frame() -> None:
    """uvloop.run() wraps main() in a coroutine of its own: the trace ends at main(), then the root."""

    async def main() -> TraceData:
        asyncio.current_task().set_name("root")  # type: ignore[union-attr]
        return await asyncio.create_task(_leaf(), name="a")  # uv-run

    assert _shape(uvloop.run(main())) == [
        LEAF,
        ("main", line_of(main, "uv-run"), "a", False),
        ("root", None, "root", False),
    ]


def test_uvloop_gather() -> None:
    """gather on uvloop marks each child with the gather line."""

    async def main() -> list[TraceData]:
        return list(await asyncio.gather(_leaf(), _leaf()))  # uv-gather

    traces = _uvloop_run(main)
    assert [[r[:2] for r in rows(t)[:2]] for t in traces] == [[LEAF[:2], ("main", line_of(main, "uv-gather"))]] * 2


@needs_311
def test_uvloop_task_group() -> None:
    """TaskGroup.create_task on uvloop records the user's line, not taskgroups.py."""

    async def main() -> TraceData:
        async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined]
            t = tg.create_task(_leaf(), name="tg-child")  # uv-tg
        result: TraceData = t.result()
        return result

    assert _shape(_uvloop_run(main))[:2] == [LEAF, ("main", line_of(main, "uv-tg"), "tg-child", False)]


def test_uvloop_run_in_executor() -> None:
    """uvloop's own run_in_executor is traced: the hop is marked and the chain continues."""

    async def main() -> TraceData:
        asyncio.current_task().set_name("root")  # type: ignore[union-attr]
        return await asyncio.get_running_loop().run_in_executor(None, _thread_leaf)  # uv-rie

    trace = _uvloop_run(main)
    assert _shape(trace) == [
        THREAD_LEAF,
        ("main", line_of(main, "uv-rie"), None, True),
        ("root", None, "root", False),
    ]
    assert trace["in_executor"] is True
    assert trace["current_task"] is None


def test_uvloop_to_thread() -> None:
    """asyncio.to_thread on uvloop shows the to_thread line as the executor hop."""

    async def main() -> TraceData:
        asyncio.current_task().set_name("root")  # type: ignore[union-attr]
        return await asyncio.to_thread(_thread_leaf)  # uv-tt

    assert _shape(_uvloop_run(main)) == [
        THREAD_LEAF,
        ("main", line_of(main, "uv-tt"), None, True),
        ("root", None, "root", False),
    ]


_ORDER_SCRIPT = """\
import asyncio
import json
{imports}

def shape(trace):
    return [(f["name"], f["line"], f["is_executor"]) for f in trace["frames"]]

def in_thread():
    return async_trace.collect_async_trace()  # thread

async def leaf():
    return async_trace.collect_async_trace()  # leaf

async def main():
    asyncio.current_task().set_name("root")
    loop = asyncio.get_running_loop()
    a = await loop.create_task(leaf())  # create
    b = (await asyncio.gather(leaf()))[0]  # gather
    c = await loop.run_in_executor(None, in_thread)  # rie
    d = await asyncio.to_thread(in_thread)  # to-thread
    return type(loop).__module__, [shape(t) for t in (a, b, c, d)]

loop = uvloop.new_event_loop()
module, traces = loop.run_until_complete(main())
loop.close()
patched = "create_task" in vars(uvloop.Loop) and "run_in_executor" in vars(uvloop.Loop)
print(json.dumps([module, patched, traces]))
"""


@pytest.mark.parametrize(
    "imports",
    ["import uvloop\nimport async_trace", "import async_trace\nimport uvloop"],
    ids=["uvloop-first", "async_trace-first"],
)
def test_uvloop_import_order(imports: str) -> None:
    """uvloop's tasks and executor hops are traced whether uvloop is imported before or after us."""
    code = _ORDER_SCRIPT.format(imports=imports)

    def at(marker: str) -> int:
        return _script_line(code, marker)

    module, patched, traces = json.loads(_py(code))
    assert module.startswith("uvloop")
    assert patched is True
    assert traces == [
        [["leaf", at("leaf"), False], ["main", at("create"), False], ["root", None, False]],
        [["leaf", at("leaf"), False], ["main", at("gather"), False], ["root", None, False]],
        [["in_thread", at("thread"), False], ["main", at("rie"), True], ["root", None, False]],
        [["in_thread", at("thread"), False], ["main", at("to-thread"), True], ["root", None, False]],
    ]


# --- anyio ---------------------------------------------------------------------------


def test_anyio_start_soon() -> None:
    """anyio's start_soon on the asyncio backend records the user's start_soon line."""
    out: dict[str, TraceData] = {}

    async def child() -> None:
        out["task"] = collect_async_trace()  # anyio-ask

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(child)  # anyio-spawn

    anyio.run(main, backend="asyncio")
    got = rows(out["task"])
    # anyio's own frames between child and main (its task wrapper coroutine,
    # start_soon and its helpers) are shown: they are on the stack, and their
    # names differ between anyio versions, so only the user's frames are pinned.
    assert got[0][:2] == ("child", line_of(child, "anyio-ask"))
    spawn = [r[:2] for r in got].index(("main", line_of(main, "anyio-spawn")))
    # Exactly one task boundary (the child's) between child and main.
    assert [r[3] is not None for r in got[1 : spawn + 1]].count(True) == 1
    # Outermost: the root task anyio.run made, with no creation line.
    assert got[-1][1] is None
    assert got[-1][3] is not None


def test_anyio_to_thread_run_sync() -> None:
    """anyio's worker threads (not run_in_executor) are executor hops, marked at the awaiting line."""
    out: dict[str, TraceData] = {}

    async def child() -> None:
        out["thread"] = await anyio.to_thread.run_sync(_thread_leaf)  # anyio-thread

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(child)  # anyio-spawn

    anyio.run(main, backend="asyncio")
    got = [r[:2] for r in rows(out["thread"])]
    assert got[0] == THREAD_LEAF[:2]
    assert ("main", line_of(main, "anyio-spawn")) in got
    # The hop is recorded at the coroutine that awaited to_thread.run_sync (tests/test_apps_anyio.py).
    assert out["thread"]["in_executor"] is True
    assert [r[:2] for r in rows(out["thread"]) if r[4]] == [("child", line_of(child, "anyio-thread"))]


# --- runners and threads --------------------------------------------------------------


@needs_311
@pytest.mark.parametrize("factory", ["asyncio", "uvloop"])
def test_runner_with_loop_factory(factory: str) -> None:
    """asyncio.Runner(loop_factory=...) is traced, with the stdlib's loop and with uvloop's."""

    async def main() -> TraceData:
        asyncio.current_task().set_name("root")  # type: ignore[union-attr]
        return await asyncio.create_task(_leaf(), name="child")  # runner-spawn

    make = asyncio.new_event_loop if factory == "asyncio" else uvloop.new_event_loop
    with asyncio.Runner(loop_factory=make) as runner:  # type: ignore[attr-defined]
        trace = runner.run(main())
        loop_type = type(runner.get_loop())
    assert loop_type.__module__.split(".")[0] == factory
    assert _shape(trace) == [
        LEAF,
        ("main", line_of(main, "runner-spawn"), "child", False),
        ("root", None, "root", False),
    ]


def test_loops_in_several_threads() -> None:
    """Loops running in four threads at once each see only their own chain."""
    results: dict[str, list[TraceData]] = {}
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    async def worker(tag: str) -> TraceData:
        await asyncio.sleep(0)
        return collect_async_trace()  # thread-ask

    async def main(tag: str) -> None:
        asyncio.current_task().set_name(f"root-{tag}")  # type: ignore[union-attr]
        barrier.wait(timeout=30)  # all loops are running from here on
        out = results.setdefault(tag, [])
        for _ in range(200):
            out.append(await asyncio.create_task(worker(tag), name=f"worker-{tag}"))  # thread-spawn

    def run(tag: str) -> None:
        try:
            asyncio.run(main(tag))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(str(i),)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    for i in range(4):
        expected = [
            ("worker", line_of(worker, "thread-ask"), None, False),
            ("main", line_of(main, "thread-spawn"), f"worker-{i}", False),
            (f"root-{i}", None, f"root-{i}", False),
        ]
        shapes = [_shape(t) for t in results[str(i)]]
        assert shapes == [expected] * 200


def test_loop_started_inside_an_executor_thread() -> None:
    """asyncio.run inside a to_thread function: the inner chain continues through the hop."""

    async def inner_child() -> TraceData:
        return collect_async_trace()  # inner-ask

    async def inner_main() -> TraceData:
        asyncio.current_task().set_name("inner-root")  # type: ignore[union-attr]
        return await asyncio.create_task(inner_child(), name="inner-child")  # inner-spawn

    def sync_entry() -> TraceData:
        return asyncio.run(inner_main())  # nested-run

    async def main() -> TraceData:
        asyncio.current_task().set_name("outer-root")  # type: ignore[union-attr]
        return await asyncio.to_thread(sync_entry)  # outer-hop

    assert _shape(asyncio.run(main())) == [
        ("inner_child", line_of(inner_child, "inner-ask"), None, False),
        ("inner_main", line_of(inner_main, "inner-spawn"), "inner-child", False),
        ("sync_entry", line_of(sync_entry, "nested-run"), "inner-root", False),
        ("main", line_of(main, "outer-hop"), None, True),
        ("outer-root", None, "outer-root", False),
    ]


def test_inner_loop_does_not_leak_into_the_outer_loop() -> None:
    """After a nested loop in an executor thread, the outer loop's chains are unchanged."""

    async def inner_main() -> None:
        await asyncio.create_task(asyncio.sleep(0))

    def sync_entry() -> None:
        asyncio.run(inner_main())

    async def main() -> tuple[TraceData, TraceData]:
        asyncio.current_task().set_name("outer-root")  # type: ignore[union-attr]
        before = collect_async_trace()  # outer-ask
        await asyncio.to_thread(sync_entry)
        after = await asyncio.create_task(_leaf(), name="after")  # outer-spawn
        return before, after

    before, after = asyncio.run(main())
    assert _shape(before) == [
        ("main", line_of(main, "outer-ask"), None, False),
        ("outer-root", None, "outer-root", False),
    ]
    assert _shape(after) == [
        LEAF,
        ("main", line_of(main, "outer-spawn"), "after", False),
        ("outer-root", None, "outer-root", False),
    ]


# --- task factories and eager tasks --------------------------------------------------------


def _counting_factory(calls: list[str]) -> Any:
    def factory(loop: Any, coro: Any, **kwargs: Any) -> Any:
        calls.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    return factory


def test_factory_set_before_enabling() -> None:
    """A factory installed while tracing is off keeps being called once tracing is on."""
    calls: list[str] = []

    async def main() -> TraceData:
        async_trace.enable_tracing()
        asyncio.current_task().set_name("root")  # type: ignore[union-attr]
        return await asyncio.create_task(_leaf(), name="child")  # before-spawn

    async_trace.disable_tracing()
    loop = asyncio.new_event_loop()
    loop.set_task_factory(_counting_factory(calls))
    try:
        trace = loop.run_until_complete(main())
    finally:
        loop.close()
    assert calls == [main.__qualname__, _leaf.__qualname__]
    # main was created untraced: it is the root of what we know.
    assert _shape(trace) == [
        LEAF,
        ("main", line_of(main, "before-spawn"), "child", False),
        ("root", None, "root", False),
    ]


def test_factory_set_after_enabling() -> None:
    """A factory installed while tracing is on is called for every task, and tasks are traced."""
    calls: list[str] = []

    async def main() -> TraceData:
        asyncio.current_task().set_name("root")  # type: ignore[union-attr]
        loop = asyncio.get_running_loop()
        loop.set_task_factory(_counting_factory(calls))
        try:
            return await asyncio.create_task(_leaf(), name="child")  # after-spawn
        finally:
            loop.set_task_factory(None)  # asyncio.run's shutdown makes tasks too

    assert _shape(asyncio.run(main())) == [
        LEAF,
        ("main", line_of(main, "after-spawn"), "child", False),
        ("root", None, "root", False),
    ]
    assert calls == [_leaf.__qualname__]


def test_factory_set_after_enabling_on_uvloop() -> None:
    """On uvloop, a user's task factory is called too, and tasks are traced."""
    calls: list[str] = []

    async def main() -> TraceData:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(_counting_factory(calls))
        try:
            return await asyncio.create_task(_leaf(), name="child")  # uv-factory
        finally:
            loop.set_task_factory(None)

    assert _shape(_uvloop_run(main))[:2] == [LEAF, ("main", line_of(main, "uv-factory"), "child", False)]
    assert calls == [_leaf.__qualname__]


@needs_312
def test_eager_task_factory() -> None:
    """With eager_task_factory, the eager first step and later steps see the same chain."""
    seen: list[TraceData] = []

    async def child() -> str:
        seen.append(collect_async_trace())  # eager-first
        await asyncio.sleep(0)
        seen.append(collect_async_trace())  # eager-later
        return "done"

    async def main() -> str:
        asyncio.current_task().set_name("root")  # type: ignore[union-attr]
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        t = asyncio.create_task(child(), name="eager")  # eager-spawn
        assert len(seen) == 1  # the first step ran inside create_task
        return await t

    assert asyncio.run(main()) == "done"
    spawn = ("main", line_of(main, "eager-spawn"), "eager", False)
    root = ("root", None, "root", False)
    first, later = (_shape(t) for t in seen)
    assert first == [("child", line_of(child, "eager-first"), None, False), spawn, root]
    assert later == [("child", line_of(child, "eager-later"), None, False), spawn, root]


@needs_312
def test_eager_task_that_finishes_in_create_task() -> None:
    """An eager task that completes during create_task is traced and leaves the creator's context alone."""
    from async_trace._chain import CURRENT

    async def main() -> tuple[TraceData, bool]:
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        before = CURRENT.get()
        t = asyncio.create_task(_leaf(), name="eager")  # eager-done
        unchanged = CURRENT.get() is before
        assert t.done()
        return t.result(), unchanged

    trace, unchanged = asyncio.run(main())
    assert unchanged
    assert _shape(trace)[:2] == [LEAF, ("main", line_of(main, "eager-done"), "eager", False)]


needs_314 = pytest.mark.skipif(sys.version_info < (3, 14), reason="create_task passes eager_start= from 3.14")


@needs_314
def test_create_task_eager_start_keyword() -> None:
    """3.14+ ``create_task(..., eager_start=)`` (as aiohttp calls it): traced like any creation, eager or not."""
    seen: list[dict[str, Any]] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        seen.append(kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def main() -> list[tuple[TraceData, bool]]:
        eager = asyncio.create_task(_leaf(), eager_start=True, name="eager")  # type: ignore[call-arg]  # eager-kw
        started = eager.done()
        lazy = asyncio.get_running_loop().create_task(_leaf(), eager_start=False)  # type: ignore[call-arg]  # lazy-kw
        out = [(await eager, started), (await lazy, lazy.done())]
        asyncio.get_running_loop().set_task_factory(factory)
        made = asyncio.create_task(_leaf(), eager_start=True)  # type: ignore[call-arg]  # factory-kw
        return [*out, (await made, made.done())]

    (eager, started), (lazy, _), (made, _) = asyncio.run(main())
    assert started
    assert _shape(eager)[:2] == [LEAF, ("main", line_of(main, "eager-kw"), "eager", False)]
    assert [r[1] for r in _shape(eager)[2:]] == [None]  # then the root
    assert _shape(lazy)[1][:2] == ("main", line_of(main, "lazy-kw"))
    assert _shape(made)[1][:2] == ("main", line_of(main, "factory-kw"))
    # The factory got the caller's keyword (then asyncio.run's own shutdown tasks, without it).
    assert seen[0].get("eager_start") is True


@needs_312
def test_eager_grandchild() -> None:
    """A task created during an eager first step chains to the eager task's creation line."""

    async def child() -> TraceData:
        return await asyncio.create_task(_leaf(), name="grandchild")  # eager-inner

    async def main() -> TraceData:
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        return await asyncio.create_task(child(), name="child")  # eager-outer

    assert [s[:3] for s in _shape(asyncio.run(main()))[:3]] == [
        LEAF[:3],
        ("child", line_of(child, "eager-inner"), "grandchild"),
        ("main", line_of(main, "eager-outer"), "child"),
    ]


def _eager_on_uvloop_error() -> tuple[type[BaseException], str] | None:
    """The error uvloop's create_task gives with eager_task_factory set, or ``None`` if it works."""

    async def main() -> None:
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        coro = _leaf()
        try:
            await asyncio.create_task(coro)
        finally:
            coro.close()

    try:
        _uvloop_run(main)
    except TypeError as exc:
        return type(exc), str(exc)
    return None


@needs_312
def test_eager_factory_on_uvloop() -> None:
    """eager_task_factory composes with uvloop: the first step sees the chain, or fails exactly as untraced.

    uvloop 0.23 on 3.13 passes ``eager_start=`` to the factory, which 3.13's
    eager_task_factory refuses; on 3.12 the pair starts tasks eagerly, on 3.14+ lazily.
    """
    async_trace.disable_tracing()
    try:
        plain = _eager_on_uvloop_error()
    finally:
        async_trace.enable_tracing()
    if plain is not None:
        assert "eager_start" in plain[1]
        assert _eager_on_uvloop_error() == plain
        return

    async def main() -> TraceData:
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        t = asyncio.create_task(_leaf())  # eager-uv
        # uvloop runs the first step eagerly on 3.12, lazily on 3.14+ (untraced alike).
        assert t.done() is (sys.version_info < (3, 13))
        return await t

    assert rows(_uvloop_run(main))[1][:2] == ("main", line_of(main, "eager-uv"))


# --- debug mode -------------------------------------------------------------------------


async def _debug_main() -> TraceData:
    asyncio.current_task().set_name("root")  # type: ignore[union-attr]
    inner = await asyncio.create_task(_leaf(), name="child")  # debug-spawn
    assert _shape(inner)[1] == ("_debug_main", line_of(_debug_main, "debug-spawn"), "child", False)
    return await asyncio.to_thread(_thread_leaf)  # debug-hop


@pytest.mark.parametrize("debug", [False, True])
def test_debug_mode_traces_are_identical(debug: bool) -> None:
    """asyncio.run(debug=True) gives exactly the traces of normal mode."""
    assert _shape(asyncio.run(_debug_main(), debug=debug)) == [
        THREAD_LEAF,
        ("_debug_main", line_of(_debug_main, "debug-hop"), None, True),
        ("root", None, "root", False),
    ]


def test_debug_mode_source_traceback_ends_at_the_creating_line() -> None:
    """In debug mode a task's _source_traceback[-1] is the user's loop.create_task line."""

    async def main() -> Any:
        t = asyncio.get_running_loop().create_task(asyncio.sleep(0))  # debug-create
        await t
        return t._source_traceback  # type: ignore[attr-defined]

    tb = asyncio.run(main(), debug=True)
    assert (os.path.basename(tb[-1].filename), tb[-1].name, tb[-1].lineno) == (
        HERE,
        "main",
        line_of(main, "debug-create"),
    )
    assert not [e for e in tb if "async_trace" in e.filename]


def test_debug_mode_source_tracebacks_match_untraced() -> None:
    """Debug-mode creation tracebacks of tasks and executor futures are asyncio's own, entry for entry."""

    async def main() -> tuple[Any, Any]:
        t = asyncio.create_task(asyncio.sleep(0))
        await t
        fut = asyncio.get_running_loop().run_in_executor(None, int)
        await fut
        return t._source_traceback, fut._source_traceback  # type: ignore[attr-defined]

    def entries(tb: Any) -> list[tuple[str, int | None, str]]:
        # The test function's own line differs between the two runs.
        me = "test_debug_mode_source_tracebacks_match_untraced"
        return [(e.filename, e.lineno, e.name) for e in tb if e.name != me]

    traced = asyncio.run(main(), debug=True)
    async_trace.disable_tracing()
    try:
        plain = asyncio.run(main(), debug=True)
    finally:
        async_trace.enable_tracing()
    assert [entries(tb) for tb in traced] == [entries(tb) for tb in plain]
