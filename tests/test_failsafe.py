"""Tracing never breaks the program: internal failures fall back to untraced behaviour and warn once."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import multiprocessing
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import async_trace
from async_trace import AsyncTraceWarning, _capture, _chain, _failsafe, collect_async_trace
from async_trace._chain import CURRENT

from .helpers import run_python


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected")


async def _value() -> int:
    return 42


def _ours(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    return [w for w in caught if issubclass(w.category, AsyncTraceWarning)]


@pytest.fixture
def caught() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning raised in the test, recorded instead of turned into an error."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        yield record


async def _workload() -> list[int]:
    """Every traced path: create_task, gather, to_thread, run_in_executor, run_coroutine_threadsafe."""
    loop = asyncio.get_running_loop()
    results = [await asyncio.create_task(_value())]
    results += await asyncio.gather(_value(), _value())
    results.append(await asyncio.to_thread(int, "7"))
    results.append(await loop.run_in_executor(None, int, "8"))

    def submit() -> int:
        return asyncio.run_coroutine_threadsafe(_value(), loop).result(timeout=30)

    results.append(await asyncio.to_thread(submit))
    return results


WORKLOAD_RESULT = [42, 42, 42, 7, 8, 42]


def test_warning_category_is_a_runtime_warning() -> None:
    """AsyncTraceWarning is a RuntimeWarning subclass exported at the top level."""
    assert issubclass(async_trace.AsyncTraceWarning, RuntimeWarning)


def test_workload_runs_clean_without_faults(caught: list[warnings.WarningMessage]) -> None:
    """The fault-injection workload itself runs without any warning when nothing is broken."""
    assert asyncio.run(_workload()) == WORKLOAD_RESULT
    assert caught == []


@pytest.mark.parametrize(
    ("module", "name"),
    [(_capture, "capture"), (_capture, "walk"), (_capture, "make_root"), (_capture, "name_root")],
    ids=["_capture.capture", "_stack.walk", "_capture.make_root", "_capture.name_root"],
)
def test_capture_failure_falls_back_and_warns_once(
    monkeypatch: pytest.MonkeyPatch, caught: list[warnings.WarningMessage], module: Any, name: str
) -> None:
    """If a capture step raises, every task and hop still runs; exactly one AsyncTraceWarning."""
    monkeypatch.setattr(module, name, _boom)
    assert asyncio.run(_workload()) == WORKLOAD_RESULT
    assert asyncio.run(_workload()) == WORKLOAD_RESULT  # later failures stay silent
    ours = _ours(caught)
    assert len(ours) == 1
    assert issubclass(ours[0].category, RuntimeWarning)
    assert "RuntimeError: injected" in str(ours[0].message)
    assert [w for w in caught if w not in ours] == []


def test_capture_failure_under_an_error_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    """With warnings turned into errors, a capture failure raises nothing into user code, and is shown."""
    monkeypatch.setattr(_capture, "capture", _boom)
    monkeypatch.setattr(_capture, "walk", _boom)
    shown: list[str] = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, *args, **kwargs: shown.append(str(message)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert asyncio.run(_workload()) == WORKLOAD_RESULT
    assert len(shown) == 1
    assert "RuntimeError: injected" in shown[0]


def test_capture_failure_leaves_the_context_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a failed capture the creator's context holds exactly what it held before."""
    monkeypatch.setattr(_capture, "capture", _boom)
    monkeypatch.setattr(_capture, "walk", _boom)

    async def main() -> bool:
        before = CURRENT.get()
        await asyncio.create_task(_value())
        await asyncio.to_thread(int)
        return CURRENT.get() is before

    with pytest.warns(AsyncTraceWarning):
        assert asyncio.run(main()) is True


