"""A real aiohttp server and client, in-process on 127.0.0.1: a handler's trace and the request task's origin."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import pytest

from async_trace import TraceData, collect_async_trace, exception_trace
from async_trace._frames import UNKNOWN_LINE_TEXT

from .apps import ON_BOTH_LOOPS, aiohttp_server, get_aiohttp, run_on, shape, source_line
from .helpers import line_of

aiohttp = pytest.importorskip("aiohttp")
web = pytest.importorskip("aiohttp.web")
web_protocol = pytest.importorskip("aiohttp.web_protocol")

HERE = "test_apps_aiohttp.py"


def _request_task_line(loop: str) -> int:
    """The line of aiohttp's ``RequestHandler.start`` that creates each request's task."""
    start = web_protocol.RequestHandler.start
    if sys.version_info >= (3, 14) and loop == "uvloop":
        return source_line(start, "task = asyncio.Task(coro, loop=loop, eager_start=True)")
    if sys.version_info >= (3, 14):
        return source_line(start, "task = asyncio.create_task(coro, eager_start=True)")
    if sys.version_info >= (3, 12):
        return source_line(start, "task = asyncio.Task(coro, loop=loop, eager_start=True)", nth=1)
    return source_line(start, "task = loop.create_task(coro)")


def _connection_task_line(loop: str) -> int:
    """The line of ``RequestHandler.connection_made`` that creates the connection's task."""
    made = web_protocol.RequestHandler.connection_made
    if sys.version_info >= (3, 14) and loop == "uvloop":
        return source_line(made, "task = asyncio.Task(self.start(), loop=loop, eager_start=True)")
    if sys.version_info >= (3, 14):
        return source_line(made, "task = asyncio.create_task(self.start(), eager_start=True)")
    if sys.version_info >= (3, 12):
        return source_line(made, "task = asyncio.Task(self.start(), loop=loop, eager_start=True)", nth=1)
    return source_line(made, "task = loop.create_task(self.start())")


def _server_chain(loop: str) -> list[tuple[str, int | None, str | None, bool]]:
    """From the request task's coroutine to the connection's callback: aiohttp's frames.

    On uvloop on 3.14+ aiohttp builds both tasks with ``asyncio.Task(...)``, which no hook sees
    there: the request task's context is a copy of the connection task's, which holds the server's
    node, so the chain runs through a marker for the unknown lines straight to the line that
    started the server.
    """
    handle = (
        "_handle_request",
        source_line(web_protocol.RequestHandler._handle_request, "resp = await request_handler("),
        "web_protocol.py",
        False,
    )
    if sys.version_info >= (3, 14) and loop == "uvloop":
        return [handle, (UNKNOWN_LINE_TEXT, None, None, False)]
    return [
        handle,
        ("start", _request_task_line(loop), "web_protocol.py", False),
        ("connection_made", _connection_task_line(loop), "web_protocol.py", False),
    ]


def _site_start(
    serve_line: int, filename: str = HERE, function: str = "main"
) -> list[tuple[str, int | None, str | None, bool]]:
    """From the line that started the server out: the site's ``create_server``, the test's
    ``async with aiohttp_server(...)`` (``serve_line`` in ``function`` of ``filename``), through
    contextlib (its line not pinned)."""
    return [
        ("start", source_line(web.SockSite.start, "self._server = await loop.create_server("), "web_runner.py", False),
        ("aiohttp_server", source_line(aiohttp_server, "await site.start()"), "apps.py", False),
        ("__aenter__", None, "contextlib.py", False),
        (function, serve_line, filename, False),
    ]


@ON_BOTH_LOOPS
def test_handler_trace_reaches_the_root_through_aiohttp(loop: str) -> None:
    """A handler's trace runs through the request task's creation in aiohttp, the connection task, the
    line that started the server, to the root.

    On uvloop aiohttp builds its tasks with ``asyncio.Task(...)`` from 3.12 on: 3.14+ has no hook for
    that, and the trace reaches the root through a marker for the unknown lines.
    """
    seen: list[TraceData] = []

    async def handler(request: Any) -> Any:
        seen.append(collect_async_trace())  # capture-sync
        await asyncio.sleep(0)
        seen.append(collect_async_trace())  # capture-after-await
        return web.Response(text="ok")

    async def main() -> None:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        app = web.Application()
        app.router.add_get("/", handler)
        async with aiohttp_server(app) as url:  # serve
            assert await get_aiohttp(url + "/") == (200, "ok")

    # Through asyncio.run, as servers start: uvloop runs callbacks from C, so a hop captured
    # in one stops at asyncio.run's frames (a bare run_until_complete leaves its caller's).
    run_on(loop, main())
    tail = [
        ("_handle", source_line(web.Application._handle, "return await handler(request)"), "web_app.py", False),
        *_server_chain(loop),
        *_site_start(line_of(main, "serve")),
        ("main", None, None, False),
    ]
    for trace, marker in zip(seen, ["capture-sync", "capture-after-await"], strict=True):
        got = shape(trace)
        # contextlib's own line is not ours to pin.
        got = [(n, None if b == "contextlib.py" else line, b, e) for n, line, b, e in got]
        assert got == [("handler", line_of(handler, marker), HERE, False), *tail]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _lookup(key: str) -> str:
    await asyncio.sleep(0)
    raise KeyError(key)  # raise


@ON_BOTH_LOOPS
def test_error_handling_request_log_names_the_request_task(loop: str) -> None:
    """aiohttp's "Error handling request" log (the handler's exception, caught in the request's task
    two awaits down) carries the note, and ``exception_trace()`` names the request's task, on every version.
    """
    seen: dict[str, Any] = {}

    async def handler(request: Any) -> Any:
        seen["task"] = asyncio.current_task()
        return web.Response(text=await _lookup("missing"))  # lookup

    async def main() -> None:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        app = web.Application()
        app.router.add_get("/", handler)
        records = _Records()
        logger = logging.getLogger("aiohttp.server")
        logger.addHandler(records)
        try:
            async with aiohttp_server(app) as url:  # serve
                seen["status"], _ = await get_aiohttp(url + "/")
                # Read while the connection's task still runs (a finished one is a placeholder).
                (record,) = records.records
                seen["message"] = record.getMessage()
                seen["text"] = logging.Formatter().format(record)
                seen["exc"] = record.exc_info[1] if record.exc_info else None
                seen["origin"] = exception_trace(seen["exc"]) if seen["exc"] else None
        finally:
            logger.removeHandler(records)

    run_on(loop, main())
    assert seen["status"] == 500
    assert seen["message"].startswith("Error handling request")  # aiohttp's own words
    assert isinstance(seen["exc"], KeyError)
    text = seen["text"]
    assert text.count("Async trace (most recent call last):") == 1
    assert text.split("\nAsync trace (most recent call last):\n")[0].endswith("KeyError: 'missing'")
    origin = seen["origin"]
    assert origin is not None
    assert origin["current_task"] is seen["task"]
    assert origin["in_executor"] is False
    got = [(n, None if b == "contextlib.py" else line, b, e) for n, line, b, e in shape(origin)]
    assert got == [*_server_chain(loop)[1:], *_site_start(line_of(main, "serve")), ("main", None, None, False)]
