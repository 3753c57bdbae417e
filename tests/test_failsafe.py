"""Tracing never breaks the program: internal failures fall back and warn once."""

from __future__ import annotations

import asyncio
import concurrent.futures
import warnings
from typing import Any

import pytest

import async_trace
from async_trace import AsyncTraceWarning, _chain, _collect, _patch, collect_async_trace
from async_trace._chain import CURRENT


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected")


async def _value() -> int:
    return 42


def test_capture_failure_falls_back_and_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """If capturing raises, tasks are still created and run; one AsyncTraceWarning, no exception."""
    monkeypatch.setattr(_patch, "walk", _boom)
    monkeypatch.setattr(_patch, "capture", _boom)

    async def main() -> list[int]:
        return await asyncio.gather(*(asyncio.create_task(_value()) for _ in range(5)))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert asyncio.run(main()) == [42] * 5
    ours = [w for w in caught if issubclass(w.category, AsyncTraceWarning)]
    assert len(ours) == 1
    assert "injected" in str(ours[0].message)


def test_executor_capture_failure_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """If capturing an executor hop raises, the call still runs in the pool."""
    monkeypatch.setattr(_patch, "capture", _boom)

    async def main() -> int:
        return await asyncio.get_running_loop().run_in_executor(None, lambda: 7)

    with pytest.warns(AsyncTraceWarning):
        assert asyncio.run(main()) == 7


def test_corrupted_chain_collection_does_not_raise() -> None:
    """A chain whose node is garbage yields a trace (or an empty one) and one warning."""

    async def main() -> Any:
        # Valid for this task (so collection walks it), with garbage frames and parent.
        code = asyncio.current_task().get_coro().cr_code  # type: ignore[union-attr]
        bad = _chain.make(_chain.TaskNode, "not a node", 2, code, ("garbage", "x"))  # type: ignore[arg-type]
        CURRENT.set(bad)
        return collect_async_trace()

    with pytest.warns(AsyncTraceWarning):
        trace = asyncio.run(main())
    assert set(trace) == {"frames", "current_task", "in_executor"}


def test_collection_failure_returns_empty_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    """If collection itself raises, print_trace prints nothing and warns; nothing escapes."""
    monkeypatch.setattr(_collect, "walk", _boom)
    import async_trace._api as api

    monkeypatch.setattr(api, "collect", _boom)
    with pytest.warns(AsyncTraceWarning):
        assert async_trace.format_trace() == []


def test_non_coroutine_raises_the_same_type_error() -> None:
    """create_task with a non-coroutine raises asyncio's own TypeError; no node is left behind."""

    async def main(traced: bool) -> tuple[str, Any]:
        if not traced:
            async_trace.disable_tracing()
        before = CURRENT.get()
        with pytest.raises(TypeError) as info:
            asyncio.get_running_loop().create_task("not a coroutine")  # type: ignore[arg-type]
        after = CURRENT.get()
        async_trace.enable_tracing()
        assert after is before
        return str(info.value), after

    plain_msg, _ = asyncio.run(main(False))
    traced_msg, _ = asyncio.run(main(True))
    assert traced_msg == plain_msg


def test_factory_returning_a_future_subclass() -> None:
    """A task factory may return any Future; tracing copes."""

    class MyFuture(asyncio.Future):  # type: ignore[type-arg]
        def set_name(self, name: object) -> None:  # 3.13's create_task names what it gets
            pass

    def factory(loop: Any, coro: Any, **kw: Any) -> Any:
        coro.close()
        fut = MyFuture(loop=loop)
        fut.set_result("from factory")
        return fut

    async def main() -> Any:
        asyncio.get_running_loop().set_task_factory(factory)
        try:
            return await asyncio.ensure_future(_value())
        finally:
            asyncio.get_running_loop().set_task_factory(None)

    with warnings.catch_warnings():
        warnings.simplefilter("error", AsyncTraceWarning)
        assert asyncio.run(main()) == "from factory"


def test_coroutine_like_object_through_a_factory() -> None:
    """A factory that wraps a coroutine-like object (not a real coroutine) keeps working."""

    class CoroLike:
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

    def factory(loop: Any, coro: Any, **kw: Any) -> Any:
        return asyncio.Task(CoroLike(coro), loop=loop, **kw)  # type: ignore[arg-type]

    async def child() -> Any:
        return collect_async_trace()

    async def main() -> Any:
        asyncio.get_running_loop().set_task_factory(factory)
        try:
            return await asyncio.create_task(child())
        finally:
            asyncio.get_running_loop().set_task_factory(None)

    with warnings.catch_warnings():
        warnings.simplefilter("error", AsyncTraceWarning)
        try:
            trace = asyncio.run(main())
        except TypeError:
            pytest.skip("this Python's Task refuses non-coroutines")
    assert trace["frames"][0]["name"] == "child"


def test_pool_whose_submit_raises() -> None:
    """An executor whose submit raises propagates that error exactly; the context stays clean."""

    class Broken(concurrent.futures.ThreadPoolExecutor):
        def submit(self, *args: Any, **kwargs: Any) -> Any:
            raise OSError("pool is broken")

    async def main() -> Any:
        before = CURRENT.get()
        with Broken(1) as pool, pytest.raises(OSError, match="pool is broken"):
            await asyncio.get_running_loop().run_in_executor(pool, lambda: 1)
        assert CURRENT.get() is before
        return await asyncio.create_task(_value())

    assert asyncio.run(main()) == 42


def test_warning_is_filterable() -> None:
    """AsyncTraceWarning can be silenced with an ordinary filter."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=AsyncTraceWarning)
        _chain.warn_internal(RuntimeError("x"), "testing")
    assert caught == []