def test_tracing_recovers_after_a_capture_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the fault is gone, tasks are traced again (the fallback is per call, not permanent)."""

    async def leaf() -> async_trace.TraceData:
        return collect_async_trace()

    async def main() -> async_trace.TraceData:
        return await asyncio.create_task(leaf(), name="child")

    monkeypatch.setattr(_capture, "capture", _boom)
    monkeypatch.setattr(_capture, "walk", _boom)
    with pytest.warns(AsyncTraceWarning):
        asyncio.run(main())
    monkeypatch.undo()
    trace = asyncio.run(main())
    assert [(f["name"], f["task"] and f["task"].get_name()) for f in trace["frames"][:2]] == [
        ("leaf", None),
        ("main", "child"),
    ]


# --- corrupted chains -------------------------------------------------------------


def _corrupt(parent: Any, frames: Any, depth: Any = 2) -> None:
    """Push a node that claims the running task (so collection walks it) with broken fields."""
    code = asyncio.current_task().get_coro().cr_code  # type: ignore[union-attr]
    CURRENT.set(_chain.make(_chain.TaskNode, parent, depth, code, frames))


CORRUPTIONS: dict[str, dict[str, Any]] = {
    "garbage frames": {"parent": None, "frames": ("garbage", "x")},
    "frames not a tuple": {"parent": None, "frames": None},
    "parent not a node (str)": {"parent": "not a node", "frames": ()},
    "parent not a node (int)": {"parent": 12345, "frames": ()},
    "parent an empty tuple": {"parent": (), "frames": ()},
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_collection_meets_a_corrupted_chain(corruption: str, caught: list[warnings.WarningMessage]) -> None:
    """collect_async_trace over a corrupted chain returns a trace dict and warns once."""

    async def main() -> Any:
        _corrupt(**CORRUPTIONS[corruption])
        first = collect_async_trace()
        second = collect_async_trace()
        return first, second

    first, second = asyncio.run(main())
    for trace in (first, second):
        assert set(trace) == {"frames", "current_task", "in_executor"}
        assert isinstance(trace["frames"], list)
    assert len(_ours(caught)) == 1


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_print_trace_meets_a_corrupted_chain(corruption: str, caught: list[warnings.WarningMessage]) -> None:
    """print_trace and format_trace over a corrupted chain raise nothing."""

    async def main() -> tuple[str, list[str]]:
        _corrupt(**CORRUPTIONS[corruption])
        out = io.StringIO()
        async_trace.print_trace(file=out)
        return out.getvalue(), async_trace.format_trace()

    printed, formatted = asyncio.run(main())
    assert printed == "".join(formatted)
    assert len(_ours(caught)) == 1


def test_creation_under_a_corrupted_chain(caught: list[warnings.WarningMessage]) -> None:
    """Creating tasks and hops from a context holding a corrupted node works untraced, with one warning."""

    async def main() -> list[int]:
        _corrupt(parent=None, frames=(), depth="not an int")
        return [await asyncio.create_task(_value()), await asyncio.to_thread(int, "3")]

    assert asyncio.run(main()) == [42, 3]
    assert len(_ours(caught)) == 1


def test_creation_under_a_foreign_object_in_the_variable(caught: list[warnings.WarningMessage]) -> None:
    """A non-node object in the ContextVar is ignored: the creating task becomes a root."""

    async def leaf() -> async_trace.TraceData:
        return collect_async_trace()

    async def main() -> async_trace.TraceData:
        asyncio.current_task().set_name("root")  # type: ignore[union-attr]
        CURRENT.set("not a node")  # type: ignore[arg-type]
        return await asyncio.create_task(leaf(), name="child")

    trace = asyncio.run(main())
    assert [(f["name"], f["task"] and f["task"].get_name()) for f in trace["frames"]] == [
        ("leaf", None),
        ("main", "child"),
        ("root", "root"),
    ]
    assert _ours(caught) == []


# --- odd objects ----------------------------------------------------------------------


class _CoroLike:
    """Has the coroutine protocol (so asyncio accepts it) but is not a coroutine: no cr_code, cr_frame."""

    def __init__(self, coro: Any) -> None:
        self._coro = coro

    def send(self, value: Any) -> Any:
        return self._coro.send(value)

    def throw(self, *args: Any) -> Any:
        return self._coro.throw(*args)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Any:
        return self._coro.__await__()

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        return self.send(None)


async def _child() -> async_trace.TraceData:
    await asyncio.sleep(0)
    return collect_async_trace()


def test_coroutine_like_object_through_a_factory(caught: list[warnings.WarningMessage]) -> None:
    """A factory that wraps the coroutine in a coroutine-like object keeps working, untraced for that task."""

    def factory(loop: Any, coro: Any, **kw: Any) -> Any:
        return asyncio.Task(_CoroLike(coro), loop=loop, **kw)

    async def main() -> async_trace.TraceData:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(factory)
        try:
            return await asyncio.create_task(_child(), name="wrapped")
        finally:
            loop.set_task_factory(None)

    trace = asyncio.run(main())
    assert trace["frames"][0]["name"] == "_child"
    # The task's coroutine is not the one the node was made for: it is its own root.
    assert (trace["frames"][-1]["name"], trace["frames"][-1]["line"]) == ("wrapped", None)
    assert caught == []


def test_coroutine_like_object_passed_to_create_task(caught: list[warnings.WarningMessage]) -> None:
    """loop.create_task accepts a coroutine-like object with tracing on, as without."""

    async def main() -> async_trace.TraceData:
        return await asyncio.get_running_loop().create_task(_CoroLike(_child()))

    trace = asyncio.run(main())
    assert trace["frames"][0]["name"] == "_child"
    assert trace["frames"][-1]["line"] is None
    assert caught == []


class _DoneFuture(asyncio.Future):  # type: ignore[type-arg]
    """A Future subclass a task factory returns instead of a Task (no get_name, no coroutine)."""

    def set_name(self, name: object) -> None:  # 3.13.0's create_task names what the factory returns
        pass


def _future_factory(loop: Any, coro: Any, **kw: Any) -> Any:
    coro.close()
    fut = _DoneFuture(loop=loop)
    fut.set_result("from factory")
    return fut


def test_factory_returning_a_future_subclass(caught: list[warnings.WarningMessage]) -> None:
    """A task factory may return a Future subclass for a child task; tracing copes silently."""

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(_future_factory)
        try:
            result: Any = await asyncio.ensure_future(_value())
            return result
        finally:
            loop.set_task_factory(None)

    assert asyncio.run(main()) == "from factory"
    assert caught == []


def test_factory_returning_a_future_subclass_for_the_root(caught: list[warnings.WarningMessage]) -> None:
    """The root task's creation (no traced parent) may get a Future subclass from the factory too."""
    loop = asyncio.new_event_loop()
    try:
        loop.set_task_factory(_future_factory)
        result: Any = loop.run_until_complete(_value())
        assert result == "from factory"
    finally:
        loop.close()
    assert caught == []


