"""What a trace contains, on every creation path and across executor hops."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import sys
import textwrap
import threading
from typing import Any

import pytest

import async_trace
from async_trace import TraceData, collect_async_trace
from async_trace._frames import UNKNOWN_LINE_TEXT

from .apps import ON_BOTH_LOOPS, run_on
from .helpers import line_of, rows, run_python

F = os.path.basename(__file__)
needs_311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="TaskGroup/Runner need 3.11")
needs_312 = pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks need 3.12")


def run(main: Any) -> Any:
    return asyncio.run(main())


# --- the shape of a trace ---------------------------------------------------------


async def _basic_worker() -> TraceData:
    return collect_async_trace()  # ask


async def _basic_main() -> tuple[TraceData, asyncio.Task[Any], asyncio.Task[Any]]:
    child = asyncio.create_task(_basic_worker())  # spawn
    trace = await child
    root = asyncio.current_task()
    assert root is not None
    return trace, child, root


def test_basic_trace_frames() -> None:
    """The asking frame, the creating line with the child task, the root task; nothing else."""
    trace, child, root = run(_basic_main)
    assert rows(trace) == [
        ("_basic_worker", line_of(_basic_worker, "ask"), F, None, False),
        ("_basic_main", line_of(_basic_main, "spawn"), F, child.get_name(), False),
        (root.get_name(), None, None, root.get_name(), False),
    ]
    assert trace["frames"][1]["task"] is child
    assert trace["frames"][2]["task"] is root
    assert trace["current_task"] is child
    assert trace["in_executor"] is False


def test_trace_dict_shape() -> None:
    """Exactly the documented keys, full paths, indents counting up from 0."""
    trace, _, _ = run(_basic_main)
    assert set(trace) == {"frames", "current_task", "in_executor"}
    for i, frame in enumerate(trace["frames"]):
        assert set(frame) == {"name", "line", "filename", "indent", "task", "is_executor", "is_process", "in_app"}
        assert frame["indent"] == i
    assert trace["frames"][0]["filename"] == __file__
    assert isinstance(trace["frames"][0]["line"], int)


def _sync_helper() -> TraceData:
    return collect_async_trace()  # sync-ask


async def _inner_coro() -> TraceData:
    return _sync_helper()  # call-sync


async def _outer_coro() -> TraceData:
    return await _inner_coro()  # await-inner


async def _own_frames_main() -> tuple[TraceData, Any]:
    return await asyncio.create_task(_outer_coro()), asyncio.current_task()  # spawn-outer


def test_own_frames_include_awaiting_coroutines_and_plain_functions() -> None:
    """Inside one task: the asking function, then every caller up to the task's coroutine."""
    trace, root = run(_own_frames_main)
    assert [r[:2] for r in rows(trace)] == [
        ("_sync_helper", line_of(_sync_helper, "sync-ask")),
        ("_inner_coro", line_of(_inner_coro, "call-sync")),
        ("_outer_coro", line_of(_outer_coro, "await-inner")),
        ("_own_frames_main", line_of(_own_frames_main, "spawn-outer")),
        (root.get_name(), None),
    ]
    assert trace["frames"][3]["task"] is trace["current_task"]


def test_root_task_alone() -> None:
    """In the root task itself: its frames, then the root frame carrying the root task."""

    async def main() -> tuple[TraceData, Any]:
        return collect_async_trace(), asyncio.current_task()  # root-ask

    trace, root = run(main)
    assert rows(trace) == [
        ("main", line_of(main, "root-ask"), F, None, False),
        (root.get_name(), None, None, root.get_name(), False),
    ]
    assert trace["frames"][-1]["task"] is root


def test_no_event_loop_frames_or_module() -> None:
    """No frame comes from asyncio, the event loop, or the code that called asyncio.run."""
    trace, _, _ = run(_basic_main)
    asyncio_dir = os.path.dirname(asyncio.__file__)
    for frame in trace["frames"]:
        assert frame["name"] != "<module>"
        assert not (frame["filename"] or "").startswith(asyncio_dir)
        assert frame["name"] != "test_no_event_loop_frames_or_module"


# --- every creation path ----------------------------------------------------


async def _leaf() -> TraceData:
    return collect_async_trace()  # leaf-capture


