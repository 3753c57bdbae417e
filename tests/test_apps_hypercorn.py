"""hypercorn, in-process on 127.0.0.1 (port 0, its documented ``serve()``), driven by httpx.

A plain ASGI app's trace runs through hypercorn's request task (its task group's
``spawn_app``), the connection's task, to the line that started the server, on
asyncio and uvloop; a FastAPI ``def`` endpoint served by hypercorn is marked at
anyio's hop. The server answers the same untraced.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

import async_trace
from async_trace import TraceData, collect_async_trace

from .apps import ON_BOTH_LOOPS, TIMEOUT, Shape, free_socket, run_on, shape, source_line
from .helpers import line_of

hypercorn_asyncio = pytest.importorskip("hypercorn.asyncio")
hypercorn_config = pytest.importorskip("hypercorn.config")
httpx = pytest.importorskip("httpx")
fastapi = pytest.importorskip("fastapi")
starlette_concurrency = pytest.importorskip("starlette.concurrency")

HERE = "test_apps_hypercorn.py"
seen: dict[str, TraceData] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    seen["app"] = collect_async_trace()  # capture
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def make_fastapi() -> Any:
    api = fastapi.FastAPI()

    @api.get("/sync")  # type: ignore[untyped-decorator]
    def endpoint() -> dict[str, int]:
        seen["endpoint"] = collect_async_trace()  # capture-endpoint
        return {"ok": 1}

    return api


@asynccontextmanager
async def hypercorn_server(asgi: Any) -> AsyncIterator[str]:
    """Serve ``asgi`` with hypercorn's ``serve()`` on a socket of ours (``fd://``); yield its base URL."""
    sock = free_socket()
    config = hypercorn_config.Config()
    config.bind = [f"fd://{os.dup(sock.fileno())}"]  # hypercorn closes the descriptor it was given
    config.accesslog = None
    config.errorlog = None
    stop = asyncio.Event()
    serving = asyncio.create_task(hypercorn_asyncio.serve(asgi, config, shutdown_trigger=stop.wait))  # serve
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        await asyncio.wait_for(serving, TIMEOUT)
        sock.close()


async def main(asgi: Any, path: str, out: dict[str, Any]) -> None:
    asyncio.current_task().set_name("main")  # type: ignore[union-attr]
    async with hypercorn_server(asgi) as url, httpx.AsyncClient(timeout=TIMEOUT) as client:  # start
        for _ in range(int(TIMEOUT / 0.01)):  # hypercorn listens once its task has run a little
            try:
                resp = await client.get(url + path)
                break
            except httpx.ConnectError:
                await asyncio.sleep(0.01)
        out["response"] = (resp.status_code, resp.text)


def _serve(asgi: Any, path: str, loop: str) -> dict[str, Any]:
    seen.clear()
    out: dict[str, Any] = {}
    run_on(loop, main(asgi, path, out))
    return out


def _tail() -> list[Shape]:
    """The line that started the server, down to the root."""
    return [
        ("hypercorn_server", line_of(hypercorn_server, "serve"), HERE, False),
        ("__aenter__", None, "contextlib.py", False),
        ("main", line_of(main, "start"), HERE, False),
        ("main", None, None, False),
    ]


#: On 3.10 hypercorn runs its tasks through the ``taskgroup`` backport, whose task factory builds
#: them with ``asyncio.Task(...)`` around a coroutine wrapper of its own: chains there show the
#: backport's frames and, for tasks the 3.10 registration hook did not see being built (the
#: connection's task always, the request's task in some runs), the line-unknown marker where
#: that task's creation frames would be; the chain still ends at the line that started the server.
BACKPORT = sys.version_info < (3, 11)
MARKER = "... built here by asyncio.Task("
LIBRARIES = ("hypercorn", "fastapi", "starlette", "anyio", "taskgroup")


def _is_library(frame: Any) -> bool:
    return any(f"{os.sep}{d}{os.sep}" in (frame["filename"] or "") for d in LIBRARIES)


def _check(trace: TraceData, head: list[Shape]) -> list[Shape]:
    """``head``, hypercorn's (and the framework's) frames only, then the tail; the shapes, library lines blanked."""
    pairs = [
        ((n, line if b in {HERE, "concurrency.py"} else None, b, e), f)
        for (n, line, b, e), f in zip(shape(trace), trace["frames"], strict=True)
        if not (BACKPORT and (n.startswith(MARKER) or f"{os.sep}taskgroup{os.sep}" in (f["filename"] or "")))
    ]
    got = [row for row, _ in pairs]
    assert got[: len(head)] == head
    tail = _tail()
    assert got[-len(tail) :] == tail
    assert all(_is_library(f) for _, f in pairs[len(head) : -len(tail)]), got
    if not BACKPORT:  # (on 3.10 the request task's own creation line may be the unknown one)
        # The connection's task (hypercorn's TCPServer) is on the way, made in asyncio.start_server's callback.
        assert ("run", None, "tcp_server.py", False) in got[len(head) : -len(tail)]
    return got


@ON_BOTH_LOOPS
def test_asgi_app_reaches_the_line_that_started_the_server(loop: str) -> None:
    out = _serve(app, "/", loop)
    assert out["response"] == (200, "ok")
    got = _check(seen["app"], [("app", line_of(app, "capture"), HERE, False)])
    assert seen["app"]["in_executor"] is False
    # The request's task is made by hypercorn's task group for the stream, in the connection's task.
    if not BACKPORT:
        assert ("spawn_app", None, "task_group.py", False) in got
    assert not any(e for *_, e in got)


@ON_BOTH_LOOPS
def test_fastapi_def_endpoint_on_hypercorn_hops_at_run_in_threadpool(loop: str) -> None:
    out = _serve(make_fastapi(), "/sync", loop)
    assert out["response"] == (200, '{"ok":1}')
    trace = seen["endpoint"]
    got = _check(trace, [("endpoint", line_of(make_fastapi, "capture-endpoint"), HERE, False)])
    hop = source_line(starlette_concurrency.run_in_threadpool, "return await anyio.to_thread.run_sync(")
    assert [row for row in got if row[3]] == [("run_in_threadpool", hop, "concurrency.py", True)]
    assert trace["in_executor"] is True


def test_hypercorn_answers_the_same_untraced() -> None:
    traced = _serve(app, "/", "asyncio")
    async_trace.disable_tracing()
    try:
        plain = _serve(app, "/", "asyncio")
    finally:
        async_trace.enable_tracing()
    assert traced == plain == {"response": (200, "ok")}


def test_the_docs_sample_prints_what_the_page_shows(tmp_path: Any) -> None:
    """docs/real-applications.md's hypercorn program, run as is: exact on 3.11-3.13, its own lines on any."""
    from .doc_blocks import doc_block
    from .helpers import run_python

    (tmp_path / "app.py").write_text(doc_block("hypercorn-source", "app.py"), encoding="utf-8")
    result = run_python("app.py", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    expected = doc_block("hypercorn-output", "app.py")
    if (3, 11) <= sys.version_info < (3, 14):
        assert result.stdout == expected
    ours = ("[app.py]", "↑ Task-1", "ok")
    assert [line.strip() for line in result.stdout.splitlines() if line.endswith(ours)] == [
        line.strip() for line in expected.splitlines() if line.endswith(ours)
    ]