# --- errors that must propagate unchanged ------------------------------------------------------


def _error_of(func: Any) -> tuple[type[BaseException], tuple[Any, ...], str, bool]:
    """Run ``func`` in a task; return its exception's type, args and text, and whether CURRENT is unchanged."""

    async def main() -> tuple[type[BaseException], tuple[Any, ...], str, bool]:
        before = CURRENT.get()
        try:
            await func()
        except Exception as exc:  # compared with the untraced run
            return type(exc), exc.args, str(exc), CURRENT.get() is before
        raise AssertionError("no exception")

    traced = asyncio.run(main())
    async_trace.disable_tracing()
    try:
        plain = asyncio.run(main())
    finally:
        async_trace.enable_tracing()
    assert traced == plain
    return traced


@pytest.mark.parametrize("via", ["loop.create_task", "asyncio.create_task", "asyncio.ensure_future"])
@pytest.mark.parametrize("obj", [None, 1, "not a coroutine", _value], ids=["None", "1", "str", "function"])
def test_non_coroutine_raises_the_same_type_error(via: str, obj: Any) -> None:
    """create_task(non-coroutine) raises exactly the TypeError of untraced asyncio; no node is left set."""

    async def create() -> None:
        if via == "loop.create_task":
            asyncio.get_running_loop().create_task(obj)
        elif via == "asyncio.create_task":
            asyncio.create_task(obj)
        else:
            asyncio.ensure_future(obj)

    kind, _, _, clean = _error_of(create)
    assert kind is TypeError
    assert clean is True