def _boundary(trace: TraceData) -> tuple[str, int | None, str | None]:
    name, line, _, task, _ = rows(trace)[1]
    return name, line, task


def test_loop_create_task() -> None:
    """loop.create_task called directly is traced."""

    async def main() -> tuple[TraceData, Any]:
        t = asyncio.get_running_loop().create_task(_leaf(), name="c")  # loop-ct
        return await t, t

    trace, t = run(main)
    assert _boundary(trace) == ("main", line_of(main, "loop-ct"), "c")
    assert trace["frames"][1]["task"] is t


def test_ensure_future() -> None:
    """asyncio.ensure_future of a coroutine is traced at the user's line."""

    async def main() -> TraceData:
        return await asyncio.ensure_future(_leaf())  # ef

    trace = run(main)
    assert _boundary(trace)[:2] == ("main", line_of(main, "ef"))


def test_gather_of_coroutines() -> None:
    """Each coroutine given to gather is a task created at the gather line."""

    async def main() -> tuple[TraceData, ...]:
        return await asyncio.gather(_leaf(), _leaf(), _leaf())  # gather

    traces = run(main)
    lines = {_boundary(t)[:2] for t in traces}
    assert lines == {("main", line_of(main, "gather"))}
    assert len({t["current_task"] for t in traces}) == 3
    for t in traces:
        assert t["frames"][1]["task"] is t["current_task"]


def test_shield_and_wait_for() -> None:
    """shield and wait_for start their task at the user's line."""

    async def main() -> tuple[TraceData, TraceData]:
        a = await asyncio.shield(_leaf())  # shield
        b = await asyncio.wait_for(_leaf(), timeout=10)  # wait_for
        return a, b

    a, b = run(main)
    assert _boundary(a)[:2] == ("main", line_of(main, "shield"))
    # wait_for's own frames (asyncio) between the user's line and the task are dropped.
    assert _boundary(b)[:2] == ("main", line_of(main, "wait_for"))


@needs_311
def test_task_group() -> None:
    """TaskGroup.create_task is traced at the user's line, with the child task."""

    async def main() -> tuple[TraceData, Any]:
        async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined]
            t = tg.create_task(_leaf(), name="tg-child")  # tg
        return t.result(), t

    trace, t = run(main)
    assert _boundary(trace) == ("main", line_of(main, "tg"), "tg-child")
    assert trace["frames"][1]["task"] is t


@needs_311
def test_runner() -> None:
    """asyncio.Runner's main task is the root."""

    async def main() -> TraceData:
        return collect_async_trace()  # runner-ask

    with asyncio.Runner() as runner:  # type: ignore[attr-defined]
        trace = runner.run(main())
    assert rows(trace)[0][:2] == ("main", line_of(main, "runner-ask"))
    assert rows(trace)[-1][1] is None
    assert len(trace["frames"]) == 2


@needs_312
def test_eager_task_factory_first_step_sees_chain() -> None:
    """With eager_task_factory the child's first step (run inside create_task) sees its chain."""

    async def child() -> TraceData:
        return collect_async_trace()  # eager-ask (before any await)

    async def main() -> tuple[TraceData, Any]:
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        t = asyncio.create_task(child())  # eager-spawn
        assert t.done()
        return t.result(), t

    trace, t = run(main)
    assert rows(trace)[:2] == [
        ("child", line_of(child, "eager-ask"), F, None, False),
        ("main", line_of(main, "eager-spawn"), F, t.get_name(), False),
    ]
    assert trace["current_task"] is t


def test_user_task_factory_is_called_and_traced() -> None:
    """A task factory set by the user is still called; its tasks are traced."""
    calls: list[Any] = []

    def factory(loop: Any, coro: Any, **kwargs: Any) -> Any:
        calls.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def main() -> TraceData:
        asyncio.get_running_loop().set_task_factory(factory)
        return await asyncio.create_task(_leaf())  # factory-spawn

    trace = run(main)
    assert [c.__name__ for c in calls][:1] == ["_leaf"]  # then asyncio.run's own shutdown tasks
    assert _boundary(trace)[:2] == ("main", line_of(main, "factory-spawn"))


async def _wrapped_leaf() -> TraceData:
    return collect_async_trace()  # wrapped-capture


async def _wrapped_mid() -> TraceData:
    return await asyncio.create_task(_wrapped_leaf(), name="leaf")  # wrapped-spawn-leaf


