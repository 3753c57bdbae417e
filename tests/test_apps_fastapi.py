"""FastAPI on uvicorn, in-process on 127.0.0.1, driven by httpx: async and ``def`` endpoints, a sync dependency."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from async_trace import TraceData, collect_async_trace

from .apps import ON_BOTH_LOOPS, Shape, connection_tail, get_httpx, run_on, shape, source_line, uvicorn_server
from .helpers import line_of

fastapi = pytest.importorskip("fastapi")
starlette_concurrency = pytest.importorskip("starlette.concurrency")
h11_impl = pytest.importorskip("uvicorn.protocols.http.h11_impl")

HERE = "test_apps_fastapi.py"


async def main(app: Any, paths: list[str]) -> None:
    asyncio.current_task().set_name("main")  # type: ignore[union-attr]
    async with uvicorn_server(app) as url:  # serve
        for path in paths:
            assert await get_httpx(url + path) == (200, '{"ok":1}')


def _serve(app: Any, paths: list[str], loop: str) -> None:
    run_on(loop, main(app, paths))


def _server_tail() -> list[Shape]:
    """uvicorn's request task, created under the connection's protocol callback, the line that started the
    server, then the task serving it."""
    return [
        ("run_asgi", source_line(h11_impl.RequestResponseCycle.run_asgi, "result = await app("), "h11_impl.py", False),
        ("handle_events", None, "h11_impl.py", False),
        *connection_tail(line_of(main, "serve"), HERE),
    ]


def _comparable(trace: TraceData) -> list[Shape]:
    """``shape(trace)`` with the lines we do not pin (contextlib's, handle_events') blanked."""
    return [(n, None if n == "handle_events" or b == "contextlib.py" else line, b, e) for n, line, b, e in shape(trace)]


def _check_tail(got: list[Shape]) -> None:
    tail = _server_tail()
    assert got[-len(tail) :] == tail
    # Nothing of the program that called asyncio.run, nor of pytest.
    files = {b for _, _, b, _ in got}
    assert files.isdisjoint({"python.py", "runner.py", "main.py", "_hooks.py", "_callers.py"}), files


@ON_BOTH_LOOPS
def test_async_endpoint_reaches_the_root(loop: str) -> None:
    seen: list[TraceData] = []
    app = fastapi.FastAPI()

    @app.get("/async")  # type: ignore[untyped-decorator]
    async def endpoint() -> dict[str, int]:
        seen.append(collect_async_trace())  # capture
        return {"ok": 1}

    _serve(app, ["/async"], loop)
    got = _comparable(seen[0])
    assert got[0] == ("endpoint", line_of(endpoint, "capture"), HERE, False)
    assert not any(e for *_, e in got)
    assert seen[0]["in_executor"] is False
    _check_tail(got)


@ON_BOTH_LOOPS
def test_sync_endpoint_and_dependency_hop_at_the_awaiting_frame(loop: str) -> None:
    seen: dict[str, TraceData] = {}
    app = fastapi.FastAPI()

    def dependency() -> int:
        seen["dependency"] = collect_async_trace()  # capture-dependency
        return 1

    @app.get("/sync")  # type: ignore[untyped-decorator]
    def endpoint(value: int = fastapi.Depends(dependency)) -> dict[str, int]:
        seen["endpoint"] = collect_async_trace()  # capture-endpoint
        return {"ok": value}

    _serve(app, ["/sync"], loop)
    hop = (
        "run_in_threadpool",
        source_line(starlette_concurrency.run_in_threadpool, "return await anyio.to_thread.run_sync("),
        "concurrency.py",
        True,
    )
    for key, func in [("dependency", dependency), ("endpoint", endpoint)]:
        trace = seen[key]
        got = _comparable(trace)
        assert got[0] == (func.__name__, line_of(func, f"capture-{key}"), HERE, False), key
        assert trace["in_executor"] is True
        marked = [row for row in got if row[3]]
        assert marked == [hop], key
        # The hop comes right after the thread's own frames: no frame of anyio's worker loop.
        assert all(os.path.basename(b or "") != "_asyncio.py" for _, _, b, _ in got), got
        _check_tail(got)