def test_non_coroutine_leaves_the_next_creation_traced() -> None:
    """After a rejected create_task, the next task from the same line is traced as usual."""

    async def leaf() -> async_trace.TraceData:
        return collect_async_trace()

    async def main() -> async_trace.TraceData:
        for item in ("bad", leaf()):
            try:
                return await asyncio.create_task(item, name="child")  # type: ignore[arg-type]
            except TypeError:
                pass
        raise AssertionError("unreachable")

    trace = asyncio.run(main())
    assert [(f["name"], f["task"] and f["task"].get_name()) for f in trace["frames"][:2]] == [
        ("leaf", None),
        ("main", "child"),
    ]


class _BrokenPool(concurrent.futures.ThreadPoolExecutor):
    def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise OSError(24, "pool is broken")


def test_pool_whose_submit_raises() -> None:
    """run_in_executor on a pool whose submit raises propagates that error exactly, context clean."""

    async def call() -> None:
        with _BrokenPool(1) as pool:
            await asyncio.get_running_loop().run_in_executor(pool, int)

    assert _error_of(call) == (OSError, (24, "pool is broken"), "[Errno 24] pool is broken", True)


def test_default_pool_whose_submit_raises() -> None:
    """to_thread with a default executor whose submit raises propagates that error exactly, context clean."""

    async def call() -> None:
        pool = _BrokenPool(1)
        asyncio.get_running_loop().set_default_executor(pool)
        await asyncio.to_thread(int)

    assert _error_of(call) == (OSError, (24, "pool is broken"), "[Errno 24] pool is broken", True)


def test_process_pool_hop_runs(caught: list[warnings.WarningMessage]) -> None:
    """A pool that pickles its calls runs them (untraced there: a Context cannot be pickled)."""

    async def main() -> list[int]:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
            loop = asyncio.get_running_loop()
            return [await loop.run_in_executor(pool, abs, -3), await loop.run_in_executor(pool, abs, -4)]

    assert asyncio.run(main()) == [3, 4]
    assert caught == []


def test_warning_is_filterable(caught: list[warnings.WarningMessage]) -> None:
    """AsyncTraceWarning can be silenced with an ordinary filter."""
    warnings.filterwarnings("ignore", category=AsyncTraceWarning)
    _failsafe.warn_internal(RuntimeError("x"), "testing")
    assert caught == []


def test_warning_is_emitted_once_across_threads(
    monkeypatch: pytest.MonkeyPatch, caught: list[warnings.WarningMessage]
) -> None:
    """Failures in loops running in several threads at once still warn once in total."""
    monkeypatch.setattr(_capture, "capture", _boom)
    monkeypatch.setattr(_capture, "walk", _boom)
    results: list[list[int]] = []
    threads = [threading.Thread(target=lambda: results.append(asyncio.run(_workload()))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [WORKLOAD_RESULT] * 4
    assert len(_ours(caught)) == 1


EAGER_FAILS = """\
import asyncio, gc, traceback
import async_trace

async def boom():
    raise ValueError("eager boom")

async def main():
    loop = asyncio.get_running_loop()
    asyncio.Task(boom(), loop=loop, eager_start=True)  # never retrieved: the loop reports it
    gc.collect()
    loop.set_task_factory(asyncio.eager_task_factory)
    task = asyncio.create_task(boom())  # spawn-eager
    try:
        await task
    except ValueError as exc:
        print("".join(async_trace.format_exception(exc)).splitlines()[-2])
    print(async_trace.format_task_tree(async_trace.task_tree())[0], end="")

asyncio.run(main())
print("survived")
"""


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager_start= is 3.12+")
def test_eager_task_that_finished_in_its_first_step(tmp_path: Path) -> None:
    """3.12's Task.get_coro() crashes for an eager task that finished in its first step: we never call it there.

    The loop's report, a printed origin and the task tree meet such tasks; the program runs to its end.
    """
    script = tmp_path / "eager_fails.py"
    script.write_text(EAGER_FAILS, encoding="utf-8")
    result = run_python(str(script), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "    task = asyncio.create_task(boom())  # spawn-eager"
    assert result.stdout.splitlines()[-1] == "survived"
    assert "Task exception was never retrieved" in result.stderr