def _wrapping_factory(loop: Any, coro: Any, **kwargs: Any) -> Any:
    """A factory that runs each coroutine inside one of its own, as Sentry's asyncio integration does."""

    async def wrapper() -> Any:
        return await coro  # wrapper-await

    return asyncio.Task(wrapper(), loop=loop, **kwargs)


@ON_BOTH_LOOPS
@pytest.mark.parametrize("context_arg", [False, True], ids=["copies-context", "passes-context"])
def test_factory_that_wraps_the_coroutine(context_arg: bool, loop: str) -> None:
    """Each task runs the factory's coroutine, not the one it was created with: its chain is still its own.

    The task's node names the coroutine it runs (it would otherwise be taken for its creator's
    node, a task built where no hook saw it). The wrapper's frame is the task's outermost frame.
    """

    async def main() -> TraceData:
        if context_arg and sys.version_info >= (3, 11):
            factory: Any = functools.partial(_wrapping_factory)  # a factory we cannot tell passes context=
        else:
            factory = _wrapping_factory
        asyncio.get_running_loop().set_task_factory(factory)
        return await asyncio.create_task(_wrapped_mid(), name="mid")  # wrapped-spawn-mid

    trace = run_on(loop, main())
    wrapper = ("wrapper", line_of(_wrapping_factory, "wrapper-await"), F, None, False)
    assert rows(trace)[:-1] == [
        ("_wrapped_leaf", line_of(_wrapped_leaf, "wrapped-capture"), F, None, False),
        wrapper,
        ("_wrapped_mid", line_of(_wrapped_mid, "wrapped-spawn-leaf"), F, "leaf", False),
        wrapper,
        ("main", line_of(main, "wrapped-spawn-mid"), F, "mid", False),
    ]
    assert rows(trace)[-1][1:3] == (None, None)


def _wrapping_eager_factory(loop: Any, coro: Any, **kwargs: Any) -> Any:
    """The same, starting the task eagerly: the wrapper's first step, and the coroutine's, run inside the call."""

    async def wrapper() -> Any:
        return await coro  # eager-wrapper-await

    return asyncio.Task(wrapper(), loop=loop, **{"eager_start": True, **kwargs})


@needs_312
@ON_BOTH_LOOPS
@pytest.mark.parametrize("context_arg", [False, True], ids=["copies-context", "callers-context"])
def test_factory_that_wraps_and_starts_eagerly(context_arg: bool, loop: str) -> None:
    """A first step run inside the factory's call is the new task's: one hop to the creating line.

    With ``context=`` of the caller's the node is set in that context, where the first step runs;
    it is the task's own node, not its creator's (which would add a second hop through the factory).
    """
    import contextvars

    async def main() -> tuple[TraceData, str]:
        running = asyncio.get_running_loop()
        running.set_task_factory(_wrapping_eager_factory)
        try:
            if context_arg:
                ctx = contextvars.copy_context()
                task = running.create_task(_leaf(), context=ctx)  # type: ignore[call-arg]  # ctx-spawn
            else:
                task = running.create_task(_leaf())  # copy-spawn
        finally:
            running.set_task_factory(None)
        return await task, task.get_name()  # 3.13.0 names such a task "None" once create_task returns

    trace, name = run_on(loop, main())
    spawn = line_of(main, "ctx-spawn" if context_arg else "copy-spawn")
    assert rows(trace)[:-1] == [
        ("_leaf", line_of(_leaf, "leaf-capture"), F, None, False),
        ("wrapper", line_of(_wrapping_eager_factory, "eager-wrapper-await"), F, None, False),
        ("main", spawn, F, name, False),
    ]
    assert rows(trace)[-1][1:3] == (None, None)


@ON_BOTH_LOOPS
@pytest.mark.parametrize("how", ["call_soon", "threadsafe"])
def test_factory_under_a_creation_where_no_task_runs(how: str, loop: str) -> None:
    """A task made by a callback (no task runs), through a task factory of the user's: one hop, from its line.

    The factory builds the task itself; the registration hook (3.10-3.13) must take it for the one
    the wrapper is making, not trace it again from the factory's line.
    """

    def factory(loop: Any, coro: Any, **kwargs: Any) -> Any:
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def inner() -> TraceData:
        running = asyncio.get_running_loop()
        if how == "call_soon":
            made = running.create_future()
            running.call_soon(lambda: made.set_result(running.create_task(_leaf())))  # cb-spawn
            return await (await made)  # type: ignore[no-any-return]
        submit = lambda: asyncio.run_coroutine_threadsafe(_leaf(), running).result(10)  # noqa: E731  # ts-spawn
        return await running.run_in_executor(None, submit)  # ts-hop

    async def main() -> TraceData:
        asyncio.get_running_loop().set_task_factory(factory)
        try:
            return await asyncio.create_task(inner())  # inner-spawn
        finally:
            asyncio.get_running_loop().set_task_factory(None)

    trace = run_on(loop, main())
    if how == "call_soon":
        made_at = [("<lambda>", line_of(inner, "cb-spawn"), False)]
    else:
        made_at = [("<lambda>", line_of(inner, "ts-spawn"), False), ("inner", line_of(inner, "ts-hop"), True)]
    expected = [
        ("_leaf", line_of(_leaf, "leaf-capture"), False),
        *made_at,
        ("main", line_of(main, "inner-spawn"), False),
    ]
    assert [(name, line, executor) for name, line, _, _, executor in rows(trace)[:-1]] == expected


def test_legacy_two_argument_factory() -> None:
    """A factory that only takes (loop, coro), as written for 3.10, keeps working."""

    def factory(loop: Any, coro: Any) -> Any:
        return asyncio.Task(coro, loop=loop)

    async def main() -> TraceData:
        asyncio.get_running_loop().set_task_factory(factory)
        return await asyncio.create_task(_leaf())  # legacy-spawn

    assert _boundary(run(main))[:2] == ("main", line_of(main, "legacy-spawn"))


@needs_311
def test_explicit_context_is_the_tasks_context() -> None:
    """create_task(context=ctx) still runs the task in exactly ctx, and traces it."""
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var")

    async def child() -> tuple[TraceData, str]:
        var.set("changed")
        return collect_async_trace(), "ok"

    async def main() -> tuple[TraceData, str]:
        ctx = contextvars.copy_context()
        trace, _ = await asyncio.create_task(child(), context=ctx)  # type: ignore[call-arg]  # 3.11+  # ctx-spawn
        return trace, ctx[var]

    trace, seen = run(main)
    assert seen == "changed"
    assert _boundary(trace)[:2] == ("main", line_of(main, "ctx-spawn"))


def test_create_task_imported_before_async_trace() -> None:
    """`from asyncio import create_task` bound before importing async_trace is traced too."""
    code = textwrap.dedent(
        """
        from asyncio import create_task, run
        import async_trace

        async def leaf():
            async_trace.print_trace()

        async def main():
            await create_task(leaf())

        run(main())
        """
    )
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out == ("↑ leaf() at line 6 [<string>]\n  ↑ main() at line 9 [<string>]\n    ↑ Task-1\n")


# --- executor hops ------------------------------------------------------------


def _in_thread() -> tuple[TraceData, str]:
    return collect_async_trace(), threading.current_thread().name  # thread-ask


def test_run_in_executor_default_pool() -> None:
    """In the worker thread: its frames, the [EXECUTOR] coroutine frame, then the chain."""

    async def main() -> tuple[TraceData, str, Any]:
        loop = asyncio.get_running_loop()
        trace, name = await loop.run_in_executor(None, _in_thread)  # rie
        return trace, name, asyncio.current_task()

    trace, thread_name, root = run(main)
    assert thread_name != threading.main_thread().name
    assert rows(trace) == [
        ("_in_thread", line_of(_in_thread, "thread-ask"), F, None, False),
        ("main", line_of(main, "rie"), F, None, True),
        (root.get_name(), None, None, root.get_name(), False),
    ]
    assert trace["in_executor"] is True
    assert trace["current_task"] is None


def test_run_in_executor_however_the_loop_was_obtained() -> None:
    """The hop is traced whether the loop came from get_running_loop or get_event_loop."""

    async def main() -> list[TraceData]:
        out = []
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            for loop in (asyncio.get_running_loop(), asyncio.get_event_loop()):
                trace, _ = await loop.run_in_executor(pool, _in_thread)  # any-loop
                out.append(trace)
        return out

    for trace in run(main):
        assert rows(trace)[1][:2] == ("main", line_of(main, "any-loop"))
        assert rows(trace)[1][4] is True


def test_to_thread_boundary_is_the_users_line() -> None:
    """asyncio.to_thread: the [EXECUTOR] frame is the caller's line, not asyncio/threads.py."""

    async def worker() -> TraceData:
        trace, _ = await asyncio.to_thread(_in_thread)  # to-thread
        return trace

    async def main() -> TraceData:
        return await asyncio.create_task(worker(), name="w")  # w-spawn

    trace = run(main)
    assert rows(trace)[:3] == [
        ("_in_thread", line_of(_in_thread, "thread-ask"), F, None, False),
        ("worker", line_of(worker, "to-thread"), F, None, True),
        ("main", line_of(main, "w-spawn"), F, "w", False),
    ]
    assert trace["in_executor"] is True


def _square(x: int) -> int:
    return x * x


def test_process_pool_keeps_working() -> None:
    """A ProcessPoolExecutor hop runs as without tracing (untraced: contexts do not pickle)."""

    async def main() -> int:
        with concurrent.futures.ProcessPoolExecutor(1) as pool:
            result: int = await asyncio.get_running_loop().run_in_executor(pool, _square, 7)
            return result

    assert run(main) == 49


def test_run_coroutine_threadsafe_from_executor_thread() -> None:
    """A task submitted back to the loop from a worker thread continues the chain through the hop."""
    holder: dict[str, Any] = {}

    async def back_on_loop() -> TraceData:
        return collect_async_trace()  # back-ask

    def in_thread(loop: asyncio.AbstractEventLoop) -> TraceData:
        fut = asyncio.run_coroutine_threadsafe(back_on_loop(), loop)  # rcts
        return fut.result(timeout=10)

    async def main() -> TraceData:
        holder["root"] = asyncio.current_task()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, in_thread, loop)  # hop

    trace = run(main)
    root = holder["root"].get_name()
    assert [(*r[:2], r[4]) for r in rows(trace)] == [
        ("back_on_loop", line_of(back_on_loop, "back-ask"), False),
        ("in_thread", line_of(in_thread, "rcts"), False),
        ("main", line_of(main, "hop"), True),
        (root, None, False),
    ]
    assert trace["frames"][1]["task"] is trace["current_task"]


def test_nested_hops() -> None:
    """thread → run_coroutine_threadsafe → task → to_thread: one chain through both hops."""

    def deepest() -> TraceData:
        return collect_async_trace()  # deepest

    async def back() -> TraceData:
        return await asyncio.to_thread(deepest)  # second-hop

    def first(loop: asyncio.AbstractEventLoop) -> TraceData:
        return asyncio.run_coroutine_threadsafe(back(), loop).result(10)  # submit

    async def main() -> tuple[TraceData, Any]:
        loop = asyncio.get_running_loop()
        return await asyncio.to_thread(first, loop), asyncio.current_task()  # first-hop

    trace, root = run(main)
    assert [(*r[:2], r[4]) for r in rows(trace)] == [
        ("deepest", line_of(deepest, "deepest"), False),
        ("back", line_of(back, "second-hop"), True),
        ("first", line_of(first, "submit"), False),
        ("main", line_of(main, "first-hop"), True),
        (root.get_name(), None, False),
    ]


# --- callbacks, plain code, stale chains ------------------------------------------


def test_callback_sees_the_chain_of_its_scheduling_task() -> None:
    """A loop callback shows its own frames, then the chain of the task that scheduled it."""

    def callback(fut: asyncio.Future[TraceData]) -> None:
        fut.set_result(collect_async_trace())  # cb-ask

    async def child() -> TraceData:
        fut: asyncio.Future[TraceData] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(callback, fut)
        return await fut

    async def main() -> TraceData:
        return await asyncio.create_task(child())  # cb-spawn

    trace = run(main)
    assert [r[:2] for r in rows(trace)][:2] == [
        ("callback", line_of(callback, "cb-ask")),
        ("main", line_of(main, "cb-spawn")),
    ]
    assert trace["current_task"] is None
    assert trace["in_executor"] is False


def test_outside_any_loop() -> None:
    """In plain synchronous code: the caller's frames, no root task, not in an executor."""
    trace = collect_async_trace()  # sync-here
    assert rows(trace)[0][:2] == ("test_outside_any_loop", line_of(test_outside_any_loop, "sync-here"))
    assert trace["current_task"] is None
    assert trace["in_executor"] is False
    assert all(f["name"] != "<module>" for f in trace["frames"])


def test_task_created_while_disabled_is_its_own_root() -> None:
    """A task created with tracing off does not claim its creator's origin; its children hang under it."""

    async def grandchild() -> TraceData:
        return collect_async_trace()

    async def untraced_child() -> tuple[TraceData, TraceData]:
        mine = collect_async_trace()
        async_trace.enable_tracing()
        sub = await asyncio.create_task(grandchild())  # after-reenable
        return mine, sub

    async def traced_parent() -> tuple[TraceData, TraceData]:
        async_trace.disable_tracing()
        t = asyncio.create_task(untraced_child(), name="untraced")
        return await t

    async def main() -> tuple[TraceData, TraceData]:
        return await asyncio.create_task(traced_parent())

    mine, sub = run(main)
    assert [r[0] for r in rows(mine)] == ["untraced_child", "untraced"]
    assert [r[:2] for r in rows(sub)] == [
        ("grandchild", rows(sub)[0][1]),
        ("untraced_child", line_of(untraced_child, "after-reenable")),
        ("untraced", None),
    ]


def test_task_built_directly_reaches_the_root() -> None:
    """A task built with asyncio.Task(...) (as aiohttp does on 3.12+) never passes through
    loop.create_task. 3.10-3.13: traced through the line that built it (the registration hook,
    tests/test_direct_tasks.py); 3.14+ (no hook): through a marker for the unknown line, then the
    chain of the task that built it, to the root (docs/guarantees.md)."""

    async def spawner() -> TraceData:
        return await asyncio.Task(_leaf(), name="direct")

    async def main() -> TraceData:
        return await asyncio.create_task(spawner())

    names = [r[0] for r in rows(run(main))]
    if sys.version_info >= (3, 14):
        assert names[:3] == ["_leaf", UNKNOWN_LINE_TEXT, "main"]
    else:
        assert names[:3] == ["_leaf", "spawner", "main"]
    assert len(names) == 4


# --- bounds -----------------------------------------------------------------------


def test_max_frames_elides_the_middle() -> None:
    """A stack deeper than max_frames keeps its ends and says how many frames it dropped."""

    async def recurse(n: int) -> TraceData:
        if n:
            return await recurse(n - 1)
        return collect_async_trace()

    async def main() -> TraceData:
        return await recurse(30)

    async_trace.enable_tracing(max_frames=8)
    trace = run(main)
    names = [f["name"] for f in trace["frames"]]
    own = 31 + 1  # recurse(30) .. recurse(0), then main
    kept_inner, kept_outer = 8 - 8 // 4, 8 // 4
    assert names[:6] == ["recurse"] * kept_inner
    assert names[6] == f"... {own - kept_inner - kept_outer} frames elided ..."
    assert names[7:9] == ["recurse", "main"]
    assert trace["frames"][6]["line"] is None
    assert len(trace["frames"]) == 10  # 6 + marker + 2 + root


def test_max_depth_elides_task_hops() -> None:
    """A chain longer than max_depth keeps its ends and marks the dropped task hops."""

    async def hop(n: int) -> TraceData:
        if n:
            return await asyncio.create_task(hop(n - 1))
        return collect_async_trace()

    async def main() -> TraceData:
        return await hop(40)

    async_trace.enable_tracing(max_depth=16)
    trace = run(main)
    names = [f["name"] for f in trace["frames"]]
    markers = [n for n in names if "task hops elided" in n]
    assert len(markers) == 1
    assert len(names) <= 16 + 3
    assert names[0] == "hop"
    assert trace["frames"][-1]["line"] is None
    assert trace["frames"][-2]["name"] == "main"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"max_frames": 3}, "max_frames"), ({"max_depth": 7}, "max_depth"), ({"max_frames": 2.5}, "max_frames")],
)
def test_enable_tracing_validates_bounds(kwargs: dict[str, Any], message: str) -> None:
    """Bounds below their minimum, or not ints, are a ValueError naming the argument."""
    with pytest.raises(ValueError, match=message):
        async_trace.enable_tracing(**kwargs)
